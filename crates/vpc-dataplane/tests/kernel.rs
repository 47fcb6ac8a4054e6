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
        self.listen_on(ns, port, false);
    }

    /// As `listen`, on IPv6 when `v6` (nc listens on IPv4 only by default).
    fn listen_on(&mut self, ns: &str, port: u16, v6: bool) {
        let family: &[&str] = if v6 { &["-6"] } else { &[] };
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "nc"])
            .args(family)
            .args(["-lk", &port.to_string()])
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
    // Bulk TCP through the 1:1 NAT to the public IP.
    let mut conn = Conn::open(&mut lab, &inet, &a.id, "198.51.100.10", 9091);
    assert!(
        conn.ask("bulk 8000000"),
        "8 MB did not make it to the internet and back"
    );
    drop(conn);
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
    // Bulk TCP (BIG TCP super-packets with the fast path on) through both
    // translations: the gateway's masquerade and the router's 1:1 NAT.
    let inet = lab.inet();
    let mut conn = Conn::open(&mut lab, &inet, &app.id, "198.51.100.10", 9091);
    assert!(
        conn.ask("bulk 8000000"),
        "8 MB did not make it through the NAT gateway and back"
    );
    drop(conn);
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

/// An echo server for [`Conn`]: echoes every byte on every connection.
const ECHO_SERVER: &str = r#"
import socket, sys, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen()
def echo(c):
    while True:
        d = c.recv(1 << 16)
        if not d:
            return
        c.sendall(d)
while True:
    c, _ = s.accept()
    threading.Thread(target=echo, args=(c,), daemon=True).start()
"#;

/// The client side of [`Conn`]: one TCP connection for its whole life.
/// `bulk N` sends N bytes and reads them back; `probe SECONDS` sends a fresh
/// token and waits that long for its echo. Each answers `ok` or `fail`.
const ECHO_CLIENT: &str = r#"
import socket, sys, threading, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
print("connected", flush=True)
got = b""
n = 0
for line in sys.stdin:
    cmd, arg = line.split()
    if cmd == "bulk":
        size = int(arg)
        c.settimeout(20)
        # Send from a thread: the echo fills the buffers the other way.
        threading.Thread(target=c.sendall, args=(b"x" * size,), daemon=True).start()
        want = size
        try:
            while want > 0:
                d = c.recv(1 << 16)
                if not d:
                    break
                want -= len(d)
        except OSError:
            pass
        print("ok" if want == 0 else "fail", flush=True)
        continue
    n += 1
    token = b"<%d>" % n
    deadline = time.time() + float(arg)
    try:
        c.sendall(token)
        while token not in got and time.time() < deadline:
            c.settimeout(max(0.01, deadline - time.time()))
            try:
                d = c.recv(1 << 16)
            except socket.timeout:
                continue
            if not d:
                break
            got += d
    except OSError:
        pass
    if token in got:
        got = got[got.index(token) + len(token):]
        print("ok", flush=True)
    else:
        print("fail", flush=True)
"#;

/// A long-lived TCP connection from one namespace to an echo server in another.
struct Conn {
    child: Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Conn {
    fn open(lab: &mut Lab, server_ns: &str, client_ns: &str, ip: &str, port: u16) -> Conn {
        let server = Command::new("ip")
            .args(["netns", "exec", server_ns, "python3", "-c", ECHO_SERVER])
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn echo server");
        lab.children.push(server);
        std::thread::sleep(std::time::Duration::from_millis(300));
        let mut child = Command::new("ip")
            .args(["netns", "exec", client_ns, "python3", "-c", ECHO_CLIENT, ip])
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn echo client");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        let mut c = Conn {
            child,
            stdin,
            stdout,
        };
        assert_eq!(c.answer(), "connected", "no connection to {ip}:{port}");
        c
    }

    fn answer(&mut self) -> String {
        use std::io::BufRead;
        let mut line = String::new();
        let _ = self.stdout.read_line(&mut line);
        line.trim().to_string()
    }

    fn ask(&mut self, cmd: &str) -> bool {
        use std::io::Write;
        writeln!(self.stdin, "{cmd}").expect("write to the echo client");
        self.stdin.flush().expect("flush");
        self.answer() == "ok"
    }

    /// Whether a fresh token comes back within `secs`.
    fn works(&mut self, secs: f64) -> bool {
        self.ask(&format!("probe {secs}"))
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An established connection across a peering is held to every rule change
/// on its very next packet: network ACLs are stateless (a deny on either
/// side, in either direction, cuts it, and removing the deny lets the same
/// connection go on), a removed route or a deleted peering cuts it, and a
/// security group keeps its promise of statefulness (revoking the rule that
/// admitted the connection leaves it up; new connections are refused). Bulk
/// transfer goes through large (BIG TCP) super-packets with the fast path
/// on, which must not change any of this.
#[test]
fn an_established_connection_across_a_peering_follows_rule_changes() {
    const PORT: u16 = 9090;
    let mut lab = Lab::new();
    let (va, vb, a, b) = two_vpcs(&mut lab, B);
    let pcx = lab.env.peer(&va, &vb, true);
    lab.env.route_to_pcx(&va, "10.2.0.0/16", &pcx);
    lab.env.route_to_pcx(&vb, "10.1.0.0/16", &pcx);
    let gb = lab.env.default_sg(&vb);
    lab.env.allow(
        &gb,
        false,
        "tcp",
        Some((PORT as i64, PORT as i64)),
        "10.1.0.0/16",
    );
    lab.reconcile();
    let sa = lab
        .env
        .w
        .get::<vpc_model::Subnet>(
            &lab.env
                .w
                .get::<vpc_model::NetworkInterface>(&a.eni)
                .expect("eni")
                .subnet_id,
        )
        .expect("subnet")
        .clone();
    let sb = lab
        .env
        .w
        .get::<vpc_model::Subnet>(
            &lab.env
                .w
                .get::<vpc_model::NetworkInterface>(&b.eni)
                .expect("eni")
                .subnet_id,
        )
        .expect("subnet")
        .clone();
    let mut conn = Conn::open(&mut lab, &b.id, &a.id, "10.2.1.10", PORT);
    assert!(
        conn.ask("bulk 8000000"),
        "8 MB did not make it there and back"
    );
    assert!(conn.works(5.0), "the connection does not work");

    // (b) Revoking the security-group rule that admitted it: the tracked
    // connection goes on (docs/dataplane.md, "Filtering" 4), new ones fail.
    lab.env.revoke_all_ingress(&gb);
    lab.reconcile();
    assert!(
        !tcp(&a.id, "10.2.1.10", PORT),
        "a new connection passed without a rule"
    );
    assert!(
        conn.works(5.0),
        "a tracked connection was cut by a group change"
    );
    assert!(
        conn.ask("bulk 2000000"),
        "bulk transfer after the group change"
    );

    // (a) A network-ACL deny, on either side and in either direction, cuts
    // it at once; deleting the deny lets the same connection go on.
    let cases = [
        (
            &sa,
            true,
            "10.2.0.0/16",
            "A's subnet, outbound (the requests)",
        ),
        (
            &sa,
            false,
            "10.2.0.0/16",
            "A's subnet, inbound (the replies)",
        ),
        (
            &sb,
            false,
            "10.1.0.0/16",
            "B's subnet, inbound (the requests)",
        ),
        (
            &sb,
            true,
            "10.1.0.0/16",
            "B's subnet, outbound (the replies)",
        ),
    ];
    for (subnet, egress, cidr, what) in cases {
        lab.env.acl_entry(
            subnet,
            50,
            "6",
            "deny",
            egress,
            cidr,
            Some((0, 65535)),
            None,
        );
        lab.reconcile();
        assert!(
            !conn.works(1.5),
            "{what}: a deny did not cut the connection"
        );
        let acl = vpc_model::ops::acl::acl_for_subnet(&lab.env.w, &subnet.meta.id)
            .expect("acl")
            .meta
            .id
            .clone();
        let (o, r) = (subnet.meta.owner.clone(), subnet.meta.region.clone());
        lab.env.run(&o, &r, |w, c| {
            vpc_model::ops::acl::delete_entry(w, c, &acl, Some(50), egress)
        });
        lab.reconcile();
        assert!(conn.works(15.0), "{what}: the connection did not resume");
    }

    // (d) Removing the route that carries it cuts it; adding it back lets it go on.
    let rtb = lab.env.main_rtb(&va);
    let spec = vpc_model::ops::route::RouteSpec {
        destination_cidr_block: Some("10.2.0.0/16".into()),
        ..Default::default()
    };
    let (o, r) = (va.meta.owner.clone(), va.meta.region.clone());
    lab.env.run(&o, &r, |w, c| {
        vpc_model::ops::route::delete_route(w, c, &rtb, &spec)
    });
    lab.reconcile();
    assert!(
        !conn.works(1.5),
        "removing the route did not cut the connection"
    );
    lab.env.route_to_pcx(&va, "10.2.0.0/16", &pcx);
    lab.reconcile();
    assert!(
        conn.works(15.0),
        "the connection did not resume with the route"
    );

    // (c) Deleting the peering cuts it.
    lab.env.delete_peering(&pcx, &va);
    lab.reconcile();
    assert!(
        !conn.works(1.5),
        "deleting the peering did not cut the connection"
    );
    drop(conn);
    lab.finish();
}

/// The fast path's link setting: every veth of a router, instance and peering
/// gets the BIG TCP IPv4 size; a data plane with it off brings them back to
/// the kernel's default; either way a second pass changes nothing.
#[test]
fn big_tcp_is_set_on_every_veth_and_off_again() {
    use vpc_dataplane::offload::{ipv4_sizes, BIG_TCP_SIZE, LEGACY_SIZE};
    let mut lab = Lab::new();
    let (va, vb, a, b) = two_vpcs(&mut lab, B);
    lab.env.peer(&va, &vb, true);
    lab.reconcile();
    let namespaces = [
        names::router_ns(&lab.tag, &va.meta.id),
        names::router_ns(&lab.tag, &vb.meta.id),
        a.id.clone(),
        b.id.clone(),
    ];
    let check = |size: u32| {
        for ns in &namespaces {
            let links = ipv4_sizes(ns).expect("rtnetlink dump");
            let veths: Vec<_> = links.iter().filter(|(n, _)| *n != "lo").collect();
            assert!(!veths.is_empty(), "{ns}: no links");
            for (name, s) in veths {
                assert_eq!(
                    (s.gso_ipv4_max, s.gro_ipv4_max),
                    (size, size),
                    "{ns} {name}"
                );
            }
            assert_eq!(
                links["lo"].gso_ipv4_max, LEGACY_SIZE,
                "{ns} lo is not ours to change"
            );
        }
    };
    check(BIG_TCP_SIZE);
    let mut off = Dataplane::new(lab.tag.clone())
        .expect("dataplane")
        .with_big_tcp(false);
    off.reconcile(&lab.env.w)
        .expect("reconcile with the fast path off");
    check(LEGACY_SIZE);
    let r = off.reconcile(&lab.env.w).expect("again");
    assert!(r.is_noop() && r.kernel_ops == 0, "{r:?}");
    off.forget();
    off.reconcile(&lab.env.w).expect("a full pass");
    check(LEGACY_SIZE);
    lab.dp = off;
    lab.finish();
}

/// Runs `args` inside `ns` and insists that it succeeds; its output.
#[track_caller]
fn by_hand(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .expect("ip netns exec");
    assert!(
        out.status.success(),
        "{args:?} in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Lab {
    /// Makes every following reconcile the periodic full pass.
    fn periodic_every_pass(&mut self) {
        let dp = std::mem::replace(
            &mut self.dp,
            Dataplane::new(self.tag.clone()).expect("dataplane"),
        );
        self.dp = dp.with_full_plan_every(std::time::Duration::ZERO);
    }
}

#[test]
fn the_periodic_pass_restores_a_route_and_an_nft_chain_deleted_by_hand() {
    let mut lab = Lab::new();
    let e = &mut lab.env;
    let v = e.vpc("10.0.0.0/16");
    let s1 = e.subnet(&v, "10.0.1.0/24");
    let s2 = e.subnet(&v, "10.0.2.0/24");
    let a = e.instance(&s1, "10.0.1.10");
    e.instance(&s1, "10.0.1.11");
    let c = e.instance(&s2, "10.0.2.10");
    // ICMP from the other subnet is denied into s1.
    e.acl_entry(
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
    assert_reach(&a.id, "10.0.1.11");
    assert_blocked(&c.id, "10.0.1.10");

    // By hand: the route to 10.0.1.11 in the subnets' route table, and the
    // router's `forward` chain (the one chain nothing else refers to).
    let router = names::router_ns(&lab.tag, &v.meta.id);
    let table = names::table_id(&v.main_route_table).to_string();
    by_hand(
        &router,
        &["ip", "route", "del", "10.0.1.11/32", "table", &table],
    );
    by_hand(
        &router,
        &["nft", "delete", "chain", "inet", "vpcd", "forward"],
    );
    assert_blocked(&a.id, "10.0.1.11");
    assert!(
        ping(&c.id, "10.0.1.10"),
        "without its forward chain the router should filter nothing"
    );

    // A pass for an unchanged World that is not the periodic one trusts
    // what it applied…
    let r = lab.reconcile();
    assert!(r.is_noop() && r.kernel_ops == 0, "{r:?}");
    // …the periodic pass compares with the kernel and repairs both.
    lab.periodic_every_pass();
    let r = lab.reconcile();
    assert_eq!(r.updated, vec![router.clone()], "{r:?}");
    assert!(r.created.is_empty() && r.deleted.is_empty(), "{r:?}");
    assert!(
        by_hand(&router, &["ip", "route", "show", "table", &table]).contains("10.0.1.11 dev e-")
    );
    by_hand(
        &router,
        &["nft", "list", "chain", "inet", "vpcd", "forward"],
    );
    assert_reach(&a.id, "10.0.1.11");
    assert_blocked(&c.id, "10.0.1.10");
    // Once repaired, the next periodic pass finds nothing to do.
    let r = lab.reconcile();
    assert!(r.is_noop() && r.kernel_ops == 0, "{r:?}");

    // An instance namespace deleted by hand comes back, wired.
    Command::new("ip")
        .args(["netns", "del", &a.id])
        .status()
        .expect("ip netns del");
    let r = lab.reconcile();
    assert_eq!(r.created, vec![a.id.clone()], "{r:?}");
    assert_reach(&a.id, "10.0.1.11");
    lab.finish();
}

/// The periodic pass lists a namespace's nft ruleset only when an nft
/// transaction happened there since vpcd last saw its tables match (its own
/// load, or a listing): anyone's change, even to a table that is not
/// vpcd's, makes it list once more, and a chain deleted by hand still comes
/// back.
#[test]
fn the_periodic_pass_lists_only_nft_rulesets_changed_since_it_last_saw_them() {
    let mut lab = Lab::new();
    let e = &mut lab.env;
    let v = e.vpc("10.0.0.0/16");
    let s1 = e.subnet(&v, "10.0.1.0/24");
    let a = e.instance(&s1, "10.0.1.10");
    e.instance(&s1, "10.0.1.11");
    lab.reconcile();
    let router = names::router_ns(&lab.tag, &v.meta.id);
    lab.periodic_every_pass();
    // Nothing changed since vpcd loaded the router's tables: no listing.
    let r = lab.reconcile();
    assert!(r.is_noop() && r.kernel_ops == 0, "{r:?}");
    assert_eq!(lab.dp.nft_listings(), 0);
    // Someone else's table: listed once, found matching, left alone…
    by_hand(&router, &["nft", "add", "table", "inet", "mine"]);
    let r = lab.reconcile();
    assert!(r.is_noop() && r.kernel_ops == 0, "{r:?}");
    assert_eq!(lab.dp.nft_listings(), 1);
    // …and not listed again while nothing else changes.
    let r = lab.reconcile();
    assert!(r.is_noop() && r.kernel_ops == 0, "{r:?}");
    assert_eq!(lab.dp.nft_listings(), 1);
    // A chain of vpcd's deleted by hand: listed and replaced.
    by_hand(
        &router,
        &["nft", "delete", "chain", "inet", "vpcd", "forward"],
    );
    let r = lab.reconcile();
    assert_eq!(r.updated, vec![router.clone()], "{r:?}");
    assert_eq!(lab.dp.nft_listings(), 2);
    by_hand(
        &router,
        &["nft", "list", "chain", "inet", "vpcd", "forward"],
    );
    by_hand(&router, &["nft", "list", "table", "inet", "mine"]);
    let r = lab.reconcile();
    assert!(r.is_noop() && r.kernel_ops == 0, "{r:?}");
    assert_eq!(lab.dp.nft_listings(), 2);
    assert_reach(&a.id, "10.0.1.11");
    lab.finish();
}

/// A link of vpcd's names made by hand in an instance (which receives its
/// links from the router and makes none) is removed by the periodic pass,
/// with its routes; the planned `eth0` keeps working.
#[test]
fn the_periodic_pass_removes_an_unplanned_eth_link_from_an_instance() {
    let mut lab = Lab::new();
    let e = &mut lab.env;
    let v = e.vpc("10.0.0.0/16");
    let s1 = e.subnet(&v, "10.0.1.0/24");
    let a = e.instance(&s1, "10.0.1.10");
    e.instance(&s1, "10.0.1.11");
    lab.reconcile();
    by_hand(
        &a.id,
        &[
            "ip", "link", "add", "eth7", "type", "veth", "peer", "name", "x-7",
        ],
    );
    by_hand(&a.id, &["ip", "link", "set", "eth7", "up"]);
    by_hand(
        &a.id,
        &["ip", "route", "add", "198.18.0.0/15", "dev", "eth7"],
    );
    lab.periodic_every_pass();
    let r = lab.reconcile();
    assert_eq!(r.updated, vec![a.id.clone()], "{r:?}");
    let links = by_hand(&a.id, &["ip", "-o", "link", "show"]);
    assert!(!links.contains("eth7") && !links.contains("x-7"), "{links}");
    assert!(!by_hand(&a.id, &["ip", "route", "show"]).contains("198.18.0.0/15"));
    let r = lab.reconcile();
    assert!(r.is_noop() && r.kernel_ops == 0, "{r:?}");
    assert_reach(&a.id, "10.0.1.11");
    lab.finish();
}

#[test]
fn the_periodic_pass_leaves_what_vpcd_does_not_own_alone() {
    let mut lab = Lab::new();
    let e = &mut lab.env;
    let v = e.vpc("10.0.0.0/16");
    let s1 = e.subnet(&v, "10.0.1.0/24");
    let a = e.instance(&s1, "10.0.1.10");
    e.instance(&s1, "10.0.1.11");
    lab.reconcile();
    let router = names::router_ns(&lab.tag, &v.meta.id);
    // Kernel objects vpcd does not own (docs/dataplane.md, "Reconciling"):
    // a link of another name with its address, a route in a table that is
    // not vpcd's, a rule at another priority, another nft table; in an
    // instance, a route outside the main table.
    let mine: &[&[&str]] = &[
        &[
            "ip", "link", "add", "x-mine", "type", "veth", "peer", "name", "x-mine2",
        ],
        &["ip", "addr", "add", "192.0.2.1/24", "dev", "x-mine"],
        &["ip", "link", "set", "x-mine", "up"],
        &[
            "ip",
            "route",
            "add",
            "198.18.0.0/15",
            "dev",
            "x-mine",
            "table",
            "100",
        ],
        &[
            "ip", "rule", "add", "iif", "x-mine", "lookup", "100", "pref", "500",
        ],
        &["nft", "add", "table", "inet", "mine"],
        &[
            "nft",
            "add",
            "chain",
            "inet",
            "mine",
            "input",
            "{ type filter hook input priority 0; policy accept; }",
        ],
    ];
    for cmd in mine {
        by_hand(&router, cmd);
    }
    by_hand(
        &a.id,
        &[
            "ip",
            "route",
            "add",
            "198.18.0.0/15",
            "dev",
            "eth0",
            "table",
            "100",
        ],
    );
    lab.periodic_every_pass();
    let r = lab.reconcile();
    assert!(r.is_noop() && r.kernel_ops == 0, "{r:?}");
    assert!(by_hand(&router, &["ip", "addr", "show", "dev", "x-mine"]).contains("192.0.2.1/24"));
    assert!(by_hand(&router, &["ip", "route", "show", "table", "100"]).contains("198.18.0.0/15"));
    assert!(by_hand(&router, &["ip", "rule", "show"]).contains("500:"));
    by_hand(&router, &["nft", "list", "chain", "inet", "mine", "input"]);
    assert!(by_hand(&a.id, &["ip", "route", "show", "table", "100"]).contains("198.18.0.0/15"));
    assert_reach(&a.id, "10.0.1.11");
    lab.finish();
}

/// IPv6-only (`Ipv6Native`) subnets: instances launched through the model
/// get only an IPv6 address and a default IPv6 route; ping and TCP over
/// IPv6 reach IPv6-only and dual-stack instances of the VPC and, where
/// routes exist, across a peering; security groups and network ACLs apply.
#[test]
fn ipv6_only_instances_talk_over_ipv6_only() {
    let mut lab = Lab::new();
    let e = &mut lab.env;
    let va = e.vpc_as(
        testkit::A,
        testkit::EAST,
        "10.1.0.0/16",
        Some("2600:1f18:a::/56"),
    );
    let vb = e.vpc_as(B, testkit::EAST, "10.2.0.0/16", Some("2600:1f18:b::/56"));
    let s6 = e.ipv6_only_subnet(&va, "2600:1f18:a:1::/64");
    let dual = e.subnet(&va, "10.1.2.0/24");
    let ga = e.default_sg(&va);
    let gb = e.default_sg(&vb);
    let a1 = e.launch_ipv6_only(&s6, std::slice::from_ref(&ga));
    let a2 = e.launch_ipv6_only(&s6, std::slice::from_ref(&ga));
    let c = e.instance(&dual, "10.1.2.10");
    e.add_ipv6(&c.eni, "2600:1f18:a:2::10");
    let sb = e.ipv6_only_subnet(&vb, "2600:1f18:b:1::/64");
    let b1 = e.launch_ipv6_only(&sb, std::slice::from_ref(&gb));
    lab.reconcile();

    // The namespace holds no IPv4 address and no IPv4 route; IPv6 goes
    // through the router's link-local gateway.
    let v4 = by_hand(
        &a1.id,
        &["ip", "-4", "-o", "addr", "show", "scope", "global"],
    );
    assert!(v4.trim().is_empty(), "IPv4 in an IPv6-only instance: {v4}");
    let r4 = by_hand(&a1.id, &["ip", "-4", "route", "show"]);
    assert!(
        r4.trim().is_empty(),
        "IPv4 routes in an IPv6-only instance: {r4}"
    );
    let r6 = by_hand(&a1.id, &["ip", "-6", "route", "show", "default"]);
    assert!(r6.contains("via fe80::1"), "no default IPv6 route: {r6}");
    let addrs = by_hand(
        &a1.id,
        &["ip", "-6", "-o", "addr", "show", "scope", "global"],
    );
    assert!(addrs.contains(&a1.ip), "{addrs}");

    // Inside the VPC: IPv6-only to IPv6-only, to dual-stack and back; TCP too.
    assert_reach(&a1.id, &a2.ip);
    assert_reach(&a1.id, "2600:1f18:a:2::10");
    assert_reach(&c.id, &a1.ip);
    lab.listen_on(&a2.id, 8080, true);
    assert!(tcp(&a1.id, &a2.ip, 8080), "TCP over IPv6 refused");
    // No IPv4 path exists from it at all.
    assert_blocked(&a1.id, "10.1.2.10");

    // A peering without routes: nothing passes; with routes both ways and
    // B's group admitting A's block, ping6 passes.
    let pcx = lab.env.peer(&va, &vb, true);
    lab.reconcile();
    assert_blocked(&a1.id, &b1.ip);
    lab.env.route_to_pcx(&va, "2600:1f18:b::/56", &pcx);
    lab.env.route_to_pcx(&vb, "2600:1f18:a::/56", &pcx);
    lab.reconcile();
    assert_blocked(&a1.id, &b1.ip);
    lab.env
        .allow(&gb, false, "icmpv6", Some((-1, -1)), "2600:1f18:a::/56");
    lab.reconcile();
    assert_reach(&a1.id, &b1.ip);

    // A network ACL deny on the IPv6-only subnet stops the dual-stack
    // subnet's traffic; the subnet's own traffic never meets its ACL.
    lab.env.acl_entry(
        &s6,
        50,
        "-1",
        "deny",
        false,
        "2600:1f18:a:2::/64",
        None,
        None,
    );
    lab.reconcile();
    assert_blocked(&c.id, &a1.ip);
    assert_reach(&a2.id, &a1.ip);

    // The security group: without its ingress rules, ping6 and TCP fail.
    lab.env.revoke_all_ingress(&ga);
    lab.reconcile();
    assert_blocked(&a2.id, &a1.ip);
    assert!(
        !tcp(&a1.id, &a2.ip, 8080),
        "TCP passed a group with no rules"
    );
    lab.finish();
}

/// The flags of a link as `ip -o link show` gives them (`UP`, `LOWER_UP`, …).
fn link_flags(ns: &str, link: &str) -> Vec<String> {
    let out = by_hand(ns, &["ip", "-o", "link", "show", "dev", link]);
    let flags = out
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(flags, _)| flags.to_string())
        .unwrap_or_default();
    flags.split(',').map(str::to_string).collect()
}

/// A sysctl of a namespace, as `sysctl` reads it from `/proc/sys`.
fn sysctl_of(ns: &str, key: &str) -> String {
    by_hand(ns, &["sysctl", "-n", key]).trim().to_string()
}

/// Sysctls are written as a namespace is made and as its links are (through
/// a private procfs: the values must be the namespace's own, as everyone
/// else reads them); a veth's creating end is made up only when planned up
/// and the other end follows its own plan (a stopped instance's stays
/// down); sysctls changed by hand are restored by the periodic pass alone.
#[test]
fn sysctls_and_link_states_hold_from_creation_and_the_periodic_pass_restores_sysctls() {
    let mut lab = Lab::new();
    let e = &mut lab.env;
    let v = e.vpc("10.0.0.0/16");
    let s = e.subnet(&v, "10.0.1.0/24");
    let a = e.instance(&s, "10.0.1.10");
    let b = e.instance(&s, "10.0.1.11");
    e.set_state(&b.id, InstanceState::Stopped);
    let r = lab.reconcile();
    assert_eq!(r.created.len(), 3, "{r:?}");
    let router = names::router_ns(&lab.tag, &v.meta.id);
    assert_eq!(sysctl_of(&router, "net.ipv4.ip_forward"), "1");
    assert_eq!(sysctl_of(&router, "net.ipv4.conf.all.rp_filter"), "0");
    assert_eq!(sysctl_of(&router, "net.ipv6.conf.default.accept_dad"), "0");
    for i in [&a.id, &b.id] {
        assert_eq!(sysctl_of(i, "net.ipv6.conf.all.accept_dad"), "0", "{i}");
        assert_eq!(sysctl_of(i, "net.ipv6.conf.default.accept_dad"), "0", "{i}");
    }
    let links = by_hand(&router, &["ip", "-o", "link", "show"]);
    let router_links: Vec<String> = links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n.starts_with("e-"))
        .collect();
    assert_eq!(router_links.len(), 2, "{links}");
    for l in &router_links {
        assert!(link_flags(&router, l).contains(&"UP".to_string()), "{l}");
        assert_eq!(
            sysctl_of(&router, &format!("net.ipv4.conf.{l}.proxy_arp")),
            "1"
        );
        assert_eq!(
            sysctl_of(&router, &format!("net.ipv4.neigh.{l}.proxy_delay")),
            "0"
        );
    }
    assert!(link_flags(&a.id, "eth0").contains(&"UP".to_string()));
    assert!(!link_flags(&b.id, "eth0").contains(&"UP".to_string()));
    assert_reach(&a.id, "10.0.1.1");
    let r = lab.reconcile();
    assert!(r.is_noop() && r.kernel_ops == 0, "{r:?}");

    // By hand: a namespace-wide sysctl of the router and of an instance,
    // and a link's.
    let e0 = &router_links[0];
    by_hand(&router, &["sysctl", "-qw", "net.ipv4.ip_forward=0"]);
    by_hand(
        &router,
        &["sysctl", "-qw", &format!("net.ipv4.conf.{e0}.proxy_arp=0")],
    );
    by_hand(&a.id, &["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=1"]);
    let r = lab.reconcile();
    assert!(r.is_noop() && r.kernel_ops == 0, "{r:?}");
    lab.periodic_every_pass();
    let r = lab.reconcile();
    let mut updated = r.updated.clone();
    updated.sort();
    let mut want = vec![router.clone(), a.id.clone()];
    want.sort();
    assert_eq!(updated, want, "{r:?}");
    assert_eq!(r.kernel_ops, 3, "{r:?}");
    assert_eq!(sysctl_of(&router, "net.ipv4.ip_forward"), "1");
    assert_eq!(
        sysctl_of(&router, &format!("net.ipv4.conf.{e0}.proxy_arp")),
        "1"
    );
    assert_eq!(sysctl_of(&a.id, "net.ipv6.conf.all.accept_dad"), "0");
    assert_reach(&a.id, "10.0.1.1");
    let r = lab.reconcile();
    assert!(r.is_noop() && r.kernel_ops == 0, "{r:?}");
    lab.finish();
}
