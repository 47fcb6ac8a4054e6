use super::*;
use crate::nft::text;
use crate::testkit::{Env, A, B, EAST, WEST};

/// The rules as nft text (`nft::text`).
fn rules(rs: &[Rule]) -> Vec<String> {
    rs.iter().map(|r| text::rule(r)).collect()
}

/// The transaction as `nft -f` lines.
fn script(st: &MeterState, plan: &MeterPlan) -> String {
    text::commands(&commands(st, plan))
}

const TAG: &str = "beef";

/// VPC 10.1/16 of A in us-east-1 (zones a and b) peered with VPC 10.2/16 of
/// B in us-west-2 (zone a); A's VPC also has an internet gateway.
fn world() -> (Env, String, String, String) {
    let mut e = Env::new();
    let va = e.vpc_as(A, EAST, "10.1.0.0/16", None);
    e.subnet_in(&va, "10.1.1.0/24", "us-east-1a");
    e.subnet_in(&va, "10.1.2.0/24", "us-east-1b");
    let vb = e.vpc_as(B, WEST, "10.2.0.0/16", None);
    e.subnet_in(&vb, "10.2.1.0/24", "us-west-2a");
    let pcx = e.peer(&va, &vb, true);
    e.igw(&va);
    (e, pcx, va.meta.id, vb.meta.id)
}

#[test]
fn each_side_counts_its_own_traffic_by_zone_pair() {
    let (e, pcx, va, vb) = world();
    let plans = plan(&e.w, TAG);
    let s = short(&pcx);
    let a = &plans[&router_ns(TAG, &va)];
    let out = &a.counters[&format!("pcx_{s}_out_us_east_1b_us_west_2a")];
    assert_eq!(
        (
            out.account.as_str(),
            out.kind,
            out.az.as_str(),
            out.peer_region.as_str(),
            out.peer_az.as_str()
        ),
        (
            A,
            TransferKind::PeeringOut,
            "us-east-1b",
            WEST,
            "us-west-2a"
        )
    );
    assert_eq!(
        rules(&a.chains[&format!("pcx_{s}_out")]),
        [
            format!("ip saddr {{ 10.1.1.0/24 }} ip daddr {{ 10.2.1.0/24 }} counter name \"pcx_{s}_out_us_east_1a_us_west_2a\" return"),
            format!("ip saddr {{ 10.1.2.0/24 }} ip daddr {{ 10.2.1.0/24 }} counter name \"pcx_{s}_out_us_east_1b_us_west_2a\" return"),
        ]
    );
    assert!(rules(&a.dispatch).contains(&format!("oifname \"p-{s}\" jump pcx_{s}_out")));
    assert!(rules(&a.dispatch)
        .iter()
        .any(|r| r.starts_with("oifname \"g-") && r.contains("_out\"")));
    // 2 zones x 1 zone x 2 directions, plus the gateway's two.
    assert_eq!(a.counters.len(), 6);
    let b = &plans[&router_ns(TAG, &vb)];
    assert_eq!(b.counters.len(), 4);
    assert!(b
        .counters
        .values()
        .all(|k| k.account == B && k.region == WEST && k.peer_region == EAST));
    let inn = &b.counters[&format!("pcx_{s}_in_us_west_2a_us_east_1a")];
    assert_eq!(
        (inn.kind, inn.az.as_str(), inn.peer_az.as_str()),
        (TransferKind::PeeringIn, "us-west-2a", "us-east-1a")
    );
    assert_eq!(
        rules(&b.chains[&format!("pcx_{s}_in")])[0],
        format!("ip saddr {{ 10.1.1.0/24 }} ip daddr {{ 10.2.1.0/24 }} counter name \"pcx_{s}_in_us_west_2a_us_east_1a\" return")
    );
}

#[test]
fn across_hosts_peering_in_is_counted_where_the_receiver_decides() {
    let (e, pcx, va, vb) = world();
    let s = short(&pcx);
    let one = plan(&e.w, TAG);
    let many = plan_for(&e.w, TAG, true);
    for vpc in [&va, &vb] {
        let ns = router_ns(TAG, vpc);
        let x = crate::placement::vxlan_link(vpc);
        let d = rules(&many[&ns].dispatch);
        // Out: on the peering link, as on one host (the sender's host
        // crosses the peering).
        assert!(
            d.contains(&format!("oifname \"p-{s}\" jump pcx_{s}_out")),
            "{d:?}"
        );
        // In: on the peering link only what stays here; what goes on to
        // another host is counted there, on arrival over VXLAN.
        assert!(
            d.contains(&format!(
                "iifname \"p-{s}\" oifname != \"{x}\" jump pcx_{s}_in"
            )),
            "{d:?}"
        );
        assert!(
            d.contains(&format!("iifname \"{x}\" jump pcx_{s}_in")),
            "{d:?}"
        );
        assert!(
            !d.contains(&format!("iifname \"p-{s}\" jump pcx_{s}_in")),
            "{d:?}"
        );
        // Counters and chains are the same: one host's usage keys.
        assert_eq!(many[&ns].counters, one[&ns].counters);
        assert_eq!(many[&ns].chains, one[&ns].chains);
    }
    assert!(!rules(&one[&router_ns(TAG, &va)].dispatch)
        .iter()
        .any(|r| r.contains("x-")));
}

#[test]
fn a_deleted_peering_leaves_nothing_to_count() {
    let (mut e, pcx, va, vb) = world();
    let v = e.w.get::<Vpc>(&va).unwrap().clone();
    e.delete_peering(&pcx, &v);
    let plans = plan(&e.w, TAG);
    assert!(!plans.contains_key(&router_ns(TAG, &vb)));
    assert!(plans[&router_ns(TAG, &va)]
        .counters
        .keys()
        .all(|c| c.starts_with("igw_")));
}

#[test]
fn the_transaction_keeps_counters_and_removes_only_what_went_away() {
    let (e, pcx, va, _) = world();
    let plans = plan(&e.w, TAG);
    let p = &plans[&router_ns(TAG, &va)];
    let fresh = script(&MeterState::default(), p);
    assert!(fresh.starts_with("add table inet vpcd_meter\n"));
    assert_eq!(fresh.matches("add counter").count(), p.counters.len());
    assert!(!fresh.contains("delete"));
    // The kernel has every counter but one, and a chain and counter that are gone.
    let s = short(&pcx);
    let mut st = MeterState {
        exists: true,
        ..Default::default()
    };
    for c in p.counters.keys().skip(1) {
        st.counters.insert(c.clone(), (100, 1));
    }
    st.counters.insert("pcx_old_out_x_y".into(), (5, 1));
    st.chains.insert(format!("pcx_{s}_out"));
    st.chains.insert("pcx_old_out".into());
    let update = script(&st, p);
    assert_eq!(update.matches("add counter").count(), 1);
    assert!(update.contains("delete counter inet vpcd_meter pcx_old_out_x_y\n"));
    assert!(update.contains("delete chain inet vpcd_meter pcx_old_out\n"));
    assert!(!update.contains(&format!("delete chain inet vpcd_meter pcx_{s}_out\n")));
    assert!(update.contains(&format!("flush chain inet vpcd_meter pcx_{s}_out\n")));
    // Counters are deleted last, after every rule naming them is gone.
    let last_rule = update.rfind("add rule").unwrap();
    assert!(update.find("delete counter").unwrap() > last_rule);
    assert_eq!(
        script(&st, &MeterPlan::default()),
        "delete table inet vpcd_meter\n"
    );
    assert_eq!(script(&MeterState::default(), &MeterPlan::default()), "");
}

#[test]
fn listings_parse() {
    let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"table": {"family": "inet", "name": "vpcd_meter", "handle": 1}}, {"counter": {"family": "inet", "name": "c1", "table": "vpcd_meter", "handle": 2, "packets": 3, "bytes": 4500}}, {"chain": {"family": "inet", "table": "vpcd_meter", "name": "forward", "handle": 1, "type": "filter", "hook": "forward", "prio": 10, "policy": "accept"}}, {"chain": {"family": "inet", "table": "vpcd_meter", "name": "pcx_x_out", "handle": 3}}]}"#;
    let st = parse_listing(json).unwrap();
    assert!(st.exists);
    assert_eq!(st.counters["c1"], (4500, 3));
    assert_eq!(st.chains.iter().collect::<Vec<_>>(), ["pcx_x_out"]);
    assert!(parse_listing("{}").is_err());
}
