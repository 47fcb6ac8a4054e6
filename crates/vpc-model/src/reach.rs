//! The reachability evaluator: can a packet get from a source to a
//! destination, hop by hop, and if not, every reason why.
//!
//! Pure and I/O-free like the rest of the core. It decides with the same
//! model functions the data plane compiles into the kernel (route lookup and
//! state, peering states, security-group and ACL semantics), so its verdict
//! and the kernel's agree; `tests/e2e` and the differential test check that
//! with real packets.
//!
//! # How it decides
//!
//! [`analyze`] walks the packet through the namespaces of `docs/dataplane.md`
//! exactly as the kernel would: the source instance's own routing (connected
//! subnets, else the default route through `eth0`), then per VPC router the
//! table its ingress link selects (the subnet's route table for an interface
//! or NAT gateway link, table 250 for a peering link: the VPC's own running
//! interfaces only, table 251 for the internet gateway after DNAT), the
//! longest-prefix match with the `local` route expanded to running
//! interfaces, and the `forward` chain in its order: guards (no transit, no
//! edge-to-edge, no private source out of the internet gateway),
//! source/destination check, network ACLs (only when the packet crosses a
//! subnet boundary; stateless), then the security groups of the source
//! interface (egress) and of the destination interface (ingress) for the new
//! connection. The simulated internet routes public IPs and IPv6 blocks of
//! VPCs with an internet gateway; a NAT gateway masquerades to its private
//! address and the router maps that to its Elastic IP.
//!
//! The reply is then walked back through every router the request crossed,
//! in reverse: it must be routed back out of the link the request came in by
//! (the route back from a peer VPC, or to the internet gateway), and pass the
//! network ACLs in both subnets again; security groups are stateful
//! (conntrack `established`) and are not consulted. Its destination port is
//! the client's ephemeral port: [`Options::source_port`] when given; otherwise
//! a network ACL must admit **every** port of Linux's default range
//! [`EPHEMERAL_PORTS`] (32768–60999), since the client's kernel may pick any
//! of them.
//!
//! Every blocker is reported: after one, the walk carries on as if the packet
//! had got through where that makes sense (a refused security group or ACL,
//! or a missing or blackholed route whose intended next hop is known: the
//! peering to the destination's VPC, the internet gateway), so a missing
//! route, a missing security-group rule and an ACL that refuses the return
//! traffic all show at once. It stops where nothing sensible follows (a
//! transitive or edge-to-edge path, disconnected VPCs).
//!
//! [`Index`] holds what a query needs to look things up without scanning the
//! [`World`] (interfaces by address, associations, peerings and gateways by
//! VPC, public-IP mappings); build it once per published world and use
//! [`analyze_with`]. [`matrix_with`] fills an all-pairs matrix over classes of
//! equivalent instances.

use crate::fault::Fault;
use crate::ops;
use crate::ops::defaults::{STAR_V4, STAR_V6};
use crate::types::*;
use crate::world::World;
use ipnet::{IpNet, Ipv6Net};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The transport of the analysed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    /// An ICMP (or ICMPv6) echo request, answered by an echo reply.
    Icmp,
}

impl Protocol {
    /// The IP protocol number (ICMPv6 is 58 when `ipv6`).
    pub fn number(self, ipv6: bool) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Icmp if ipv6 => 58,
            Protocol::Icmp => 1,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
        }
    }
}

/// One end of the analysed path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// An instance (its primary interface, or the interface in the
    /// destination's VPC when it has several).
    Instance(String),
    /// A network interface.
    NetworkInterface(String),
    /// A bare address: another instance's, a public IP, or the simulated
    /// internet's test host.
    Address(IpAddr),
}

/// What to analyse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub source: Endpoint,
    pub destination: Endpoint,
    pub protocol: Protocol,
    /// Destination port (TCP/UDP); ignored for ICMP.
    pub port: Option<u16>,
    /// Analyse IPv6 instead of IPv4 (the endpoints' IPv6 addresses). An
    /// [`Endpoint::Address`] brings its own family and overrides this.
    pub ipv6: bool,
}

impl Query {
    /// An IPv4 query.
    pub fn new(
        source: Endpoint,
        destination: Endpoint,
        protocol: Protocol,
        port: Option<u16>,
    ) -> Query {
        Query {
            source,
            destination,
            protocol,
            port,
            ipv6: false,
        }
    }
}

/// What an analysis may be told beyond the [`Query`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// The client's source port, i.e. the destination port of the reply,
    /// which the network ACLs on the way back compare. None (the default):
    /// the reply must be admitted on every port of [`EPHEMERAL_PORTS`] (the
    /// range Linux picks a client port from), so the verdict holds whatever
    /// port the client's kernel picks. Ignored for ICMP.
    pub source_port: Option<u16>,
}

/// A component on the path, as AWS's `PathComponent.Component` names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Component {
    pub id: String,
    /// `instance`, `network-interface`, `security-group`, `network-acl`,
    /// `route-table`, `vpc-peering-connection`, `internet-gateway`,
    /// `natgateway`, `subnet`, `vpc`, and `internet` for the simulated
    /// internet's test host (its ID is the address).
    pub kind: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// The configuration item that admitted (or refused) the packet at a hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    Route {
        route_table_id: String,
        destination: IpNet,
        /// `local`, or the target's ID.
        target: String,
        state: &'static str,
    },
    SecurityGroupRule {
        group_id: String,
        rule_id: String,
        direction: Direction,
        protocol: String,
        port_range: Option<(i32, i32)>,
        /// The CIDR or referenced group the rule names.
        peer: String,
    },
    AclEntry {
        acl_id: String,
        rule_number: u32,
        egress: bool,
        action: &'static str,
        protocol: String,
        cidr: IpNet,
        port_range: Option<(u16, u16)>,
    },
}

/// One hop of the forward or return path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub sequence: u32,
    pub component: Component,
    pub vpc_id: Option<String>,
    pub subnet_id: Option<String>,
    pub rule: Option<Rule>,
}

/// Why the packet does not get through, in AWS's explanation-code terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// An AWS `ExplanationCode`, e.g. `ENI_SG_RULES_MISMATCH`, `BAD_STATE_ROUTE`.
    pub code: &'static str,
    pub component: Component,
    pub direction: Option<Direction>,
    /// The rule involved, when one is (e.g. the denying ACL entry).
    pub rule: Option<Rule>,
    pub vpc_id: Option<String>,
    pub subnet_id: Option<String>,
    /// A readable sentence.
    pub detail: String,
}

/// vpcd's own named diagnosis, with a suggested fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiagnosisKind {
    TransitivePeering,
    EdgeToEdge,
    PeeringNotActive,
    MissingRoute,
    MissingReturnRoute,
    NaclDeniesReturnTraffic,
    NaclDenies,
    SecurityGroupDenies,
    SourceDestCheck,
    NoPublicIp,
    InstanceNotRunning,
    DisconnectedVpcs,
}

impl DiagnosisKind {
    /// A stable name for the API and the CLI, e.g. `transitive-peering`.
    pub fn name(self) -> &'static str {
        match self {
            DiagnosisKind::TransitivePeering => "transitive-peering",
            DiagnosisKind::EdgeToEdge => "edge-to-edge",
            DiagnosisKind::PeeringNotActive => "peering-not-active",
            DiagnosisKind::MissingRoute => "missing-route",
            DiagnosisKind::MissingReturnRoute => "missing-return-route",
            DiagnosisKind::NaclDeniesReturnTraffic => "nacl-denies-return-traffic",
            DiagnosisKind::NaclDenies => "nacl-denies",
            DiagnosisKind::SecurityGroupDenies => "security-group-denies",
            DiagnosisKind::SourceDestCheck => "source-dest-check",
            DiagnosisKind::NoPublicIp => "no-public-ip",
            DiagnosisKind::InstanceNotRunning => "instance-not-running",
            DiagnosisKind::DisconnectedVpcs => "disconnected-vpcs",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    pub kind: DiagnosisKind,
    /// E.g. "transitive peering: vpc-A is peered with vpc-B and vpc-B with vpc-C, but vpc-A is not peered with vpc-C".
    pub message: String,
    /// E.g. "create a peering connection between vpc-A and vpc-C".
    pub fix: String,
}

/// The verdict and its explanation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Analysis {
    pub reachable: bool,
    /// The addresses the analysed packet carries.
    pub source_ip: Option<IpAddr>,
    pub destination_ip: Option<IpAddr>,
    pub forward: Vec<Hop>,
    pub ret: Vec<Hop>,
    /// Every blocker, not only the first.
    pub explanations: Vec<Explanation>,
    pub diagnoses: Vec<Diagnosis>,
}

/// The range Linux picks a client's source port from (`ip_local_port_range`).
pub const EPHEMERAL_PORTS: (u16, u16) = (32768, 60999);

/// The simulated internet's test host (`docs/dataplane.md`, "Names").
pub const INTERNET_HOST_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
/// The test host's IPv6 address.
pub const INTERNET_HOST_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x10);

/// A fast non-cryptographic hasher (FxHash) for the index's maps: their
/// keys are IDs and addresses from the world, not attacker-chosen input
/// that could be crafted to collide.
#[derive(Debug, Clone, Copy, Default)]
struct Fx(u64);

impl std::hash::Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let v = u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
            self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(K);
        }
        for b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(*b)).wrapping_mul(K);
        }
    }
}

type Map<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<Fx>>;
type Set<K> = HashSet<K, std::hash::BuildHasherDefault<Fx>>;

/// The most routers one path may cross before it counts as a loop.
const MAX_HOPS: usize = 16;

fn is_internet_host(a: IpAddr) -> bool {
    a == IpAddr::V4(INTERNET_HOST_V4) || a == IpAddr::V6(INTERNET_HOST_V6)
}

// ---- Index -------------------------------------------------------------------

/// A record ID, kept inline when short (as every generated ID is:
/// `prefix-` and 17 hex digits), so that building an index allocates per
/// table rather than per record.
#[derive(Clone)]
enum Key {
    Inline(u8, [u8; 39]),
    Heap(Box<str>),
}

impl Key {
    fn new(s: &str) -> Key {
        let b = s.as_bytes();
        if b.len() <= 39 {
            let mut buf = [0u8; 39];
            buf[..b.len()].copy_from_slice(b);
            Key::Inline(u8::try_from(b.len()).unwrap_or(39), buf)
        } else {
            Key::Heap(s.into())
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Key::Inline(n, b) => std::str::from_utf8(&b[..usize::from(*n)]).unwrap_or(""),
            Key::Heap(s) => s,
        }
    }
}

impl PartialEq for Key {
    fn eq(&self, o: &Key) -> bool {
        self.as_str() == o.as_str()
    }
}

impl Eq for Key {}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}

impl std::borrow::Borrow<str> for Key {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

/// One value, or several (most addresses, instances and VPCs have one).
#[derive(Debug, Clone)]
enum Few<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> Few<T> {
    fn as_slice(&self) -> &[T] {
        match self {
            Few::One(x) => std::slice::from_ref(x),
            Few::Many(v) => v,
        }
    }

    fn push(&mut self, x: T) {
        match self {
            Few::Many(v) => v.push(x),
            Few::One(_) => {
                let Few::One(first) = std::mem::replace(self, Few::Many(Vec::with_capacity(2)))
                else {
                    return;
                };
                if let Few::Many(v) = self {
                    v.push(first);
                    v.push(x);
                }
            }
        }
    }
}

fn add<K: std::hash::Hash + Eq, T>(m: &mut Map<K, Few<T>>, k: K, x: T) {
    match m.entry(k) {
        std::collections::hash_map::Entry::Occupied(mut o) => o.get_mut().push(x),
        std::collections::hash_map::Entry::Vacant(v) => {
            v.insert(Few::One(x));
        }
    }
}

/// Lookups a query needs, built once per [`World`] in one pass over it, so
/// that an analysis never scans the world. It owns its data (IDs), so it can
/// be kept next to the `Arc<World>` it was built from; using it with another
/// world gives wrong answers.
#[derive(Debug, Clone, Default)]
pub struct Index {
    /// Every interface holding an address (private IPv4, IPv6), whatever its state.
    enis_by_ip: Map<IpAddr, Few<Key>>,
    /// Interfaces attached to an instance, by device index.
    enis_by_instance: Map<Key, Few<Key>>,
    /// The explicit route-table association of a subnet (else the main table).
    rtb_by_subnet: Map<Key, Key>,
    /// Route tables of a VPC, main first.
    rtbs_by_vpc: Map<Key, Few<Key>>,
    acl_by_subnet: Map<Key, Key>,
    /// A NAT gateway's own interface to the gateway.
    nat_by_eni: Map<Key, Key>,
    /// The internet gateway attached to a VPC.
    igw_by_vpc: Map<Key, Key>,
    /// Every peering connection record touching a VPC, in ID order.
    peerings_by_vpc: Map<Key, Few<Key>>,
    /// Public IPv4 mapped 1:1 at the internet gateway (running interfaces and
    /// available NAT gateways): public to (VPC, private).
    pub2priv: Map<Ipv4Addr, (Key, Ipv4Addr)>,
    /// The same, (VPC, private) to public.
    priv2pub: Map<(Key, Ipv4Addr), Ipv4Addr>,
    /// Whoever holds a public IPv4, running or not: public to (interface, private).
    public_owner: Map<Ipv4Addr, (Key, Ipv4Addr)>,
    /// IPv6 blocks the internet routes to a VPC (VPCs with an internet gateway).
    inet_v6: Vec<(Ipv6Net, Key)>,
    /// Interfaces and instances some route targets (middleboxes).
    route_targets: Set<Key>,
    /// The VPC routers' own addresses: every subnet's gateway (`.1`).
    router_addrs: Set<(Key, Ipv4Addr)>,
}

impl Index {
    /// Builds the index of `w` (linear in the size of the world).
    pub fn new(w: &World) -> Index {
        let mut ix = Index::default();
        ix.enis_by_ip.reserve(w.enis.len() + w.enis.len() / 4);
        ix.enis_by_instance.reserve(w.instances.len());
        for e in w.iter::<NetworkInterface>() {
            let id = Key::new(&e.meta.id);
            for p in &e.private_ips {
                add(&mut ix.enis_by_ip, IpAddr::V4(p.ip), id.clone());
            }
            for a in &e.ipv6 {
                add(&mut ix.enis_by_ip, IpAddr::V6(*a), id.clone());
            }
            if let Some(att) = &e.attachment {
                add(&mut ix.enis_by_instance, Key::new(&att.instance_id), id);
            }
        }
        for l in ix.enis_by_ip.values_mut() {
            if let Few::Many(v) = l {
                v.dedup();
            }
        }
        for l in ix.enis_by_instance.values_mut() {
            if let Few::Many(v) = l {
                v.sort_by_key(|e| {
                    w.get::<NetworkInterface>(e.as_str())
                        .map_or(u32::MAX, device)
                });
            }
        }
        for rt in w.iter::<RouteTable>() {
            let id = Key::new(&rt.meta.id);
            for a in &rt.assocs {
                if let Some(s) = &a.subnet_id {
                    ix.rtb_by_subnet
                        .entry(Key::new(s))
                        .or_insert_with(|| id.clone());
                }
            }
            let main = w
                .get::<Vpc>(&rt.vpc_id)
                .is_some_and(|v| v.main_route_table == rt.meta.id);
            let vpc = Key::new(&rt.vpc_id);
            match (main, ix.rtbs_by_vpc.get_mut(&vpc)) {
                (true, Some(l)) => {
                    let mut v = l.as_slice().to_vec();
                    v.insert(0, id);
                    *l = Few::Many(v);
                }
                _ => add(&mut ix.rtbs_by_vpc, vpc, id),
            }
            for r in &rt.routes {
                match &r.target {
                    RouteTarget::NetworkInterface(x) | RouteTarget::Instance(x) => {
                        ix.route_targets.insert(Key::new(x));
                    }
                    _ => {}
                }
            }
        }
        for s in w.iter::<Subnet>() {
            let gw = Ipv4Addr::from(u32::from(s.cidr.network()).wrapping_add(1));
            ix.router_addrs.insert((Key::new(&s.vpc_id), gw));
        }
        for a in w.iter::<NetworkAcl>() {
            for x in &a.assocs {
                ix.acl_by_subnet
                    .entry(Key::new(&x.subnet_id))
                    .or_insert_with(|| Key::new(&a.meta.id));
            }
        }
        for g in w.iter::<NatGateway>() {
            ix.nat_by_eni
                .entry(Key::new(&g.eni_id))
                .or_insert_with(|| Key::new(&g.meta.id));
        }
        for g in w.iter::<InternetGateway>() {
            if let Some(v) = &g.vpc_id {
                if w.get::<Vpc>(v).is_some() {
                    ix.igw_by_vpc.insert(Key::new(v), Key::new(&g.meta.id));
                }
            }
        }
        for p in w.iter::<Peering>() {
            let id = Key::new(&p.id);
            add(
                &mut ix.peerings_by_vpc,
                Key::new(&p.requester.vpc_id),
                id.clone(),
            );
            if p.accepter.vpc_id != p.requester.vpc_id {
                add(&mut ix.peerings_by_vpc, Key::new(&p.accepter.vpc_id), id);
            }
        }
        ix.public_maps(w);
        for v in ix.igw_by_vpc.keys() {
            if let Some(vpc) = w.get::<Vpc>(v.as_str()) {
                for b in vpc.v6_blocks() {
                    ix.inet_v6.push((b.trunc(), v.clone()));
                }
            }
        }
        ix.inet_v6
            .sort_by(|a, b| (a.0, a.1.as_str()).cmp(&(b.0, b.1.as_str())));
        ix
    }

    /// The public mappings, as `vpc-dataplane`'s planner makes them: every
    /// (private, public) pair of running interfaces (Elastic IP or
    /// auto-assigned for the primary address, Elastic IPs of secondaries) in
    /// interface-ID order, then available NAT gateways' Elastic IPs; a public
    /// address mapped twice keeps its first mapping.
    fn public_maps(&mut self, w: &World) {
        let mut eips: Map<&str, Vec<&Address>> = Map::default();
        for a in w.iter::<Address>() {
            if let Some(e) = &a.eni_id {
                eips.entry(e.as_str()).or_default().push(a);
            }
        }
        let pubs_of = |e: &NetworkInterface| -> Vec<(Ipv4Addr, Ipv4Addr)> {
            let list = eips.get(e.meta.id.as_str());
            if list.is_none() && e.public_ip.is_none() {
                return Vec::new();
            }
            let primary = e.primary_ip();
            let mut out = Vec::new();
            let eip = list
                .and_then(|l| l.iter().find(|a| a.private_ip == Some(primary)))
                .map(|a| a.public_ip);
            if let Some(p) = eip.or(e.public_ip) {
                out.push((primary, p));
            }
            for a in list.into_iter().flatten() {
                if let Some(ip) = a.private_ip.filter(|ip| *ip != primary) {
                    out.push((ip, a.public_ip));
                }
            }
            out
        };
        let mut taken: Set<Ipv4Addr> = Set::default();
        let mut map = |ix: &mut Index, vpc: &str, private: Ipv4Addr, public: Ipv4Addr| {
            if taken.insert(public) {
                ix.pub2priv.insert(public, (Key::new(vpc), private));
                ix.priv2pub.insert((Key::new(vpc), private), public);
            }
        };
        for e in w.iter::<NetworkInterface>() {
            let pubs = pubs_of(e);
            if pubs.is_empty() {
                continue;
            }
            for (private, public) in &pubs {
                self.public_owner
                    .entry(*public)
                    .or_insert_with(|| (Key::new(&e.meta.id), *private));
            }
            if eni_up(w, e) {
                for (private, public) in pubs {
                    map(self, &e.vpc_id, private, public);
                }
            }
        }
        for n in w.iter::<NatGateway>() {
            if !nat_realized(w, n) {
                continue;
            }
            let Some(e) = w.get::<NetworkInterface>(&n.eni_id) else {
                continue;
            };
            let ip = e.primary_ip();
            for (private, public) in pubs_of(e) {
                if private == ip {
                    map(self, &n.vpc_id, private, public);
                }
            }
        }
    }

    fn list<'s>(m: &'s Map<Key, Few<Key>>, k: &str) -> &'s [Key] {
        m.get(k).map_or(&[], Few::as_slice)
    }
}

/// An instance interface the data plane routes: attached to a pending or
/// running instance, in an existing subnet and VPC (its `/32` is in the
/// router's tables).
fn eni_up(w: &World, e: &NetworkInterface) -> bool {
    e.interface_type != "nat_gateway"
        && e.attachment
            .as_ref()
            .and_then(|a| w.get::<Instance>(&a.instance_id))
            .is_some_and(|i| i.is_up() && w.get::<Vpc>(&i.vpc_id).is_some())
        && w.get::<Subnet>(&e.subnet_id).is_some()
        && w.get::<Vpc>(&e.vpc_id).is_some()
}

/// A NAT gateway the data plane realises: available, with its interface, subnet and VPC.
fn nat_realized(w: &World, n: &NatGateway) -> bool {
    n.state == NatState::Available
        && w.get::<NetworkInterface>(&n.eni_id).is_some()
        && w.get::<Subnet>(&n.subnet_id).is_some()
        && w.get::<Vpc>(&n.vpc_id).is_some()
}

fn eni_has(e: &NetworkInterface, a: IpAddr) -> bool {
    match a {
        IpAddr::V4(a) => e.private_ips.iter().any(|p| p.ip == a),
        IpAddr::V6(a) => e.ipv6.contains(&a),
    }
}

/// The interface's address of a family: its primary IPv4, or its first IPv6.
fn eni_addr(e: &NetworkInterface, v6: bool) -> Option<IpAddr> {
    if v6 {
        e.ipv6.first().map(|a| IpAddr::V6(*a))
    } else {
        e.private_ips.first().map(|_| IpAddr::V4(e.primary_ip()))
    }
}

fn device(e: &NetworkInterface) -> u32 {
    e.attachment.as_ref().map_or(0, |a| a.device_index)
}

// ---- Evaluation ----------------------------------------------------------------

/// Analyses one query over the world, as a local administrator sees it
/// (every account; the API layer checks that the caller owns the source).
///
/// Builds an [`Index`] first; callers answering many queries over one world
/// should build it once and use [`analyze_with`].
pub fn analyze(w: &World, q: &Query) -> Result<Analysis, Fault> {
    analyze_with(&Index::new(w), w, q)
}

/// [`analyze`] with a prebuilt index of `w`.
pub fn analyze_with(ix: &Index, w: &World, q: &Query) -> Result<Analysis, Fault> {
    run(ix, w, q, Options::default(), true)
}

/// [`analyze_with`] with [`Options`] (e.g. the probe's actual client port).
pub fn analyze_opts(ix: &Index, w: &World, q: &Query, o: Options) -> Result<Analysis, Fault> {
    run(ix, w, q, o, true)
}

/// Only the verdict of [`analyze_with`]: stops at the first blocker and
/// builds no path or explanation, for bulk use.
pub fn reachable_with(ix: &Index, w: &World, q: &Query) -> Result<bool, Fault> {
    run(ix, w, q, Options::default(), false).map(|a| a.reachable)
}

fn run(ix: &Index, w: &World, q: &Query, o: Options, explain: bool) -> Result<Analysis, Fault> {
    if q.protocol != Protocol::Icmp && q.port.is_none() {
        return Err(Fault::missing("DestinationPort"));
    }
    let mut ev = Ev {
        ix,
        w,
        explain,
        v6: q.ipv6,
        proto: q.protocol,
        pnum: 0,
        dport: if q.protocol == Protocol::Icmp {
            None
        } else {
            q.port
        },
        ret_ports: o.source_port.map_or(EPHEMERAL_PORTS, |p| (p, p)),
        out: Analysis::default(),
        blocked: false,
    };
    let r = ev.resolve(q)?;
    ev.out.source_ip = Some(r.src);
    ev.out.destination_ip = Some(r.dst);
    if let Ok(fwd) = ev.forward(&r) {
        let _ = ev.ret(&r, &fwd);
    }
    ev.out.reachable = !ev.blocked;
    Ok(ev.out)
}

/// Ends the walk: in verdict-only mode at the first blocker, otherwise where
/// nothing sensible follows.
#[derive(Debug)]
struct Stop;

type Step<T> = Result<T, Stop>;

/// A link of a VPC router: where a packet comes in or goes out.
#[derive(Debug, Clone, Copy)]
enum Port<'a> {
    Eni(&'a NetworkInterface),
    Nat(&'a NatGateway),
    Pcx(&'a Peering),
    Igw(&'a str),
}

impl<'a> Port<'a> {
    fn id(&self) -> &'a str {
        match self {
            Port::Eni(e) => &e.meta.id,
            Port::Nat(n) => &n.meta.id,
            Port::Pcx(p) => &p.id,
            Port::Igw(g) => g,
        }
    }

    fn same(&self, o: &Port<'_>) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(o) && self.id() == o.id()
    }

    fn kind(&self) -> &'static str {
        match self {
            Port::Eni(_) => "network-interface",
            Port::Nat(_) => "natgateway",
            Port::Pcx(_) => "vpc-peering-connection",
            Port::Igw(_) => "internet-gateway",
        }
    }

    fn component(&self) -> Component {
        comp(self.id(), self.kind())
    }
}

/// One crossing of a VPC router, with the addresses its `forward` chain saw
/// (after DNAT, before SNAT).
#[derive(Debug, Clone, Copy)]
struct Trav<'a> {
    vpc: &'a Vpc,
    iif: Port<'a>,
    oif: Port<'a>,
    src: IpAddr,
    dst: IpAddr,
}

#[derive(Debug, Clone, Copy)]
struct Pkt {
    src: IpAddr,
    dst: IpAddr,
}

#[derive(Debug, Clone, Copy)]
enum Node<'a> {
    Router { vpc: &'a Vpc, iif: Port<'a> },
    Inet,
    NatNs(&'a NatGateway),
}

/// What the destination resolved to.
#[derive(Debug, Clone, Copy)]
enum TKind<'a> {
    Eni(&'a NetworkInterface),
    Nat(&'a NatGateway),
    Internet,
    Unknown,
}

#[derive(Debug, Clone, Copy)]
struct Target<'a> {
    kind: TKind<'a>,
    /// Addressed by a public address (or the internet host): reached through internet gateways.
    public: bool,
    /// Given as a bare address: wherever the address lands is the destination.
    by_address: bool,
}

#[derive(Debug, Clone, Copy)]
enum Source<'a> {
    /// An instance interface (the address's owner) and the interface the
    /// instance's routing sends the packet out of.
    Eni {
        inst: &'a Instance,
        eni: &'a NetworkInterface,
        egress: Option<&'a NetworkInterface>,
    },
    Internet,
}

#[derive(Debug, Clone, Copy)]
struct Resolved<'a> {
    source: Source<'a>,
    target: Target<'a>,
    src: IpAddr,
    dst: IpAddr,
}

#[derive(Debug, Clone, Copy)]
enum Arrive<'a> {
    /// Delivered inside the source instance itself.
    Local,
    Eni(&'a NetworkInterface),
    Nat(&'a NatGateway),
    Internet,
    /// Answered by a VPC router itself.
    Router,
}

#[derive(Debug)]
struct Fwd<'a> {
    travs: Vec<Trav<'a>>,
    arrive: Arrive<'a>,
}

/// A route-table lookup's outcome in the kernel's terms.
#[derive(Debug, Clone, Copy)]
enum Look<'a> {
    Hit(Option<&'a Route>, Port<'a>),
    NoRoute,
    /// The `local` route, but no running interface holds the address.
    NoInterface(Option<&'a Route>),
    /// A route whose target cannot carry traffic (state `blackhole`).
    Inactive(&'a Route),
}

fn comp(id: &str, kind: &'static str) -> Component {
    Component {
        id: id.to_string(),
        kind,
    }
}

fn ex(code: &'static str, component: Component, detail: String) -> Explanation {
    Explanation {
        code,
        component,
        direction: None,
        rule: None,
        vpc_id: None,
        subnet_id: None,
        detail,
    }
}

fn dg(kind: DiagnosisKind, message: String, fix: String) -> Option<Diagnosis> {
    Some(Diagnosis { kind, message, fix })
}

fn target_str(t: &RouteTarget) -> String {
    match t {
        RouteTarget::Local => "local".into(),
        RouteTarget::Gateway(x)
        | RouteTarget::EgressOnlyGateway(x)
        | RouteTarget::NatGateway(x)
        | RouteTarget::Peering(x)
        | RouteTarget::NetworkInterface(x)
        | RouteTarget::Instance(x) => x.clone(),
    }
}

fn route_rule(rt: &RouteTable, r: &Route, state: &'static str) -> Rule {
    Rule::Route {
        route_table_id: rt.meta.id.clone(),
        destination: r.dest,
        target: target_str(&r.target),
        state,
    }
}

fn sg_rule(g: &SecurityGroup, r: &SgRule, direction: Direction) -> Rule {
    Rule::SecurityGroupRule {
        group_id: g.meta.id.clone(),
        rule_id: r.id.clone(),
        direction,
        protocol: r.protocol.clone(),
        port_range: r.from_port.zip(r.to_port),
        peer: match &r.peer {
            SgPeer::Cidr4(n) => n.to_string(),
            SgPeer::Cidr6(n) => n.to_string(),
            SgPeer::PrefixList(p) => p.clone(),
            SgPeer::Group { group_id, .. } => group_id.clone(),
        },
    }
}

fn acl_rule(acl_id: &str, egress: bool, n: u32, e: Option<&AclEntry>, v6: bool) -> Rule {
    match e {
        Some(e) => Rule::AclEntry {
            acl_id: acl_id.to_string(),
            rule_number: e.rule_number,
            egress: e.egress,
            action: e.action.as_str(),
            protocol: e.protocol.clone(),
            cidr: e.cidr,
            port_range: e.ports,
        },
        // The implicit `*` deny of an ACL that lacks the entry.
        None => Rule::AclEntry {
            acl_id: acl_id.to_string(),
            rule_number: n,
            egress,
            action: "deny",
            protocol: "-1".into(),
            cidr: if v6 {
                ops::defaults::all_v6()
            } else {
                ops::defaults::all_v4()
            },
            port_range: None,
        },
    }
}

/// The route a lookup matched, with the state to show for it.
fn hop_route(look: Look<'_>) -> Option<(&Route, &'static str)> {
    match look {
        Look::Hit(r, _) => r.map(|r| (r, "active")),
        Look::NoInterface(r) => r.map(|r| (r, "active")),
        Look::Inactive(r) => Some((r, "blackhole")),
        Look::NoRoute => None,
    }
}

fn host_net(a: IpAddr) -> IpNet {
    IpNet::from(a)
}

/// The evaluation of one query.
struct Ev<'a> {
    ix: &'a Index,
    w: &'a World,
    /// Build the path and every explanation (else stop at the first blocker).
    explain: bool,
    v6: bool,
    proto: Protocol,
    pnum: u8,
    /// The request's destination port (TCP/UDP).
    dport: Option<u16>,
    /// The reply's destination ports (the client's ephemeral port).
    ret_ports: (u16, u16),
    out: Analysis,
    blocked: bool,
}

impl<'a> Ev<'a> {
    // ---- recording -------------------------------------------------------------

    /// Notes a blocker. In verdict-only mode this ends the walk.
    fn block(&mut self, f: impl FnOnce(&Self) -> (Explanation, Option<Diagnosis>)) -> Step<()> {
        self.blocked = true;
        if !self.explain {
            return Err(Stop);
        }
        let (e, d) = f(self);
        self.out.explanations.push(e);
        if let Some(d) = d {
            if !self.out.diagnoses.contains(&d) {
                self.out.diagnoses.push(d);
            }
        }
        Ok(())
    }

    fn hop(
        &mut self,
        ret: bool,
        component: Component,
        at: Option<&Subnet>,
        vpc: Option<&str>,
        rule: Option<Rule>,
    ) {
        let path = if ret {
            &mut self.out.ret
        } else {
            &mut self.out.forward
        };
        let sequence = u32::try_from(path.len() + 1).unwrap_or(u32::MAX);
        path.push(Hop {
            sequence,
            component,
            vpc_id: vpc
                .map(str::to_string)
                .or_else(|| at.map(|s| s.vpc_id.clone())),
            subnet_id: at.map(|s| s.meta.id.clone()),
            rule,
        });
    }

    fn eni_hops(&mut self, ret: bool, e: &'a NetworkInterface, instance_first: bool) {
        if !self.explain {
            return;
        }
        let s = self.w.get::<Subnet>(&e.subnet_id);
        let inst = e.attachment.as_ref().map(|a| a.instance_id.clone());
        let nat = self.nat_of(e).map(|n| n.meta.id.clone());
        let owner = match (inst, nat) {
            (Some(i), _) => Some(comp(&i, "instance")),
            (None, Some(n)) => Some(comp(&n, "natgateway")),
            _ => None,
        };
        let ehop = comp(&e.meta.id, "network-interface");
        if instance_first {
            if let Some(o) = owner.clone() {
                self.hop(ret, o, s, Some(&e.vpc_id), None);
            }
            self.hop(ret, ehop, s, Some(&e.vpc_id), None);
        } else {
            self.hop(ret, ehop, s, Some(&e.vpc_id), None);
            if let Some(o) = owner {
                self.hop(ret, o, s, Some(&e.vpc_id), None);
            }
        }
    }

    fn internet_hop(&mut self, ret: bool) {
        if self.explain {
            let host = if self.v6 {
                IpAddr::V6(INTERNET_HOST_V6)
            } else {
                IpAddr::V4(INTERNET_HOST_V4)
            };
            self.hop(ret, comp(&host.to_string(), "internet"), None, None, None);
        }
    }

    // ---- words -----------------------------------------------------------------

    fn proto_name(&self) -> &'static str {
        match (self.proto, self.v6) {
            (Protocol::Icmp, true) => "ICMPv6",
            (Protocol::Icmp, false) => "ICMP",
            (Protocol::Tcp, _) => "TCP",
            (Protocol::Udp, _) => "UDP",
        }
    }

    /// "TCP port 22", "ICMP echo request", or for the reply "TCP ports 32768-60999", "ICMP echo reply".
    fn what(&self, ret: bool) -> String {
        let p = self.proto_name();
        match (self.proto, ret) {
            (Protocol::Icmp, false) => format!("{p} echo request"),
            (Protocol::Icmp, true) => format!("{p} echo reply"),
            (_, false) => format!("{p} port {}", self.dport.unwrap_or(0)),
            (_, true) => {
                let (a, b) = self.ret_ports;
                if a == b {
                    format!("{p} port {a}")
                } else {
                    format!("{p} ports {a}-{b}")
                }
            }
        }
    }

    fn icmp(&self, ret: bool) -> Option<(u8, u8)> {
        match (self.proto, self.v6, ret) {
            (Protocol::Icmp, false, false) => Some((8, 0)),
            (Protocol::Icmp, false, true) => Some((0, 0)),
            (Protocol::Icmp, true, false) => Some((128, 0)),
            (Protocol::Icmp, true, true) => Some((129, 0)),
            _ => None,
        }
    }

    // ---- lookups ---------------------------------------------------------------

    fn enis_of_instance(&self, id: &str) -> impl Iterator<Item = &'a NetworkInterface> + 'a {
        let w = self.w;
        Index::list(&self.ix.enis_by_instance, id)
            .iter()
            .filter_map(move |e| w.get::<NetworkInterface>(e.as_str()))
    }

    fn enis_at(&self, a: IpAddr) -> impl Iterator<Item = &'a NetworkInterface> + 'a {
        let w = self.w;
        self.ix
            .enis_by_ip
            .get(&a)
            .map_or(&[][..], Few::as_slice)
            .iter()
            .filter_map(move |e| w.get::<NetworkInterface>(e.as_str()))
    }

    fn instance_of(&self, e: &NetworkInterface) -> Option<&'a Instance> {
        e.attachment
            .as_ref()
            .and_then(|a| self.w.get::<Instance>(&a.instance_id))
    }

    fn nat_of(&self, e: &NetworkInterface) -> Option<&'a NatGateway> {
        if e.interface_type != "nat_gateway" {
            return None;
        }
        self.ix
            .nat_by_eni
            .get(e.meta.id.as_str())
            .and_then(|n| self.w.get::<NatGateway>(n.as_str()))
    }

    fn nat_eni(&self, n: &NatGateway) -> Option<&'a NetworkInterface> {
        self.w.get::<NetworkInterface>(&n.eni_id)
    }

    fn nat_ip(&self, n: &NatGateway) -> Option<IpAddr> {
        self.nat_eni(n).map(|e| IpAddr::V4(e.primary_ip()))
    }

    /// Whether the instance's namespace owns the address (any of its interfaces).
    fn inst_has(&self, inst: &Instance, a: IpAddr) -> bool {
        self.enis_at(a).any(|e| {
            e.attachment
                .as_ref()
                .is_some_and(|x| x.instance_id == inst.meta.id)
        })
    }

    /// The interface an instance's own routing sends a packet to `dst` out
    /// of: a connected subnet (IPv4), else the default route through `eth0`
    /// (IPv6: only when `eth0` has an IPv6 address).
    fn inst_egress(&self, inst: &Instance, dst: IpAddr) -> Option<&'a NetworkInterface> {
        let w = self.w;
        let mut first = None;
        for e in self.enis_of_instance(&inst.meta.id) {
            if let IpAddr::V4(d) = dst {
                if w.get::<Subnet>(&e.subnet_id)
                    .is_some_and(|s| s.cidr.contains(&d))
                {
                    return Some(e);
                }
            }
            if device(e) == 0 && first.is_none() {
                first = Some(e);
            }
        }
        first.filter(|e| !dst.is_ipv6() || !e.ipv6.is_empty())
    }

    fn subnet_of(&self, p: Port<'a>) -> Option<&'a Subnet> {
        match p {
            Port::Eni(e) => self.w.get::<Subnet>(&e.subnet_id),
            Port::Nat(n) => self.w.get::<Subnet>(&n.subnet_id),
            Port::Pcx(_) | Port::Igw(_) => None,
        }
    }

    /// The route table a subnet uses: its association, else the VPC's main table.
    fn table_of(&self, s: &Subnet) -> Option<&'a RouteTable> {
        match self.ix.rtb_by_subnet.get(s.meta.id.as_str()) {
            Some(id) => self.w.get::<RouteTable>(id.as_str()),
            None => self
                .w
                .get::<Vpc>(&s.vpc_id)
                .and_then(|v| self.w.get::<RouteTable>(&v.main_route_table)),
        }
    }

    fn peerings_of(&self, vpc: &str) -> impl Iterator<Item = &'a Peering> + 'a {
        let w = self.w;
        Index::list(&self.ix.peerings_by_vpc, vpc)
            .iter()
            .filter_map(move |p| w.get::<Peering>(p.as_str()))
    }

    /// The connection joining two VPCs that matters most: active, then
    /// provisioning, pending, initiating, then any ended one.
    fn peering_between(&self, a: &str, b: &str) -> Option<&'a Peering> {
        let rank = |s: PcxState| match s {
            PcxState::Active => 0,
            PcxState::Provisioning => 1,
            PcxState::PendingAcceptance => 2,
            PcxState::InitiatingRequest => 3,
            PcxState::Deleting => 4,
            _ => 5,
        };
        self.peerings_of(a)
            .filter(|p| p.joins(a, b) && a != b)
            .min_by_key(|p| rank(p.state))
    }

    /// The first active connection joining two VPCs (`ops::peering::active_between`).
    fn active_between(&self, a: &str, b: &str) -> Option<&'a Peering> {
        self.peerings_of(a)
            .find(|p| p.state == PcxState::Active && p.joins(a, b))
    }

    /// A peering whose link the data plane builds: active, between two existing, different VPCs.
    fn carries(&self, p: &Peering) -> bool {
        p.state == PcxState::Active
            && p.requester.vpc_id != p.accepter.vpc_id
            && self.w.get::<Vpc>(&p.requester.vpc_id).is_some()
            && self.w.get::<Vpc>(&p.accepter.vpc_id).is_some()
    }

    /// A VPC `b` that `a` and `c` are both peered with (active first).
    fn middle(&self, a: &str, c: &str) -> Option<(&'a Peering, &'a Peering)> {
        let mut best: Option<(&'a Peering, &'a Peering)> = None;
        for p in self.peerings_of(a).filter(|p| p.state.is_live()) {
            let Some(b) = p.other_vpc(a) else { continue };
            if b.vpc_id == c || b.vpc_id == a {
                continue;
            }
            if let Some(q) = self
                .peering_between(&b.vpc_id, c)
                .filter(|q| q.state.is_live())
            {
                let active = p.state == PcxState::Active && q.state == PcxState::Active;
                if active {
                    return Some((p, q));
                }
                best.get_or_insert((p, q));
            }
        }
        best
    }

    fn igw_of(&self, vpc: &str) -> Option<&'a str> {
        self.ix.igw_by_vpc.get(vpc).map(Key::as_str)
    }

    fn public_of(&self, vpc: &str, a: Ipv4Addr) -> Option<Ipv4Addr> {
        self.ix.priv2pub.get(&(Key::new(vpc), a)).copied()
    }

    fn is_member(&self, group: &str, a: IpAddr) -> bool {
        self.enis_at(a).any(|e| e.groups.iter().any(|g| g == group))
    }

    /// `ops::sg::is_stale`, with the index.
    fn rule_stale(&self, own_vpc: &str, r: &SgRule) -> bool {
        let SgPeer::Group {
            group_id, vpc_id, ..
        } = &r.peer
        else {
            return false;
        };
        if self.w.get::<SecurityGroup>(group_id).is_none() {
            return true;
        }
        match vpc_id {
            Some(v) => self
                .active_between(own_vpc, v)
                .is_none_or(|p| p.inter_region()),
            None => false,
        }
    }

    /// The address in the VPC (a running interface, or an available NAT
    /// gateway when `nat`): its `/32` in the router.
    fn routed(&self, vpc: &str, a: IpAddr, nat: bool) -> Option<Port<'a>> {
        for e in self.enis_at(a) {
            if e.vpc_id != vpc {
                continue;
            }
            if eni_up(self.w, e) {
                return Some(Port::Eni(e));
            }
            if nat {
                if let Some(n) = self.nat_of(e) {
                    if nat_realized(self.w, n) && IpAddr::V4(e.primary_ip()) == a {
                        return Some(Port::Nat(n));
                    }
                }
            }
        }
        None
    }

    /// A lookup in a VPC route table, as the kernel table compiled from it answers.
    fn lookup(&self, rt: &'a RouteTable, dst: IpAddr) -> Look<'a> {
        let w = self.w;
        let Some(r) = ops::route::lookup(rt, dst) else {
            return Look::NoRoute;
        };
        let vpc = rt.vpc_id.as_str();
        let port = match &r.target {
            RouteTarget::Local => {
                return match self.routed(vpc, dst, true) {
                    Some(p) => Look::Hit(Some(r), p),
                    None => Look::NoInterface(Some(r)),
                }
            }
            RouteTarget::Gateway(g) => {
                (self.igw_of(vpc) == Some(g.as_str())).then_some(Port::Igw(g))
            }
            RouteTarget::Peering(p) => w
                .get::<Peering>(p)
                .filter(|p| self.carries(p) && p.other_vpc(vpc).is_some())
                .map(Port::Pcx),
            RouteTarget::NatGateway(n) => w
                .get::<NatGateway>(n)
                .filter(|g| dst.is_ipv4() && g.vpc_id == vpc && nat_realized(w, g))
                .map(Port::Nat),
            RouteTarget::NetworkInterface(e) => w
                .get::<NetworkInterface>(e)
                .filter(|e| e.vpc_id == vpc && eni_up(w, e) && eni_addr(e, dst.is_ipv6()).is_some())
                .map(Port::Eni),
            RouteTarget::Instance(i) => self
                .enis_of_instance(i)
                .find(|e| device(e) == 0)
                .filter(|e| e.vpc_id == vpc && eni_up(w, e) && eni_addr(e, dst.is_ipv6()).is_some())
                .map(Port::Eni),
            RouteTarget::EgressOnlyGateway(_) => None,
        };
        match port {
            Some(p) => Look::Hit(Some(r), p),
            None => Look::Inactive(r),
        }
    }

    /// The lookup a router makes for a packet that came in by `iif`.
    fn route(
        &self,
        vpc: &'a Vpc,
        iif: Port<'a>,
        dst: IpAddr,
    ) -> (Option<&'a RouteTable>, Look<'a>) {
        match iif {
            Port::Eni(_) | Port::Nat(_) => match self.subnet_of(iif).and_then(|s| self.table_of(s))
            {
                Some(rt) => (Some(rt), self.lookup(rt, dst)),
                None => (None, Look::NoRoute),
            },
            // Table 250: this VPC's running interfaces only.
            Port::Pcx(_) => (
                None,
                self.routed(&vpc.meta.id, dst, false)
                    .map_or(Look::NoInterface(None), |p| Look::Hit(None, p)),
            ),
            // Table 251: running interfaces and NAT gateways.
            Port::Igw(_) => (
                None,
                self.routed(&vpc.meta.id, dst, true)
                    .map_or(Look::NoInterface(None), |p| Look::Hit(None, p)),
            ),
        }
    }

    /// Where the internet routes an address: a public IP or an IPv6 block of a VPC with an internet gateway.
    fn inet_route(&self, dst: IpAddr) -> Option<(&'a Vpc, &'a str)> {
        let vpc = match dst {
            IpAddr::V4(d) => self.ix.pub2priv.get(&d).map(|(v, _)| v.as_str())?,
            IpAddr::V6(d) => self
                .ix
                .inet_v6
                .iter()
                .filter(|(n, _)| n.contains(&d))
                .max_by_key(|(n, _)| n.prefix_len())
                .map(|(_, v)| v.as_str())?,
        };
        Some((self.w.get::<Vpc>(vpc)?, self.igw_of(vpc)?))
    }

    /// The VPC block holding an address, else the address itself.
    fn block_of(&self, vpc: &Vpc, a: IpAddr) -> IpNet {
        vpc.all_blocks()
            .into_iter()
            .find(|b| b.contains(&a))
            .unwrap_or_else(|| host_net(a))
    }

    fn default_net(&self) -> IpNet {
        if self.v6 {
            ops::defaults::all_v6()
        } else {
            ops::defaults::all_v4()
        }
    }

    // ---- endpoints -------------------------------------------------------------

    fn resolve(&mut self, q: &Query) -> Result<Resolved<'a>, Fault> {
        let w = self.w;
        match (&q.source, &q.destination) {
            (Endpoint::Address(a), Endpoint::Address(b)) if a.is_ipv6() != b.is_ipv6() => {
                return Err(Fault::invalid_param(
                    "The source and destination addresses are of different IP families.",
                ))
            }
            (_, Endpoint::Address(a)) | (Endpoint::Address(a), _) => self.v6 = a.is_ipv6(),
            _ => {}
        }
        let v6 = self.v6;
        self.pnum = self.proto.number(v6);
        let fam = if v6 { "IPv6" } else { "IPv4" };
        let no_addr = |id: &str| Fault::invalid_param(format!("{id} has no {fam} address."));

        // The source: an instance interface, or the internet's test host.
        let (source, fixed): (Option<(&'a Instance, &'a NetworkInterface)>, bool) = match &q.source
        {
            Endpoint::Instance(id) => {
                let inst = w
                    .get::<Instance>(id)
                    .ok_or_else(|| ops::instance::INSTANCE.not_found(id))?;
                let eni = self
                    .enis_of_instance(id)
                    .find(|e| device(e) == 0)
                    .or_else(|| self.enis_of_instance(id).next())
                    .ok_or_else(|| {
                        Fault::invalid_param(format!("{id} has no network interface."))
                    })?;
                (Some((inst, eni)), false)
            }
            Endpoint::NetworkInterface(id) => {
                let eni = w
                    .get::<NetworkInterface>(id)
                    .ok_or_else(|| ops::eni::ENI.not_found(id))?;
                let inst = self.instance_of(eni).ok_or_else(|| {
                    Fault::invalid_param(format!("{id} is not attached to an instance."))
                })?;
                (Some((inst, eni)), true)
            }
            Endpoint::Address(a) if is_internet_host(*a) => (None, false),
            Endpoint::Address(a) => {
                let mut owners = self
                    .enis_at(*a)
                    .filter_map(|e| Some((self.instance_of(e)?, e)));
                let one = owners.next().ok_or_else(|| {
                    Fault::invalid_param(format!(
                        "No instance interface has the address {a}; a source address must be an instance's or the internet test host's ({INTERNET_HOST_V4}, {INTERNET_HOST_V6})."
                    ))
                })?;
                if owners.next().is_some() {
                    return Err(Fault::invalid_param(format!(
                        "The address {a} belongs to several interfaces; name the instance or interface."
                    )));
                }
                (Some(one), true)
            }
        };
        let src_vpc = source.map(|(_, e)| e.vpc_id.as_str());

        // The destination.
        let (target, dst) = match &q.destination {
            Endpoint::Instance(id) => {
                w.get::<Instance>(id)
                    .ok_or_else(|| ops::instance::INSTANCE.not_found(id))?;
                let cands: Vec<&'a NetworkInterface> = self
                    .enis_of_instance(id)
                    .filter(|e| eni_addr(e, v6).is_some())
                    .collect();
                let pick = match src_vpc {
                    Some(sv) => cands
                        .iter()
                        .find(|e| e.vpc_id == sv)
                        .or_else(|| {
                            cands
                                .iter()
                                .find(|e| self.peering_between(sv, &e.vpc_id).is_some())
                        })
                        .or_else(|| cands.first()),
                    None => cands.first(),
                };
                let e = *pick.ok_or_else(|| no_addr(id))?;
                let private = eni_addr(e, v6).ok_or_else(|| no_addr(id))?;
                // From the internet, an instance is reached at its public IPv4.
                let public = match (source, private) {
                    (None, IpAddr::V4(p)) => ops::eni::public_ip_of(w, e)
                        .map(IpAddr::V4)
                        .filter(|_| e.primary_ip() == p),
                    _ => None,
                };
                let kind = TKind::Eni(e);
                (
                    Target {
                        kind,
                        public: source.is_none(),
                        by_address: false,
                    },
                    public.unwrap_or(private),
                )
            }
            Endpoint::NetworkInterface(id) => {
                let e = w
                    .get::<NetworkInterface>(id)
                    .ok_or_else(|| ops::eni::ENI.not_found(id))?;
                let private = eni_addr(e, v6).ok_or_else(|| no_addr(id))?;
                let public = match (source, private) {
                    (None, IpAddr::V4(_)) => ops::eni::public_ip_of(w, e).map(IpAddr::V4),
                    _ => None,
                };
                let kind = match self.nat_of(e) {
                    Some(n) => TKind::Nat(n),
                    None => TKind::Eni(e),
                };
                (
                    Target {
                        kind,
                        public: source.is_none(),
                        by_address: false,
                    },
                    public.unwrap_or(private),
                )
            }
            Endpoint::Address(a) => (self.resolve_address(*a, src_vpc), *a),
        };

        // The source address and the interface it leaves by.
        let (source, src) = match source {
            None => (
                Source::Internet,
                if v6 {
                    IpAddr::V6(INTERNET_HOST_V6)
                } else {
                    IpAddr::V4(INTERNET_HOST_V4)
                },
            ),
            Some((inst, eni)) => {
                let egress = self.inst_egress(inst, dst);
                let owner = if fixed { eni } else { egress.unwrap_or(eni) };
                let src = match (&q.source, v6) {
                    (Endpoint::Address(a), _) => *a,
                    _ => eni_addr(owner, v6).ok_or_else(|| no_addr(&owner.meta.id))?,
                };
                (
                    Source::Eni {
                        inst,
                        eni: owner,
                        egress,
                    },
                    src,
                )
            }
        };
        Ok(Resolved {
            source,
            target,
            src,
            dst,
        })
    }

    /// What a bare destination address is: the internet host, a public IP's
    /// owner, or a private address's owner, preferring the source's VPC, then
    /// VPCs peered with it (as the source's routes would resolve it).
    fn resolve_address(&self, a: IpAddr, src_vpc: Option<&str>) -> Target<'a> {
        let w = self.w;
        let t = |kind, public| Target {
            kind,
            public,
            by_address: true,
        };
        if is_internet_host(a) {
            return t(TKind::Internet, true);
        }
        if let IpAddr::V4(p) = a {
            if let Some((e, _)) = self.ix.public_owner.get(&p) {
                if let Some(e) = w.get::<NetworkInterface>(e.as_str()) {
                    let kind = match self.nat_of(e) {
                        Some(n) => TKind::Nat(n),
                        None => TKind::Eni(e),
                    };
                    return t(kind, true);
                }
            }
        }
        let kind_of = |e: &'a NetworkInterface| match self.nat_of(e) {
            Some(n) => TKind::Nat(n),
            None => TKind::Eni(e),
        };
        let owners: Vec<&'a NetworkInterface> = self.enis_at(a).collect();
        if let Some(sv) = src_vpc {
            if let Some(e) = owners.iter().find(|e| e.vpc_id == sv) {
                return t(kind_of(e), false);
            }
            if let Some(e) = owners
                .iter()
                .find(|e| self.peering_between(sv, &e.vpc_id).is_some())
            {
                return t(kind_of(e), false);
            }
        }
        match owners.as_slice() {
            [e] => t(kind_of(e), false),
            _ => t(TKind::Unknown, false),
        }
    }

    fn target_vpc(&self, t: &Target<'a>) -> Option<&'a str> {
        match t.kind {
            TKind::Eni(e) => Some(&e.vpc_id),
            TKind::Nat(n) => Some(&n.vpc_id),
            _ => None,
        }
    }

    // ---- the request -----------------------------------------------------------

    fn forward(&mut self, r: &Resolved<'a>) -> Step<Fwd<'a>> {
        let mut travs: Vec<Trav<'a>> = Vec::new();
        let mut pkt = Pkt {
            src: r.src,
            dst: r.dst,
        };
        let mut node = match r.source {
            Source::Internet => {
                self.internet_hop(false);
                Node::Inet
            }
            Source::Eni { inst, eni, egress } => {
                self.eni_hops(false, eni, true);
                if !inst.is_up() {
                    self.block(|_| {
                        (
                            Explanation {
                                vpc_id: Some(eni.vpc_id.clone()),
                                subnet_id: Some(eni.subnet_id.clone()),
                                ..ex(
                                    "BAD_STATE",
                                    comp(&inst.meta.id, "instance"),
                                    format!(
                                        "The source instance {} is {}: its interfaces pass no traffic.",
                                        inst.meta.id,
                                        inst.state.as_str()
                                    ),
                                )
                            },
                            dg(
                                DiagnosisKind::InstanceNotRunning,
                                format!("the source instance {} is {}", inst.meta.id, inst.state.as_str()),
                                format!("start {}", inst.meta.id),
                            ),
                        )
                    })?;
                }
                if self.inst_has(inst, pkt.dst) {
                    // The source holds the destination's address itself (their
                    // VPCs overlap): the packet never leaves it, so another
                    // instance asked for by ID is not reached.
                    if let TKind::Eni(y) = r.target.kind {
                        let other = self
                            .instance_of(y)
                            .filter(|i| !r.target.by_address && i.meta.id != inst.meta.id);
                        if let Some(want) = other {
                            let (sv, dv) = (eni.vpc_id.clone(), want.vpc_id.clone());
                            let (dst, me, them) =
                                (pkt.dst, inst.meta.id.clone(), want.meta.id.clone());
                            self.block(|_| {
                                (
                                    Explanation {
                                        vpc_id: Some(sv.clone()),
                                        ..ex(
                                            "DISCONNECTED_VPCS",
                                            comp(&sv, "vpc"),
                                            format!("{dst} is {me}'s own address: the packet never leaves {me} for {them} in {dv}."),
                                        )
                                    },
                                    dg(
                                        DiagnosisKind::DisconnectedVpcs,
                                        format!("{me} in {sv} holds {dst} itself; {sv} and {dv} overlap and are not connected"),
                                        format!("re-address {dv} (or {sv}) so that their CIDRs do not overlap, then peer them"),
                                    ),
                                )
                            })?;
                            return Err(Stop);
                        }
                    }
                    return Ok(Fwd {
                        travs,
                        arrive: Arrive::Local,
                    });
                }
                let out = match egress {
                    Some(e) => e,
                    None => {
                        let dst = pkt.dst;
                        self.block(|_| {
                            (
                                ex(
                                    "NO_ROUTE_TO_DESTINATION",
                                    comp(&inst.meta.id, "instance"),
                                    format!(
                                        "{} has no route to {dst}: its primary interface has no {} address.",
                                        inst.meta.id,
                                        if dst.is_ipv6() { "IPv6" } else { "IPv4" }
                                    ),
                                ),
                                dg(
                                    DiagnosisKind::MissingRoute,
                                    format!("{} has no default route for {dst}", inst.meta.id),
                                    format!("assign an IPv6 address to the primary interface of {}", inst.meta.id),
                                ),
                            )
                        })?;
                        eni
                    }
                };
                if out.meta.id != eni.meta.id && self.explain {
                    let s = self.w.get::<Subnet>(&out.subnet_id);
                    let c = comp(&out.meta.id, "network-interface");
                    self.hop(false, c, s, Some(&out.vpc_id), None);
                }
                let Some(vpc) = self.w.get::<Vpc>(&out.vpc_id) else {
                    return Err(Stop);
                };
                Node::Router {
                    vpc,
                    iif: Port::Eni(out),
                }
            }
        };
        for _ in 0..MAX_HOPS {
            node = match node {
                Node::Router { vpc, iif } => {
                    if let IpAddr::V4(d) = pkt.dst {
                        if self.ix.router_addrs.contains(&(Key::new(&vpc.meta.id), d)) {
                            return self.arrive_router(vpc, pkt);
                        }
                    }
                    let (oif, p) = self.router_fwd(vpc, iif, pkt, &r.target, &mut travs)?;
                    pkt = p;
                    match oif {
                        Port::Eni(e) => return self.arrive_eni(e, pkt, r, travs),
                        Port::Nat(n) => {
                            if self.nat_ip(n) == Some(pkt.dst) {
                                self.eni_hops_nat(false, n);
                                self.only_ping(&n.meta.id, "natgateway", "NAT gateway")?;
                                return Ok(Fwd {
                                    travs,
                                    arrive: Arrive::Nat(n),
                                });
                            }
                            Node::NatNs(n)
                        }
                        Port::Pcx(p) => {
                            let Some(other) = p.other_vpc(&vpc.meta.id) else {
                                return Err(Stop);
                            };
                            let Some(peer) = self.w.get::<Vpc>(&other.vpc_id) else {
                                let id = other.vpc_id.clone();
                                self.block(|_| {
                                    (
                                        ex(
                                            "BAD_STATE",
                                            comp(&p.id, "vpc-peering-connection"),
                                            format!(
                                                "The peer VPC {id} of {} no longer exists.",
                                                p.id
                                            ),
                                        ),
                                        None,
                                    )
                                })?;
                                return Err(Stop);
                            };
                            Node::Router {
                                vpc: peer,
                                iif: Port::Pcx(p),
                            }
                        }
                        Port::Igw(_) => Node::Inet,
                    }
                }
                Node::Inet => {
                    if is_internet_host(pkt.dst) {
                        self.internet_hop(false);
                        return Ok(Fwd {
                            travs,
                            arrive: Arrive::Internet,
                        });
                    }
                    match self.inet_route(pkt.dst) {
                        Some((vpc, igw)) => {
                            if self.explain {
                                self.hop(
                                    false,
                                    comp(igw, "internet-gateway"),
                                    None,
                                    Some(&vpc.meta.id),
                                    None,
                                );
                            }
                            Node::Router {
                                vpc,
                                iif: Port::Igw(igw),
                            }
                        }
                        None => {
                            self.inet_failed(r, pkt)?;
                            return Err(Stop);
                        }
                    }
                }
                Node::NatNs(n) => {
                    let Some(IpAddr::V4(ip)) = self.nat_ip(n).filter(|_| !self.v6) else {
                        return Err(Stop);
                    };
                    pkt.src = IpAddr::V4(ip);
                    let Some(vpc) = self.w.get::<Vpc>(&n.vpc_id) else {
                        return Err(Stop);
                    };
                    Node::Router {
                        vpc,
                        iif: Port::Nat(n),
                    }
                }
            };
        }
        self.block(|_| {
            (
                ex(
                    "NO_PATH",
                    comp(&r.dst.to_string(), "vpc"),
                    format!("The path to {} loops.", r.dst),
                ),
                None,
            )
        })?;
        Err(Stop)
    }

    /// A gateway's own address answers pings but accepts no connection.
    fn only_ping(&mut self, id: &str, kind: &'static str, what: &str) -> Step<()> {
        if self.proto == Protocol::Icmp {
            return Ok(());
        }
        let p = self.what(false);
        self.block(|_| {
            (
                ex(
                    "NO_POSSIBLE_DESTINATION",
                    comp(id, kind),
                    format!("The {what} {id} answers pings but accepts no {p}."),
                ),
                None,
            )
        })?;
        Err(Stop)
    }

    /// The packet is for the VPC router's own address (a subnet's `.1`): the
    /// router answers it itself, without its `forward` chain (no ACL, no
    /// security group), and its reply is routed by table 250 (`iif lo`), so
    /// it reaches only the VPC's own running interfaces.
    fn arrive_router(&mut self, vpc: &'a Vpc, pkt: Pkt) -> Step<Fwd<'a>> {
        let vid = vpc.meta.id.as_str();
        if self.explain {
            self.hop(false, comp(vid, "vpc"), None, Some(vid), None);
        }
        self.only_ping(vid, "vpc", "VPC router of")?;
        if self.routed(vid, pkt.src, false).is_none() {
            let src = pkt.src;
            self.block(|_| {
                (
                    Explanation {
                        vpc_id: Some(vid.to_string()),
                        ..ex(
                            "NO_ROUTE_TO_DESTINATION",
                            comp(vid, "vpc"),
                            format!("The router of {vid} answers at {} only to its own VPC's running interfaces, not to {src}.", pkt.dst),
                        )
                    },
                    None,
                )
            })?;
            return Err(Stop);
        }
        if self.explain {
            self.hop(true, comp(vid, "vpc"), None, Some(vid), None);
        }
        // The reply leaves the router by its own output path: no filtering either.
        Ok(Fwd {
            travs: Vec::new(),
            arrive: Arrive::Router,
        })
    }

    fn eni_hops_nat(&mut self, ret: bool, n: &'a NatGateway) {
        if self.explain {
            let s = self.w.get::<Subnet>(&n.subnet_id);
            self.hop(
                ret,
                comp(&n.meta.id, "natgateway"),
                s,
                Some(&n.vpc_id),
                None,
            );
        }
    }

    /// The packet reached interface `e`'s instance: is it the destination?
    fn arrive_eni(
        &mut self,
        e: &'a NetworkInterface,
        pkt: Pkt,
        r: &Resolved<'a>,
        travs: Vec<Trav<'a>>,
    ) -> Step<Fwd<'a>> {
        let Some(inst) = self.instance_of(e) else {
            return Err(Stop);
        };
        if !self.inst_has(inst, pkt.dst) {
            // A route sent it to a middlebox that does not own the address.
            self.block(|_| {
                (
                    Explanation {
                        vpc_id: Some(e.vpc_id.clone()),
                        subnet_id: Some(e.subnet_id.clone()),
                        ..ex(
                            "ENI_ADDRESS_RESTRICTION",
                            comp(&e.meta.id, "network-interface"),
                            format!(
                                "A route sends the packet for {} to {} ({}), which does not hold that address; vpcd instances do not forward packets.",
                                pkt.dst, e.meta.id, inst.meta.id
                            ),
                        )
                    },
                    dg(
                        DiagnosisKind::MissingRoute,
                        format!("the route to {} points at {}, which does not forward", pkt.dst, e.meta.id),
                        format!("remove the route to {} via {} or make it more specific", pkt.dst, e.meta.id),
                    ),
                )
            })?;
            return Err(Stop);
        }
        self.eni_hops(false, e, false);
        let wanted = match r.target.kind {
            TKind::Eni(y) if !r.target.by_address => self.instance_of(y),
            _ => None,
        };
        if let Some(want) = wanted {
            if want.meta.id != inst.meta.id {
                let (sv, dv) = (e.vpc_id.clone(), want.vpc_id.clone());
                let dst = pkt.dst;
                let vpc = self.w.get::<Vpc>(&sv);
                self.block(|ev| {
                    let block = vpc.map(|v| ev.block_of(v, dst));
                    (
                        Explanation {
                            vpc_id: Some(sv.clone()),
                            ..ex(
                                "DISCONNECTED_VPCS",
                                comp(&sv, "vpc"),
                                format!(
                                    "{dst} is {}'s own address ({}): the packet is delivered to {} in {sv}, not to {} in {dv}.",
                                    sv, e.meta.id, inst.meta.id, want.meta.id
                                ),
                            )
                        },
                        dg(
                            DiagnosisKind::DisconnectedVpcs,
                            format!(
                                "{dst} lies in {sv}'s own CIDR{}, so the local route keeps it inside {sv}; {sv} and {dv} overlap and are not connected",
                                block.map(|b| format!(" {b}")).unwrap_or_default()
                            ),
                            format!("re-address {dv} (or {sv}) so that their CIDRs do not overlap, then peer them"),
                        ),
                    )
                })?;
                return Err(Stop);
            }
        }
        Ok(Fwd {
            travs,
            arrive: Arrive::Eni(e),
        })
    }

    /// The internet has no route to the address.
    fn inet_failed(&mut self, r: &Resolved<'a>, pkt: Pkt) -> Step<()> {
        let dst = pkt.dst;
        let src_vpc = match r.source {
            Source::Eni { eni, .. } => Some(eni.vpc_id.clone()),
            Source::Internet => None,
        };
        let tvpc = self.target_vpc(&r.target).map(str::to_string);
        let host = comp(&dst.to_string(), "internet");
        match r.target.kind {
            TKind::Eni(e) if src_vpc.is_none() => {
                let has_igw = self.igw_of(&e.vpc_id).is_some();
                let up = eni_up(self.w, e);
                self.block(|_| {
                    if !has_igw {
                        (
                            ex(
                                "NO_ROUTE_TO_DESTINATION",
                                comp(&e.vpc_id, "vpc"),
                                format!("{} has no internet gateway, so the internet cannot reach {}.", e.vpc_id, e.meta.id),
                            ),
                            dg(
                                DiagnosisKind::MissingRoute,
                                format!("{} has no internet gateway", e.vpc_id),
                                format!("attach an internet gateway to {} and route 0.0.0.0/0 (and ::/0) to it", e.vpc_id),
                            ),
                        )
                    } else if !up {
                        (
                            ex(
                                "BAD_STATE",
                                comp(&e.meta.id, "network-interface"),
                                format!("{} is not attached to a running instance.", e.meta.id),
                            ),
                            dg(
                                DiagnosisKind::InstanceNotRunning,
                                format!("the destination {} is not running", e.meta.id),
                                "start the instance".into(),
                            ),
                        )
                    } else {
                        (
                            ex(
                                "IGW_PRIVATE_IP_ASSOCIATION_FOR_INGRESS",
                                comp(&e.meta.id, "network-interface"),
                                format!("{} has no public IPv4 address: the internet cannot reach {dst}.", e.meta.id),
                            ),
                            dg(
                                DiagnosisKind::NoPublicIp,
                                format!("{} has no public IP address", e.meta.id),
                                format!("associate an Elastic IP address with {}", e.meta.id),
                            ),
                        )
                    }
                })
            }
            TKind::Eni(_) | TKind::Nat(_) if !r.target.public => {
                let (sv, tv) = (src_vpc.unwrap_or_default(), tvpc.unwrap_or_default());
                self.block(|_| {
                    (
                        ex(
                            "DISCONNECTED_VPCS",
                            comp(&tv, "vpc"),
                            format!("{sv} reaches {dst} only through its internet gateway, and the internet does not route private addresses."),
                        ),
                        dg(
                            DiagnosisKind::DisconnectedVpcs,
                            format!("{sv} and {tv} are not connected: no peering connection joins them"),
                            format!("create a peering connection between {sv} and {tv} with routes on both sides, or use the destination's public IP"),
                        ),
                    )
                })
            }
            TKind::Eni(e) if !eni_up(self.w, e) => self.block(|_| {
                (
                    ex("BAD_STATE", comp(&e.meta.id, "network-interface"), format!("{} is not attached to a running instance, so its public IP is not routed.", e.meta.id)),
                    dg(DiagnosisKind::InstanceNotRunning, format!("the destination {} is not running", e.meta.id), "start the instance".into()),
                )
            }),
            TKind::Eni(_) | TKind::Nat(_) => {
                let tv = tvpc.unwrap_or_default();
                self.block(|_| {
                    (
                        ex("NO_ROUTE_TO_DESTINATION", comp(&tv, "vpc"), format!("{tv} has no internet gateway, so its public address {dst} is unreachable.")),
                        dg(DiagnosisKind::MissingRoute, format!("{tv} has no internet gateway"), format!("attach an internet gateway to {tv}")),
                    )
                })
            }
            _ => self.block(|_| {
                (
                    ex("NO_ROUTE_TO_DESTINATION", host, format!("Nothing on the internet answers at {dst}.")),
                    None,
                )
            }),
        }
    }

    /// One router crossing of the request: routing, then the `forward` chain.
    fn router_fwd(
        &mut self,
        vpc: &'a Vpc,
        iif: Port<'a>,
        mut pkt: Pkt,
        tgt: &Target<'a>,
        travs: &mut Vec<Trav<'a>>,
    ) -> Step<(Port<'a>, Pkt)> {
        // prerouting: 1:1 DNAT of a public address arriving from the internet gateway.
        if let (Port::Igw(_), IpAddr::V4(d)) = (iif, pkt.dst) {
            if let Some((v, p)) = self.ix.pub2priv.get(&d) {
                if v.as_str() == vpc.meta.id {
                    pkt.dst = IpAddr::V4(*p);
                }
            }
        }
        let in_subnet = self.subnet_of(iif);
        let (table, look) = self.route(vpc, iif, pkt.dst);
        // The route-table hop: the table, and the route that matched (if any).
        let route_hop = table.map(|t| (t, hop_route(look)));
        let oif = match look {
            Look::Hit(_, p) => p,
            other => self.route_failed(vpc, iif, in_subnet, table, other, pkt, tgt)?,
        };
        let out_subnet = self.subnet_of(oif);

        // 1. Guards.
        if let (Port::Nat(n), Port::Pcx(p)) = (iif, oif) {
            self.block(|_| {
                (
                    ex(
                        "UNSUPPORTED_COMPONENT",
                        comp(&n.meta.id, "natgateway"),
                        format!("Traffic forwarded by NAT gateway {} cannot use peering connection {}.", n.meta.id, p.id),
                    ),
                    dg(
                        DiagnosisKind::EdgeToEdge,
                        format!("edge-to-edge: traffic through NAT gateway {} cannot use peering connection {}", n.meta.id, p.id),
                        format!("route the peer's CIDR via {} in the source subnet's route table instead of through the NAT gateway", p.id),
                    ),
                )
            })?;
            return Err(Stop);
        }
        if let (Port::Igw(g), IpAddr::V4(s)) = (oif, pkt.src) {
            if self.public_of(&vpc.meta.id, s).is_none() {
                let skip = matches!(iif, Port::Eni(e) if !eni_up(self.w, e));
                if !skip {
                    self.block(|ev| ev.no_public_ip(iif, g, vpc))?;
                } else {
                    self.blocked = true;
                }
            }
        }
        // 2. Source/destination check.
        if let Port::Eni(x) = iif {
            if x.source_dest_check && !eni_has(x, pkt.src) {
                self.block(|_| sdc_blocker(x, pkt.src, true))?;
            }
        }
        if let Port::Eni(y) = oif {
            if y.source_dest_check && !eni_has(y, pkt.dst) {
                self.block(|_| sdc_blocker(y, pkt.dst, false))?;
                return Err(Stop);
            }
        }
        // 3. Network ACLs, when the packet crosses a subnet boundary.
        let mut acl_out = None;
        let mut acl_in = None;
        if let Some(s1) = in_subnet {
            if out_subnet.map(|s| &s.meta.id) != Some(&s1.meta.id) {
                acl_out = self.nacl(s1, true, pkt.dst, false)?;
            }
        }
        if let Some(s2) = out_subnet {
            if in_subnet.map(|s| &s.meta.id) != Some(&s2.meta.id) {
                acl_in = self.nacl(s2, false, pkt.src, false)?;
            }
        }
        // 5. Security groups of a new connection.
        let mut sg_out = None;
        let mut sg_in = None;
        if let Port::Eni(x) = iif {
            sg_out = self.sg(x, true, pkt.dst)?;
        }
        if let Port::Eni(y) = oif {
            sg_in = self.sg(y, false, pkt.src)?;
        }
        let seen = pkt;
        // postrouting: SNAT to the public address at the internet gateway.
        if let (Port::Igw(_), IpAddr::V4(s)) = (oif, pkt.src) {
            if let Some(p) = self.public_of(&vpc.meta.id, s) {
                pkt.src = IpAddr::V4(p);
            }
        }
        travs.push(Trav {
            vpc,
            iif,
            oif,
            src: seen.src,
            dst: seen.dst,
        });
        if self.explain {
            let vid = Some(vpc.meta.id.as_str());
            if let (Some(s), Some(x)) = (in_subnet, sg_out) {
                self.hop(false, x.0, Some(s), vid, x.1);
            }
            if let (Some(s), Some(x)) = (in_subnet, acl_out) {
                self.hop(false, x.0, Some(s), vid, Some(x.1));
            }
            if let Some((t, r)) = route_hop {
                let rule = r.map(|(r, state)| route_rule(t, r, state));
                self.hop(false, comp(&t.meta.id, "route-table"), in_subnet, vid, rule);
            }
            match oif {
                Port::Pcx(_) | Port::Igw(_) => self.hop(false, oif.component(), None, vid, None),
                Port::Nat(n) if self.nat_ip(n) != Some(seen.dst) => self.eni_hops_nat(false, n),
                _ => {}
            }
            if let (Some(s), Some(x)) = (out_subnet, acl_in) {
                self.hop(false, x.0, Some(s), vid, Some(x.1));
            }
            if let (Some(s), Some(x)) = (out_subnet, sg_in) {
                self.hop(false, x.0, Some(s), vid, x.1);
            }
        }
        Ok((oif, pkt))
    }

    fn no_public_ip(
        &self,
        iif: Port<'a>,
        igw: &str,
        vpc: &Vpc,
    ) -> (Explanation, Option<Diagnosis>) {
        let (who, fix) = match iif {
            Port::Nat(n) => (
                format!("NAT gateway {} has no Elastic IP (a private NAT gateway)", n.meta.id),
                format!("use a public NAT gateway (with an Elastic IP) in place of {}", n.meta.id),
            ),
            Port::Eni(e) => (
                format!("{} has no public IPv4 address", e.meta.id),
                format!(
                    "associate an Elastic IP address with {} (or give its instance a public IP), or route 0.0.0.0/0 through a NAT gateway",
                    e.meta.id
                ),
            ),
            _ => ("the source has no public IPv4 address".into(), "use a source with a public IP".into()),
        };
        (
            Explanation {
                vpc_id: Some(vpc.meta.id.clone()),
                ..ex(
                    "IGW_PUBLIC_IP_ASSOCIATION_FOR_EGRESS",
                    comp(igw, "internet-gateway"),
                    format!("{who}, so internet gateway {igw} does not forward its traffic."),
                )
            },
            dg(DiagnosisKind::NoPublicIp, who, fix),
        )
    }

    /// Route lookup failed in a router: explain, then pick where the packet was meant to go.
    #[allow(clippy::too_many_arguments)]
    fn route_failed(
        &mut self,
        vpc: &'a Vpc,
        iif: Port<'a>,
        subnet: Option<&'a Subnet>,
        table: Option<&'a RouteTable>,
        look: Look<'a>,
        pkt: Pkt,
        tgt: &Target<'a>,
    ) -> Step<Port<'a>> {
        let dst = pkt.dst;
        let vid = vpc.meta.id.as_str();
        match iif {
            Port::Pcx(p) => return self.peer_failed(vpc, p, pkt, tgt),
            Port::Igw(g) => {
                self.block(|_| {
                    (
                        ex(
                            "NO_ROUTE_TO_DESTINATION",
                            comp(g, "internet-gateway"),
                            format!("No running interface of {vid} has the address {dst}."),
                        ),
                        None,
                    )
                })?;
                return Err(Stop);
            }
            _ => {}
        }
        let Some(rt) = table else {
            self.block(|_| {
                (
                    ex(
                        "NO_ROUTE_TO_DESTINATION",
                        comp(subnet.map_or(vid, |s| s.meta.id.as_str()), "subnet"),
                        "The subnet has no route table.".into(),
                    ),
                    None,
                )
            })?;
            return Err(Stop);
        };
        let route = match look {
            Look::Inactive(r) | Look::NoInterface(Some(r)) => Some(r),
            _ => None,
        };
        let intended = self.intended(vpc, route, tgt);
        let rt_comp = comp(&rt.meta.id, "route-table");
        let at = |e: Explanation| Explanation {
            vpc_id: Some(vid.to_string()),
            subnet_id: subnet.map(|s| s.meta.id.clone()),
            ..e
        };
        let used_by = subnet
            .map(|s| format!(" (used by {})", s.meta.id))
            .unwrap_or_default();
        match look {
            Look::NoRoute | Look::Hit(..) => {
                self.block(|ev| {
                    let e = at(ex(
                        "NO_ROUTE_TO_DESTINATION",
                        rt_comp.clone(),
                        format!("Route table {}{used_by} has no route to {dst}.", rt.meta.id),
                    ));
                    let d = match intended {
                        Some(Port::Pcx(p)) => {
                            let other = p
                                .other_vpc(vid)
                                .map(|s| s.vpc_id.clone())
                                .unwrap_or_default();
                            let block =
                                ev.w.get::<Vpc>(&other)
                                    .map_or(host_net(dst), |v| ev.block_of(v, dst));
                            dg(
                                DiagnosisKind::MissingRoute,
                                format!(
                                    "route table {}{used_by} has no route to {dst}",
                                    rt.meta.id
                                ),
                                format!("add a route to {block} via {} in {}", p.id, rt.meta.id),
                            )
                        }
                        Some(Port::Igw(g)) => dg(
                            DiagnosisKind::MissingRoute,
                            format!("route table {}{used_by} has no route to {dst}", rt.meta.id),
                            format!(
                                "add a route to {} via {g} in {}",
                                ev.default_net(),
                                rt.meta.id
                            ),
                        ),
                        _ => ev.unconnected(vpc, rt, tgt, dst),
                    };
                    (e, d)
                })?;
            }
            Look::NoInterface(_) => {
                // The local route, but no running interface has the address.
                let owner = self.enis_at(dst).find(|e| e.vpc_id == vid);
                let elsewhere = self.target_vpc(tgt).filter(|v| *v != vid);
                match (owner, elsewhere) {
                    (Some(e), _) => {
                        let inst = self.instance_of(e);
                        let nat = self.nat_of(e);
                        self.block(|_| match (inst, nat) {
                            (Some(i), _) => (
                                at(ex(
                                    "BAD_STATE",
                                    comp(&i.meta.id, "instance"),
                                    format!(
                                        "The destination instance {} is {}.",
                                        i.meta.id,
                                        i.state.as_str()
                                    ),
                                )),
                                dg(
                                    DiagnosisKind::InstanceNotRunning,
                                    format!(
                                        "the destination instance {} is {}",
                                        i.meta.id,
                                        i.state.as_str()
                                    ),
                                    format!("start {}", i.meta.id),
                                ),
                            ),
                            (None, Some(n)) => (
                                at(ex(
                                    "BAD_STATE",
                                    comp(&n.meta.id, "natgateway"),
                                    format!("NAT gateway {} is {}.", n.meta.id, n.state.as_str()),
                                )),
                                None,
                            ),
                            _ => (
                                at(ex(
                                    "BAD_STATE",
                                    comp(&e.meta.id, "network-interface"),
                                    format!("{} is not attached to an instance.", e.meta.id),
                                )),
                                dg(
                                    DiagnosisKind::InstanceNotRunning,
                                    format!("{} is not attached to an instance", e.meta.id),
                                    format!("attach {} to a running instance", e.meta.id),
                                ),
                            ),
                        })?;
                        // Carry on as if it ran, to find what else stands in the way.
                        if inst.is_some() {
                            return Ok(Port::Eni(e));
                        }
                        return Err(Stop);
                    }
                    (None, Some(tv)) => {
                        let tv = tv.to_string();
                        self.block(|ev| {
                            let block = ev.block_of(vpc, dst);
                            (
                                at(ex("DISCONNECTED_VPCS", comp(vid, "vpc"), format!("{dst} lies in {vid}'s own CIDR {block}: the local route keeps it inside {vid}, where no interface has it."))),
                                dg(
                                    DiagnosisKind::DisconnectedVpcs,
                                    format!("{dst} lies in {vid}'s own CIDR {block}, so the local route keeps it inside {vid}; {vid} and {tv} overlap and are not connected"),
                                    format!("re-address {tv} (or {vid}) so that their CIDRs do not overlap, then peer them"),
                                ),
                            )
                        })?;
                        return Err(Stop);
                    }
                    (None, None) => {
                        self.block(|_| {
                            (
                                at(ex(
                                    "NO_ROUTE_TO_DESTINATION",
                                    comp(vid, "vpc"),
                                    format!("No interface in {vid} has the address {dst}."),
                                )),
                                None,
                            )
                        })?;
                        return Err(Stop);
                    }
                }
            }
            Look::Inactive(r) => {
                self.block(|ev| {
                    let e = Explanation {
                        rule: Some(route_rule(rt, r, "blackhole")),
                        ..at(ex(
                            "BAD_STATE_ROUTE",
                            rt_comp.clone(),
                            format!("The route to {} in {} targets {}, which cannot carry traffic (blackhole).", r.dest, rt.meta.id, target_str(&r.target)),
                        ))
                    };
                    (e, ev.inactive_diag(rt, r))
                })?;
            }
        }
        // Carrying on over a peering that is not active is a blocker of its own
        // (unless the failed route already says so).
        if let Some(Port::Pcx(p)) = intended {
            let named = matches!(look, Look::Inactive(r) if matches!(&r.target, RouteTarget::Peering(x) if *x == p.id));
            if !self.carries(p) && !named {
                self.block(|ev| {
                    (
                        Explanation {
                            vpc_id: Some(vid.to_string()),
                            ..ex(
                                "BAD_STATE",
                                comp(&p.id, "vpc-peering-connection"),
                                format!(
                                    "Peering connection {} is {}: it carries no traffic.",
                                    p.id,
                                    p.state.as_str()
                                ),
                            )
                        },
                        ev.pcx_diag(p, None),
                    )
                })?;
            }
        }
        intended.ok_or(Stop)
    }

    /// Why a route's target is a blackhole, and the fix.
    fn inactive_diag(&self, rt: &RouteTable, r: &Route) -> Option<Diagnosis> {
        let w = self.w;
        match &r.target {
            RouteTarget::Peering(p) => match w.get::<Peering>(p) {
                Some(x) => self.pcx_diag(x, Some(r.dest)),
                None => dg(
                    DiagnosisKind::PeeringNotActive,
                    format!("peering {p} of {} is deleted", rt.vpc_id),
                    format!(
                        "create a new peering connection and point the route to {} at it",
                        r.dest
                    ),
                ),
            },
            RouteTarget::Gateway(g) => dg(
                DiagnosisKind::MissingRoute,
                format!("internet gateway {g} is not attached to {}", rt.vpc_id),
                format!("attach {g} to {}", rt.vpc_id),
            ),
            RouteTarget::NatGateway(n) => match w.get::<NatGateway>(n) {
                Some(g) if self.v6 || r.dest.addr().is_ipv6() => dg(
                    DiagnosisKind::MissingRoute,
                    format!("NAT gateway {n} forwards IPv4 only"),
                    format!("route {} to an internet gateway instead", r.dest),
                )
                .filter(|_| g.state == NatState::Available),
                Some(g) => dg(
                    DiagnosisKind::MissingRoute,
                    format!("NAT gateway {n} is {}", g.state.as_str()),
                    format!("point the route to {} at an available NAT gateway", r.dest),
                ),
                None => dg(
                    DiagnosisKind::MissingRoute,
                    format!("NAT gateway {n} does not exist"),
                    format!("point the route to {} at an available NAT gateway", r.dest),
                ),
            },
            RouteTarget::NetworkInterface(x) | RouteTarget::Instance(x) => dg(
                DiagnosisKind::InstanceNotRunning,
                format!("the route to {} targets {x}, which is not running", r.dest),
                format!("start the instance behind {x}"),
            ),
            RouteTarget::EgressOnlyGateway(g) => dg(
                DiagnosisKind::MissingRoute,
                format!("egress-only internet gateway {g} carries no traffic in vpcd"),
                format!("route {} to an internet gateway", r.dest),
            ),
            RouteTarget::Local => None,
        }
    }

    /// A peering connection that is not active, and how to make it so.
    fn pcx_diag(&self, x: &Peering, dest: Option<IpNet>) -> Option<Diagnosis> {
        let (p, a, b) = (&x.id, &x.requester.vpc_id, &x.accepter.vpc_id);
        let fix = match x.state {
            PcxState::PendingAcceptance => format!(
                "accept it: account {} (owner of {b}) runs accept-vpc-peering-connection --vpc-peering-connection-id {p}",
                x.accepter.owner
            ),
            PcxState::InitiatingRequest | PcxState::Provisioning => {
                format!("wait for {p} to become active")
            }
            _ => match dest {
                Some(d) => format!("create a new peering connection between {a} and {b} and point the route to {d} at it"),
                None => format!("create a new peering connection between {a} and {b}"),
            },
        };
        dg(
            DiagnosisKind::PeeringNotActive,
            format!("peering {p} between {a} and {b} is {}", x.state.as_str()),
            fix,
        )
    }

    /// No route and no way on: why the two ends are not connected.
    fn unconnected(
        &self,
        vpc: &Vpc,
        rt: &RouteTable,
        tgt: &Target<'a>,
        dst: IpAddr,
    ) -> Option<Diagnosis> {
        let a = vpc.meta.id.as_str();
        match (tgt.kind, self.target_vpc(tgt)) {
            _ if tgt.public && self.igw_of(a).is_none() => dg(
                DiagnosisKind::MissingRoute,
                format!("{a} has no internet gateway, so nothing routes {dst} out of it"),
                format!("attach an internet gateway to {a} and route {} to it in {}", self.default_net(), rt.meta.id),
            ),
            (_, Some(c)) if c != a => match self.middle(a, c) {
                Some((p, q)) => {
                    let b = p.other_vpc(a).map(|s| s.vpc_id.clone()).unwrap_or_default();
                    let _ = q;
                    dg(
                        DiagnosisKind::TransitivePeering,
                        format!("transitive peering: {a} is peered with {b} and {b} with {c}, but {a} is not peered with {c}"),
                        format!("create a peering connection between {a} and {c} and route each VPC's CIDR to it"),
                    )
                }
                None => dg(
                    DiagnosisKind::DisconnectedVpcs,
                    format!("{a} and {c} are not connected: no peering connection joins them"),
                    format!("create a peering connection between {a} and {c} and add routes on both sides"),
                ),
            },
            _ => dg(
                DiagnosisKind::MissingRoute,
                format!("route table {} has no route to {dst}", rt.meta.id),
                format!("add a route to {dst} in {}", rt.meta.id),
            ),
        }
    }

    /// Where a packet whose route failed was meant to go: the peering the
    /// failed route names, else towards the destination (its interface in
    /// this VPC, the peering to its VPC, the internet gateway).
    fn intended(
        &self,
        vpc: &'a Vpc,
        route: Option<&'a Route>,
        tgt: &Target<'a>,
    ) -> Option<Port<'a>> {
        let w = self.w;
        let vid = vpc.meta.id.as_str();
        match route.map(|r| &r.target) {
            // A route to a peering that carries no traffic: on over that peering.
            Some(RouteTarget::Peering(p)) => {
                return w
                    .get::<Peering>(p)
                    .filter(|pc| {
                        pc.other_vpc(vid)
                            .is_some_and(|s| s.vpc_id != vid && w.get::<Vpc>(&s.vpc_id).is_some())
                    })
                    .map(Port::Pcx);
            }
            // A blackholed gateway or interface: nothing to follow.
            Some(RouteTarget::Local) | None => {}
            Some(_) => return None,
        }
        if tgt.public {
            return self.igw_of(vid).map(Port::Igw);
        }
        let (port, tv) = match tgt.kind {
            TKind::Eni(e) => (Port::Eni(e), e.vpc_id.as_str()),
            TKind::Nat(n) => (Port::Nat(n), n.vpc_id.as_str()),
            _ => return None,
        };
        if tv == vid {
            return Some(port);
        }
        if let Some(p) = self.peering_between(vid, tv) {
            return Some(Port::Pcx(p));
        }
        // IPv6 addresses are global: between two VPCs with internet gateways.
        if self.v6 && self.igw_of(tv).is_some() {
            return self.igw_of(vid).map(Port::Igw);
        }
        None
    }

    /// The packet came over a peering but is not for one of this VPC's
    /// running interfaces: transitive or edge-to-edge routing, or a stopped
    /// destination.
    fn peer_failed(
        &mut self,
        vpc: &'a Vpc,
        p: &'a Peering,
        pkt: Pkt,
        tgt: &Target<'a>,
    ) -> Step<Port<'a>> {
        let w = self.w;
        let b = vpc.meta.id.as_str();
        let a = p.other_vpc(b).map(|s| s.vpc_id.clone()).unwrap_or_default();
        let dst = pkt.dst;
        if let Some(e) = self
            .enis_at(dst)
            .find(|e| e.vpc_id == b && e.interface_type != "nat_gateway")
        {
            let inst = self.instance_of(e);
            self.block(|_| {
                let (id, state) = inst.map_or((e.meta.id.clone(), "detached"), |i| {
                    (i.meta.id.clone(), i.state.as_str())
                });
                (
                    Explanation {
                        vpc_id: Some(b.to_string()),
                        subnet_id: Some(e.subnet_id.clone()),
                        ..ex(
                            "BAD_STATE",
                            comp(&id, "instance"),
                            format!("The destination {id} is {state}."),
                        )
                    },
                    dg(
                        DiagnosisKind::InstanceNotRunning,
                        format!("the destination {id} is {state}"),
                        format!("start {id}"),
                    ),
                )
            })?;
            return if inst.is_some() {
                Ok(Port::Eni(e))
            } else {
                Err(Stop)
            };
        }
        // What would B do with it: a third VPC over another peering, or its gateways?
        let mut third: Option<String> = self
            .target_vpc(tgt)
            .filter(|v| *v != b && *v != a)
            .map(str::to_string);
        let mut gw: Option<Port<'a>> = None;
        for rt in Index::list(&self.ix.rtbs_by_vpc, b)
            .iter()
            .filter_map(|id| w.get::<RouteTable>(id.as_str()))
        {
            let Some(r) = ops::route::lookup(rt, dst) else {
                continue;
            };
            match &r.target {
                RouteTarget::Peering(q) if third.is_none() => {
                    third = w
                        .get::<Peering>(q)
                        .and_then(|q| q.other_vpc(b))
                        .map(|s| s.vpc_id.clone())
                        .filter(|c| *c != a);
                }
                RouteTarget::Gateway(g) if gw.is_none() => gw = Some(Port::Igw(g)),
                RouteTarget::NatGateway(n) if gw.is_none() => {
                    gw = w.get::<NatGateway>(n).map(Port::Nat)
                }
                _ => {}
            }
            if third.is_some() || gw.is_some() {
                break;
            }
        }
        if third.is_none() && gw.is_none() && (tgt.public || matches!(tgt.kind, TKind::Internet)) {
            gw = self.igw_of(b).map(Port::Igw);
        }
        let pcx_comp = comp(&p.id, "vpc-peering-connection");
        let base = format!("{} carries traffic only to and from addresses of {b} and {a}; {dst} is not an address of a running interface in {b}.", p.id);
        match (third, gw) {
            (Some(c), _) if self.peering_between(b, &c).is_some() => {
                self.block(|_| {
                    (
                        Explanation { vpc_id: Some(b.to_string()), ..ex("PCX_REQUIRES_ADDRESS_IN_VPC_CIDR", pcx_comp.clone(), base.clone()) },
                        dg(
                            DiagnosisKind::TransitivePeering,
                            format!("transitive peering: {a} is peered with {b} and {b} with {c}, but {a} is not peered with {c}"),
                            format!("create a peering connection between {a} and {c} and route each VPC's CIDR to it"),
                        ),
                    )
                })?;
            }
            (_, Some(g)) => {
                let code = match g {
                    Port::Nat(_) => "NGW_REQUIRES_SOURCE_IN_VPC",
                    _ => "IGW_PUBLIC_IP_ASSOCIATION_FOR_EGRESS",
                };
                let what = match g {
                    Port::Nat(n) => format!("NAT gateway {}", n.meta.id),
                    _ => format!("internet gateway {}", g.id()),
                };
                self.block(|_| {
                    (
                        Explanation { vpc_id: Some(b.to_string()), ..ex("PCX_REQUIRES_ADDRESS_IN_VPC_CIDR", pcx_comp.clone(), base.clone()) },
                        dg(
                            DiagnosisKind::EdgeToEdge,
                            format!("edge-to-edge: traffic from a peer cannot use {b}'s {what}"),
                            format!("give {a} its own internet access (an internet gateway or NAT gateway in {a}) and route {dst} to it"),
                        ),
                    )
                })?;
                self.block(|_| {
                    (
                        Explanation {
                            vpc_id: Some(b.to_string()),
                            ..ex(code, g.component(), format!("The source {} is not in {b}: {what} does not forward traffic that arrives over a peering.", pkt.src))
                        },
                        None,
                    )
                })?;
            }
            _ => {
                self.block(|_| {
                    (
                        Explanation {
                            vpc_id: Some(b.to_string()),
                            ..ex(
                                "PCX_REQUIRES_ADDRESS_IN_VPC_CIDR",
                                pcx_comp.clone(),
                                base.clone(),
                            )
                        },
                        dg(
                            DiagnosisKind::MissingRoute,
                            format!(
                                "the route in {a} sends {dst} over {}, but {dst} is not in {b}",
                                p.id
                            ),
                            format!("route {dst} to where it lives instead of {}", p.id),
                        ),
                    )
                })?;
            }
        }
        Err(Stop)
    }

    /// A subnet's network ACL for one packet; explains a deny. Returns the
    /// deciding entry as a hop's component and rule.
    fn nacl(
        &mut self,
        s: &'a Subnet,
        egress: bool,
        remote: IpAddr,
        ret: bool,
    ) -> Step<Option<(Component, Rule)>> {
        let w = self.w;
        let acl = self
            .ix
            .acl_by_subnet
            .get(s.meta.id.as_str())
            .and_then(|a| w.get::<NetworkAcl>(a.as_str()));
        let star = if remote.is_ipv6() { STAR_V6 } else { STAR_V4 };
        let (action, n) = match acl {
            None => (AclAction::Deny, star),
            Some(acl) => {
                let icmp = self.icmp(ret);
                if self.proto == Protocol::Icmp {
                    ops::acl::evaluate(acl, egress, self.pnum, remote, None, icmp)
                } else if ret {
                    let (lo, hi) = self.ret_ports;
                    ops::acl::evaluate_ports(acl, egress, self.pnum, remote, (lo, hi), None)
                } else {
                    ops::acl::evaluate(acl, egress, self.pnum, remote, self.dport, None)
                }
            }
        };
        let acl_id = acl.map_or_else(
            || format!("(no ACL for {})", s.meta.id),
            |a| a.meta.id.clone(),
        );
        let entry = acl.and_then(|a| {
            a.entries
                .iter()
                .find(|e| e.egress == egress && e.rule_number == n)
        });
        let rule = acl_rule(&acl_id, egress, n, entry, remote.is_ipv6());
        if action == AclAction::Deny {
            let dir = if egress {
                Direction::Egress
            } else {
                Direction::Ingress
            };
            let rule2 = rule.clone();
            let acl_id2 = acl_id.clone();
            self.block(|ev| {
                let what = ev.what(ret);
                let (way, prep) = if egress {
                    ("outbound", "to")
                } else {
                    ("inbound", "from")
                };
                let num = if n >= STAR_V4 {
                    "*".to_string()
                } else {
                    n.to_string()
                };
                let detail = format!(
                    "Network ACL {acl_id2} of {} denies {way} {what} {prep} {remote} (rule {num}).",
                    s.meta.id
                );
                let e = Explanation {
                    direction: Some(dir),
                    rule: Some(rule2),
                    vpc_id: Some(s.vpc_id.clone()),
                    subnet_id: Some(s.meta.id.clone()),
                    ..ex(
                        "SUBNET_ACL_RESTRICTION",
                        comp(&acl_id2, "network-acl"),
                        detail,
                    )
                };
                let below = if n >= STAR_V4 {
                    String::new()
                } else {
                    format!(" numbered below {n}")
                };
                let d = if ret {
                    let ports = if ev.proto == Protocol::Icmp {
                        "the return traffic (echo replies)".to_string()
                    } else {
                        format!("the return traffic on ephemeral ports ({})", what)
                    };
                    dg(
                        DiagnosisKind::NaclDeniesReturnTraffic,
                        format!(
                            "NACL {acl_id2} rule {num} of {} denies {ports} {way} {prep} {remote}",
                            s.meta.id
                        ),
                        format!(
                            "add an {way} allow entry{below} to {acl_id2} for {what} {prep} {}",
                            host_net(remote)
                        ),
                    )
                } else {
                    dg(
                        DiagnosisKind::NaclDenies,
                        format!(
                            "NACL {acl_id2} rule {num} of {} denies {way} {what} {prep} {remote}",
                            s.meta.id
                        ),
                        format!(
                            "add an {way} allow entry{below} to {acl_id2} for {what} {prep} {}",
                            host_net(remote)
                        ),
                    )
                };
                (e, d)
            })?;
        }
        Ok(Some((comp(&acl_id, "network-acl"), rule)))
    }

    /// The interface's security groups for the request's new connection;
    /// explains a refusal. Returns the admitting rule as a hop.
    fn sg(
        &mut self,
        e: &'a NetworkInterface,
        egress: bool,
        peer: IpAddr,
    ) -> Step<Option<(Component, Option<Rule>)>> {
        let w = self.w;
        let dir = if egress {
            Direction::Egress
        } else {
            Direction::Ingress
        };
        let icmp = self.icmp(false);
        let mut hit = None;
        'groups: for gid in &e.groups {
            let Some(g) = w.get::<SecurityGroup>(gid) else {
                continue;
            };
            let rules = if egress { &g.egress } else { &g.ingress };
            for r in rules {
                if self.rule_stale(&g.vpc_id, r) {
                    continue;
                }
                if ops::sg::rule_admits(r, self.pnum, self.dport, icmp, peer, |gr, a| {
                    self.is_member(gr, a)
                }) {
                    hit = Some((g, r));
                    break 'groups;
                }
            }
        }
        match hit {
            Some((g, r)) => Ok(Some((
                comp(&g.meta.id, "security-group"),
                Some(sg_rule(g, r, dir)),
            ))),
            None => {
                self.block(|ev| {
                    let what = ev.what(false);
                    let groups = if e.groups.is_empty() {
                        "no security group".to_string()
                    } else {
                        e.groups.join(", ")
                    };
                    let (way, prep) = if egress {
                        ("egress", "to")
                    } else {
                        ("ingress", "from")
                    };
                    let first = e
                        .groups
                        .first()
                        .cloned()
                        .unwrap_or_else(|| "a security group".into());
                    let (proto, ports) = match ev.proto {
                        Protocol::Icmp if ev.v6 => ("icmpv6", "type 128".to_string()),
                        Protocol::Icmp => ("icmp", "type 8".to_string()),
                        Protocol::Tcp => ("tcp", format!("port {}", ev.dport.unwrap_or(0))),
                        Protocol::Udp => ("udp", format!("port {}", ev.dport.unwrap_or(0))),
                    };
                    let comp_id = e
                        .groups
                        .first()
                        .map_or_else(|| e.meta.id.clone(), |g| g.clone());
                    let kind = if e.groups.is_empty() {
                        "network-interface"
                    } else {
                        "security-group"
                    };
                    (
                        Explanation {
                            direction: Some(dir),
                            vpc_id: Some(e.vpc_id.clone()),
                            subnet_id: Some(e.subnet_id.clone()),
                            ..ex(
                                "ENI_SG_RULES_MISMATCH",
                                comp(&comp_id, kind),
                                format!(
                                    "No {way} rule of {groups} on {} admits {what} {prep} {peer}.",
                                    e.meta.id
                                ),
                            )
                        },
                        dg(
                            DiagnosisKind::SecurityGroupDenies,
                            format!(
                                "no {way} rule of {groups} on {} allows {what} {prep} {peer}",
                                e.meta.id
                            ),
                            format!(
                                "authorize {way} {proto} {ports} {prep} {} on {first}",
                                host_net(peer)
                            ),
                        ),
                    )
                })?;
                let c = match e.groups.first() {
                    Some(g) => comp(g, "security-group"),
                    None => comp(&e.meta.id, "network-interface"),
                };
                Ok(Some((c, None)))
            }
        }
    }

    // ---- the reply -------------------------------------------------------------

    /// Walks the reply back through every router the request crossed.
    fn ret(&mut self, r: &Resolved<'a>, fwd: &Fwd<'a>) -> Step<()> {
        let mut first_iif: Option<Port<'a>> = None;
        match fwd.arrive {
            Arrive::Local => return Ok(()),
            Arrive::Internet => self.internet_hop(true),
            Arrive::Nat(n) => self.eni_hops_nat(true, n),
            Arrive::Router => {}
            Arrive::Eni(e) => {
                self.eni_hops(true, e, true);
                // The destination instance's own routing picks the reply's interface.
                let (Some(inst), Some(last)) = (self.instance_of(e), fwd.travs.last()) else {
                    return Err(Stop);
                };
                let (rsrc, rdst) = (last.dst, last.src);
                match self.inst_egress(inst, rdst) {
                    Some(z) if z.meta.id == e.meta.id => {}
                    Some(z) if !z.source_dest_check || eni_has(z, rsrc) => {
                        first_iif = Some(Port::Eni(z))
                    }
                    Some(z) => {
                        self.block(|_| {
                            let (x, d) = sdc_blocker(z, rsrc, true);
                            (x, d)
                        })?;
                    }
                    None => {
                        self.block(|_| {
                            (
                                ex("NO_ROUTE_TO_DESTINATION", comp(&inst.meta.id, "instance"), format!("{} has no route back to {rdst}.", inst.meta.id)),
                                dg(
                                    DiagnosisKind::MissingReturnRoute,
                                    format!("{} has no route back to {rdst}", inst.meta.id),
                                    format!("give the primary interface of {} an address of {rdst}'s family", inst.meta.id),
                                ),
                            )
                        })?;
                    }
                }
            }
        }
        let n = fwd.travs.len();
        for (i, t) in fwd.travs.iter().enumerate().rev() {
            let iif = match first_iif {
                Some(p) if i + 1 == n => p,
                _ => t.oif,
            };
            let mut want = t.iif;
            let (rsrc, rdst) = (t.dst, t.src);
            let in_subnet = self.subnet_of(iif);
            let (table, look) = self.route(t.vpc, iif, rdst);
            let ok = match look {
                Look::Hit(_, p) if p.same(&want) => true,
                // Another interface of the same instance takes it as well.
                Look::Hit(_, Port::Eni(y)) => match want {
                    Port::Eni(x)
                        if x.attachment.is_some()
                            && self.instance_of(x).map(|i| &i.meta.id)
                                == self.instance_of(y).map(|i| &i.meta.id) =>
                    {
                        want = Port::Eni(y);
                        true
                    }
                    _ => false,
                },
                _ => false,
            };
            let out_subnet = self.subnet_of(want);
            if !ok && table.is_some() {
                self.return_route_failed(t, table, in_subnet, look, want, rdst, &r.source)?;
            } else if !ok {
                // Tables 250/251 miss only when the source is not running, or
                // has no public address (both reported already).
                let vid = t.vpc.meta.id.clone();
                let was = self.blocked;
                self.blocked = true;
                if !was {
                    self.block(|_| {
                        (
                            ex(
                                "NO_ROUTE_TO_DESTINATION",
                                comp(&vid, "vpc"),
                                format!("The reply to {rdst} has no route in {vid}."),
                            ),
                            None,
                        )
                    })?;
                } else if !self.explain {
                    return Err(Stop);
                }
            }
            let mut acl_out = None;
            let mut acl_in = None;
            if let Some(s1) = in_subnet {
                if out_subnet.map(|s| &s.meta.id) != Some(&s1.meta.id) {
                    acl_out = self.nacl(s1, true, rdst, true)?;
                }
            }
            if let Some(s2) = out_subnet {
                if in_subnet.map(|s| &s.meta.id) != Some(&s2.meta.id) {
                    acl_in = self.nacl(s2, false, rsrc, true)?;
                }
            }
            if self.explain {
                let vid = Some(t.vpc.meta.id.as_str());
                if let Port::Igw(_) = iif {
                    self.hop(true, iif.component(), None, vid, None);
                }
                if let (Some(s), Some(x)) = (in_subnet, acl_out) {
                    self.hop(true, x.0, Some(s), vid, Some(x.1));
                }
                if let Some(rt) = table {
                    // A route that sends the reply elsewhere admitted nothing.
                    let r = if ok || !matches!(look, Look::Hit(..)) {
                        hop_route(look)
                    } else {
                        None
                    };
                    let rule = r.map(|(r, state)| route_rule(rt, r, state));
                    self.hop(true, comp(&rt.meta.id, "route-table"), in_subnet, vid, rule);
                }
                match want {
                    Port::Pcx(_) | Port::Igw(_) => {
                        self.hop(true, want.component(), None, vid, None)
                    }
                    Port::Nat(n) => self.eni_hops_nat(true, n),
                    Port::Eni(_) => {}
                }
                if let (Some(s), Some(x)) = (out_subnet, acl_in) {
                    self.hop(true, x.0, Some(s), vid, Some(x.1));
                }
            }
        }
        match r.source {
            Source::Eni { eni, egress, .. } => {
                let e = egress.unwrap_or(eni);
                self.eni_hops(true, e, false);
            }
            Source::Internet => self.internet_hop(true),
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn return_route_failed(
        &mut self,
        t: &Trav<'a>,
        table: Option<&'a RouteTable>,
        subnet: Option<&'a Subnet>,
        look: Look<'a>,
        want: Port<'a>,
        rdst: IpAddr,
        source: &Source<'a>,
    ) -> Step<()> {
        let Some(rt) = table else { return Ok(()) };
        let vid = t.vpc.meta.id.clone();
        let used_by = subnet
            .map(|s| format!(" (used by {})", s.meta.id))
            .unwrap_or_default();
        let at = |e: Explanation| Explanation {
            vpc_id: Some(vid.clone()),
            subnet_id: subnet.map(|s| s.meta.id.clone()),
            ..e
        };
        let src_vpc = match source {
            Source::Eni { eni, .. } => self.w.get::<Vpc>(&eni.vpc_id),
            Source::Internet => None,
        };
        let back = match want {
            Port::Pcx(p) => {
                let block = match (src_vpc, p.other_vpc(&vid)) {
                    (Some(v), Some(o)) if v.meta.id == o.vpc_id => self.block_of(v, rdst),
                    _ => host_net(rdst),
                };
                (block, p.id.clone())
            }
            Port::Igw(g) => (self.default_net(), g.to_string()),
            _ => (host_net(rdst), want.id().to_string()),
        };
        let rt_comp = comp(&rt.meta.id, "route-table");
        let from = if matches!(want, Port::Igw(_)) {
            format!("{vid} to the internet")
        } else {
            vid.clone()
        };
        let msg = format!("the route back from {from} is missing: route table {}{used_by} has no route to {rdst} via {}", rt.meta.id, back.1);
        let fix = format!("add a route to {} via {} in {}", back.0, back.1, rt.meta.id);
        match look {
            Look::Inactive(r) => self.block(|ev| {
                let d = match &r.target {
                    RouteTarget::Peering(_) => ev.inactive_diag(rt, r),
                    _ => dg(DiagnosisKind::MissingReturnRoute, msg.clone(), fix.clone()),
                };
                (
                    Explanation {
                        rule: Some(route_rule(rt, r, "blackhole")),
                        ..at(ex("BAD_STATE_ROUTE", rt_comp.clone(), format!("The reply's route to {} in {} targets {}, which cannot carry traffic (blackhole).", r.dest, rt.meta.id, target_str(&r.target))))
                    },
                    d,
                )
            }),
            Look::Hit(rr, p) => self.block(|_| {
                (
                    Explanation {
                        rule: rr.map(|x| route_rule(rt, x, "active")),
                        ..at(ex(
                            "NO_ROUTE_TO_DESTINATION",
                            rt_comp.clone(),
                            format!("Route table {}{used_by} sends the reply to {rdst} to {}, not back by {}.", rt.meta.id, p.id(), back.1),
                        ))
                    },
                    dg(
                        DiagnosisKind::MissingReturnRoute,
                        format!("the route back from {from} goes to {} instead of {}: route table {}{used_by} routes {rdst} elsewhere", p.id(), back.1, rt.meta.id),
                        match (want, rr) {
                            // Inside the VPC: the route that diverts the replies is the problem.
                            (Port::Eni(_), Some(x)) => format!(
                                "narrow or remove the route to {} via {} in {}, which catches the replies to {rdst}",
                                x.dest,
                                p.id(),
                                rt.meta.id
                            ),
                            _ => format!("route {} via {} in {}", back.0, back.1, rt.meta.id),
                        },
                    ),
                )
            }),
            Look::NoRoute | Look::NoInterface(_) => self.block(|_| {
                (
                    at(ex("NO_ROUTE_TO_DESTINATION", rt_comp.clone(), format!("Route table {}{used_by} has no route back to {rdst}.", rt.meta.id))),
                    dg(DiagnosisKind::MissingReturnRoute, msg.clone(), fix.clone()),
                )
            }),
        }
    }
}

fn sdc_blocker(e: &NetworkInterface, a: IpAddr, source: bool) -> (Explanation, Option<Diagnosis>) {
    let (role, what) = if source {
        ("source", "sends")
    } else {
        ("destination", "receives")
    };
    (
        Explanation {
            vpc_id: Some(e.vpc_id.clone()),
            subnet_id: Some(e.subnet_id.clone()),
            ..ex(
                "ENI_SOURCE_DEST_CHECK_RESTRICTION",
                comp(&e.meta.id, "network-interface"),
                format!("{} {what} only packets whose {role} is its own address, not {a} (source/destination check).", e.meta.id),
            )
        },
        dg(
            DiagnosisKind::SourceDestCheck,
            format!("the source/destination check of {} drops packets with {role} {a}", e.meta.id),
            format!("disable the source/destination check on {}", e.meta.id),
        ),
    )
}

// ---- All pairs -------------------------------------------------------------------

/// An all-pairs reachability matrix over instances.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Matrix {
    /// `reachable[i][j]`: from the i-th instance to the j-th one.
    pub reachable: Vec<Vec<bool>>,
    /// How many classes of equivalent instances there were.
    pub classes: usize,
    /// How many analyses actually ran.
    pub evaluated: usize,
}

/// Every pair's verdict (`instances` as rows and columns; an unknown
/// instance, or one without an address of the family, reaches nothing and is
/// reached by nothing). IPv4; see [`matrix_with`].
pub fn matrix(
    w: &World,
    instances: &[String],
    protocol: Protocol,
    port: Option<u16>,
) -> Vec<Vec<bool>> {
    matrix_with(&Index::new(w), w, instances, protocol, port, false).reachable
}

/// The all-pairs matrix, computed over classes of equivalent instances.
///
/// **Why classes are exact.** An analysis looks at an endpoint's address
/// only in two ways: (1) *containment* in a prefix of the configuration
/// (route destinations, ACL entry and security-group CIDRs, subnet CIDRs and
/// VPC blocks, which also cover the internet's IPv6 routes), and (2)
/// *equality* with an interface's address (the routers' `/32`s, tables 250
/// and 251, source/destination checks, group member sets, the 1:1 public
/// maps, local delivery). Everything else it reads is the endpoint's
/// configuration: its instance's state and VPC, and per interface (by device
/// index) its VPC, subnet, groups, source/destination check, and whether it
/// has IPv6 and public addresses. So two instances with the same
/// configuration whose addresses (private, IPv6, public) lie in exactly the
/// same prefixes are interchangeable, provided every equality test on their
/// addresses can only name the instance itself: that holds when no other
/// interface shares any of their addresses and no route targets them
/// (middleboxes); instances that fail this are classes of their own. Hence
/// `reach(x, y) = reach(x', y')` whenever `x ~ x'`, `y ~ y'`, `x ≠ y` and
/// `x' ≠ y'`: one analysis per ordered pair of classes (two distinct members
/// for a class with itself), plus one per class for an instance to itself.
pub fn matrix_with(
    ix: &Index,
    w: &World,
    instances: &[String],
    protocol: Protocol,
    port: Option<u16>,
    ipv6: bool,
) -> Matrix {
    let n = instances.len();
    if n == 0 {
        return Matrix::default();
    }
    let prefixes = Prefixes::collect(w);
    let mut publics: HashMap<&str, usize> = HashMap::new();
    for (e, _) in ix.public_owner.values() {
        *publics.entry(e.as_str()).or_default() += 1;
    }
    let mut class_of_sig: HashMap<Sig, usize> = HashMap::new();
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    // Distinct instances, their class, and each class's members.
    let mut members: Vec<Vec<&str>> = Vec::new();
    let mut class_of: Vec<usize> = Vec::with_capacity(n);
    for id in instances {
        if let Some(&c) = by_id.get(id.as_str()) {
            class_of.push(c);
            continue;
        }
        let sig = signature(ix, w, &prefixes, &publics, id);
        let next = members.len();
        let c = *class_of_sig.entry(sig).or_insert(next);
        if c == next {
            members.push(Vec::new());
        }
        members[c].push(id.as_str());
        by_id.insert(id.as_str(), c);
        class_of.push(c);
    }
    let k = members.len();
    // Work items: (class, class) pairs (k*k), then each class to itself (k).
    let jobs: Vec<Option<(&str, &str)>> = (0..k * k)
        .map(|i| {
            let (a, b) = (i / k, i % k);
            if a != b {
                Some((members[a][0], members[b][0]))
            } else {
                members[a].get(1).map(|x| (members[a][0], *x))
            }
        })
        .chain((0..k).map(|a| Some((members[a][0], members[a][0]))))
        .collect();
    let mut verdicts = vec![false; jobs.len()];
    let threads = std::thread::available_parallelism()
        .map_or(1, |x| x.get())
        .clamp(1, 64)
        .min(jobs.len().div_ceil(64).max(1));
    let chunk = jobs.len().div_ceil(threads);
    let eval = |job: &Option<(&str, &str)>| -> bool {
        let Some((a, b)) = job else { return false };
        let q = Query {
            source: Endpoint::Instance(a.to_string()),
            destination: Endpoint::Instance(b.to_string()),
            protocol,
            port,
            ipv6,
        };
        reachable_with(ix, w, &q).unwrap_or(false)
    };
    std::thread::scope(|s| {
        for (js, vs) in jobs.chunks(chunk).zip(verdicts.chunks_mut(chunk)) {
            s.spawn(move || {
                for (j, v) in js.iter().zip(vs.iter_mut()) {
                    *v = eval(j);
                }
            });
        }
    });
    let evaluated = jobs.iter().filter(|j| j.is_some()).count();
    let mut reachable = vec![vec![false; n]; n];
    for (i, row) in reachable.iter_mut().enumerate() {
        for (j, cell) in row.iter_mut().enumerate() {
            let (a, b) = (class_of[i], class_of[j]);
            *cell = if instances[i] == instances[j] {
                verdicts[k * k + a]
            } else {
                verdicts[a * k + b]
            };
        }
    }
    Matrix {
        reachable,
        classes: k,
        evaluated,
    }
}

/// Every prefix of the configuration an address can be compared with, by length.
struct Prefixes {
    v4: Vec<(u8, HashMap<ipnet::Ipv4Net, u32>)>,
    v6: Vec<(u8, HashMap<Ipv6Net, u32>)>,
}

impl Prefixes {
    fn collect(w: &World) -> Prefixes {
        let mut all: HashSet<IpNet> = HashSet::new();
        for rt in w.iter::<RouteTable>() {
            all.extend(rt.routes.iter().map(|r| r.dest.trunc()));
        }
        for a in w.iter::<NetworkAcl>() {
            all.extend(a.entries.iter().map(|e| e.cidr.trunc()));
        }
        for g in w.iter::<SecurityGroup>() {
            for r in g.ingress.iter().chain(&g.egress) {
                match &r.peer {
                    SgPeer::Cidr4(n) => {
                        all.insert(IpNet::V4(n.trunc()));
                    }
                    SgPeer::Cidr6(n) => {
                        all.insert(IpNet::V6(n.trunc()));
                    }
                    _ => {}
                }
            }
        }
        for s in w.iter::<Subnet>() {
            all.insert(IpNet::V4(s.cidr.trunc()));
            all.extend(s.ipv6.iter().map(|a| IpNet::V6(a.cidr.trunc())));
        }
        for v in w.iter::<Vpc>() {
            all.extend(v.all_blocks().into_iter().map(|b| b.trunc()));
        }
        let mut v4: HashMap<u8, HashMap<ipnet::Ipv4Net, u32>> = HashMap::new();
        let mut v6: HashMap<u8, HashMap<Ipv6Net, u32>> = HashMap::new();
        let mut all: Vec<IpNet> = all.into_iter().collect();
        all.sort();
        for (i, net) in all.into_iter().enumerate() {
            let id = u32::try_from(i).unwrap_or(u32::MAX);
            match net {
                IpNet::V4(n) => {
                    v4.entry(n.prefix_len()).or_default().insert(n, id);
                }
                IpNet::V6(n) => {
                    v6.entry(n.prefix_len()).or_default().insert(n, id);
                }
            }
        }
        let mut v4: Vec<_> = v4.into_iter().collect();
        let mut v6: Vec<_> = v6.into_iter().collect();
        v4.sort_by_key(|x| x.0);
        v6.sort_by_key(|x| x.0);
        Prefixes { v4, v6 }
    }

    /// The prefixes holding an address.
    fn of(&self, a: IpAddr) -> Vec<u32> {
        match a {
            IpAddr::V4(a) => self
                .v4
                .iter()
                .filter_map(|(len, m)| m.get(&ipnet::Ipv4Net::new(a, *len).ok()?.trunc()).copied())
                .collect(),
            IpAddr::V6(a) => self
                .v6
                .iter()
                .filter_map(|(len, m)| m.get(&Ipv6Net::new(a, *len).ok()?.trunc()).copied())
                .collect(),
        }
    }
}

/// What makes an instance behave as it does in any pair (see [`matrix_with`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Sig {
    /// An instance that must be analysed on its own.
    Own(String),
    Class {
        up: bool,
        vpc: String,
        enis: Vec<EniSig>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct EniSig {
    device: u32,
    vpc: String,
    subnet: String,
    groups: Vec<String>,
    sdc: bool,
    v4: Vec<u32>,
    v6: Option<Vec<u32>>,
    public: Option<Vec<u32>>,
}

fn signature(ix: &Index, w: &World, p: &Prefixes, publics: &HashMap<&str, usize>, id: &str) -> Sig {
    let own = || Sig::Own(id.to_string());
    let Some(inst) = w.get::<Instance>(id) else {
        return own();
    };
    if ix.route_targets.contains(id) {
        return own();
    }
    let mut enis = Vec::new();
    for eid in Index::list(&ix.enis_by_instance, id) {
        let eid = eid.as_str();
        let Some(e) = w.get::<NetworkInterface>(eid) else {
            return own();
        };
        if ix.route_targets.contains(eid) {
            return own();
        }
        let addrs = e
            .private_ips
            .iter()
            .map(|x| IpAddr::V4(x.ip))
            .chain(e.ipv6.iter().map(|x| IpAddr::V6(*x)));
        for a in addrs {
            if ix
                .enis_by_ip
                .get(&a)
                .is_some_and(|l| l.as_slice().len() > 1)
            {
                return own();
            }
        }
        let public = ops::eni::public_ip_of(w, e);
        if let Some(pb) = public {
            // Held by someone else, or not mapped although the interface runs: on its own.
            let mine = ix
                .public_owner
                .get(&pb)
                .is_some_and(|(x, _)| x.as_str() == eid);
            let mapped = ix
                .pub2priv
                .get(&pb)
                .is_some_and(|(_, pv)| *pv == e.primary_ip());
            if !mine || (eni_up(w, e) && !mapped) {
                return own();
            }
        }
        // Elastic IPs on secondary addresses are not modelled by classes.
        if publics.get(eid).copied().unwrap_or(0) > usize::from(public.is_some()) {
            return own();
        }
        let mut groups = e.groups.clone();
        groups.sort();
        groups.dedup();
        enis.push(EniSig {
            device: device(e),
            vpc: e.vpc_id.clone(),
            subnet: e.subnet_id.clone(),
            groups,
            sdc: e.source_dest_check,
            v4: p.of(IpAddr::V4(e.primary_ip())),
            v6: e.ipv6.first().map(|a| p.of(IpAddr::V6(*a))),
            public: public.map(|a| p.of(IpAddr::V4(a))),
        });
    }
    if enis.is_empty() {
        return own();
    }
    Sig::Class {
        up: inst.is_up(),
        vpc: inst.vpc_id.clone(),
        enis,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::{Ctx, Limits, SeqIds, Timestamp};
    use crate::ops::{acl, defaults, eip, igw, instance, nat, peering, route, sg, subnet};

    const A: &str = "111111111111";
    const B: &str = "222222222222";
    const R: &str = "us-east-1";

    struct T {
        w: World,
        ids: SeqIds,
        limits: Limits,
        now: Timestamp,
        zones: Vec<(String, String)>,
    }

    /// What [`T::launch`] made.
    #[derive(Debug, Clone)]
    struct I {
        id: String,
        eni: String,
        ip: IpAddr,
    }

    impl T {
        fn new() -> T {
            T {
                w: World::default(),
                ids: SeqIds(0),
                limits: Limits {
                    vpcs_per_region: 5000,
                    outstanding_peerings_per_account: 5000,
                    active_peerings_per_vpc: 50,
                    instances_per_region: 20_000,
                    network_interfaces_per_region: 20_000,
                    security_groups_per_region: 20_000,
                    elastic_ips_per_region: 100,
                    ..Limits::default()
                },
                now: Timestamp(1_700_000_000_000),
                zones: vec![("us-east-1a".into(), "use1-az1".into())],
            }
        }

        fn run<X>(
            &mut self,
            acct: &str,
            f: impl FnOnce(&mut World, &mut Ctx<'_>) -> Result<X, Fault>,
        ) -> X {
            let mut ctx = Ctx {
                account: acct.into(),
                region: R.into(),
                now: self.now,
                ids: &mut self.ids,
                limits: &self.limits,
                zones: &self.zones,
            };
            f(&mut self.w, &mut ctx).unwrap_or_else(|e| panic!("{}: {}", e.code, e.message))
        }

        fn advance(&mut self) {
            self.now = self.now.plus_ms(10_000);
            ops::tick(&mut self.w, self.now);
        }

        fn vpc(&mut self, acct: &str, cidr: &str, v6: Option<&str>) -> Vpc {
            let (c, v6) = (cidr.parse().unwrap(), v6.map(|x| x.parse().unwrap()));
            self.run(acct, |w, ctx| {
                Ok(defaults::new_vpc(w, ctx, c, v6, false, "default", vec![]))
            })
        }

        fn subnet(&mut self, v: &Vpc, cidr: &str, v6: Option<&str>) -> Subnet {
            let req = subnet::CreateSubnet {
                vpc_id: Some(v.meta.id.clone()),
                cidr_block: Some(cidr.into()),
                ipv6_cidr_block: v6.map(str::to_string),
                availability_zone: Some("us-east-1a".into()),
                ..Default::default()
            };
            self.run(&v.meta.owner.clone(), |w, ctx| {
                subnet::create_subnet(w, ctx, req)
            })
        }

        fn launch(&mut self, s: &Subnet, ip: &str, public: bool, v6: bool) -> I {
            self.launch_in(s, ip, public, v6, &[])
        }

        fn launch_in(
            &mut self,
            s: &Subnet,
            ip: &str,
            public: bool,
            v6: bool,
            groups: &[String],
        ) -> I {
            let req = instance::RunInstances {
                image_id: Some("ami-0123456789abcdef0".into()),
                min_count: Some(1),
                max_count: Some(1),
                interfaces: vec![instance::IfaceSpec {
                    device_index: Some(0),
                    associate_public_ip: Some(public),
                    delete_on_termination: Some(true),
                    eni: ops::eni::EniSpec {
                        subnet_id: Some(s.meta.id.clone()),
                        private_ip: Some(ip.into()),
                        ipv6_count: v6.then_some(1),
                        group_ids: groups.to_vec(),
                        ..Default::default()
                    },
                    ..Default::default()
                }],
                ..Default::default()
            };
            let i = self
                .run(&s.meta.owner.clone(), |w, ctx| instance::run(w, ctx, req))
                .remove(0);
            I {
                id: i.meta.id.clone(),
                eni: i.primary_eni.clone(),
                ip: ip.parse().unwrap(),
            }
        }

        fn v6_of(&self, i: &I) -> IpAddr {
            IpAddr::V6(self.w.get::<NetworkInterface>(&i.eni).unwrap().ipv6[0])
        }

        fn peer(&mut self, a: &Vpc, b: &Vpc) -> String {
            let req = peering::CreatePeering {
                vpc_id: Some(a.meta.id.clone()),
                peer_vpc_id: Some(b.meta.id.clone()),
                peer_owner_id: Some(b.meta.owner.clone()),
                peer_region: Some(R.into()),
                tags: vec![],
            };
            let id = self
                .run(&a.meta.owner.clone(), |w, ctx| {
                    peering::create(w, ctx, req, &|_| true)
                })
                .id;
            self.advance();
            id
        }

        fn accept(&mut self, pcx: &str, b: &Vpc) {
            self.run(&b.meta.owner.clone(), |w, ctx| peering::accept(w, ctx, pcx));
            self.advance();
        }

        fn main_rtb(&self, v: &Vpc) -> String {
            self.w
                .get::<Vpc>(&v.meta.id)
                .unwrap()
                .main_route_table
                .clone()
        }

        fn route(&mut self, v: &Vpc, rtb: &str, dest: &str, mut spec: route::RouteSpec) {
            if dest.contains(':') {
                spec.destination_ipv6_cidr_block = Some(dest.into());
            } else {
                spec.destination_cidr_block = Some(dest.into());
            }
            let rtb = rtb.to_string();
            self.run(&v.meta.owner.clone(), |w, ctx| {
                route::create_route(w, ctx, &rtb, &spec)
            });
        }

        fn route_pcx(&mut self, v: &Vpc, dest: &str, pcx: &str) {
            let rtb = self.main_rtb(v);
            let spec = route::RouteSpec {
                vpc_peering_connection_id: Some(pcx.into()),
                ..Default::default()
            };
            self.route(v, &rtb, dest, spec);
        }

        /// An internet gateway attached to `v`, with `0.0.0.0/0` (and `::/0`) to it in the main table.
        fn igw(&mut self, v: &Vpc) -> String {
            let o = v.meta.owner.clone();
            let g = self.run(&o, |w, ctx| igw::create(w, ctx, vec![])).meta.id;
            let vid = v.meta.id.clone();
            self.run(&o, |w, ctx| igw::attach(w, ctx, &g, &vid));
            let rtb = self.main_rtb(v);
            let spec = route::RouteSpec {
                gateway_id: Some(g.clone()),
                ..Default::default()
            };
            self.route(v, &rtb, "0.0.0.0/0", spec.clone());
            if !v.ipv6.is_empty() {
                self.route(v, &rtb, "::/0", spec);
            }
            g
        }

        fn nat_gateway(&mut self, s: &Subnet) -> String {
            let o = s.meta.owner.clone();
            let a = self.run(&o, |w, ctx| eip::allocate(w, ctx, None, vec![]));
            let req = nat::CreateNat {
                subnet_id: Some(s.meta.id.clone()),
                allocation_id: Some(a.meta.id.clone()),
                ..Default::default()
            };
            let g = self.run(&o, |w, ctx| nat::create(w, ctx, req)).meta.id;
            self.advance();
            g
        }

        /// A new route table for `s`.
        fn own_table(&mut self, s: &Subnet) -> String {
            let (o, vid, sid) = (s.meta.owner.clone(), s.vpc_id.clone(), s.meta.id.clone());
            let id = self
                .run(&o, |w, ctx| route::create_table(w, ctx, &vid, vec![]))
                .meta
                .id;
            self.run(&o, |w, ctx| route::associate(w, ctx, &id, Some(&sid), None));
            id
        }

        fn sg_of(&self, v: &Vpc) -> String {
            self.w.get::<Vpc>(&v.meta.id).unwrap().default_sg.clone()
        }

        /// Authorises one rule: `peer` is a CIDR or a group ID.
        fn allow(
            &mut self,
            group: &str,
            egress: bool,
            proto: &str,
            ports: Option<(i64, i64)>,
            peer: &str,
        ) {
            let g = self.w.get::<SecurityGroup>(group).unwrap().clone();
            let mut p = sg::Permission {
                protocol: Some(proto.into()),
                from_port: ports.map(|p| p.0),
                to_port: ports.map(|p| p.1),
                ..Default::default()
            };
            if peer.starts_with("sg-") {
                let owner = self
                    .w
                    .get::<SecurityGroup>(peer)
                    .map(|x| x.meta.owner.clone());
                let vpc = self.w.get::<SecurityGroup>(peer).map(|x| x.vpc_id.clone());
                p.groups.push(sg::PairSpec {
                    group_id: Some(peer.into()),
                    user_id: owner,
                    vpc_id: vpc.filter(|v| *v != g.vpc_id),
                    ..Default::default()
                });
            } else if peer.contains(':') {
                p.ipv6.push(sg::Source {
                    value: peer.into(),
                    description: None,
                });
            } else {
                p.ipv4.push(sg::Source {
                    value: peer.into(),
                    description: None,
                });
            }
            self.run(&g.meta.owner.clone(), |w, ctx| {
                sg::authorize(w, ctx, group, egress, &[p], vec![])
            });
        }

        /// A fresh custom ACL (deny all) associated with `s`; returns its ID.
        fn custom_acl(&mut self, s: &Subnet) -> String {
            let (o, vid) = (s.meta.owner.clone(), s.vpc_id.clone());
            let id = self
                .run(&o, |w, ctx| acl::create(w, ctx, &vid, vec![]))
                .meta
                .id;
            let assoc = acl::acl_for_subnet(&self.w, &s.meta.id)
                .unwrap()
                .assocs
                .iter()
                .find(|a| a.subnet_id == s.meta.id)
                .unwrap()
                .id
                .clone();
            self.run(&o, |w, ctx| acl::replace_association(w, ctx, &assoc, &id));
            id
        }

        #[allow(clippy::too_many_arguments)]
        fn acl_entry(
            &mut self,
            s: &Subnet,
            n: i64,
            proto: &str,
            action: &str,
            egress: bool,
            cidr: &str,
            ports: Option<(i64, i64)>,
        ) {
            let a = acl::acl_for_subnet(&self.w, &s.meta.id)
                .unwrap()
                .meta
                .id
                .clone();
            let mut spec = acl::EntrySpec {
                rule_number: Some(n),
                protocol: Some(proto.into()),
                rule_action: Some(action.into()),
                egress,
                port_from: ports.map(|p| p.0),
                port_to: ports.map(|p| p.1),
                ..Default::default()
            };
            if proto == "1" || proto == "58" {
                spec.icmp_type = Some(-1);
                spec.icmp_code = Some(-1);
            }
            if cidr.contains(':') {
                spec.ipv6_cidr_block = Some(cidr.into());
            } else {
                spec.cidr_block = Some(cidr.into());
            }
            self.run(&s.meta.owner.clone(), |w, ctx| {
                acl::create_entry(w, ctx, &a, &spec)
            });
        }

        fn reach(&self, q: &Query) -> Analysis {
            let a = analyze(&self.w, q).unwrap();
            // The verdict-only mode agrees.
            assert_eq!(
                reachable_with(&Index::new(&self.w), &self.w, q).unwrap(),
                a.reachable,
                "{a:#?}"
            );
            assert_eq!(a.reachable, a.explanations.is_empty(), "{a:#?}");
            a
        }
    }

    fn tcp(src: &I, dst: &I, port: u16) -> Query {
        Query::new(
            Endpoint::Instance(src.id.clone()),
            Endpoint::Instance(dst.id.clone()),
            Protocol::Tcp,
            Some(port),
        )
    }

    fn ping(src: &I, dst: &I) -> Query {
        Query::new(
            Endpoint::Instance(src.id.clone()),
            Endpoint::Instance(dst.id.clone()),
            Protocol::Icmp,
            None,
        )
    }

    fn kinds(a: &Analysis) -> Vec<DiagnosisKind> {
        a.diagnoses.iter().map(|d| d.kind).collect()
    }

    fn codes(a: &Analysis) -> Vec<&'static str> {
        a.explanations.iter().map(|e| e.code).collect()
    }

    fn has_hop(path: &[Hop], kind: &str, id: &str) -> bool {
        path.iter()
            .any(|h| h.component.kind == kind && h.component.id == id)
    }

    /// Two VPCs in two accounts with one instance each; A peers with B.
    struct Seed {
        t: T,
        va: Vpc,
        vb: Vpc,
        sa: Subnet,
        a: I,
        b: I,
        pcx: String,
    }

    fn seed() -> Seed {
        let mut t = T::new();
        let va = t.vpc(A, "10.1.0.0/16", None);
        let vb = t.vpc(B, "10.2.0.0/16", None);
        let sa = t.subnet(&va, "10.1.1.0/24", None);
        let sb = t.subnet(&vb, "10.2.1.0/24", None);
        let a = t.launch(&sa, "10.1.1.10", false, false);
        let b = t.launch(&sb, "10.2.1.10", false, false);
        let pcx = t.peer(&va, &vb);
        let _ = sb;
        Seed {
            t,
            va,
            vb,
            sa,
            a,
            b,
            pcx,
        }
    }

    #[test]
    fn routes_to_a_pending_peering_are_blackholes() {
        let Seed {
            mut t,
            va,
            vb,
            a,
            b,
            pcx,
            ..
        } = seed();
        t.route_pcx(&va, "10.2.0.0/16", &pcx);
        t.route_pcx(&vb, "10.1.0.0/16", &pcx);
        let gb = t.sg_of(&vb);
        t.allow(&gb, false, "tcp", Some((80, 80)), "10.1.0.0/16");
        let r = t.reach(&tcp(&a, &b, 80));
        assert_eq!(
            codes(&r),
            vec!["BAD_STATE_ROUTE", "BAD_STATE_ROUTE"],
            "{r:#?}"
        );
        assert!(
            matches!(&r.explanations[0].rule, Some(Rule::Route { state: "blackhole", target, .. }) if *target == pcx)
        );
        assert_eq!(kinds(&r), vec![DiagnosisKind::PeeringNotActive]);
        assert!(r.diagnoses[0].fix.contains("accept-vpc-peering-connection"));
        // Accepted: the same routes carry it.
        t.accept(&pcx, &vb);
        assert!(t.reach(&tcp(&a, &b, 80)).reachable);
    }

    #[test]
    fn seed_workflow_step_by_step() {
        let Seed {
            mut t,
            va,
            vb,
            a,
            b,
            pcx,
            ..
        } = seed();
        let q = tcp(&a, &b, 80);

        // Before acceptance.
        let r = t.reach(&q);
        assert!(!r.reachable);
        assert!(
            kinds(&r).contains(&DiagnosisKind::PeeringNotActive),
            "{r:#?}"
        );
        let d = r
            .diagnoses
            .iter()
            .find(|d| d.kind == DiagnosisKind::PeeringNotActive)
            .unwrap();
        assert!(
            d.message.contains("pending-acceptance") && d.fix.contains(&pcx),
            "{d:?}"
        );
        assert_eq!(r.source_ip, Some(a.ip));
        assert_eq!(r.destination_ip, Some(b.ip));

        t.accept(&pcx, &vb);
        // Accepted, no routes.
        let r = t.reach(&q);
        assert!(!r.reachable);
        assert!(kinds(&r).contains(&DiagnosisKind::MissingRoute), "{r:#?}");
        assert!(
            !kinds(&r).contains(&DiagnosisKind::PeeringNotActive),
            "{r:#?}"
        );
        assert!(codes(&r).contains(&"NO_ROUTE_TO_DESTINATION"));
        let d = r
            .diagnoses
            .iter()
            .find(|d| d.kind == DiagnosisKind::MissingRoute)
            .unwrap();
        assert!(
            d.fix.contains("10.2.0.0/16") && d.fix.contains(&pcx),
            "{d:?}"
        );

        // A's route only: the way back from B is missing.
        t.route_pcx(&va, "10.2.0.0/16", &pcx);
        let r = t.reach(&q);
        assert!(!r.reachable);
        assert!(!kinds(&r).contains(&DiagnosisKind::MissingRoute), "{r:#?}");
        let d = r
            .diagnoses
            .iter()
            .find(|d| d.kind == DiagnosisKind::MissingReturnRoute)
            .expect("missing return route");
        assert!(
            d.message.contains("route back from") && d.message.contains(&vb.meta.id),
            "{d:?}"
        );
        assert!(
            d.fix.contains("10.1.0.0/16") && d.fix.contains(&pcx),
            "{d:?}"
        );

        // B's route too: only B's security group is left.
        t.route_pcx(&vb, "10.1.0.0/16", &pcx);
        let r = t.reach(&q);
        assert!(!r.reachable);
        assert_eq!(
            kinds(&r),
            vec![DiagnosisKind::SecurityGroupDenies],
            "{r:#?}"
        );
        assert_eq!(codes(&r), vec!["ENI_SG_RULES_MISMATCH"]);
        assert_eq!(r.explanations[0].direction, Some(Direction::Ingress));
        let gb = t.sg_of(&vb);
        assert!(
            r.diagnoses[0].fix.contains(&gb) && r.diagnoses[0].fix.contains("tcp port 80"),
            "{:?}",
            r.diagnoses
        );

        // And the rule: reachable, with the whole path.
        t.allow(&gb, false, "tcp", Some((80, 80)), "10.1.0.0/16");
        let r = t.reach(&q);
        assert!(r.reachable, "{r:#?}");
        assert!(r.diagnoses.is_empty());
        assert!(has_hop(&r.forward, "vpc-peering-connection", &pcx));
        assert!(has_hop(&r.ret, "vpc-peering-connection", &pcx));
        assert!(has_hop(&r.forward, "instance", &b.id));
        assert_eq!(r.forward.first().unwrap().component.id, a.id);
        assert_eq!(r.forward.last().unwrap().component.id, b.id);
        assert_eq!(r.ret.first().unwrap().component.id, b.id);
        assert_eq!(r.ret.last().unwrap().component.id, a.id);
        let seqs: Vec<u32> = r.forward.iter().map(|h| h.sequence).collect();
        assert_eq!(seqs, (1..=r.forward.len() as u32).collect::<Vec<_>>());
        let rules: Vec<&Rule> = r.forward.iter().filter_map(|h| h.rule.as_ref()).collect();
        assert!(rules.iter().any(|x| matches!(x, Rule::Route { target, destination, state: "active", .. } if *target == pcx && destination.to_string() == "10.2.0.0/16")), "{rules:#?}");
        assert!(rules.iter().any(|x| matches!(x, Rule::SecurityGroupRule { group_id, direction: Direction::Ingress, peer, .. } if *group_id == gb && peer == "10.1.0.0/16")));
        assert!(rules.iter().any(|x| matches!(
            x,
            Rule::SecurityGroupRule {
                direction: Direction::Egress,
                ..
            }
        )));
        assert!(rules.iter().any(|x| matches!(
            x,
            Rule::AclEntry {
                rule_number: 100,
                egress: true,
                action: "allow",
                ..
            }
        )));
        assert!(rules.iter().any(|x| matches!(
            x,
            Rule::AclEntry {
                rule_number: 100,
                egress: false,
                action: "allow",
                ..
            }
        )));
        // The return path names B's route back.
        assert!(r
            .ret
            .iter()
            .any(|h| matches!(&h.rule, Some(Rule::Route { target, .. }) if *target == pcx)));
        // Ping is still refused by B's group; ICMP echo from A's group is fine once allowed.
        assert!(!t.reach(&ping(&a, &b)).reachable);
        let ga = t.sg_of(&va);
        t.allow(&gb, false, "icmp", Some((8, -1)), &ga);
        assert!(t.reach(&ping(&a, &b)).reachable);
        // Reverse direction: A's default group admits only its own members.
        let r = t.reach(&tcp(&b, &a, 80));
        assert_eq!(kinds(&r), vec![DiagnosisKind::SecurityGroupDenies]);
    }

    #[test]
    fn nacl_denies_forward_traffic() {
        let mut t = T::new();
        let v = t.vpc(A, "10.0.0.0/16", None);
        let s1 = t.subnet(&v, "10.0.1.0/24", None);
        let s2 = t.subnet(&v, "10.0.2.0/24", None);
        let a = t.launch(&s1, "10.0.1.10", false, false);
        let b = t.launch(&s2, "10.0.2.10", false, false);
        assert!(t.reach(&tcp(&a, &b, 22)).reachable);
        t.acl_entry(&s2, 50, "6", "deny", false, "10.0.1.0/24", Some((22, 22)));
        let r = t.reach(&tcp(&a, &b, 22));
        assert!(!r.reachable);
        assert_eq!(codes(&r), vec!["SUBNET_ACL_RESTRICTION"]);
        let e = &r.explanations[0];
        assert_eq!(e.direction, Some(Direction::Ingress));
        assert_eq!(e.subnet_id.as_deref(), Some(s2.meta.id.as_str()));
        assert!(
            matches!(
                &e.rule,
                Some(Rule::AclEntry {
                    rule_number: 50,
                    action: "deny",
                    egress: false,
                    ..
                })
            ),
            "{e:?}"
        );
        assert_eq!(kinds(&r), vec![DiagnosisKind::NaclDenies]);
        // Other ports, and the other direction, pass.
        assert!(t.reach(&tcp(&a, &b, 23)).reachable);
        assert!(t.reach(&tcp(&b, &a, 22)).reachable);
        // An outbound deny at the source's subnet.
        t.acl_entry(&s1, 60, "-1", "deny", true, "10.0.2.0/24", None);
        let r = t.reach(&tcp(&a, &b, 23));
        assert_eq!(kinds(&r), vec![DiagnosisKind::NaclDenies]);
        assert_eq!(r.explanations[0].direction, Some(Direction::Egress));
    }

    #[test]
    fn nacl_that_refuses_only_the_return_traffic() {
        let mut t = T::new();
        let v = t.vpc(A, "10.0.0.0/16", None);
        let s1 = t.subnet(&v, "10.0.1.0/24", None);
        let s2 = t.subnet(&v, "10.0.2.0/24", None);
        let a = t.launch(&s1, "10.0.1.10", false, false);
        let b = t.launch(&s2, "10.0.2.10", false, false);
        // B's subnet: in TCP 443 from anywhere; out only to port 443 (not the ephemeral ports).
        let acl_b = t.custom_acl(&s2);
        t.acl_entry(&s2, 100, "6", "allow", false, "0.0.0.0/0", Some((443, 443)));
        t.acl_entry(&s2, 100, "6", "allow", true, "0.0.0.0/0", Some((443, 443)));
        let q = tcp(&a, &b, 443);
        let r = t.reach(&q);
        assert!(!r.reachable);
        assert_eq!(
            kinds(&r),
            vec![DiagnosisKind::NaclDeniesReturnTraffic],
            "{r:#?}"
        );
        let d = &r.diagnoses[0];
        assert!(
            d.message.contains(&acl_b) && d.message.contains("ephemeral"),
            "{d:?}"
        );
        assert!(d.fix.contains("32768-60999"), "{d:?}");
        let e = &r.explanations[0];
        assert_eq!(
            (e.code, e.direction),
            ("SUBNET_ACL_RESTRICTION", Some(Direction::Egress))
        );
        // The forward path is complete and shows the admitting entries.
        assert!(has_hop(&r.forward, "instance", &b.id));
        // Half the ephemeral range is not enough...
        t.acl_entry(
            &s2,
            110,
            "6",
            "allow",
            true,
            "10.0.1.0/24",
            Some((32768, 50000)),
        );
        assert!(!t.reach(&q).reachable);
        // ...unless the client port is known to be in it.
        let ix = Index::new(&t.w);
        let o = |p| Options {
            source_port: Some(p),
        };
        assert!(analyze_opts(&ix, &t.w, &q, o(40000)).unwrap().reachable);
        assert!(!analyze_opts(&ix, &t.w, &q, o(55000)).unwrap().reachable);
        t.acl_entry(
            &s2,
            120,
            "6",
            "allow",
            true,
            "10.0.1.0/24",
            Some((1024, 65535)),
        );
        let r = t.reach(&q);
        assert!(r.reachable, "{r:#?}");
        assert!(r.ret.iter().any(|h| matches!(
            h.rule,
            Some(Rule::AclEntry {
                rule_number: 110,
                egress: true,
                ..
            })
        )));
        // A deny inside the range ahead of the allows refuses it again.
        t.acl_entry(
            &s2,
            90,
            "6",
            "deny",
            true,
            "10.0.1.10/32",
            Some((33000, 33001)),
        );
        assert_eq!(
            kinds(&t.reach(&q)),
            vec![DiagnosisKind::NaclDeniesReturnTraffic]
        );
        // ICMP: the echo reply needs its own entry.
        t.acl_entry(&s2, 200, "1", "allow", false, "0.0.0.0/0", None);
        let r = t.reach(&ping(&a, &b));
        assert_eq!(
            kinds(&r),
            vec![DiagnosisKind::NaclDeniesReturnTraffic],
            "{r:#?}"
        );
        t.acl_entry(&s2, 200, "1", "allow", true, "0.0.0.0/0", None);
        assert!(t.reach(&ping(&a, &b)).reachable);
    }

    #[test]
    fn same_subnet_traffic_skips_network_acls() {
        let mut t = T::new();
        let v = t.vpc(A, "10.0.0.0/16", None);
        let s = t.subnet(&v, "10.0.1.0/24", None);
        let a = t.launch(&s, "10.0.1.10", false, false);
        let b = t.launch(&s, "10.0.1.11", false, false);
        t.custom_acl(&s); // deny everything
        let r = t.reach(&tcp(&a, &b, 5432));
        assert!(r.reachable, "{r:#?}");
        assert!(!r
            .forward
            .iter()
            .chain(&r.ret)
            .any(|h| h.component.kind == "network-acl"));
        // The default group's self reference admits it.
        assert!(r.forward.iter().any(|h| matches!(&h.rule, Some(Rule::SecurityGroupRule { peer, direction: Direction::Ingress, .. }) if peer.starts_with("sg-"))));
        // Pinging oneself never leaves the instance.
        assert!(t.reach(&ping(&a, &a)).reachable);
        // The router answers pings at every subnet's gateway of its VPC, past any ACL...
        let s2 = t.subnet(&v, "10.0.2.0/24", None);
        let gw = |x: &str| Endpoint::Address(x.parse().unwrap());
        let to = |d: Endpoint, p: Protocol| {
            Query::new(
                Endpoint::Instance(a.id.clone()),
                d,
                p,
                (p != Protocol::Icmp).then_some(22),
            )
        };
        let r = t.reach(&to(gw("10.0.2.1"), Protocol::Icmp));
        assert!(
            r.reachable && has_hop(&r.forward, "vpc", &v.meta.id),
            "{r:#?}"
        );
        // ...but accepts no connection,
        assert_eq!(
            codes(&t.reach(&to(gw("10.0.1.1"), Protocol::Tcp))),
            vec!["NO_POSSIBLE_DESTINATION"]
        );
        // and does not answer a peer.
        let w2 = t.vpc(A, "10.9.0.0/16", None);
        let s9 = t.subnet(&w2, "10.9.1.0/24", None);
        let c = t.launch(&s9, "10.9.1.10", false, false);
        let pcx = t.peer(&w2, &v);
        t.accept(&pcx, &v);
        t.route_pcx(&w2, "10.0.0.0/16", &pcx);
        let q = Query::new(
            Endpoint::Instance(c.id.clone()),
            gw("10.0.2.1"),
            Protocol::Icmp,
            None,
        );
        assert_eq!(codes(&t.reach(&q)), vec!["NO_ROUTE_TO_DESTINATION"]);
        let _ = s2;
    }

    #[test]
    fn transitive_peering() {
        let mut t = T::new();
        let va = t.vpc(A, "10.1.0.0/16", None);
        let vb = t.vpc(A, "10.2.0.0/16", None);
        let vc = t.vpc(A, "10.3.0.0/16", None);
        let sa = t.subnet(&va, "10.1.1.0/24", None);
        let sc = t.subnet(&vc, "10.3.1.0/24", None);
        let a = t.launch(&sa, "10.1.1.10", false, false);
        let c = t.launch(&sc, "10.3.1.10", false, false);
        let ab = t.peer(&va, &vb);
        t.accept(&ab, &vb);
        let bc = t.peer(&vb, &vc);
        t.accept(&bc, &vc);
        let gc = t.sg_of(&vc);
        t.allow(&gc, false, "-1", None, "0.0.0.0/0");
        // No route in A at all.
        let r = t.reach(&tcp(&a, &c, 22));
        assert_eq!(kinds(&r), vec![DiagnosisKind::TransitivePeering], "{r:#?}");
        assert_eq!(codes(&r), vec!["NO_ROUTE_TO_DESTINATION"]);
        // Routing C's block through B.
        t.route_pcx(&va, "10.3.0.0/16", &ab);
        t.route_pcx(&vb, "10.3.0.0/16", &bc);
        let r = t.reach(&tcp(&a, &c, 22));
        assert!(!r.reachable);
        assert_eq!(
            codes(&r),
            vec!["PCX_REQUIRES_ADDRESS_IN_VPC_CIDR"],
            "{r:#?}"
        );
        assert_eq!(r.explanations[0].component.id, ab);
        assert_eq!(kinds(&r), vec![DiagnosisKind::TransitivePeering]);
        let d = &r.diagnoses[0];
        assert!(
            d.message
                .contains(&format!("{} is peered with {}", va.meta.id, vb.meta.id))
                && d.message
                    .contains(&format!("{} with {}", vb.meta.id, vc.meta.id)),
            "{d:?}"
        );
        assert!(d.fix.contains(&va.meta.id) && d.fix.contains(&vc.meta.id));
        // The same by address.
        let q = Query::new(
            Endpoint::Instance(a.id.clone()),
            Endpoint::Address(c.ip),
            Protocol::Tcp,
            Some(22),
        );
        assert_eq!(kinds(&t.reach(&q)), vec![DiagnosisKind::TransitivePeering]);
    }

    #[test]
    fn edge_to_edge_through_a_peers_gateways() {
        let mut t = T::new();
        let va = t.vpc(A, "10.1.0.0/16", None);
        let vb = t.vpc(A, "10.2.0.0/16", None);
        let sa = t.subnet(&va, "10.1.1.0/24", None);
        let sb = t.subnet(&vb, "10.2.1.0/24", None);
        let a = t.launch(&sa, "10.1.1.10", true, false);
        t.launch(&sb, "10.2.1.10", true, false);
        let ab = t.peer(&va, &vb);
        t.accept(&ab, &vb);
        let igw_b = t.igw(&vb);
        t.route_pcx(&va, "0.0.0.0/0", &ab);
        let inet = Query::new(
            Endpoint::Instance(a.id.clone()),
            Endpoint::Address(IpAddr::V4(INTERNET_HOST_V4)),
            Protocol::Tcp,
            Some(443),
        );
        let r = t.reach(&inet);
        assert!(!r.reachable);
        assert_eq!(
            codes(&r),
            vec![
                "PCX_REQUIRES_ADDRESS_IN_VPC_CIDR",
                "IGW_PUBLIC_IP_ASSOCIATION_FOR_EGRESS"
            ],
            "{r:#?}"
        );
        assert_eq!(r.explanations[1].component.id, igw_b);
        assert_eq!(kinds(&r), vec![DiagnosisKind::EdgeToEdge]);
        assert!(
            r.diagnoses[0].message.contains("internet gateway"),
            "{:?}",
            r.diagnoses
        );

        // Through the peer's NAT gateway instead.
        let mut t = T::new();
        let va = t.vpc(A, "10.1.0.0/16", None);
        let vb = t.vpc(A, "10.2.0.0/16", None);
        let sa = t.subnet(&va, "10.1.1.0/24", None);
        let sb = t.subnet(&vb, "10.2.1.0/24", None);
        let a = t.launch(&sa, "10.1.1.10", false, false);
        let ab = t.peer(&va, &vb);
        t.accept(&ab, &vb);
        t.igw(&vb);
        let pub_b = t.subnet(&vb, "10.2.9.0/24", None);
        let ngw = t.nat_gateway(&pub_b);
        let own = t.own_table(&pub_b);
        let spec = route::RouteSpec {
            gateway_id: Some(
                t.w.iter::<InternetGateway>()
                    .next()
                    .unwrap()
                    .meta
                    .id
                    .clone(),
            ),
            ..Default::default()
        };
        t.route(&vb, &own, "0.0.0.0/0", spec);
        // B's main table (used by its private subnet) sends the internet to the NAT gateway.
        let main_b = t.main_rtb(&vb);
        t.w.update::<RouteTable>(&main_b, |rt| rt.routes.retain(|r| r.dest.prefix_len() != 0));
        t.route(
            &vb,
            &main_b,
            "0.0.0.0/0",
            route::RouteSpec {
                nat_gateway_id: Some(ngw.clone()),
                ..Default::default()
            },
        );
        let _ = sb;
        t.route_pcx(&va, "0.0.0.0/0", &ab);
        let inet = Query::new(
            Endpoint::Instance(a.id.clone()),
            Endpoint::Address(IpAddr::V4(INTERNET_HOST_V4)),
            Protocol::Tcp,
            Some(443),
        );
        let r = t.reach(&inet);
        assert_eq!(
            codes(&r),
            vec![
                "PCX_REQUIRES_ADDRESS_IN_VPC_CIDR",
                "NGW_REQUIRES_SOURCE_IN_VPC"
            ],
            "{r:#?}"
        );
        assert_eq!(r.explanations[1].component.id, ngw);
        assert_eq!(kinds(&r), vec![DiagnosisKind::EdgeToEdge]);
    }

    #[test]
    fn overlapping_unpeered_vpcs() {
        let mut t = T::new();
        let va = t.vpc(A, "10.0.0.0/16", None);
        let vb = t.vpc(B, "10.0.0.0/16", None);
        let sa = t.subnet(&va, "10.0.1.0/24", None);
        let sb = t.subnet(&vb, "10.0.1.0/24", None);
        let a = t.launch(&sa, "10.0.1.10", false, false);
        let b = t.launch(&sb, "10.0.1.20", false, false);
        let r = t.reach(&tcp(&a, &b, 22));
        assert!(!r.reachable);
        assert_eq!(kinds(&r), vec![DiagnosisKind::DisconnectedVpcs], "{r:#?}");
        assert_eq!(codes(&r), vec!["DISCONNECTED_VPCS"]);
        assert!(
            r.diagnoses[0].message.contains("10.0.0.0/16"),
            "{:?}",
            r.diagnoses
        );
        // A's own instance at the same address is what A's routes reach.
        let a2 = t.launch(&sa, "10.0.1.20", false, false);
        let r = t.reach(&tcp(&a, &b, 22));
        assert_eq!(kinds(&r), vec![DiagnosisKind::DisconnectedVpcs], "{r:#?}");
        assert!(r.explanations[0].detail.contains(&a2.id), "{r:#?}");
        let by_addr = Query::new(
            Endpoint::Instance(a.id.clone()),
            Endpoint::Address(b.ip),
            Protocol::Tcp,
            Some(22),
        );
        let r = t.reach(&by_addr);
        assert!(r.reachable, "{r:#?}");
        assert!(has_hop(&r.forward, "instance", &a2.id));
        // B's instance reaches its own neighbour by the same address: nothing of A's.
        let b2 = t.launch(&sb, "10.0.1.10", false, false);
        let r = t.reach(&Query::new(
            Endpoint::Instance(b.id.clone()),
            Endpoint::Address(a.ip),
            Protocol::Tcp,
            Some(22),
        ));
        assert!(
            r.reachable && has_hop(&r.forward, "instance", &b2.id),
            "{r:#?}"
        );
    }

    /// Found by the differential test: a source that holds the destination
    /// instance's address itself keeps the packet (it is not delivered).
    #[test]
    fn a_source_holding_the_destinations_address_keeps_the_packet() {
        let mut t = T::new();
        let va = t.vpc(A, "10.0.0.0/16", None);
        let vb = t.vpc(A, "10.0.0.0/16", None);
        let sa = t.subnet(&va, "10.0.1.0/24", None);
        let sb = t.subnet(&vb, "10.0.1.0/24", None);
        let a = t.launch(&sa, "10.0.1.10", false, false);
        let b = t.launch(&sb, "10.0.1.10", false, false);
        for q in [tcp(&a, &b, 22), ping(&a, &b)] {
            let r = t.reach(&q);
            assert!(!r.reachable, "{r:#?}");
            assert_eq!(kinds(&r), vec![DiagnosisKind::DisconnectedVpcs], "{r:#?}");
            assert_eq!(codes(&r), vec!["DISCONNECTED_VPCS"]);
        }
        // Asked by address, the address is the source's own: it answers itself.
        let r = t.reach(&Query::new(
            Endpoint::Instance(a.id.clone()),
            Endpoint::Address(b.ip),
            Protocol::Icmp,
            None,
        ));
        assert!(r.reachable, "{r:#?}");
    }

    #[test]
    fn ipv6_across_a_peering() {
        let mut t = T::new();
        let va = t.vpc(A, "10.1.0.0/16", Some("2600:1f18:1::/56"));
        let vb = t.vpc(B, "10.2.0.0/16", Some("2600:1f18:2::/56"));
        let sa = t.subnet(&va, "10.1.1.0/24", Some("2600:1f18:1:1::/64"));
        let sb = t.subnet(&vb, "10.2.1.0/24", Some("2600:1f18:2:1::/64"));
        let a = t.launch(&sa, "10.1.1.10", false, true);
        let b = t.launch(&sb, "10.2.1.10", false, true);
        let pcx = t.peer(&va, &vb);
        t.accept(&pcx, &vb);
        t.route_pcx(&va, "2600:1f18:2::/56", &pcx);
        let gb = t.sg_of(&vb);
        t.allow(&gb, false, "icmpv6", Some((-1, -1)), "2600:1f18:1::/56");
        let mut q = ping(&a, &b);
        q.ipv6 = true;
        let r = t.reach(&q);
        assert_eq!(kinds(&r), vec![DiagnosisKind::MissingReturnRoute], "{r:#?}");
        assert!(
            r.diagnoses[0].fix.contains("2600:1f18:1::/56"),
            "{:?}",
            r.diagnoses
        );
        t.route_pcx(&vb, "2600:1f18:1::/56", &pcx);
        let r = t.reach(&q);
        assert!(r.reachable, "{r:#?}");
        assert_eq!(r.source_ip, Some(t.v6_of(&a)));
        assert_eq!(r.destination_ip, Some(t.v6_of(&b)));
        assert!(r.forward.iter().any(|h| matches!(&h.rule, Some(Rule::Route { destination, .. }) if destination.to_string() == "2600:1f18:2::/56")));
        assert!(r.forward.iter().any(|h| matches!(
            &h.rule,
            Some(Rule::AclEntry {
                rule_number: 101,
                ..
            })
        )));
        // An IPv4-only rule does not admit IPv6; the IPv4 ping is refused.
        assert_eq!(
            kinds(&t.reach(&ping(&a, &b))),
            vec![
                DiagnosisKind::MissingRoute,
                DiagnosisKind::SecurityGroupDenies,
                DiagnosisKind::MissingReturnRoute
            ]
        );
        // By address.
        let q = Query::new(
            Endpoint::Instance(a.id.clone()),
            Endpoint::Address(t.v6_of(&b)),
            Protocol::Icmp,
            None,
        );
        assert!(t.reach(&q).reachable);
    }

    #[test]
    fn every_blocker_is_reported_together() {
        let Seed {
            mut t,
            va,
            vb,
            sa,
            a,
            b,
            pcx,
            ..
        } = seed();
        t.accept(&pcx, &vb);
        // B routes back, A has no route; B's group lacks the rule; A's subnet refuses the replies.
        t.route_pcx(&vb, "10.1.0.0/16", &pcx);
        t.custom_acl(&sa);
        t.acl_entry(&sa, 100, "6", "allow", true, "0.0.0.0/0", Some((80, 80)));
        let r = t.reach(&tcp(&a, &b, 80));
        assert!(!r.reachable);
        assert_eq!(
            kinds(&r),
            vec![
                DiagnosisKind::MissingRoute,
                DiagnosisKind::SecurityGroupDenies,
                DiagnosisKind::NaclDeniesReturnTraffic
            ],
            "{r:#?}"
        );
        assert_eq!(
            codes(&r),
            vec![
                "NO_ROUTE_TO_DESTINATION",
                "ENI_SG_RULES_MISMATCH",
                "SUBNET_ACL_RESTRICTION"
            ]
        );
        // The forward path still runs all the way to B.
        assert!(has_hop(&r.forward, "instance", &b.id));
        assert!(has_hop(&r.forward, "vpc-peering-connection", &pcx));
        let _ = va;
    }

    #[test]
    fn stopped_instances() {
        let Seed {
            mut t,
            va,
            vb,
            a,
            b,
            pcx,
            ..
        } = seed();
        t.accept(&pcx, &vb);
        t.route_pcx(&va, "10.2.0.0/16", &pcx);
        t.route_pcx(&vb, "10.1.0.0/16", &pcx);
        let gb = t.sg_of(&vb);
        t.allow(&gb, false, "-1", None, "10.1.0.0/16");
        t.advance();
        assert!(t.reach(&tcp(&a, &b, 80)).reachable);
        let bid = b.id.clone();
        t.run(B, |w, ctx| instance::stop(w, ctx, &[bid]));
        t.advance();
        let r = t.reach(&tcp(&a, &b, 80));
        assert_eq!(kinds(&r), vec![DiagnosisKind::InstanceNotRunning], "{r:#?}");
        assert!(r.diagnoses[0].message.contains("stopped"));
        let r = t.reach(&tcp(&b, &a, 80));
        assert!(
            kinds(&r).contains(&DiagnosisKind::InstanceNotRunning),
            "{r:#?}"
        );
    }

    #[test]
    fn internet_gateway_public_ips_and_nat_gateway() {
        let mut t = T::new();
        let v = t.vpc(A, "10.0.0.0/16", None);
        let public = t.subnet(&v, "10.0.1.0/24", None);
        let private = t.subnet(&v, "10.0.2.0/24", None);
        let igw = t.igw(&v);
        let web = t.launch(&public, "10.0.1.10", true, false);
        let app = t.launch(&private, "10.0.2.10", false, false);
        let host = Endpoint::Address(IpAddr::V4(INTERNET_HOST_V4));
        let out = |i: &I| {
            Query::new(
                Endpoint::Instance(i.id.clone()),
                host.clone(),
                Protocol::Tcp,
                Some(443),
            )
        };
        let r = t.reach(&out(&web));
        assert!(r.reachable, "{r:#?}");
        assert!(
            has_hop(&r.forward, "internet-gateway", &igw)
                && has_hop(&r.ret, "internet-gateway", &igw),
            "{r:#?}"
        );
        let r = t.reach(&out(&app));
        assert_eq!(kinds(&r), vec![DiagnosisKind::NoPublicIp], "{r:#?}");
        assert_eq!(codes(&r), vec!["IGW_PUBLIC_IP_ASSOCIATION_FOR_EGRESS"]);
        // A NAT gateway in the public subnet for the private one.
        let ngw = t.nat_gateway(&public);
        let rt = t.own_table(&private);
        t.route(
            &v,
            &rt,
            "0.0.0.0/0",
            route::RouteSpec {
                nat_gateway_id: Some(ngw.clone()),
                ..Default::default()
            },
        );
        let r = t.reach(&out(&app));
        assert!(r.reachable, "{r:#?}");
        assert!(has_hop(&r.forward, "natgateway", &ngw) && has_hop(&r.ret, "natgateway", &ngw));
        // The internet reaches the web server's public IP once its group allows it.
        let pubip =
            ops::eni::public_ip_of(&t.w, t.w.get::<NetworkInterface>(&web.eni).unwrap()).unwrap();
        let inbound = Query::new(
            host.clone(),
            Endpoint::Instance(web.id.clone()),
            Protocol::Tcp,
            Some(443),
        );
        let r = t.reach(&inbound);
        assert_eq!(r.destination_ip, Some(IpAddr::V4(pubip)));
        assert_eq!(
            kinds(&r),
            vec![DiagnosisKind::SecurityGroupDenies],
            "{r:#?}"
        );
        let g = t.sg_of(&v);
        t.allow(&g, false, "tcp", Some((443, 443)), "0.0.0.0/0");
        assert!(t.reach(&inbound).reachable);
        // Not the private instance: it has no public IP.
        let r = t.reach(&Query::new(
            host.clone(),
            Endpoint::Instance(app.id.clone()),
            Protocol::Tcp,
            Some(443),
        ));
        assert_eq!(kinds(&r), vec![DiagnosisKind::NoPublicIp], "{r:#?}");
        // The public subnet's table loses its default route: the replies have no way back.
        let main = t.main_rtb(&v);
        t.w.update::<RouteTable>(&main, |rt| rt.routes.retain(|r| r.dest.prefix_len() != 0));
        let r = t.reach(&inbound);
        assert_eq!(kinds(&r), vec![DiagnosisKind::MissingReturnRoute], "{r:#?}");
        assert!(
            r.diagnoses[0].fix.contains("0.0.0.0/0") && r.diagnoses[0].fix.contains(&igw),
            "{:?}",
            r.diagnoses
        );
    }

    #[test]
    fn routes_through_a_middlebox_interface() {
        let mut t = T::new();
        let v = t.vpc(A, "10.0.0.0/16", None);
        let s1 = t.subnet(&v, "10.0.1.0/24", None);
        let s2 = t.subnet(&v, "10.0.2.0/24", None);
        let s3 = t.subnet(&v, "10.0.3.0/24", None);
        let a = t.launch(&s1, "10.0.1.10", false, false);
        let b = t.launch(&s2, "10.0.2.10", false, false);
        let m = t.launch(&s3, "10.0.3.10", false, false);
        let rt = t.own_table(&s1);
        let spec = route::RouteSpec {
            network_interface_id: Some(m.eni.clone()),
            ..Default::default()
        };
        t.route(&v, &rt, "10.0.2.0/24", spec);
        let r = t.reach(&tcp(&a, &b, 22));
        assert_eq!(
            codes(&r),
            vec!["ENI_SOURCE_DEST_CHECK_RESTRICTION"],
            "{r:#?}"
        );
        assert_eq!(kinds(&r), vec![DiagnosisKind::SourceDestCheck]);
        t.w.update::<NetworkInterface>(&m.eni, |e| e.source_dest_check = false);
        let r = t.reach(&tcp(&a, &b, 22));
        assert_eq!(codes(&r), vec!["ENI_ADDRESS_RESTRICTION"], "{r:#?}");
        // The middlebox itself is reached directly; it is a class of its own in a matrix.
        assert!(t.reach(&tcp(&a, &m, 22)).reachable);
        let ids = vec![a.id.clone(), b.id.clone(), m.id.clone()];
        let mx = matrix(&t.w, &ids, Protocol::Tcp, Some(22));
        // b -> a fails too: a's replies to b take the route through the middlebox.
        assert_eq!(
            mx,
            vec![
                vec![true, false, true],
                vec![false, true, true],
                vec![true, true, true]
            ]
        );
        let r = t.reach(&tcp(&b, &a, 22));
        assert_eq!(kinds(&r), vec![DiagnosisKind::MissingReturnRoute], "{r:#?}");
    }

    #[test]
    fn bad_queries_are_faults() {
        let Seed { t, a, .. } = seed();
        let q = Query::new(
            Endpoint::Instance("i-0000000000000dead".into()),
            Endpoint::Instance(a.id.clone()),
            Protocol::Icmp,
            None,
        );
        assert_eq!(
            analyze(&t.w, &q).unwrap_err().code,
            "InvalidInstanceID.NotFound"
        );
        let q = Query::new(
            Endpoint::Instance(a.id.clone()),
            Endpoint::Instance(a.id.clone()),
            Protocol::Tcp,
            None,
        );
        assert_eq!(analyze(&t.w, &q).unwrap_err().code, "MissingParameter");
        let mut q = ping(&a, &a);
        q.ipv6 = true;
        assert_eq!(analyze(&t.w, &q).unwrap_err().code, "InvalidParameterValue");
    }

    #[test]
    fn matrix_matches_pairwise_analysis() {
        let mut t = T::new();
        let va = t.vpc(A, "10.1.0.0/16", None);
        let vb = t.vpc(A, "10.2.0.0/16", None);
        let vc = t.vpc(A, "10.1.0.0/16", None); // overlaps A, unpeered
        let sa1 = t.subnet(&va, "10.1.1.0/24", None);
        let sa2 = t.subnet(&va, "10.1.2.0/24", None);
        let sb = t.subnet(&vb, "10.2.1.0/24", None);
        let sc = t.subnet(&vc, "10.1.1.0/24", None);
        let pcx = t.peer(&va, &vb);
        t.accept(&pcx, &vb);
        t.route_pcx(&va, "10.2.0.0/16", &pcx);
        t.route_pcx(&vb, "10.1.0.0/16", &pcx);
        let gb = t.sg_of(&vb);
        t.allow(&gb, false, "tcp", Some((22, 22)), "10.1.1.0/25");
        t.acl_entry(
            &sa2,
            50,
            "6",
            "deny",
            false,
            "10.1.1.128/25",
            Some((22, 22)),
        );
        let mut all = Vec::new();
        for i in 0..4 {
            all.push(t.launch(&sa1, &format!("10.1.1.{}", 10 + i * 60), false, false));
            all.push(t.launch(&sa2, &format!("10.1.2.{}", 10 + i), false, false));
            all.push(t.launch(&sb, &format!("10.2.1.{}", 10 + i), false, false));
        }
        all.push(t.launch(&sc, "10.1.1.10", false, false)); // an address A also uses
        let stopped = t.launch(&sb, "10.2.1.99", false, false);
        t.advance();
        let sid = stopped.id.clone();
        t.run(A, |w, ctx| instance::stop(w, ctx, &[sid]));
        t.advance();
        all.push(stopped);
        let ids: Vec<String> = all
            .iter()
            .map(|i| i.id.clone())
            .chain([all[0].id.clone()])
            .collect();
        let ix = Index::new(&t.w);
        for proto in [Protocol::Tcp, Protocol::Icmp] {
            let port = (proto == Protocol::Tcp).then_some(22);
            let m = matrix_with(&ix, &t.w, &ids, proto, port, false);
            assert!(m.classes < ids.len(), "{} classes", m.classes);
            let mut yes = 0;
            for (i, x) in ids.iter().enumerate() {
                for (j, y) in ids.iter().enumerate() {
                    let q = Query::new(
                        Endpoint::Instance(x.clone()),
                        Endpoint::Instance(y.clone()),
                        proto,
                        port,
                    );
                    let want = analyze_with(&ix, &t.w, &q).unwrap().reachable;
                    assert_eq!(m.reachable[i][j], want, "{x} -> {y} ({proto:?})");
                    yes += usize::from(want);
                }
            }
            assert!(yes > ids.len() && yes < ids.len() * ids.len(), "{yes}");
        }
        assert_eq!(
            matrix(&t.w, &ids, Protocol::Tcp, Some(22)),
            matrix_with(&ix, &t.w, &ids, Protocol::Tcp, Some(22), false).reachable
        );
    }

    /// A thousand VPCs in a chain of peerings, three instances each.
    #[test]
    fn a_thousand_vpcs() {
        let mut t = T::new();
        let n = 1000;
        let mut vpcs = Vec::new();
        let mut subnets = Vec::new();
        for i in 0..n {
            let cidr = format!("10.{}.{}.0/24", i >> 8, i & 255);
            let v = t.vpc(A, &cidr, None);
            subnets.push(t.subnet(&v, &cidr, None));
            vpcs.push(v);
        }
        let mut insts = Vec::new();
        for (i, s) in subnets.iter().enumerate() {
            let base = format!("10.{}.{}", i >> 8, i & 255);
            let v: Vec<I> = (0..3)
                .map(|k| t.launch(s, &format!("{base}.{}", 10 + k), false, false))
                .collect();
            insts.push(v);
        }
        for v in &vpcs {
            let g = t.sg_of(v);
            t.allow(&g, false, "tcp", Some((22, 22)), "10.0.0.0/8");
        }
        let mut pcxs = Vec::new();
        for i in 0..n - 1 {
            let req = peering::CreatePeering {
                vpc_id: Some(vpcs[i].meta.id.clone()),
                peer_vpc_id: Some(vpcs[i + 1].meta.id.clone()),
                ..Default::default()
            };
            pcxs.push(
                t.run(A, |w, ctx| peering::create(w, ctx, req, &|_| true))
                    .id,
            );
        }
        t.advance();
        for p in &pcxs {
            t.run(A, |w, ctx| peering::accept(w, ctx, p));
        }
        t.advance();
        for i in 0..n - 1 {
            let (a, b) = (vpcs[i].clone(), vpcs[i + 1].clone());
            t.route_pcx(&a, &b.cidrs[0].cidr.to_string(), &pcxs[i]);
            t.route_pcx(&b, &a.cidrs[0].cidr.to_string(), &pcxs[i]);
        }
        let ix = Index::new(&t.w);
        for i in (0..n - 2).step_by(97) {
            let ok = analyze_with(&ix, &t.w, &tcp(&insts[i][0], &insts[i + 1][2], 22)).unwrap();
            assert!(ok.reachable, "{ok:#?}");
            let back = analyze_with(&ix, &t.w, &tcp(&insts[i + 1][1], &insts[i][0], 22)).unwrap();
            assert!(back.reachable);
            let two = analyze_with(&ix, &t.w, &tcp(&insts[i][0], &insts[i + 2][0], 22)).unwrap();
            assert!(!two.reachable);
            assert_eq!(
                kinds(&two),
                vec![DiagnosisKind::TransitivePeering],
                "{two:#?}"
            );
            let far =
                analyze_with(&ix, &t.w, &tcp(&insts[i][1], &insts[(i + 500) % n][0], 22)).unwrap();
            assert_eq!(
                kinds(&far),
                vec![DiagnosisKind::DisconnectedVpcs],
                "{far:#?}"
            );
        }
        // The matrix of one instance per VPC over the first 60 VPCs: neighbours only.
        let ids: Vec<String> = insts.iter().take(60).map(|v| v[0].id.clone()).collect();
        let m = matrix_with(&ix, &t.w, &ids, Protocol::Tcp, Some(22), false);
        for i in 0..ids.len() {
            for j in 0..ids.len() {
                assert_eq!(m.reachable[i][j], i.abs_diff(j) <= 1, "{i} -> {j}");
            }
        }
    }
}
