//! Wall-clock time in milliseconds. The only place the server reads the clock
//! for stored timestamps, so tests and future sans-IO code have one seam.

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
