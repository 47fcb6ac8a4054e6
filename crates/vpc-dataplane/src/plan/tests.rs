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

/// The filter table in nft's text syntax (`nft::text`), kept for the
/// test's lifetime so the helpers below can hand out slices of it.
fn filter(ns: &NsPlan) -> &'static str {
    Box::leak(table_text(ns, "vpcd").into_boxed_str())
}

fn table_text(ns: &NsPlan, name: &str) -> String {
    nft::text::table(ns.nft.iter().find(|t| t.name == name).expect(name))
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
    // Invalid packets are dropped after the tracked ones are accepted, but
    // for an untracked reply through a middlebox across hosts
    // (`docs/cluster.md`): its groups decide, ingress on `m-`, egress
    // towards `x-` from an interface with its check off.
    let at = |r: &str| {
        fwd.iter()
            .position(|l| *l == r)
            .unwrap_or_else(|| panic!("no {r:?} in {fwd:#?}"))
    };
    let established = at("ct state established : related accept");
    let from_m = at(r#"iifname "m-*" ct state invalid goto sg_ingress"#);
    let dropped = at("ct state invalid counter drop");
    let to_x = fwd
        .iter()
        .position(|l| {
            l.starts_with(
                r#"iifname "e-*" iifname != @sdc_if oifname "x-*" ct state invalid iifname vmap {"#,
            )
        })
        .expect("the middlebox's egress for an untracked reply");
    assert!(established < from_m && from_m < to_x && to_x < dropped);
    assert_eq!(fwd.iter().filter(|l| l.contains("invalid")).count(), 3);
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
    assert!(rx.links.contains_key(&eni_link(&x.eni)) && !rx.links.contains_key(&eni_link(&y.eni)));
    assert!(ry.links.contains_key(&eni_link(&y.eni)) && !ry.links.contains_key(&eni_link(&x.eni)));
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
        inb.contains(&format!("ip saddr @sgm_{ga} meta l4proto tcp th dport 80 accept").as_str()),
        "{inb:?}"
    );
    assert!(
        inb.contains(&format!("ip6 saddr @sgm6_{ga} meta l4proto tcp th dport 80 accept").as_str())
    );
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
    assert!(set_line(body, "eni_addr4").contains(&format!("\"{}\" . 10.0.1.10", eni_link(&a.eni))));
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
    let nat = &table_text(r, "vpcd_nat");
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
    assert!(nft::text::table(&n.nft[0]).contains("masquerade"));
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
    let nat_ip = nat_eni
        .primary_ip()
        .expect("a NAT gateway has an IPv4 address");
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
    let nat_tbl = &table_text(r, "vpcd_nat");
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
        inet.contains_key(&format!("{web_pub}/32")) && inet.contains_key(&format!("{nat_pub}/32"))
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
