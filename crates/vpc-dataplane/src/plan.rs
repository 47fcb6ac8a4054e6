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
use nftables::schema::{self, NfCmd, NfListObject, NfObject};
use nftables::types::NfFamily;
use std::borrow::Cow;
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

/// One nftables table: its family, name and what it holds (sets, maps,
/// chains and rules in definition order, as objects of libnftables' JSON
/// schema).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftTable {
    pub family: NfFamily,
    pub name: &'static str,
    pub objects: Vec<NfListObject<'static>>,
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
    /// The commands that replace the table atomically: create it if
    /// missing, delete it, define it again (one transaction with the others
    /// in a document).
    pub fn commands(&self) -> Vec<NfObject<'static>> {
        let table = || {
            NfListObject::Table(schema::Table {
                family: self.family,
                name: Cow::Borrowed(self.name),
                handle: None,
            })
        };
        let mut out = vec![
            NfObject::CmdObject(NfCmd::Add(table())),
            NfObject::CmdObject(NfCmd::Delete(table())),
            NfObject::CmdObject(NfCmd::Add(table())),
        ];
        out.extend(
            self.objects
                .iter()
                .map(|o| NfObject::CmdObject(NfCmd::Add(o.clone()))),
        );
        out
    }

    /// The family as nft names it (`inet`, `ip`).
    pub fn family_name(&self) -> &'static str {
        family_name(self.family)
    }
}

/// A table family as nft names it.
pub(crate) fn family_name(f: NfFamily) -> &'static str {
    match f {
        NfFamily::IP => "ip",
        NfFamily::IP6 => "ip6",
        NfFamily::INet => "inet",
        NfFamily::ARP => "arp",
        NfFamily::Bridge => "bridge",
        NfFamily::NetDev => "netdev",
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
    /// The subnet's IPv4 block (a NAT gateway lives in one that has one).
    pub cidr: Ipv4Net,
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
            let (Some(ip), Some(cidr)) = (eni.primary_ip(), subnet.cidr) else {
                self.warn(format!("NAT gateway {}: no IPv4 address", n.meta.id));
                continue;
            };
            let link = nat_link(&n.meta.id);
            if !seen.insert((n.vpc_id.clone(), link.clone())) {
                self.warn(format!("NAT gateway {}: link name {link} taken", n.meta.id));
                continue;
            }
            self.routers.insert(n.vpc_id.as_str());
            self.nats.push(RealNat {
                nat: n,
                subnet,
                ip,
                cidr,
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
    // (IPv6-only subnets have none: IPv6 instances route via fe80::1.)
    for c in f
        .subnets_by_vpc
        .get(vpc_id)
        .into_iter()
        .flatten()
        .filter_map(|s| s.cidr)
    {
        ns.addr(
            "lo",
            IpNet::V4(Ipv4Net::new(gateway(c), 32).expect("valid")),
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
        // An interface in an IPv6-only subnet has no IPv4 address or route.
        let v4_block = e.subnet.cidr;
        for (a, c) in e.v4().filter_map(|a| Some((a, v4_block?))) {
            ns.addr(
                &e.dev,
                IpNet::V4(Ipv4Net::new(a, c.prefix_len()).expect("valid prefix")),
                false,
            );
        }
        for a in e.v6() {
            ns.addr(&e.dev, IpNet::V6(Ipv6Net::new(a, 64).expect("valid")), true);
        }
        // Routes through a down link cannot exist; the kernel drops them.
        if up && e.device_index == 0 {
            if let Some(c) = v4_block {
                ns.routes.insert(
                    (TABLE_MAIN, default_v4()),
                    RouteKind::Via {
                        gw: IpAddr::V4(gateway(c)),
                        dev: e.dev.clone(),
                        onlink: false,
                    },
                );
            }
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
        IpNet::V4(Ipv4Net::new(n.ip, n.cidr.prefix_len()).expect("valid prefix")),
        false,
    );
    ns.routes.insert(
        (TABLE_MAIN, default_v4()),
        RouteKind::Via {
            gw: IpAddr::V4(gateway(n.cidr)),
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
mod tests;
