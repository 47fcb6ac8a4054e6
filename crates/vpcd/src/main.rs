//! `vpcd`: a self-hosted VPC and VPC-peering system driven by the EC2 Query API.
//!
//! This binary stays thin: it parses the command line and hands over to the
//! library crates.

mod agent;
mod agent_backbone;
mod agent_ops;
mod cost_cli;
mod host_cli;
mod lab;
mod reach_cli;
mod regions_cli;
mod resolver;
mod store_args;
mod traffic;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use vpc_model::region::Regions;
use vpc_model::Limits;
use vpc_store::{StateStore, Store};

#[derive(Parser, Debug)]
#[command(
    name = "vpcd",
    version,
    about = "Self-hosted AWS-style VPCs and VPC peering"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Serve the EC2 Query API (the default command).
    Serve(ServeArgs),
    /// Realize one host's share of a shared store's World (its zones'
    /// instances, every router, VXLAN links to the other hosts).
    Agent(agent::AgentArgs),
    /// Manage accounts and their access keys.
    Account {
        #[command(subcommand)]
        cmd: AccountCmd,
    },
    /// Remove every kernel object (namespaces, links) this data directory's vpcd created.
    Teardown {
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Run a command inside an instance's network namespace.
    Exec {
        /// The instance ID, e.g. i-0123456789abcdef0.
        instance: String,
        /// The command and its arguments (after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        cmd: Vec<String>,
    },
    /// Can a packet get from SRC to DST, hop by hop, and if not, why (and how to fix it).
    Reach(reach_cli::ReachArgs),
    /// The encrypted inter-region backbone: status and gateway keys.
    Regions {
        #[command(subcommand)]
        cmd: regions_cli::RegionsCmd,
    },
    /// Metered data transfer and its cost per peering and gateway (a table, or --csv).
    Cost(cost_cli::CostArgs),
    /// A cluster's hosts: list them, or deregister one that is gone for good.
    Host {
        #[command(subcommand)]
        cmd: host_cli::HostCmd,
    },
    /// A cluster on this machine: an etcd cluster and several API servers (docs/cluster.md).
    Lab {
        #[command(subcommand)]
        cmd: lab::LabCmd,
    },
}

/// `vpcd serve --quotas`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum QuotaProfile {
    Aws,
    Relaxed,
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Address to listen on (loopback by default).
    #[arg(long, default_value = "127.0.0.1:4599")]
    listen: SocketAddr,
    /// Where state lives. Default: $VPCD_DATA_DIR, else /var/lib/vpcd as root, else ~/.local/share/vpcd.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Regions to serve (comma-separated). Default: the common AWS commercial regions.
    #[arg(long, value_delimiter = ',')]
    regions: Vec<String>,
    /// Quota profile: `aws` (AWS's defaults) or `relaxed` (quotas raised and
    /// no state-transition delays, for test suites written against an emulator).
    #[arg(long, value_enum, default_value = "aws")]
    quotas: QuotaProfile,
    /// A JSON file of quota overrides over the profile, e.g. {"vpcs_per_region": 1000}.
    #[arg(long)]
    limits: Option<PathBuf>,
    /// Serve POST /_vpcd/clock?advance=SECONDS so tests can move the simulated clock.
    #[arg(long)]
    test_clock: bool,
    /// Serve the control plane only: record instances but do not realize them.
    #[arg(long)]
    no_dataplane: bool,
    /// Commit every write in its own transaction and fsync instead of letting
    /// concurrent writes share one (only to measure the difference).
    #[arg(long)]
    no_group_commit: bool,
    /// Forward DNS questions for names outside vpcd's zones (EC2 names,
    /// private hosted zones) to this resolver, HOST:PORT. Without it they get
    /// NXDOMAIN at once and no DNS query leaves the machine.
    #[arg(long, value_parser = resolver::upstream_addr)]
    dns_upstream: Option<SocketAddr>,
    /// A JSON rate table to price data transfer with (default: the one in
    /// the repository, rates/aws-rates.json).
    #[arg(long)]
    rates: Option<PathBuf>,
    /// Serve GET /metrics (Prometheus text format) on the API listener,
    /// without authentication (off by default: its labels name every
    /// account's peerings and gateways).
    #[arg(long)]
    metrics: bool,
    /// Seconds between reads of the kernel's data-transfer counters; each
    /// read is persisted, so a crash loses at most this much metering.
    #[arg(long, default_value_t = 60.0, value_parser = positive_secs)]
    meter_interval_secs: f64,
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    store: store_args::StoreArgs,
}

/// `HOST:PORT` resolved once, at start-up.
/// Limits at the HTTP boundary (defaults in `vpc_api::HttpLimits::default`).
#[derive(clap::Args, Debug, Default)]
struct HttpArgs {
    /// Seconds a connection gets to send a request's headers (also the keep-alive idle limit). Default 10.
    #[arg(long, value_parser = positive_secs)]
    header_timeout_secs: Option<f64>,
    /// Seconds with no byte moving either way before a connection is closed. Default 60.
    #[arg(long, value_parser = positive_secs)]
    idle_timeout_secs: Option<f64>,
    /// Seconds a request's whole body may take to arrive. Default 30.
    #[arg(long, value_parser = positive_secs)]
    body_timeout_secs: Option<f64>,
    /// Largest request body in bytes. Default 2097152 (2 MiB).
    #[arg(long)]
    max_body_bytes: Option<usize>,
    /// Connections served at once; capped below the open-file limit. Default 4096.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: Option<u32>,
}

fn positive_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("{s:?} is not a positive number of seconds")),
    }
}

impl HttpArgs {
    fn limits(&self) -> vpc_api::HttpLimits {
        let d = vpc_api::HttpLimits::default();
        let secs = |v: Option<f64>, default| v.map_or(default, std::time::Duration::from_secs_f64);
        vpc_api::HttpLimits {
            header_timeout: secs(self.header_timeout_secs, d.header_timeout),
            idle_timeout: secs(self.idle_timeout_secs, d.idle_timeout),
            body_timeout: secs(self.body_timeout_secs, d.body_timeout),
            max_body_bytes: self.max_body_bytes.unwrap_or(d.max_body_bytes),
            max_connections: self
                .max_connections
                .map_or(d.max_connections, |n| n as usize),
            ..d
        }
    }
}

/// Raises the soft open-file limit to the hard one where allowed; returns the limit in force.
fn raise_open_files_limit() -> u64 {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "could not raise the open-file limit");
    }
    match rlimit::Resource::NOFILE.get() {
        Ok((soft, _)) => soft,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the open-file limit; assuming 1024");
            1024
        }
    }
}

#[derive(Subcommand, Debug)]
enum AccountCmd {
    /// Add an account with one access key. Takes effect on a running server at once.
    Add {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The 12-digit account id.
        #[arg(long)]
        id: String,
        #[arg(long)]
        access_key_id: String,
        #[arg(long)]
        secret_access_key: String,
        #[command(flatten)]
        store: store_args::StoreArgs,
    },
    /// List accounts and their access key ids.
    List {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        store: store_args::StoreArgs,
    },
}

fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("VPCD_DATA_DIR") {
        return PathBuf::from(d);
    }
    let is_root = std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || std::env::var_os("HOME").is_some_and(|h| h == "/root");
    if is_root {
        return PathBuf::from("/var/lib/vpcd");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/vpcd")
}

fn random_string(alphabet: &[u8], n: usize) -> String {
    (0..n)
        .map(|_| alphabet[rand::random_range(0..alphabet.len())] as char)
        .collect()
}

/// On a data directory with no account, makes one and prints its keys once.
fn first_account(store: &mut dyn StateStore) -> Result<()> {
    if !store.list_accounts()?.is_empty() {
        return Ok(());
    }
    let id = format!(
        "{:012}",
        rand::random_range(100_000_000_000u64..999_999_999_999)
    );
    let akid = format!(
        "AKIA{}",
        random_string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
    );
    let secret = random_string(
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        40,
    );
    store.add_account(&id, &akid, &secret)?;
    println!("vpcd: created the first account; these keys are shown only once:");
    println!("  account id:            {id}");
    println!("  aws_access_key_id:     {akid}");
    println!("  aws_secret_access_key: {secret}");
    Ok(())
}

async fn run_serve(args: ServeArgs) -> Result<()> {
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
    let location = args.store.location(&data_dir)?;
    if location.is_shared() {
        // Several servers start together on a shared store: accounts are
        // added explicitly there (`vpcd account add --store ...`).
        println!("vpcd: state in {location}");
    } else {
        first_account(&mut *vpc_store::open(&location)?)
            .with_context(|| format!("opening {}", data_dir.display()))?;
    }
    let regions = if args.regions.is_empty() {
        Regions::default()
    } else {
        Regions::from_names(&args.regions)
    };
    let profile = match args.quotas {
        QuotaProfile::Aws => Limits::default(),
        QuotaProfile::Relaxed => Limits::relaxed(),
    };
    let limits: Limits = match &args.limits {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            profile
                .with_overrides(&text)
                .with_context(|| format!("parsing {}", p.display()))?
        }
        None => profile,
    };
    let rates = cost_cli::load_rates(args.rates.as_deref())?;
    let open_files = raise_open_files_limit();
    let http = args.http.limits().fit_open_files(open_files);
    tracing::info!(?http, open_files, "HTTP limits");
    let app = vpc_api::App::open_at(
        vpc_api::Config {
            data_dir: data_dir.clone(),
            regions,
            limits,
            test_clock: args.test_clock,
            group_commit: !args.no_group_commit,
            http,
            rates,
            serve_metrics: args.metrics,
        },
        &location,
    )
    .with_context(|| format!("opening state in {location}"))?;
    let meter_every = std::time::Duration::from_secs_f64(args.meter_interval_secs);
    let dataplane = if location.is_shared() {
        "off (--store etcd: each host runs `vpcd agent`, see docs/cluster.md): control plane only"
            .to_string()
    } else {
        start_dataplane(
            &app,
            &data_dir,
            args.no_dataplane,
            meter_every,
            args.dns_upstream,
        )
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!(
        "vpcd: serving the EC2 API on http://{addr} and the web console on http://{addr}/console/ (data: {}); data plane: {dataplane}",
        data_dir.display()
    );
    tracing::info!(%addr, "listening");
    // With the data plane, "test connectivity" also sends real packets.
    let prober: Option<Arc<dyn vpc_console::Prober>> =
        (!args.no_dataplane && is_root()).then(|| {
            Arc::new(reach_cli::ConsoleProber {
                data_dir: data_dir.clone(),
                location: location.clone(),
            }) as _
        });
    let console = vpc_console::router_with(app.clone(), prober);
    vpc_api::http::serve_with(app, console, listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    Ok(())
}

/// The data directory's data-plane tag: 4 hex digits, made once and kept.
fn dataplane_tag(store: &mut Store) -> Result<String> {
    if let Some(t) = store.get_setting("dp_tag")? {
        return Ok(t);
    }
    let t = format!("{:04x}", rand::random::<u16>());
    store.set_setting("dp_tag", &t)?;
    Ok(t)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Starts the reconciler thread when the data plane can run; says why not otherwise.
fn start_dataplane(
    app: &Arc<vpc_api::App>,
    data_dir: &std::path::Path,
    disabled: bool,
    meter_every: std::time::Duration,
    dns_upstream: Option<SocketAddr>,
) -> String {
    if disabled {
        return "off (--no-dataplane): control plane only, instances are recorded but not realized"
            .into();
    }
    if !is_root() {
        return "off (not running as root): control plane only, instances are recorded but not realized".into();
    }
    let tag = match Store::open(data_dir)
        .map_err(anyhow::Error::from)
        .and_then(|mut s| dataplane_tag(&mut s))
    {
        Ok(t) => t,
        Err(e) => return format!("off (cannot read the data-plane tag: {e}): control plane only"),
    };
    // VPCD_PLAN=full re-plans the whole World on every change (the baseline
    // the incremental planner is measured against).
    let planning = match std::env::var("VPCD_PLAN").as_deref() {
        Ok("full") => vpc_dataplane::Planning::Full,
        _ => vpc_dataplane::Planning::Incremental,
    };
    // VPCD_BIG_TCP=0 turns the bulk-TCP fast path off (docs/dataplane.md,
    // "Fast path"), e.g. to measure it.
    let big_tcp = std::env::var("VPCD_BIG_TCP").map_or(true, |v| v != "0" && v != "off");
    // Inter-region peerings cross the encrypted backbone (region gateways,
    // WireGuard), keyed from the data directory.
    let backbone = match vpc_dataplane::Backbone::new(&tag, data_dir) {
        Ok(b) => b,
        Err(e) => return format!("off ({e}): control plane only"),
    };
    if app.config.serve_metrics {
        let app = app.clone();
        let export =
            move |s: &vpc_dataplane::backbone::Status| regions_cli::export(&app.metrics, s);
        if let Err(e) = regions_cli::start_metrics(export, data_dir) {
            tracing::warn!(error = %e, "the backbone's tunnel stats stay out of /metrics");
        }
    }
    let mut dp = match vpc_dataplane::Dataplane::new(tag.clone()) {
        Ok(dp) => dp
            .with_planning(planning)
            .with_big_tcp(big_tcp)
            .with_peering_link(Box::new(backbone)),
        Err(e) => {
            return format!(
                "off ({e}): control plane only, instances are recorded but not realized"
            )
        }
    };
    let dns = start_dns(app, &tag, dns_upstream);
    // VPCD_METER=0 leaves data transfer unmetered (no vpcd_meter tables),
    // e.g. to measure what metering costs.
    let meter = if std::env::var("VPCD_METER").is_ok_and(|v| v == "0" || v == "off") {
        "off (VPCD_METER=0)".to_string()
    } else {
        start_meter(app, data_dir, &tag, meter_every)
    };
    let flow_logs = start_flow_logs(app, data_dir, &tag);
    let app = app.clone();
    std::thread::Builder::new()
        .name("reconciler".into())
        .spawn(move || {
            // Level-triggered: every published state, and every 30 s anyway.
            let mut seen = u64::MAX;
            loop {
                let (gen, world) = if seen == u64::MAX {
                    app.wait_newer(u64::MAX, std::time::Duration::ZERO)
                } else {
                    app.wait_newer(seen, std::time::Duration::from_secs(30))
                };
                let started = std::time::Instant::now();
                let result = dp.reconcile(&world);
                if let Err(e) = observe_reconcile(Some(&app.metrics), started, result, &dp) {
                    tracing::warn!(error = %e, "reconcile failed; retrying on the next change")
                }
                seen = gen;
            }
        })
        .map(|_| {
            format!("on (namespaces vpcd{tag}-*, instances i-*); VPC DNS: {dns}; metering: {meter}; flow logs: {flow_logs}")
        })
        .unwrap_or_else(|e| format!("off (cannot start the reconciler: {e})"))
}

/// Records one reconcile pass in `metrics` (when kept): its outcome and
/// duration, and the kernel objects the data plane holds after it. Returns
/// the pass's result.
fn observe_reconcile(
    metrics: Option<&vpc_api::metrics::Metrics>,
    started: std::time::Instant,
    result: Result<vpc_dataplane::Report, vpc_dataplane::DataplaneError>,
    dp: &vpc_dataplane::Dataplane,
) -> Result<(), vpc_dataplane::DataplaneError> {
    let outcome = if result.is_ok() { "ok" } else { "error" };
    if let Some(m) = metrics {
        m.reconcile_duration
            .observe(started.elapsed().as_secs_f64());
        m.reconcile_passes.with_label_values(&[outcome]).inc();
        for (kind, n) in dp.object_counts() {
            m.kernel_objects
                .with_label_values(&[kind])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
    result.map(|report| tracing::debug!(?report, "reconciled"))
}

/// Starts the thread that meters data transfer (`docs/metering.md`,
/// [`traffic`]) with this data directory's store.
fn start_meter(
    app: &Arc<vpc_api::App>,
    data_dir: &std::path::Path,
    tag: &str,
    every: std::time::Duration,
) -> String {
    let opened = Store::open(data_dir).and_then(|mut s| {
        let b = StateStore::meter_baselines(&mut s, "")?;
        Ok((s, b))
    });
    let (store, baselines) = match opened {
        Ok(x) => x,
        Err(e) => return format!("off (cannot open the store: {e})"),
    };
    let meter = match vpc_dataplane::meter::Meter::new(tag.to_string(), baselines) {
        Ok(m) => m,
        Err(e) => return format!("off ({e})"),
    };
    traffic::start_meter(ServeTraffic(app.clone()), Box::new(store), meter, every)
}

/// The meter and flow logs of `vpcd serve` follow the App's published World.
struct ServeTraffic(Arc<vpc_api::App>);

impl traffic::MeterSource for ServeTraffic {
    fn wait_newer(&self, seen: u64, timeout: std::time::Duration) -> (u64, Arc<vpc_model::World>) {
        self.0.wait_newer(seen, timeout)
    }

    fn now(&self) -> vpc_model::Timestamp {
        self.0.now()
    }

    fn recorded(&self, usage: &[vpc_model::usage::Usage]) {
        traffic::count_transfer(&self.0.metrics, usage);
    }
}

/// Starts the thread that collects flow-log records ([`traffic`]) into
/// `<data-dir>/flow-logs/`.
fn start_flow_logs(app: &Arc<vpc_api::App>, data_dir: &std::path::Path, tag: &str) -> String {
    traffic::start_flow_logs(ServeTraffic(app.clone()), tag, data_dir.join("flow-logs"))
}

impl traffic::FlowLogSource for ServeTraffic {
    fn world(&self) -> Arc<vpc_model::World> {
        self.0.snapshot()
    }
}

/// Starts the Amazon-provided DNS server of every VPC (inside the router
/// namespaces the reconciler makes) and a thread that tells it of every
/// published World. Must run inside the tokio runtime.
fn start_dns(app: &Arc<vpc_api::App>, tag: &str, upstream: Option<SocketAddr>) -> String {
    let queries = app.metrics.dns_queries.clone();
    let (service, on) = resolver::start(
        tag,
        upstream,
        Some(Arc::new(move |rcode| {
            queries.with_label_values(&[rcode]).inc()
        })),
        {
            let app = app.clone();
            Arc::new(move || app.snapshot())
        },
        &tokio::runtime::Handle::current(),
    );
    let app = app.clone();
    std::thread::Builder::new()
        .name("dns-follower".into())
        .spawn(move || {
            let mut seen = u64::MAX;
            loop {
                let timeout = if seen == u64::MAX {
                    std::time::Duration::ZERO
                } else {
                    std::time::Duration::from_secs(30)
                };
                let (gen, _) = app.wait_newer(seen, timeout);
                if gen != seen {
                    service.changed();
                    seen = gen;
                }
            }
        })
        .map(|_| on)
        .unwrap_or_else(|e| format!("off (cannot start its thread: {e})"))
}

/// Errors end the process with one line: what failed and why (its causes,
/// joined with ": "), without a backtrace.
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vpcd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VPCD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let cmd = cli.cmd.unwrap_or(Cmd::Serve(ServeArgs {
        listen: "127.0.0.1:4599".parse().expect("literal"),
        data_dir: None,
        regions: Vec::new(),
        quotas: QuotaProfile::Aws,
        limits: None,
        test_clock: false,
        no_dataplane: false,
        no_group_commit: false,
        dns_upstream: None,
        rates: None,
        metrics: false,
        meter_interval_secs: 60.0,
        http: HttpArgs::default(),
        store: store_args::StoreArgs::default(),
    }));
    match cmd {
        Cmd::Serve(a) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(run_serve(a)),
        Cmd::Teardown { data_dir } => {
            let dir = data_dir.unwrap_or_else(default_data_dir);
            let mut store = Store::open(&dir)?;
            let Some(tag) = store.get_setting("dp_tag")? else {
                println!(
                    "nothing to tear down: {} never ran a data plane",
                    dir.display()
                );
                return Ok(());
            };
            let world = store.load_world()?;
            let ids: Vec<String> = world
                .iter::<vpc_model::Instance>()
                .map(|i| i.meta.id.clone())
                .collect();
            vpc_dataplane::teardown(&tag, &ids)?;
            let _ = &mut store;
            println!(
                "removed the kernel objects of {} (tag {tag})",
                dir.display()
            );
            Ok(())
        }
        Cmd::Regions { cmd } => regions_cli::run(cmd, default_data_dir),
        Cmd::Cost(a) => {
            let dir = a.data_dir.clone().unwrap_or_else(default_data_dir);
            cost_cli::run(a, &dir)
        }
        Cmd::Lab { cmd } => lab::run(cmd),
        Cmd::Host { cmd } => host_cli::run(cmd),
        Cmd::Agent(a) => agent::run(a),
        Cmd::Reach(a) => {
            let dir = a.data_dir.clone().unwrap_or_else(default_data_dir);
            std::process::exit(reach_cli::run(a, &dir, is_root()));
        }
        Cmd::Exec { instance, cmd } => {
            if !vpc_model::ids::is_well_formed("i", &instance) {
                anyhow::bail!("{instance:?} is not an instance ID (i-…)");
            }
            let status = std::process::Command::new("ip")
                .args(["netns", "exec", &instance])
                .args(&cmd)
                .status()
                .context("running ip netns exec")?;
            std::process::exit(status.code().unwrap_or(1));
        }
        Cmd::Account { cmd } => match cmd {
            AccountCmd::Add {
                data_dir,
                id,
                access_key_id,
                secret_access_key,
                store,
            } => {
                let dir = data_dir.unwrap_or_else(default_data_dir);
                let mut s = vpc_store::open(&store.location(&dir)?)?;
                s.add_account(&id, &access_key_id, &secret_access_key)?;
                println!("added account {id} with access key {access_key_id}");
                Ok(())
            }
            AccountCmd::List { data_dir, store } => {
                let dir = data_dir.unwrap_or_else(default_data_dir);
                let mut s = vpc_store::open(&store.location(&dir)?)?;
                for a in s.list_accounts()? {
                    let keys: Vec<&str> = a.keys.iter().map(|k| k.access_key_id.as_str()).collect();
                    println!("{}\t{}", a.id, keys.join(","));
                }
                Ok(())
            }
        },
    }
}
