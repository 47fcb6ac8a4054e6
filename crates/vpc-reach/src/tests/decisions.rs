//! The analyzer's lookups (through its index) agree with `vpc-model`'s
//! single decision functions on random small worlds: which route table a
//! subnet uses, which interfaces and NAT gateways the data plane routes,
//! where a route sends a packet, and the public-IP maps.

use super::*;
use crate::walk::{Port, RouteLookup, Walk};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Shape {
    vpcs: usize,
    own_table: Vec<bool>,
    igw: Vec<bool>,
    /// (VPC, public IP, stopped)
    instances: Vec<(usize, bool, bool)>,
    /// (VPC, VPC, accepted)
    peerings: Vec<(usize, usize, bool)>,
    /// (VPC, left pending)
    nats: Vec<(usize, bool)>,
    /// (instance, by instance ID rather than interface)
    middleboxes: Vec<(usize, bool)>,
}

fn shape() -> impl Strategy<Value = Shape> {
    (1usize..=3).prop_flat_map(|n| {
        (
            Just(n),
            proptest::collection::vec(any::<bool>(), n),
            proptest::collection::vec(any::<bool>(), n),
            proptest::collection::vec((0..n, any::<bool>(), any::<bool>()), 1..6),
            proptest::collection::vec((0..n, 0..n, any::<bool>()), 0..3),
            proptest::collection::vec((0..n, any::<bool>()), 0..3),
            proptest::collection::vec((0usize..6, any::<bool>()), 0..3),
        )
            .prop_map(
                |(vpcs, own_table, igw, instances, peerings, nats, middleboxes)| Shape {
                    vpcs,
                    own_table,
                    igw,
                    instances,
                    peerings,
                    nats,
                    middleboxes,
                },
            )
    })
}

fn build(s: &Shape) -> T {
    let mut t = T::new();
    let accts = [A, B];
    let vpcs: Vec<Vpc> = (0..s.vpcs)
        .map(|i| t.vpc(accts[i % 2], &format!("10.{}.0.0/16", i + 1), None))
        .collect();
    let subnets: Vec<Subnet> = vpcs
        .iter()
        .enumerate()
        .map(|(i, v)| t.subnet(v, &format!("10.{}.1.0/24", i + 1), None))
        .collect();
    for (i, v) in vpcs.iter().enumerate() {
        if s.own_table[i] {
            t.own_table(&subnets[i]);
        }
        if s.igw[i] {
            t.igw(v);
        }
    }
    let mut insts = Vec::new();
    for (k, (v, public, stopped)) in s.instances.iter().enumerate() {
        let i = t.launch(
            &subnets[*v],
            &format!("10.{}.1.{}", v + 1, 10 + k),
            *public,
            false,
        );
        if *stopped {
            t.advance();
            let (o, id) = (vpcs[*v].meta.owner.clone(), i.id.clone());
            t.run(&o, |w, ctx| instance::stop(w, ctx, &[id]));
        }
        insts.push((*v, i));
    }
    let mut peered = std::collections::HashSet::new();
    for (a, b, accepted) in &s.peerings {
        if a == b || !peered.insert((*a.min(b), *a.max(b))) {
            continue;
        }
        let p = t.peer(&vpcs[*a], &vpcs[*b]);
        if *accepted {
            t.accept(&p, &vpcs[*b]);
        }
        t.route_pcx(&vpcs[*a], &format!("10.{}.0.0/16", b + 1), &p);
    }
    for (k, (v, pending)) in s.nats.iter().enumerate() {
        let o = vpcs[*v].meta.owner.clone();
        let a = t.run(&o, |w, ctx| eip::allocate(w, ctx, None, vec![]));
        let req = nat::CreateNat {
            subnet_id: Some(subnets[*v].meta.id.clone()),
            allocation_id: Some(a.meta.id.clone()),
            ..Default::default()
        };
        let g = t.run(&o, |w, ctx| nat::create(w, ctx, req)).meta.id;
        let rtb = t.main_rtb(&vpcs[*v]);
        let spec = route::RouteSpec {
            nat_gateway_id: Some(g),
            ..Default::default()
        };
        t.route(&vpcs[*v], &rtb, &format!("172.16.{k}.0/24"), spec);
        if !*pending {
            t.advance();
        }
    }
    for (k, (i, by_instance)) in s.middleboxes.iter().enumerate() {
        let Some((v, inst)) = insts.get(*i).cloned() else {
            continue;
        };
        let rtb = t.main_rtb(&vpcs[v]);
        let spec = if *by_instance {
            route::RouteSpec {
                instance_id: Some(inst.id.clone()),
                ..Default::default()
            }
        } else {
            route::RouteSpec {
                network_interface_id: Some(inst.eni.clone()),
                ..Default::default()
            }
        };
        t.route(&vpcs[v], &rtb, &format!("192.168.{k}.0/24"), spec);
    }
    t
}

fn walk<'a>(index: &'a Index, w: &'a World) -> Walk<'a> {
    Walk {
        index,
        w,
        explain: true,
        v6: false,
        proto: Protocol::Tcp,
        protocol_number: 6,
        dest_port: Some(22),
        reply_ports: EPHEMERAL_PORTS,
        out: Analysis::default(),
        blocked: false,
    }
}

fn agree(w: &World) {
    let index = Index::new(w);
    let walk = walk(&index, w);
    for s in w.iter::<Subnet>() {
        assert_eq!(
            walk.table_of(s).map(|t| &t.meta.id),
            ops::route::table_for_subnet(w, s).map(|t| &t.meta.id),
            "route table of {}",
            s.meta.id
        );
    }
    for e in w.iter::<NetworkInterface>() {
        let Some(a) = e.primary_ip().map(IpAddr::V4) else {
            continue;
        };
        let routed = match walk.routed(&e.vpc_id, a, true) {
            Some(Port::Eni(x)) => x.meta.id == e.meta.id,
            Some(Port::Nat(n)) => n.eni_id == e.meta.id,
            _ => false,
        };
        assert_eq!(routed, ops::eni::is_realized(w, e), "{} routed", e.meta.id);
        if ops::eni::is_realized(w, e) {
            for (private, public) in ops::eni::public_ips_of(w, e) {
                let vpc = crate::index::RecordId::new(&e.vpc_id);
                assert_eq!(index.priv2pub.get(&(vpc, private)), Some(&public));
            }
        }
    }
    for n in w.iter::<NatGateway>() {
        match w.get::<NetworkInterface>(&n.eni_id) {
            Some(e) => assert_eq!(ops::nat::is_realized(w, n), ops::eni::is_realized(w, e)),
            None => assert!(!ops::nat::is_realized(w, n)),
        }
    }
    for rt in w.iter::<RouteTable>() {
        for r in rt.routes.iter().filter(|r| r.target != RouteTarget::Local) {
            let dst = r.dest.addr();
            let hop = ops::route::next_hop(w, rt, r, dst.is_ipv6());
            if hop.is_some() {
                assert_eq!(ops::route::route_state(w, rt, r), "active");
            }
            if ops::route::lookup(rt, dst).map(|x| x.dest) == Some(r.dest) {
                let hit = matches!(walk.lookup(rt, dst), RouteLookup::Hit(..));
                assert_eq!(hit, hop.is_some(), "{} in {}", r.dest, rt.meta.id);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn the_analyzer_decides_with_the_models_functions(s in shape()) {
        agree(&build(&s).w);
    }
}
