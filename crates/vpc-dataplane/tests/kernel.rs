//! Privileged tests: build small Worlds through the model, reconcile them
//! into real namespaces under a random tag, and probe with real packets
//! sent between those namespaces only.
//!
//! They need root. Without it they fail with a clear message (they never
//! skip). Every namespace is removed by a Drop guard, also on panic.

#[path = "../src/testkit.rs"]
mod testkit;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::process::{Child, Command, Stdio};
use testkit::{Env, Inst, B, C};
use vpc_dataplane::{names, Dataplane, Report};
use vpc_model::InstanceState;

/// A test's namespaces, world and data plane; tears everything down on drop.
struct Lab {
    tag: String,
    env: Env,
    dp: Dataplane,
    children: Vec<Child>,
}

fn random_u16() -> u16 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    (h.finish() & 0xffff) as u16
}

fn namespaces() -> Vec<String> {
    match std::fs::read_dir("/run/netns") {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => vec![],
    }
}

impl Lab {
    fn new() -> Lab {
        // Pick a tag no namespace uses yet.
        let (tag, n) = loop {
            let n = random_u16();
            let tag = format!("{n:04x}");
            let prefix = names::ns_prefix(&tag);
            let inst = format!("i-{tag}");
            if !namespaces()
                .iter()
                .any(|ns| ns.starts_with(&prefix) || ns.starts_with(&inst))
            {
                break (tag, n);
            }
        };
        let dp = Dataplane::new(tag.clone()).unwrap_or_else(|e| {
            panic!("the privileged data-plane tests must run as root with ip, nft and conntrack installed: {e}")
        });
        Lab {
            tag,
            env: Env::tagged(n),
            dp,
            children: Vec::new(),
        }
    }

    fn reconcile(&mut self) -> Report {
        self.dp
            .reconcile(&self.env.w)
            .unwrap_or_else(|e| panic!("reconcile failed: {e}"))
    }

    fn inet(&self) -> String {
        names::inet_ns(&self.tag)
    }

    /// Starts a TCP listener on `port` inside `ns` (killed on drop).
    fn listen(&mut self, ns: &str, port: u16) {
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "nc", "-lk", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nc");
        self.children.push(child);
        std::thread::sleep(std::time::Duration::from_millis(150));
    }

    /// Our namespaces still present.
    fn leftovers(tag: &str) -> Vec<String> {
        let prefix = names::ns_prefix(tag);
        let inst = format!("i-{tag}");
        namespaces()
            .into_iter()
            .filter(|n| n.starts_with(&prefix) || n.starts_with(&inst))
            .collect()
    }

    /// Tears down and checks that nothing is left.
    fn finish(self) {
        let tag = self.tag.clone();
        drop(self);
        assert_eq!(
            Lab::leftovers(&tag),
            Vec::<String>::new(),
            "namespaces left behind"
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let ids: Vec<String> = self
            .env
            .w
            .iter::<vpc_model::Instance>()
            .map(|i| i.meta.id.clone())
            .collect();
        if let Err(e) = vpc_dataplane::teardown(&self.tag, &ids) {
            eprintln!("teardown of {} failed: {e}", self.tag);
        }
    }
}

fn ping(ns: &str, ip: &str) -> bool {
    Command::new("ip")
        .args([
            "netns", "exec", ns, "ping", "-n", "-q", "-c", "1", "-W", "1", ip,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[track_caller]
fn assert_reach(ns: &str, ip: &str) {
    for _ in 0..3 {
        if ping(ns, ip) {
            return;
        }
    }
    panic!("{ns} cannot reach {ip}");
}

#[track_caller]
fn assert_blocked(ns: &str, ip: &str) {
    assert!(!ping(ns, ip), "{ns} reaches {ip} but must not");
}

fn tcp(ns: &str, ip: &str, port: u16) -> bool {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "nc",
            "-z",
            "-w",
            "1",
            ip,
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Whether the namespace's conntrack table has an entry mentioning `ip`.
fn tracked(ns: &str, ip: &str) -> bool {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "conntrack", "-L"])
        .output()
        .expect("conntrack");
    String::from_utf8_lossy(&out.stdout).contains(&format!("={ip} "))
}

#[test]
fn same_subnet_cross_subnet_idempotence_adoption_and_stop() {
    let mut lab = Lab::new();
    let e = &mut lab.env;
    let v = e.vpc_as(
        testkit::A,
        testkit::EAST,
        "10.0.0.0/16",
        Some("2600:1f18:1::/56"),
    );
    let s1 = e.subnet(&v, "10.0.1.0/24");
    let s2 = e.subnet(&v, "10.0.2.0/24");
    let a = e.instance(&s1, "10.0.1.10");
    let b = e.instance(&s1, "10.0.1.11");
    let c = e.instance(&s2, "10.0.2.10");
    e.add_ipv6(&a.eni, "2600:1f18:1:1::10");
    e.add_ipv6(&b.eni, "2600:1f18:1:1::11");
    let r = lab.reconcile();
    assert_eq!(r.created.len(), 4, "{r:?}");

    // Same subnet, cross subnet, IPv6, the gateway; nothing answers for an unused address.
    assert_reach(&a.id, "10.0.1.11");
    assert_reach(&a.id, "10.0.2.10");
    assert_reach(&c.id, "10.0.1.10");
    assert_reach(&a.id, "2600:1f18:1:1::11");
    assert_reach(&a.id, "10.0.1.1");
    assert_blocked(&a.id, "10.0.1.99");

    // A second reconcile of the same World does nothing at all.
    let r = lab.reconcile();
    assert!(r.is_noop() && r.kernel_ops == 0, "{r:?}");

    // A restart adopts the kernel state without interrupting traffic.
    let pinger = Command::new("ip")
        .args([
            "netns",
            "exec",
            &a.id,
            "ping",
            "-n",
            "-q",
            "-i",
            "0.05",
            "-c",
            "30",
            "-W",
            "1",
            "10.0.1.11",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ping");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut fresh = Dataplane::new(lab.tag.clone()).expect("dataplane");
    let r = fresh.reconcile(&lab.env.w).expect("adopt");
    assert!(r.created.is_empty() && r.deleted.is_empty(), "{r:?}");
    let out = pinger.wait_with_output().expect("ping output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(" 0% packet loss"),
        "traffic interrupted by adoption: {text}"
    );
    // The adopted data plane now has nothing left to do either.
    let r = fresh.reconcile(&lab.env.w).expect("again");
    assert!(r.is_noop() && r.kernel_ops == 0, "{r:?}");
    lab.dp = fresh;

    // Stopping an instance takes its link down and unroutes it, and its
    // router forgets its connections; starting restores it.
    let router = names::router_ns(&lab.tag, &v.meta.id);
    assert_reach(&a.id, "10.0.1.11");
    assert!(
        tracked(&router, "10.0.1.11"),
        "no conntrack entry for the flow"
    );
    lab.env.set_state(&b.id, InstanceState::Stopped);
    let r = lab.reconcile();
    assert_eq!(
        r.updated.len(),
        2,
        "only its router and its namespace: {r:?}"
    );
    assert!(
        !tracked(&router, "10.0.1.11"),
        "conntrack entries of a stopped instance remain"
    );
    assert_blocked(&a.id, "10.0.1.11");
    lab.env.set_state(&b.id, InstanceState::Running);
    lab.reconcile();
    assert_reach(&a.id, "10.0.1.11");

    // Terminating deletes its namespace.
    lab.env.set_state(&c.id, InstanceState::Terminated);
    let r = lab.reconcile();
    assert_eq!(r.deleted, vec![c.id.clone()]);
    assert!(!namespaces().contains(&c.id));

    // A safety pass re-plans the whole World: it agrees with the state the
    // incremental passes above built, so nothing changes in the kernel.
    let dp = std::mem::replace(
        &mut lab.dp,
        Dataplane::new(lab.tag.clone()).expect("dataplane"),
    );
    lab.dp = dp.with_full_plan_every(std::time::Duration::ZERO);
    let r = lab.reconcile();
    assert!(r.is_noop() && r.kernel_ops == 0, "{r:?}");
    assert_eq!(lab.dp.plan_mismatches(), 0);
    lab.finish();
}

fn two_vpcs(lab: &mut Lab, owner_b: &str) -> (vpc_model::Vpc, vpc_model::Vpc, Inst, Inst) {
    let e = &mut lab.env;
    let va = e.vpc("10.1.0.0/16");
    let vb = e.vpc_as(owner_b, testkit::EAST, "10.2.0.0/16", None);
    let sa = e.subnet(&va, "10.1.1.0/24");
    let sb = e.subnet(&vb, "10.2.1.0/24");
    let a = e.instance(&sa, "10.1.1.10");
    let b = e.instance(&sb, "10.2.1.10");
    (va, vb, a, b)
}

#[test]
fn peering_pending_active_security_groups_and_deletion() {
    let mut lab = Lab::new();
    let (va, vb, a, b) = two_vpcs(&mut lab, B);
    let pcx = lab.env.peer(&va, &vb, false);
    lab.env.route_to_pcx(&va, "10.2.0.0/16", &pcx);
    lab.env.route_to_pcx(&vb, "10.1.0.0/16", &pcx);
    let gb = lab.env.default_sg(&vb);
    let ga = lab.env.default_sg(&va);
    lab.env
        .allow(&gb, false, "icmp", Some((-1, -1)), "10.1.0.0/16");
    lab.reconcile();
    lab.listen(&b.id, 8080);
    // Pending: no link, the routes are blackholes.
    assert_blocked(&a.id, "10.2.1.10");

    // Active, routes on both sides, B's group admits ICMP from A's block.
    lab.env.accept(&pcx, &vb);
    lab.reconcile();
    assert_reach(&a.id, "10.2.1.10");
    // A's group does not admit B: the reverse direction stays closed.
    assert_blocked(&b.id, "10.1.1.10");
    // TCP 8080 is not in B's group until A's group is referenced across the peering.
    assert!(!tcp(&a.id, "10.2.1.10", 8080), "TCP passed without a rule");
    lab.env.allow(&gb, false, "tcp", Some((8080, 8080)), &ga);
    let r = lab.reconcile();
    assert_eq!(
        r.updated,
        vec![names::router_ns(&lab.tag, &vb.meta.id)],
        "a rule change touches one router"
    );
    assert!(
        tcp(&a.id, "10.2.1.10", 8080),
        "TCP blocked despite the group reference"
    );

    // Without the ICMP rule, ping fails again.
    lab.env.revoke_all_ingress(&gb);
    lab.reconcile();
    assert_blocked(&a.id, "10.2.1.10");

    // Deleting the peering removes the link.
    lab.env
        .allow(&gb, false, "icmp", Some((-1, -1)), "10.1.0.0/16");
    lab.reconcile();
    assert_reach(&a.id, "10.2.1.10");
    lab.env.delete_peering(&pcx, &va);
    lab.reconcile();
    assert_blocked(&a.id, "10.2.1.10");
    lab.finish();
}

#[test]
fn network_acl_deny_is_stateless_and_skips_the_own_subnet() {
    let mut lab = Lab::new();
    let e = &mut lab.env;
    let v = e.vpc("10.0.0.0/16");
    let s1 = e.subnet(&v, "10.0.1.0/24");
    let s2 = e.subnet(&v, "10.0.2.0/24");
    let a = e.instance(&s1, "10.0.1.10");
    e.instance(&s1, "10.0.1.11");
    let c = e.instance(&s2, "10.0.2.10");
    lab.reconcile();
    assert_reach(&c.id, "10.0.1.10");
    // Deny ICMP arriving from 10.0.2.0/24 (the default ACL covers both subnets).
    lab.env.acl_entry(
        &s1,
        50,
        "1",
        "deny",
        false,
        "10.0.2.0/24",
        None,
        Some((-1, -1)),
    );
    lab.reconcile();
    assert_blocked(&c.id, "10.0.1.10");
    // Stateless: the replies to a's own pings come back from 10.0.2.0/24 too.
    assert_blocked(&a.id, "10.0.2.10");
    // Traffic inside the subnet does not cross the ACL.
    assert_reach(&a.id, "10.0.1.11");
    lab.finish();
}

#[test]
fn no_transit_through_a_peer_even_with_routes() {
    let mut lab = Lab::new();
    let e = &mut lab.env;
    let va = e.vpc("10.1.0.0/16");
    let vb = e.vpc_as(B, testkit::EAST, "10.2.0.0/16", None);
    let vc = e.vpc_as(C, testkit::EAST, "10.3.0.0/16", None);
    let sa = e.subnet(&va, "10.1.1.0/24");
    let sb = e.subnet(&vb, "10.2.1.0/24");
    let sc = e.subnet(&vc, "10.3.1.0/24");
    let a = e.instance(&sa, "10.1.1.10");
    e.instance(&sb, "10.2.1.10");
    e.instance(&sc, "10.3.1.10");
    let ab = e.peer(&va, &vb, true);
    let bc = e.peer(&vb, &vc, true);
    e.route_to_pcx(&va, "10.2.0.0/16", &ab);
    e.route_to_pcx(&va, "10.3.0.0/16", &ab);
    e.route_to_pcx(&vb, "10.1.0.0/16", &ab);
    e.route_to_pcx(&vb, "10.3.0.0/16", &bc);
    e.route_to_pcx(&vc, "10.1.0.0/16", &bc);
    e.route_to_pcx(&vc, "10.2.0.0/16", &bc);
    for v in [&vb, &vc] {
        let g = e.default_sg(v);
        e.allow(&g, false, "icmp", Some((-1, -1)), "10.0.0.0/8");
    }
    let ga = e.default_sg(&va);
    e.allow(&ga, false, "icmp", Some((-1, -1)), "10.0.0.0/8");
    lab.reconcile();
    assert_reach(&a.id, "10.2.1.10");
    assert_blocked(&a.id, "10.3.1.10");
    lab.finish();
}

#[test]
fn overlapping_unpeered_vpcs_are_isolated() {
    let mut lab = Lab::new();
    let e = &mut lab.env;
    let vx = e.vpc("10.5.0.0/16");
    let vy = e.vpc_as(B, testkit::EAST, "10.5.0.0/16", None);
    let sx = e.subnet(&vx, "10.5.1.0/24");
    let sy = e.subnet(&vy, "10.5.1.0/24");
    let x1 = e.instance(&sx, "10.5.1.10");
    e.instance(&sx, "10.5.1.11");
    let y1 = e.instance(&sy, "10.5.1.10");
    e.instance(&sy, "10.5.1.20");
    for v in [&vx, &vy] {
        let g = e.default_sg(v);
        e.allow(&g, false, "-1", None, "0.0.0.0/0");
    }
    lab.reconcile();
    assert_reach(&x1.id, "10.5.1.11");
    assert_reach(&y1.id, "10.5.1.20");
    assert_blocked(&x1.id, "10.5.1.20");
    assert_blocked(&y1.id, "10.5.1.11");
    lab.finish();
}

#[test]
fn internet_gateway_needs_a_public_ip() {
    let mut lab = Lab::new();
    let e = &mut lab.env;
    let v = e.vpc_as(
        testkit::A,
        testkit::EAST,
        "10.0.0.0/16",
        Some("2600:1f18:2::/56"),
    );
    let s = e.subnet(&v, "10.0.1.0/24");
    let a = e.instance(&s, "10.0.1.10");
    let b = e.instance(&s, "10.0.1.11");
    e.set_public_ip(&a.eni, Some("203.0.113.5"));
    e.add_ipv6(&a.eni, "2600:1f18:2:1::10");
    let igw = e.igw(&v);
    e.route(
        &v,
        "::/0",
        vpc_model::ops::route::RouteSpec {
            gateway_id: Some(igw),
            ..Default::default()
        },
    );
    lab.reconcile();
    let inet = lab.inet();
    assert_reach(&a.id, "198.51.100.10");
    assert_reach(&a.id, "2001:db8:ffff::10");
    assert_blocked(&b.id, "198.51.100.10");
    // Inbound to the public IP needs a rule in the group.
    assert_blocked(&inet, "203.0.113.5");
    let g = lab.env.default_sg(&v);
    lab.env
        .allow(&g, false, "icmp", Some((-1, -1)), "0.0.0.0/0");
    lab.reconcile();
    assert_reach(&inet, "203.0.113.5");
    // The private address is not reachable from the internet.
    assert_blocked(&inet, "10.0.1.10");
    lab.finish();
}

#[test]
fn nat_gateway_gives_a_private_subnet_the_internet() {
    let mut lab = Lab::new();
    let e = &mut lab.env;
    let v = e.vpc("10.0.0.0/16");
    let public = e.subnet(&v, "10.0.1.0/24");
    let private = e.subnet(&v, "10.0.2.0/24");
    e.igw(&v);
    let app = e.launch(&private, "10.0.2.10", false);
    lab.reconcile();
    // No public IP: it cannot leave by the internet gateway.
    assert_blocked(&app.id, "198.51.100.10");
    let nat = lab.env.nat_gateway(&public);
    let rt = lab.env.own_table(&private);
    lab.env.route_in(
        &v,
        &rt,
        "0.0.0.0/0",
        vpc_model::ops::route::RouteSpec {
            nat_gateway_id: Some(nat.clone()),
            ..Default::default()
        },
    );
    let r = lab.reconcile();
    assert!(r.created.contains(&names::nat_ns(&lab.tag, &nat)), "{r:?}");
    assert_reach(&app.id, "198.51.100.10");
    // The internet saw the gateway's Elastic IP: the router's translation
    // of the gateway's flow has the Elastic IP as the reply destination.
    let w = &lab.env.w;
    let g = w.get::<vpc_model::NatGateway>(&nat).expect("nat");
    let eni = w
        .get::<vpc_model::NetworkInterface>(&g.eni_id)
        .expect("eni");
    let eip = vpc_model::ops::eni::public_ip_of(w, eni).expect("eip");
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &names::router_ns(&lab.tag, &v.meta.id),
            "conntrack",
            "-L",
            "-f",
            "ipv4",
            "-p",
            "icmp",
        ])
        .output()
        .expect("conntrack");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.contains("dst=198.51.100.10") && l.contains(&format!("dst={eip} "))),
        "no flow translated to the Elastic IP {eip}: {text}"
    );
    lab.finish();
}

#[test]
fn teardown_removes_everything() {
    let mut lab = Lab::new();
    let (va, vb, _, _) = two_vpcs(&mut lab, B);
    lab.env.peer(&va, &vb, true);
    lab.env.igw(&va);
    let r = lab.reconcile();
    assert_eq!(r.created.len(), 5, "{r:?}");
    assert_eq!(Lab::leftovers(&lab.tag).len(), 5);
    let ids: Vec<String> = lab
        .env
        .w
        .iter::<vpc_model::Instance>()
        .map(|i| i.meta.id.clone())
        .collect();
    vpc_dataplane::teardown(&lab.tag, &ids).expect("teardown");
    assert_eq!(Lab::leftovers(&lab.tag), Vec::<String>::new());
    lab.finish();
}

#[test]
fn a_restart_removes_instance_namespaces_whose_records_are_gone() {
    let mut lab = Lab::new();
    let e = &mut lab.env;
    let v = e.vpc("10.0.0.0/16");
    let s = e.subnet(&v, "10.0.1.0/24");
    let a = e.instance(&s, "10.0.1.10");
    let b = e.instance(&s, "10.0.1.11");
    lab.reconcile();
    // While vpcd is down, b's records vanish (terminated and purged).
    lab.env.w.remove::<vpc_model::Instance>(&b.id);
    lab.env.w.remove::<vpc_model::NetworkInterface>(&b.eni);
    let mut fresh = Dataplane::new(lab.tag.clone()).expect("dataplane");
    let r = fresh.reconcile(&lab.env.w).expect("adopt");
    assert_eq!(r.deleted, vec![b.id.clone()], "{r:?}");
    assert!(namespaces().contains(&a.id));
    // Teardown finds marked instance namespaces without being told their IDs.
    vpc_dataplane::teardown(&lab.tag, &[]).expect("teardown");
    assert_eq!(Lab::leftovers(&lab.tag), Vec::<String>::new());
    lab.finish();
}

#[test]
fn inter_region_peering_has_a_1500_mtu_and_reports_it() {
    let mut lab = Lab::new();
    let e = &mut lab.env;
    let va = e.vpc("10.1.0.0/16");
    let vb = e.vpc_as(B, testkit::WEST, "10.2.0.0/16", None);
    let sa = e.subnet(&va, "10.1.1.0/24");
    let sb = e.subnet(&vb, "10.2.1.0/24");
    let a = e.instance(&sa, "10.1.1.10");
    e.instance(&sb, "10.2.1.10");
    let pcx = e.peer(&va, &vb, true);
    e.route_to_pcx(&va, "10.2.0.0/16", &pcx);
    e.route_to_pcx(&vb, "10.1.0.0/16", &pcx);
    let gb = e.default_sg(&vb);
    e.allow(&gb, false, "icmp", Some((-1, -1)), "10.1.0.0/16");
    lab.reconcile();
    let big = |size: &str| {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &a.id,
                "ping",
                "-n",
                "-q",
                "-M",
                "do",
                "-s",
                size,
                "-c",
                "1",
                "-W",
                "1",
                "10.2.1.10",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    assert_reach(&a.id, "10.2.1.10");
    assert!(big("1472"), "a 1500-byte packet must pass");
    assert!(
        !big("3000"),
        "a 3028-byte packet must not pass unfragmented"
    );
    // The router told the instance the path MTU ("fragmentation needed").
    let out = Command::new("ip")
        .args(["-n", &a.id, "route", "get", "10.2.1.10"])
        .output()
        .expect("route get");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("mtu 1500"), "no path MTU learned: {text}");
    lab.finish();
}
