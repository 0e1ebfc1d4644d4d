//! A clock comparable across processes: raw CLOCK_MONOTONIC nanoseconds
//! (`std::time::Instant` cannot be sent to another process).

use std::path::Path;

use anyhow::{Context, Result};
use rustix::time::{clock_gettime, ClockId};

/// CLOCK_MONOTONIC now, in nanoseconds.
pub fn mono_ns() -> u64 {
    let t = clock_gettime(ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// `bench stamp FILE`: the last act of a benchmark task. Writes the time
/// and returns, so the process exits right after the stamp.
pub fn stamp(file: &Path) -> Result<()> {
    let now = mono_ns();
    std::fs::write(file, now.to_string())
        .with_context(|| format!("cannot write {}", file.display()))
}

/// Reads a stamp written by `stamp`.
pub fn read_stamp(file: &Path) -> Result<u64> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    text.trim()
        .parse()
        .with_context(|| format!("bad stamp in {}", file.display()))
}

/// Milliseconds between two `mono_ns` readings (negative if `to` is first).
pub fn ms_between(from: u64, to: u64) -> f64 {
    (to as f64 - from as f64) / 1e6
}
