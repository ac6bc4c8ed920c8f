//! The broker's one reading of the wall clock, as Unix seconds. Domain functions take `now` as
//! an argument; the edges (HTTP handlers, commands, background tasks) read it here.

/// Now, as Unix seconds.
#[must_use]
pub fn now_s() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
