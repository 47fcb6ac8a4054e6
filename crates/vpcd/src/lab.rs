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
        /// Simulated hosts with agents: not built yet (docs/cluster.md).
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
            if hosts > 0 {
                bail!("--hosts: simulated hosts, agents and the VXLAN fabric are not built yet (see docs/cluster.md); run the lab without --hosts");
            }
            if etcd == 0 || api == 0 {
                bail!("a lab needs at least one etcd member and one API server");
            }
            let record = up(&data_dir, etcd, api, &store_prefix, &serve_args)?;
            println!("{}", serde_json::to_string_pretty(&record)?);
            Ok(())
        }
        LabCmd::Status { data_dir, json: _ } => {
            let record = with_liveness(read_record(&data_dir)?);
            println!("{}", serde_json::to_string_pretty(&record)?);
            Ok(())
        }
        LabCmd::Down { data_dir } => down(&data_dir),
    }
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
    record
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
