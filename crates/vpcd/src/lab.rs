//! `vpcd lab up|status|down`: an etcd cluster and several API servers on
//! this machine's loopback, for tests, benchmarks and trying the cluster out.
//!
//! `up` starts the processes in their own process groups (they outlive the
//! command), records them in `DIR/lab.json` and prints that record; `status`
//! repeats it with whether each process is alive; `down` stops exactly the
//! processes the record names (checking each is still the one it started)
//! and removes the directory's lab files.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(clap::Subcommand, Debug)]
pub enum LabCmd {
    /// Start an etcd cluster and API servers sharing it; print them as JSON.
    Up {
        #[arg(long)]
        data_dir: PathBuf,
        /// etcd members (an odd number survives the loss of a minority).
        #[arg(long, default_value_t = 3)]
        etcd: usize,
        /// API servers (`vpcd serve --store etcd://...`).
        #[arg(long, default_value_t = 2)]
        api: usize,
        /// Simulated hosts: network namespaces on an underlay bridge of the
        /// lab's own, each with a `vpcd agent` (needs root).
        #[arg(long, default_value_t = 0)]
        hosts: usize,
        /// The etcd key prefix the servers share.
        #[arg(long, default_value = "/vpcd")]
        store_prefix: String,
        /// Further `vpcd serve` flags for every API server (after `--`), e.g. `-- --test-clock`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        serve_args: Vec<String>,
    },
    /// Print the lab's JSON record, with whether each process is alive.
    Status {
        #[arg(long)]
        data_dir: PathBuf,
        /// Print JSON (the only format).
        #[arg(long)]
        json: bool,
    },
    /// Start a host's agent again (after it died or was killed); it adopts
    /// what the kernel holds. Returns once the host is registered and live.
    Agent {
        #[arg(long)]
        data_dir: PathBuf,
        /// The host's name, e.g. h2.
        #[arg(long)]
        host: String,
        /// Serve these zones from now on (recorded for later restarts), e.g.
        /// us-east-1c,us-east-1a to let h3 take new instances of zone a too.
        #[arg(long, value_delimiter = ',')]
        zones: Option<Vec<String>>,
    },
    /// Stop every process the lab started and remove its files.
    Down {
        #[arg(long)]
        data_dir: PathBuf,
    },
}

pub fn run(cmd: LabCmd) -> Result<()> {
    match cmd {
        LabCmd::Up {
            data_dir,
            etcd,
            api,
            hosts,
            store_prefix,
            serve_args,
        } => {
            if hosts > 0 && !crate::is_root() {
                bail!("--hosts: simulated hosts are network namespaces; run as root");
            }
            if hosts > MAX_HOSTS {
                bail!("--hosts: at most {MAX_HOSTS} simulated hosts");
            }
            if etcd == 0 || api == 0 {
                bail!("a lab needs at least one etcd member and one API server");
            }
            let record = up(&data_dir, etcd, api, hosts, &store_prefix, &serve_args)?;
            println!("{}", serde_json::to_string_pretty(&record)?);
            Ok(())
        }
        LabCmd::Status { data_dir, json: _ } => {
            let record = with_liveness(read_record(&data_dir)?);
            println!("{}", serde_json::to_string_pretty(&record)?);
            Ok(())
        }
        LabCmd::Agent {
            data_dir,
            host,
            zones,
        } => restart_agent(&data_dir, &host, zones),
        LabCmd::Down { data_dir } => down(&data_dir),
    }
}

/// The zones a lab host serves: host `i` the `i`-th zone of each region
/// the lab's tests use (there are six zones in us-east-1, fewer elsewhere).
const LAB_REGIONS: &[&str] = &["us-east-1", "us-west-2", "eu-west-1"];
const MAX_HOSTS: usize = 6;
/// The lab's agents' liveness lease (`vpcd agent --liveness-ttl-secs`):
/// short, so that tests see a killed agent's host stop taking new
/// instances within seconds.
const LAB_LIVENESS_TTL_SECS: u32 = 3;

fn lab_zones(i: usize) -> Vec<String> {
    let letter = char::from(b'a' + u8::try_from(i).unwrap_or(0));
    LAB_REGIONS.iter().map(|r| format!("{r}{letter}")).collect()
}

fn record_path(dir: &Path) -> PathBuf {
    dir.join("lab.json")
}

fn read_record(dir: &Path) -> Result<Value> {
    let path = record_path(dir);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("no lab in {} (reading {})", dir.display(), path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

/// Ports the kernel hands out now (closed again before use; the lab binds
/// them a moment later).
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<_>>()?;
    Ok(listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<_>>()?)
}

fn spawn(program: &Path, args: &[String], log: &Path) -> Result<u32> {
    let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    Ok(child.id())
}

fn wait_listening(addr: SocketAddr, pid: u32, what: &str, log: &Path) -> Result<()> {
    let give_up = Instant::now() + Duration::from_secs(30);
    while Instant::now() < give_up {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if !alive(pid) {
            bail!(
                "{what} (pid {pid}) exited; its log, {}:\n{}",
                log.display(),
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!(
        "{what} (pid {pid}) did not listen on {addr} within 30 s; see {}",
        log.display()
    )
}

fn up(
    dir: &Path,
    members: usize,
    apis: usize,
    hosts: usize,
    prefix: &str,
    serve_args: &[String],
) -> Result<Value> {
    if record_path(dir).exists() {
        bail!(
            "{} already holds a lab: `vpcd lab down --data-dir {}` first",
            dir.display(),
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let etcd_bin =
        which("etcd").context("etcd is not installed (Debian: apt-get install etcd-server)")?;
    let vpcd_bin = std::env::current_exe()?;
    let ports = free_ports(members * 2 + apis)?;
    let token = format!("vpcd-lab-{:08x}", rand::random::<u32>());
    let peer = |i: usize| format!("http://127.0.0.1:{}", ports[2 * i + 1]);
    let client = |i: usize| format!("http://127.0.0.1:{}", ports[2 * i]);
    let initial: Vec<String> = (0..members).map(|i| format!("m{i}={}", peer(i))).collect();
    let mut record = json!({
        "data_dir": dir,
        "store": format!("etcd://{}", (0..members).map(|i| format!("127.0.0.1:{}", ports[2 * i])).collect::<Vec<_>>().join(",")),
        "store_prefix": prefix,
        "etcd": [],
        "api": [],
        "hosts": [],
        "lab_tag": format!("{:04x}", rand::random::<u16>()),
    });
    let mut started: Vec<u32> = Vec::new();
    let result = (|| -> Result<()> {
        for i in 0..members {
            let log = dir.join(format!("etcd-m{i}.log"));
            let args: Vec<String> = vec![
                format!("--name=m{i}"),
                format!("--data-dir={}", dir.join(format!("etcd-m{i}")).display()),
                format!("--listen-client-urls={}", client(i)),
                format!("--advertise-client-urls={}", client(i)),
                format!("--listen-peer-urls={}", peer(i)),
                format!("--initial-advertise-peer-urls={}", peer(i)),
                format!("--initial-cluster={}", initial.join(",")),
                format!("--initial-cluster-token={token}"),
                "--initial-cluster-state=new".into(),
                // One vpcd commit (a group-committed batch) is one transaction.
                "--max-txn-ops=100000".into(),
                "--max-request-bytes=33554432".into(),
                "--heartbeat-interval=100".into(),
                "--election-timeout=1000".into(),
            ];
            let pid = spawn(&etcd_bin, &args, &log)?;
            started.push(pid);
            record["etcd"].as_array_mut().expect("array").push(json!({
                "name": format!("m{i}"),
                "client_url": client(i),
                "peer_url": peer(i),
                "pid": pid,
                "log": log,
            }));
        }
        for i in 0..members {
            let addr: SocketAddr = format!("127.0.0.1:{}", ports[2 * i]).parse()?;
            let pid = started[i];
            wait_listening(
                addr,
                pid,
                &format!("etcd member m{i}"),
                &dir.join(format!("etcd-m{i}.log")),
            )?;
        }
        let store = record["store"].as_str().expect("string").to_string();
        if hosts > 0 {
            start_hosts(
                &mut record,
                &mut started,
                &dir,
                &vpcd_bin,
                hosts,
                &store,
                prefix,
            )?;
        }
        for i in 0..apis {
            let port = ports[2 * members + i];
            let log = dir.join(format!("api-{i}.log"));
            let mut args: Vec<String> = vec![
                "serve".into(),
                format!("--listen=127.0.0.1:{port}"),
                format!("--data-dir={}", dir.join(format!("api-{i}")).display()),
                format!("--store={store}"),
                format!("--store-prefix={prefix}"),
                "--no-dataplane".into(),
            ];
            args.extend(serve_args.iter().cloned());
            let pid = spawn(&vpcd_bin, &args, &log)?;
            started.push(pid);
            record["api"].as_array_mut().expect("array").push(json!({
                "endpoint": format!("http://127.0.0.1:{port}"),
                "pid": pid,
                "log": log,
            }));
        }
        for (i, a) in record["api"].as_array().expect("array").iter().enumerate() {
            let addr: SocketAddr =
                a["endpoint"].as_str().expect("string")["http://".len()..].parse()?;
            let pid = u32::try_from(a["pid"].as_u64().unwrap_or(0))?;
            wait_listening(
                addr,
                pid,
                &format!("API server {i}"),
                &dir.join(format!("api-{i}.log")),
            )?;
        }
        Ok(())
    })();
    // Record what was started even if something failed, so `down` can stop it.
    std::fs::write(record_path(&dir), serde_json::to_string_pretty(&record)?)?;
    if let Err(e) = result {
        let _ = down(&dir);
        return Err(e);
    }
    Ok(with_liveness(record))
}

/// The command line of a host's agent. Every host writes its flow-log
/// records under the lab's `flow-logs/` (one machine: one directory, as a
/// shared file system would be for real hosts).
fn agent_args(h: &Value, store: &str, prefix: &str, dir: &Path) -> Vec<String> {
    let s = |k: &str| h[k].as_str().unwrap_or_default().to_string();
    let zones: Vec<String> = h["zones"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|z| z.as_str().map(str::to_string))
        .collect();
    let mut args = vec![
        "agent".into(),
        format!("--host={}", s("name")),
        format!("--zones={}", zones.join(",")),
        format!("--underlay-addr={}", s("underlay_address")),
        format!("--underlay-netns={}", s("netns")),
        format!("--tag={}", s("tag")),
        // The keys and status of its region gateways, in the lab's directory.
        format!("--data-dir={}", agent_data_dir(h).display()),
        format!("--store={store}"),
        format!("--store-prefix={prefix}"),
        format!("--flow-log-dir={}", dir.join("flow-logs").display()),
        format!("--liveness-ttl-secs={LAB_LIVENESS_TTL_SECS}"),
    ];
    // A lab recorded before agents served metrics has no address for them.
    if let Some(addr) = h["metrics"].as_str() {
        args.push(format!("--metrics-listen={addr}"));
    }
    args
}

/// A host's agent's data directory (`data_dir` in the record; beside its
/// log for a lab recorded before hosts listed it).
fn agent_data_dir(h: &Value) -> PathBuf {
    match h["data_dir"].as_str() {
        Some(d) => PathBuf::from(d),
        None => Path::new(h["log"].as_str().unwrap_or_default())
            .with_file_name(format!("agent-{}", h["name"].as_str().unwrap_or_default())),
    }
}

/// `lab agent --host H`: starts H's agent again (with other zones, when
/// given), records its pid and waits until the host is registered and live.
fn restart_agent(dir: &Path, host: &str, zones: Option<Vec<String>>) -> Result<()> {
    let mut record = read_record(dir)?;
    let store = record["store"].as_str().unwrap_or_default().to_string();
    let prefix = record["store_prefix"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let vpcd_bin = std::env::current_exe()?;
    let Some(h) = record["hosts"]
        .as_array_mut()
        .into_iter()
        .flatten()
        .find(|h| h["name"] == host)
    else {
        bail!("the lab has no host {host:?}");
    };
    if let Some(pid) = agent_of(h) {
        bail!("the agent of host {host} runs already (pid {pid})");
    }
    if let Some(zones) = zones {
        if zones.is_empty() {
            bail!("--zones: name at least one zone");
        }
        h["zones"] = json!(zones);
    }
    let log = PathBuf::from(h["log"].as_str().unwrap_or_default());
    let pid = spawn(&vpcd_bin, &agent_args(h, &store, &prefix, dir), &log)?;
    h["agent_pid"] = json!(pid);
    let started = h.clone();
    std::fs::write(record_path(dir), serde_json::to_string_pretty(&record)?)?;
    let location = vpc_store::Location::parse(Some(&store), dir.to_path_buf(), &prefix)?;
    let mut st = vpc_store::open(&location)?;
    wait_registered(&mut *st, &started)?;
    println!("{}", serde_json::to_string_pretty(&with_liveness(record))?);
    Ok(())
}

/// Waits until the agent `h` records registered its host and holds its
/// liveness (both naming its pid), so that the API servers place on it.
fn wait_registered(st: &mut dyn vpc_store::StateStore, h: &Value) -> Result<()> {
    use vpc_dataplane::placement::{alive_key, host_key, HostRecord, Liveness};
    let name = h["name"].as_str().unwrap_or_default();
    let pid = h["agent_pid"].as_u64().unwrap_or(0);
    let log = h["log"].as_str().unwrap_or_default();
    let give_up = Instant::now() + Duration::from_secs(30);
    loop {
        let registered = st
            .get_setting(&host_key(name))?
            .and_then(|v| serde_json::from_str::<HostRecord>(&v).ok())
            .is_some_and(|r| u64::from(r.pid) == pid);
        let live = st
            .get_setting(&alive_key(name))?
            .and_then(|v| serde_json::from_str::<Liveness>(&v).ok())
            .is_some_and(|l| u64::from(l.pid) == pid);
        if registered && live {
            return Ok(());
        }
        if !alive(u32::try_from(pid).unwrap_or(0)) {
            bail!(
                "the agent of host {name} (pid {pid}) exited; its log, {log}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if Instant::now() > give_up {
            bail!("the agent of host {name} did not register within 30 s; see {log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The simulated hosts: their namespaces on the lab's underlay bridge, one
/// agent each; returns once every agent registered in the store.
fn start_hosts(
    record: &mut Value,
    started: &mut Vec<u32>,
    dir: &Path,
    vpcd_bin: &Path,
    hosts: usize,
    store: &str,
    prefix: &str,
) -> Result<()> {
    use vpc_dataplane::underlay;
    let lab_tag = record["lab_tag"].as_str().expect("string").to_string();
    let names: Vec<(String, std::net::Ipv4Addr)> = (0..hosts)
        .map(|i| (format!("h{}", i + 1), underlay::lab_host_addr(i)))
        .collect();
    let metrics_ports = free_ports(hosts)?;
    for (i, (name, addr)) in names.iter().enumerate() {
        record["hosts"].as_array_mut().expect("array").push(json!({
            "metrics": format!("127.0.0.1:{}", metrics_ports[i]),
            "name": name,
            "zones": lab_zones(i),
            "underlay_address": addr.to_string(),
            "netns": underlay::lab_host_ns(&lab_tag, name),
            "tag": format!("{:04x}", rand::random::<u16>()),
            "agent_pid": 0,
            "data_dir": dir.join(format!("agent-{name}")),
            "log": dir.join(format!("agent-{name}.log")),
        }));
    }
    // Recorded before anything is made, so `down` removes what was.
    std::fs::write(record_path(dir), serde_json::to_string_pretty(&record)?)?;
    underlay::lab_fabric_up(&lab_tag, &names).context("making the lab's underlay")?;
    for h in record["hosts"].as_array_mut().expect("array") {
        let args = agent_args(h, store, prefix, dir);
        let log = PathBuf::from(h["log"].as_str().unwrap_or_default());
        let pid = spawn(vpcd_bin, &args, &log)?;
        started.push(pid);
        h["agent_pid"] = json!(pid);
    }
    // Every agent has registered and is live (its records name its pid).
    let location = vpc_store::Location::parse(Some(store), dir.to_path_buf(), prefix)?;
    let mut st = vpc_store::open(&location)?;
    for h in record["hosts"].as_array().expect("array") {
        wait_registered(&mut *st, h)?;
    }
    Ok(())
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// Whether `pid` runs (and is not a zombie).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Whether `pid` is still the process the lab started: its command line
/// names the lab's directory (a reused pid would not).
fn is_ours(pid: u32, dir: &str) -> bool {
    alive(pid)
        && std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(dir))
            .unwrap_or(false)
}

/// A host's agent, when `pid` is still it: its command line names the
/// host's namespace (unique to the lab).
fn agent_of(host: &Value) -> Option<u32> {
    let pid = u32::try_from(host["agent_pid"].as_u64()?).ok()?;
    let netns = host["netns"].as_str()?;
    (pid != 0 && is_ours(pid, &format!("--underlay-netns={netns}"))).then_some(pid)
}

fn with_liveness(mut record: Value) -> Value {
    let dir = record["data_dir"].as_str().unwrap_or("").to_string();
    for group in ["etcd", "api"] {
        if let Some(items) = record[group].as_array_mut() {
            for item in items {
                let pid = u32::try_from(item["pid"].as_u64().unwrap_or(0)).unwrap_or(0);
                item["alive"] = json!(pid != 0 && is_ours(pid, &dir));
            }
        }
    }
    // What the store says of each host: registered, and live (its agent's
    // liveness lease held); null when the store does not answer.
    let in_store = match record["hosts"].as_array() {
        Some(hosts) if !hosts.is_empty() => store_view(&record),
        _ => None,
    };
    if let Some(hosts) = record["hosts"].as_array_mut() {
        for h in hosts {
            h["alive"] = json!(agent_of(h).is_some());
            let name = h["name"].as_str().unwrap_or_default().to_string();
            let (registered, live) = match &in_store {
                Some(d) => (json!(d.hosts.contains_key(&name)), json!(d.is_live(&name))),
                None => (Value::Null, Value::Null),
            };
            h["registered"] = registered;
            h["live"] = live;
        }
    }
    record
}

/// The hosts' registrations and liveness in the lab's store, if it answers.
fn store_view(record: &Value) -> Option<vpc_model::placement::HostDirectory> {
    let store = record["store"].as_str()?;
    let prefix = record["store_prefix"].as_str()?;
    let location = vpc_store::Location::parse(Some(store), PathBuf::from("."), prefix).ok()?;
    let mut st = vpc_store::open(&location).ok()?;
    vpc_store::host_directory(&mut *st).ok()
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

fn down(dir: &Path) -> Result<()> {
    let record = read_record(dir)?;
    let lab_dir = record["data_dir"].as_str().unwrap_or("").to_string();
    let mut pids: Vec<u32> = Vec::new();
    // Agents first, then their hosts' kernel objects and the lab's underlay.
    let hosts: Vec<Value> = record["hosts"].as_array().cloned().unwrap_or_default();
    let agents: Vec<u32> = hosts.iter().filter_map(agent_of).collect();
    for p in &agents {
        signal(*p, "TERM");
    }
    let give_up = Instant::now() + Duration::from_secs(5);
    while agents.iter().any(|p| alive(*p)) && Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(50));
    }
    for h in &hosts {
        if let Some(p) = agent_of(h) {
            signal(p, "KILL");
        }
    }
    let mut host_names = Vec::new();
    for h in &hosts {
        if let Some(tag) = h["tag"].as_str() {
            if let Err(e) = vpc_dataplane::teardown(tag, &[]) {
                eprintln!("removing host {}'s namespaces: {e}", h["name"]);
            }
        }
        if let Some(log) = h["log"].as_str() {
            let _ = std::fs::remove_file(log);
        }
        host_names.push(h["name"].as_str().unwrap_or_default().to_string());
    }
    if let Some(lab_tag) = record["lab_tag"].as_str() {
        if !hosts.is_empty() {
            vpc_dataplane::underlay::lab_fabric_down(lab_tag, &host_names)
                .context("removing the lab's underlay")?;
        }
    }
    pids.extend(agents);
    for group in ["api", "etcd"] {
        for item in record[group].as_array().into_iter().flatten() {
            if let Some(pid) = item["pid"].as_u64().and_then(|p| u32::try_from(p).ok()) {
                if is_ours(pid, &lab_dir) {
                    signal(pid, "TERM");
                    pids.push(pid);
                }
            }
        }
    }
    let give_up = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|p| alive(*p)) && Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(50));
    }
    for p in &pids {
        if is_ours(*p, &lab_dir) {
            signal(*p, "KILL");
        }
    }
    let dir = Path::new(&lab_dir);
    for group in ["etcd", "api"] {
        for (i, item) in record[group].as_array().into_iter().flatten().enumerate() {
            if let Some(log) = item["log"].as_str() {
                let _ = std::fs::remove_file(log);
            }
            let data = match group {
                "etcd" => dir.join(format!("etcd-m{i}")),
                _ => dir.join(format!("api-{i}")),
            };
            let _ = std::fs::remove_dir_all(data);
        }
    }
    std::fs::remove_file(record_path(dir))?;
    // The directory itself goes too when the lab was all it held.
    let _ = std::fs::remove_dir(dir);
    println!(
        "lab in {} is down ({} processes stopped)",
        dir.display(),
        pids.len()
    );
    Ok(())
}
