//! Boot-time patience: retry transient failures (connection errors, 5xx, 429) with exponential
//! backoff and full jitter until a deadline, then give up with [`AgentError::Unreachable`].
//! Anything else (403, 404, refused attestation, local errors) is returned at once.

use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore};

use crate::AgentError;

/// First backoff; doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Runs `op` until it succeeds, fails permanently, or `deadline` passes.
pub fn with_deadline<T>(
    deadline: Instant,
    total: Duration,
    mut op: impl FnMut() -> Result<T, AgentError>,
) -> Result<T, AgentError> {
    let mut backoff = FIRST_BACKOFF;
    loop {
        match op() {
            Err(e) if e.is_transient() => {
                let now = Instant::now();
                let remaining = deadline.saturating_duration_since(now);
                if remaining.is_zero() {
                    return Err(AgentError::Unreachable {
                        seconds: total.as_secs(),
                        last: e.to_string(),
                    });
                }
                std::thread::sleep(jitter(backoff).min(remaining));
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            other => return other,
        }
    }
}

/// A delay in `[d/2, d]`: spreads a fleet of VMs booting at once.
fn jitter(d: Duration) -> Duration {
    let half = d / 2;
    let ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX).max(1);
    half + Duration::from_millis(OsRng.next_u64() % ms)
}
