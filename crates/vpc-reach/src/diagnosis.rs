//! Why a walk failed: the explanations of blockers and vpcd's named
//! diagnoses with their fixes.

use crate::analysis::*;
use crate::index::*;
use crate::walk::*;
use ipnet::IpNet;
use std::net::IpAddr;
use vpc_model::ops;
use vpc_model::types::*;

/// A blocker as [`Walk::block`] records it: the explanation (what stopped
/// the packet, where), and vpcd's named diagnosis with its fix when it has
/// one. Built lazily inside `block`, so that a verdict-only walk formats
/// nothing.
#[derive(Debug)]
pub(crate) struct Blocker {
    pub(crate) explanation: Explanation,
    pub(crate) diagnosis: Option<Diagnosis>,
}

impl Blocker {
    /// AWS's explanation `code` at `component`, with vpcd's sentence.
    pub(crate) fn new(
        code: &'static str,
        component: Component,
        detail: impl Into<String>,
    ) -> Blocker {
        Blocker {
            explanation: Explanation {
                code,
                component,
                direction: None,
                rule: None,
                vpc_id: None,
                subnet_id: None,
                detail: detail.into(),
            },
            diagnosis: None,
        }
    }

    pub(crate) fn in_vpc(mut self, vpc_id: impl Into<String>) -> Blocker {
        self.explanation.vpc_id = Some(vpc_id.into());
        self
    }

    pub(crate) fn in_subnet(mut self, subnet_id: impl Into<String>) -> Blocker {
        self.explanation.subnet_id = Some(subnet_id.into());
        self
    }

    pub(crate) fn in_subnet_opt(mut self, subnet_id: Option<String>) -> Blocker {
        self.explanation.subnet_id = subnet_id;
        self
    }

    /// The rule (route, ACL entry) that refused the packet.
    pub(crate) fn rule(mut self, rule: Rule) -> Blocker {
        self.explanation.rule = Some(rule);
        self
    }

    pub(crate) fn rule_opt(mut self, rule: Option<Rule>) -> Blocker {
        self.explanation.rule = rule;
        self
    }

    pub(crate) fn direction(mut self, direction: Direction) -> Blocker {
        self.explanation.direction = Some(direction);
        self
    }

    /// vpcd's diagnosis: what is wrong, in a sentence, and the fix.
    pub(crate) fn diagnosis(self, kind: DiagnosisKind, message: String, fix: String) -> Blocker {
        self.with_diagnosis(diagnosis(kind, message, fix))
    }

    pub(crate) fn with_diagnosis(mut self, diagnosis: Option<Diagnosis>) -> Blocker {
        self.diagnosis = diagnosis;
        self
    }
}

impl<'a> Walk<'a> {
    /// The internet has no route to the address.
    pub(crate) fn inet_failed(&mut self, r: &Resolved<'a>, packet: Packet) -> Step<()> {
        let dst = packet.dst;
        let src_vpc = match r.source {
            Source::Eni { eni, .. } => Some(eni.vpc_id.clone()),
            Source::Internet => None,
        };
        let tvpc = self.target_vpc(&r.target).map(str::to_string);
        let host = component(&dst.to_string(), "internet");
        match r.target.kind {
            TargetKind::Eni(e) if src_vpc.is_none() => {
                let has_igw = self.igw_of(&e.vpc_id).is_some();
                let up = ops::eni::is_instance_interface_up(self.w, e);
                self.block(|_| {
                    if !has_igw {
                        Blocker::new(
                                "NO_ROUTE_TO_DESTINATION",
                                component(&e.vpc_id, "vpc"),
                                format!("{} has no internet gateway, so the internet cannot reach {}.", e.vpc_id, e.meta.id),
                            ).diagnosis(
                                DiagnosisKind::MissingRoute,
                                format!("{} has no internet gateway", e.vpc_id),
                                format!("attach an internet gateway to {} and route 0.0.0.0/0 (and ::/0) to it", e.vpc_id),
                            )
                    } else if !up {
                        Blocker::new(
                                "BAD_STATE",
                                component(&e.meta.id, "network-interface"),
                                format!("{} is not attached to a running instance.", e.meta.id),
                            ).diagnosis(
                                DiagnosisKind::InstanceNotRunning,
                                format!("the destination {} is not running", e.meta.id),
                                "start the instance".into(),
                            )
                    } else {
                        Blocker::new(
                                "IGW_PRIVATE_IP_ASSOCIATION_FOR_INGRESS",
                                component(&e.meta.id, "network-interface"),
                                format!("{} has no public IPv4 address: the internet cannot reach {dst}.", e.meta.id),
                            ).diagnosis(
                                DiagnosisKind::NoPublicIp,
                                format!("{} has no public IP address", e.meta.id),
                                format!("associate an Elastic IP address with {}", e.meta.id),
                            )
                    }
                })
            }
            TargetKind::Eni(_) | TargetKind::Nat(_) if !r.target.public => {
                let (sv, tv) = (src_vpc.unwrap_or_default(), tvpc.unwrap_or_default());
                self.block(|_| {
                    Blocker::new(
                            "DISCONNECTED_VPCS",
                            component(&tv, "vpc"),
                            format!("{sv} reaches {dst} only through its internet gateway, and the internet does not route private addresses."),
                        ).diagnosis(
                            DiagnosisKind::DisconnectedVpcs,
                            format!("{sv} and {tv} are not connected: no peering connection joins them"),
                            format!("create a peering connection between {sv} and {tv} with routes on both sides, or use the destination's public IP"),
                        )
                })
            }
            TargetKind::Eni(e) if !ops::eni::is_instance_interface_up(self.w, e) => {
                self.block(|_| {
                    Blocker::new(
                        "BAD_STATE",
                        component(&e.meta.id, "network-interface"),
                        format!(
                        "{} is not attached to a running instance, so its public IP is not routed.",
                        e.meta.id
                    ),
                    )
                    .diagnosis(
                        DiagnosisKind::InstanceNotRunning,
                        format!("the destination {} is not running", e.meta.id),
                        "start the instance".into(),
                    )
                })
            }
            TargetKind::Eni(_) | TargetKind::Nat(_) => {
                let tv = tvpc.unwrap_or_default();
                self.block(|_| {
                    Blocker::new("NO_ROUTE_TO_DESTINATION", component(&tv, "vpc"), format!("{tv} has no internet gateway, so its public address {dst} is unreachable.")).diagnosis(DiagnosisKind::MissingRoute, format!("{tv} has no internet gateway"), format!("attach an internet gateway to {tv}"))
                })
            }
            _ => self.block(|_| {
                Blocker::new(
                    "NO_ROUTE_TO_DESTINATION",
                    host,
                    format!("Nothing on the internet answers at {dst}."),
                )
            }),
        }
    }

    pub(crate) fn no_public_ip(&self, iif: Port<'a>, igw: &str, vpc: &Vpc) -> Blocker {
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
        Blocker::new(
            "IGW_PUBLIC_IP_ASSOCIATION_FOR_EGRESS",
            component(igw, "internet-gateway"),
            format!("{who}, so internet gateway {igw} does not forward its traffic."),
        )
        .in_vpc(vpc.meta.id.clone())
        .diagnosis(DiagnosisKind::NoPublicIp, who, fix)
    }

    /// Route lookup failed in a router: explain, then pick where the packet was meant to go.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn route_failed(
        &mut self,
        vpc: &'a Vpc,
        iif: Port<'a>,
        subnet: Option<&'a Subnet>,
        table: Option<&'a RouteTable>,
        look: RouteLookup<'a>,
        packet: Packet,
        tgt: &Target<'a>,
    ) -> Step<Port<'a>> {
        let dst = packet.dst;
        let vid = vpc.meta.id.as_str();
        match iif {
            Port::Pcx(p) => return self.peer_failed(vpc, p, packet, tgt),
            Port::Igw(g) => {
                self.block(|_| {
                    Blocker::new(
                        "NO_ROUTE_TO_DESTINATION",
                        component(g, "internet-gateway"),
                        format!("No running interface of {vid} has the address {dst}."),
                    )
                })?;
                return Err(Stop);
            }
            _ => {}
        }
        let Some(rt) = table else {
            self.block(|_| {
                Blocker::new(
                    "NO_ROUTE_TO_DESTINATION",
                    component(subnet.map_or(vid, |s| s.meta.id.as_str()), "subnet"),
                    "The subnet has no route table.",
                )
            })?;
            return Err(Stop);
        };
        let route = match look {
            RouteLookup::Inactive(r) | RouteLookup::NoInterface(Some(r)) => Some(r),
            _ => None,
        };
        let intended = self.intended(vpc, route, tgt);
        let rt_comp = component(&rt.meta.id, "route-table");
        let at = |b: Blocker| {
            b.in_vpc(vid)
                .in_subnet_opt(subnet.map(|s| s.meta.id.clone()))
        };
        let used_by = subnet
            .map(|s| format!(" (used by {})", s.meta.id))
            .unwrap_or_default();
        match look {
            RouteLookup::NoRoute | RouteLookup::Hit(..) => {
                self.block(|walk| {
                    let blocker = at(Blocker::new(
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
                            let block = walk
                                .w
                                .get::<Vpc>(&other)
                                .map_or(host_net(dst), |v| walk.block_of(v, dst));
                            diagnosis(
                                DiagnosisKind::MissingRoute,
                                format!(
                                    "route table {}{used_by} has no route to {dst}",
                                    rt.meta.id
                                ),
                                format!("add a route to {block} via {} in {}", p.id, rt.meta.id),
                            )
                        }
                        Some(Port::Igw(g)) => diagnosis(
                            DiagnosisKind::MissingRoute,
                            format!("route table {}{used_by} has no route to {dst}", rt.meta.id),
                            format!(
                                "add a route to {} via {g} in {}",
                                walk.default_net(),
                                rt.meta.id
                            ),
                        ),
                        _ => walk.unconnected(vpc, rt, tgt, dst),
                    };
                    blocker.with_diagnosis(d)
                })?;
            }
            RouteLookup::NoInterface(_) => {
                // The local route, but no running interface has the address.
                let owner = self.enis_at(dst).find(|e| e.vpc_id == vid);
                let elsewhere = self.target_vpc(tgt).filter(|v| *v != vid);
                match (owner, elsewhere) {
                    (Some(e), _) => {
                        let inst = self.instance_of(e);
                        let nat = self.nat_of(e);
                        self.block(|_| match (inst, nat) {
                            (Some(i), _) => at(Blocker::new(
                                "BAD_STATE",
                                component(&i.meta.id, "instance"),
                                format!(
                                    "The destination instance {} is {}.",
                                    i.meta.id,
                                    i.state.as_str()
                                ),
                            ))
                            .diagnosis(
                                DiagnosisKind::InstanceNotRunning,
                                format!(
                                    "the destination instance {} is {}",
                                    i.meta.id,
                                    i.state.as_str()
                                ),
                                format!("start {}", i.meta.id),
                            ),
                            (None, Some(n)) => at(Blocker::new(
                                "BAD_STATE",
                                component(&n.meta.id, "natgateway"),
                                format!("NAT gateway {} is {}.", n.meta.id, n.state.as_str()),
                            )),
                            _ => at(Blocker::new(
                                "BAD_STATE",
                                component(&e.meta.id, "network-interface"),
                                format!("{} is not attached to an instance.", e.meta.id),
                            ))
                            .diagnosis(
                                DiagnosisKind::InstanceNotRunning,
                                format!("{} is not attached to an instance", e.meta.id),
                                format!("attach {} to a running instance", e.meta.id),
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
                        self.block(|walk| {
                            let block = walk.block_of(vpc, dst);
                            at(Blocker::new("DISCONNECTED_VPCS", component(vid, "vpc"), format!("{dst} lies in {vid}'s own CIDR {block}: the local route keeps it inside {vid}, where no interface has it."))).diagnosis(
                                    DiagnosisKind::DisconnectedVpcs,
                                    format!("{dst} lies in {vid}'s own CIDR {block}, so the local route keeps it inside {vid}; {vid} and {tv} overlap and are not connected"),
                                    format!("re-address {tv} (or {vid}) so that their CIDRs do not overlap, then peer them"),
                                )
                        })?;
                        return Err(Stop);
                    }
                    (None, None) => {
                        self.block(|_| {
                            at(Blocker::new(
                                "NO_ROUTE_TO_DESTINATION",
                                component(vid, "vpc"),
                                format!("No interface in {vid} has the address {dst}."),
                            ))
                        })?;
                        return Err(Stop);
                    }
                }
            }
            RouteLookup::Inactive(r) => {
                self.block(|walk| {
                    at(Blocker::new(
                        "BAD_STATE_ROUTE",
                        rt_comp.clone(),
                        format!("The route to {} in {} targets {}, which cannot carry traffic (blackhole).", r.dest, rt.meta.id, target_str(&r.target)),
                    ))
                    .rule(route_rule(rt, r, "blackhole"))
                    .with_diagnosis(walk.inactive_diag(rt, r))
                })?;
            }
        }
        // Carrying on over a peering that is not active is a blocker of its own
        // (unless the failed route already says so).
        if let Some(Port::Pcx(p)) = intended {
            let named = matches!(look, RouteLookup::Inactive(r) if matches!(&r.target, RouteTarget::Peering(x) if *x == p.id));
            if !self.carries(p) && !named {
                self.block(|walk| {
                    Blocker::new(
                        "BAD_STATE",
                        component(&p.id, "vpc-peering-connection"),
                        format!(
                            "Peering connection {} is {}: it carries no traffic.",
                            p.id,
                            p.state.as_str()
                        ),
                    )
                    .in_vpc(vid.to_string())
                    .with_diagnosis(walk.pcx_diag(p, None))
                })?;
            }
        }
        intended.ok_or(Stop)
    }

    /// Why a route's target is a blackhole, and the fix.
    pub(crate) fn inactive_diag(&self, rt: &RouteTable, r: &Route) -> Option<Diagnosis> {
        let w = self.w;
        match &r.target {
            RouteTarget::Peering(p) => match w.get::<Peering>(p) {
                Some(x) => self.pcx_diag(x, Some(r.dest)),
                None => diagnosis(
                    DiagnosisKind::PeeringNotActive,
                    format!("peering {p} of {} is deleted", rt.vpc_id),
                    format!(
                        "create a new peering connection and point the route to {} at it",
                        r.dest
                    ),
                ),
            },
            RouteTarget::Gateway(g) => diagnosis(
                DiagnosisKind::MissingRoute,
                format!("internet gateway {g} is not attached to {}", rt.vpc_id),
                format!("attach {g} to {}", rt.vpc_id),
            ),
            RouteTarget::NatGateway(n) => match w.get::<NatGateway>(n) {
                Some(g) if self.v6 || r.dest.addr().is_ipv6() => diagnosis(
                    DiagnosisKind::MissingRoute,
                    format!("NAT gateway {n} forwards IPv4 only"),
                    format!("route {} to an internet gateway instead", r.dest),
                )
                .filter(|_| g.state == NatState::Available),
                Some(g) => diagnosis(
                    DiagnosisKind::MissingRoute,
                    format!("NAT gateway {n} is {}", g.state.as_str()),
                    format!("point the route to {} at an available NAT gateway", r.dest),
                ),
                None => diagnosis(
                    DiagnosisKind::MissingRoute,
                    format!("NAT gateway {n} does not exist"),
                    format!("point the route to {} at an available NAT gateway", r.dest),
                ),
            },
            RouteTarget::NetworkInterface(x) | RouteTarget::Instance(x) => diagnosis(
                DiagnosisKind::InstanceNotRunning,
                format!("the route to {} targets {x}, which is not running", r.dest),
                format!("start the instance behind {x}"),
            ),
            RouteTarget::EgressOnlyGateway(g) => diagnosis(
                DiagnosisKind::MissingRoute,
                format!(
                    "egress-only internet gateway {g} is not in {} (it carries IPv6 only)",
                    rt.vpc_id
                ),
                format!(
                    "create an egress-only internet gateway in {} and route {} to it",
                    rt.vpc_id, r.dest
                ),
            ),
            RouteTarget::VpcEndpoint(e) => diagnosis(
                DiagnosisKind::MissingRoute,
                format!("VPC endpoint {e} is not available in {}", rt.vpc_id),
                format!(
                    "add {} to a gateway endpoint of {} with ModifyVpcEndpoint",
                    rt.meta.id, rt.vpc_id
                ),
            ),
            RouteTarget::Local => None,
        }
    }

    /// A peering connection that is not active, and how to make it so.
    pub(crate) fn pcx_diag(&self, x: &Peering, dest: Option<IpNet>) -> Option<Diagnosis> {
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
        diagnosis(
            DiagnosisKind::PeeringNotActive,
            format!("peering {p} between {a} and {b} is {}", x.state.as_str()),
            fix,
        )
    }

    /// No route and no way on: why the two ends are not connected.
    pub(crate) fn unconnected(
        &self,
        vpc: &Vpc,
        rt: &RouteTable,
        tgt: &Target<'a>,
        dst: IpAddr,
    ) -> Option<Diagnosis> {
        let a = vpc.meta.id.as_str();
        match (tgt.kind, self.target_vpc(tgt)) {
            _ if tgt.public && self.igw_of(a).is_none() => diagnosis(
                DiagnosisKind::MissingRoute,
                format!("{a} has no internet gateway, so nothing routes {dst} out of it"),
                format!("attach an internet gateway to {a} and route {} to it in {}", self.default_net(), rt.meta.id),
            ),
            (_, Some(c)) if c != a => match self.middle(a, c) {
                Some((p, q)) => {
                    let b = p.other_vpc(a).map(|s| s.vpc_id.clone()).unwrap_or_default();
                    let _ = q;
                    diagnosis(
                        DiagnosisKind::TransitivePeering,
                        format!("transitive peering: {a} is peered with {b} and {b} with {c}, but {a} is not peered with {c}"),
                        format!("create a peering connection between {a} and {c} and route each VPC's CIDR to it"),
                    )
                }
                None => diagnosis(
                    DiagnosisKind::DisconnectedVpcs,
                    format!("{a} and {c} are not connected: no peering connection joins them"),
                    format!("create a peering connection between {a} and {c} and add routes on both sides"),
                ),
            },
            _ => diagnosis(
                DiagnosisKind::MissingRoute,
                format!("route table {} has no route to {dst}", rt.meta.id),
                format!("add a route to {dst} in {}", rt.meta.id),
            ),
        }
    }

    /// Where a packet whose route failed was meant to go: the peering the
    /// failed route names, else towards the destination (its interface in
    /// this VPC, the peering to its VPC, the internet gateway).
    pub(crate) fn intended(
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
            TargetKind::Eni(e) => (Port::Eni(e), e.vpc_id.as_str()),
            TargetKind::Nat(n) => (Port::Nat(n), n.vpc_id.as_str()),
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
    pub(crate) fn peer_failed(
        &mut self,
        vpc: &'a Vpc,
        p: &'a Peering,
        packet: Packet,
        tgt: &Target<'a>,
    ) -> Step<Port<'a>> {
        let w = self.w;
        let b = vpc.meta.id.as_str();
        let a = p.other_vpc(b).map(|s| s.vpc_id.clone()).unwrap_or_default();
        let dst = packet.dst;
        if let Some(e) = self
            .enis_at(dst)
            .find(|e| e.vpc_id == b && e.interface_type != "nat_gateway")
        {
            let inst = self.instance_of(e);
            self.block(|_| {
                let (id, state) = inst.map_or((e.meta.id.clone(), "detached"), |i| {
                    (i.meta.id.clone(), i.state.as_str())
                });
                Blocker::new(
                    "BAD_STATE",
                    component(&id, "instance"),
                    format!("The destination {id} is {state}."),
                )
                .in_vpc(b.to_string())
                .in_subnet(e.subnet_id.clone())
                .diagnosis(
                    DiagnosisKind::InstanceNotRunning,
                    format!("the destination {id} is {state}"),
                    format!("start {id}"),
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
        for rt in Index::list(&self.index.rtbs_by_vpc, b)
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
        if third.is_none()
            && gw.is_none()
            && (tgt.public || matches!(tgt.kind, TargetKind::Internet))
        {
            gw = self.igw_of(b).map(Port::Igw);
        }
        let pcx_comp = component(&p.id, "vpc-peering-connection");
        let base = format!("{} carries traffic only to and from addresses of {b} and {a}; {dst} is not an address of a running interface in {b}.", p.id);
        match (third, gw) {
            (Some(c), _) if self.peering_between(b, &c).is_some() => {
                self.block(|_| {
                    Blocker::new("PCX_REQUIRES_ADDRESS_IN_VPC_CIDR", pcx_comp.clone(), base.clone()).in_vpc(b.to_string()).diagnosis(
                            DiagnosisKind::TransitivePeering,
                            format!("transitive peering: {a} is peered with {b} and {b} with {c}, but {a} is not peered with {c}"),
                            format!("create a peering connection between {a} and {c} and route each VPC's CIDR to it"),
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
                    Blocker::new("PCX_REQUIRES_ADDRESS_IN_VPC_CIDR", pcx_comp.clone(), base.clone()).in_vpc(b.to_string()).diagnosis(
                            DiagnosisKind::EdgeToEdge,
                            format!("edge-to-edge: traffic from a peer cannot use {b}'s {what}"),
                            format!("give {a} its own internet access (an internet gateway or NAT gateway in {a}) and route {dst} to it"),
                        )
                })?;
                self.block(|_| {
                    Blocker::new(code, g.component(), format!("The source {} is not in {b}: {what} does not forward traffic that arrives over a peering.", packet.src)).in_vpc(b.to_string())
                })?;
            }
            _ => {
                self.block(|_| {
                    Blocker::new(
                        "PCX_REQUIRES_ADDRESS_IN_VPC_CIDR",
                        pcx_comp.clone(),
                        base.clone(),
                    )
                    .in_vpc(b.to_string())
                    .diagnosis(
                        DiagnosisKind::MissingRoute,
                        format!(
                            "the route in {a} sends {dst} over {}, but {dst} is not in {b}",
                            p.id
                        ),
                        format!("route {dst} to where it lives instead of {}", p.id),
                    )
                })?;
            }
        }
        Err(Stop)
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn return_route_failed(
        &mut self,
        t: &Crossing<'a>,
        table: Option<&'a RouteTable>,
        subnet: Option<&'a Subnet>,
        look: RouteLookup<'a>,
        want: Port<'a>,
        rdst: IpAddr,
        source: &Source<'a>,
    ) -> Step<()> {
        let Some(rt) = table else { return Ok(()) };
        let vid = t.vpc.meta.id.clone();
        let used_by = subnet
            .map(|s| format!(" (used by {})", s.meta.id))
            .unwrap_or_default();
        let at = |b: Blocker| {
            b.in_vpc(vid.clone())
                .in_subnet_opt(subnet.map(|s| s.meta.id.clone()))
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
        let rt_comp = component(&rt.meta.id, "route-table");
        let from = if matches!(want, Port::Igw(_)) {
            format!("{vid} to the internet")
        } else {
            vid.clone()
        };
        let msg = format!("the route back from {from} is missing: route table {}{used_by} has no route to {rdst} via {}", rt.meta.id, back.1);
        let fix = format!("add a route to {} via {} in {}", back.0, back.1, rt.meta.id);
        match look {
            RouteLookup::Inactive(r) => self.block(|walk| {
                let d = match &r.target {
                    RouteTarget::Peering(_) => walk.inactive_diag(rt, r),
                    _ => diagnosis(DiagnosisKind::MissingReturnRoute, msg.clone(), fix.clone()),
                };
                at(Blocker::new("BAD_STATE_ROUTE", rt_comp.clone(), format!("The reply's route to {} in {} targets {}, which cannot carry traffic (blackhole).", r.dest, rt.meta.id, target_str(&r.target)))).rule(route_rule(rt, r, "blackhole")).with_diagnosis(d)
            }),
            RouteLookup::Hit(rr, p) => self.block(|_| {
                at(Blocker::new(
                            "NO_ROUTE_TO_DESTINATION",
                            rt_comp.clone(),
                            format!("Route table {}{used_by} sends the reply to {rdst} to {}, not back by {}.", rt.meta.id, p.id(), back.1),
                        )).rule_opt(rr.map(|x| route_rule(rt, x, "active"))).diagnosis(
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
                    )
            }),
            RouteLookup::NoRoute | RouteLookup::NoInterface(_) => self.block(|_| {
                at(Blocker::new("NO_ROUTE_TO_DESTINATION", rt_comp.clone(), format!("Route table {}{used_by} has no route back to {rdst}.", rt.meta.id))).diagnosis(DiagnosisKind::MissingReturnRoute, msg.clone(), fix.clone())
            }),
        }
    }
}

pub(crate) fn sdc_blocker(e: &NetworkInterface, a: IpAddr, source: bool) -> Blocker {
    let (role, what) = if source {
        ("source", "sends")
    } else {
        ("destination", "receives")
    };
    Blocker::new(
                "ENI_SOURCE_DEST_CHECK_RESTRICTION",
                component(&e.meta.id, "network-interface"),
                format!("{} {what} only packets whose {role} is its own address, not {a} (source/destination check).", e.meta.id),
            ).in_vpc(e.vpc_id.clone()).in_subnet(e.subnet_id.clone()).diagnosis(
            DiagnosisKind::SourceDestCheck,
            format!("the source/destination check of {} drops packets with {role} {a}", e.meta.id),
            format!("disable the source/destination check on {}", e.meta.id),
        )
}
