//! The evaluator on worlds built through the model's own operations.

use crate::*;
use std::net::IpAddr;
use vpc_model::ctx::{Ctx, Limits, SeqIds, Timestamp};
use vpc_model::fault::Fault;
use vpc_model::ops::{self, acl, defaults, eip, igw, instance, nat, peering, route, sg, subnet};
use vpc_model::types::*;
use vpc_model::world::World;

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

    fn launch_in(&mut self, s: &Subnet, ip: &str, public: bool, v6: bool, groups: &[String]) -> I {
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

    /// The evaluator's refusal of a query.
    fn reach_err(&self, q: &Query) -> Fault {
        analyze(&self.w, q).expect_err("the query must be refused")
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
    let index = Index::new(&t.w);
    let o = |p| Options {
        source_port: Some(p),
    };
    assert!(analyze_opts(&index, &t.w, &q, o(40000)).unwrap().reachable);
    assert!(!analyze_opts(&index, &t.w, &q, o(55000)).unwrap().reachable);
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
        has_hop(&r.forward, "internet-gateway", &igw) && has_hop(&r.ret, "internet-gateway", &igw),
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
    let index = Index::new(&t.w);
    for proto in [Protocol::Tcp, Protocol::Icmp] {
        let port = (proto == Protocol::Tcp).then_some(22);
        let m = matrix_with(&index, &t.w, &ids, proto, port, false);
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
                let want = analyze_with(&index, &t.w, &q).unwrap().reachable;
                assert_eq!(m.reachable[i][j], want, "{x} -> {y} ({proto:?})");
                yes += usize::from(want);
            }
        }
        assert!(yes > ids.len() && yes < ids.len() * ids.len(), "{yes}");
    }
    assert_eq!(
        matrix(&t.w, &ids, Protocol::Tcp, Some(22)),
        matrix_with(&index, &t.w, &ids, Protocol::Tcp, Some(22), false).reachable
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
    let index = Index::new(&t.w);
    for i in (0..n - 2).step_by(97) {
        let ok = analyze_with(&index, &t.w, &tcp(&insts[i][0], &insts[i + 1][2], 22)).unwrap();
        assert!(ok.reachable, "{ok:#?}");
        let back = analyze_with(&index, &t.w, &tcp(&insts[i + 1][1], &insts[i][0], 22)).unwrap();
        assert!(back.reachable);
        let two = analyze_with(&index, &t.w, &tcp(&insts[i][0], &insts[i + 2][0], 22)).unwrap();
        assert!(!two.reachable);
        assert_eq!(
            kinds(&two),
            vec![DiagnosisKind::TransitivePeering],
            "{two:#?}"
        );
        let far = analyze_with(
            &index,
            &t.w,
            &tcp(&insts[i][1], &insts[(i + 500) % n][0], 22),
        )
        .unwrap();
        assert_eq!(
            kinds(&far),
            vec![DiagnosisKind::DisconnectedVpcs],
            "{far:#?}"
        );
    }
    // The matrix of one instance per VPC over the first 60 VPCs: neighbours only.
    let ids: Vec<String> = insts.iter().take(60).map(|v| v[0].id.clone()).collect();
    let m = matrix_with(&index, &t.w, &ids, Protocol::Tcp, Some(22), false);
    for i in 0..ids.len() {
        for j in 0..ids.len() {
            assert_eq!(m.reachable[i][j], i.abs_diff(j) <= 1, "{i} -> {j}");
        }
    }
}

mod decisions;
mod ipv6_only;
