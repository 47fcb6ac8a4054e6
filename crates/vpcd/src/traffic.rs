//! The traffic threads of the data plane, shared by `vpcd serve` (one host)
//! and `vpcd agent` (a cluster's host): the flow-log collector, and the
//! meter (`docs/metering.md`), which keeps every router's meter table
//! in step with the World it is given and, every interval, reads the
//! counters and persists the usage with the counter values it was computed
//! from, in one store transaction, so a crash loses at most one interval.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vpc_dataplane::meter::Meter;
use vpc_model::usage::Usage;
use vpc_model::{Timestamp, World};
use vpc_store::StateStore;

/// What the meter thread needs from the process it runs in.
pub trait MeterSource: Send + 'static {
    /// Waits until a World newer than generation `seen` is published, or
    /// the timeout passes; returns the current generation and World.
    fn wait_newer(&self, seen: u64, timeout: Duration) -> (u64, Arc<World>);
    /// Now on the (possibly simulated) clock: the hour usage falls in.
    fn now(&self) -> Timestamp;
    /// Usage was persisted (e.g. for `/metrics`).
    fn recorded(&self, _usage: &[Usage]) {}
}

/// Starts the meter thread; returns the line `serve`/`agent` print.
pub fn start_meter(
    source: impl MeterSource,
    mut store: Box<dyn StateStore>,
    mut meter: Meter,
    every: Duration,
) -> String {
    std::thread::Builder::new()
        .name("meter".into())
        .spawn(move || {
            let mut seen = u64::MAX;
            let mut next_read = Instant::now();
            loop {
                let wait = next_read
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_secs(1));
                // Every second at least: a router namespace the reconciler
                // made since gets its meter table within a second.
                let (gen, world) = source.wait_newer(seen, wait);
                let read = Instant::now() >= next_read;
                seen = gen;
                let poll = meter.poll(&world, gen, source.now(), read);
                if read {
                    next_read += every;
                    if next_read < Instant::now() {
                        next_read = Instant::now() + every;
                    }
                }
                let changed: std::collections::BTreeMap<_, _> = poll
                    .baselines
                    .iter()
                    .filter(|(id, v)| meter.baseline(id) != Some(**v))
                    .map(|(k, v)| (k.clone(), *v))
                    .collect();
                if poll.usage.is_empty() && changed.is_empty() && poll.forget.is_empty() {
                    continue;
                }
                match store.record_usage(&poll.usage, &changed, &poll.forget) {
                    Ok(()) => {
                        meter.persisted(&poll);
                        source.recorded(&poll.usage);
                    }
                    Err(e) => tracing::warn!(
                        error = %e,
                        "cannot persist metered usage; it is kept for the next read"
                    ),
                }
            }
        })
        .map(|_| format!("on (read every {:.1} s)", every.as_secs_f64()))
        .unwrap_or_else(|e| format!("off (cannot start its thread: {e})"))
}

/// Adds persisted usage to the `/metrics` transfer counters.
pub fn count_transfer(metrics: &vpc_api::metrics::Metrics, usage: &[Usage]) {
    for u in usage {
        let k = &u.key;
        let labels = [k.kind.name(), &k.resource_id, &k.vpc_id, &k.account];
        metrics
            .transfer_bytes
            .with_label_values(&labels)
            .inc_by(u.bytes);
        metrics
            .transfer_packets
            .with_label_values(&labels)
            .inc_by(u.packets);
    }
}

/// What the flow-log thread needs from the process it runs in.
pub trait FlowLogSource: Send + 'static {
    /// The World as last applied.
    fn world(&self) -> Arc<World>;
    /// On a cluster's host, the placement (only its interfaces are logged).
    fn placement(&self) -> Option<vpc_dataplane::placement::Placement> {
        None
    }
}

/// Starts the thread that collects flow-log records (`docs/metering.md`):
/// every second it reads the conntrack tables of the routers a flow log
/// covers and writes the aggregation windows that are due under `out_dir`.
/// `VPCD_FLOW_LOG_FLUSH=<seconds>` writes windows that often instead of
/// every `MaxAggregationInterval` (for tests). Returns the line to print.
pub fn start_flow_logs(source: impl FlowLogSource, tag: &str, out_dir: PathBuf) -> String {
    let tools = match vpc_dataplane::Tools::find() {
        Ok(t) => t,
        Err(e) => return format!("off ({e})"),
    };
    let flush = std::env::var("VPCD_FLOW_LOG_FLUSH")
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|s| *s > 0);
    let mut collector = vpc_dataplane::flow_log::Collector::new(
        vpc_dataplane::Runner::new(tools),
        tag.to_string(),
        out_dir,
        flush,
    );
    std::thread::Builder::new()
        .name("flow-logs".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_secs(1));
            let world = source.world();
            collector.set_placement(source.placement());
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            match collector.poll(&world, now) {
                Ok(report) if !report.files.is_empty() => {
                    tracing::debug!(?report, "flow-log records written")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read conntrack for flow logs"),
            }
        })
        .map(|_| match flush {
            Some(s) => format!("on (windows written every {s} s: VPCD_FLOW_LOG_FLUSH)"),
            None => "on".to_string(),
        })
        .unwrap_or_else(|e| format!("off (cannot start its thread: {e})"))
}
