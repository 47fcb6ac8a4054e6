//! The store's clock: the wall clock plus the offset a test clock
//! (`vpcd serve --test-clock`) keeps in the store's settings, so every
//! server, agent and command of one store reads the same "now".

use crate::{Result, StateStore};
use vpc_model::Timestamp;

/// The setting that holds the test clock's offset from the wall clock, in
/// milliseconds.
pub const CLOCK_OFFSET_KEY: &str = "clock_offset_ms";

/// Milliseconds since the Unix epoch on this machine's wall clock.
pub fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The stored offset (0 when none was ever set or it does not parse).
pub fn stored_offset_ms(store: &mut dyn StateStore) -> Result<i64> {
    Ok(store
        .get_setting(CLOCK_OFFSET_KEY)?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

/// Now on a clock `offset_ms` ahead of the wall clock.
pub fn now_with_offset(offset_ms: i64) -> Timestamp {
    Timestamp(wall_clock_ms().saturating_add(offset_ms))
}
