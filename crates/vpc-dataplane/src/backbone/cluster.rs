//! The backbone across hosts: inter-region peerings in a cluster of
//! `vpcd agent`s (`docs/cluster.md`, "Inter-region peerings across hosts").
//!
//! The same parts as on one host (`super`): one WireGuard key pair per region
//! gateway (`keys`), the gateway workers and sessions (`tunnel::GatewayWorker`,
//! `tunnel::End`), a persistent TUN device per peering in each VPC router,
//! read by a `tunnel::TunReader`. What differs is where the gateways are and
//! which session a packet takes:
//!
//! * each agent runs a gateway for every region it serves (one of its zones
//!   is in it) that an inter-region peering touches. Its WireGuard socket is
//!   bound on the host's own underlay address (in the underlay namespace),
//!   on a port of its own per region; there is no gateway namespace and no
//!   internal bridge;
//! * the agent publishes its gateways (region, port, public key) in the
//!   store under `gateway/<host>` ([`HostGateways`]); every agent reads all
//!   of them into its directory, so it knows every peer gateway's endpoint
//!   and key; its own entry it knows at once;
//! * a gateway of region R holds one session with every gateway of region R'
//!   (on every host, this one included) for each region pair R–R' that a
//!   wanted peering joins;
//! * a peering side's TUN reader (in the router of the side's VPC, on a host
//!   serving the side's region) sends each packet to the session with the
//!   peer region's gateway **on the host where its destination instance
//!   lives** ([`tunnel::Destinations`], from [`destinations`]); that gateway
//!   decrypts it into the peering's TUN device in the peer VPC's router
//!   there, which delivers to the local instance. A packet to an address
//!   the map does not hold is dropped and counted, never sent in clear. So
//!   each router enforces its side exactly as within a region (the sender's
//!   its egress rules, the receiver's its ingress rules and connection
//!   state) and an inter-region packet crosses the underlay only inside
//!   WireGuard: never as VXLAN.
//!
//! Every second the supervisor also writes the status `vpcd regions status
//! --data-dir <the agent's>` prints (`status.json` beside the keys, as on one
//! host): each gateway, and each session with the peer gateway's host.
//!
//! While no reader runs (the agent restarting, a gateway's socket being
//! rebound) the TUN devices have no reader and the kernel drops what is
//! routed to them. A restarted agent loads the same keys, binds the same
//! ports and reattaches to the persistent TUN devices.

use super::keys::{self, KeyPair, KeyStore};
use super::tunnel::{self, Destinations, End, GatewayWorker, Route, TunReader, WG_PORT};
use super::{
    create_link_pair, in_netns, open_tun, write_status, GatewayStatus, Status, TunnelStatus,
};
use crate::error::CommandError;
use crate::kernel::{Runner, Tools};
use crate::link::PeeringLinkType;
use crate::placement::Placement;
use crate::plan::PeeringLinkSpec;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tun_rs::SyncDevice;
use vpc_model::{NetworkInterface, Peering, World};

/// The store settings' prefix of the hosts' published gateways.
pub const GATEWAY_KEY_PREFIX: &str = "gateway/";

/// The store setting holding a host's gateways.
pub fn gateway_key(host: &str) -> String {
    format!("{GATEWAY_KEY_PREFIX}{host}")
}

/// One region gateway's endpoint, as published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayEndpoint {
    /// The UDP port of its WireGuard socket on the host's underlay address.
    pub port: u16,
    /// Its public key (WireGuard's base64).
    pub public_key: String,
}

/// A host's gateways, as published under `gateway/<host>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostGateways {
    pub host: String,
    pub underlay: Ipv4Addr,
    /// By region.
    pub gateways: BTreeMap<String, GatewayEndpoint>,
}

/// The region of an availability zone (`us-east-1a` → `us-east-1`).
pub fn region_of_zone(zone: &str) -> &str {
    zone.trim_end_matches(|c: char| c.is_ascii_lowercase())
}

/// The port a host's gateway of `region` tries first (the next ones if it is taken).
pub fn preferred_port(region: &str) -> u16 {
    WG_PORT + 1 + (crate::names::fnv1a32(region) % 997) as u16
}

/// Where one inter-region peering's packets go, by side: the instance
/// addresses of the peer VPC with the host each lives on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeeringDestinations {
    /// For the requester's router: the accepter VPC's addresses.
    pub from_requester: BTreeMap<IpAddr, String>,
    /// For the accepter's router: the requester VPC's addresses.
    pub from_accepter: BTreeMap<IpAddr, String>,
}

/// Every inter-region peering's destinations under a placement (pure): the
/// addresses of the instance interfaces of both VPCs, with their hosts.
pub fn destinations(world: &World, placement: &Placement) -> BTreeMap<String, PeeringDestinations> {
    let peerings: Vec<&Peering> = world
        .iter::<Peering>()
        .filter(|p| p.inter_region())
        .collect();
    let vpcs: BTreeSet<&str> = peerings
        .iter()
        .flat_map(|p| [p.requester.vpc_id.as_str(), p.accepter.vpc_id.as_str()])
        .collect();
    let mut by_vpc: BTreeMap<&str, BTreeMap<IpAddr, String>> = BTreeMap::new();
    for eni in world.iter::<NetworkInterface>() {
        if !vpcs.contains(eni.vpc_id.as_str()) {
            continue;
        }
        let on_instance = eni
            .attachment
            .as_ref()
            .is_some_and(|a| a.instance_id.starts_with("i-"));
        let Some(host) = placement
            .host_of_interface(world, eni)
            .filter(|_| on_instance)
        else {
            continue;
        };
        let m = by_vpc.entry(eni.vpc_id.as_str()).or_default();
        for ip in &eni.private_ips {
            m.insert(IpAddr::V4(ip.ip), host.name.clone());
        }
        for ip in &eni.ipv6 {
            m.insert(IpAddr::V6(*ip), host.name.clone());
        }
    }
    peerings
        .into_iter()
        .map(|p| {
            let of = |vpc: &str| by_vpc.get(vpc).cloned().unwrap_or_default();
            (
                p.id.clone(),
                PeeringDestinations {
                    from_requester: of(&p.accepter.vpc_id),
                    from_accepter: of(&p.requester.vpc_id),
                },
            )
        })
        .collect()
}

fn parse_public(text: &str) -> Option<boringtun::x25519::PublicKey> {
    let b = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()?;
    let b: [u8; 32] = b.try_into().ok()?;
    Some(boringtun::x25519::PublicKey::from(b))
}

/// The peering link type of a `vpcd agent`: a veth within a region, a TUN
/// device into the backbone across hosts between regions.
#[derive(Debug, Clone)]
pub struct ClusterBackbone {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    host: String,
    underlay: Ipv4Addr,
    underlay_ns: Option<String>,
    /// The regions this host serves.
    regions: BTreeSet<String>,
    keys: KeyStore,
    /// Where the status is written (`Status::path`).
    data_dir: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    wanted: Vec<PeeringLinkSpec>,
    /// Every other host's published gateways, by host.
    directory: BTreeMap<String, HostGateways>,
    destinations: BTreeMap<String, PeeringDestinations>,
    gateways: BTreeMap<String, LocalGateway>,
    peerings: BTreeMap<String, Vec<Side>>,
    errors: BTreeMap<String, String>,
}

#[derive(Debug)]
struct LocalGateway {
    keys: KeyPair,
    port: u16,
    worker: GatewayWorker,
}

/// One side of a peering on this host: the TUN device in the router of the
/// side's VPC, its reader and the sessions it is attached to.
struct Side {
    spec: PeeringLinkSpec,
    ns: String,
    tag: u64,
    dev: Arc<SyncDevice>,
    destinations: Arc<Destinations>,
    attached: Vec<Arc<End>>,
    _reader: TunReader,
}

impl std::fmt::Debug for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Side")
            .field("pcx", &self.spec.pcx_id)
            .field("ns", &self.ns)
            .finish_non_exhaustive()
    }
}

impl Drop for Side {
    fn drop(&mut self) {
        for e in &self.attached {
            e.detach(self.tag);
        }
    }
}

impl ClusterBackbone {
    /// The backbone of host `host` (underlay address `underlay`, in the
    /// namespace `underlay_ns` or the agent's own), serving `regions`, with
    /// its keys under `data_dir/backbone`; starts its supervisor thread.
    pub fn new(
        host: &str,
        underlay: Ipv4Addr,
        underlay_ns: Option<String>,
        regions: BTreeSet<String>,
        data_dir: &Path,
    ) -> Result<ClusterBackbone, crate::error::StartError> {
        Tools::find()?;
        let inner = Arc::new(Inner {
            host: host.to_string(),
            underlay,
            underlay_ns,
            regions,
            keys: KeyStore::new(data_dir),
            data_dir: data_dir.to_path_buf(),
            state: Mutex::new(State::default()),
        });
        let weak: Weak<Inner> = Arc::downgrade(&inner);
        let _ = std::thread::Builder::new()
            .name("backbone".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_secs(1));
                let Some(inner) = weak.upgrade() else { break };
                let mut st = inner.lock();
                inner.converge(&mut st);
                let status = inner.status(&st);
                drop(st);
                if let Err(e) = write_status(&inner.data_dir, &status) {
                    tracing::debug!("cannot write the backbone status: {e}");
                }
            });
        Ok(ClusterBackbone { inner })
    }

    /// Records another host's published gateways (None: it has none).
    pub fn set_host(&self, host: &str, gateways: Option<HostGateways>) {
        let mut st = self.inner.lock();
        match gateways {
            Some(g) => st.directory.insert(host.to_string(), g),
            None => st.directory.remove(host),
        };
    }

    /// Replaces the peerings' destinations (from [`destinations`]).
    pub fn set_destinations(&self, d: BTreeMap<String, PeeringDestinations>) {
        let mut st = self.inner.lock();
        if st.destinations != d {
            st.destinations = d;
            self.inner.converge(&mut st);
        }
    }

    /// This host's gateways, to publish.
    pub fn published(&self) -> HostGateways {
        self.inner.own(&self.inner.lock())
    }

    /// Packets the TUN readers dropped because no session leads to their
    /// destination's host (yet).
    pub fn unroutable(&self) -> u64 {
        let st = self.inner.lock();
        st.peerings
            .values()
            .flatten()
            .map(|s| {
                s.destinations
                    .unroutable
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .sum()
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn note(&self, st: &mut State, what: &str, r: Result<(), String>) {
        match r {
            Ok(()) => {
                st.errors.remove(what);
            }
            Err(e) => {
                if st.errors.get(what) != Some(&e) {
                    tracing::warn!(host = %self.host, "backbone: {what}: {e}");
                    st.errors.insert(what.to_string(), e);
                }
            }
        }
    }

    fn own(&self, st: &State) -> HostGateways {
        HostGateways {
            host: self.host.clone(),
            underlay: self.underlay,
            gateways: st
                .gateways
                .iter()
                .map(|(r, g)| {
                    (
                        r.clone(),
                        GatewayEndpoint {
                            port: g.port,
                            public_key: keys::public_text(&g.keys.public),
                        },
                    )
                })
                .collect(),
        }
    }

    /// What `vpcd regions status` prints: this host's gateways and their
    /// sessions, each with its peer gateway's host.
    fn status(&self, st: &State) -> Status {
        let mut out = Status::default();
        let mut directory = st.directory.clone();
        directory.insert(self.host.clone(), self.own(st));
        for (region, g) in &st.gateways {
            out.gateways.push(GatewayStatus {
                region: region.clone(),
                namespace: self.underlay_ns.clone().unwrap_or_default(),
                underlay_address: self.underlay,
                public_key: keys::public_text(&g.keys.public),
                wireguard_in: None,
                wireguard_out: None,
                underlay_dropped_in: None,
                underlay_dropped_out: None,
                unexpected_datagrams: g
                    .worker
                    .unexpected
                    .load(std::sync::atomic::Ordering::Relaxed),
                host: Some(self.host.clone()),
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
                    .iter()
                    .filter(|(_, sides)| {
                        sides
                            .iter()
                            .any(|s| s.attached.iter().any(|x| Arc::ptr_eq(x, &e)))
                    })
                    .map(|(id, _)| id.clone())
                    .collect();
                let mut t = TunnelStatus::of(&e, peerings);
                t.peer_host = directory
                    .values()
                    .find(|hg| {
                        hg.underlay == *e.peer_addr.ip()
                            && hg
                                .gateways
                                .get(&e.peer)
                                .is_some_and(|ep| ep.port == e.peer_addr.port())
                    })
                    .map(|hg| hg.host.clone());
                t.peer_endpoint = Some(e.peer_addr.to_string());
                out.tunnels.push(t);
            }
        }
        out
    }

    /// Brings gateways, sessions and TUN readers to what `st.wanted` needs.
    fn converge(&self, st: &mut State) {
        let wanted = st.wanted.clone();
        let needed: BTreeSet<String> = wanted
            .iter()
            .flat_map(|s| [s.local_region.clone(), s.remote_region.clone()])
            .filter(|r| self.regions.contains(r))
            .collect();
        st.peerings
            .retain(|id, _| wanted.iter().any(|s| &s.pcx_id == id));
        st.gateways.retain(|r, _| needed.contains(r));
        for region in &needed {
            let r = self.ensure_gateway(st, region);
            self.note(st, &format!("gateway {region}"), r);
        }
        // Every host's gateways, this one's included.
        let mut directory = st.directory.clone();
        directory.insert(self.host.clone(), self.own(st));
        // Sessions: gateway R with every gateway of each region R' a wanted
        // peering joins to R.
        for (region, g) in &st.gateways {
            let peer_regions: BTreeSet<&str> = wanted
                .iter()
                .filter_map(|s| {
                    if &s.local_region == region {
                        Some(s.remote_region.as_str())
                    } else if &s.remote_region == region {
                        Some(s.local_region.as_str())
                    } else {
                        None
                    }
                })
                .collect();
            let mut want: BTreeMap<SocketAddrV4, (String, boringtun::x25519::PublicKey)> =
                BTreeMap::new();
            for hg in directory.values() {
                for peer in &peer_regions {
                    let Some(ep) = hg.gateways.get(*peer) else {
                        continue;
                    };
                    let Some(public) = parse_public(&ep.public_key) else {
                        tracing::warn!(host = %hg.host, %peer, "backbone: an unreadable public key");
                        continue;
                    };
                    want.insert(
                        SocketAddrV4::new(hg.underlay, ep.port),
                        (peer.to_string(), public),
                    );
                }
            }
            let current: Vec<SocketAddrV4> = g
                .worker
                .ends
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .keys()
                .copied()
                .collect();
            for stale in current.iter().filter(|a| !want.contains_key(a)) {
                g.worker.set_end(*stale, None);
            }
            for (addr, (peer, public)) in want {
                let fresh = g.worker.end(addr).is_some_and(|e| {
                    e.peer == peer
                        && e.peer_public.as_bytes() == public.as_bytes()
                        && e.own_public.as_bytes() == g.keys.public.as_bytes()
                });
                if !fresh {
                    tracing::info!(%region, %peer, %addr, "backbone: (re)starting the tunnel");
                    let end = End::new(
                        region,
                        &peer,
                        addr,
                        &g.keys.secret,
                        public,
                        g.worker.sock.clone(),
                    );
                    g.worker.set_end(addr, Some(Arc::new(end)));
                }
            }
        }
        for spec in &wanted {
            let r = self.ensure_peering(st, spec, &directory);
            self.note(st, &format!("peering {}", spec.pcx_id), r);
        }
    }

    fn ensure_gateway(&self, st: &mut State, region: &str) -> Result<(), String> {
        let keys = self
            .keys
            .load_or_create(region)
            .map_err(|e| format!("key: {e}"))?;
        let rotated = st
            .gateways
            .get(region)
            .is_some_and(|g| g.keys.public.as_bytes() != keys.public.as_bytes());
        if rotated {
            tracing::info!(%region, public_key = %keys::public_text(&keys.public), "backbone: gateway key rotated");
            if let Some(g) = st.gateways.get_mut(region) {
                g.keys = keys;
            }
            return Ok(());
        }
        if st.gateways.contains_key(region) {
            return Ok(());
        }
        let first = preferred_port(region);
        let mut last = None;
        for port in first..first + 8 {
            let at = SocketAddrV4::new(self.underlay, port);
            let bound = match &self.underlay_ns {
                Some(ns) => in_netns(ns, move || tunnel::bind_socket(at)),
                None => tunnel::bind_socket(at),
            };
            match bound {
                Ok(sock) => {
                    let worker = GatewayWorker::start(region, sock).map_err(|e| e.to_string())?;
                    tracing::info!(%region, %at, public_key = %keys::public_text(&keys.public), "backbone: gateway up");
                    st.gateways
                        .insert(region.to_string(), LocalGateway { keys, port, worker });
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last = Some(e),
                Err(e) => return Err(format!("binding the WireGuard socket on {at}: {e}")),
            }
        }
        Err(format!(
            "no free port for the WireGuard socket from {first}: {}",
            last.map(|e| e.to_string()).unwrap_or_default()
        ))
    }

    fn ensure_peering(
        &self,
        st: &mut State,
        spec: &PeeringLinkSpec,
        directory: &BTreeMap<String, HostGateways>,
    ) -> Result<(), String> {
        let dest = st
            .destinations
            .get(&spec.pcx_id)
            .cloned()
            .unwrap_or_default();
        let tag = tunnel::peering_tag(&spec.pcx_id);
        if st
            .peerings
            .get(&spec.pcx_id)
            .is_some_and(|sides| sides.first().is_some_and(|s| s.spec != *spec))
        {
            st.peerings.remove(&spec.pcx_id);
        }
        let sides_wanted = [
            (
                &spec.local_ns,
                &spec.local_region,
                &spec.remote_region,
                &dest.from_requester,
            ),
            (
                &spec.remote_ns,
                &spec.remote_region,
                &spec.local_region,
                &dest.from_accepter,
            ),
        ];
        for (ns, region, peer_region, addresses) in sides_wanted {
            let Some(g) = st.gateways.get(region.as_str()) else {
                // Not a region this host serves: no reader, so the kernel
                // drops whatever is routed to this side's TUN device here.
                continue;
            };
            let ends_by_addr: BTreeMap<SocketAddrV4, Arc<End>> = g
                .worker
                .ends
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .filter(|(_, e)| &e.peer == peer_region)
                .map(|(a, e)| (*a, e.clone()))
                .collect();
            let mut map: BTreeMap<IpAddr, Arc<End>> = BTreeMap::new();
            for (ip, host) in addresses {
                let end = directory.get(host).and_then(|hg| {
                    let ep = hg.gateways.get(peer_region.as_str())?;
                    ends_by_addr.get(&SocketAddrV4::new(hg.underlay, ep.port))
                });
                if let Some(e) = end {
                    map.insert(*ip, e.clone());
                }
            }
            let sides = st.peerings.entry(spec.pcx_id.clone()).or_default();
            let side = match sides.iter_mut().position(|s| &s.ns == ns) {
                Some(i) => &mut sides[i],
                None => {
                    let dev = Arc::new(
                        open_tun(ns, &spec.local_name)
                            .map_err(|e| format!("opening {} in {ns}: {e}", spec.local_name))?,
                    );
                    let destinations = Arc::new(Destinations::default());
                    let reader = TunReader::start(
                        &spec.local_name,
                        dev.clone(),
                        Route::ByDestination(destinations.clone()),
                        tag,
                    )
                    .map_err(|e| e.to_string())?;
                    sides.push(Side {
                        spec: spec.clone(),
                        ns: ns.clone(),
                        tag,
                        dev,
                        destinations,
                        attached: Vec::new(),
                        _reader: reader,
                    });
                    sides.last_mut().expect("just pushed")
                }
            };
            // Receive from every session of the pair; detach from the gone ones.
            for e in &side.attached {
                if !ends_by_addr.values().any(|x| Arc::ptr_eq(x, e)) {
                    e.detach(tag);
                }
            }
            side.attached = ends_by_addr.values().cloned().collect();
            for e in &side.attached {
                e.attach(tag, side.dev.clone());
            }
            let same = {
                let now = side.destinations.get();
                now.len() == map.len()
                    && now
                        .iter()
                        .zip(&map)
                        .all(|((a, x), (b, y))| a == b && Arc::ptr_eq(x, y))
            };
            if !same {
                side.destinations.set(map);
            }
        }
        Ok(())
    }
}

impl PeeringLinkType for ClusterBackbone {
    fn name(&self) -> &'static str {
        "cluster-backbone"
    }

    fn create(&self, run: &Runner, spec: &PeeringLinkSpec) -> Result<(), CommandError> {
        if create_link_pair(run, spec)? {
            self.inner.lock().peerings.remove(&spec.pcx_id);
        }
        Ok(())
    }

    fn delete(&self, run: &Runner, ns: &str, name: &str) -> Result<(), CommandError> {
        {
            let mut st = self.inner.lock();
            st.peerings.retain(|_, sides| {
                !sides.iter().any(|s| {
                    s.spec.local_name == name && (s.spec.local_ns == ns || s.spec.remote_ns == ns)
                })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_name_their_region_and_ports_are_stable() {
        assert_eq!(region_of_zone("us-east-1a"), "us-east-1");
        assert_eq!(region_of_zone("eu-west-1c"), "eu-west-1");
        assert_eq!(preferred_port("us-west-2"), preferred_port("us-west-2"));
        for (r, _) in vpc_model::region::DEFAULT_REGIONS {
            assert!(preferred_port(r) > WG_PORT && preferred_port(r) < WG_PORT + 1000);
        }
        assert_eq!(gateway_key("h1"), "gateway/h1");
        assert!(parse_public("not a key").is_none());
    }
}
