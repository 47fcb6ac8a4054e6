//! The region backbone: inter-region peerings travel encrypted.
//!
//! Every region with an inter-region peering gets a gateway namespace
//! (`vpcd<tag>-rgw-<region>`). The gateways are joined by an underlay that
//! lives entirely in vpcd's own namespaces: a bridge in `vpcd<tag>-underlay`
//! with one veth port per gateway (`ul0` inside the gateway, an address in
//! 100.64.0.0/10 derived from the region's name). Between each pair of
//! gateways runs one WireGuard session (userspace, boringtun's noise layer,
//! in vpcd's process, `tunnel`), keyed by one key pair per gateway
//! (`keys`).
//!
//! An inter-region peering's link in each VPC router is a persistent TUN
//! device `p-<pcx>` (MTU 1500) instead of a veth: what the router routes to
//! it is read by the gateway's worker, tagged with the peering, encrypted
//! and sent as UDP from the gateway's socket on the underlay; the peer
//! gateway decrypts it and writes it to the peering's TUN device in the
//! peer VPC's router. So plaintext never reaches a gateway namespace or the
//! underlay, and while no worker runs (vpcd restarting, a gateway being
//! rebuilt) the TUN device has no reader and the kernel drops what is
//! routed to it: nothing falls back to a clear path. The gateways' nft
//! table admits on `ul0` only UDP between the WireGuard ports of expected
//! peer gateways and counts whatever else it drops.
//!
//! A supervisor thread re-converges every second: a gateway namespace that
//! vanished is rebuilt, a rotated key is picked up, and the status
//! (`status.json` in the key directory) is written for `vpcd regions status`.

pub mod cluster;
pub mod keys;
pub mod tunnel;
pub mod udp;

use crate::error::CommandError;
use crate::kernel::{Runner, Tools, NETNS_DIR};
use crate::link::{PeeringLinkType, Veth};
use crate::netlink::{self, request, Netlink};
use crate::plan::PeeringLinkSpec;
use keys::{KeyPair, KeyStore};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tunnel::{End, GatewayWorker, Route, TunReader, WG_PORT};

/// The gateway's interface on the underlay.
pub const GATEWAY_LINK: &str = "ul0";
/// The underlay's MTU: an inter-region packet of 1500 bytes plus the
/// peering tag (40), WireGuard (32), UDP (8) and IPv4 (20) fits with room.
pub const UNDERLAY_MTU: u32 = 9000;
/// The queue of a peering's TUN device, in packets: what the router may hand
/// the worker before it reads (the kernel's 500 overflows in TCP's slow start,
/// and each packet dropped there is retransmitted, and metered, again).
const TUN_QUEUE: u32 = 4096;
/// The bridge joining the gateways inside the underlay namespace.
pub const BRIDGE: &str = "br0";
/// The nft table of a gateway namespace.
pub const GATEWAY_TABLE: &str = "vpcdgw";

/// A region's gateway namespace.
pub fn gateway_ns(tag: &str, region: &str) -> String {
    format!("vpcd{tag}-rgw-{region}")
}

/// The namespace holding the underlay bridge.
pub fn underlay_ns(tag: &str) -> String {
    format!("vpcd{tag}-underlay")
}

/// True for the backbone's namespaces (the reconciler leaves them alone).
pub fn is_backbone_ns(tag: &str, name: &str) -> bool {
    name == underlay_ns(tag) || name.starts_with(&format!("vpcd{tag}-rgw-"))
}

/// A region gateway's address on the underlay: in 100.64.0.0/10, from the
/// region's name (stable, nothing to allocate or store).
pub fn underlay_addr(region: &str) -> Ipv4Addr {
    let h = crate::names::fnv1a32(region) % 0x003f_fffe + 1;
    Ipv4Addr::from(0x6440_0000u32 | h)
}

/// The underlay bridge's port for a region's gateway.
fn underlay_port(region: &str) -> String {
    format!("u-{:08x}", crate::names::fnv1a32(region))
}

/// The counters of one nft counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    pub packets: u64,
    pub bytes: u64,
}

/// One region gateway's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayStatus {
    pub region: String,
    /// The gateway's namespace; on a cluster host, the namespace holding
    /// the host's underlay address (empty: the agent's own).
    pub namespace: String,
    pub underlay_address: Ipv4Addr,
    pub public_key: String,
    /// UDP WireGuard packets admitted in and out on the underlay (None on
    /// a cluster host: its gateway has no namespace, so no nft table, of
    /// its own).
    pub wireguard_in: Option<Count>,
    pub wireguard_out: Option<Count>,
    /// Everything else on the underlay, dropped by the gateway's nft table
    /// (None on a cluster host, as above).
    pub underlay_dropped_in: Option<Count>,
    pub underlay_dropped_out: Option<Count>,
    /// Datagrams that reached the WireGuard socket from no peer gateway.
    pub unexpected_datagrams: u64,
    /// The cluster host running the gateway (None on one host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// One end of a region pair's tunnel: `region`'s view of its session with `peer`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelStatus {
    pub region: String,
    pub peer: String,
    /// Milliseconds since the last completed handshake (None: none yet).
    pub handshake_age_ms: Option<u64>,
    /// Inner packets this end sent towards the peer region.
    pub sent: Count,
    /// Inner packets this end received from the peer region and delivered.
    pub received: Count,
    /// Datagrams from the peer's address that were not valid WireGuard.
    pub invalid: u64,
    pub unknown_peering: u64,
    pub send_failed: u64,
    /// The peerings this pair carries.
    pub peerings: Vec<String>,
    /// On a cluster host: the host of the peer gateway this session is with
    /// (one session per peer region's gateway on each host), and its
    /// endpoint on the underlay. None on one host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_endpoint: Option<String>,
}

impl TunnelStatus {
    /// One session's status from its end's counters.
    pub(crate) fn of(e: &End, peerings: Vec<String>) -> TunnelStatus {
        let c = &e.counters;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        TunnelStatus {
            region: e.region.clone(),
            peer: e.peer.clone(),
            handshake_age_ms: e.handshake_age().map(|d| d.as_millis() as u64),
            sent: Count {
                packets: load(&c.sent.packets),
                bytes: load(&c.sent.bytes),
            },
            received: Count {
                packets: load(&c.received.packets),
                bytes: load(&c.received.bytes),
            },
            invalid: load(&c.invalid),
            unknown_peering: load(&c.unknown_peering),
            send_failed: load(&c.send_failed),
            peerings,
            peer_host: None,
            peer_endpoint: None,
        }
    }
}

/// What `vpcd regions status` prints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub gateways: Vec<GatewayStatus>,
    pub tunnels: Vec<TunnelStatus>,
}

impl Status {
    /// The file the running vpcd writes every second.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("backbone").join("status.json")
    }

    /// The status the running vpcd last wrote, if any.
    pub fn read(data_dir: &Path) -> std::io::Result<Option<Status>> {
        match std::fs::read_to_string(Status::path(data_dir)) {
            Ok(t) => serde_json::from_str(&t)
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The peering link type of a data plane with a backbone: a veth within a
/// region, a TUN device into the encrypted backbone between regions.
#[derive(Debug, Clone)]
pub struct Backbone {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tag: String,
    data_dir: PathBuf,
    keys: KeyStore,
    run: Runner,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The inter-region peering links the last reconcile planned.
    wanted: Vec<PeeringLinkSpec>,
    gateways: BTreeMap<String, Gateway>,
    /// The running TUN readers of each peering, by peering ID.
    peerings: BTreeMap<String, PeeringWorkers>,
    /// Last error per thing, so the supervisor logs a failure once.
    errors: BTreeMap<String, String>,
}

#[derive(Debug)]
struct Gateway {
    keys: KeyPair,
    worker: GatewayWorker,
    /// The peer gateways the nft table admits.
    nft_peers: Option<BTreeSet<Ipv4Addr>>,
}

#[derive(Debug)]
struct PeeringWorkers {
    spec: PeeringLinkSpec,
    tag: u64,
    /// (end, reader) for the local and the remote router.
    sides: Vec<(Arc<End>, TunReader)>,
}

impl Drop for PeeringWorkers {
    fn drop(&mut self) {
        for (end, _) in &self.sides {
            end.detach(self.tag);
        }
    }
}

impl Backbone {
    /// A backbone for the data directory `data_dir` (keys live in
    /// `data_dir/backbone`) whose data plane has tag `tag`; starts its
    /// supervisor thread.
    pub fn new(tag: &str, data_dir: &Path) -> Result<Backbone, crate::error::StartError> {
        let inner = Arc::new(Inner {
            tag: tag.to_string(),
            data_dir: data_dir.to_path_buf(),
            keys: KeyStore::new(data_dir),
            run: Runner::new(Tools::find()?),
            state: Mutex::new(State::default()),
        });
        let weak: Weak<Inner> = Arc::downgrade(&inner);
        let _ = std::thread::Builder::new()
            .name("backbone".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_secs(1));
                let Some(inner) = weak.upgrade() else { break };
                inner.supervise();
            });
        Ok(Backbone { inner })
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn supervise(&self) {
        let mut st = self.lock();
        self.converge(&mut st);
        let status = self.status(&st);
        drop(st);
        if let Err(e) = write_status(&self.data_dir, &status) {
            tracing::debug!("cannot write the backbone status: {e}");
        }
    }

    fn note(&self, st: &mut State, what: &str, r: Result<(), String>) {
        match r {
            Ok(()) => {
                st.errors.remove(what);
            }
            Err(e) => {
                if st.errors.get(what) != Some(&e) {
                    tracing::warn!(tag = %self.tag, "backbone: {what}: {e}");
                    st.errors.insert(what.to_string(), e);
                }
            }
        }
    }

    /// Brings gateways, tunnels and TUN readers to what `st.wanted` needs.
    fn converge(&self, st: &mut State) {
        let wanted: Vec<PeeringLinkSpec> = st.wanted.clone();
        let regions: BTreeSet<&str> = wanted
            .iter()
            .flat_map(|s| [s.local_region.as_str(), s.remote_region.as_str()])
            .collect();
        if regions.is_empty() {
            st.peerings.clear();
            st.gateways.clear();
            let r = self.remove_namespaces();
            self.note(st, "removing the backbone", r);
            return;
        }
        let r = ensure_underlay(&self.run, &self.tag).map_err(|e| e.to_string());
        let ok = r.is_ok();
        self.note(st, "underlay", r);
        if !ok {
            return;
        }
        // Gateways: kernel part, keys, socket and threads.
        st.gateways.retain(|r, _| regions.contains(r.as_str()));
        for region in &regions {
            let r = self.ensure_gateway(st, region);
            self.note(st, &format!("gateway {region}"), r);
        }
        // One session per ordered region pair, between the two gateways.
        let mut pairs: BTreeSet<(&str, &str)> = BTreeSet::new();
        for s in &wanted {
            pairs.insert((&s.local_region, &s.remote_region));
            pairs.insert((&s.remote_region, &s.local_region));
        }
        let publics: BTreeMap<String, boringtun::x25519::PublicKey> = st
            .gateways
            .iter()
            .map(|(r, g)| (r.clone(), g.keys.public))
            .collect();
        for (region, g) in &mut st.gateways {
            let peers: BTreeSet<&str> = pairs
                .iter()
                .filter(|(a, _)| a == region)
                .map(|(_, b)| *b)
                .filter(|b| publics.contains_key(*b))
                .collect();
            let addrs: BTreeSet<Ipv4Addr> = peers.iter().map(|p| underlay_addr(p)).collect();
            let ends: BTreeSet<SocketAddrV4> = addrs
                .iter()
                .map(|a| SocketAddrV4::new(*a, WG_PORT))
                .collect();
            for stale in g
                .worker
                .ends
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .keys()
                .filter(|a| !ends.contains(a))
                .copied()
                .collect::<Vec<_>>()
            {
                g.worker.set_end(stale, None);
            }
            for peer in peers {
                let addr = SocketAddrV4::new(underlay_addr(peer), WG_PORT);
                let want_public = publics[peer];
                let fresh = g.worker.end(addr).is_some_and(|e| {
                    e.peer_public.as_bytes() == want_public.as_bytes()
                        && e.own_public.as_bytes() == g.keys.public.as_bytes()
                });
                if !fresh {
                    tracing::info!(%region, %peer, "backbone: (re)starting the tunnel");
                    let end = End::new(
                        region,
                        peer,
                        addr,
                        &g.keys.secret,
                        want_public,
                        g.worker.sock.clone(),
                    );
                    g.worker.set_end(addr, Some(Arc::new(end)));
                }
            }
            if g.nft_peers.as_ref() != Some(&addrs) {
                let ns = gateway_ns(&self.tag, region);
                match self.run.nft(&ns, &gateway_nft(&addrs)) {
                    Ok(()) => g.nft_peers = Some(addrs),
                    Err(e) => tracing::warn!(%region, "backbone: gateway nft: {e}"),
                }
            }
        }
        // TUN readers: one per peering per router, on the current ends.
        let wanted_ids: BTreeSet<&str> = wanted.iter().map(|s| s.pcx_id.as_str()).collect();
        st.peerings.retain(|id, _| wanted_ids.contains(id.as_str()));
        for spec in &wanted {
            let r = self.ensure_peering(st, spec);
            self.note(st, &format!("peering {}", spec.pcx_id), r);
        }
    }

    fn ensure_gateway(&self, st: &mut State, region: &str) -> Result<(), String> {
        let keys = self
            .keys
            .load_or_create(region)
            .map_err(|e| format!("key: {e}"))?;
        let rebuilt = ensure_gateway_ns(&self.run, &self.tag, region).map_err(|e| e.to_string())?;
        let rotated = st
            .gateways
            .get(region)
            .is_some_and(|g| g.keys.public.as_bytes() != keys.public.as_bytes());
        if rotated {
            tracing::info!(%region, public_key = %keys::public_text(&keys.public), "backbone: gateway key rotated");
            if let Some(g) = st.gateways.get_mut(region) {
                g.keys = keys.clone();
            }
        }
        if rebuilt || !st.gateways.contains_key(region) {
            st.gateways.remove(region);
            let ns = gateway_ns(&self.tag, region);
            let sock = bind_in(&ns, SocketAddrV4::new(underlay_addr(region), WG_PORT))
                .map_err(|e| format!("binding the WireGuard socket in {ns}: {e}"))?;
            let worker = GatewayWorker::start(region, sock).map_err(|e| e.to_string())?;
            tracing::info!(%region, public_key = %keys::public_text(&keys.public), "backbone: gateway up");
            st.gateways.insert(
                region.to_string(),
                Gateway {
                    keys,
                    worker,
                    nft_peers: None,
                },
            );
        }
        Ok(())
    }

    fn ensure_peering(&self, st: &mut State, spec: &PeeringLinkSpec) -> Result<(), String> {
        let end_of = |st: &State, region: &str, peer: &str| {
            st.gateways.get(region).and_then(|g| {
                g.worker
                    .end(SocketAddrV4::new(underlay_addr(peer), WG_PORT))
            })
        };
        let (Some(local), Some(remote)) = (
            end_of(st, &spec.local_region, &spec.remote_region),
            end_of(st, &spec.remote_region, &spec.local_region),
        ) else {
            return Err("its gateways are not up".into());
        };
        let current = st.peerings.get(&spec.pcx_id).is_some_and(|p| {
            p.spec == *spec
                && p.sides.len() == 2
                && Arc::ptr_eq(&p.sides[0].0, &local)
                && Arc::ptr_eq(&p.sides[1].0, &remote)
        });
        if current {
            return Ok(());
        }
        st.peerings.remove(&spec.pcx_id);
        let tag = tunnel::peering_tag(&spec.pcx_id);
        let mut sides = Vec::new();
        for (ns, end) in [(&spec.local_ns, local), (&spec.remote_ns, remote)] {
            let dev = Arc::new(
                open_tun(ns, &spec.local_name)
                    .map_err(|e| format!("opening {} in {ns}: {e}", spec.local_name))?,
            );
            end.attach(tag, dev.clone());
            let reader = TunReader::start(&spec.local_name, dev, Route::One(end.clone()), tag)
                .map_err(|e| e.to_string())?;
            sides.push((end, reader));
        }
        st.peerings.insert(
            spec.pcx_id.clone(),
            PeeringWorkers {
                spec: spec.clone(),
                tag,
                sides,
            },
        );
        Ok(())
    }

    /// Deletes the gateway and underlay namespaces (no inter-region peering is left).
    fn remove_namespaces(&self) -> Result<(), String> {
        let all = self.run.netns_list().map_err(|e| e.to_string())?;
        for ns in all.iter().filter(|n| is_backbone_ns(&self.tag, n)) {
            self.run.netns_del(ns).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn status(&self, st: &State) -> Status {
        let mut out = Status::default();
        for (region, g) in &st.gateways {
            let ns = gateway_ns(&self.tag, region);
            let counters = nft_counters(&self.run, &ns).unwrap_or_default();
            let get = |n: &str| counters.get(n).copied().unwrap_or_default();
            out.gateways.push(GatewayStatus {
                region: region.clone(),
                namespace: ns.clone(),
                underlay_address: underlay_addr(region),
                public_key: keys::public_text(&g.keys.public),
                wireguard_in: Some(get("wireguard_in")),
                wireguard_out: Some(get("wireguard_out")),
                underlay_dropped_in: Some(get("underlay_dropped_in")),
                underlay_dropped_out: Some(get("underlay_dropped_out")),
                unexpected_datagrams: g
                    .worker
                    .unexpected
                    .load(std::sync::atomic::Ordering::Relaxed),
                host: None,
            });
            let ends: Vec<Arc<End>> = g
                .worker
                .ends
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .cloned()
                .collect();
            for e in ends {
                let peerings = st
                    .peerings
                    .values()
                    .filter(|p| p.sides.iter().any(|(x, _)| Arc::ptr_eq(x, &e)))
                    .map(|p| p.spec.pcx_id.clone())
                    .collect();
                out.tunnels.push(TunnelStatus::of(&e, peerings));
            }
        }
        out
    }
}

pub(crate) fn write_status(data_dir: &Path, status: &Status) -> std::io::Result<()> {
    let path = Status::path(data_dir);
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(status).unwrap_or_default())?;
    std::fs::rename(tmp, path)
}

impl PeeringLinkType for Backbone {
    fn name(&self) -> &'static str {
        "backbone"
    }

    fn create(&self, run: &Runner, spec: &PeeringLinkSpec) -> Result<(), CommandError> {
        if create_link_pair(run, spec)? {
            // Readers of the old devices (if any) are stale now.
            self.inner.lock().peerings.remove(&spec.pcx_id);
        }
        Ok(())
    }

    fn delete(&self, run: &Runner, ns: &str, name: &str) -> Result<(), CommandError> {
        {
            let mut st = self.inner.lock();
            st.peerings.retain(|_, p| {
                !(p.spec.local_name == name && (p.spec.local_ns == ns || p.spec.remote_ns == ns))
            });
        }
        run.delete_link(ns, name).map(|_| ())
    }

    fn converge(&self, _run: &Runner, wanted: &[&PeeringLinkSpec]) {
        let mut st = self.inner.lock();
        st.wanted = wanted
            .iter()
            .filter(|s| s.inter_region)
            .map(|s| (*s).clone())
            .collect();
        self.inner.converge(&mut st);
    }
}

/// Makes a peering's pair of links: a veth pair within a region; across
/// regions a persistent TUN device in each router, which the gateways'
/// workers attach to (converge; until then the kernel drops what is routed
/// to them). True when it made TUN devices.
pub(crate) fn create_link_pair(run: &Runner, spec: &PeeringLinkSpec) -> Result<bool, CommandError> {
    if !spec.inter_region {
        Veth.create(run, spec)?;
        return Ok(false);
    }
    let _ = run.delete_link(&spec.remote_ns, &spec.remote_name);
    for (ns, name) in [
        (&spec.local_ns, &spec.local_name),
        (&spec.remote_ns, &spec.remote_name),
    ] {
        create_tun(ns, name)?;
    }
    Ok(true)
}

/// Makes the underlay namespace and its bridge if they are missing.
fn ensure_underlay(run: &Runner, tag: &str) -> Result<(), CommandError> {
    let ns = underlay_ns(tag);
    if !Path::new(NETNS_DIR).join(&ns).exists() {
        run.netns_add(&ns)?;
        run.sysctl(&ns, &no_ipv6())?;
    }
    if !run.links(&ns)?.contains_key(BRIDGE) {
        // The underlay namespace only bridges: it sends nothing of its own
        // (not even the IGMP reports of its ports coming up).
        run.nft(
            &ns,
            "table inet vpcdul {}\ndelete table inet vpcdul\ntable inet vpcdul {\n  chain output {\n    type filter hook output priority 0; policy drop;\n  }\n}\n",
        )?;
        let nl = Netlink::open(&ns)?;
        let lo = nl.links()?.get("lo").map(|l| l.index).unwrap_or(1);
        nl.apply(vec![
            request::set_link(
                "lo",
                lo,
                None,
                Some(&crate::names::owner_marker(tag)),
                Some(true),
            ),
            request::add_bridge(BRIDGE),
            request::set_up(BRIDGE, None),
        ])?;
    }
    Ok(())
}

pub(crate) fn no_ipv6() -> Vec<(String, String)> {
    vec![
        ("net.ipv6.conf.all.disable_ipv6".into(), "1".into()),
        ("net.ipv6.conf.default.disable_ipv6".into(), "1".into()),
    ]
}

/// Makes a region's gateway namespace and its port on the underlay if they
/// are missing; true when anything was (re)made (the socket must be bound anew).
fn ensure_gateway_ns(run: &Runner, tag: &str, region: &str) -> Result<bool, CommandError> {
    let ns = gateway_ns(tag, region);
    let underlay = underlay_ns(tag);
    let port = underlay_port(region);
    let exists = Path::new(NETNS_DIR).join(&ns).exists();
    if exists
        && run.links(&ns)?.contains_key(GATEWAY_LINK)
        && run.links(&underlay)?.contains_key(&port)
    {
        return Ok(false);
    }
    if !exists {
        run.netns_add(&ns)?;
        run.sysctl(&ns, &no_ipv6())?;
    }
    // The guard before the link: nothing (not even the IGMP report of an
    // interface coming up) leaves before the table admitting the peers is in.
    run.nft(&ns, &gateway_nft(&BTreeSet::new()))?;
    run.delete_link(&underlay, &port)?;
    run.delete_link(&ns, GATEWAY_LINK)?;
    run.create_veth(&underlay, &port, &ns, GATEWAY_LINK, UNDERLAY_MTU)?;
    let ul = Netlink::open(&underlay)?;
    let bridge = ul.links()?.get(BRIDGE).map(|l| l.index).ok_or_else(|| {
        netlink::failure(
            &underlay,
            "find the bridge",
            &std::io::Error::other("missing"),
        )
    })?;
    ul.apply(vec![request::set_up(&port, Some(bridge))])?;
    let nl = Netlink::open(&ns)?;
    let links = nl.links()?;
    let index = |name: &str| links.get(name).map(|l| l.index).unwrap_or(0);
    let addr = ipnet::IpNet::new(underlay_addr(region).into(), 10)
        .map_err(|e| netlink::failure(&ns, "the underlay address", &std::io::Error::other(e)))?;
    nl.apply(vec![
        request::set_link(
            "lo",
            index("lo"),
            None,
            Some(&crate::names::owner_marker(tag)),
            Some(true),
        ),
        request::add_addr(GATEWAY_LINK, index(GATEWAY_LINK), &addr, false),
        request::set_up(GATEWAY_LINK, None),
    ])?;
    Ok(true)
}

/// The gateway's nft table: on the underlay only WireGuard's UDP port to
/// and from the expected peer gateways; everything else is counted and dropped.
fn gateway_nft(peers: &BTreeSet<Ipv4Addr>) -> String {
    let mut b = String::new();
    for c in [
        "wireguard_in",
        "wireguard_out",
        "underlay_dropped_in",
        "underlay_dropped_out",
    ] {
        b.push_str(&format!("  counter {c} {{}}\n"));
    }
    b.push_str("  chain input {\n    type filter hook input priority 0; policy accept;\n");
    for p in peers {
        b.push_str(&format!(
            "    iifname \"{GATEWAY_LINK}\" ip saddr {p} udp sport {WG_PORT} udp dport {WG_PORT} counter name wireguard_in accept\n"
        ));
    }
    b.push_str(&format!(
        "    iifname \"{GATEWAY_LINK}\" counter name underlay_dropped_in drop\n  }}\n"
    ));
    b.push_str("  chain output {\n    type filter hook output priority 0; policy accept;\n");
    for p in peers {
        b.push_str(&format!(
            "    oifname \"{GATEWAY_LINK}\" ip daddr {p} udp sport {WG_PORT} udp dport {WG_PORT} counter name wireguard_out accept\n"
        ));
    }
    b.push_str(&format!(
        "    oifname \"{GATEWAY_LINK}\" counter name underlay_dropped_out drop\n  }}\n"
    ));
    b.push_str("  chain forward {\n    type filter hook forward priority 0; policy drop;\n  }\n");
    format!("table inet {GATEWAY_TABLE} {{}}\ndelete table inet {GATEWAY_TABLE}\ntable inet {GATEWAY_TABLE} {{\n{b}}}\n")
}

/// The named counters of a gateway's nft table.
fn nft_counters(run: &Runner, ns: &str) -> Result<BTreeMap<String, Count>, CommandError> {
    let nft = Tools::find()
        .map(|t| t.nft)
        .unwrap_or_else(|_| PathBuf::from("nft"));
    let out = run.exec(
        ns,
        &nft,
        &["-j", "list", "counters", "table", "inet", GATEWAY_TABLE],
        None,
    )?;
    let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| CommandError::Output {
        cmd: format!("nft -j list counters (in {ns})"),
        detail: e.to_string(),
    })?;
    let mut m = BTreeMap::new();
    for item in v
        .get("nftables")
        .and_then(|x| x.as_array())
        .into_iter()
        .flatten()
    {
        if let Some(c) = item.get("counter") {
            let name = c.get("name").and_then(|x| x.as_str()).unwrap_or_default();
            let get = |k: &str| c.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
            m.insert(
                name.to_string(),
                Count {
                    packets: get("packets"),
                    bytes: get("bytes"),
                },
            );
        }
    }
    Ok(m)
}

/// Runs `f` on a thread that has entered the network namespace `ns`.
pub(crate) fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let path = Path::new(NETNS_DIR).join(ns);
    std::thread::Builder::new()
        .name("backbone-setns".into())
        .spawn(move || {
            let file = std::fs::File::open(&path)?;
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)?;
            f()
        })?
        .join()
        .map_err(|_| std::io::Error::other("the namespace thread panicked"))?
}

/// A gateway's WireGuard socket, bound inside a namespace.
fn bind_in(ns: &str, at: SocketAddrV4) -> std::io::Result<UdpSocket> {
    in_netns(ns, move || tunnel::bind_socket(at))
}

/// Makes the persistent TUN device `name` (down, no address: the plan
/// configures it as any peering link) inside a namespace, with the queue
/// and segment limit the workers expect (`tunnel`).
pub(crate) fn create_tun(ns: &str, name: &str) -> Result<(), CommandError> {
    let owned = name.to_string();
    in_netns(ns, move || {
        let dev = tun_rs::DeviceBuilder::new()
            .name(owned)
            .inherit_enable_state()
            .build_sync()?;
        dev.persist()
    })
    .map_err(|e| netlink::failure(ns, &format!("create the TUN device {name}"), &e))?;
    Netlink::open(ns)?
        .apply(vec![request::set_queue(
            name,
            TUN_QUEUE,
            tunnel::TUN_GSO_MAX_SEGS,
        )])
        .map(|_| ())
}

/// Attaches to the persistent TUN device `name` inside a namespace.
pub(crate) fn open_tun(ns: &str, name: &str) -> std::io::Result<tun_rs::SyncDevice> {
    let name = name.to_string();
    in_netns(ns, move || {
        // With offload: the router hands over whole TCP super-packets
        // (`tunnel`), and takes coalesced ones.
        tun_rs::DeviceBuilder::new()
            .name(name)
            .inherit_enable_state()
            .offload(true)
            .build_sync()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses_are_stable_and_distinct() {
        assert_eq!(gateway_ns("1a2b", "us-west-2"), "vpcd1a2b-rgw-us-west-2");
        assert!(is_backbone_ns("1a2b", "vpcd1a2b-rgw-us-west-2"));
        assert!(is_backbone_ns("1a2b", "vpcd1a2b-underlay"));
        assert!(!is_backbone_ns("1a2b", "vpcd1a2b-vpc-1"));
        assert!(!is_backbone_ns("1a2b", "vpcdffff-rgw-us-west-2"));
        let addrs: BTreeSet<Ipv4Addr> = vpc_model::region::DEFAULT_REGIONS
            .iter()
            .map(|(r, _)| underlay_addr(r))
            .collect();
        assert_eq!(addrs.len(), vpc_model::region::DEFAULT_REGIONS.len());
        for a in &addrs {
            let n = u32::from(*a);
            assert_eq!(n & 0xffc0_0000, 0x6440_0000, "{a} is in 100.64.0.0/10");
            assert!(n & 0x003f_ffff != 0 && n & 0x003f_ffff != 0x003f_ffff);
        }
        assert!(underlay_port("us-east-1").len() <= 15);
    }

    #[test]
    fn the_gateway_admits_only_wireguard_from_its_peers() {
        let peers: BTreeSet<Ipv4Addr> = [underlay_addr("us-west-2")].into();
        let t = gateway_nft(&peers);
        assert!(t.contains(&format!(
            "iifname \"ul0\" ip saddr {} udp sport 51820 udp dport 51820 counter name wireguard_in accept",
            underlay_addr("us-west-2")
        )));
        assert!(t.contains("iifname \"ul0\" counter name underlay_dropped_in drop"));
        assert!(t.contains("oifname \"ul0\" counter name underlay_dropped_out drop"));
        // With no peer, nothing is admitted on the underlay.
        let none = gateway_nft(&BTreeSet::new());
        assert!(!none.contains("accept\n"));
    }
}
