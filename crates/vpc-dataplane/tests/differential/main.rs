//! The differential test: the pure reachability evaluator
//! (`vpc_reach`) against the kernel, on random topologies.
//!
//! A proptest strategy generates small topologies as data (2–4 VPCs,
//! possibly overlapping, in up to three accounts and two regions; 1–2
//! subnets each, 1–2 instances per subnet, some with public IPs or stopped;
//! internet gateways; peerings driven to pending-acceptance, active,
//! rejected, deleted or failed; routes to peers, to third VPCs through a
//! peering (transit), to 0.0.0.0/0 via a peering or an internet gateway;
//! security-group rules from CIDRs or group references, also across
//! peerings; network ACL entries in both directions, some refusing only the
//! return traffic) and a list of probes. Each topology is built through the
//! model's operations (an operation the model refuses is simply skipped and
//! logged), realised with a fresh [`Dataplane`] under a random tag, and every
//! probe is both analysed ([`reach::analyze_opts`], with the client's real
//! source port) and sent for real between the namespaces (ping; a TCP
//! connection; a UDP datagram answered by an echo server, so the reply path
//! counts). Any disagreement fails the test with the seed, the topology, the
//! tuple and the evaluator's explanations, after proptest has shrunk it.
//!
//! Needs root (it fails, never skips, without it) and python3 (the probe
//! client and server). `VPCD_DIFF_CASES` sets the number of topologies
//! (default 6), `VPCD_DIFF_SECONDS` runs batches until a time budget is
//! spent, `VPCD_DIFF_SEED` replays a run, `VPCD_DIFF_SHRINK_SECS` bounds
//! shrinking (default 120), `VPCD_DIFF_VERBOSE` prints every tuple's
//! verdicts. The last line is machine-readable:
//! `DIFF-SUMMARY topologies=N tuples=M reachable=R disagreements=D seconds=S seed=X`
//! (the counts include the topologies realised while shrinking a failure).

#[path = "../../src/testkit.rs"]
mod testkit;

mod build;
mod dump;
mod topology;

use build::*;
use dump::*;
use topology::*;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use testkit::{Env, A, B, C, EAST, WEST};
use vpc_dataplane::{names, Dataplane};
use vpc_model::ops::{self, acl, peering, route, sg};
use vpc_model::*;
use vpc_reach::{self as reach, Analysis, Endpoint, Options, Protocol, Query, INTERNET_HOST_V4};

// ---- the lab: one realised topology, torn down on drop ----------------------

fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
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

fn leftovers(tag: &str) -> Vec<String> {
    let prefix = names::ns_prefix(tag);
    let inst = format!("i-{tag}");
    namespaces()
        .into_iter()
        .filter(|n| n.starts_with(&prefix) || n.starts_with(&inst))
        .collect()
}

struct Lab {
    tag: String,
    env: Env,
    dp: Dataplane,
    children: Vec<Child>,
}

impl Lab {
    fn new() -> Lab {
        let (tag, n) = loop {
            let n = (random_u64() & 0xffff) as u16;
            let tag = format!("{n:04x}");
            if leftovers(&tag).is_empty() {
                break (tag, n);
            }
        };
        let dp = Dataplane::new(tag.clone()).unwrap_or_else(|e| {
            panic!(
                "the differential test must run as root with ip, nft and conntrack installed: {e}"
            )
        });
        Lab {
            tag,
            env: Env::tagged(n),
            dp,
            children: Vec::new(),
        }
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
            .iter::<Instance>()
            .map(|i| i.meta.id.clone())
            .collect();
        if let Err(e) = vpc_dataplane::teardown(&self.tag, &ids) {
            eprintln!("teardown of {} failed: {e}", self.tag);
        }
    }
}

// ---- probing ------------------------------------------------------------------

/// The probe server: answers every TCP connection and UDP datagram on the
/// given ports with its name.
const SERVER: &str = r#"
import ctypes, selectors, socket, sys
try:
    ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG: SIGKILL when the test dies
except Exception:
    pass
name, bind, tcp, udp = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
sel = selectors.DefaultSelector()
for p in [int(x) for x in tcp.split(',') if x]:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((bind, p)); s.listen(64); s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, 'tcp')
for p in [int(x) for x in udp.split(',') if x]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((bind, p)); s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, 'udp')
print('ready', flush=True)
while True:
    for key, _ in sel.select():
        s = key.fileobj
        try:
            if key.data == 'tcp':
                c, _ = s.accept()
                c.settimeout(1)
                c.sendall(name.encode())
                c.close()
            else:
                d, a = s.recvfrom(2048)
                s.sendto(name.encode(), a)
        except OSError:
            pass
"#;

/// The probe client: connects (TCP) or sends a datagram (UDP, up to three
/// times) from an explicit source port and prints who answered.
const CLIENT: &str = r#"
import socket, sys
proto, dst, port, sport, bind = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == 'tcp' else socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind((bind, sport))
    data = b''
    if proto == 'tcp':
        s.settimeout(1.0)
        s.connect((dst, port))
        data = s.recv(256)
    else:
        s.settimeout(0.5)
        for _ in range(3):
            s.sendto(b'probe', (dst, port))
            try:
                data, _ = s.recvfrom(256)
                break
            except socket.timeout:
                pass
except OSError as e:
    print('ERR', e)
    sys.exit(1)
if not data:
    print('ERR no reply')
    sys.exit(1)
print(data.decode())
"#;

fn python() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

#[derive(Debug, Clone)]
struct Probe {
    /// Namespace the client runs in.
    src_ns: String,
    /// Source address to bind (the internet's test host), else any.
    bind: Option<Ipv4Addr>,
    dst: IpAddr,
    proto: Protocol,
    port: u16,
    sport: u16,
    /// Who must answer a TCP/UDP probe (a namespace name); None: anyone.
    responder: Option<String>,
    label: String,
    analysis: Analysis,
}

#[derive(Debug, Clone)]
struct Outcome {
    ok: bool,
    detail: String,
}

fn run_cmd(cmd: &mut Command) -> Outcome {
    match cmd.output() {
        Ok(o) => {
            let out = String::from_utf8_lossy(&o.stdout).trim().to_string();
            let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
            Outcome {
                ok: o.status.success(),
                detail: format!("{out} {err}").trim().to_string(),
            }
        }
        Err(e) => Outcome {
            ok: false,
            detail: format!("spawn: {e}"),
        },
    }
}

fn probe_once(p: &Probe) -> Outcome {
    match p.proto {
        Protocol::Icmp => {
            let mut c = Command::new("ip");
            c.args([
                "netns", "exec", &p.src_ns, "ping", "-n", "-q", "-c", "1", "-W", "1",
            ]);
            if let Some(b) = p.bind {
                c.args(["-I", &b.to_string()]);
            }
            c.arg(p.dst.to_string());
            let o = run_cmd(&mut c);
            Outcome {
                ok: o.ok,
                detail: if o.ok {
                    "echo reply".into()
                } else {
                    "no echo reply".into()
                },
            }
        }
        Protocol::Tcp | Protocol::Udp => {
            let bind = p.bind.map(|b| b.to_string()).unwrap_or_default();
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &p.src_ns, python(), "-c", CLIENT])
                .arg(p.proto.as_str())
                .arg(p.dst.to_string())
                .arg(p.port.to_string())
                .arg(p.sport.to_string())
                .arg(bind);
            let o = run_cmd(&mut c);
            match (&p.responder, o.ok) {
                (Some(want), true) if o.detail != *want => Outcome {
                    ok: false,
                    detail: format!("answered by {} instead of {want}", o.detail),
                },
                (_, true) => Outcome {
                    ok: true,
                    detail: format!("answered by {}", o.detail),
                },
                (_, false) => o,
            }
        }
    }
}

/// The kernel's verdict: a positive gets three tries (convergence, a lost
/// first packet); a negative is confirmed once.
fn probe(p: &Probe) -> Outcome {
    let mut o = probe_once(p);
    let tries = if p.analysis.reachable { 3 } else { 2 };
    for _ in 1..tries {
        if o.ok == p.analysis.reachable {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        o = probe_once(p);
    }
    o
}

fn protocol_of(i: u8) -> Protocol {
    match i % 3 {
        0 => Protocol::Icmp,
        1 => Protocol::Tcp,
        _ => Protocol::Udp,
    }
}

/// Turns the generated probes into concrete tuples with the evaluator's verdicts.
fn plan_probes(lab: &Lab, b: &Built, spec: &Spec) -> Vec<Probe> {
    let w = &lab.env.w;
    let ix = reach::Index::new(w);
    let ni = b.instances.len();
    if ni == 0 {
        return Vec::new();
    }
    let holders = |ip: Ipv4Addr| {
        w.iter::<NetworkInterface>()
            .filter(|e| e.private_ips.iter().any(|p| p.ip == ip))
            .count()
    };
    let inet_ns = names::inet_ns(&lab.tag);
    let inet_exists = namespaces().contains(&inet_ns);
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (k, g) in spec.probes.iter().enumerate() {
        let proto = protocol_of(g.proto);
        let port = SERVICE_PORTS[usize::from(g.port) % SERVICE_PORTS.len()];
        let sport =
            SPORT_BASES[usize::from(g.sport) % SPORT_BASES.len()] + u16::try_from(k).unwrap_or(0);
        if out.len() >= MAX_TUPLES {
            break;
        }
        let public_of = |i: &BInst| {
            w.get::<Instance>(&i.id)
                .and_then(|i| w.get::<NetworkInterface>(&i.primary_eni))
                .and_then(|e| ops::eni::public_ip_of(w, e))
        };
        // To the internet, preferably from an instance with a public IP.
        let publics: Vec<&BInst> = b
            .instances
            .iter()
            .filter(|i| public_of(i).is_some())
            .collect();
        let src = match (g.dst, publics.is_empty()) {
            (DstG::Internet, false) => publics[usize::from(g.src) % publics.len()],
            _ => &b.instances[usize::from(g.src) % ni],
        };
        let pick = |d: u8| {
            // Any instance but the source.
            let i = usize::from(d) % ni;
            if b.instances[i].id == src.id {
                &b.instances[(i + 1) % ni]
            } else {
                &b.instances[i]
            }
        };
        // What the probe is about; a choice that does not apply here falls back to an instance.
        let index_of = |x: &BInst| {
            let i = b.instances.iter().position(|y| y.id == x.id).unwrap_or(0);
            u8::try_from(i).unwrap_or(0)
        };
        let among = |d: u8, keep: &dyn Fn(&BInst) -> bool| {
            let l: Vec<&BInst> = b.instances.iter().filter(|i| keep(i)).collect();
            match l.as_slice() {
                [] => DstG::Instance(d),
                l => DstG::Instance(index_of(l[usize::from(d) % l.len()])),
            }
        };
        let peered = |v: usize| {
            b.peerings
                .iter()
                .any(|(_, x, y)| (*x == src.vpc && *y == v) || (*y == src.vpc && *x == v))
        };
        let dst = match g.dst {
            DstG::Near(d) => among(d, &|i| i.vpc == src.vpc && i.id != src.id),
            DstG::Peered(d) => among(d, &|i| peered(i.vpc)),
            DstG::PublicOf(d) => match among(d, &|i| i.id != src.id && public_of(i).is_some()) {
                DstG::Instance(x) if public_of(&b.instances[usize::from(x) % ni]).is_some() => {
                    DstG::PublicOf(x)
                }
                other => other,
            },
            DstG::FromInternet(d) if !inet_exists => DstG::Instance(d),
            DstG::FromInternet(d) => match among(d, &|i| public_of(i).is_some()) {
                DstG::Instance(x) => DstG::FromInternet(x),
                other => other,
            },
            x => x,
        };
        if ni < 2 && !matches!(dst, DstG::Internet | DstG::FromInternet(_)) {
            continue;
        }
        let (source, destination, src_ns, bind, responder) = match dst {
            DstG::Instance(d) | DstG::Near(d) | DstG::Peered(d) => {
                let dst = pick(d);
                let Some(ip) = primary_ip(w, &dst.id) else {
                    continue;
                };
                // A ping cannot tell who answered: when the address is not
                // unique, ask about the address (wherever it lands).
                let ambiguous = holders(ip) > 1;
                let d = if proto == Protocol::Icmp && ambiguous {
                    Endpoint::Address(IpAddr::V4(ip))
                } else {
                    Endpoint::Instance(dst.id.clone())
                };
                (
                    Endpoint::Instance(src.id.clone()),
                    d,
                    src.id.clone(),
                    None,
                    Some(dst.id.clone()),
                )
            }
            DstG::Internet => (
                Endpoint::Instance(src.id.clone()),
                Endpoint::Address(IpAddr::V4(INTERNET_HOST_V4)),
                src.id.clone(),
                None,
                Some(inet_ns.clone()),
            ),
            DstG::PublicOf(d) => {
                let dst = pick(d);
                let Some(public) = public_of(dst) else {
                    continue;
                };
                (
                    Endpoint::Instance(src.id.clone()),
                    Endpoint::Address(IpAddr::V4(public)),
                    src.id.clone(),
                    None,
                    Some(dst.id.clone()),
                )
            }
            DstG::FromInternet(d) => {
                let dst = &b.instances[usize::from(d) % ni];
                (
                    Endpoint::Address(IpAddr::V4(INTERNET_HOST_V4)),
                    Endpoint::Instance(dst.id.clone()),
                    inet_ns.clone(),
                    Some(INTERNET_HOST_V4),
                    Some(dst.id.clone()),
                )
            }
        };
        // A stopped instance's namespace still delivers to its own
        // addresses; AWS has no such packet (nothing runs), so skip it.
        let src_up = w.get::<Instance>(&src.id).is_some_and(Instance::is_up);
        let dst_v4 = match &destination {
            Endpoint::Address(IpAddr::V4(a)) => Some(*a),
            Endpoint::Instance(i) => primary_ip(w, i),
            _ => None,
        };
        if bind.is_none() && !src_up && dst_v4.is_some() && dst_v4 == primary_ip(w, &src.id) {
            continue;
        }
        let port_opt = (proto != Protocol::Icmp).then_some(port);
        let q = Query::new(source.clone(), destination.clone(), proto, port_opt);
        let opts = Options {
            source_port: port_opt.map(|_| sport),
        };
        let analysis = match reach::analyze_opts(&ix, w, &q, opts) {
            Ok(a) => a,
            Err(f) => panic!("the evaluator refused {q:?}: {} {}", f.code, f.message),
        };
        let Some(dst_ip) = analysis.destination_ip else {
            continue;
        };
        let key = (
            src_ns.clone(),
            dst_ip,
            proto.as_str(),
            port_opt,
            responder.clone(),
        );
        if !seen.insert(key) {
            continue;
        }
        let ep = |e: &Endpoint| match e {
            Endpoint::Instance(i) => i.clone(),
            Endpoint::NetworkInterface(i) => i.clone(),
            Endpoint::Address(a) => a.to_string(),
        };
        let label = format!(
            "{} ({}) -> {} ({dst_ip}) {}{}",
            ep(&source),
            analysis
                .source_ip
                .map(|a| a.to_string())
                .unwrap_or_default(),
            ep(&destination),
            proto.as_str(),
            port_opt
                .map(|p| format!("/{p} from port {sport}"))
                .unwrap_or_default()
        );
        out.push(Probe {
            src_ns,
            bind,
            dst: dst_ip,
            proto,
            port,
            sport,
            responder: if proto == Protocol::Icmp {
                None
            } else {
                responder
            },
            label,
            analysis,
        });
    }
    out
}

/// Starts one server per namespace that must answer TCP or UDP probes.
fn start_servers(lab: &mut Lab, probes: &[Probe]) -> Result<(), String> {
    let mut want: BTreeMap<String, (BTreeSet<u16>, BTreeSet<u16>)> = BTreeMap::new();
    for p in probes {
        let Some(r) = &p.responder else { continue };
        let e = want.entry(r.clone()).or_default();
        match p.proto {
            Protocol::Tcp => e.0.insert(p.port),
            Protocol::Udp => e.1.insert(p.port),
            Protocol::Icmp => false,
        };
    }
    let existing = namespaces();
    let inet_ns = names::inet_ns(&lab.tag);
    for (ns, (tcp, udp)) in want {
        if !existing.contains(&ns) {
            continue;
        }
        let bind = if ns == inet_ns {
            INTERNET_HOST_V4.to_string()
        } else {
            "0.0.0.0".to_string()
        };
        let join = |s: &BTreeSet<u16>| {
            s.iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns, python(), "-c", SERVER, &ns, &bind])
            .arg(join(&tcp))
            .arg(join(&udp))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn the probe server: {e}"))?;
        let stdout = child.stdout.take();
        lab.children.push(child);
        let mut line = String::new();
        if let Some(out) = stdout {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        if line.trim() != "ready" {
            let mut err = String::new();
            if let Some(c) = lab.children.last_mut() {
                let _ = c.kill();
                let _ = c.wait();
                if let Some(mut e) = c.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
            }
            return Err(format!("the probe server in {ns} did not start: {err}"));
        }
    }
    Ok(())
}

// ---- one topology ---------------------------------------------------------------

#[derive(Debug, Default)]
struct Stats {
    topologies: AtomicU64,
    tuples: AtomicU64,
    reachable: AtomicU64,
    disagreements: AtomicU64,
    /// Every tag used, to check that nothing is left behind.
    tags: std::sync::Mutex<Vec<String>>,
}

fn check(spec: &Spec, stats: &Stats) -> Result<(), TestCaseError> {
    let mut lab = Lab::new();
    if let Ok(mut t) = stats.tags.lock() {
        t.push(lab.tag.clone());
    }
    let b = build(&mut lab.env, spec);
    lab.dp
        .reconcile(&lab.env.w)
        .map_err(|e| TestCaseError::fail(format!("reconcile failed: {e}")))?;
    let probes = plan_probes(&lab, &b, spec);
    start_servers(&mut lab, &probes).map_err(TestCaseError::fail)?;
    let outcomes: Vec<Outcome> = std::thread::scope(|s| {
        let hs: Vec<_> = probes.iter().map(|p| s.spawn(move || probe(p))).collect();
        hs.into_iter()
            .map(|h| {
                h.join().unwrap_or(Outcome {
                    ok: false,
                    detail: "probe thread panicked".into(),
                })
            })
            .collect()
    });
    stats.topologies.fetch_add(1, Ordering::Relaxed);
    stats
        .tuples
        .fetch_add(probes.len() as u64, Ordering::Relaxed);
    let mut bad = String::new();
    let mut n_bad = 0;
    let mut n_yes = 0;
    for (p, o) in probes.iter().zip(&outcomes) {
        n_yes += u64::from(p.analysis.reachable);
        if p.analysis.reachable != o.ok {
            n_bad += 1;
            let _ = writeln!(
                bad,
                "  DISAGREEMENT {}: evaluator says {}, kernel {} ({})",
                p.label,
                if p.analysis.reachable {
                    "reachable"
                } else {
                    "unreachable"
                },
                if o.ok { "passed" } else { "blocked" },
                o.detail
            );
            bad.push_str(&explain(&p.analysis));
        }
    }
    stats.reachable.fetch_add(n_yes, Ordering::Relaxed);
    stats.disagreements.fetch_add(n_bad, Ordering::Relaxed);
    println!(
        "differential: tag {} vpcs={} instances={} tuples={} reachable={} disagreements={}",
        lab.tag,
        b.vpcs.len(),
        b.instances.len(),
        probes.len(),
        n_yes,
        n_bad
    );
    if std::env::var_os("VPCD_DIFF_VERBOSE").is_some() {
        print!("{}", dump(&lab.env.w, &b));
        for (p, o) in probes.iter().zip(&outcomes) {
            let why: Vec<&str> = p.analysis.diagnoses.iter().map(|d| d.kind.name()).collect();
            println!(
                "  {} {} kernel={} {why:?}",
                if p.analysis.reachable { "yes" } else { "no " },
                p.label,
                o.ok
            );
        }
    }
    if n_bad > 0 {
        let mut all = String::new();
        for (p, o) in probes.iter().zip(&outcomes) {
            let _ = writeln!(
                all,
                "  {} {}: evaluator={} kernel={} ({})",
                if p.analysis.reachable == o.ok {
                    "ok "
                } else {
                    "BAD"
                },
                p.label,
                p.analysis.reachable,
                o.ok,
                o.detail
            );
        }
        return Err(TestCaseError::fail(format!(
            "{n_bad} disagreement(s)\n{bad}\nall tuples:\n{all}\ntopology:\n{}",
            dump(&lab.env.w, &b)
        )));
    }
    Ok(())
}

// ---- the test -------------------------------------------------------------------

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn seed_bytes(seed: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let v = seed
            .wrapping_add(i as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        chunk.copy_from_slice(&v.to_le_bytes());
    }
    out
}

fn require_tools() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
        })
        .unwrap_or_default();
    assert!(
        uid == "0",
        "the differential test must run as root (it creates network namespaces; running as uid {uid}); it never skips"
    );
    let ok = Command::new(python())
        .args(["-c", "import selectors, socket"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "the differential test needs python3 for its probe client and server"
    );
}

#[test]
fn evaluator_agrees_with_the_kernel() {
    require_tools();
    let cases = env_u64("VPCD_DIFF_CASES");
    let budget = env_u64("VPCD_DIFF_SECONDS").map(Duration::from_secs);
    let seed = env_u64("VPCD_DIFF_SEED").unwrap_or_else(random_u64);
    let shrink = env_u64("VPCD_DIFF_SHRINK_SECS").unwrap_or(120);
    // Without a budget, one batch of VPCD_DIFF_CASES (default 6); with one,
    // batches of 5 until the budget (or VPCD_DIFF_CASES, if given) is spent.
    let batch_size = if budget.is_some() {
        5
    } else {
        cases.unwrap_or(6)
    };
    println!(
        "differential: seed={seed} cases={} budget={}",
        cases.map_or("-".into(), |c| c.to_string()),
        budget.map_or("-".into(), |b| format!("{}s", b.as_secs()))
    );
    let stats = Stats::default();
    let start = Instant::now();
    let summary = |stats: &Stats| {
        format!(
            "DIFF-SUMMARY topologies={} tuples={} reachable={} disagreements={} seconds={} seed={seed}",
            stats.topologies.load(Ordering::Relaxed),
            stats.tuples.load(Ordering::Relaxed),
            stats.reachable.load(Ordering::Relaxed),
            stats.disagreements.load(Ordering::Relaxed),
            start.elapsed().as_secs()
        )
    };
    let mut batch: u64 = 0;
    loop {
        let done = stats.topologies.load(Ordering::Relaxed);
        let n = match (budget, cases) {
            (Some(_), Some(c)) => batch_size.min(c.saturating_sub(done)),
            _ => batch_size,
        };
        if n == 0 {
            break;
        }
        let bseed = seed.wrapping_add(batch);
        let config = Config {
            cases: u32::try_from(n).unwrap_or(u32::MAX),
            failure_persistence: None,
            max_shrink_iters: 500,
            max_shrink_time: u32::try_from(shrink * 1000).unwrap_or(u32::MAX),
            max_global_rejects: 10_000,
            ..Config::default()
        };
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes(bseed));
        let mut runner = TestRunner::new_with_rng(config, rng);
        let result = runner.run(&spec_g(), |spec| check(&spec, &stats));
        match result {
            Ok(()) => {}
            Err(TestError::Fail(reason, minimal)) => {
                println!("{}", summary(&stats));
                panic!(
                    "the evaluator and the kernel disagree (seed {seed}, batch {batch}: replay with VPCD_DIFF_SEED={bseed} VPCD_DIFF_CASES={n})\n\
                     minimal (shrunk) case: {minimal:#?}\n{reason}"
                );
            }
            Err(TestError::Abort(reason)) => {
                println!("{}", summary(&stats));
                panic!("the differential test aborted (seed {seed}): {reason}");
            }
        }
        batch += 1;
        match budget {
            None => break,
            Some(b) if start.elapsed() >= b => break,
            Some(_) => {}
        }
    }
    println!("{}", summary(&stats));
    let tags = stats.tags.lock().map(|t| t.clone()).unwrap_or_default();
    let left: Vec<String> = tags.iter().flat_map(|t| leftovers(t)).collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}
