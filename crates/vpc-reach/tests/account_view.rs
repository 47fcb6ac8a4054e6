//! The account boundary of analyses (`vpc_model::ops::account_view`): a
//! peer's analysis, frozen by the evaluator and redacted for its owner as
//! `StartNetworkInsightsAnalysis` does, shows none of the other account's IDs.

use std::net::IpAddr;
use vpc_model::ctx::{Ctx, Limits, SeqIds, Timestamp};
use vpc_model::fault::Fault;
use vpc_model::ops::account_view::AccountView;
use vpc_model::ops::{self, defaults, insights, instance, peering, route, sg, subnet};
use vpc_model::types::*;
use vpc_model::world::World;
use vpc_reach::{Endpoint, Protocol, Query};

const A: &str = "111111111111";
const B: &str = "222222222222";
const R: &str = "us-east-1";

/// A world built through the model's own operations.
struct T {
    w: World,
    ids: SeqIds,
    limits: Limits,
    now: Timestamp,
    zones: Vec<(String, String)>,
}

/// One account's VPC with a subnet and a running instance at `.1.10`.
struct Net {
    vpc: String,
    subnet: String,
    instance: String,
    eni: String,
    sg: String,
    rtb: String,
    acl: String,
    ip: IpAddr,
}

impl T {
    fn new() -> T {
        T {
            w: World::default(),
            ids: SeqIds(0),
            limits: Limits::default(),
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

    /// A VPC `10.<n>.0.0/16` of `acct`; every resource of it is given
    /// a Name tag `<acct>-secret-<kind>`.
    fn net(&mut self, acct: &str, n: u8) -> Net {
        let cidr = format!("10.{n}.0.0/16").parse().unwrap();
        let vpc = self.run(acct, |w, ctx| {
            Ok(defaults::new_vpc(
                w,
                ctx,
                cidr,
                None,
                false,
                "default",
                vec![],
            ))
        });
        let req = subnet::CreateSubnet {
            vpc_id: Some(vpc.meta.id.clone()),
            cidr_block: Some(format!("10.{n}.1.0/24")),
            availability_zone: Some("us-east-1a".into()),
            ..Default::default()
        };
        let s = self.run(acct, |w, ctx| subnet::create_subnet(w, ctx, req));
        let ip = format!("10.{n}.1.10");
        let req = instance::RunInstances {
            image_id: Some("ami-0123456789abcdef0".into()),
            min_count: Some(1),
            max_count: Some(1),
            interfaces: vec![instance::IfaceSpec {
                device_index: Some(0),
                eni: ops::eni::EniSpec {
                    subnet_id: Some(s.meta.id.clone()),
                    private_ip: Some(ip.clone()),
                    ..Default::default()
                },
                ..Default::default()
            }],
            ..Default::default()
        };
        let i = self
            .run(acct, |w, ctx| instance::run(w, ctx, req))
            .remove(0);
        self.advance();
        let acl = ops::acl::acl_for_subnet(&self.w, &s.meta.id)
            .unwrap()
            .meta
            .id
            .clone();
        let net = Net {
            rtb: vpc.main_route_table.clone(),
            sg: vpc.default_sg.clone(),
            vpc: vpc.meta.id,
            subnet: s.meta.id,
            instance: i.meta.id,
            eni: i.primary_eni,
            acl,
            ip: ip.parse().unwrap(),
        };
        let name = |kind: &str| {
            vec![Tag {
                key: "Name".into(),
                value: format!("{acct}-secret-{kind}"),
            }]
        };
        let w = &mut self.w;
        w.update::<Vpc>(&net.vpc, |r| r.meta.tags = name("vpc"));
        w.update::<Subnet>(&net.subnet, |r| r.meta.tags = name("subnet"));
        w.update::<Instance>(&net.instance, |r| r.meta.tags = name("instance"));
        w.update::<NetworkInterface>(&net.eni, |r| r.meta.tags = name("eni"));
        w.update::<SecurityGroup>(&net.sg, |r| r.meta.tags = name("sg"));
        w.update::<RouteTable>(&net.rtb, |r| r.meta.tags = name("rtb"));
        w.update::<NetworkAcl>(&net.acl, |r| r.meta.tags = name("acl"));
        net
    }

    /// An active peering requested by `a`'s owner; each side tags its own view.
    fn peer(&mut self, (a, a_acct): (&Net, &str), (b, b_acct): (&Net, &str)) -> String {
        let req = peering::CreatePeering {
            vpc_id: Some(a.vpc.clone()),
            peer_vpc_id: Some(b.vpc.clone()),
            peer_owner_id: Some(b_acct.into()),
            peer_region: Some(R.into()),
            tags: vec![],
        };
        let id = self
            .run(a_acct, |w, ctx| peering::create(w, ctx, req, &|_| true))
            .id;
        self.advance();
        self.run(b_acct, |w, ctx| peering::accept(w, ctx, &id));
        self.advance();
        self.w.update::<Peering>(&id, |p| {
            for side in [&mut p.requester, &mut p.accepter] {
                side.tags = vec![Tag {
                    key: "Name".into(),
                    value: format!("{}-secret-pcx", side.owner),
                }];
            }
        });
        id
    }

    fn route_pcx(&mut self, acct: &str, n: &Net, dest: &str, pcx: &str) {
        let spec = route::RouteSpec {
            destination_cidr_block: Some(dest.into()),
            vpc_peering_connection_id: Some(pcx.into()),
            ..Default::default()
        };
        let rtb = n.rtb.clone();
        self.run(acct, |w, ctx| route::create_route(w, ctx, &rtb, &spec));
    }

    fn allow_tcp_22(&mut self, acct: &str, n: &Net, cidr: &str) {
        let p = sg::Permission {
            protocol: Some("tcp".into()),
            from_port: Some(22),
            to_port: Some(22),
            ipv4: vec![sg::Source {
                value: cidr.into(),
                description: None,
            }],
            ..Default::default()
        };
        let g = n.sg.clone();
        self.run(acct, |w, ctx| {
            sg::authorize(w, ctx, &g, false, &[p], vec![])
        });
    }

    /// `from`'s instance to `to_ip`, tcp 22, frozen as the operator sees it.
    fn analyse(&self, from: &Net, to_ip: IpAddr) -> AnalysisResult {
        let q = Query::new(
            Endpoint::Instance(from.instance.clone()),
            Endpoint::Address(to_ip),
            Protocol::Tcp,
            Some(22),
        );
        vpc_reach::freeze(&self.w, &vpc_reach::analyze(&self.w, &q).unwrap())
    }

    /// Every ID `acct` owns (resources and security-group rules), except
    /// what a peer may see: peering connections and VPCs.
    fn ids_of(&self, acct: &str) -> Vec<String> {
        let w = &self.w;
        let mut out: Vec<String> = Vec::new();
        macro_rules! all {
            ($t:ty) => {
                out.extend(
                    w.iter::<$t>()
                        .filter(|r| r.meta.owner == acct)
                        .map(|r| r.meta.id.clone()),
                )
            };
        }
        all!(Subnet);
        all!(RouteTable);
        all!(SecurityGroup);
        all!(NetworkAcl);
        all!(Instance);
        all!(NetworkInterface);
        all!(InternetGateway);
        out.extend(
            w.iter::<SecurityGroup>()
                .filter(|g| g.meta.owner == acct)
                .flat_map(|g| g.ingress.iter().chain(&g.egress))
                .map(|r| r.id.clone()),
        );
        out.extend(
            w.iter::<RouteTable>()
                .filter(|t| t.meta.owner == acct)
                .flat_map(|t| &t.assocs)
                .map(|a| a.id.clone()),
        );
        out
    }
}

/// Every ID and Name tag of `acct` that must not appear in `shown`.
fn assert_nothing_of(t: &T, acct: &str, shown: &str) {
    let ids = t.ids_of(acct);
    assert!(ids.len() >= 7, "{ids:?}");
    for id in &ids {
        assert!(!shown.contains(id.as_str()), "{acct}'s {id} shown: {shown}");
    }
    assert!(
        !shown.contains(&format!("{acct}-secret")),
        "{acct}'s Name tag shown: {shown}"
    );
}

fn result_text(r: &AnalysisResult) -> String {
    format!(
        "{r:?}\n{}\n{}",
        serde_json::to_string(r).unwrap(),
        insights::warning_message(Some(r), &[]).unwrap_or_default()
    )
}

/// B's analysis across an active peering to A's instance IP: reachable,
/// the peering and the kinds of A's components shown, nothing of A's.
#[test]
fn peer_sees_component_kinds_and_the_peering_but_no_ids_or_tags() {
    let mut t = T::new();
    let a = t.net(A, 1);
    let b = t.net(B, 2);
    let pcx = t.peer((&b, B), (&a, A));
    t.route_pcx(B, &b, "10.1.0.0/16", &pcx);
    t.route_pcx(A, &a, "10.2.0.0/16", &pcx);
    t.allow_tcp_22(A, &a, "10.2.0.0/16");

    let full = t.analyse(&b, a.ip);
    assert!(full.reachable, "{full:?}");
    // The unredacted result does name A's resources: the check below means something.
    let full_text = result_text(&full);
    for id in [&a.eni, &a.subnet, &a.sg, &a.rtb] {
        assert!(full_text.contains(id.as_str()), "{id} not in {full_text}");
    }

    let seen = AccountView::new(&t.w, B).redact(full.clone());
    let text = result_text(&seen);
    assert_nothing_of(&t, A, &text);
    assert!(seen.reachable);
    assert_eq!(seen.forward.len(), full.forward.len());
    assert_eq!(seen.ret.len(), full.ret.len());
    // The peering connection is shown, with B's own Name for it, not A's.
    let pcx_hop = seen
        .forward
        .iter()
        .find(|h| h.component.kind == "vpc-peering-connection")
        .expect("a peering hop");
    assert_eq!(pcx_hop.component.id.as_deref(), Some(pcx.as_str()));
    assert!(pcx_hop.component.arn.is_some());
    assert_eq!(
        pcx_hop.component.name.as_deref(),
        Some("222222222222-secret-pcx")
    );
    // A's hops keep their kind, lose ID, ARN, tags and rule.
    let theirs: Vec<&AnalysisHop> = seen
        .forward
        .iter()
        .filter(|h| h.component.id.is_none())
        .collect();
    assert!(
        theirs
            .iter()
            .any(|h| h.component.kind == "network-interface"
                && h.component.name.as_deref() == Some("the peer VPC's network interface")),
        "{seen:?}"
    );
    for h in &theirs {
        assert!(h.component.arn.is_none() && h.rule.is_none(), "{h:?}");
        assert!(h.subnet.as_ref().is_none_or(|s| s.id.is_none()));
    }
    // The peer's VPC is visible through the peering (as in DescribeVpcPeeringConnections), untagged.
    assert!(seen
        .forward
        .iter()
        .filter_map(|h| h.vpc.as_ref())
        .any(|v| v.id.as_deref() == Some(a.vpc.as_str()) && v.name.is_none()));
    // B's own side is untouched.
    assert!(
        text.contains(&b.eni) && text.contains(&b.rtb) && text.contains("222222222222-secret-eni")
    );
    assert_eq!(
        seen.forward
            .iter()
            .filter(|h| h.component.id.is_some())
            .count(),
        full.forward
            .iter()
            .filter(|h| AccountView::new(&t.w, B).sees(h.component.id.as_deref().unwrap()))
            .count()
    );

    // A's view of the same result keeps A's side in full (and redacts B's).
    let own = AccountView::new(&t.w, A).redact(full.clone());
    let own_text = result_text(&own);
    for id in [&a.eni, &a.subnet, &a.sg, &a.rtb] {
        assert!(own_text.contains(id.as_str()), "{id} not in {own_text}");
    }
    assert_nothing_of(&t, B, &own_text);
}

/// Blockers and diagnoses on A's side, seen by B: the codes and the
/// diagnoses stay, A's IDs in their sentences become descriptions.
#[test]
fn peer_sees_blockers_on_the_other_side_without_their_ids() {
    let mut t = T::new();
    let a = t.net(A, 1);
    let b = t.net(B, 2);
    let pcx = t.peer((&b, B), (&a, A));
    // B routes to A; A has no route back and its group does not admit B.
    t.route_pcx(B, &b, "10.1.0.0/16", &pcx);

    let full = t.analyse(&b, a.ip);
    assert!(!full.reachable);
    let full_text = result_text(&full);
    assert!(
        full_text.contains(&a.rtb) || full_text.contains(&a.sg),
        "{full_text}"
    );
    assert!(!full.diagnoses.is_empty(), "{full:?}");

    let seen = AccountView::new(&t.w, B).redact(full.clone());
    let text = result_text(&seen);
    assert_nothing_of(&t, A, &text);
    let codes = |r: &AnalysisResult| -> Vec<String> {
        r.explanations.iter().map(|e| e.code.clone()).collect()
    };
    assert_eq!(codes(&seen), codes(&full));
    assert_eq!(
        seen.diagnoses.iter().map(|d| &d.kind).collect::<Vec<_>>(),
        full.diagnoses.iter().map(|d| &d.kind).collect::<Vec<_>>()
    );
    assert!(
        seen.diagnoses
            .iter()
            .any(|d| d.kind == "missing-return-route"),
        "{seen:?}"
    );
    assert!(text.contains("[the peer VPC's"), "{text}");
    // A's rules are not shown; A's blocking components keep only their kind.
    for e in &seen.explanations {
        if e.component.id.is_none() {
            assert!(e.rule.is_none(), "{e:?}");
            assert!(e.component.name.is_some(), "{e:?}");
        }
    }
}

/// The owner's view of a path inside its own account changes nothing.
#[test]
fn own_analysis_is_not_redacted() {
    let mut t = T::new();
    let a = t.net(A, 1);
    let _b = t.net(B, 2);
    let full = t.analyse(&a, "10.1.1.99".parse().unwrap());
    assert_eq!(AccountView::new(&t.w, A).redact(full.clone()), full);
}

#[test]
fn sentences_lose_only_withheld_ids() {
    let mut t = T::new();
    let a = t.net(A, 1);
    let b = t.net(B, 2);
    let pcx = t.peer((&b, B), (&a, A));
    let v = AccountView::new(&t.w, B);
    let s = format!(
        "{}'s route table {} has no route back to 10.2.0.0/16 over {pcx}; add one to {}. Fix {} (re-address 10.1.1.10).",
        a.vpc, a.rtb, b.rtb, a.instance
    );
    assert_eq!(
        v.redact_text(&s),
        format!(
            "{}'s route table [the peer VPC's route table] has no route back to 10.2.0.0/16 over {pcx}; add one to {}. Fix [the peer VPC's instance] (re-address 10.1.1.10).",
            a.vpc, b.rtb
        )
    );
    // A resource of an account B has no peering with is "another account's".
    let mut t2 = T::new();
    let c = t2.net(A, 3);
    let _ = t2.net(B, 4);
    let v2 = AccountView::new(&t2.w, B);
    assert_eq!(
        v2.redact_text(&format!("{} in {}", c.subnet, c.vpc)),
        "[another account's subnet] in [another account's VPC]"
    );
    // An ID nobody holds any more is withheld too.
    assert!(!v2.sees("rtb-0123456789abcdef0"));
    assert!(v2.sees("local") && v2.sees("10.1.1.10") && v2.sees("198.51.100.10"));
}
