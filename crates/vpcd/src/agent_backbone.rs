//! The agent's side of the backbone across hosts
//! (`vpc_dataplane::backbone::cluster`, `docs/cluster.md`): it publishes
//! this host's region gateways (port and public key) under the store's
//! setting `gateway/<host>`, follows every other host's, and hands the
//! backbone the hosts of the peered VPCs' instances from each World.

use anyhow::Result;
use std::collections::BTreeSet;
use std::path::Path;
use vpc_dataplane::backbone::cluster::{
    self, gateway_key, ClusterBackbone, HostGateways, GATEWAY_KEY_PREFIX,
};
use vpc_dataplane::placement::Placement;
use vpc_model::World;
use vpc_store::StateStore;

pub struct AgentBackbone {
    link: ClusterBackbone,
    host: String,
    /// What this agent last wrote under `gateway/<host>`.
    published: Option<String>,
}

impl AgentBackbone {
    /// Starts the backbone of host `host` and reads every host's published gateways.
    pub fn start(
        host: &str,
        zones: &[String],
        underlay: std::net::Ipv4Addr,
        underlay_ns: Option<String>,
        data_dir: &Path,
        store: &mut dyn StateStore,
    ) -> Result<AgentBackbone> {
        let regions: BTreeSet<String> = zones
            .iter()
            .map(|z| cluster::region_of_zone(z).to_string())
            .collect();
        let link = ClusterBackbone::new(host, underlay, underlay_ns, regions, data_dir)?;
        let mine = gateway_key(host);
        let mut published = None;
        for (key, value) in store.settings_with_prefix(GATEWAY_KEY_PREFIX)? {
            if key == mine {
                published = Some(value);
            } else {
                set_host(&link, &key, &value);
            }
        }
        Ok(AgentBackbone {
            link,
            host: host.to_string(),
            published,
        })
    }

    /// The peering link type for the data plane.
    pub fn link(&self) -> Box<dyn vpc_dataplane::PeeringLinkType> {
        Box::new(self.link.clone())
    }

    /// Takes a store setting; true when it was a host's gateways.
    pub fn on_setting(&mut self, key: &str, value: &str) -> bool {
        if !key.starts_with(GATEWAY_KEY_PREFIX) {
            return false;
        }
        if key != gateway_key(&self.host) {
            set_host(&self.link, key, value);
        }
        true
    }

    /// Takes a removed store setting; true when it was a host's gateways.
    /// This host's own, removed while it runs, is published again on the
    /// next pass.
    pub fn on_setting_removed(&mut self, key: &str) -> bool {
        let Some(host) = key.strip_prefix(GATEWAY_KEY_PREFIX) else {
            return false;
        };
        if host == self.host {
            self.published = None;
        } else {
            self.link.set_host(host, None);
        }
        true
    }

    /// Hands the backbone where the peered VPCs' instances live.
    pub fn world(&self, world: &World, placement: Option<&Placement>) {
        if let Some(p) = placement {
            self.link.set_destinations(cluster::destinations(world, p));
        }
    }

    /// Publishes this host's gateways when they changed.
    pub fn publish(&mut self, store: &mut dyn StateStore) {
        let text = match serde_json::to_string(&self.link.published()) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("backbone: cannot encode this host's gateways: {e}");
                return;
            }
        };
        if self.published.as_deref() == Some(text.as_str()) {
            return;
        }
        match store.set_setting(&gateway_key(&self.host), &text) {
            Ok(()) => {
                tracing::info!(gateways = %text, "backbone: published this host's gateways");
                self.published = Some(text);
            }
            Err(e) => tracing::warn!("backbone: cannot publish this host's gateways: {e}"),
        }
    }

    /// Reads every host's gateways again (the store's stream was reset).
    pub fn reload(&mut self, store: &mut dyn StateStore) {
        match store.settings_with_prefix(GATEWAY_KEY_PREFIX) {
            Ok(all) => {
                for (key, value) in all {
                    self.on_setting(&key, &value);
                }
            }
            Err(e) => tracing::warn!("backbone: cannot read the hosts' gateways: {e}"),
        }
    }
}

fn set_host(link: &ClusterBackbone, key: &str, value: &str) {
    let host = &key[GATEWAY_KEY_PREFIX.len()..];
    match serde_json::from_str::<HostGateways>(value) {
        Ok(g) if g.host == host => link.set_host(host, Some(g)),
        Ok(_) => tracing::warn!(%key, "backbone: a gateway record naming another host"),
        // Deleted (or unreadable): no gateways there.
        Err(_) => link.set_host(host, None),
    }
}
