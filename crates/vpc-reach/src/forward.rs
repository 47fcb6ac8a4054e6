//! The request: from the source through every VPC router, the internet
//! and NAT gateways to the destination, as the kernel forwards it.

use crate::analysis::*;
use crate::diagnosis::{sdc_blocker, Blocker};
use crate::index::*;
use crate::walk::*;
use std::net::IpAddr;
use vpc_model::ops;
use vpc_model::types::*;

impl<'a> Walk<'a> {
    // ---- the request -----------------------------------------------------------

    pub(crate) fn forward(&mut self, r: &Resolved<'a>) -> Step<ForwardPath<'a>> {
        let mut crossings: Vec<Crossing<'a>> = Vec::new();
        let mut packet = Packet {
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
                        Blocker::new(
                            "BAD_STATE",
                            component(&inst.meta.id, "instance"),
                            format!(
                                "The source instance {} is {}: its interfaces pass no traffic.",
                                inst.meta.id,
                                inst.state.as_str()
                            ),
                        )
                        .in_vpc(eni.vpc_id.clone())
                        .in_subnet(eni.subnet_id.clone())
                        .diagnosis(
                            DiagnosisKind::InstanceNotRunning,
                            format!(
                                "the source instance {} is {}",
                                inst.meta.id,
                                inst.state.as_str()
                            ),
                            format!("start {}", inst.meta.id),
                        )
                    })?;
                }
                if self.inst_has(inst, packet.dst) {
                    // The source holds the destination's address itself (their
                    // VPCs overlap): the packet never leaves it, so another
                    // instance asked for by ID is not reached.
                    if let TargetKind::Eni(y) = r.target.kind {
                        let other = self
                            .instance_of(y)
                            .filter(|i| !r.target.by_address && i.meta.id != inst.meta.id);
                        if let Some(want) = other {
                            let (sv, dv) = (eni.vpc_id.clone(), want.vpc_id.clone());
                            let (dst, me, them) =
                                (packet.dst, inst.meta.id.clone(), want.meta.id.clone());
                            self.block(|_| {
                                Blocker::new(
                                            "DISCONNECTED_VPCS",
                                            component(&sv, "vpc"),
                                            format!("{dst} is {me}'s own address: the packet never leaves {me} for {them} in {dv}."),
                                        ).in_vpc(sv.clone()).diagnosis(
                                        DiagnosisKind::DisconnectedVpcs,
                                        format!("{me} in {sv} holds {dst} itself; {sv} and {dv} overlap and are not connected"),
                                        format!("re-address {dv} (or {sv}) so that their CIDRs do not overlap, then peer them"),
                                    )
                            })?;
                            return Err(Stop);
                        }
                    }
                    return Ok(ForwardPath {
                        crossings,
                        arrive: Arrival::Local,
                    });
                }
                let out = match egress {
                    Some(e) => e,
                    None => {
                        let dst = packet.dst;
                        self.block(|_| {
                            Blocker::new(
                                    "NO_ROUTE_TO_DESTINATION",
                                    component(&inst.meta.id, "instance"),
                                    format!(
                                        "{} has no route to {dst}: its primary interface has no {} address.",
                                        inst.meta.id,
                                        if dst.is_ipv6() { "IPv6" } else { "IPv4" }
                                    ),
                                ).diagnosis(
                                    DiagnosisKind::MissingRoute,
                                    format!("{} has no default route for {dst}", inst.meta.id),
                                    format!("assign an IPv6 address to the primary interface of {}", inst.meta.id),
                                )
                        })?;
                        eni
                    }
                };
                if out.meta.id != eni.meta.id && self.explain {
                    let s = self.w.get::<Subnet>(&out.subnet_id);
                    let c = component(&out.meta.id, "network-interface");
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
                    if let IpAddr::V4(d) = packet.dst {
                        if self
                            .index
                            .router_addrs
                            .contains(&(RecordId::new(&vpc.meta.id), d))
                        {
                            return self.arrive_router(vpc, packet);
                        }
                    }
                    let (oif, p) = self.router_fwd(vpc, iif, packet, &r.target, &mut crossings)?;
                    packet = p;
                    match oif {
                        Port::Eni(e) => return self.arrive_eni(e, packet, r, crossings),
                        // The service behind a gateway endpoint answers.
                        Port::Vpce(_) => {
                            return Ok(ForwardPath {
                                crossings,
                                arrive: Arrival::Endpoint,
                            })
                        }
                        Port::Nat(n) => {
                            if self.nat_ip(n) == Some(packet.dst) {
                                self.eni_hops_nat(false, n);
                                self.only_ping(&n.meta.id, "natgateway", "NAT gateway")?;
                                return Ok(ForwardPath {
                                    crossings,
                                    arrive: Arrival::Nat(n),
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
                                    Blocker::new(
                                        "BAD_STATE",
                                        component(&p.id, "vpc-peering-connection"),
                                        format!("The peer VPC {id} of {} no longer exists.", p.id),
                                    )
                                })?;
                                return Err(Stop);
                            };
                            Node::Router {
                                vpc: peer,
                                iif: Port::Pcx(p),
                            }
                        }
                        Port::Igw(_) | Port::Eigw(_) => Node::Inet,
                    }
                }
                Node::Inet => {
                    if is_internet_host(packet.dst) {
                        self.internet_hop(false);
                        return Ok(ForwardPath {
                            crossings,
                            arrive: Arrival::Internet,
                        });
                    }
                    match self.inet_route(packet.dst) {
                        Some((vpc, igw)) => {
                            if self.explain {
                                self.hop(
                                    false,
                                    component(igw, "internet-gateway"),
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
                            self.inet_failed(r, packet)?;
                            return Err(Stop);
                        }
                    }
                }
                Node::NatNs(n) => {
                    let Some(IpAddr::V4(ip)) = self.nat_ip(n).filter(|_| !self.v6) else {
                        return Err(Stop);
                    };
                    packet.src = IpAddr::V4(ip);
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
            Blocker::new(
                "NO_PATH",
                component(&r.dst.to_string(), "vpc"),
                format!("The path to {} loops.", r.dst),
            )
        })?;
        Err(Stop)
    }

    /// A gateway's own address answers pings but accepts no connection.
    pub(crate) fn only_ping(&mut self, id: &str, kind: &'static str, what: &str) -> Step<()> {
        if self.proto == Protocol::Icmp {
            return Ok(());
        }
        let p = self.what(false);
        self.block(|_| {
            Blocker::new(
                "NO_POSSIBLE_DESTINATION",
                component(id, kind),
                format!("The {what} {id} answers pings but accepts no {p}."),
            )
        })?;
        Err(Stop)
    }

    /// The packet is for the VPC router's own address (a subnet's `.1`): the
    /// router answers it itself, without its `forward` chain (no ACL, no
    /// security group), and its reply is routed by table 250 (`iif lo`), so
    /// it reaches only the VPC's own running interfaces.
    pub(crate) fn arrive_router(&mut self, vpc: &'a Vpc, packet: Packet) -> Step<ForwardPath<'a>> {
        let vid = vpc.meta.id.as_str();
        if self.explain {
            self.hop(false, component(vid, "vpc"), None, Some(vid), None);
        }
        self.only_ping(vid, "vpc", "VPC router of")?;
        if self.routed(vid, packet.src, false).is_none() {
            let src = packet.src;
            self.block(|_| {
                Blocker::new(
                            "NO_ROUTE_TO_DESTINATION",
                            component(vid, "vpc"),
                            format!("The router of {vid} answers at {} only to its own VPC's running interfaces, not to {src}.", packet.dst),
                        ).in_vpc(vid.to_string())
            })?;
            return Err(Stop);
        }
        if self.explain {
            self.hop(true, component(vid, "vpc"), None, Some(vid), None);
        }
        // The reply leaves the router by its own output path: no filtering either.
        Ok(ForwardPath {
            crossings: Vec::new(),
            arrive: Arrival::Router,
        })
    }

    pub(crate) fn eni_hops_nat(&mut self, ret: bool, n: &'a NatGateway) {
        if self.explain {
            let s = self.w.get::<Subnet>(&n.subnet_id);
            self.hop(
                ret,
                component(&n.meta.id, "natgateway"),
                s,
                Some(&n.vpc_id),
                None,
            );
        }
    }

    /// The packet reached interface `e`'s instance: is it the destination?
    pub(crate) fn arrive_eni(
        &mut self,
        e: &'a NetworkInterface,
        packet: Packet,
        r: &Resolved<'a>,
        crossings: Vec<Crossing<'a>>,
    ) -> Step<ForwardPath<'a>> {
        let Some(inst) = self.instance_of(e) else {
            return Err(Stop);
        };
        if !self.inst_has(inst, packet.dst) {
            // A route sent it to a middlebox that does not own the address.
            self.block(|_| {
                Blocker::new(
                            "ENI_ADDRESS_RESTRICTION",
                            component(&e.meta.id, "network-interface"),
                            format!(
                                "A route sends the packet for {} to {} ({}), which does not hold that address; vpcd instances do not forward packets.",
                                packet.dst, e.meta.id, inst.meta.id
                            ),
                        ).in_vpc(e.vpc_id.clone()).in_subnet(e.subnet_id.clone()).diagnosis(
                        DiagnosisKind::MissingRoute,
                        format!("the route to {} points at {}, which does not forward", packet.dst, e.meta.id),
                        format!("remove the route to {} via {} or make it more specific", packet.dst, e.meta.id),
                    )
            })?;
            return Err(Stop);
        }
        self.eni_hops(false, e, false);
        let wanted = match r.target.kind {
            TargetKind::Eni(y) if !r.target.by_address => self.instance_of(y),
            _ => None,
        };
        if let Some(want) = wanted {
            if want.meta.id != inst.meta.id {
                let (sv, dv) = (e.vpc_id.clone(), want.vpc_id.clone());
                let dst = packet.dst;
                let vpc = self.w.get::<Vpc>(&sv);
                self.block(|walk| {
                    let block = vpc.map(|v| walk.block_of(v, dst));
                    Blocker::new(
                                "DISCONNECTED_VPCS",
                                component(&sv, "vpc"),
                                format!(
                                    "{dst} is {}'s own address ({}): the packet is delivered to {} in {sv}, not to {} in {dv}.",
                                    sv, e.meta.id, inst.meta.id, want.meta.id
                                ),
                            ).in_vpc(sv.clone()).diagnosis(
                            DiagnosisKind::DisconnectedVpcs,
                            format!(
                                "{dst} lies in {sv}'s own CIDR{}, so the local route keeps it inside {sv}; {sv} and {dv} overlap and are not connected",
                                block.map(|b| format!(" {b}")).unwrap_or_default()
                            ),
                            format!("re-address {dv} (or {sv}) so that their CIDRs do not overlap, then peer them"),
                        )
                })?;
                return Err(Stop);
            }
        }
        Ok(ForwardPath {
            crossings,
            arrive: Arrival::Eni(e),
        })
    }

    /// One router crossing of the request: routing, then the `forward` chain.
    pub(crate) fn router_fwd(
        &mut self,
        vpc: &'a Vpc,
        iif: Port<'a>,
        mut packet: Packet,
        tgt: &Target<'a>,
        crossings: &mut Vec<Crossing<'a>>,
    ) -> Step<(Port<'a>, Packet)> {
        // prerouting: 1:1 DNAT of a public address arriving from the internet gateway.
        if let (Port::Igw(_), IpAddr::V4(d)) = (iif, packet.dst) {
            if let Some((v, p)) = self.index.pub2priv.get(&d) {
                if v.as_str() == vpc.meta.id {
                    packet.dst = IpAddr::V4(*p);
                }
            }
        }
        let in_subnet = self.subnet_of(iif);
        let (table, look) = self.route(vpc, iif, packet.dst);
        // The route-table hop: the table, and the route that matched (if any).
        let route_hop = table.map(|t| (t, hop_route(look)));
        let oif = match look {
            RouteLookup::Hit(_, p) => p,
            other => self.route_failed(vpc, iif, in_subnet, table, other, packet, tgt)?,
        };
        let out_subnet = self.subnet_of(oif);

        // 1. Guards.
        if let (Port::Nat(n), Port::Pcx(p)) = (iif, oif) {
            self.block(|_| {
                Blocker::new(
                        "UNSUPPORTED_COMPONENT",
                        component(&n.meta.id, "natgateway"),
                        format!("Traffic forwarded by NAT gateway {} cannot use peering connection {}.", n.meta.id, p.id),
                    ).diagnosis(
                        DiagnosisKind::EdgeToEdge,
                        format!("edge-to-edge: traffic through NAT gateway {} cannot use peering connection {}", n.meta.id, p.id),
                        format!("route the peer's CIDR via {} in the source subnet's route table instead of through the NAT gateway", p.id),
                    )
            })?;
            return Err(Stop);
        }
        if let (Port::Nat(_) | Port::Pcx(_) | Port::Igw(_), Port::Vpce(e)) = (iif, oif) {
            let from = iif.component();
            let eid = e.meta.id.clone();
            self.block(|_| {
                Blocker::new(
                    "UNSUPPORTED_COMPONENT",
                    component(&eid, "vpc-endpoint"),
                    format!("Traffic from {} cannot use gateway VPC endpoint {eid}: it serves only the VPC's own instances.", from.id),
                )
                .diagnosis(
                    DiagnosisKind::EdgeToEdge,
                    format!("edge-to-edge: traffic arriving through {} cannot use gateway endpoint {eid}", from.id),
                    format!("send the traffic from an instance in {}", vpc.meta.id),
                )
            })?;
            return Err(Stop);
        }
        if let (Port::Igw(g), IpAddr::V4(s)) = (oif, packet.src) {
            if self.public_of(&vpc.meta.id, s).is_none() {
                let skip =
                    matches!(iif, Port::Eni(e) if !ops::eni::is_instance_interface_up(self.w, e));
                if !skip {
                    self.block(|walk| walk.no_public_ip(iif, g, vpc))?;
                } else {
                    self.blocked = true;
                }
            }
        }
        // 2. Source/destination check.
        if let Port::Eni(x) = iif {
            if x.source_dest_check && !eni_has(x, packet.src) {
                self.block(|_| sdc_blocker(x, packet.src, true))?;
            }
        }
        if let Port::Eni(y) = oif {
            if y.source_dest_check && !eni_has(y, packet.dst) {
                self.block(|_| sdc_blocker(y, packet.dst, false))?;
                return Err(Stop);
            }
        }
        // 3. Network ACLs, when the packet crosses a subnet boundary.
        let mut acl_out = None;
        let mut acl_in = None;
        if let Some(s1) = in_subnet {
            if out_subnet.map(|s| &s.meta.id) != Some(&s1.meta.id) {
                acl_out = self.nacl(s1, true, packet.dst, false)?;
            }
        }
        if let Some(s2) = out_subnet {
            if in_subnet.map(|s| &s.meta.id) != Some(&s2.meta.id) {
                acl_in = self.nacl(s2, false, packet.src, false)?;
            }
        }
        // 5. Security groups of a new connection.
        let mut sg_out = None;
        let mut sg_in = None;
        if let Port::Eni(x) = iif {
            sg_out = self.sg(x, true, packet.dst)?;
        }
        if let Port::Eni(y) = oif {
            sg_in = self.sg(y, false, packet.src)?;
        }
        let seen = packet;
        // postrouting: SNAT to the public address at the internet gateway.
        if let (Port::Igw(_), IpAddr::V4(s)) = (oif, packet.src) {
            if let Some(p) = self.public_of(&vpc.meta.id, s) {
                packet.src = IpAddr::V4(p);
            }
        }
        crossings.push(Crossing {
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
                self.hop(
                    false,
                    component(&t.meta.id, "route-table"),
                    in_subnet,
                    vid,
                    rule,
                );
            }
            match oif {
                Port::Pcx(_) | Port::Igw(_) | Port::Eigw(_) | Port::Vpce(_) => {
                    self.hop(false, oif.component(), None, vid, None)
                }
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
        Ok((oif, packet))
    }
}
