//! Privileged tests of the meter against real counters: a small World is
//! reconciled into namespaces under a random tag, pings of a known size cross
//! a peering, and `Meter::poll` must account every byte exactly once, also
//! across a "restart" (a new meter from the persisted baselines) and across
//! the peering's deletion.
//!
//! They need root and fail without it. Every namespace goes in a Drop guard.

#[path = "../src/testkit.rs"]
mod testkit;

use std::collections::hash_map::RandomState;
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::process::{Command, Stdio};
use testkit::{Env, A, B, EAST};
use vpc_dataplane::meter::{Meter, Poll};
use vpc_dataplane::{names, Dataplane};
use vpc_model::usage::{TransferKind, Usage};
use vpc_model::Timestamp;

struct Lab {
    tag: String,
    env: Env,
    dp: Dataplane,
}

impl Lab {
    fn new() -> Lab {
        let mut h = RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let n = (h.finish() & 0xffff) as u16;
        let tag = format!("{n:04x}");
        let dp = Dataplane::new(tag.clone()).unwrap_or_else(|e| {
            panic!("the privileged meter tests must run as root with ip and nft installed: {e}")
        });
        Lab {
            tag,
            env: Env::tagged(n),
            dp,
        }
    }

    fn reconcile(&mut self) {
        self.dp
            .reconcile(&self.env.w)
            .unwrap_or_else(|e| panic!("reconcile failed: {e}"));
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
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

/// `count` echo requests of `payload` bytes; true when all were answered.
fn pings(ns: &str, ip: &str, count: u32, payload: u32) -> bool {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "ping",
            "-n",
            "-q",
            "-c",
            &count.to_string(),
            "-s",
            &payload.to_string(),
            "-i",
            "0.01",
            "-W",
            "1",
            ip,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Bytes and packets of one account's usage of one kind between two zones in a poll.
fn sum(p: &Poll, account: &str, kind: TransferKind, az: &str, peer_az: &str) -> (u64, u64) {
    p.usage
        .iter()
        .filter(|u: &&Usage| {
            u.key.account == account
                && u.key.kind == kind
                && u.key.az == az
                && u.key.peer_az == peer_az
        })
        .fold((0, 0), |(b, n), u| (b + u.bytes, n + u.packets))
}

fn table(ns: &str) -> Option<String> {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "nft",
            "list",
            "table",
            "inet",
            "vpcd_meter",
        ])
        .output()
        .expect("nft");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn every_byte_is_accounted_once_across_a_restart_and_a_deletion() {
    let mut lab = Lab::new();
    let e = &mut lab.env;
    let va = e.vpc_as(A, EAST, "10.1.0.0/16", None);
    let sa = e.subnet_in(&va, "10.1.1.0/24", "us-east-1a");
    let sb_a = e.subnet_in(&va, "10.1.2.0/24", "us-east-1b");
    let vb = e.vpc_as(B, EAST, "10.2.0.0/16", None);
    let sb = e.subnet_in(&vb, "10.2.1.0/24", "us-east-1a");
    let a1 = e.instance(&sa, "10.1.1.10");
    let a2 = e.instance(&sb_a, "10.1.2.10");
    e.instance(&sb, "10.2.1.10");
    let pcx = e.peer(&va, &vb, true);
    e.route_to_pcx(&va, "10.2.0.0/16", &pcx);
    e.route_to_pcx(&vb, "10.1.0.0/16", &pcx);
    let gb = e.default_sg(&vb);
    e.allow(&gb, false, "icmp", Some((-1, -1)), "10.1.0.0/16");
    lab.reconcile();
    let now = Timestamp(1_800_000_000_000);
    let ra = names::router_ns(&lab.tag, &va.meta.id);
    let rb = names::router_ns(&lab.tag, &vb.meta.id);

    let mut meter = Meter::new(lab.tag.clone(), BTreeMap::new()).expect("meter");
    let first = meter.poll(&lab.env.w, 1, now, true);
    assert!(
        first.usage.is_empty(),
        "nothing crossed yet: {:?}",
        first.usage
    );
    meter.persisted(&first);
    assert!(table(&ra).is_some() && table(&rb).is_some());

    // 20 echo requests of 1000 bytes from us-east-1b: 1028 IP bytes each way.
    assert!(
        pings(&a2.id, "10.2.1.10", 20, 1000),
        "pings across the peering failed"
    );
    let p = meter.poll(&lab.env.w, 1, now, true);
    assert_eq!(
        sum(&p, A, TransferKind::PeeringOut, "us-east-1b", "us-east-1a"),
        (20 * 1028, 20)
    );
    assert_eq!(
        sum(&p, A, TransferKind::PeeringIn, "us-east-1b", "us-east-1a"),
        (20 * 1028, 20)
    );
    assert_eq!(
        sum(&p, B, TransferKind::PeeringIn, "us-east-1a", "us-east-1b"),
        (20 * 1028, 20),
        "B's side"
    );
    assert_eq!(
        sum(&p, A, TransferKind::PeeringOut, "us-east-1a", "us-east-1a"),
        (0, 0)
    );
    assert!(p
        .usage
        .iter()
        .all(|u| { u.key.account == if u.key.vpc_id == va.meta.id { A } else { B } }));
    meter.persisted(&p);
    let baselines = p.baselines.clone();

    // A "restart": a new meter resuming from the persisted baselines counts
    // only what came after.
    let mut meter = Meter::new(lab.tag.clone(), baselines).expect("meter");
    assert!(pings(&a1.id, "10.2.1.10", 10, 500), "pings from a1 failed");
    let p = meter.poll(&lab.env.w, 1, now, true);
    assert_eq!(
        sum(&p, A, TransferKind::PeeringOut, "us-east-1a", "us-east-1a"),
        (10 * 528, 10)
    );
    assert_eq!(
        sum(&p, A, TransferKind::PeeringOut, "us-east-1b", "us-east-1a"),
        (0, 0),
        "not counted twice"
    );
    meter.persisted(&p);

    // Traffic after the last read, then the peering goes: the change reads
    // the counters before it removes them.
    assert!(pings(&a1.id, "10.2.1.10", 5, 100));
    lab.env.delete_peering(&pcx, &va);
    let p = meter.poll(&lab.env.w, 2, now, false);
    assert_eq!(
        sum(&p, A, TransferKind::PeeringOut, "us-east-1a", "us-east-1a"),
        (5 * 128, 5)
    );
    assert!(!p.forget.is_empty());
    assert!(
        p.baselines.keys().all(|(_, c)| !c.starts_with("pcx_")),
        "{:?}",
        p.baselines
    );
    assert!(table(&rb).is_none(), "B's router has nothing left to meter");
    meter.persisted(&p);
    drop(lab);
}
