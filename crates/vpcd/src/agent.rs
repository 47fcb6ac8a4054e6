//! `vpcd agent`: one host's data plane on a shared store (`docs/cluster.md`).
//!
//! The agent registers its host (name, zones, underlay address, data-plane
//! tag, pid) under the store's setting `host/<name>`, loads the World and
//! follows every commit with the same watch the API servers use, and on
//! each change runs the one-host reconciler with the cluster's placement
//! (`vpc_dataplane::placement`): only this host's instances, every router
//! with VXLAN links to the other hosts (`vpc_dataplane::underlay`). The
//! reconciler stays level-triggered and idempotent, so a restarted agent
//! adopts what the kernel holds without touching live traffic. The agent
//! also runs the VPCs' Amazon-provided DNS servers in its router namespaces
//! (`crate::resolver`, as `vpcd serve` does), answering from its World, so
//! each host resolves for its own instances. Inter-region peerings cross
//! the backbone across hosts (`crate::agent_backbone`): encrypted between
//! the region gateways of the hosts, never as VXLAN.

use crate::agent_ops::{Published, CLOCK_OFFSET_KEY};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::Duration;
use vpc_dataplane::placement::{self, HostRecord, Placement};
use vpc_dataplane::underlay::{Underlay, VxlanRouter};
use vpc_dataplane::{Dataplane, NsRole};
use vpc_model::World;
use vpc_store::{StateStore, Update};

#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// This host's name (letters, digits and `-`, at most 12).
    #[arg(long)]
    pub host: String,
    /// The availability zones this host serves, e.g. us-east-1a,us-east-1b.
    #[arg(long, value_delimiter = ',', required = true)]
    pub zones: Vec<String>,
    /// This host's address on the underlay (the VXLAN tunnels' endpoint).
    #[arg(long)]
    pub underlay_addr: Ipv4Addr,
    /// The network namespace holding the underlay address (a lab host's);
    /// by default the agent's own.
    #[arg(long)]
    pub underlay_netns: Option<String>,
    /// The data-plane tag (4 hex digits) of this host's namespaces; by
    /// default the one the host registered before, or a new one.
    #[arg(long)]
    pub tag: Option<String>,
    /// Forward DNS questions for names outside vpcd's zones to this
    /// resolver, HOST:PORT (as `vpcd serve --dns-upstream`). Without it
    /// they get NXDOMAIN at once and no DNS query leaves the host.
    #[arg(long, value_parser = crate::resolver::upstream_addr)]
    pub dns_upstream: Option<SocketAddr>,
    /// Where this host's region gateways keep their WireGuard keys
    /// (`backbone/<region>.key`); by default `agent-<host>` in vpcd's
    /// data directory.
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
    /// Seconds between reads of this host's data-transfer counters (as
    /// `vpcd serve --meter-interval-secs`); a crash loses at most this much.
    #[arg(long, env = "VPCD_METER_INTERVAL_SECS", default_value_t = 60.0, value_parser = crate::positive_secs)]
    pub meter_interval_secs: f64,
    /// Where this host writes flow-log records (the layout of `vpcd serve`'s
    /// `<data-dir>/flow-logs/`); without it flow logs are not collected here.
    #[arg(long)]
    pub flow_log_dir: Option<std::path::PathBuf>,
    /// Serve this host's Prometheus metrics at http://ADDR/metrics (as
    /// `vpcd serve --metrics`, without authentication: keep ADDR private).
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Seconds the host's liveness outlives the agent (`alive/<host>`, on an
    /// etcd lease renewed three times per period): after the agent dies,
    /// new instances stop going to this host once it lapsed.
    #[arg(long, env = "VPCD_LIVENESS_TTL_SECS", default_value_t = 10, value_parser = clap::value_parser!(i64).range(2..=300))]
    pub liveness_ttl_secs: i64,
    #[command(flatten)]
    pub store: crate::store_args::StoreArgs,
}

fn valid_host_name(name: &str) -> bool {
    (1..=12).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Every registered host, by name.
fn registered_hosts(store: &mut dyn StateStore) -> Result<BTreeMap<String, HostRecord>> {
    let mut hosts = BTreeMap::new();
    for (key, value) in store.settings_with_prefix(placement::HOST_KEY_PREFIX)? {
        match serde_json::from_str::<HostRecord>(&value) {
            Ok(h) => {
                hosts.insert(h.name.clone(), h);
            }
            Err(e) => tracing::warn!(key = %key, "unreadable host registration: {e}"),
        }
    }
    Ok(hosts)
}

pub fn run(args: AgentArgs) -> Result<()> {
    if !valid_host_name(&args.host) {
        bail!(
            "--host {:?}: a host name is 1 to 12 lowercase letters, digits or '-'",
            args.host
        );
    }
    let location = args.store.location(std::path::Path::new("."))?;
    if !location.is_shared() {
        bail!("vpcd agent needs a shared store: --store etcd://HOST:PORT[,...]");
    }
    if !crate::is_root() {
        bail!("vpcd agent realizes the data plane and must run as root");
    }
    let mut store = vpc_store::open(&location).with_context(|| format!("opening {location}"))?;
    let key = placement::host_key(&args.host);
    let before = store
        .get_setting(&key)?
        .and_then(|v| serde_json::from_str::<HostRecord>(&v).ok());
    let tag = match (&args.tag, &before) {
        (Some(t), _) => t.clone(),
        (None, Some(h)) => h.tag.clone(),
        (None, None) => format!("{:04x}", rand::random::<u16>()),
    };
    let me = HostRecord {
        name: args.host.clone(),
        zones: args.zones.clone(),
        underlay: args.underlay_addr,
        tag: tag.clone(),
        pid: std::process::id(),
    };
    let snapshot = store.load()?;
    let updates = store
        .follow(snapshot.as_of)?
        .context("the store streams no updates")?;
    let registration = serde_json::to_string(&me)?;
    store.set_setting(&key, &registration)?;
    // Live while this process runs: new instances may be placed here.
    let liveness = serde_json::to_string(&placement::Liveness {
        host: args.host.clone(),
        pid: me.pid,
    })?;
    let _liveness = store
        .hold_setting(
            &placement::alive_key(&args.host),
            &liveness,
            args.liveness_ttl_secs,
        )
        .context("keeping the host's liveness in the store")?;
    let mut hosts = registered_hosts(&mut *store)?;
    hosts.insert(me.name.clone(), me.clone());
    let mut world: World = snapshot.world;

    // VPCD_BIG_TCP=0 turns the bulk-TCP fast path off, as for `vpcd serve`.
    let big_tcp = std::env::var("VPCD_BIG_TCP").map_or(true, |v| v != "0" && v != "off");
    let underlay = Underlay::new(args.underlay_netns.clone(), args.underlay_addr)
        .map_err(|e| anyhow::anyhow!("the underlay: {e}"))?
        .with_big_tcp(big_tcp);
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| crate::default_data_dir().join(format!("agent-{}", args.host)));
    let mut backbone = crate::agent_backbone::AgentBackbone::start(
        &args.host,
        &args.zones,
        args.underlay_addr,
        args.underlay_netns.clone(),
        &data_dir,
        &mut *store,
    )?;
    let mut dp = Dataplane::new(tag.clone())?
        .with_big_tcp(big_tcp)
        .with_peering_link(backbone.link());
    let placement_of = |hosts: &BTreeMap<String, HostRecord>| Placement {
        local: args.host.clone(),
        hosts: hosts.clone(),
        backbone: true,
    };
    dp.set_placement(Some(placement_of(&hosts)));

    // The DNS servers and the meter work from the World this loop last applied.
    let offset = vpc_store::clock::stored_offset_ms(&mut *store)?;
    let published = Published::new(world.clone(), offset);
    published.set_placement(Some(placement_of(&hosts)));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("dns")
        .enable_all()
        .build()
        .context("starting the DNS runtime")?;
    let metrics = match args.metrics_listen {
        Some(addr) => Some(crate::agent_ops::start_metrics(addr, rt.handle())?),
        None => None,
    };
    // The backbone's status file (`vpcd regions status --data-dir`) into /metrics.
    if let Some(m) = &metrics {
        let m = m.clone();
        let export = move |s: &vpc_dataplane::backbone::Status| crate::regions_cli::export(&m, s);
        if let Err(e) = crate::regions_cli::start_metrics(export, &data_dir) {
            tracing::warn!(error = %e, "the backbone's tunnel stats stay out of /metrics");
        }
    }
    let on_query: Option<vpc_dns::QueryHook> = metrics.clone().map(|m| {
        let hook: vpc_dns::QueryHook =
            Arc::new(move |rcode| m.dns_queries.with_label_values(&[rcode]).inc());
        hook
    });
    let (dns, dns_line) = crate::resolver::start(
        &tag,
        args.dns_upstream,
        on_query,
        {
            let published = published.clone();
            Arc::new(move || published.world())
        },
        rt.handle(),
    );
    let meter_every = Duration::from_secs_f64(args.meter_interval_secs);
    let meter_line =
        crate::agent_ops::start_meter(&published, metrics.clone(), &location, &tag, meter_every);
    let flow_line = crate::agent_ops::start_flow_logs(&published, &tag, args.flow_log_dir.clone());
    println!(
        "vpcd agent: host {} serving {} (underlay {}{}), namespaces vpcd{tag}-*; state in {location}; DNS {dns_line}; metering: {meter_line}; flow logs: {flow_line}",
        args.host,
        args.zones.join(","),
        args.underlay_addr,
        args.underlay_netns
            .as_deref()
            .map(|n| format!(" in netns {n}"))
            .unwrap_or_default(),
    );
    let mut world_changed = true;
    loop {
        if world_changed {
            published.publish(world.clone());
        }
        backbone.world(&world, dp.placement());
        pass(&mut dp, &world, &underlay, metrics.as_deref());
        backbone.publish(&mut *store);
        if world_changed {
            // After the pass: the routers it made can get their servers now.
            dns.changed();
        }
        // Level-triggered: every change, and every few seconds anyway (the
        // VXLAN links and the kernel's drift).
        let first = match updates.recv_timeout(Duration::from_secs(5)) {
            Ok(u) => Some(u),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => bail!("the store's update stream ended"),
        };
        let mut hosts_changed = false;
        world_changed = false;
        for update in first.into_iter().chain(updates.try_iter()) {
            match update {
                Update::Commit { put, removed, .. } => {
                    world_changed = true;
                    if let Err(e) = Update::apply(&mut world, &put, &removed) {
                        tracing::error!("cannot apply a commit: {e}");
                    }
                }
                Update::Setting { key, value } if key == CLOCK_OFFSET_KEY => {
                    published.set_clock_offset(&value);
                }
                Update::SettingRemoved { key } => {
                    if backbone.on_setting_removed(&key) {
                        continue;
                    }
                    if key == placement::host_key(&args.host) {
                        // Removed while this agent runs (`vpcd host remove`
                        // refuses that; etcdctl does not): register again.
                        tracing::warn!("this host's registration was removed; registering again");
                        if let Err(e) = store.set_setting(&key, &registration) {
                            tracing::warn!("cannot register again: {e}");
                        }
                    } else if let Some(name) = key.strip_prefix(placement::HOST_KEY_PREFIX) {
                        // A host left the cluster: its VXLAN peers go on the next pass.
                        hosts_changed |= hosts.remove(name).is_some();
                    }
                }
                Update::Setting { key, value } => {
                    if backbone.on_setting(&key, &value) {
                        continue;
                    }
                    if key.starts_with(placement::HOST_KEY_PREFIX) {
                        if let Ok(h) = serde_json::from_str::<HostRecord>(&value) {
                            hosts.insert(h.name.clone(), h);
                            hosts_changed = true;
                        }
                    }
                }
                Update::Reset(snap) => {
                    world = snap.world;
                    world_changed = true;
                    backbone.reload(&mut *store);
                    if let Ok(h) = registered_hosts(&mut *store) {
                        hosts = h;
                        if !hosts.contains_key(&me.name) {
                            // Removed while the watch had lost its place
                            // (its removal event is gone): register again,
                            // as on a removal seen live.
                            tracing::warn!(
                                "this host's registration was removed; registering again"
                            );
                            if let Err(e) =
                                store.set_setting(&placement::host_key(&me.name), &registration)
                            {
                                tracing::warn!("cannot register again: {e}");
                            }
                        }
                        hosts.insert(me.name.clone(), me.clone());
                        hosts_changed = true;
                    }
                }
            }
        }
        if hosts_changed {
            dp.set_placement(Some(placement_of(&hosts)));
            published.set_placement(Some(placement_of(&hosts)));
        }
    }
}

/// One reconcile, then the VXLAN links of the routers it planned; when a
/// link was made, once more (the routes over it can go in now).
fn pass(
    dp: &mut Dataplane,
    world: &World,
    underlay: &Underlay,
    metrics: Option<&vpc_api::metrics::Metrics>,
) {
    for _ in 0..2 {
        let started = std::time::Instant::now();
        let result = dp.reconcile(world);
        if let Err(e) = crate::observe_reconcile(metrics, started, result, dp) {
            tracing::warn!("reconcile failed; retrying on the next change: {e}");
        }
        let (Some(placement), Some(applied)) = (dp.placement(), dp.applied()) else {
            return;
        };
        let routers: Vec<VxlanRouter> = applied
            .values()
            .filter_map(|ns| match &ns.role {
                NsRole::Router { vpc_id } => Some(VxlanRouter {
                    ns: ns.name.clone(),
                    vpc: vpc_id.clone(),
                    middleboxes: placement::middlebox_links(ns),
                }),
                _ => None,
            })
            .collect();
        match underlay.converge(placement, &routers) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("VXLAN links: {e}");
                return;
            }
        }
    }
}
