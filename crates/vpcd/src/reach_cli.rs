//! `vpcd reach`: the reachability analyzer from the command line.
//!
//! It reads the state straight from a data directory (a local
//! administrator's view, across every account), runs
//! [`vpc_reach::analyze`] and prints the path hop by hop, the verdict,
//! and every blocker with its AWS explanation code and vpcd's diagnosis and
//! fix. `--matrix` analyses every pair of instances; `--probe` also sends a
//! real packet through the data plane and says whether the kernel agrees.
//!
//! Exit status: 0 reachable, 1 not reachable, 2 usage or other error.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use vpc_model::ops::eni;
use vpc_model::{AnalysisHop, Instance, InstanceState, NetworkInterface, World};
use vpc_reach::{self as reach, rule_text, Analysis, Endpoint, Protocol, Query};
use vpc_store::{Location, StateStore, Store};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Exit status: 0 reachable, 1 not reachable, 2 usage or other error.

Examples:
  vpcd reach i-0a1b... i-0c2d... --protocol tcp --port 22
  vpcd reach i-0a1b... 10.2.1.10 --protocol icmp --probe
  vpcd reach --matrix --vpc vpc-0a1b... --vpc vpc-0c2d... --protocol icmp")]
pub struct ReachArgs {
    /// Source: an instance ID, a network-interface ID (or their ARN), or an IP address.
    pub src: Option<String>,
    /// Destination: an instance ID, a network-interface ID (or their ARN), or an IP address.
    pub dst: Option<String>,
    /// The analysed packet's protocol (required for one pair; icmp for --matrix by default).
    #[arg(long, value_enum)]
    pub protocol: Option<ProtoArg>,
    /// Destination port (tcp and udp).
    #[arg(long)]
    pub port: Option<u16>,
    /// Analyse IPv6 (the endpoints' IPv6 addresses) instead of IPv4.
    #[arg(long)]
    pub ipv6: bool,
    /// The data directory to read. Default: as for `vpcd serve`.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Print the all-pairs reachability matrix of instances instead of one path.
    #[arg(long)]
    pub matrix: bool,
    /// With --matrix: only instances in these VPCs (repeatable).
    #[arg(long = "vpc", value_name = "VPC_ID")]
    pub vpcs: Vec<String>,
    /// With --matrix: the output format.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Also send a real packet through the data plane and compare (root, realized data plane).
    #[arg(long)]
    pub probe: bool,
    #[command(flatten)]
    pub store: crate::store_args::StoreArgs,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtoArg {
    Tcp,
    Udp,
    Icmp,
}

impl From<ProtoArg> for Protocol {
    fn from(p: ProtoArg) -> Protocol {
        match p {
            ProtoArg::Tcp => Protocol::Tcp,
            ProtoArg::Udp => Protocol::Udp,
            ProtoArg::Icmp => Protocol::Icmp,
        }
    }
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// A usage error: exit status 2 with the message.
#[derive(Debug)]
struct Usage(String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage(msg.into()))
}

/// Runs `vpcd reach`; returns the exit status.
pub fn run(args: ReachArgs, data_dir: &Path, is_root: bool) -> i32 {
    match run_inner(&args, data_dir, is_root) {
        Ok(code) => code,
        Err(e) => {
            if e.downcast_ref::<Usage>().is_some() {
                eprintln!("vpcd reach: {e}");
                eprintln!("usage: vpcd reach SRC DST --protocol tcp|udp|icmp [--port N] [--ipv6] [--json] [--probe]");
                eprintln!("       vpcd reach --matrix [--vpc VPC_ID ...] [--protocol P] [--port N] [--format table|json|csv]");
            } else {
                eprintln!("vpcd reach: error: {e:#}");
            }
            2
        }
    }
}

fn run_inner(args: &ReachArgs, data_dir: &Path, is_root: bool) -> Result<i32> {
    if args.port.is_some() && args.protocol == Some(ProtoArg::Icmp) {
        return Err(usage("--port applies to tcp and udp only"));
    }
    if args.port.is_none() && matches!(args.protocol, Some(ProtoArg::Tcp | ProtoArg::Udp)) {
        return Err(usage("--port is required with tcp and udp"));
    }
    if args.matrix {
        if args.src.is_some() || args.dst.is_some() {
            return Err(usage("--matrix takes no SRC or DST"));
        }
        if args.probe {
            return Err(usage(
                "--probe analyses one pair; it cannot be used with --matrix",
            ));
        }
        let mut store = args.store.open_reader(data_dir)?;
        let world = crate::store_args::load_current_world(store.as_mut())?;
        return matrix(&world, args);
    }
    if !args.vpcs.is_empty() || args.format.is_some() {
        return Err(usage("--vpc and --format apply to --matrix only"));
    }
    let (Some(src), Some(dst)) = (&args.src, &args.dst) else {
        return Err(usage("SRC and DST are required (or use --matrix)"));
    };
    let Some(protocol) = args.protocol else {
        return Err(usage("--protocol tcp|udp|icmp is required"));
    };
    let mut store = args.store.open_reader(data_dir)?;
    let world = crate::store_args::load_current_world(store.as_mut())?;
    let source = endpoint(&world, src)?;
    let destination = endpoint(&world, dst)?;
    let ipv6 = args.ipv6
        || [&source, &destination]
            .iter()
            .any(|e| matches!(e, Endpoint::Address(IpAddr::V6(_))));
    let mut q = Query {
        source,
        destination,
        protocol: protocol.into(),
        port: args.port,
        ipv6,
    };
    // An instance of an IPv6-only subnet is reached over IPv6 only.
    q.ipv6 |= q.has_ipv6_only_end(&world);
    let a = reach::analyze(&world, &q).map_err(|f| anyhow!("{}", f.message))?;
    let probe = if args.probe {
        Some(probe(&world, store.as_mut(), &q, &a, is_root, data_dir)?)
    } else {
        None
    };
    if args.json {
        let mut v = json!({
            "source": src,
            "destination": dst,
            "protocol": q.protocol.as_str(),
            "port": q.port,
            "ipv6": q.ipv6,
        });
        let frozen = serde_json::to_value(reach::freeze(&world, &a))?;
        merge(&mut v, frozen);
        if let Some(p) = &probe {
            v["probe"] = json!({
                "delivered": p.delivered,
                "agrees": p.delivered == a.reachable,
                "command": p.command,
            });
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", render(&world, &q, src, dst, &a));
        if let Some(p) = &probe {
            println!();
            println!("Probe: {}", p.command);
            println!(
                "kernel: {} — {}",
                if p.delivered { "delivered" } else { "dropped" },
                if p.delivered == a.reachable {
                    "agrees"
                } else {
                    "DISAGREES with the analyzer"
                }
            );
        }
    }
    Ok(if a.reachable { 0 } else { 1 })
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(a), Value::Object(b)) = (into.as_object_mut(), from) {
        a.extend(b);
    }
}

// ---- Endpoints -------------------------------------------------------------

/// SRC/DST: an instance or interface ID (or ARN), or an IP address.
fn endpoint(w: &World, s: &str) -> Result<Endpoint> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(Endpoint::Address(ip));
    }
    let id = if s.starts_with("arn:") {
        s.rsplit('/').next().unwrap_or(s)
    } else {
        s
    };
    if vpc_model::ids::is_well_formed("i", id) {
        if w.get::<Instance>(id).is_none() {
            bail!("there is no instance {id}");
        }
        return Ok(Endpoint::Instance(id.to_string()));
    }
    if vpc_model::ids::is_well_formed("eni", id) {
        if w.get::<NetworkInterface>(id).is_none() {
            bail!("there is no network interface {id}");
        }
        return Ok(Endpoint::NetworkInterface(id.to_string()));
    }
    Err(usage(format!(
        "{s:?} is not an instance ID (i-…), a network-interface ID (eni-…) or an IP address"
    )))
}

// ---- One path ------------------------------------------------------------------

fn where_text(vpc: Option<&str>, subnet: Option<&str>) -> String {
    match (vpc, subnet) {
        (Some(v), Some(s)) => format!("{v} / {s}"),
        (Some(v), None) => v.to_string(),
        (None, Some(s)) => s.to_string(),
        (None, None) => String::new(),
    }
}

fn render_hops(out: &mut String, title: &str, hops: &[AnalysisHop]) {
    use std::fmt::Write as _;
    if hops.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n{title}");
    for h in hops {
        let comp = format!("{} {}", h.component.kind, h.component.id_or_description());
        let place = where_text(
            h.vpc.as_ref().map(|v| v.id_or_description()),
            h.subnet.as_ref().map(|s| s.id_or_description()),
        );
        let _ = writeln!(out, "  {:>2}  {comp:<40} {place}", h.sequence);
        if let Some(r) = &h.rule {
            let _ = writeln!(out, "      ↳ {}", rule_text(r));
        }
    }
}

fn describe_end(w: &World, e: &Endpoint, ip: Option<IpAddr>) -> String {
    let addr = ip.map(|i| format!(" ({i})")).unwrap_or_default();
    match e {
        Endpoint::Instance(id) => {
            let vpc = w
                .get::<Instance>(id)
                .map(|i| format!(" in {}", i.vpc_id))
                .unwrap_or_default();
            format!("{id}{addr}{vpc}")
        }
        Endpoint::NetworkInterface(id) => {
            let vpc = w
                .get::<NetworkInterface>(id)
                .map(|e| format!(" in {}", e.vpc_id))
                .unwrap_or_default();
            format!("{id}{addr}{vpc}")
        }
        Endpoint::Address(a) => a.to_string(),
    }
}

/// The readable report of one analysis.
pub fn render(w: &World, q: &Query, _src: &str, _dst: &str, a: &Analysis) -> String {
    use std::fmt::Write as _;
    let f = reach::freeze(w, a);
    let mut out = String::new();
    let what = match (q.protocol, q.port) {
        (Protocol::Icmp, _) => format!("{} echo", if q.ipv6 { "icmpv6" } else { "icmp" }),
        (p, Some(port)) => format!("{} port {port}", p.as_str()),
        (p, None) => format!("{} (any port)", p.as_str()),
    };
    let _ = writeln!(
        out,
        "{} → {}, {what}",
        describe_end(w, &q.source, a.source_ip),
        describe_end(w, &q.destination, a.destination_ip),
    );
    render_hops(&mut out, "Forward path", &f.forward);
    render_hops(&mut out, "Return path", &f.ret);
    let _ = writeln!(
        out,
        "\nVerdict: {}",
        if a.reachable {
            "REACHABLE"
        } else {
            "NOT REACHABLE"
        }
    );
    if !f.explanations.is_empty() {
        let _ = writeln!(out, "\nBlocked by:");
        for e in &f.explanations {
            let dir = e
                .direction
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            let place = where_text(
                e.vpc.as_ref().map(|v| v.id_or_description()),
                e.subnet.as_ref().map(|s| s.id_or_description()),
            );
            let place = if place.is_empty() {
                String::new()
            } else {
                format!(" in {place}")
            };
            let _ = writeln!(
                out,
                "  ✗ {}: {} {}{dir}{place}",
                e.code,
                e.component.kind,
                e.component.id_or_description()
            );
            if let Some(r) = &e.rule {
                let _ = writeln!(out, "      {}", rule_text(r));
            }
            if !e.detail.is_empty() {
                let _ = writeln!(out, "      {}", e.detail);
            }
        }
    }
    if !f.diagnoses.is_empty() {
        let _ = writeln!(out, "\nDiagnosis:");
        for d in &f.diagnoses {
            let _ = writeln!(out, "  • {}: {}", d.kind, d.message);
            let _ = writeln!(out, "    fix: {}", d.fix);
        }
    }
    out
}

// ---- The matrix ------------------------------------------------------------------

/// The instances a matrix covers: not terminated, in the given VPCs (all if none).
fn matrix_instances<'w>(w: &'w World, vpcs: &[String]) -> Result<Vec<&'w Instance>> {
    for v in vpcs {
        if w.get::<vpc_model::Vpc>(v).is_none() {
            bail!("there is no VPC {v}");
        }
    }
    let mut out: Vec<&Instance> = w
        .iter::<Instance>()
        .filter(|i| i.state != InstanceState::Terminated)
        .filter(|i| vpcs.is_empty() || vpcs.contains(&i.vpc_id))
        .collect();
    out.sort_by(|a, b| (&a.vpc_id, &a.meta.id).cmp(&(&b.vpc_id, &b.meta.id)));
    Ok(out)
}

/// Short, unique labels: `i-…` and the fewest trailing hex digits (at least 6) that tell them apart.
fn short_ids(ids: &[&str]) -> Vec<String> {
    for n in 6..=17 {
        let labels: Vec<String> = ids
            .iter()
            .map(|id| {
                let hex = id.rsplit('-').next().unwrap_or(id);
                let tail = &hex[hex.len().saturating_sub(n)..];
                format!("i-…{tail}")
            })
            .collect();
        let mut sorted = labels.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() == labels.len() {
            return labels;
        }
    }
    ids.iter().map(|s| s.to_string()).collect()
}

struct Cell {
    reachable: bool,
    codes: Vec<String>,
    diagnoses: Vec<String>,
    error: Option<String>,
}

fn matrix(w: &World, args: &ReachArgs) -> Result<i32> {
    let insts = matrix_instances(w, &args.vpcs)?;
    let protocol: Protocol = args.protocol.unwrap_or(ProtoArg::Icmp).into();
    let format = if args.json {
        Format::Json
    } else {
        args.format.unwrap_or(Format::Table)
    };
    // The verdicts over classes of equivalent instances, then one full
    // analysis per refused pair for its reasons (CSV shows verdicts only).
    let ix = reach::Index::new(w);
    let names: Vec<String> = insts.iter().map(|i| i.meta.id.clone()).collect();
    let m = reach::matrix_with(&ix, w, &names, protocol, args.port, args.ipv6);
    let mut cells: BTreeMap<(usize, usize), Cell> = BTreeMap::new();
    for i in 0..insts.len() {
        for j in 0..insts.len() {
            if i == j {
                continue;
            }
            let reachable = m.reachable[i][j];
            let mut cell = Cell {
                reachable,
                codes: Vec::new(),
                diagnoses: Vec::new(),
                error: None,
            };
            if !reachable && format != Format::Csv {
                let q = Query {
                    source: Endpoint::Instance(names[i].clone()),
                    destination: Endpoint::Instance(names[j].clone()),
                    protocol,
                    port: args.port,
                    ipv6: args.ipv6,
                };
                match reach::analyze_with(&ix, w, &q) {
                    Ok(a) => {
                        cell.codes = a.explanations.iter().map(|e| e.code.to_string()).collect();
                        cell.diagnoses = a
                            .diagnoses
                            .iter()
                            .map(|d| d.kind.name().to_string())
                            .collect();
                    }
                    Err(f) => cell.error = Some(f.message),
                }
            }
            cells.insert((i, j), cell);
        }
    }
    let ids: Vec<&str> = insts.iter().map(|i| i.meta.id.as_str()).collect();
    let ip_of = |i: &Instance| -> String {
        w.get::<NetworkInterface>(&i.primary_eni)
            .map(|e| {
                if args.ipv6 {
                    e.ipv6.first().map(|a| a.to_string()).unwrap_or_default()
                } else {
                    e.primary_ip().map(|a| a.to_string()).unwrap_or_default()
                }
            })
            .unwrap_or_default()
    };
    let what = match (protocol, args.port) {
        (Protocol::Icmp, _) => "icmp".to_string(),
        (p, Some(port)) => format!("{} port {port}", p.as_str()),
        (p, None) => format!("{} (any port)", p.as_str()),
    };
    match format {
        Format::Json => {
            let instances: Vec<Value> = insts
                .iter()
                .map(|i| {
                    json!({
                        "id": i.meta.id,
                        "account": i.meta.owner,
                        "region": i.meta.region,
                        "vpc": i.vpc_id,
                        "subnet": i.subnet_id,
                        "ip": ip_of(i),
                        "state": i.state.as_str(),
                    })
                })
                .collect();
            let pairs: Vec<Value> = cells
                .iter()
                .map(|((i, j), c)| {
                    json!({
                        "source": ids[*i],
                        "destination": ids[*j],
                        "reachable": c.reachable,
                        "explanation_codes": c.codes,
                        "diagnoses": c.diagnoses,
                        "error": c.error,
                    })
                })
                .collect();
            let v = json!({
                "protocol": protocol.as_str(),
                "port": args.port,
                "ipv6": args.ipv6,
                "instances": instances,
                "pairs": pairs,
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Format::Csv => {
            println!("source,{}", ids.join(","));
            for (i, s) in ids.iter().enumerate() {
                let row: Vec<&str> = (0..ids.len())
                    .map(|j| match cells.get(&(i, j)) {
                        None => "-",
                        Some(c) if c.reachable => "Y",
                        Some(_) => "N",
                    })
                    .collect();
                println!("{s},{}", row.join(","));
            }
        }
        Format::Table => {
            if insts.is_empty() {
                println!("no instances to analyse");
                return Ok(0);
            }
            let labels = short_ids(&ids);
            let width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(8);
            println!("Reachability matrix, {what}: rows are sources, columns destinations (✓ reachable, ✗ not)\n");
            let mut head = format!("{:width$}", "", width = width + 2);
            for l in &labels {
                head.push_str(&format!("  {l:^width$}"));
            }
            println!("{}", head.trim_end());
            for (i, l) in labels.iter().enumerate() {
                let mut line = format!("{l:<width$}  ");
                for j in 0..ids.len() {
                    let mark = match cells.get(&(i, j)) {
                        None => "·",
                        Some(c) if c.reachable => "✓",
                        Some(_) => "✗",
                    };
                    line.push_str(&format!("  {mark:^width$}"));
                }
                println!("{}", line.trim_end());
            }
            println!();
            for (l, i) in labels.iter().zip(&insts) {
                println!(
                    "{l:<width$}  {}  {}  {}  account {}",
                    i.meta.id,
                    i.vpc_id,
                    ip_of(i),
                    i.meta.owner
                );
            }
            let blocked: Vec<_> = cells.iter().filter(|(_, c)| !c.reachable).collect();
            if !blocked.is_empty() {
                println!("\nWhy not:");
                for ((i, j), c) in blocked {
                    let why = if let Some(e) = &c.error {
                        e.clone()
                    } else if !c.diagnoses.is_empty() {
                        c.diagnoses.join(", ")
                    } else {
                        c.codes.join(", ")
                    };
                    println!("  {} → {}: {why}", labels[*i], labels[*j]);
                }
                println!("\n(`vpcd reach SRC DST --protocol …` explains one pair in full.)");
            }
        }
    }
    Ok(0)
}

// ---- Probes ----------------------------------------------------------------------

pub(crate) struct ProbeResult {
    pub(crate) delivered: bool,
    command: String,
}

/// The namespace of the instance an endpoint is (or whose address it is).
fn instance_ns(w: &World, e: &Endpoint, tag: &str) -> Option<String> {
    let eni_holding = |ip: IpAddr| {
        w.iter::<NetworkInterface>().find(|e| match ip {
            IpAddr::V4(v4) => {
                e.private_ips.iter().any(|p| p.ip == v4)
                    || eni::public_ips_of(w, e).iter().any(|(_, p)| *p == v4)
            }
            IpAddr::V6(v6) => e.ipv6.contains(&v6),
        })
    };
    match e {
        Endpoint::Instance(id) => Some(id.clone()),
        Endpoint::NetworkInterface(id) => w
            .get::<NetworkInterface>(id)
            .and_then(|e| e.attachment.as_ref())
            .map(|a| a.instance_id.clone()),
        Endpoint::Address(ip) => {
            if *ip == IpAddr::V4(vpc_dataplane::names::INET_HOST_V4)
                || *ip == IpAddr::V6(vpc_dataplane::names::INET_HOST_V6)
            {
                return Some(vpc_dataplane::names::inet_ns(tag));
            }
            eni_holding(*ip)
                .and_then(|e| e.attachment.as_ref())
                .map(|a| a.instance_id.clone())
        }
    }
}

/// The address the probe sends to: the analysed one, else the destination's own.
fn probe_address(w: &World, q: &Query, a: &Analysis) -> Option<IpAddr> {
    if let Some(ip) = a.destination_ip {
        return Some(ip);
    }
    let e = match &q.destination {
        Endpoint::Address(ip) => return Some(*ip),
        Endpoint::Instance(id) => w
            .get::<Instance>(id)
            .and_then(|i| w.get::<NetworkInterface>(&i.primary_eni)),
        Endpoint::NetworkInterface(id) => w.get::<NetworkInterface>(id),
    }?;
    if q.ipv6 {
        e.ipv6.first().map(|a| IpAddr::V6(*a))
    } else {
        e.primary_ip().map(IpAddr::V4)
    }
}

const PROBE_SERVER: &str = r#"
import signal, socket, sys
proto, port = sys.argv[1], int(sys.argv[2])
signal.alarm(20)
try:
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET6, kind)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port))
    if proto == "tcp":
        s.listen(8)
except OSError as e:
    print("error:", e, flush=True)
    sys.exit(1)
print("ready", flush=True)
while True:
    if proto == "tcp":
        c, _ = s.accept()
        c.sendall(b"vpcd-probe\n")
        c.close()
    else:
        data, peer = s.recvfrom(2048)
        s.sendto(b"vpcd-probe", peer)
"#;

const PROBE_CLIENT: &str = r#"
import socket, sys, time
proto, ip, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
deadline = time.monotonic() + 3
while time.monotonic() < deadline:
    try:
        if proto == "tcp":
            with socket.create_connection((ip, port), timeout=1) as s:
                if s.recv(64).startswith(b"vpcd-probe"):
                    sys.exit(0)
        else:
            with socket.socket(fam, socket.SOCK_DGRAM) as s:
                s.settimeout(0.5)
                s.sendto(b"ping", (ip, port))
                if s.recvfrom(64)[0].startswith(b"vpcd-probe"):
                    sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
"#;

/// The tag of the data plane whose namespaces the probe uses: the one a
/// data directory's `vpcd serve` recorded, or on a cluster the tag of the
/// host the source instance is placed on (its agent realized it there).
fn data_plane_tag(
    w: &World,
    store: &mut dyn StateStore,
    q: &Query,
    data_dir: &Path,
) -> Result<String> {
    if let Some(tag) = store.get_setting("dp_tag")? {
        return Ok(tag);
    }
    let hosts = vpc_model::placement::parse_hosts(
        &store.settings_with_prefix(vpc_model::placement::HOST_KEY_PREFIX)?,
    );
    if hosts.is_empty() {
        bail!(
            "--probe needs a realized data plane, and {} has never run one (start `vpcd serve` as root without --no-dataplane, or agents on a cluster)",
            data_dir.display()
        );
    }
    let source = instance_ns(w, &q.source, "")
        .and_then(|id| w.get::<Instance>(&id))
        .ok_or_else(|| {
            anyhow!(
                "--probe needs the source to be an instance (or an address or interface of one)"
            )
        })?;
    let host = vpc_model::placement::host_of_instance(&hosts, source).ok_or_else(|| {
        anyhow!(
            "--probe: no registered host serves {}'s zone {}",
            source.meta.id,
            source.az
        )
    })?;
    Ok(host.tag.clone())
}

/// Sends a real packet from the source's namespace and reports whether it got through.
pub(crate) fn probe(
    w: &World,
    store: &mut dyn StateStore,
    q: &Query,
    a: &Analysis,
    is_root: bool,
    data_dir: &Path,
) -> Result<ProbeResult> {
    if !is_root {
        bail!("--probe needs root: it runs commands inside the instances' network namespaces");
    }
    let tag = data_plane_tag(w, store, q, data_dir)?;
    let src_ns = instance_ns(w, &q.source, &tag).ok_or_else(|| {
        anyhow!("--probe needs the source to be an instance (or an address or interface of one)")
    })?;
    let dst_ip = probe_address(w, q, a)
        .ok_or_else(|| anyhow!("--probe: the destination has no address to send to"))?;
    let exists = |ns: &str| Path::new("/run/netns").join(ns).exists();
    if !exists(&src_ns) {
        bail!(
            "--probe needs a realized data plane: namespace {src_ns} does not exist on this machine (is `vpcd serve` running as root on {}, or on a cluster this host's agent, and is the instance running?)",
            data_dir.display()
        );
    }
    let python = "python3";
    match q.protocol {
        Protocol::Icmp => {
            let fam = if dst_ip.is_ipv6() { "-6" } else { "-4" };
            let argv = [
                "netns",
                "exec",
                &src_ns,
                "ping",
                "-n",
                fam,
                "-c",
                "3",
                "-i",
                "0.2",
                "-W",
                "1",
                &dst_ip.to_string(),
            ];
            let out = Command::new("ip")
                .args(argv)
                .stdin(Stdio::null())
                .output()
                .context("running ip netns exec … ping")?;
            Ok(ProbeResult {
                delivered: out.status.success(),
                command: format!("ip {}", argv.join(" ")),
            })
        }
        Protocol::Tcp | Protocol::Udp => {
            let port = q
                .port
                .ok_or_else(|| anyhow!("--probe with tcp or udp needs --port"))?;
            let proto = q.protocol.as_str();
            let dst_ns = instance_ns(w, &q.destination, &tag).ok_or_else(|| {
                anyhow!("--probe: cannot tell which namespace {dst_ip} lives in, so no listener can be started there")
            })?;
            if !exists(&dst_ns) {
                bail!("--probe needs a realized data plane: namespace {dst_ns} does not exist");
            }
            let port_s = port.to_string();
            let mut server = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &dst_ns,
                    python,
                    "-c",
                    PROBE_SERVER,
                    proto,
                    &port_s,
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .context("starting the probe listener")?;
            let stdout = server.stdout.take().expect("piped");
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut line = String::new();
                let _ = BufReader::new(stdout).read_line(&mut line);
                let _ = tx.send(line);
            });
            let ready = rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
            if ready.trim() != "ready" {
                let _ = server.kill();
                let _ = server.wait();
                bail!(
                    "--probe: could not start a {proto} listener on port {port} in {dst_ns}: {}",
                    if ready.is_empty() {
                        "no answer"
                    } else {
                        ready.trim()
                    }
                );
            }
            let dst_s = dst_ip.to_string();
            let out = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &src_ns,
                    python,
                    "-c",
                    PROBE_CLIENT,
                    proto,
                    &dst_s,
                    &port_s,
                ])
                .stdin(Stdio::null())
                .output();
            let _ = server.kill();
            let _ = server.wait();
            let out = out.context("running the probe client")?;
            Ok(ProbeResult {
                delivered: out.status.success(),
                command: format!(
                    "{proto} listener on port {port} in {dst_ns}; ip netns exec {src_ns} python3 (connect to {dst_s} port {port})"
                ),
            })
        }
    }
}

/// `vpcd reach --probe`'s real packets for the web console's "test connectivity".
#[derive(Debug)]
pub(crate) struct ConsoleProber {
    pub(crate) data_dir: std::path::PathBuf,
    /// Where the server's state lives: the data directory, or a cluster's
    /// etcd (then the probe finds the source instance's host there).
    pub(crate) location: Location,
}

impl vpc_console::Prober for ConsoleProber {
    fn probe(
        &self,
        w: &World,
        source: &str,
        destination: &str,
        protocol: &str,
        port: Option<u16>,
    ) -> std::result::Result<bool, String> {
        let destination = if destination.starts_with("i-") {
            Endpoint::Instance(destination.to_string())
        } else if destination.starts_with("eni-") {
            Endpoint::NetworkInterface(destination.to_string())
        } else {
            Endpoint::Address(
                destination
                    .parse()
                    .map_err(|_| format!("not an address: {destination}"))?,
            )
        };
        let protocol = match protocol {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            _ => Protocol::Icmp,
        };
        let q = Query::new(
            Endpoint::Instance(source.to_string()),
            destination,
            protocol,
            port,
        );
        let a = vpc_reach::analyze(w, &q).map_err(|f| f.message)?;
        let mut store: Box<dyn StateStore> = match &self.location {
            Location::Dir(dir) => Box::new(Store::open(dir).map_err(|e| e.to_string())?),
            shared => vpc_store::open(shared).map_err(|e| e.to_string())?,
        };
        probe(w, &mut *store, &q, &a, true, &self.data_dir)
            .map(|r| r.delivered)
            .map_err(|e| format!("{e:#}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_labels_are_unique() {
        let ids = [
            "i-0000000000000abc1",
            "i-1000000000000abc1",
            "i-00000000000000002",
        ];
        let l = short_ids(&ids);
        assert_eq!(l.len(), 3);
        assert_ne!(l[0], l[1]);
        assert!(l[2].ends_with("000002"));
    }

    #[test]
    fn report_names_hops_blockers_and_fixes() {
        use vpc_reach::{Component, Diagnosis, DiagnosisKind, Direction, Explanation, Hop, Rule};
        let hop = |sequence, id: &str, kind, rule| Hop {
            sequence,
            component: Component {
                id: id.into(),
                kind,
            },
            vpc_id: Some("vpc-a".into()),
            subnet_id: Some("subnet-a".into()),
            rule,
        };
        let a = Analysis {
            reachable: false,
            source_ip: Some("10.1.1.10".parse().unwrap()),
            destination_ip: Some("10.3.1.10".parse().unwrap()),
            forward: vec![
                hop(1, "i-a", "instance", None),
                hop(
                    2,
                    "rtb-a",
                    "route-table",
                    Some(Rule::Route {
                        route_table_id: "rtb-a".into(),
                        destination: "10.3.0.0/16".parse().unwrap(),
                        target: "pcx-ab".into(),
                        state: "active",
                    }),
                ),
            ],
            ret: vec![],
            explanations: vec![Explanation {
                code: "PCX_REQUIRES_ADDRESS_IN_VPC_CIDR",
                component: Component {
                    id: "pcx-ab".into(),
                    kind: "vpc-peering-connection",
                },
                direction: Some(Direction::Egress),
                rule: None,
                vpc_id: Some("vpc-b".into()),
                subnet_id: None,
                detail: "10.3.1.10 is not in vpc-b".into(),
            }],
            diagnoses: vec![Diagnosis {
                kind: DiagnosisKind::TransitivePeering,
                message: "vpc-a is peered with vpc-b and vpc-b with vpc-c".into(),
                fix: "create a peering connection between vpc-a and vpc-c".into(),
            }],
        };
        let q = Query {
            source: Endpoint::Instance("i-a".into()),
            destination: Endpoint::Address("10.3.1.10".parse().unwrap()),
            protocol: Protocol::Tcp,
            port: Some(22),
            ipv6: false,
        };
        let out = render(&World::default(), &q, "i-a", "10.3.1.10", &a);
        for want in [
            "i-a (10.1.1.10) → 10.3.1.10, tcp port 22",
            "route 10.3.0.0/16 → pcx-ab (active) in rtb-a",
            "Verdict: NOT REACHABLE",
            "✗ PCX_REQUIRES_ADDRESS_IN_VPC_CIDR: vpc-peering-connection pcx-ab (egress) in vpc-b",
            "10.3.1.10 is not in vpc-b",
            "• transitive-peering: vpc-a is peered",
            "fix: create a peering connection between vpc-a and vpc-c",
        ] {
            assert!(out.contains(want), "{want:?} not in\n{out}");
        }
    }
}
