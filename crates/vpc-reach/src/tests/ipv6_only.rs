//! The evaluator on instances of IPv6-only (`Ipv6Native`) subnets, which
//! have no IPv4 address at all.

use super::*;

impl T {
    /// An IPv6-only subnet with the /64 `block`.
    fn ipv6_only_subnet(&mut self, v: &Vpc, block: &str) -> Subnet {
        let req = subnet::CreateSubnet {
            vpc_id: Some(v.meta.id.clone()),
            ipv6_cidr_block: Some(block.into()),
            ipv6_native: true,
            availability_zone: Some("us-east-1a".into()),
            ..Default::default()
        };
        self.run(&v.meta.owner.clone(), |w, ctx| {
            subnet::create_subnet(w, ctx, req)
        })
    }

    /// An instance launched into `s` (IPv6-only: it gets one IPv6 address).
    fn launch_ipv6_only(&mut self, s: &Subnet, groups: &[String]) -> I {
        let req = instance::RunInstances {
            image_id: Some("ami-0123456789abcdef0".into()),
            min_count: Some(1),
            max_count: Some(1),
            subnet_id: Some(s.meta.id.clone()),
            group_ids: groups.to_vec(),
            ..Default::default()
        };
        let i = self
            .run(&s.meta.owner.clone(), |w, ctx| instance::run(w, ctx, req))
            .remove(0);
        let e = self.w.get::<NetworkInterface>(&i.primary_eni).unwrap();
        assert!(e.private_ips.is_empty());
        I {
            id: i.meta.id.clone(),
            eni: i.primary_eni.clone(),
            ip: IpAddr::V6(e.ipv6[0]),
        }
    }
}

#[test]
fn ipv6_only_instances_are_analysed_over_ipv6() {
    let mut t = T::new();
    let v = t.vpc(A, "10.1.0.0/16", Some("2600:1f18:1::/56"));
    let s6 = t.ipv6_only_subnet(&v, "2600:1f18:1:1::/64");
    let dual = t.subnet(&v, "10.1.2.0/24", Some("2600:1f18:1:2::/64"));
    let a = t.launch_ipv6_only(&s6, &[]);
    let b = t.launch_ipv6_only(&s6, &[]);
    let c = t.launch(&dual, "10.1.2.10", false, true);
    t.advance();

    // An IPv4 question about an instance with no IPv4 address is refused
    // with a clear error, not answered (nor a panic).
    let e = t.reach_err(&ping(&a, &b));
    assert!(e.message.contains("has no IPv4 address"), "{e:?}");
    // The family is picked for the caller where an end is IPv6-only.
    let mut q = ping(&a, &b);
    assert!(q.has_ipv6_only_end(&t.w));
    assert!(!ping(&c, &c).has_ipv6_only_end(&t.w));
    q.ipv6 = true;
    let r = t.reach(&q);
    assert!(r.reachable, "{r:#?}");
    assert_eq!(r.source_ip, Some(a.ip));
    assert_eq!(r.destination_ip, Some(b.ip));
    // To and from a dual-stack instance of the same VPC, over IPv6.
    let mut q = tcp(&a, &c, 22);
    q.ipv6 = true;
    let r = t.reach(&q);
    assert!(r.reachable, "{r:#?}");
    assert_eq!(r.destination_ip, Some(t.v6_of(&c)));
    let mut q = tcp(&c, &a, 22);
    q.ipv6 = true;
    assert!(t.reach(&q).reachable);
    // An IPv4 address as the destination has no IPv4 source to come from.
    let q = Query::new(
        Endpoint::Instance(a.id.clone()),
        Endpoint::Address(c.ip),
        Protocol::Icmp,
        None,
    );
    assert!(t.reach_err(&q).message.contains("has no IPv4 address"));

    // A group with no rules: the security group denies.
    let g = t.run(A, |w, ctx| {
        sg::create_group(
            w,
            ctx,
            sg::CreateGroup {
                name: Some("closed".into()),
                description: Some("no ingress".into()),
                vpc_id: Some(v.meta.id.clone()),
                tags: vec![],
            },
        )
    });
    let d = t.launch_ipv6_only(&s6, std::slice::from_ref(&g.meta.id));
    t.advance();
    let mut q = tcp(&a, &d, 22);
    q.ipv6 = true;
    let r = t.reach(&q);
    assert!(!r.reachable);
    assert!(
        kinds(&r).contains(&DiagnosisKind::SecurityGroupDenies),
        "{r:#?}"
    );
    // Once it admits the VPC's IPv6 block, TCP 22 passes.
    t.allow(&g.meta.id, false, "tcp", Some((22, 22)), "2600:1f18:1::/56");
    assert!(t.reach(&q).reachable);

    // The all-pairs matrix: over IPv6 the IPv6-only instances reach each
    // other; over IPv4 they reach nothing and nothing reaches them.
    let ids: Vec<String> = [&a, &b, &c].iter().map(|i| i.id.clone()).collect();
    let m6 = matrix_with(&Index::new(&t.w), &t.w, &ids, Protocol::Icmp, None, true);
    assert!(m6.reachable[0][1] && m6.reachable[1][0] && m6.reachable[0][2]);
    let m4 = matrix(&t.w, &ids, Protocol::Icmp, None);
    assert!(!m4[0][1] && !m4[0][2] && !m4[2][0]);
}
