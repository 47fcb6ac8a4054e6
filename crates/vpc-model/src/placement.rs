//! Hosts and placement, when several hosts realize one World (`vpcd agent`,
//! `docs/cluster.md`, "Placement"): what an agent registers, which hosts
//! are live, and the rules that say where a new instance goes ([`place`])
//! and where an instance is ([`host_of_instance`]). RunInstances places with
//! them, the data plane realizes with them and DescribeInstances shows them
//! (`Placement.HostId`).
//!
//! A host's *registration* (`host/<name>`) is what it serves; its
//! *liveness* (`alive/<name>`, a setting on a lease its agent keeps alive)
//! is whether its agent runs. Placement is sticky: an instance is recorded
//! with the host it was placed on ([`crate::Instance::host`]) and stays
//! there whatever happens to the liveness; only new instances avoid a host
//! that is not live.

use crate::fault::{Fault, Result};
use crate::types::{Instance, InstanceState};
use crate::world::World;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// What an agent registers in the store (setting `host/<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    pub name: String,
    /// The availability zones it offers to serve.
    pub zones: Vec<String>,
    /// Its address on the underlay (the VXLAN tunnels' endpoint).
    pub underlay: Ipv4Addr,
    /// The data-plane tag of its namespaces (kept across agent restarts).
    pub tag: String,
    /// The agent's process id.
    pub pid: u32,
}

/// Registered hosts by name.
pub type Hosts = BTreeMap<String, HostRecord>;

/// The prefix of every host registration's setting key.
pub const HOST_KEY_PREFIX: &str = "host/";

/// The setting key of a host's registration.
pub fn host_key(name: &str) -> String {
    format!("{HOST_KEY_PREFIX}{name}")
}

/// The prefix of every host's liveness setting (on its agent's lease).
pub const ALIVE_KEY_PREFIX: &str = "alive/";

/// The setting key of a host's liveness.
pub fn alive_key(name: &str) -> String {
    format!("{ALIVE_KEY_PREFIX}{name}")
}

/// What an agent keeps under `alive/<name>` while it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Liveness {
    pub host: String,
    pub pid: u32,
}

/// The registered hosts and which of them are live, as one server sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostDirectory {
    pub hosts: Hosts,
    /// Names of the hosts whose liveness setting exists.
    pub live: BTreeSet<String>,
}

impl HostDirectory {
    /// Takes one setting (`host/…` or `alive/…`); true when it was one.
    pub fn set(&mut self, key: &str, value: &str) -> bool {
        if let Some(name) = key.strip_prefix(ALIVE_KEY_PREFIX) {
            self.live.insert(name.to_string());
            return true;
        }
        if key.starts_with(HOST_KEY_PREFIX) {
            if let Ok(h) = serde_json::from_str::<HostRecord>(value) {
                self.hosts.insert(h.name.clone(), h);
            }
            return true;
        }
        false
    }

    /// Forgets one removed setting; true when it was a host's.
    pub fn remove(&mut self, key: &str) -> bool {
        if let Some(name) = key.strip_prefix(ALIVE_KEY_PREFIX) {
            self.live.remove(name);
            return true;
        }
        if let Some(name) = key.strip_prefix(HOST_KEY_PREFIX) {
            self.hosts.remove(name);
            return true;
        }
        false
    }

    /// The directory of `(key, value)` settings (registrations and liveness).
    pub fn from_settings(settings: &[(String, String)]) -> HostDirectory {
        let mut d = HostDirectory::default();
        for (k, v) in settings {
            d.set(k, v);
        }
        d
    }

    /// Whether the host is registered and live.
    pub fn is_live(&self, name: &str) -> bool {
        self.hosts.contains_key(name) && self.live.contains(name)
    }
}

/// The host serving a zone for instances recorded without a host (launched
/// before any host registered): the first host, by name, whose
/// registration lists it, live or not, so a lapsed lease moves nothing.
pub fn host_of_zone<'h>(hosts: &'h Hosts, zone: &str) -> Option<&'h HostRecord> {
    hosts.values().find(|h| h.zones.iter().any(|z| z == zone))
}

/// The host an instance is on: the one it was placed on (None while that
/// host is not registered: the instance is then realized nowhere), or, for
/// an instance recorded without one, the host serving its zone.
pub fn host_of_instance<'h>(hosts: &'h Hosts, inst: &Instance) -> Option<&'h HostRecord> {
    match &inst.host {
        Some(name) => hosts.get(name),
        None => host_of_zone(hosts, &inst.az),
    }
}

/// The host name DescribeInstances shows: where it was placed, or the host
/// serving its zone.
pub fn host_name_of_instance<'h>(hosts: &'h Hosts, inst: &'h Instance) -> Option<&'h str> {
    match &inst.host {
        Some(name) => Some(name.as_str()),
        None => host_of_zone(hosts, &inst.az).map(|h| h.name.as_str()),
    }
}

/// Where a new instance of `instance_type` in `zone` goes: nowhere (None)
/// while no host is registered (one host, or a cluster without agents);
/// else the first live host, by name, serving the zone. With hosts but no
/// live one serving the zone it fails as AWS does without capacity in a
/// zone (`InsufficientInstanceCapacity`), naming the region's zones
/// (`region_zones`) that a live host serves.
pub fn place(
    dir: &HostDirectory,
    zone: &str,
    instance_type: &str,
    region_zones: &[String],
) -> Result<Option<String>> {
    if dir.hosts.is_empty() {
        return Ok(None);
    }
    let serves = |h: &HostRecord, z: &str| h.zones.iter().any(|x| x == z);
    let live = |z: &str| {
        dir.hosts
            .values()
            .find(|h| serves(h, z) && dir.live.contains(&h.name))
    };
    if let Some(h) = live(zone) {
        return Ok(Some(h.name.clone()));
    }
    let others: Vec<&str> = region_zones
        .iter()
        .map(String::as_str)
        .filter(|z| *z != zone && live(z).is_some())
        .collect();
    let mut message = format!(
        "We currently do not have sufficient {instance_type} capacity in the Availability Zone you requested ({zone}). Our system will be working on provisioning additional capacity."
    );
    if !others.is_empty() {
        message.push_str(&format!(
            " You can currently get {instance_type} capacity by not specifying an Availability Zone in your request or choosing {}.",
            others.join(", ")
        ));
    }
    Err(Fault::new("InsufficientInstanceCapacity", message))
}

/// The instances on host `name` that keep it in use (all but terminated
/// ones), by ID.
pub fn instances_on<'w>(world: &'w World, hosts: &Hosts, name: &str) -> Vec<&'w Instance> {
    world
        .iter::<Instance>()
        .filter(|i| i.state != InstanceState::Terminated)
        .filter(|i| {
            host_of_instance(hosts, i).is_some_and(|h| h.name == name)
                || i.host.as_deref() == Some(name)
        })
        .collect()
}

/// Every readable registration among `(key, value)` settings.
pub fn parse_hosts(settings: &[(String, String)]) -> Hosts {
    settings
        .iter()
        .filter(|(k, _)| k.starts_with(HOST_KEY_PREFIX))
        .filter_map(|(_, v)| serde_json::from_str::<HostRecord>(v).ok())
        .map(|h| (h.name.clone(), h))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, zones: &[&str]) -> HostRecord {
        HostRecord {
            name: name.into(),
            zones: zones.iter().map(|z| z.to_string()).collect(),
            underlay: Ipv4Addr::new(100, 72, 0, 1),
            tag: "0000".into(),
            pid: 1,
        }
    }

    fn directory(hosts: &[HostRecord], live: &[&str]) -> HostDirectory {
        HostDirectory {
            hosts: hosts.iter().map(|h| (h.name.clone(), h.clone())).collect(),
            live: live.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn zones() -> Vec<String> {
        ["us-east-1a", "us-east-1b", "us-east-1c"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn a_new_instance_goes_to_the_first_live_host_serving_its_zone() {
        let hosts = [
            host("h1", &["us-east-1a"]),
            host("h2", &["us-east-1b"]),
            host("h3", &["us-east-1a", "us-east-1c"]),
        ];
        let all = directory(&hosts, &["h1", "h2", "h3"]);
        assert_eq!(
            place(&all, "us-east-1a", "t3.micro", &zones()).unwrap(),
            Some("h1".into())
        );
        // h1's lease lapsed: h3 serves the zone too.
        let no_h1 = directory(&hosts, &["h2", "h3"]);
        assert_eq!(
            place(&no_h1, "us-east-1a", "t3.micro", &zones()).unwrap(),
            Some("h3".into())
        );
        // Nobody live serves it: AWS's capacity error, naming where there is some.
        let only_h2 = directory(&hosts, &["h2"]);
        let e = place(&only_h2, "us-east-1a", "t3.micro", &zones()).unwrap_err();
        assert_eq!(e.code, "InsufficientInstanceCapacity");
        assert_eq!(
            e.message,
            "We currently do not have sufficient t3.micro capacity in the Availability Zone you requested (us-east-1a). Our system will be working on provisioning additional capacity. You can currently get t3.micro capacity by not specifying an Availability Zone in your request or choosing us-east-1b."
        );
        // A zone no host serves at all, with nothing live anywhere else.
        let e = place(&directory(&hosts, &[]), "us-east-1d", "t3.micro", &zones()).unwrap_err();
        assert_eq!(e.code, "InsufficientInstanceCapacity");
        assert!(e.message.ends_with("additional capacity."), "{}", e.message);
        // Liveness without a registration places nothing there.
        let ghost = directory(&hosts[1..2], &["h1", "h2"]);
        assert!(place(&ghost, "us-east-1a", "t3.micro", &zones()).is_err());
        // No host registered: nothing to place on (one host, or API servers only).
        assert_eq!(
            place(
                &HostDirectory::default(),
                "us-east-1a",
                "t3.micro",
                &zones()
            )
            .unwrap(),
            None
        );
    }

    #[test]
    fn the_directory_follows_registrations_and_liveness_settings() {
        let h1 = serde_json::to_string(&host("h1", &["us-east-1a"])).unwrap();
        let mut d = HostDirectory::from_settings(&[
            ("host/h1".into(), h1.clone()),
            ("alive/h1".into(), "{}".into()),
            ("gateway/h1".into(), "{}".into()),
        ]);
        assert!(d.is_live("h1"));
        assert!(!d.set("gateway/h2", "{}"));
        assert!(d.remove("alive/h1"));
        assert!(!d.is_live("h1") && d.hosts.contains_key("h1"));
        assert!(d.set("alive/h1", "{}"));
        assert!(d.remove("host/h1"));
        assert!(!d.is_live("h1") && d.hosts.is_empty());
        assert!(!d.remove("clock_offset_ms"));
    }
}
