//! One walk of a packet through the world: its state ([`Walk`]), the
//! kernel's vocabulary (router links, crossings, route lookups), how a hop
//! or a blocker is recorded, and the lookups every step makes.

use crate::analysis::*;
use crate::diagnosis::Blocker;
use crate::index::*;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr};
use vpc_model::fault::Fault;
use vpc_model::ops;
use vpc_model::ops::route::NextHop;
use vpc_model::types::*;
use vpc_model::world::World;

/// The most routers one path may cross before it counts as a loop.
pub(crate) const MAX_HOPS: usize = 16;

pub(crate) fn is_internet_host(a: IpAddr) -> bool {
    a == IpAddr::V4(INTERNET_HOST_V4) || a == IpAddr::V6(INTERNET_HOST_V6)
}

pub(crate) fn eni_has(e: &NetworkInterface, a: IpAddr) -> bool {
    match a {
        IpAddr::V4(a) => e.private_ips.iter().any(|p| p.ip == a),
        IpAddr::V6(a) => e.ipv6.contains(&a),
    }
}

/// The interface's address of a family: its primary IPv4, or its first IPv6.
pub(crate) fn eni_addr(e: &NetworkInterface, v6: bool) -> Option<IpAddr> {
    if v6 {
        e.ipv6.first().map(|a| IpAddr::V6(*a))
    } else {
        e.primary_ip().map(IpAddr::V4)
    }
}

pub(crate) fn device(e: &NetworkInterface) -> u32 {
    e.attachment.as_ref().map_or(0, |a| a.device_index)
}

// ---- Evaluation ----------------------------------------------------------------

pub(crate) fn run(
    index: &Index,
    w: &World,
    q: &Query,
    o: Options,
    explain: bool,
) -> Result<Analysis, Fault> {
    if q.protocol != Protocol::Icmp && q.port.is_none() {
        return Err(Fault::missing("DestinationPort"));
    }
    let mut walk = Walk {
        index,
        w,
        explain,
        v6: q.ipv6,
        proto: q.protocol,
        protocol_number: 0,
        dest_port: if q.protocol == Protocol::Icmp {
            None
        } else {
            q.port
        },
        reply_ports: o.source_port.map_or(EPHEMERAL_PORTS, |p| (p, p)),
        out: Analysis::default(),
        blocked: false,
    };
    let r = walk.resolve(q)?;
    walk.out.source_ip = Some(r.src);
    walk.out.destination_ip = Some(r.dst);
    if let Ok(fwd) = walk.forward(&r) {
        let _ = walk.reply(&r, &fwd);
    }
    walk.out.reachable = !walk.blocked;
    Ok(walk.out)
}

/// Ends the walk: in verdict-only mode at the first blocker, otherwise where
/// nothing sensible follows.
#[derive(Debug)]
pub(crate) struct Stop;

pub(crate) type Step<T> = Result<T, Stop>;

/// A link of a VPC router: where a packet comes in or goes out.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Port<'a> {
    Eni(&'a NetworkInterface),
    Nat(&'a NatGateway),
    Pcx(&'a Peering),
    Igw(&'a str),
    /// An egress-only internet gateway: IPv6 out, replies back.
    Eigw(&'a str),
    /// A gateway VPC endpoint: the service behind it is where the packet ends.
    Vpce(&'a VpcEndpoint),
}

impl<'a> Port<'a> {
    pub(crate) fn id(&self) -> &'a str {
        match self {
            Port::Eni(e) => &e.meta.id,
            Port::Nat(n) => &n.meta.id,
            Port::Pcx(p) => &p.id,
            Port::Igw(g) | Port::Eigw(g) => g,
            Port::Vpce(e) => &e.meta.id,
        }
    }

    pub(crate) fn same(&self, o: &Port<'_>) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(o) && self.id() == o.id()
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Port::Eni(_) => "network-interface",
            Port::Nat(_) => "natgateway",
            Port::Pcx(_) => "vpc-peering-connection",
            Port::Igw(_) => "internet-gateway",
            Port::Eigw(_) => "egress-only-internet-gateway",
            Port::Vpce(_) => "vpc-endpoint",
        }
    }

    pub(crate) fn component(&self) -> Component {
        component(self.id(), self.kind())
    }
}

/// One crossing of a VPC router, with the addresses its `forward` chain saw
/// (after DNAT, before SNAT).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Crossing<'a> {
    pub(crate) vpc: &'a Vpc,
    pub(crate) iif: Port<'a>,
    pub(crate) oif: Port<'a>,
    pub(crate) src: IpAddr,
    pub(crate) dst: IpAddr,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Packet {
    pub(crate) src: IpAddr,
    pub(crate) dst: IpAddr,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Node<'a> {
    Router { vpc: &'a Vpc, iif: Port<'a> },
    Inet,
    NatNs(&'a NatGateway),
}

/// What the destination resolved to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TargetKind<'a> {
    Eni(&'a NetworkInterface),
    Nat(&'a NatGateway),
    Internet,
    Unknown,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    pub(crate) kind: TargetKind<'a>,
    /// Addressed by a public address (or the internet host): reached through internet gateways.
    pub(crate) public: bool,
    /// Given as a bare address: wherever the address lands is the destination.
    pub(crate) by_address: bool,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Source<'a> {
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
pub(crate) struct Resolved<'a> {
    pub(crate) source: Source<'a>,
    pub(crate) target: Target<'a>,
    pub(crate) src: IpAddr,
    pub(crate) dst: IpAddr,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Arrival<'a> {
    /// Delivered inside the source instance itself.
    Local,
    Eni(&'a NetworkInterface),
    Nat(&'a NatGateway),
    Internet,
    /// Answered by a VPC router itself.
    Router,
    /// Reached the service behind a gateway VPC endpoint.
    Endpoint,
}

#[derive(Debug)]
pub(crate) struct ForwardPath<'a> {
    pub(crate) crossings: Vec<Crossing<'a>>,
    pub(crate) arrive: Arrival<'a>,
}

/// A route-table lookup's outcome in the kernel's terms.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RouteLookup<'a> {
    Hit(Option<&'a Route>, Port<'a>),
    NoRoute,
    /// The `local` route, but no running interface holds the address.
    NoInterface(Option<&'a Route>),
    /// A route whose target cannot carry traffic (state `blackhole`).
    Inactive(&'a Route),
}

pub(crate) fn component(id: &str, kind: &'static str) -> Component {
    Component {
        id: id.to_string(),
        kind,
    }
}

pub(crate) fn diagnosis(kind: DiagnosisKind, message: String, fix: String) -> Option<Diagnosis> {
    Some(Diagnosis { kind, message, fix })
}

pub(crate) fn target_str(t: &RouteTarget) -> String {
    t.id().unwrap_or("local").to_string()
}

pub(crate) fn route_rule(rt: &RouteTable, r: &Route, state: &'static str) -> Rule {
    Rule::Route {
        route_table_id: rt.meta.id.clone(),
        destination: r.dest,
        target: target_str(&r.target),
        state,
    }
}

pub(crate) fn sg_rule(g: &SecurityGroup, r: &SgRule, direction: Direction) -> Rule {
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

pub(crate) fn acl_rule(acl_id: &str, egress: bool, n: u32, e: Option<&AclEntry>, v6: bool) -> Rule {
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
pub(crate) fn hop_route(look: RouteLookup<'_>) -> Option<(&Route, &'static str)> {
    match look {
        RouteLookup::Hit(r, _) => r.map(|r| (r, "active")),
        RouteLookup::NoInterface(r) => r.map(|r| (r, "active")),
        RouteLookup::Inactive(r) => Some((r, "blackhole")),
        RouteLookup::NoRoute => None,
    }
}

pub(crate) fn host_net(a: IpAddr) -> IpNet {
    IpNet::from(a)
}

/// The evaluation of one query.
pub(crate) struct Walk<'a> {
    pub(crate) index: &'a Index,
    pub(crate) w: &'a World,
    /// Build the path and every explanation (else stop at the first blocker).
    pub(crate) explain: bool,
    pub(crate) v6: bool,
    pub(crate) proto: Protocol,
    pub(crate) protocol_number: u8,
    /// The request's destination port (TCP/UDP).
    pub(crate) dest_port: Option<u16>,
    /// The reply's destination ports (the client's ephemeral port).
    pub(crate) reply_ports: (u16, u16),
    pub(crate) out: Analysis,
    pub(crate) blocked: bool,
}

impl<'a> Walk<'a> {
    // ---- recording -------------------------------------------------------------

    /// Notes a blocker. In verdict-only mode this ends the walk.
    pub(crate) fn block(&mut self, f: impl FnOnce(&Self) -> Blocker) -> Step<()> {
        self.blocked = true;
        if !self.explain {
            return Err(Stop);
        }
        let Blocker {
            explanation,
            diagnosis,
        } = f(self);
        self.out.explanations.push(explanation);
        if let Some(d) = diagnosis {
            if !self.out.diagnoses.contains(&d) {
                self.out.diagnoses.push(d);
            }
        }
        Ok(())
    }

    pub(crate) fn hop(
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

    pub(crate) fn eni_hops(&mut self, ret: bool, e: &'a NetworkInterface, instance_first: bool) {
        if !self.explain {
            return;
        }
        let s = self.w.get::<Subnet>(&e.subnet_id);
        let inst = e.attachment.as_ref().map(|a| a.instance_id.clone());
        let nat = self.nat_of(e).map(|n| n.meta.id.clone());
        let owner = match (inst, nat) {
            (Some(i), _) => Some(component(&i, "instance")),
            (None, Some(n)) => Some(component(&n, "natgateway")),
            _ => None,
        };
        let ehop = component(&e.meta.id, "network-interface");
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

    pub(crate) fn internet_hop(&mut self, ret: bool) {
        if self.explain {
            let host = if self.v6 {
                IpAddr::V6(INTERNET_HOST_V6)
            } else {
                IpAddr::V4(INTERNET_HOST_V4)
            };
            self.hop(
                ret,
                component(&host.to_string(), "internet"),
                None,
                None,
                None,
            );
        }
    }

    // ---- words -----------------------------------------------------------------

    pub(crate) fn proto_name(&self) -> &'static str {
        match (self.proto, self.v6) {
            (Protocol::Icmp, true) => "ICMPv6",
            (Protocol::Icmp, false) => "ICMP",
            (Protocol::Tcp, _) => "TCP",
            (Protocol::Udp, _) => "UDP",
        }
    }

    /// "TCP port 22", "ICMP echo request", or for the reply "TCP ports 32768-60999", "ICMP echo reply".
    pub(crate) fn what(&self, ret: bool) -> String {
        let p = self.proto_name();
        match (self.proto, ret) {
            (Protocol::Icmp, false) => format!("{p} echo request"),
            (Protocol::Icmp, true) => format!("{p} echo reply"),
            (_, false) => format!("{p} port {}", self.dest_port.unwrap_or(0)),
            (_, true) => {
                let (a, b) = self.reply_ports;
                if a == b {
                    format!("{p} port {a}")
                } else {
                    format!("{p} ports {a}-{b}")
                }
            }
        }
    }

    pub(crate) fn icmp(&self, ret: bool) -> Option<(u8, u8)> {
        match (self.proto, self.v6, ret) {
            (Protocol::Icmp, false, false) => Some((8, 0)),
            (Protocol::Icmp, false, true) => Some((0, 0)),
            (Protocol::Icmp, true, false) => Some((128, 0)),
            (Protocol::Icmp, true, true) => Some((129, 0)),
            _ => None,
        }
    }

    // ---- lookups ---------------------------------------------------------------

    pub(crate) fn enis_of_instance(
        &self,
        id: &str,
    ) -> impl Iterator<Item = &'a NetworkInterface> + 'a {
        let w = self.w;
        Index::list(&self.index.enis_by_instance, id)
            .iter()
            .filter_map(move |e| w.get::<NetworkInterface>(e.as_str()))
    }

    pub(crate) fn enis_at(&self, a: IpAddr) -> impl Iterator<Item = &'a NetworkInterface> + 'a {
        let w = self.w;
        self.index
            .enis_by_ip
            .get(&a)
            .map_or(&[][..], SmallList::as_slice)
            .iter()
            .filter_map(move |e| w.get::<NetworkInterface>(e.as_str()))
    }

    pub(crate) fn instance_of(&self, e: &NetworkInterface) -> Option<&'a Instance> {
        e.attachment
            .as_ref()
            .and_then(|a| self.w.get::<Instance>(&a.instance_id))
    }

    pub(crate) fn nat_of(&self, e: &NetworkInterface) -> Option<&'a NatGateway> {
        if e.interface_type != "nat_gateway" {
            return None;
        }
        self.index
            .nat_by_eni
            .get(e.meta.id.as_str())
            .and_then(|n| self.w.get::<NatGateway>(n.as_str()))
    }

    pub(crate) fn nat_eni(&self, n: &NatGateway) -> Option<&'a NetworkInterface> {
        self.w.get::<NetworkInterface>(&n.eni_id)
    }

    pub(crate) fn nat_ip(&self, n: &NatGateway) -> Option<IpAddr> {
        self.nat_eni(n).and_then(|e| e.primary_ip()).map(IpAddr::V4)
    }

    /// Whether the instance's namespace owns the address (any of its interfaces).
    pub(crate) fn inst_has(&self, inst: &Instance, a: IpAddr) -> bool {
        self.enis_at(a).any(|e| {
            e.attachment
                .as_ref()
                .is_some_and(|x| x.instance_id == inst.meta.id)
        })
    }

    /// The interface an instance's own routing sends a packet to `dst` out
    /// of: a connected subnet (IPv4), else the default route through `eth0`
    /// (IPv6: only when `eth0` has an IPv6 address).
    pub(crate) fn inst_egress(&self, inst: &Instance, dst: IpAddr) -> Option<&'a NetworkInterface> {
        let w = self.w;
        let mut first = None;
        for e in self.enis_of_instance(&inst.meta.id) {
            if let IpAddr::V4(d) = dst {
                if w.get::<Subnet>(&e.subnet_id)
                    .is_some_and(|s| s.v4_contains(&d))
                {
                    return Some(e);
                }
            }
            if device(e) == 0 && first.is_none() {
                first = Some(e);
            }
        }
        // An IPv6-only interface has no IPv4 address and so no IPv4 route.
        first.filter(|e| eni_addr(e, dst.is_ipv6()).is_some())
    }

    pub(crate) fn subnet_of(&self, p: Port<'a>) -> Option<&'a Subnet> {
        match p {
            Port::Eni(e) => self.w.get::<Subnet>(&e.subnet_id),
            Port::Nat(n) => self.w.get::<Subnet>(&n.subnet_id),
            Port::Pcx(_) | Port::Igw(_) | Port::Eigw(_) | Port::Vpce(_) => None,
        }
    }

    /// The route table a subnet uses (`ops::route::table_for_subnet`, its
    /// association found in the index).
    pub(crate) fn table_of(&self, s: &Subnet) -> Option<&'a RouteTable> {
        let associated = self
            .index
            .rtb_by_subnet
            .get(s.meta.id.as_str())
            .and_then(|id| self.w.get::<RouteTable>(id.as_str()));
        ops::route::table_for_subnet_given(self.w, s, associated)
    }

    pub(crate) fn peerings_of(&self, vpc: &str) -> impl Iterator<Item = &'a Peering> + 'a {
        let w = self.w;
        Index::list(&self.index.peerings_by_vpc, vpc)
            .iter()
            .filter_map(move |p| w.get::<Peering>(p.as_str()))
    }

    /// The connection joining two VPCs that matters most: active, then
    /// provisioning, pending, initiating, then any ended one.
    pub(crate) fn peering_between(&self, a: &str, b: &str) -> Option<&'a Peering> {
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
    pub(crate) fn active_between(&self, a: &str, b: &str) -> Option<&'a Peering> {
        self.peerings_of(a)
            .find(|p| p.state == PcxState::Active && p.joins(a, b))
    }

    /// A peering whose link the data plane builds (`ops::peering::is_realized`).
    pub(crate) fn carries(&self, p: &Peering) -> bool {
        ops::peering::is_realized(self.w, p)
    }

    /// A VPC `b` that `a` and `c` are both peered with (active first).
    pub(crate) fn middle(&self, a: &str, c: &str) -> Option<(&'a Peering, &'a Peering)> {
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

    pub(crate) fn igw_of(&self, vpc: &str) -> Option<&'a str> {
        self.index.igw_by_vpc.get(vpc).map(RecordId::as_str)
    }

    pub(crate) fn public_of(&self, vpc: &str, a: Ipv4Addr) -> Option<Ipv4Addr> {
        self.index.priv2pub.get(&(RecordId::new(vpc), a)).copied()
    }

    pub(crate) fn is_member(&self, group: &str, a: IpAddr) -> bool {
        self.enis_at(a).any(|e| e.groups.iter().any(|g| g == group))
    }

    /// `ops::sg::is_stale`, with the index.
    pub(crate) fn rule_stale(&self, own_vpc: &str, r: &SgRule) -> bool {
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
    pub(crate) fn routed(&self, vpc: &str, a: IpAddr, nat: bool) -> Option<Port<'a>> {
        for e in self.enis_at(a) {
            if e.vpc_id != vpc {
                continue;
            }
            if ops::eni::is_instance_interface_up(self.w, e) {
                return Some(Port::Eni(e));
            }
            if nat {
                if let Some(n) = self.nat_of(e) {
                    if ops::nat::is_realized(self.w, n) && e.primary_ip().map(IpAddr::V4) == Some(a)
                    {
                        return Some(Port::Nat(n));
                    }
                }
            }
        }
        None
    }

    /// A lookup in a VPC route table, as the kernel table compiled from it answers.
    pub(crate) fn lookup(&self, rt: &'a RouteTable, dst: IpAddr) -> RouteLookup<'a> {
        let w = self.w;
        let Some(r) = ops::route::lookup(rt, dst) else {
            return RouteLookup::NoRoute;
        };
        let vpc = rt.vpc_id.as_str();
        if r.target == RouteTarget::Local {
            return match self.routed(vpc, dst, true) {
                Some(p) => RouteLookup::Hit(Some(r), p),
                None => RouteLookup::NoInterface(Some(r)),
            };
        }
        let port = ops::route::next_hop(w, rt, r, dst.is_ipv6()).map(|hop| match hop {
            NextHop::InternetGateway(g) => Port::Igw(g),
            NextHop::EgressOnlyGateway(g) => Port::Eigw(g),
            NextHop::Peering(p) => Port::Pcx(p),
            NextHop::NatGateway(n) => Port::Nat(n),
            NextHop::Interface(e) => Port::Eni(e),
            NextHop::GatewayEndpoint(e) => Port::Vpce(e),
        });
        match port {
            Some(p) => RouteLookup::Hit(Some(r), p),
            None => RouteLookup::Inactive(r),
        }
    }

    /// The lookup a router makes for a packet that came in by `iif`.
    pub(crate) fn route(
        &self,
        vpc: &'a Vpc,
        iif: Port<'a>,
        dst: IpAddr,
    ) -> (Option<&'a RouteTable>, RouteLookup<'a>) {
        match iif {
            Port::Eni(_) | Port::Nat(_) => match self.subnet_of(iif).and_then(|s| self.table_of(s))
            {
                Some(rt) => (Some(rt), self.lookup(rt, dst)),
                None => (None, RouteLookup::NoRoute),
            },
            // Table 250: this VPC's running interfaces only (a gateway
            // endpoint's service answers only the VPC that routes to it).
            Port::Pcx(_) | Port::Vpce(_) => (
                None,
                self.routed(&vpc.meta.id, dst, false)
                    .map_or(RouteLookup::NoInterface(None), |p| {
                        RouteLookup::Hit(None, p)
                    }),
            ),
            // Table 251: running interfaces and NAT gateways.
            Port::Igw(_) | Port::Eigw(_) => (
                None,
                self.routed(&vpc.meta.id, dst, true)
                    .map_or(RouteLookup::NoInterface(None), |p| {
                        RouteLookup::Hit(None, p)
                    }),
            ),
        }
    }

    /// Where the internet routes an address: a public IP or an IPv6 block of a VPC with an internet gateway.
    pub(crate) fn inet_route(&self, dst: IpAddr) -> Option<(&'a Vpc, &'a str)> {
        let vpc = match dst {
            IpAddr::V4(d) => self.index.pub2priv.get(&d).map(|(v, _)| v.as_str())?,
            IpAddr::V6(d) => self
                .index
                .inet_v6
                .iter()
                .filter(|(n, _)| n.contains(&d))
                .max_by_key(|(n, _)| n.prefix_len())
                .map(|(_, v)| v.as_str())?,
        };
        Some((self.w.get::<Vpc>(vpc)?, self.igw_of(vpc)?))
    }

    /// The VPC block holding an address, else the address itself.
    pub(crate) fn block_of(&self, vpc: &Vpc, a: IpAddr) -> IpNet {
        vpc.all_blocks()
            .into_iter()
            .find(|b| b.contains(&a))
            .unwrap_or_else(|| host_net(a))
    }

    pub(crate) fn default_net(&self) -> IpNet {
        if self.v6 {
            ops::defaults::all_v6()
        } else {
            ops::defaults::all_v4()
        }
    }
}
