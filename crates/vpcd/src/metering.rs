//! The meter thread (`docs/metering.md`), shared by `vpcd serve` (one host)
//! and `vpcd agent` (a cluster's host): it keeps every router's meter table
//! in step with the World it is given and, every interval, reads the
//! counters and persists the usage with the counter values it was computed
//! from, in one store transaction, so a crash loses at most one interval.

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
pub fn start(
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
