//! Data-plane realization time (root): builds a World of VPCS × INSTANCES
//! (default 200 × 10) through the model, then times one `reconcile` from
//! that World to the last namespace configured, and the pass after it
//! (nothing to do), and the periodic pass after that (every namespace
//! compared with the kernel; nothing to repair). Everything runs under a random tag and is torn down at
//! the end (also on panic). Used by `scripts/bench-dataplane.sh realize`.
//!
//! Usage: `realize_bench [VPCS] [INSTANCES]`; prints one JSON line.

#[path = "../src/testkit.rs"]
mod testkit;

use std::time::Instant;
use testkit::Env;
use vpc_dataplane::{names, Dataplane};

/// Removes everything under the tag when dropped.
struct Guard {
    tag: String,
    instances: Vec<String>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(e) = vpc_dataplane::teardown(&self.tag, &self.instances) {
            eprintln!("teardown: {e}");
        }
    }
}

/// CPU seconds used so far by this process (all threads) and by its
/// waited-for children (`nft`), from `/proc/self/stat`.
fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name, which ends with the last ')'.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // utime, stime, cutime, cstime are fields 14-17 (index 11-14 here), in ticks.
    let tick = 100.0;
    ((f[11] + f[12]) / tick, (f[13] + f[14]) / tick)
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("a number"))
        .collect();
    let vpcs = args.first().copied().unwrap_or(200);
    let per_vpc = args.get(1).copied().unwrap_or(10);
    assert!(
        vpcs <= 250 && per_vpc <= 200,
        "at most 250 VPCs of 200 instances"
    );

    // A tag no namespace uses yet.
    let existing: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let n = loop {
        let n = (std::process::id() as u16) ^ (Instant::now().elapsed().subsec_nanos() as u16);
        let tag = format!("{n:04x}");
        if !existing.iter().any(|ns| {
            ns.starts_with(&names::ns_prefix(&tag)) || ns.starts_with(&format!("i-{tag}"))
        }) {
            break n;
        }
    };
    let tag = format!("{n:04x}");
    let mut env = Env::tagged(n);
    let mut instances = Vec::new();
    for v in 0..vpcs {
        let cidr = format!("10.{}.{}.0/23", v / 100, (v % 100) * 2);
        let vpc = env.vpc(&cidr);
        let subnet = env.subnet(&vpc, &cidr);
        for i in 0..per_vpc {
            let ip = format!("10.{}.{}.{}", v / 100, (v % 100) * 2, 10 + i);
            instances.push(env.instance(&subnet, &ip).id);
        }
    }
    let _guard = Guard {
        tag: tag.clone(),
        instances: instances.clone(),
    };
    let mut dp = Dataplane::new(tag).expect("the benchmark needs root with nft and conntrack");
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let (cpu0, child0) = cpu_seconds();
    let t0 = Instant::now();
    let first = dp.reconcile(&env.w).expect("reconcile");
    let realized = t0.elapsed();
    let (cpu1, child1) = cpu_seconds();
    let t1 = Instant::now();
    let again = dp.reconcile(&env.w).expect("second reconcile");
    let idle = t1.elapsed();
    assert!(again.is_noop(), "the second pass changed something");
    // The periodic pass (drift repair: every namespace compared with the
    // kernel) for the same World, which finds nothing to change.
    let mut dp = dp.with_full_plan_every(std::time::Duration::ZERO);
    let t2 = Instant::now();
    let periodic = dp.reconcile(&env.w).expect("periodic reconcile");
    let periodic_s = t2.elapsed();
    assert!(
        periodic.is_noop() && periodic.kernel_ops == 0,
        "the periodic pass changed something: {periodic:?}"
    );
    let missing = instances
        .iter()
        .filter(|i| !std::path::Path::new(&format!("/run/netns/{i}")).exists())
        .count();
    assert_eq!(missing, 0, "instance namespaces missing");
    println!(
        "{{\"vpcs\": {vpcs}, \"instances\": {}, \"namespaces\": {}, \"realize_s\": {:.3}, \"kernel_ops\": {}, \"idle_pass_s\": {:.3}, \"periodic_pass_s\": {:.3}, \"periodic_nft_listings\": {}, \"cpu_s\": {:.2}, \"children_cpu_s\": {:.2}, \"load\": \"{}\"}}",
        instances.len(),
        first.created.len(),
        realized.as_secs_f64(),
        first.kernel_ops,
        idle.as_secs_f64(),
        periodic_s.as_secs_f64(),
        dp.nft_listings(),
        cpu1 - cpu0,
        child1 - child0,
        load.join(" ")
    );
}
