//! What a `vpcd agent` runs beside its reconciler (`docs/cluster.md`):
//! the World it last applied, published to its other threads, the
//! data-transfer meter of its host's routers and its flow-log collector
//! (`docs/metering.md`), and its `/metrics` (`--metrics-listen`).
//!
//! The meter is the one `vpcd serve` runs (`crate::traffic`) with the
//! cluster's plan (`vpc_dataplane::meter::plan_for`): each host meters the
//! routers it holds and adds to the shared hourly sums in the store, so
//! every API server's Cost Explorer and `vpcd cost --store` report the
//! cluster's usage. Its counters' baselines are stored per namespace, and a
//! host's namespaces carry its tag, so each host resumes from its own.

use crate::traffic::{self, FlowLogSource, MeterSource};
use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;
use vpc_api::metrics::Metrics;
use vpc_dataplane::placement::Placement;
use vpc_model::{Timestamp, World};
use vpc_store::Location;

/// The setting that holds the simulated clock's offset (as the API servers').
pub use vpc_store::clock::CLOCK_OFFSET_KEY;

/// The World the agent's reconciler last applied, with a generation that
/// grows on every change, and the cluster clock's offset.
#[derive(Debug)]
pub struct Published {
    state: Mutex<(u64, Arc<World>)>,
    changed: Condvar,
    clock_offset_ms: AtomicI64,
    placement: Mutex<Option<Placement>>,
}

impl Published {
    pub fn new(world: World, clock_offset_ms: i64) -> Arc<Published> {
        Arc::new(Published {
            state: Mutex::new((0, Arc::new(world))),
            changed: Condvar::new(),
            clock_offset_ms: AtomicI64::new(clock_offset_ms),
            placement: Mutex::new(None),
        })
    }

    pub fn world(&self) -> Arc<World> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .clone()
    }

    pub fn publish(&self, world: World) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        *s = (s.0 + 1, Arc::new(world));
        self.changed.notify_all();
    }

    /// The cluster's hosts, as the reconciler last planned with.
    pub fn set_placement(&self, placement: Option<Placement>) {
        *self
            .placement
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = placement;
    }

    /// A `clock_offset_ms` setting the store streamed.
    pub fn set_clock_offset(&self, value: &str) {
        if let Ok(ms) = value.parse() {
            self.clock_offset_ms.store(ms, Ordering::SeqCst);
        }
    }
}

/// The meter's view of the agent: the published World and, with
/// `--metrics-listen`, the metrics its usage feeds.
struct AgentMeter {
    published: Arc<Published>,
    metrics: Option<Arc<Metrics>>,
}

impl MeterSource for AgentMeter {
    fn wait_newer(&self, seen: u64, timeout: Duration) -> (u64, Arc<World>) {
        self.published.wait_newer(seen, timeout)
    }

    fn now(&self) -> Timestamp {
        self.published.now()
    }

    fn recorded(&self, usage: &[vpc_model::usage::Usage]) {
        if let Some(m) = &self.metrics {
            traffic::count_transfer(m, usage);
        }
    }
}

impl Published {
    /// Waits until a World newer than generation `seen` is published, or
    /// the timeout passes.
    fn wait_newer(&self, seen: u64, timeout: Duration) -> (u64, Arc<World>) {
        let s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (s, _) = self
            .changed
            .wait_timeout_while(s, timeout, |s| s.0 == seen)
            .unwrap_or_else(PoisonError::into_inner);
        (s.0, s.1.clone())
    }

    /// Now on the cluster's clock.
    fn now(&self) -> Timestamp {
        vpc_store::clock::now_with_offset(self.clock_offset_ms.load(Ordering::Relaxed))
    }
}

/// Starts the host's meter on its own connection to the store; returns the
/// line the agent prints. `VPCD_METER=0` leaves it off, as for `serve`.
pub fn start_meter(
    published: &Arc<Published>,
    metrics: Option<Arc<Metrics>>,
    location: &Location,
    tag: &str,
    every: Duration,
) -> String {
    if std::env::var("VPCD_METER").is_ok_and(|v| v == "0" || v == "off") {
        return "off (VPCD_METER=0)".into();
    }
    let opened = vpc_store::open(location).and_then(|mut s| {
        let b = s.meter_baselines(&format!("vpcd{tag}-"))?;
        Ok((s, b))
    });
    let (store, baselines) = match opened {
        Ok(x) => x,
        Err(e) => return format!("off (cannot open the store: {e})"),
    };
    match vpc_dataplane::meter::Meter::new(tag.to_string(), baselines) {
        Ok(m) => {
            let source = AgentMeter {
                published: published.clone(),
                metrics,
            };
            traffic::start_meter(source, store, m.across_hosts(), every)
        }
        Err(e) => format!("off ({e})"),
    }
}

impl FlowLogSource for Arc<Published> {
    fn world(&self) -> Arc<World> {
        Published::world(self)
    }

    fn placement(&self) -> Option<Placement> {
        self.placement
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Starts the host's flow-log collector: the records of the interfaces this
/// host holds, written under `dir` as `vpcd serve` writes them under
/// `<data-dir>/flow-logs/` (the lab gives every host one directory).
pub fn start_flow_logs(published: &Arc<Published>, tag: &str, dir: Option<PathBuf>) -> String {
    match dir {
        Some(dir) => traffic::start_flow_logs(published.clone(), tag, dir),
        None => "off (no --flow-log-dir)".into(),
    }
}

/// Serves the host's metrics at `http://ADDR/metrics` (Prometheus text, as
/// `vpcd serve --metrics`: reconcile passes and time, kernel objects,
/// metered transfer, DNS queries) on `rt`. Fails at once if ADDR cannot be
/// bound.
pub fn start_metrics(
    addr: SocketAddr,
    rt: &tokio::runtime::Handle,
) -> anyhow::Result<Arc<Metrics>> {
    let listener =
        std::net::TcpListener::bind(addr).with_context(|| format!("--metrics-listen {addr}"))?;
    listener.set_nonblocking(true)?;
    let metrics = Arc::new(Metrics::new());
    let served = metrics.clone();
    rt.spawn(async move {
        let result = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => vpc_api::metrics::serve_alone(l, served).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    });
    Ok(metrics)
}
