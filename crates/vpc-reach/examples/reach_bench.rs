//! Reachability analyzer benchmark: a generated topology of 1,000 VPCs and
//! 10,000 interfaces, single analyses, and the all-pairs matrix of 1,000
//! instances computed over equivalence classes beside the pair-by-pair
//! baseline. Run by `scripts/bench-reach.sh`, which writes docs/perf.md.
//!
//! Topology generator: VPC i has CIDR 10.(i/256).(i%256).0/24, one subnet
//! and ten instances; VPCs form a chain of active peerings (i ↔ i+1) with
//! routes both ways; every default security group also admits tcp/22 from
//! 10.0.0.0/8; every tenth VPC has a custom network ACL that denies tcp/23.

use std::time::Instant;
use vpc_model::ctx::SeqIds;
use vpc_model::ops::{self, peering, route, sg, subnet, vpc};
use vpc_model::{Ctx, Limits, Timestamp, World};
use vpc_reach::{self as reach, Endpoint, Index, Protocol, Query};

const VPCS: usize = 1000;
const PER_VPC: usize = 10;

fn ctx<'a>(
    ids: &'a mut SeqIds,
    limits: &'a Limits,
    zones: &'a [(String, String)],
    now: i64,
) -> Ctx<'a> {
    Ctx {
        account: "111111111111".into(),
        region: "us-east-1".into(),
        now: Timestamp(now),
        ids,
        limits,
        zones,
    }
}

fn main() {
    let limits = Limits {
        vpcs_per_region: 1_000_000,
        instances_per_region: 1_000_000,
        network_interfaces_per_region: 1_000_000,
        outstanding_peerings_per_account: 1_000_000,
        ..Limits::default()
    };
    let zones = vec![("us-east-1a".to_string(), "use1-az1".to_string())];
    let mut ids = SeqIds(0);
    let mut w = World::default();
    let mut now = 1_700_000_000_000i64;
    let t0 = Instant::now();
    let mut vpcs = Vec::new();
    let mut instances: Vec<Vec<String>> = Vec::new();
    for i in 0..VPCS {
        let cidr = format!("10.{}.{}.0/24", i / 256, i % 256);
        let mut c = ctx(&mut ids, &limits, &zones, now);
        let v = vpc::create_vpc(
            &mut w,
            &mut c,
            vpc::CreateVpc {
                cidr_block: Some(cidr.clone()),
                ..Default::default()
            },
        )
        .expect("vpc");
        let s = subnet::create_subnet(
            &mut w,
            &mut c,
            subnet::CreateSubnet {
                vpc_id: Some(v.meta.id.clone()),
                cidr_block: Some(cidr.clone()),
                availability_zone: Some("us-east-1a".into()),
                ..Default::default()
            },
        )
        .expect("subnet");
        let launched = ops::instance::run(
            &mut w,
            &mut c,
            ops::instance::RunInstances {
                image_id: Some("ami-12345678".into()),
                min_count: Some(PER_VPC as i64),
                max_count: Some(PER_VPC as i64),
                subnet_id: Some(s.meta.id.clone()),
                ..Default::default()
            },
        )
        .expect("instances");
        instances.push(launched.into_iter().map(|x| x.meta.id).collect());
        sg::authorize(
            &mut w,
            &mut c,
            &v.default_sg,
            false,
            &[sg::Permission {
                protocol: Some("tcp".into()),
                from_port: Some(22),
                to_port: Some(22),
                ipv4: vec![sg::Source {
                    value: "10.0.0.0/8".into(),
                    description: None,
                }],
                ..Default::default()
            }],
            Vec::new(),
        )
        .expect("sg");
        if i % 10 == 0 {
            let acl = ops::acl::create(&mut w, &mut c, &v.meta.id, Vec::new()).expect("acl");
            for (egress, n, action) in [
                (false, 100, "deny"),
                (false, 200, "allow"),
                (true, 100, "allow"),
            ] {
                ops::acl::create_entry(
                    &mut w,
                    &mut c,
                    &acl.meta.id,
                    &ops::acl::EntrySpec {
                        rule_number: Some(n),
                        protocol: Some(if action == "deny" { "6" } else { "-1" }.into()),
                        rule_action: Some(action.into()),
                        egress,
                        cidr_block: Some("0.0.0.0/0".into()),
                        port_from: (action == "deny").then_some(23),
                        port_to: (action == "deny").then_some(23),
                        ..Default::default()
                    },
                )
                .expect("entry");
            }
            let assoc = w
                .iter::<vpc_model::NetworkAcl>()
                .find(|a| a.assocs.iter().any(|x| x.subnet_id == s.meta.id))
                .and_then(|a| a.assocs.iter().find(|x| x.subnet_id == s.meta.id))
                .map(|x| x.id.clone())
                .expect("assoc");
            ops::acl::replace_association(&mut w, &mut c, &assoc, &acl.meta.id).expect("replace");
        }
        vpcs.push(v);
    }
    let mut pcxs = Vec::new();
    for i in 0..VPCS - 1 {
        let mut c = ctx(&mut ids, &limits, &zones, now);
        let p = peering::create(
            &mut w,
            &mut c,
            peering::CreatePeering {
                vpc_id: Some(vpcs[i].meta.id.clone()),
                peer_vpc_id: Some(vpcs[i + 1].meta.id.clone()),
                ..Default::default()
            },
            &|_| true,
        )
        .expect("pcx");
        pcxs.push(p.id);
    }
    now += 10_000;
    ops::tick(&mut w, Timestamp(now));
    for p in &pcxs {
        let mut c = ctx(&mut ids, &limits, &zones, now);
        peering::accept(&mut w, &mut c, p).expect("accept");
    }
    now += 10_000;
    ops::tick(&mut w, Timestamp(now));
    for (i, pcx) in pcxs.iter().enumerate() {
        for (a, b) in [(i, i + 1), (i + 1, i)] {
            let mut c = ctx(&mut ids, &limits, &zones, now);
            route::create_route(
                &mut w,
                &mut c,
                &vpcs[a].main_route_table,
                &route::RouteSpec {
                    destination_cidr_block: Some(vpcs[b].primary_cidr().to_string()),
                    vpc_peering_connection_id: Some(pcx.clone()),
                    ..Default::default()
                },
            )
            .expect("route");
        }
    }
    let enis = w.iter::<vpc_model::NetworkInterface>().count();
    let build_s = t0.elapsed().as_secs_f64();

    // Index once per World.
    let t = Instant::now();
    let ix = Index::new(&w);
    let index_ms = t.elapsed().as_secs_f64() * 1000.0;

    // Single analyses: neighbours (reachable), two hops away (transitive), far.
    let mut lat = Vec::new();
    let mut reachable = 0;
    let n_queries = 20_000;
    for k in 0..n_queries {
        let a = (k * 7919) % (VPCS - 2);
        let b = match k % 3 {
            0 => a + 1,
            1 => a + 2,
            _ => (a + 500) % VPCS,
        };
        let q = Query::new(
            Endpoint::Instance(instances[a][k % PER_VPC].clone()),
            Endpoint::Instance(instances[b][(k / 3) % PER_VPC].clone()),
            Protocol::Tcp,
            Some(if k % 5 == 0 { 23 } else { 22 }),
        );
        let t = Instant::now();
        let r = reach::analyze_with(&ix, &w, &q).expect("analysis");
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        reachable += usize::from(r.reachable);
    }
    lat.sort_by(f64::total_cmp);
    let p50 = lat[lat.len() / 2];
    let p99 = lat[lat.len() * 99 / 100];
    let q = Query::new(
        Endpoint::Instance(instances[0][0].clone()),
        Endpoint::Instance(instances[1][0].clone()),
        Protocol::Tcp,
        Some(22),
    );
    let t = Instant::now();
    let _ = reach::analyze(&w, &q).expect("analysis");
    let analyze_full_ms = t.elapsed().as_secs_f64() * 1000.0;

    // The matrix of 1,000 instances: ten in each of the first 100 VPCs.
    let picked: Vec<String> = instances.iter().take(100).flatten().cloned().collect();
    let t = Instant::now();
    let m = reach::matrix_with(&ix, &w, &picked, Protocol::Tcp, Some(22), false);
    let matrix_s = t.elapsed().as_secs_f64();
    // Baseline: the same million pairs analysed one by one.
    let t = Instant::now();
    let mut agree = true;
    for (i, s) in picked.iter().enumerate() {
        for (j, d) in picked.iter().enumerate() {
            let q = Query::new(
                Endpoint::Instance(s.clone()),
                Endpoint::Instance(d.clone()),
                Protocol::Tcp,
                Some(22),
            );
            let r = reach::reachable_with(&ix, &w, &q).expect("analysis");
            agree &= r == m.reachable[i][j];
        }
    }
    let pairwise_s = t.elapsed().as_secs_f64();
    let yes: usize = m.reachable.iter().flatten().filter(|x| **x).count();
    // Worst case for classes: one instance in each of the 1,000 VPCs.
    let spread: Vec<String> = instances.iter().map(|v| v[0].clone()).collect();
    let t = Instant::now();
    let m2 = reach::matrix_with(&ix, &w, &spread, Protocol::Tcp, Some(22), false);
    let spread_s = t.elapsed().as_secs_f64();
    println!(
        "REACH-BENCH vpcs={VPCS} enis={enis} build_s={build_s:.1} index_ms={index_ms:.1} \
         queries={n_queries} reachable={reachable} analyze_p50_us={p50:.1} analyze_p99_us={p99:.1} \
         analyze_with_index_build_ms={analyze_full_ms:.1} matrix_instances={} matrix_pairs={} \
         matrix_classes={} matrix_evaluated={} matrix_s={matrix_s:.2} matrix_reachable={yes} \
         pairwise_s={pairwise_s:.2} agree={agree} spread_classes={} spread_s={spread_s:.2}",
        picked.len(),
        picked.len() * picked.len(),
        m.classes,
        m.evaluated,
        m2.classes,
    );
    assert!(
        agree,
        "the equivalence-class matrix disagrees with pair-by-pair analysis"
    );
}
