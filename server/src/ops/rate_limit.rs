//! The per-client-address rate limit on the protocol endpoints (`/kbs/v0/*`): one token bucket
//! per address, `[rate_limit] per_second` tokens a second up to `burst`; a request takes one
//! token or is answered 429 `rate-limited` with `Retry-After`. IPv4 addresses are keyed whole,
//! IPv6 addresses by their /64 (one host gets a whole /64, so per-address keys would let it
//! rotate around the limit).
//!
//! Memory is bounded: a bucket that has refilled to `burst` says nothing a fresh bucket would
//! not, so such entries are swept out (at most once per refill period); and the table never
//! holds more than [`MAX_TRACKED`] addresses. When it is full of addresses that are all
//! actively limited, new addresses share one overflow bucket until the next sweep (and it is
//! logged): serving them unlimited would let an attacker with many addresses escape the limit
//! by filling the table, and refusing them outright would lock every new client out.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

use keylatch_broker::config::RateLimitConfig;
use keylatch_broker::{ApiError, ErrorKind};

/// Most addresses tracked at once (~64 bytes each).
/// Most addresses tracked at once (~64 bytes each).
pub const MAX_TRACKED: usize = 100_000;

/// One address's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The limiter: the table of buckets behind one mutex (held for a hash lookup only).
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    max_tracked: usize,
    table: Mutex<Table>,
}

#[derive(Debug)]
struct Table {
    buckets: HashMap<IpAddr, Bucket>,
    /// Shared by the addresses that find the table full.
    overflow: Option<Bucket>,
    last_sweep: Option<Instant>,
}

impl RateLimiter {
    /// `None` when the configuration disables the limit.
    #[must_use]
    pub fn new(config: RateLimitConfig) -> Option<Self> {
        Self::with_capacity(config, MAX_TRACKED)
    }

    /// Like [`RateLimiter::new`] with a table bound of `max_tracked` addresses.
    #[must_use]
    pub fn with_capacity(config: RateLimitConfig, max_tracked: usize) -> Option<Self> {
        (config.per_second > 0 && config.burst > 0).then(|| Self {
            per_second: f64::from(config.per_second),
            burst: f64::from(config.burst),
            max_tracked,
            table: Mutex::new(Table { buckets: HashMap::new(), overflow: None, last_sweep: None }),
        })
    }

    /// How long a bucket takes to refill from empty: after that, an entry is forgettable.
    fn refill_period(&self) -> Duration {
        Duration::from_secs_f64(self.burst / self.per_second)
    }

    /// Takes one token for `addr` at `now`: `Ok(())`, or `Err(wait)` until one is available.
    pub fn check(&self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = bucket_key(addr);
        let mut table = self.table.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Sweeps run on the refill schedule only: a full table does not make every new
        // address pay for a scan of it.
        let due = table.last_sweep.is_none_or(|t| now.duration_since(t) >= self.refill_period());
        if due {
            self.sweep(&mut table, now);
        }
        let fresh = Bucket { tokens: self.burst, at: now };
        let bucket = if table.buckets.contains_key(&key) || table.buckets.len() < self.max_tracked {
            table.buckets.entry(key).or_insert(fresh)
        } else {
            if table.overflow.is_none() {
                tracing::warn!(
                    tracked = table.buckets.len(),
                    "rate limit table full; new addresses share one bucket until the next sweep"
                );
            }
            table.overflow.get_or_insert(fresh)
        };
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.per_second))
        }
    }

    /// Drops every bucket that has refilled to `burst` by `now`.
    fn sweep(&self, table: &mut Table, now: Instant) {
        let (rate, burst) = (self.per_second, self.burst);
        let refilled = |b: &Bucket| {
            b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate >= burst
        };
        table.buckets.retain(|_, b| !refilled(b));
        if table.overflow.as_ref().is_some_and(refilled) {
            table.overflow = None;
        }
        table.last_sweep = Some(now);
    }

    /// Addresses currently tracked.
    #[must_use]
    pub fn tracked(&self) -> usize {
        self.table.lock().unwrap_or_else(std::sync::PoisonError::into_inner).buckets.len()
    }
}

/// IPv4 (and IPv4-mapped IPv6) whole; other IPv6 by /64.
fn bucket_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// The middleware: limits by the peer address the accept loop attached (requests without one,
/// which only in-process callers can make, share the unspecified address's bucket).
pub async fn limit(limiter: Arc<RateLimiter>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    match limiter.check(peer, Instant::now()) {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            keylatch_broker::metrics::rate_limited();
            tracing::info!(%peer, "rate limited");
            let secs = wait.as_secs_f64().ceil().max(1.0);
            let mut response = crate::error::respond(ApiError::new(
                ErrorKind::RateLimited,
                "too many requests from this address; retry after the Retry-After delay",
            ));
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs_u64(secs)));
            response
        }
    }
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // reason: a positive, ceil'd, small f64
fn secs_u64(secs: f64) -> u64 {
    secs.min(86_400.0) as u64
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // reason: tests fail loudly
    use super::*;

    fn limiter(per_second: u32, burst: u32, cap: usize) -> RateLimiter {
        RateLimiter::with_capacity(RateLimitConfig { per_second, burst }, cap).unwrap()
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn allows_the_burst_then_refuses_with_the_time_to_one_token() {
        let l = limiter(2, 3, 10);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.check(A, t0), Ok(()));
        }
        assert_eq!(l.check(A, t0), Err(Duration::from_millis(500)));
        // Another address has its own bucket.
        assert_eq!(l.check(B, t0), Ok(()));
        // Half a second later one token is back, and only one.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(l.check(A, t1), Ok(()));
        assert!(l.check(A, t1).is_err());
    }

    #[test]
    fn zero_per_second_disables_the_limit() {
        assert!(RateLimiter::new(RateLimitConfig { per_second: 0, burst: 10 }).is_none());
        assert!(RateLimitConfig { per_second: 1, burst: 0 }.check().is_err());
        assert!(RateLimitConfig { per_second: 0, burst: 0 }.check().is_ok());
    }

    #[test]
    fn evicts_refilled_entries_and_never_exceeds_the_bound() {
        let l = limiter(1, 2, 4);
        let t0 = Instant::now();
        for i in 0..4u8 {
            l.check(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, i)), t0).unwrap();
        }
        assert_eq!(l.tracked(), 4);
        // Full of active buckets: new addresses are not tracked but share one bucket, so
        // filling the table does not lift the limit for them.
        let (c, d) = (
            IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 9)),
            IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 10)),
        );
        l.check(c, t0).unwrap();
        l.check(d, t0).unwrap();
        assert_eq!(l.check(c, t0), Err(Duration::from_secs(1)));
        assert_eq!(l.tracked(), 4);
        // Two seconds on, every bucket has refilled: the sweep forgets them all.
        let t1 = t0 + Duration::from_secs(2);
        l.check(A, t1).unwrap();
        assert_eq!(l.tracked(), 1);
    }

    #[test]
    fn keys_ipv6_by_slash_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::7".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(bucket_key(a), bucket_key(b));
        assert_ne!(bucket_key(a), bucket_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(bucket_key(mapped), A);
    }
}
