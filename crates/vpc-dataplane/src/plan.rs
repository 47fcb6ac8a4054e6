//! The whole desired kernel state, computed purely from a [`World`].
//!
//! [`plan`] does no I/O. It decides which namespaces exist and everything
//! inside them: links, addresses, routes, rules and nftables rulesets. The
//! AWS rules themselves (which table a subnet uses, whether a route is
//! active, which peering carries traffic, whether a group reference is
//! stale) come from `vpc_model::ops`; this module only translates them.

use crate::names::*;
use crate::nft;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use vpc_model::ops;
use vpc_model::ops::route::NextHop;
use vpc_model::{
    EgressOnlyInternetGateway, Instance, InstanceState, InternetGateway, NatGateway,
    NetworkInterface, Peering, RouteTable, RouteTarget, SecurityGroup, SgPeer, Subnet, Vpc, World,
};

/// The complete desired kernel state of one data directory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub tag: String,
    /// Every namespace, by name.
    pub namespaces: BTreeMap<String, NsPlan>,
    /// Things the plan had to leave out (unsafe IDs, name collisions), for the log.
    pub warnings: Vec<String>,
}

/// What a namespace is for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum NsRole {
    Router { vpc_id: String },
    Instance { instance_id: String },
    NatGateway { nat_id: String },
    Inet,
}

/// Everything inside one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NsPlan {
    pub name: String,
    pub role: NsRole,
    /// Namespace-wide sysctls (`net.ipv4.ip_forward`, …), set when it is created.
    pub sysctls: Vec<(String, String)>,
    /// Every link that must exist, by name (`lo` included).
    pub links: BTreeMap<String, LinkPlan>,
    pub addrs: BTreeSet<AddrPlan>,
    /// Routes by (kernel table, destination). Only vpcd's tables are managed:
    /// 250, 251 and route tables in a router; the main table elsewhere.
    pub routes: BTreeMap<(u32, IpNet), RouteKind>,
    pub rules: BTreeSet<RulePlan>,
    /// nftables tables; each is replaced atomically as a whole.
    pub nft: Vec<NftTable>,
    /// Addresses whose conntrack entries must go when they leave this namespace.
    pub tracked: BTreeSet<IpAddr>,
}

/// One link inside a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkPlan {
    pub name: String,
    /// None leaves the MTU alone (`lo`).
    pub mtu: Option<u32>,
    pub up: bool,
    /// Router side of an instance or NAT gateway veth: `proxy_arp=1`, `proxy_delay=0`.
    pub proxy_arp: bool,
    /// Set on the side that creates the link; the other side just configures it.
    pub create: Option<LinkCreate>,
    /// The link's alias; `lo` carries the data directory's marker
    /// ([`owner_marker`](crate::names::owner_marker)), so an instance namespace
    /// can be recognised as ours even when no record of it is left.
    pub alias: Option<String>,
}

/// How a link comes into being.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkCreate {
    /// A veth whose other end is `peer_name` in namespace `peer_ns`.
    Veth { peer_ns: String, peer_name: String },
    /// A peering link, made by the [`PeeringLinkType`](crate::link::PeeringLinkType).
    Peering(PeeringLinkSpec),
}

impl LinkCreate {
    /// The namespace holding the other end.
    pub fn peer_ns(&self) -> &str {
        match self {
            LinkCreate::Veth { peer_ns, .. } => peer_ns,
            LinkCreate::Peering(s) => &s.remote_ns,
        }
    }

    /// The name of the other end.
    pub fn peer_name(&self) -> &str {
        match self {
            LinkCreate::Veth { peer_name, .. } => peer_name,
            LinkCreate::Peering(s) => &s.remote_name,
        }
    }
}

/// A peering link between two routers; the requester's router creates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeeringLinkSpec {
    pub pcx_id: String,
    pub local_ns: String,
    pub local_name: String,
    pub remote_ns: String,
    pub remote_name: String,
    pub mtu: u32,
    pub inter_region: bool,
    /// The requester's region (the local end's).
    pub local_region: String,
    /// The accepter's region (the remote end's).
    pub remote_region: String,
}

/// An address on a link.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AddrPlan {
    pub dev: String,
    /// Address and prefix length.
    pub addr: IpNet,
    pub noprefixroute: bool,
}

/// What a route does.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum RouteKind {
    Blackhole,
    /// Directly on a link (an interface's /32 or /128).
    Dev(String),
    /// Through a next hop; an IPv6 next hop for an IPv4 route is RFC 5549 style.
    Via {
        gw: IpAddr,
        dev: String,
        onlink: bool,
    },
}

/// `ip rule add iif <iif> lookup <table> pref 1000`, per family.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RulePlan {
    pub v6: bool,
    pub iif: String,
    pub table: u32,
}

/// One nftables table: its family, name and the text between its braces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftTable {
    pub family: &'static str,
    pub name: &'static str,
    pub body: String,
    /// What the kernel must hold of it (compared on every periodic pass).
    pub shape: NftShape,
}

/// The structure of an nftables table: its chains with their number of
/// rules (and a base chain's policy), and its sets and maps with their number
/// of elements. A hand edit that adds or removes a chain, a rule, a set, a
/// map or an element, or changes a policy, changes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NftShape {
    pub chains: BTreeMap<String, ChainShape>,
    pub sets: BTreeMap<String, usize>,
}

/// One chain of an [`NftShape`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainShape {
    pub rules: usize,
    /// A base chain's policy (`accept` or `drop`); None for a regular chain.
    pub policy: Option<&'static str>,
}

impl NftTable {
    /// The script that replaces the table atomically: create it if missing,
    /// delete it, define it again (one transaction with the others in a file).
    pub fn script(&self) -> String {
        format!(
            "table {f} {n} {{}}\ndelete table {f} {n}\ntable {f} {n} {{\n{b}}}\n",
            f = self.family,
            n = self.name,
            b = self.body
        )
    }
}

impl NsPlan {
    fn new(tag: &str, name: String, role: NsRole, sysctls: &[(&str, &str)]) -> NsPlan {
        let mut links = BTreeMap::new();
        links.insert(
            "lo".to_string(),
            LinkPlan {
                name: "lo".into(),
                mtu: None,
                up: true,
                proxy_arp: false,
                create: None,
                alias: Some(owner_marker(tag)),
            },
        );
        NsPlan {
            name,
            role,
            sysctls: sysctls
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            links,
            addrs: BTreeSet::new(),
            routes: BTreeMap::new(),
            rules: BTreeSet::new(),
            nft: Vec::new(),
            tracked: BTreeSet::new(),
        }
    }

    fn link(
        &mut self,
        name: &str,
        mtu: u32,
        up: bool,
        proxy_arp: bool,
        create: Option<LinkCreate>,
    ) {
        self.links.insert(
            name.to_string(),
            LinkPlan {
                name: name.to_string(),
                mtu: Some(mtu),
                up,
                proxy_arp,
                create,
                alias: None,
            },
        );
    }

    fn addr(&mut self, dev: &str, addr: IpNet, noprefixroute: bool) {
        self.addrs.insert(AddrPlan {
            dev: dev.to_string(),
            addr,
            noprefixroute,
        });
    }

    fn rule(&mut self, iif: &str, table: u32) {
        for v6 in [false, true] {
            self.rules.insert(RulePlan {
                v6,
                iif: iif.to_string(),
                table,
            });
        }
    }

    /// The routes of one kernel table.
    pub fn table(&self, table: u32) -> impl Iterator<Item = (&IpNet, &RouteKind)> {
        self.routes
            .iter()
            .filter(move |((t, _), _)| *t == table)
            .map(|((_, d), k)| (d, k))
    }
}

const ROUTER_SYSCTLS: &[(&str, &str)] = &[
    ("net.ipv4.ip_forward", "1"),
    ("net.ipv6.conf.all.forwarding", "1"),
    ("net.ipv6.conf.default.forwarding", "1"),
    ("net.ipv4.conf.all.rp_filter", "0"),
    ("net.ipv4.conf.default.rp_filter", "0"),
    ("net.ipv6.conf.all.accept_dad", "0"),
    ("net.ipv6.conf.default.accept_dad", "0"),
    ("net.ipv4.conf.all.send_redirects", "0"),
    ("net.ipv4.conf.default.send_redirects", "0"),
];

const INSTANCE_SYSCTLS: &[(&str, &str)] = &[
    ("net.ipv6.conf.all.accept_dad", "0"),
    ("net.ipv6.conf.default.accept_dad", "0"),
];

/// A realised interface: attached to an instance that has a namespace.
#[derive(Debug, Clone)]
pub(crate) struct RealEni<'w> {
    pub eni: &'w NetworkInterface,
    pub inst: &'w Instance,
    pub subnet: &'w Subnet,
    /// `e-…` in the router.
    pub link: String,
    /// `ethN` in the instance.
    pub dev: String,
    /// Its instance is pending or running: its addresses are routed.
    pub up: bool,
    pub device_index: u32,
}

impl RealEni<'_> {
    pub fn v4(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.eni.private_ips.iter().map(|p| p.ip)
    }

    pub fn v6(&self) -> impl Iterator<Item = Ipv6Addr> + '_ {
        self.eni.ipv6.iter().copied()
    }

    fn addrs(&self) -> Vec<IpAddr> {
        self.v4()
            .map(IpAddr::V4)
            .chain(self.v6().map(IpAddr::V6))
            .collect()
    }
}

/// A realised NAT gateway.
#[derive(Debug, Clone)]
pub(crate) struct RealNat<'w> {
    pub nat: &'w NatGateway,
    pub subnet: &'w Subnet,
    pub ip: Ipv4Addr,
    pub link: String,
    pub ns: String,
}

/// The subnet's gateway: its network address plus one.
pub fn gateway(net: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()).wrapping_add(1))
}

fn host(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}

fn default_v4() -> IpNet {
    IpNet::V4(Ipv4Net::default())
}

fn default_v6() -> IpNet {
    IpNet::V6(Ipv6Net::default())
}

/// Everything the planner learned about the world, indexed.
struct Facts<'w> {
    w: &'w World,
    tag: &'w str,
    enis: Vec<RealEni<'w>>,
    nats: Vec<RealNat<'w>>,
    /// Instances with a namespace.
    instances: Vec<&'w Instance>,
    /// Attached internet gateways, by VPC.
    igws: BTreeMap<&'w str, &'w InternetGateway>,
    /// Egress-only internet gateways, by VPC (the first by ID).
    eigws: BTreeMap<&'w str, &'w EgressOnlyInternetGateway>,
    /// Active peerings between two existing VPCs.
    peerings: Vec<&'w Peering>,
    routers: BTreeSet<&'w str>,
    /// Private to public IPv4, per VPC (routed interfaces and NAT gateways).
    public: BTreeMap<&'w str, BTreeMap<Ipv4Addr, Ipv4Addr>>,
    /// Every group's member addresses, wherever the members are.
    members: BTreeMap<&'w str, (BTreeSet<Ipv4Addr>, BTreeSet<Ipv6Addr>)>,
    /// Positions in `enis`, per VPC and per instance.
    enis_by_vpc: BTreeMap<&'w str, Vec<usize>>,
    enis_by_instance: BTreeMap<&'w str, Vec<usize>>,
    subnets_by_vpc: BTreeMap<&'w str, Vec<&'w Subnet>>,
    warnings: Vec<String>,
    /// What was gathered when not the whole World.
    within: Option<Within>,
}

/// The part of the World a scoped plan gathers facts from: the scope's
/// VPCs, closed over interfaces (every VPC with an interface of a gathered
/// instance, every instance with an interface in a gathered VPC), so link
/// and device name collisions resolve exactly as over the whole World.
#[derive(Debug, Clone)]
struct Within {
    vpcs: BTreeSet<String>,
    instances: BTreeSet<String>,
    /// Groups whose member addresses the scope's routers can reference.
    groups: BTreeSet<String>,
}

impl Within {
    /// None when the scope needs the whole World (the internet namespace
    /// holds every VPC's public addresses).
    fn new(w: &World, scope: &Scope) -> Option<Within> {
        if scope.inet {
            return None;
        }
        let mut vpcs = scope.vpcs.clone();
        let mut instances = scope.instances.clone();
        vpcs.extend(
            scope
                .nat_gateways
                .iter()
                .filter_map(|n| w.get::<NatGateway>(n).map(|n| n.vpc_id.clone())),
        );
        loop {
            let before = (vpcs.len(), instances.len());
            for e in w.iter::<NetworkInterface>() {
                let inst = e.attachment.as_ref().map(|a| &a.instance_id);
                if vpcs.contains(&e.vpc_id) || inst.is_some_and(|i| instances.contains(i)) {
                    if !vpcs.contains(&e.vpc_id) {
                        vpcs.insert(e.vpc_id.clone());
                    }
                    if let Some(i) = inst.filter(|i| !instances.contains(*i)) {
                        instances.insert(i.clone());
                    }
                }
            }
            if (vpcs.len(), instances.len()) == before {
                break;
            }
        }
        let mut used: BTreeSet<&str> = BTreeSet::new();
        for e in w.iter::<NetworkInterface>() {
            if scope.vpcs.contains(&e.vpc_id) {
                used.extend(e.groups.iter().map(String::as_str));
            }
        }
        let mut groups = BTreeSet::new();
        for g in used.into_iter().filter_map(|g| w.get::<SecurityGroup>(g)) {
            for r in g.ingress.iter().chain(&g.egress) {
                if let SgPeer::Group { group_id, .. } = &r.peer {
                    groups.insert(group_id.clone());
                }
            }
        }
        Some(Within {
            vpcs,
            instances,
            groups,
        })
    }

    fn has_eni(&self, e: &NetworkInterface) -> bool {
        self.vpcs.contains(&e.vpc_id)
            || e.attachment
                .as_ref()
                .is_some_and(|a| self.instances.contains(&a.instance_id))
    }
}

impl<'w> Facts<'w> {
    /// Gathers the facts for planning `scope` (the whole World when None).
    fn gather(w: &'w World, tag: &'w str, scope: Option<&Scope>) -> Facts<'w> {
        let within = scope.and_then(|s| Within::new(w, s));
        let scoped = within.is_some();
        let f = Facts::gather_within(w, tag, within);
        if scoped && f.public_claimed_elsewhere() {
            // A public address is claimed outside the gathered part too: which
            // claim wins depends on the whole World.
            return Facts::gather_within(w, tag, None);
        }
        f
    }

    fn gather_within(w: &'w World, tag: &'w str, within: Option<Within>) -> Facts<'w> {
        let mut f = Facts {
            w,
            tag,
            enis: Vec::new(),
            nats: Vec::new(),
            instances: Vec::new(),
            igws: BTreeMap::new(),
            eigws: BTreeMap::new(),
            peerings: Vec::new(),
            routers: BTreeSet::new(),
            public: BTreeMap::new(),
            members: BTreeMap::new(),
            enis_by_vpc: BTreeMap::new(),
            enis_by_instance: BTreeMap::new(),
            subnets_by_vpc: BTreeMap::new(),
            warnings: Vec::new(),
            within,
        };
        f.gather_instances();
        f.gather_enis();
        f.gather_nats();
        f.gather_gateways();
        f.gather_public();
        f.gather_members();
        for (i, e) in f.enis.iter().enumerate() {
            f.enis_by_vpc
                .entry(e.eni.vpc_id.as_str())
                .or_default()
                .push(i);
            f.enis_by_instance
                .entry(e.inst.meta.id.as_str())
                .or_default()
                .push(i);
        }
        for s in w.iter::<Subnet>() {
            if f.within.as_ref().is_none_or(|x| x.vpcs.contains(&s.vpc_id)) {
                f.subnets_by_vpc
                    .entry(s.vpc_id.as_str())
                    .or_default()
                    .push(s);
            }
        }
        f
    }

    /// Whether an interface outside the gathered part may claim a public
    /// address that a gathered one claims.
    fn public_claimed_elsewhere(&self) -> bool {
        let Some(within) = &self.within else {
            return false;
        };
        let claimed: BTreeSet<Ipv4Addr> = self
            .public
            .values()
            .flat_map(|m| m.values())
            .copied()
            .collect();
        if claimed.is_empty() {
            return false;
        }
        let gathered: BTreeSet<&str> = self
            .enis
            .iter()
            .map(|e| e.eni.meta.id.as_str())
            .chain(self.nats.iter().map(|n| n.nat.eni_id.as_str()))
            .collect();
        let outside = |eni: &str| {
            !gathered.contains(eni)
                && self
                    .w
                    .get::<NetworkInterface>(eni)
                    .is_none_or(|e| !within.has_eni(e))
        };
        self.w
            .iter::<NetworkInterface>()
            .any(|e| e.public_ip.is_some_and(|p| claimed.contains(&p)) && outside(&e.meta.id))
            || self
                .w
                .iter::<vpc_model::Address>()
                .any(|a| claimed.contains(&a.public_ip) && a.eni_id.as_deref().is_some_and(outside))
    }

    fn enis_of_vpc(&self, vpc: &str) -> Vec<&RealEni<'w>> {
        self.enis_by_vpc
            .get(vpc)
            .into_iter()
            .flatten()
            .map(|i| &self.enis[*i])
            .collect()
    }

    fn enis_of_instance(&self, inst: &str) -> Vec<&RealEni<'w>> {
        self.enis_by_instance
            .get(inst)
            .into_iter()
            .flatten()
            .map(|i| &self.enis[*i])
            .collect()
    }

    fn warn(&mut self, s: String) {
        self.warnings.push(s);
    }

    fn gather_instances(&mut self) {
        let w = self.w;
        let all: Vec<&'w Instance> = match &self.within {
            Some(x) => x
                .instances
                .iter()
                .filter_map(|i| w.get::<Instance>(i))
                .collect(),
            None => w.iter::<Instance>().collect(),
        };
        for i in all {
            if i.state == InstanceState::Terminated {
                continue;
            }
            if !is_instance_ns(&i.meta.id) {
                self.warn(format!(
                    "instance {:?}: ID unsafe as a namespace name",
                    i.meta.id
                ));
                continue;
            }
            if self.w.get::<Vpc>(&i.vpc_id).is_none() {
                continue;
            }
            self.instances.push(i);
        }
    }

    fn gather_enis(&mut self) {
        let w = self.w;
        let live: BTreeSet<&str> = self.instances.iter().map(|i| i.meta.id.as_str()).collect();
        let mut seen_link: BTreeSet<(String, String)> = BTreeSet::new();
        let mut seen_dev: BTreeSet<(String, String)> = BTreeSet::new();
        for e in w.iter::<NetworkInterface>() {
            let Some(att) = &e.attachment else { continue };
            if e.interface_type == "nat_gateway" || !live.contains(att.instance_id.as_str()) {
                continue;
            }
            let Some(inst) = w.get::<Instance>(&att.instance_id) else {
                continue;
            };
            let (Some(subnet), Some(_)) = (w.get::<Subnet>(&e.subnet_id), w.get::<Vpc>(&e.vpc_id))
            else {
                continue;
            };
            if !is_safe(&e.meta.id) || !is_safe(&e.vpc_id) || !is_safe(&subnet.meta.id) {
                self.warn(format!("interface {:?}: unsafe ID", e.meta.id));
                continue;
            }
            let link = eni_link(&e.meta.id);
            let dev = instance_dev(att.device_index);
            if !seen_link.insert((e.vpc_id.clone(), link.clone())) {
                self.warn(format!(
                    "interface {}: link name {link} taken in its VPC",
                    e.meta.id
                ));
                continue;
            }
            if !seen_dev.insert((inst.meta.id.clone(), dev.clone())) {
                self.warn(format!(
                    "interface {}: {dev} taken in {}",
                    e.meta.id, inst.meta.id
                ));
                continue;
            }
            self.routers.insert(e.vpc_id.as_str());
            self.enis.push(RealEni {
                eni: e,
                inst,
                subnet,
                link,
                dev,
                up: ops::eni::is_instance_interface_up(w, e),
                device_index: att.device_index,
            });
        }
    }

    fn gather_nats(&mut self) {
        let w = self.w;
        let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
        for n in w.iter::<NatGateway>() {
            if !ops::nat::is_realized(w, n)
                || self
                    .within
                    .as_ref()
                    .is_some_and(|x| !x.vpcs.contains(&n.vpc_id))
            {
                continue;
            }
            let (Some(eni), Some(subnet)) = (
                w.get::<NetworkInterface>(&n.eni_id),
                w.get::<Subnet>(&n.subnet_id),
            ) else {
                continue;
            };
            if !is_safe(&n.meta.id) || !is_safe(&n.vpc_id) || !is_safe(&subnet.meta.id) {
                self.warn(format!("NAT gateway {:?}: unsafe ID", n.meta.id));
                continue;
            }
            let link = nat_link(&n.meta.id);
            if !seen.insert((n.vpc_id.clone(), link.clone())) {
                self.warn(format!("NAT gateway {}: link name {link} taken", n.meta.id));
                continue;
            }
            self.routers.insert(n.vpc_id.as_str());
            self.nats.push(RealNat {
                nat: n,
                subnet,
                ip: eni.primary_ip(),
                link,
                ns: nat_ns(self.tag, &n.meta.id),
            });
        }
    }

    fn gather_gateways(&mut self) {
        let w = self.w;
        for g in w.iter::<InternetGateway>() {
            let Some(v) = g.vpc_id.as_deref() else {
                continue;
            };
            if w.get::<Vpc>(v).is_none()
                || self.within.as_ref().is_some_and(|x| !x.vpcs.contains(v))
            {
                continue;
            }
            if !is_safe(&g.meta.id) || !is_safe(v) {
                self.warn(format!("internet gateway {:?}: unsafe ID", g.meta.id));
                continue;
            }
            self.igws.insert(v, g);
            self.routers.insert(v);
        }
        for g in w.iter::<EgressOnlyInternetGateway>() {
            let v = g.vpc_id.as_str();
            if w.get::<Vpc>(v).is_none()
                || self.within.as_ref().is_some_and(|x| !x.vpcs.contains(v))
            {
                continue;
            }
            if !is_safe(&g.meta.id) || !is_safe(v) {
                self.warn(format!(
                    "egress-only internet gateway {:?}: unsafe ID",
                    g.meta.id
                ));
                continue;
            }
            self.eigws.entry(v).or_insert(g);
            self.routers.insert(v);
        }
        for p in w.iter::<Peering>() {
            if !ops::peering::is_realized(w, p) {
                continue;
            }
            if self.within.as_ref().is_some_and(|x| {
                !x.vpcs.contains(&p.requester.vpc_id) && !x.vpcs.contains(&p.accepter.vpc_id)
            }) {
                continue;
            }
            let (a, b) = (p.requester.vpc_id.as_str(), p.accepter.vpc_id.as_str());
            if !is_safe(&p.id) || !is_safe(a) || !is_safe(b) {
                self.warn(format!("peering {:?}: unsafe ID", p.id));
                continue;
            }
            self.routers.insert(a);
            self.routers.insert(b);
            self.peerings.push(p);
        }
    }

    fn gather_public(&mut self) {
        let w = self.w;
        let mut owner: BTreeMap<Ipv4Addr, &str> = BTreeMap::new();
        let mut add = |f: &mut Facts<'w>, vpc: &'w str, private: Ipv4Addr, public: Ipv4Addr| {
            if let Some(o) = owner.get(&public) {
                f.warnings
                    .push(format!("public IP {public} mapped twice ({o} and {vpc})"));
                return;
            }
            owner.insert(public, vpc);
            f.public.entry(vpc).or_default().insert(private, public);
        };
        let enis: Vec<(&'w str, &'w NetworkInterface)> = self
            .enis
            .iter()
            .filter(|e| e.up)
            .map(|e| (e.eni.vpc_id.as_str(), e.eni))
            .collect();
        for (vpc, e) in enis {
            for (private, public) in ops::eni::public_ips_of(w, e) {
                add(self, vpc, private, public);
            }
        }
        let nats: Vec<(&'w str, &'w NatGateway, Ipv4Addr)> = self
            .nats
            .iter()
            .map(|n| (n.nat.vpc_id.as_str(), n.nat, n.ip))
            .collect();
        for (vpc, n, ip) in nats {
            // The model links a public NAT gateway's Elastic IP to its interface.
            let pubs = w
                .get::<NetworkInterface>(&n.eni_id)
                .map(|e| ops::eni::public_ips_of(w, e))
                .unwrap_or_default();
            for (private, public) in pubs {
                if private == ip {
                    add(self, vpc, private, public);
                }
            }
        }
    }

    fn gather_members(&mut self) {
        let within = self.within.as_ref().map(|x| &x.groups);
        for e in self.w.iter::<NetworkInterface>() {
            for g in e
                .groups
                .iter()
                .filter(|g| within.is_none_or(|x| x.contains(*g)))
            {
                let m = self.members.entry(g.as_str()).or_default();
                m.0.extend(e.private_ips.iter().map(|p| p.ip));
                m.1.extend(e.ipv6.iter().copied());
            }
        }
    }
}

/// Computes the complete desired kernel state for the data directory `tag`.
pub fn plan(world: &World, tag: &str) -> Plan {
    plan_scope(world, tag, None)
}

/// Which namespaces a plan covers: routers by VPC ID, instance namespaces
/// by instance ID, NAT gateway namespaces by NAT gateway ID, and the
/// simulated internet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    pub vpcs: BTreeSet<String>,
    pub instances: BTreeSet<String>,
    pub nat_gateways: BTreeSet<String>,
    pub inet: bool,
}

impl Scope {
    /// The names of the namespaces in scope (whether the World plans them or not).
    pub fn namespaces(&self, tag: &str) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = self.vpcs.iter().map(|v| router_ns(tag, v)).collect();
        out.extend(self.instances.iter().cloned());
        out.extend(self.nat_gateways.iter().map(|n| nat_ns(tag, n)));
        if self.inet {
            out.insert(inet_ns(tag));
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.vpcs.is_empty()
            && self.instances.is_empty()
            && self.nat_gateways.is_empty()
            && !self.inet
    }
}

/// Plans the namespaces in `scope` (all of them when None): exactly the
/// entries of [`plan`]`(world, tag).namespaces` whose names are in scope.
///
/// Facts shared across namespaces (which interfaces are realised, group
/// members, public IPs) come from the part of the World the scope can
/// depend on: the scope's VPCs closed over interfaces (link and device
/// names are unique per VPC and per instance), the groups their rules
/// reference, and, when a public address is claimed in more than one place
/// or the internet namespace is in scope, the whole World.
pub fn plan_scope(world: &World, tag: &str, scope: Option<&Scope>) -> Plan {
    Facts::gather(world, tag, scope).plan(scope)
}

impl Facts<'_> {
    /// Plans the namespaces in `scope` (all of them when None): exactly the
    /// entries of [`plan`]`(world, tag).namespaces` whose names are in scope.
    fn plan(&self, scope: Option<&Scope>) -> Plan {
        let f = self;
        let mut out = Plan {
            tag: f.tag.to_string(),
            ..Plan::default()
        };
        let mut warnings = f.warnings.clone();
        let routers: Vec<&str> = f
            .routers
            .iter()
            .copied()
            .filter(|v| scope.is_none_or(|s| s.vpcs.contains(*v)))
            .collect();
        let instances: Vec<&Instance> = f
            .instances
            .iter()
            .copied()
            .filter(|i| scope.is_none_or(|s| s.instances.contains(&i.meta.id)))
            .collect();
        let plan_routers = || {
            let mut w = Vec::new();
            let v: Vec<NsPlan> = routers.iter().map(|vpc| router(f, vpc, &mut w)).collect();
            (v, w)
        };
        let ((routers, router_warnings), instances) = if routers.len() + instances.len() < 64 {
            let r = plan_routers();
            (r, instances.iter().map(|i| instance(f, i)).collect())
        } else {
            // Routers on one thread, instances on this one: the two halves of
            // the work are independent and about the same size at scale.
            std::thread::scope(|s| {
                let r = s.spawn(plan_routers);
                let i: Vec<NsPlan> = instances.iter().map(|i| instance(f, i)).collect();
                (r.join().unwrap_or_else(|p| std::panic::resume_unwind(p)), i)
            })
        };
        warnings.extend(router_warnings);
        for ns in routers.into_iter().chain(instances) {
            out.namespaces.insert(ns.name.clone(), ns);
        }
        for n in &f.nats {
            if scope.is_none_or(|s| s.nat_gateways.contains(&n.nat.meta.id)) {
                let ns = nat_gateway(f.tag, n);
                out.namespaces.insert(ns.name.clone(), ns);
            }
        }
        if !(f.igws.is_empty() && f.eigws.is_empty()) && scope.is_none_or(|s| s.inet) {
            let ns = inet(f);
            out.namespaces.insert(ns.name.clone(), ns);
        }
        out.warnings = warnings;
        out
    }
}

/// Kernel table IDs for every route table of a VPC (stable hash, probing on a collision).
fn table_ids<'w>(w: &'w World, vpc: &str) -> BTreeMap<&'w str, u32> {
    let mut used = BTreeSet::new();
    let mut out = BTreeMap::new();
    let mut ids: Vec<&str> = w
        .iter::<RouteTable>()
        .filter(|r| r.vpc_id == vpc)
        .map(|r| r.meta.id.as_str())
        .collect();
    ids.sort_unstable();
    for id in ids {
        let mut t = table_id(id);
        while !used.insert(t) {
            t = TABLE_BASE + ((t - TABLE_BASE + 1) & 0x3fff_ffff);
        }
        out.insert(id, t);
    }
    out
}

fn router(f: &Facts<'_>, vpc_id: &str, warnings: &mut Vec<String>) -> NsPlan {
    let w = f.w;
    let name = router_ns(f.tag, vpc_id);
    let mut ns = NsPlan::new(
        f.tag,
        name.clone(),
        NsRole::Router {
            vpc_id: vpc_id.to_string(),
        },
        ROUTER_SYSCTLS,
    );
    let ll1 = IpNet::V6(Ipv6Net::new(LL_ONE, 64).expect("valid"));
    let ll2 = IpNet::V6(Ipv6Net::new(LL_TWO, 64).expect("valid"));
    let enis: Vec<&RealEni<'_>> = f.enis_of_vpc(vpc_id);
    let nats: Vec<&RealNat<'_>> = f.nats.iter().filter(|n| n.nat.vpc_id == vpc_id).collect();

    // Links.
    for e in &enis {
        ns.link(
            &e.link,
            MTU,
            true,
            true,
            Some(LinkCreate::Veth {
                peer_ns: e.inst.meta.id.clone(),
                peer_name: e.dev.clone(),
            }),
        );
        ns.addr(&e.link, ll1, false);
    }
    for n in &nats {
        ns.link(
            &n.link,
            MTU,
            true,
            true,
            Some(LinkCreate::Veth {
                peer_ns: n.ns.clone(),
                peer_name: "eth0".into(),
            }),
        );
        ns.addr(&n.link, ll1, false);
    }
    // Peering links: link name and the far end's link-local address.
    let mut pcx_links: BTreeMap<&str, (String, Ipv6Addr)> = BTreeMap::new();
    let peerings: Vec<&Peering> = f
        .peerings
        .iter()
        .copied()
        .filter(|p| p.requester.vpc_id == vpc_id || p.accepter.vpc_id == vpc_id)
        .collect();
    for p in peerings {
        let link = peering_link(&p.id);
        let requester = p.requester.vpc_id == vpc_id;
        let mtu = if p.inter_region() {
            MTU_INTER_REGION
        } else {
            MTU
        };
        let create = requester.then(|| {
            LinkCreate::Peering(PeeringLinkSpec {
                pcx_id: p.id.clone(),
                local_ns: name.clone(),
                local_name: link.clone(),
                remote_ns: router_ns(f.tag, &p.accepter.vpc_id),
                remote_name: link.clone(),
                mtu,
                inter_region: p.inter_region(),
                local_region: p.requester.region.clone(),
                remote_region: p.accepter.region.clone(),
            })
        });
        if ns.links.contains_key(&link) {
            warnings.push(format!("peering {}: link name {link} taken", p.id));
            continue;
        }
        ns.link(&link, mtu, true, false, create);
        ns.addr(&link, if requester { ll1 } else { ll2 }, false);
        ns.rule(&link, TABLE_PEERING);
        pcx_links.insert(
            p.id.as_str(),
            (link, if requester { LL_TWO } else { LL_ONE }),
        );
    }
    // The VPC's internet link: its internet gateway's, else its egress-only
    // gateway's (both gateways of a VPC share the internet gateway's link).
    let igw = f.igws.get(vpc_id).copied();
    let eigw = f.eigws.get(vpc_id).copied();
    let igw_link_name = igw
        .map(|g| igw_link(&g.meta.id))
        .or_else(|| eigw.map(|g| igw_link(&g.meta.id)));
    if let Some(link) = &igw_link_name {
        ns.link(
            link,
            MTU,
            true,
            false,
            Some(LinkCreate::Veth {
                peer_ns: inet_ns(f.tag),
                peer_name: inet_link(vpc_id),
            }),
        );
        ns.addr(link, ll1, false);
        ns.rule(link, TABLE_IGW);
    }

    // Subnet gateways on lo.
    for s in f.subnets_by_vpc.get(vpc_id).into_iter().flatten() {
        ns.addr(
            "lo",
            IpNet::V4(Ipv4Net::new(gateway(s.cidr), 32).expect("valid")),
            false,
        );
    }

    // The Amazon-provided DNS server's addresses (base + 2, 169.254.169.253,
    // fd00:ec2::253) on lo.
    for a in w
        .get::<Vpc>(vpc_id)
        .map(ops::dns::resolver_addresses)
        .unwrap_or_default()
    {
        ns.addr("lo", IpNet::from(a), false);
    }

    // Routed addresses: (address, link) of running interfaces and NAT gateways.
    let routed_enis: Vec<(IpAddr, String)> = enis
        .iter()
        .filter(|e| e.up)
        .flat_map(|e| e.addrs().into_iter().map(|a| (a, e.link.clone())))
        .collect();
    let routed_nats: Vec<(IpAddr, String)> = nats
        .iter()
        .map(|n| (IpAddr::V4(n.ip), n.link.clone()))
        .collect();

    // Tables 250 (from peerings, and the router's own packets) and 251 (from the internet gateway).
    for (a, link) in &routed_enis {
        ns.routes
            .insert((TABLE_PEERING, host(*a)), RouteKind::Dev(link.clone()));
        ns.routes
            .insert((TABLE_IGW, host(*a)), RouteKind::Dev(link.clone()));
    }
    for (a, link) in &routed_nats {
        ns.routes
            .insert((TABLE_IGW, host(*a)), RouteKind::Dev(link.clone()));
    }
    for t in [TABLE_PEERING, TABLE_IGW] {
        ns.routes.insert((t, default_v4()), RouteKind::Blackhole);
        ns.routes.insert((t, default_v6()), RouteKind::Blackhole);
    }
    ns.rule("lo", TABLE_PEERING);

    // Route tables, one per table some realised interface's subnet uses.
    let ids = table_ids(w, vpc_id);
    let mut used: BTreeMap<u32, &RouteTable> = BTreeMap::new();
    let subnet_links: Vec<(&Subnet, &str)> = enis
        .iter()
        .map(|e| (e.subnet, e.link.as_str()))
        .chain(nats.iter().map(|n| (n.subnet, n.link.as_str())))
        .collect();
    let mut by_subnet: BTreeMap<&str, Option<(&RouteTable, u32)>> = BTreeMap::new();
    for (s, link) in subnet_links {
        let found = *by_subnet.entry(s.meta.id.as_str()).or_insert_with(|| {
            ops::route::table_for_subnet(w, s)
                .and_then(|rt| Some((rt, *ids.get(rt.meta.id.as_str())?)))
        });
        match found {
            Some((rt, t)) => {
                ns.rule(link, t);
                used.insert(t, rt);
            }
            None => warnings.push(format!("subnet {}: no route table", s.meta.id)),
        }
    }
    let ctx = RouteCtx {
        w,
        pcx_links: &pcx_links,
        igw: igw
            .map(|g| g.meta.id.as_str())
            .zip(igw_link_name.as_deref()),
        eigw: eigw
            .map(|g| g.meta.id.as_str())
            .zip(igw_link_name.as_deref()),
        enis: &enis,
        nats: &nats,
    };
    for (t, rt) in used {
        for (dst, kind) in table_routes(&ctx, rt, &routed_enis, &routed_nats) {
            ns.routes.insert((t, dst), kind);
        }
    }

    // Filtering and NAT.
    let public = f.public.get(vpc_id).cloned().unwrap_or_default();
    ns.nft = nft::router(&nft::RouterInput {
        w,
        enis: &enis,
        nats: &nats,
        public: &public,
        members: &f.members,
        egress_only_link: eigw.is_some() && !ops::eigw::internet_may_connect(w, vpc_id),
    });

    // Conntrack hygiene: every routed private and public address.
    ns.tracked.extend(routed_enis.iter().map(|(a, _)| *a));
    ns.tracked.extend(routed_nats.iter().map(|(a, _)| *a));
    ns.tracked.extend(public.values().map(|p| IpAddr::V4(*p)));
    ns
}

struct RouteCtx<'a, 'w> {
    w: &'w World,
    pcx_links: &'a BTreeMap<&'w str, (String, Ipv6Addr)>,
    /// (igw id, router link)
    igw: Option<(&'w str, &'a str)>,
    /// (egress-only gateway id, router link)
    eigw: Option<(&'w str, &'a str)>,
    enis: &'a [&'a RealEni<'w>],
    nats: &'a [&'a RealNat<'w>],
}

impl RouteCtx<'_, '_> {
    /// A route through an interface of this VPC: to its address of the
    /// destination's family, on its link.
    fn via_interface(&self, eni_id: &str, v6: bool) -> RouteKind {
        let Some(e) = self.enis.iter().find(|e| e.eni.meta.id == eni_id) else {
            return RouteKind::Blackhole;
        };
        let gw = if v6 {
            e.v6().next().map(IpAddr::V6)
        } else {
            e.v4().next().map(IpAddr::V4)
        };
        match gw {
            Some(gw) => RouteKind::Via {
                gw,
                dev: e.link.clone(),
                onlink: true,
            },
            None => RouteKind::Blackhole,
        }
    }

    /// The kernel route for one VPC route: where the model says the packet
    /// goes ([`ops::route::next_hop`]), on the link this plan gave that hop.
    fn target(&self, rt: &RouteTable, r: &vpc_model::Route) -> RouteKind {
        let v6 = r.dest.addr().is_ipv6();
        let Some(hop) = ops::route::next_hop(self.w, rt, r, v6) else {
            return RouteKind::Blackhole;
        };
        match hop {
            NextHop::Peering(p) => match self.pcx_links.get(p.id.as_str()) {
                Some((link, peer)) => RouteKind::Via {
                    gw: IpAddr::V6(*peer),
                    dev: link.clone(),
                    onlink: false,
                },
                None => RouteKind::Blackhole,
            },
            NextHop::InternetGateway(g) => match self.igw {
                Some((id, link)) if id == g => RouteKind::Via {
                    gw: IpAddr::V6(LL_TWO),
                    dev: link.to_string(),
                    onlink: false,
                },
                _ => RouteKind::Blackhole,
            },
            NextHop::EgressOnlyGateway(g) => match self.eigw {
                Some((id, link)) if id == g => RouteKind::Via {
                    gw: IpAddr::V6(LL_TWO),
                    dev: link.to_string(),
                    onlink: false,
                },
                _ => RouteKind::Blackhole,
            },
            NextHop::NatGateway(g) => match self.nats.iter().find(|x| x.nat.meta.id == g.meta.id) {
                Some(x) => RouteKind::Via {
                    gw: IpAddr::V4(x.ip),
                    dev: x.link.clone(),
                    onlink: true,
                },
                None => RouteKind::Blackhole,
            },
            NextHop::Interface(e) => self.via_interface(&e.meta.id, v6),
            // vpcd runs no AWS service behind a gateway endpoint: the packet ends here.
            NextHop::GatewayEndpoint(_) => RouteKind::Blackhole,
        }
    }
}

/// One VPC route table as kernel routes (see `docs/dataplane.md`, "Routing").
fn table_routes(
    ctx: &RouteCtx<'_, '_>,
    rt: &RouteTable,
    routed_enis: &[(IpAddr, String)],
    routed_nats: &[(IpAddr, String)],
) -> BTreeMap<IpNet, RouteKind> {
    let mut out = BTreeMap::new();
    for r in &rt.routes {
        out.insert(r.dest.trunc(), ctx.target(rt, r));
    }
    // The `local` route, expanded: an interface's address goes straight to
    // its link when the table's longest match for it is the local route (a
    // more specific user route, e.g. to a middlebox, wins as on AWS).
    for (a, link) in routed_enis.iter().chain(routed_nats) {
        if ops::route::lookup(rt, *a).is_some_and(|r| r.target == RouteTarget::Local) {
            out.insert(host(*a), RouteKind::Dev(link.clone()));
        }
    }
    // Nothing falls through to another table.
    out.entry(default_v4()).or_insert(RouteKind::Blackhole);
    out.entry(default_v6()).or_insert(RouteKind::Blackhole);
    out
}

fn instance(f: &Facts<'_>, i: &Instance) -> NsPlan {
    let mut ns = NsPlan::new(
        f.tag,
        i.meta.id.clone(),
        NsRole::Instance {
            instance_id: i.meta.id.clone(),
        },
        INSTANCE_SYSCTLS,
    );
    let up = i.is_up();
    for e in f.enis_of_instance(&i.meta.id) {
        ns.link(&e.dev, MTU, up, false, None);
        let prefix = e.subnet.cidr.prefix_len();
        for a in e.v4() {
            ns.addr(
                &e.dev,
                IpNet::V4(Ipv4Net::new(a, prefix).expect("valid prefix")),
                false,
            );
        }
        for a in e.v6() {
            ns.addr(&e.dev, IpNet::V6(Ipv6Net::new(a, 64).expect("valid")), true);
        }
        // Routes through a down link cannot exist; the kernel drops them.
        if up && e.device_index == 0 {
            ns.routes.insert(
                (TABLE_MAIN, default_v4()),
                RouteKind::Via {
                    gw: IpAddr::V4(gateway(e.subnet.cidr)),
                    dev: e.dev.clone(),
                    onlink: false,
                },
            );
            if e.v6().next().is_some() {
                ns.routes.insert(
                    (TABLE_MAIN, default_v6()),
                    RouteKind::Via {
                        gw: IpAddr::V6(LL_ONE),
                        dev: e.dev.clone(),
                        onlink: false,
                    },
                );
            }
        }
    }
    ns
}

fn nat_gateway(tag: &str, n: &RealNat<'_>) -> NsPlan {
    let mut ns = NsPlan::new(
        tag,
        n.ns.clone(),
        NsRole::NatGateway {
            nat_id: n.nat.meta.id.clone(),
        },
        ROUTER_SYSCTLS,
    );
    ns.link("eth0", MTU, true, false, None);
    ns.addr(
        "eth0",
        IpNet::V4(Ipv4Net::new(n.ip, n.subnet.cidr.prefix_len()).expect("valid prefix")),
        false,
    );
    ns.routes.insert(
        (TABLE_MAIN, default_v4()),
        RouteKind::Via {
            gw: IpAddr::V4(gateway(n.subnet.cidr)),
            dev: "eth0".into(),
            onlink: false,
        },
    );
    ns.nft = nft::nat_gateway(n.ip);
    ns
}

fn inet(f: &Facts<'_>) -> NsPlan {
    let mut ns = NsPlan::new(f.tag, inet_ns(f.tag), NsRole::Inet, ROUTER_SYSCTLS);
    ns.addr(
        "lo",
        IpNet::V4(Ipv4Net::new(INET_HOST_V4, 32).expect("valid")),
        false,
    );
    ns.addr(
        "lo",
        IpNet::V6(Ipv6Net::new(INET_HOST_V6, 128).expect("valid")),
        false,
    );
    let ll2 = IpNet::V6(Ipv6Net::new(LL_TWO, 64).expect("valid"));
    let vpcs: BTreeSet<&str> = f.igws.keys().chain(f.eigws.keys()).copied().collect();
    for vpc in vpcs {
        let link = inet_link(vpc);
        ns.link(&link, MTU, true, false, None);
        ns.addr(&link, ll2, false);
        let via = RouteKind::Via {
            gw: IpAddr::V6(LL_ONE),
            dev: link.clone(),
            onlink: false,
        };
        // Public IPv4 addresses are reached through an internet gateway only.
        let public = f.public.get(vpc).filter(|_| f.igws.contains_key(vpc));
        for public in public.into_iter().flat_map(|m| m.values()) {
            ns.routes
                .insert((TABLE_MAIN, host(IpAddr::V4(*public))), via.clone());
        }
        if let Some(v) = f.w.get::<Vpc>(vpc) {
            for b in v.v6_blocks() {
                ns.routes
                    .insert((TABLE_MAIN, IpNet::V6(b.trunc())), via.clone());
            }
        }
    }
    ns
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{Env, A, B, EAST, WEST};
    use vpc_model::ops::route::RouteSpec;

    const TAG: &str = "t1";

    fn router<'p>(p: &'p Plan, vpc: &Vpc) -> &'p NsPlan {
        p.namespaces
            .get(&router_ns(TAG, &vpc.meta.id))
            .unwrap_or_else(|| panic!("no router for {}", vpc.meta.id))
    }

    fn fmt_kind(k: &RouteKind) -> String {
        match k {
            RouteKind::Blackhole => "blackhole".into(),
            RouteKind::Dev(d) => format!("dev {d}"),
            RouteKind::Via { gw, dev, onlink } => {
                format!("via {gw} dev {dev}{}", if *onlink { " onlink" } else { "" })
            }
        }
    }

    /// A table as `dst -> what` strings.
    fn table(ns: &NsPlan, t: u32) -> BTreeMap<String, String> {
        ns.table(t)
            .map(|(d, k)| (d.to_string(), fmt_kind(k)))
            .collect()
    }

    /// The kernel table of a subnet's route table, from the rule of an interface.
    fn table_of(ns: &NsPlan, eni: &str) -> u32 {
        let link = eni_link(eni);
        let ts: BTreeSet<u32> = ns
            .rules
            .iter()
            .filter(|r| r.iif == link)
            .map(|r| r.table)
            .collect();
        assert_eq!(ts.len(), 1, "one table for {link}: {ts:?}");
        *ts.iter().next().unwrap()
    }

    fn filter(ns: &NsPlan) -> &str {
        &ns.nft
            .iter()
            .find(|t| t.name == "vpcd")
            .expect("filter")
            .body
    }

    fn chain<'a>(body: &'a str, name: &str) -> Vec<&'a str> {
        let start = format!("  chain {name} {{\n");
        let i = body
            .find(&start)
            .unwrap_or_else(|| panic!("no chain {name}"));
        body[i + start.len()..]
            .lines()
            .take_while(|l| *l != "  }")
            .map(str::trim)
            .collect()
    }

    fn set_line<'a>(body: &'a str, name: &str) -> &'a str {
        let start = format!("  set {name} {{");
        body.lines()
            .find(|l| l.starts_with(&start))
            .unwrap_or_else(|| panic!("no set {name}"))
    }

    #[test]
    fn empty_world_and_empty_vpcs_plan_nothing() {
        let mut e = Env::new();
        assert!(plan(&e.w, TAG).namespaces.is_empty());
        let v = e.vpc("10.0.0.0/16");
        e.subnet(&v, "10.0.1.0/24");
        assert!(plan(&e.w, TAG).namespaces.is_empty());
    }

    #[test]
    fn one_subnet_two_instances() {
        let mut e = Env::new();
        let v = e.vpc("10.0.0.0/16");
        let s = e.subnet(&v, "10.0.1.0/24");
        let a = e.instance(&s, "10.0.1.10");
        let b = e.instance(&s, "10.0.1.11");
        let p = plan(&e.w, TAG);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert_eq!(
            p.namespaces.keys().cloned().collect::<Vec<_>>(),
            vec![a.id.clone(), b.id.clone(), router_ns(TAG, &v.meta.id)]
        );
        let r = router(&p, &v);
        // Links made from the router, into the instance namespaces.
        let la = &r.links[&eni_link(&a.eni)];
        assert_eq!(la.mtu, Some(MTU));
        assert!(la.proxy_arp && la.up);
        assert_eq!(
            la.create,
            Some(LinkCreate::Veth {
                peer_ns: a.id.clone(),
                peer_name: "eth0".into()
            })
        );
        // The gateway on lo, fe80::1 on each link.
        assert!(r.addrs.contains(&AddrPlan {
            dev: "lo".into(),
            addr: "10.0.1.1/32".parse().unwrap(),
            noprefixroute: false
        }));
        assert!(r.addrs.contains(&AddrPlan {
            dev: eni_link(&a.eni),
            addr: "fe80::1/64".parse().unwrap(),
            noprefixroute: false
        }));
        // Both interfaces use the main table; it blackholes the block and
        // routes the two /32s.
        let t = table_of(r, &a.eni);
        assert_eq!(t, table_of(r, &b.eni));
        assert_eq!(t, table_id(&v.main_route_table));
        let mut want = BTreeMap::new();
        want.insert("10.0.0.0/16".to_string(), "blackhole".to_string());
        want.insert("10.0.1.10/32".into(), format!("dev {}", eni_link(&a.eni)));
        want.insert("10.0.1.11/32".into(), format!("dev {}", eni_link(&b.eni)));
        want.insert("0.0.0.0/0".into(), "blackhole".into());
        want.insert("::/0".into(), "blackhole".into());
        assert_eq!(table(r, t), want);
        // Peering and internet tables hold own interfaces only.
        let t250 = table(r, TABLE_PEERING);
        assert_eq!(t250.len(), 4, "{t250:?}");
        assert_eq!(t250["0.0.0.0/0"], "blackhole");
        assert!(r.rules.contains(&RulePlan {
            v6: true,
            iif: "lo".into(),
            table: TABLE_PEERING
        }));
        // The router's sysctls.
        assert!(r
            .sysctls
            .contains(&("net.ipv4.ip_forward".to_string(), "1".to_string())));
        // Conntrack bookkeeping.
        assert!(r.tracked.contains(&"10.0.1.10".parse().unwrap()));

        // The instance: its address with the subnet's prefix, default via .1.
        let i = &p.namespaces[&a.id];
        assert_eq!(
            i.role,
            NsRole::Instance {
                instance_id: a.id.clone()
            }
        );
        assert_eq!(i.links["eth0"].mtu, Some(MTU));
        assert!(i.links["eth0"].up && i.links["eth0"].create.is_none());
        assert!(i.addrs.contains(&AddrPlan {
            dev: "eth0".into(),
            addr: "10.0.1.10/24".parse().unwrap(),
            noprefixroute: false
        }));
        assert_eq!(table(i, TABLE_MAIN)["0.0.0.0/0"], "via 10.0.1.1 dev eth0");
        assert!(i.nft.is_empty() && i.rules.is_empty());
        // Every namespace's lo carries the data directory's marker.
        assert_eq!(i.links["lo"].alias.as_deref(), Some("vpcdt1"));
        assert_eq!(r.links["lo"].alias.as_deref(), Some("vpcdt1"));
    }

    #[test]
    fn ipv6_addresses_and_routes() {
        let mut e = Env::new();
        let v = e.vpc_as(A, EAST, "10.0.0.0/16", Some("2600:1f18:1::/56"));
        let s = e.subnet(&v, "10.0.1.0/24");
        let a = e.instance(&s, "10.0.1.10");
        e.add_ipv6(&a.eni, "2600:1f18:1:1::10");
        let p = plan(&e.w, TAG);
        let i = &p.namespaces[&a.id];
        assert!(i.addrs.contains(&AddrPlan {
            dev: "eth0".into(),
            addr: "2600:1f18:1:1::10/64".parse().unwrap(),
            noprefixroute: true
        }));
        assert_eq!(table(i, TABLE_MAIN)["::/0"], "via fe80::1 dev eth0");
        let r = router(&p, &v);
        let t = table(r, table_of(r, &a.eni));
        assert_eq!(t["2600:1f18:1::/56"], "blackhole");
        assert_eq!(
            t["2600:1f18:1:1::10/128"],
            format!("dev {}", eni_link(&a.eni))
        );
        let f = filter(r);
        assert!(set_line(f, "eni_addr6").contains("2600:1f18:1:1::10"));
    }

    #[test]
    fn stopped_instance_is_down_and_unrouted() {
        let mut e = Env::new();
        let v = e.vpc("10.0.0.0/16");
        let s = e.subnet(&v, "10.0.1.0/24");
        let a = e.instance(&s, "10.0.1.10");
        e.set_state(&a.id, InstanceState::Stopped);
        let p = plan(&e.w, TAG);
        let i = &p.namespaces[&a.id];
        assert!(!i.links["eth0"].up);
        assert!(i.routes.is_empty(), "no routes through a down link");
        assert!(i.addrs.iter().any(|x| x.dev == "eth0"));
        let r = router(&p, &v);
        assert!(r.links.contains_key(&eni_link(&a.eni)), "veth kept");
        let t = table(r, table_of(r, &a.eni));
        assert!(!t.contains_key("10.0.1.10/32"), "{t:?}");
        assert!(!r.tracked.contains(&"10.0.1.10".parse().unwrap()));

        e.set_state(&a.id, InstanceState::Terminated);
        let p = plan(&e.w, TAG);
        assert!(p.namespaces.is_empty(), "{:?}", p.namespaces.keys());
    }

    #[test]
    fn pending_peering_has_no_link_and_blackholes() {
        let mut e = Env::new();
        let va = e.vpc("10.1.0.0/16");
        let vb = e.vpc_as(B, EAST, "10.2.0.0/16", None);
        let sa = e.subnet(&va, "10.1.1.0/24");
        let sb = e.subnet(&vb, "10.2.1.0/24");
        let a = e.instance(&sa, "10.1.1.10");
        e.instance(&sb, "10.2.1.10");
        let pcx = e.peer(&va, &vb, false);
        e.route_to_pcx(&va, "10.2.0.0/16", &pcx);
        let p = plan(&e.w, TAG);
        let r = router(&p, &va);
        assert!(!r.links.keys().any(|l| l.starts_with("p-")));
        assert!(!r.rules.iter().any(|x| x.iif.starts_with("p-")));
        assert_eq!(table(r, table_of(r, &a.eni))["10.2.0.0/16"], "blackhole");
    }

    #[test]
    fn active_peering_links_and_routes_both_sides() {
        let mut e = Env::new();
        let va = e.vpc("10.1.0.0/16");
        let vb = e.vpc_as(B, EAST, "10.2.0.0/16", None);
        let sa = e.subnet(&va, "10.1.1.0/24");
        let sb = e.subnet(&vb, "10.2.1.0/24");
        let a = e.instance(&sa, "10.1.1.10");
        let b = e.instance(&sb, "10.2.1.10");
        let pcx = e.peer(&va, &vb, true);
        e.route_to_pcx(&va, "10.2.0.0/16", &pcx);
        e.route_to_pcx(&vb, "10.1.0.0/16", &pcx);
        let p = plan(&e.w, TAG);
        let link = peering_link(&pcx);
        let (ra, rb) = (router(&p, &va), router(&p, &vb));
        // The requester makes the link; the accepter only configures its end.
        match &ra.links[&link].create {
            Some(LinkCreate::Peering(s)) => {
                assert_eq!(s.remote_ns, rb.name);
                assert_eq!(s.mtu, MTU);
                assert!(!s.inter_region);
            }
            other => panic!("requester must create the link: {other:?}"),
        }
        assert!(rb.links[&link].create.is_none());
        assert!(ra.addrs.contains(&AddrPlan {
            dev: link.clone(),
            addr: "fe80::1/64".parse().unwrap(),
            noprefixroute: false
        }));
        assert!(rb.addrs.contains(&AddrPlan {
            dev: link.clone(),
            addr: "fe80::2/64".parse().unwrap(),
            noprefixroute: false
        }));
        assert_eq!(
            table(ra, table_of(ra, &a.eni))["10.2.0.0/16"],
            format!("via fe80::2 dev {link}")
        );
        assert_eq!(
            table(rb, table_of(rb, &b.eni))["10.1.0.0/16"],
            format!("via fe80::1 dev {link}")
        );
        for r in [ra, rb] {
            assert!(r.rules.contains(&RulePlan {
                v6: false,
                iif: link.clone(),
                table: TABLE_PEERING
            }));
        }
        // The rendered line uses an IPv6 next hop for an IPv4 route.
        assert_eq!(
            crate::kernel::route_line(
                7,
                &"10.2.0.0/16".parse().unwrap(),
                ra.table(table_of(ra, &a.eni))
                    .find(|(d, _)| d.to_string() == "10.2.0.0/16")
                    .unwrap()
                    .1
            ),
            format!("route replace 10.2.0.0/16 via inet6 fe80::2 dev {link} table 7")
        );

        // Deleting the connection removes the link and turns the route into a blackhole.
        e.delete_peering(&pcx, &va);
        let p = plan(&e.w, TAG);
        let ra = router(&p, &va);
        assert!(!ra.links.contains_key(&link));
        assert_eq!(table(ra, table_of(ra, &a.eni))["10.2.0.0/16"], "blackhole");
    }

    #[test]
    fn inter_region_peering_has_mtu_1500() {
        let mut e = Env::new();
        let va = e.vpc("10.1.0.0/16");
        let vb = e.vpc_as(A, WEST, "10.2.0.0/16", None);
        let pcx = e.peer(&va, &vb, true);
        let p = plan(&e.w, TAG);
        let link = peering_link(&pcx);
        // Routers exist for the peering alone.
        assert_eq!(router(&p, &va).links[&link].mtu, Some(MTU_INTER_REGION));
        assert_eq!(router(&p, &vb).links[&link].mtu, Some(MTU_INTER_REGION));
    }

    #[test]
    fn no_transit_table_250_holds_only_own_interfaces() {
        let mut e = Env::new();
        let va = e.vpc("10.1.0.0/16");
        let vb = e.vpc("10.2.0.0/16");
        let vc = e.vpc("10.3.0.0/16");
        let sa = e.subnet(&va, "10.1.1.0/24");
        let sb = e.subnet(&vb, "10.2.1.0/24");
        let sc = e.subnet(&vc, "10.3.1.0/24");
        e.instance(&sa, "10.1.1.10");
        let b = e.instance(&sb, "10.2.1.10");
        e.instance(&sc, "10.3.1.10");
        let ab = e.peer(&va, &vb, true);
        let bc = e.peer(&vb, &vc, true);
        // Routes written for transit A -> B -> C.
        e.route_to_pcx(&va, "10.3.0.0/16", &ab);
        e.route_to_pcx(&vb, "10.3.0.0/16", &bc);
        e.route_to_pcx(&vb, "10.1.0.0/16", &ab);
        e.route_to_pcx(&vc, "10.1.0.0/16", &bc);
        let p = plan(&e.w, TAG);
        let rb = router(&p, &vb);
        let mut want = BTreeMap::new();
        want.insert(
            "10.2.1.10/32".to_string(),
            format!("dev {}", eni_link(&b.eni)),
        );
        want.insert("0.0.0.0/0".into(), "blackhole".into());
        want.insert("::/0".into(), "blackhole".into());
        assert_eq!(table(rb, TABLE_PEERING), want);
        // Both peering links of B look up 250, never the route table with the transit route.
        for pcx in [&ab, &bc] {
            let ts: Vec<u32> = rb
                .rules
                .iter()
                .filter(|r| r.iif == peering_link(pcx))
                .map(|r| r.table)
                .collect();
            assert_eq!(ts, vec![TABLE_PEERING, TABLE_PEERING]);
        }
        // And the guards.
        let fwd = chain(filter(rb), "forward");
        assert_eq!(
            fwd[0],
            "type filter hook forward priority filter; policy drop;"
        );
        assert_eq!(
            fwd[1],
            r#"iifname "p-*" oifname != "e-*" oifname != "x-*" counter drop"#
        );
        assert_eq!(fwd[2], r#"oifname "p-*" iifname != "e-*" counter drop"#);
        // Another host's router (`x-`, `placement`) may deliver to interfaces only.
        assert_eq!(fwd[3], r#"iifname "x-*" oifname != "e-*" counter drop"#);
    }

    #[test]
    fn overlapping_unpeered_vpcs_share_nothing() {
        let mut e = Env::new();
        let vx = e.vpc("10.5.0.0/16");
        let vy = e.vpc_as(B, EAST, "10.5.0.0/16", None);
        let sx = e.subnet(&vx, "10.5.1.0/24");
        let sy = e.subnet(&vy, "10.5.1.0/24");
        let x = e.instance(&sx, "10.5.1.10");
        let y = e.instance(&sy, "10.5.1.10");
        let p = plan(&e.w, TAG);
        let (rx, ry) = (router(&p, &vx), router(&p, &vy));
        assert_ne!(rx.name, ry.name);
        assert!(rx.links.keys().all(|l| !l.starts_with("p-")));
        assert!(
            rx.links.contains_key(&eni_link(&x.eni)) && !rx.links.contains_key(&eni_link(&y.eni))
        );
        assert!(
            ry.links.contains_key(&eni_link(&y.eni)) && !ry.links.contains_key(&eni_link(&x.eni))
        );
    }

    #[test]
    fn custom_route_table_association_and_more_specific_routes() {
        let mut e = Env::new();
        let v = e.vpc("10.0.0.0/16");
        let s1 = e.subnet(&v, "10.0.1.0/24");
        let s2 = e.subnet(&v, "10.0.2.0/24");
        let a = e.instance(&s1, "10.0.1.10");
        let fw = e.instance(&s1, "10.0.1.50");
        let b = e.instance(&s2, "10.0.2.10");
        let (o, r) = (v.meta.owner.clone(), v.meta.region.clone());
        let vid = v.meta.id.clone();
        let rt = e.run(&o, &r, |w, c| {
            vpc_model::ops::route::create_table(w, c, &vid, vec![])
        });
        let sid = s1.meta.id.clone();
        let rtid = rt.meta.id.clone();
        e.run(&o, &r, |w, c| {
            vpc_model::ops::route::associate(w, c, &rtid, Some(&sid), None)
        });
        // A middlebox route for subnet 2 in subnet 1's table.
        e.route_in(
            &v,
            &rt.meta.id,
            "10.0.2.0/24",
            RouteSpec {
                network_interface_id: Some(fw.eni.clone()),
                ..Default::default()
            },
        );
        let p = plan(&e.w, TAG);
        let rr = router(&p, &v);
        let t1 = table_of(rr, &a.eni);
        let t2 = table_of(rr, &b.eni);
        assert_ne!(t1, t2);
        assert_eq!(t1, table_id(&rt.meta.id));
        let tab1 = table(rr, t1);
        // The user route is more specific than the local route: subnet 2's
        // interfaces get no /32 in table 1, so the route decides.
        assert!(!tab1.contains_key("10.0.2.10/32"), "{tab1:?}");
        assert!(tab1.contains_key("10.0.2.0/24"));
        assert_eq!(tab1["10.0.1.50/32"], format!("dev {}", eni_link(&fw.eni)));
        // Subnet 2's table is the main one and routes 10.0.2.10 directly.
        assert_eq!(
            table(rr, t2)["10.0.2.10/32"],
            format!("dev {}", eni_link(&b.eni))
        );
    }

    #[test]
    fn nacl_chain_follows_rule_numbers() {
        let mut e = Env::new();
        let v = e.vpc("10.0.0.0/16");
        let s = e.subnet(&v, "10.0.1.0/24");
        e.instance(&s, "10.0.1.10");
        e.acl_entry(
            &s,
            300,
            "6",
            "allow",
            false,
            "0.0.0.0/0",
            Some((22, 22)),
            None,
        );
        e.acl_entry(
            &s,
            50,
            "1",
            "deny",
            false,
            "10.0.2.0/24",
            None,
            Some((8, -1)),
        );
        e.acl_entry(
            &s,
            60,
            "17",
            "deny",
            true,
            "10.9.0.0/16",
            Some((53, 54)),
            None,
        );
        e.acl_entry(&s, 70, "-1", "allow", false, "2600::/56", None, None);
        let p = plan(&e.w, TAG);
        let body = filter(router(&p, &v));
        let sid = &s.meta.id;
        // Every drop is logged for flow logs, naming the ACL and the rule.
        let acl = vpc_model::ops::acl::acl_for_subnet(&e.w, sid)
            .expect("the subnet's ACL")
            .meta
            .id
            .clone();
        let drop_in =
            |rule: &str| format!("log prefix \"nacl:in:{acl}:{rule}\" group 100 counter drop");
        let drop_out =
            |rule: &str| format!("log prefix \"nacl:out:{acl}:{rule}\" group 100 counter drop");
        assert_eq!(
            chain(body, &format!("nacl_in_{sid}")),
            vec![
                format!("iifname @sn_{sid} return"),
                format!(
                    "ip saddr 10.0.2.0/24 meta l4proto icmp icmp type 8 {}",
                    drop_in("50")
                ),
                "ip6 saddr 2600::/56 return".to_string(),
                "meta nfproto ipv4 return".to_string(),
                "meta nfproto ipv4 meta l4proto tcp th dport 22 return".to_string(),
                format!("meta nfproto ipv4 {}", drop_in("*")),
                drop_in("*"),
            ]
        );
        assert_eq!(
            chain(body, &format!("nacl_out_{sid}")),
            vec![
                format!("oifname @sn_{sid} return"),
                format!(
                    "ip daddr 10.9.0.0/16 meta l4proto udp th dport 53-54 {}",
                    drop_out("60")
                ),
                "meta nfproto ipv4 return".to_string(),
                format!("meta nfproto ipv4 {}", drop_out("*")),
                drop_out("*"),
            ]
        );
    }

    #[test]
    fn security_groups_are_shared_chains_with_member_sets() {
        let mut e = Env::new();
        let va = e.vpc("10.1.0.0/16");
        let vb = e.vpc_as(B, EAST, "10.2.0.0/16", None);
        let sa = e.subnet(&va, "10.1.1.0/24");
        let sb = e.subnet(&vb, "10.2.1.0/24");
        let a1 = e.instance(&sa, "10.1.1.10");
        let a2 = e.instance(&sa, "10.1.1.11");
        let b = e.instance(&sb, "10.2.1.10");
        let pcx = e.peer(&va, &vb, true);
        let (ga, gb) = (e.default_sg(&va), e.default_sg(&vb));
        // B's group admits TCP 80 from A's group across the peering.
        e.allow(&gb, false, "tcp", Some((80, 80)), &ga);
        e.allow(&gb, false, "icmp", Some((-1, -1)), "10.1.0.0/16");
        let p = plan(&e.w, TAG);
        let body = filter(router(&p, &vb));
        // The referenced peer group's set holds A's interfaces.
        let set = set_line(body, &format!("sgm_{ga}"));
        assert!(
            set.contains("10.1.1.10") && set.contains("10.1.1.11"),
            "{set}"
        );
        let inb = chain(body, &format!("sg_{gb}_in"));
        assert!(
            inb.contains(
                &format!("ip saddr @sgm_{ga} meta l4proto tcp th dport 80 accept").as_str()
            ),
            "{inb:?}"
        );
        assert!(inb.contains(
            &format!("ip6 saddr @sgm6_{ga} meta l4proto tcp th dport 80 accept").as_str()
        ));
        assert!(inb.contains(&"ip saddr 10.1.0.0/16 meta l4proto icmp accept"));
        // The default group's self reference.
        assert!(inb.contains(&format!("ip saddr @sgm_{gb} accept").as_str()));
        assert_eq!(
            chain(body, &format!("sgin_{}", b.eni)),
            vec![
                format!("jump sg_{gb}_in"),
                format!("log prefix \"sg:in:{gb}\" group 100 counter drop")
            ]
        );
        assert_eq!(
            chain(body, &format!("sg_{gb}_out")),
            vec!["meta nfproto ipv4 goto sg_ingress"]
        );
        // In A's router, one group chain serves both interfaces.
        let body_a = filter(router(&p, &va));
        assert_eq!(body_a.matches(&format!("chain sg_{ga}_in {{")).count(), 1);
        assert!(body_a.contains(&format!("\"{}\" : goto sgin_{}", eni_link(&a1.eni), a1.eni)));
        assert!(body_a.contains(&format!("\"{}\" : goto sgin_{}", eni_link(&a2.eni), a2.eni)));

        // Once the peering is gone the reference is stale and matches nothing.
        e.delete_peering(&pcx, &va);
        let p = plan(&e.w, TAG);
        let body = filter(router(&p, &vb));
        assert!(
            !body.contains(&format!("sgm_{ga}")),
            "stale reference dropped"
        );
    }

    #[test]
    fn source_dest_check_can_be_disabled() {
        let mut e = Env::new();
        let v = e.vpc("10.0.0.0/16");
        let s = e.subnet(&v, "10.0.1.0/24");
        let a = e.instance(&s, "10.0.1.10");
        let b = e.instance(&s, "10.0.1.11");
        e.w.update::<NetworkInterface>(&b.eni, |x| x.source_dest_check = false);
        let p = plan(&e.w, TAG);
        let body = filter(router(&p, &v));
        let sdc = set_line(body, "sdc_if");
        assert!(
            sdc.contains(&eni_link(&a.eni)) && !sdc.contains(&eni_link(&b.eni)),
            "{sdc}"
        );
        assert!(
            set_line(body, "eni_addr4").contains(&format!("\"{}\" . 10.0.1.10", eni_link(&a.eni)))
        );
    }

    #[test]
    fn egress_only_gateway_lets_ipv6_out_and_drops_new_connections_in() {
        let mut e = Env::new();
        let v = e.vpc_as(A, EAST, "10.0.0.0/16", Some("2600:1f18:1::/56"));
        let s = e.subnet(&v, "10.0.1.0/24");
        let a = e.instance(&s, "10.0.1.10");
        let (o, r) = (v.meta.owner.clone(), v.meta.region.clone());
        let vid = v.meta.id.clone();
        let g = e.run(&o, &r, |w, c| ops::eigw::create(w, c, &vid, vec![]));
        e.route(
            &v,
            "::/0",
            RouteSpec {
                egress_only_internet_gateway_id: Some(g.meta.id.clone()),
                ..Default::default()
            },
        );
        let p = plan(&e.w, TAG);
        let rt = router(&p, &v);
        let gl = igw_link(&g.meta.id);
        assert!(rt.links.contains_key(&gl), "the internet link exists");
        assert_eq!(
            table(rt, table_of(rt, &a.eni))["::/0"],
            format!("via fe80::2 dev {gl}")
        );
        let inet = table(&p.namespaces[&inet_ns(TAG)], TABLE_MAIN);
        assert!(
            inet.contains_key("2600:1f18:1::/56"),
            "replies come back: {inet:?}"
        );
        let drop_new = r#"iifname "g-*" ct state new counter drop"#;
        assert!(filter(rt).contains(drop_new));
        // With an internet gateway as well, the internet may connect.
        e.igw(&v);
        let p = plan(&e.w, TAG);
        assert!(!filter(router(&p, &v)).contains(drop_new));
    }

    #[test]
    fn internet_gateway_and_public_ips() {
        let mut e = Env::new();
        let v = e.vpc("10.0.0.0/16");
        let s = e.subnet(&v, "10.0.1.0/24");
        let a = e.instance(&s, "10.0.1.10");
        let b = e.instance(&s, "10.0.1.11");
        e.set_public_ip(&a.eni, Some("203.0.113.5"));
        let igw = e.igw(&v);
        let p = plan(&e.w, TAG);
        let r = router(&p, &v);
        let gl = igw_link(&igw);
        assert_eq!(
            r.links[&gl].create,
            Some(LinkCreate::Veth {
                peer_ns: inet_ns(TAG),
                peer_name: inet_link(&v.meta.id)
            })
        );
        assert_eq!(
            table(r, table_of(r, &a.eni))["0.0.0.0/0"],
            format!("via fe80::2 dev {gl}")
        );
        assert!(r.rules.contains(&RulePlan {
            v6: false,
            iif: gl.clone(),
            table: TABLE_IGW
        }));
        let nat = &r.nft.iter().find(|t| t.name == "vpcd_nat").unwrap().body;
        assert!(
            nat.contains("elements = { 203.0.113.5 : 10.0.1.10 }"),
            "{nat}"
        );
        assert!(
            nat.contains("elements = { 10.0.1.10 : 203.0.113.5 }"),
            "{nat}"
        );
        let pubs = set_line(filter(r), "pub_src");
        assert!(
            pubs.contains("10.0.1.10") && !pubs.contains("10.0.1.11"),
            "{pubs}"
        );
        assert!(r.tracked.contains(&"203.0.113.5".parse().unwrap()));
        let _ = b;
        // The internet namespace routes the public IP back to this VPC.
        let inet = &p.namespaces[&inet_ns(TAG)];
        assert_eq!(inet.role, NsRole::Inet);
        assert_eq!(
            table(inet, TABLE_MAIN)["203.0.113.5/32"],
            format!("via fe80::1 dev {}", inet_link(&v.meta.id))
        );
        assert!(inet.addrs.contains(&AddrPlan {
            dev: "lo".into(),
            addr: "198.51.100.10/32".parse().unwrap(),
            noprefixroute: false
        }));
        // An associated Elastic IP wins over the auto-assigned address.
        e.w.put(vpc_model::Address {
            meta: vpc_model::Meta {
                id: "eipalloc-1".into(),
                owner: A.into(),
                region: EAST.into(),
                tags: vec![],
                created: Default::default(),
            },
            public_ip: "198.18.0.9".parse().unwrap(),
            association_id: Some("eipassoc-1".into()),
            eni_id: Some(a.eni.clone()),
            private_ip: Some("10.0.1.10".parse().unwrap()),
        });
        let p = plan(&e.w, TAG);
        let inet = &p.namespaces[&inet_ns(TAG)];
        let t = table(inet, TABLE_MAIN);
        assert!(
            t.contains_key("198.18.0.9/32") && !t.contains_key("203.0.113.5/32"),
            "{t:?}"
        );
    }

    #[test]
    fn nat_gateway_namespace() {
        let mut e = Env::new();
        let v = e.vpc("10.0.0.0/16");
        let s = e.subnet(&v, "10.0.9.0/24");
        let meta = |id: &str| vpc_model::Meta {
            id: id.into(),
            owner: A.into(),
            region: EAST.into(),
            tags: vec![],
            created: Default::default(),
        };
        e.w.put(NetworkInterface {
            meta: meta("eni-0000000000000aaaa"),
            vpc_id: v.meta.id.clone(),
            subnet_id: s.meta.id.clone(),
            az: "az-a".into(),
            description: String::new(),
            private_ips: vec![vpc_model::PrivateIp {
                ip: "10.0.9.5".parse().unwrap(),
                primary: true,
            }],
            ipv6: vec![],
            groups: vec![],
            source_dest_check: false,
            mac: String::new(),
            attachment: None,
            public_ip: None,
            interface_type: "nat_gateway".into(),
            requester_managed: true,
        });
        e.w.put(NatGateway {
            meta: meta("nat-0000000000000bbbb"),
            vpc_id: v.meta.id.clone(),
            subnet_id: s.meta.id.clone(),
            eni_id: "eni-0000000000000aaaa".into(),
            connectivity: "private".into(),
            allocation_id: None,
            state: vpc_model::NatState::Available,
            state_since: Default::default(),
            transition_due: None,
        });
        let p = plan(&e.w, TAG);
        let n = &p.namespaces[&nat_ns(TAG, "nat-0000000000000bbbb")];
        assert!(n.addrs.contains(&AddrPlan {
            dev: "eth0".into(),
            addr: "10.0.9.5/24".parse().unwrap(),
            noprefixroute: false
        }));
        assert_eq!(table(n, TABLE_MAIN)["0.0.0.0/0"], "via 10.0.9.1 dev eth0");
        assert!(n.nft[0].body.contains("masquerade"));
        let r = router(&p, &v);
        let link = nat_link("nat-0000000000000bbbb");
        assert!(r.links[&link].proxy_arp);
        assert_eq!(table(r, TABLE_IGW)["10.0.9.5/32"], format!("dev {link}"));
        assert!(!table(r, TABLE_PEERING).contains_key("10.0.9.5/32"));
        // A NAT gateway has no security groups: no sgin chain for it.
        assert!(!filter(r).contains("sgin_eni-0000000000000aaaa"));
    }

    #[test]
    fn model_launched_instances_nat_gateway_and_elastic_ips() {
        let mut e = Env::new();
        let v = e.vpc("10.0.0.0/16");
        let public = e.subnet(&v, "10.0.1.0/24");
        let private = e.subnet(&v, "10.0.2.0/24");
        e.igw(&v);
        let web = e.launch(&public, "10.0.1.10", true);
        let nat = e.nat_gateway(&public);
        let rt = e.own_table(&private);
        e.route_in(
            &v,
            &rt,
            "0.0.0.0/0",
            RouteSpec {
                nat_gateway_id: Some(nat.clone()),
                ..Default::default()
            },
        );
        let app = e.launch(&private, "10.0.2.10", false);
        let p = plan(&e.w, TAG);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        let r = router(&p, &v);
        let g = e.w.get::<NatGateway>(&nat).unwrap();
        let nat_eni = e.w.get::<NetworkInterface>(&g.eni_id).unwrap();
        let nat_ip = nat_eni.primary_ip();
        let nat_pub = ops::eni::public_ip_of(&e.w, nat_eni).expect("NAT gateway's Elastic IP");
        let web_pub =
            e.w.get::<NetworkInterface>(&web.eni)
                .unwrap()
                .public_ip
                .expect("auto-assigned public IP");
        // The private subnet's default goes to the NAT gateway's interface.
        assert_eq!(
            table(r, table_of(r, &app.eni))["0.0.0.0/0"],
            format!("via {nat_ip} dev {} onlink", nat_link(&nat))
        );
        // The NAT gateway sits in the public subnet, which uses the main table.
        assert!(r.rules.contains(&RulePlan {
            v6: false,
            iif: nat_link(&nat),
            table: table_id(&e.main_rtb(&v)),
        }));
        // Both public addresses are mapped 1:1 at the internet gateway.
        let nat_tbl = &r.nft.iter().find(|t| t.name == "vpcd_nat").unwrap().body;
        assert!(
            nat_tbl.contains(&format!("{web_pub} : 10.0.1.10")),
            "{nat_tbl}"
        );
        assert!(
            nat_tbl.contains(&format!("{nat_pub} : {nat_ip}")),
            "{nat_tbl}"
        );
        let pubs = set_line(filter(r), "pub_src");
        assert!(
            !pubs.contains("10.0.2.10"),
            "the private instance has no public IP: {pubs}"
        );
        let inet = table(&p.namespaces[&inet_ns(TAG)], TABLE_MAIN);
        assert!(
            inet.contains_key(&format!("{web_pub}/32"))
                && inet.contains_key(&format!("{nat_pub}/32"))
        );
        assert!(p.namespaces.contains_key(&nat_ns(TAG, &nat)));
    }

    #[test]
    fn a_change_in_one_vpc_leaves_other_vpcs_plans_alone() {
        let mut e = Env::new();
        let va = e.vpc("10.1.0.0/16");
        let vb = e.vpc("10.2.0.0/16");
        let sa = e.subnet(&va, "10.1.1.0/24");
        let sb = e.subnet(&vb, "10.2.1.0/24");
        e.instance(&sa, "10.1.1.10");
        e.instance(&sb, "10.2.1.10");
        let before = plan(&e.w, TAG);
        let ga = e.default_sg(&va);
        e.allow(&ga, false, "tcp", Some((22, 22)), "0.0.0.0/0");
        let after = plan(&e.w, TAG);
        let changed: Vec<&String> = after
            .namespaces
            .iter()
            .filter(|(k, v)| before.namespaces.get(*k) != Some(*v))
            .map(|(k, _)| k)
            .collect();
        assert_eq!(changed, vec![&router_ns(TAG, &va.meta.id)]);
        // And only its ruleset changed.
        let (o, n) = (router(&before, &va), router(&after, &va));
        assert_eq!(
            (o.links == n.links, o.routes == n.routes, o.nft == n.nft),
            (true, true, false)
        );
    }

    #[test]
    fn plan_is_deterministic() {
        let mut e = Env::new();
        let v = e.vpc("10.0.0.0/16");
        let s = e.subnet(&v, "10.0.1.0/24");
        e.instance(&s, "10.0.1.10");
        e.igw(&v);
        assert_eq!(plan(&e.w, TAG), plan(&e.w, TAG));
    }

    #[test]
    fn the_resolver_addresses_are_on_the_routers_lo_only_with_dns_support() {
        let mut e = Env::new();
        let v = e.vpc("10.0.0.0/16");
        let s = e.subnet(&v, "10.0.1.0/24");
        let a = e.instance(&s, "10.0.1.10");
        let on_lo = |p: &Plan, addr: &str| {
            router(p, &v).addrs.contains(&AddrPlan {
                dev: "lo".into(),
                addr: addr.parse().unwrap(),
                noprefixroute: false,
            })
        };
        let p = plan(&e.w, TAG);
        assert!(on_lo(&p, "10.0.0.2/32"));
        assert!(on_lo(&p, "169.254.169.253/32"));
        assert!(on_lo(&p, "fd00:ec2::253/128"));
        // Nothing in the instance: it reaches the resolver through its default route.
        assert!(p.namespaces[&a.id]
            .addrs
            .iter()
            .all(|x| x.addr != "10.0.0.2/32".parse::<IpNet>().unwrap()));
        e.w.update::<Vpc>(&v.meta.id, |v| v.dns_support = false);
        let p = plan(&e.w, TAG);
        assert!(!on_lo(&p, "10.0.0.2/32"));
        assert!(!on_lo(&p, "169.254.169.253/32"));
        assert!(!on_lo(&p, "fd00:ec2::253/128"));
        assert!(on_lo(&p, "10.0.1.1/32"), "the subnet gateway stays");
    }

    mod realization {
        use super::super::*;
        use super::TAG;
        use crate::affected::tests::{apply, start, step_g};
        use proptest::prelude::*;

        fn ids<'w, T: 'w>(
            items: impl IntoIterator<Item = &'w T>,
            id: impl Fn(&T) -> &str,
        ) -> BTreeSet<String> {
            items.into_iter().map(|x| id(x).to_string()).collect()
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
                ..ProptestConfig::default()
            })]

            /// The planner realizes exactly what the model's decision
            /// functions say is realized (the functions the analyzer uses):
            /// interfaces up, NAT gateways, peering links. Only a planner
            /// refusal it warns about (an unsafe ID, a colliding link name)
            /// may leave something out.
            #[test]
            fn the_plan_realizes_what_the_model_decides(
                seed in any::<u8>(),
                steps in prop::collection::vec(step_g(), 0..24),
            ) {
                let mut e = start(seed);
                for s in &steps {
                    apply(&mut e, *s);
                }
                let w = &e.w;
                let facts = Facts::gather(w, TAG, None);
                let planned_up = ids(facts.enis.iter().filter(|x| x.up).map(|x| x.eni), |x: &NetworkInterface| &x.meta.id);
                let model_up = ids(
                    w.iter::<NetworkInterface>().filter(|x| ops::eni::is_instance_interface_up(w, x)),
                    |x: &NetworkInterface| &x.meta.id,
                );
                let planned_nats = ids(facts.nats.iter().map(|x| x.nat), |x: &NatGateway| &x.meta.id);
                let model_nats = ids(
                    w.iter::<NatGateway>().filter(|g| ops::nat::is_realized(w, g)),
                    |x: &NatGateway| &x.meta.id,
                );
                let planned_links = ids(facts.peerings.iter().copied(), |p: &Peering| &p.id);
                let model_links = ids(
                    w.iter::<Peering>().filter(|p| ops::peering::is_realized(w, p)),
                    |p: &Peering| &p.id,
                );
                if facts.warnings.is_empty() {
                    prop_assert_eq!(planned_up, model_up);
                    prop_assert_eq!(planned_nats, model_nats);
                    prop_assert_eq!(planned_links, model_links);
                } else {
                    prop_assert!(planned_up.is_subset(&model_up), "{:?}", facts.warnings);
                    prop_assert!(planned_nats.is_subset(&model_nats), "{:?}", facts.warnings);
                    prop_assert!(planned_links.is_subset(&model_links), "{:?}", facts.warnings);
                }
            }
        }
    }
}
