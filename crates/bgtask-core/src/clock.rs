//! The wall clock, in the one unit every record uses: milliseconds since
//! the Unix epoch. At the bottom of the crate so the store, the monitor
//! and the service read time the same way without importing each other.

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
