//! Polite HTTP GETs to one upstream collateral service: a request rate limit shared by every
//! caller, exponential backoff that honours `Retry-After` on HTTP 429 (and on 503), and a
//! bounded number of retries on 5xx and transport errors. One attempt is a
//! [`CollateralFetcher::get`], which the HTTP edge implements (with the per-request timeout of
//! `[collateral] timeout_s`); this crate has no HTTP client.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::config::CollateralConfig;

/// Why a GET gave no usable response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The service answered 404: it has no such item.
    #[error("{url}: not found (HTTP 404)")]
    NotFound { url: String },
    /// A final status that retrying cannot fix (4xx other than 404 and 429).
    #[error("{url}: HTTP {status}")]
    Refused { url: String, status: u16 },
    /// Retries exhausted (429, 5xx or transport errors), or a `Retry-After` beyond the limit.
    #[error("{url}: gave up after {attempts} attempt(s): {last}")]
    GaveUp { url: String, attempts: u32, last: String },
}

/// One response, whatever its status.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    /// The HTTP status code.
    pub status: u16,
    /// The response headers (names as sent; looked up case-insensitively).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Fetched {
    /// The first value of header `name` (case-insensitive).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Why one GET produced no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// The request (connect, send or read) took longer than `[collateral] timeout_s`.
    TimedOut,
    /// No connection could be made (DNS, TCP, TLS).
    ConnectionFailed,
    /// The response body could not be read.
    Body(String),
    /// Any other transport failure.
    Other,
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TimedOut => f.write_str("timed out"),
            Self::ConnectionFailed => f.write_str("connection failed"),
            Self::Body(e) => write!(f, "reading body: {e}"),
            Self::Other => f.write_str("transport error"),
        }
    }
}

/// A boxed future, as [`CollateralFetcher::get`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One HTTPS GET to an upstream collateral service (AMD KDS, Intel PCS, a PCCS), without
/// retries: pacing, backoff and the meaning of each status are [`Upstream`]'s.
pub trait CollateralFetcher: Send + Sync + std::fmt::Debug {
    fn get<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<Fetched, TransportError>>;
}

/// A client for one upstream service, with its own rate limit.
#[derive(Debug)]
pub struct Upstream {
    fetcher: Arc<dyn CollateralFetcher>,
    interval: Duration,
    /// The earliest instant the next request may start.
    next_slot: Mutex<Instant>,
    max_retries: u32,
    backoff_initial: Duration,
    max_backoff: Duration,
}

impl Upstream {
    #[must_use]
    pub fn new(config: &CollateralConfig, fetcher: Arc<dyn CollateralFetcher>) -> Self {
        Self {
            fetcher,
            interval: Duration::from_secs(1) / config.requests_per_second.max(1),
            next_slot: Mutex::new(Instant::now()),
            max_retries: config.max_retries,
            backoff_initial: Duration::from_millis(config.backoff_initial_ms),
            max_backoff: Duration::from_secs(config.max_backoff_s),
        }
    }

    /// Waits for this service's next request slot.
    async fn pace(&self) {
        let wait = {
            let mut next = self.next_slot.lock().await;
            let now = Instant::now();
            let start = (*next).max(now);
            *next = start + self.interval;
            start - now
        };
        tokio::time::sleep(wait).await;
    }

    /// Pushes every caller's next slot to at least `until` (the service asked us to wait).
    async fn hold_until(&self, until: Instant) {
        let mut next = self.next_slot.lock().await;
        *next = (*next).max(until);
    }

    fn backoff(&self, retry: u32) -> Duration {
        self.backoff_initial.saturating_mul(2u32.saturating_pow(retry)).min(self.max_backoff)
    }

    /// GET `url` with pacing and retries: the 200 response.
    pub async fn get(&self, url: &str) -> Result<Fetched, FetchError> {
        let mut last = String::new();
        let mut attempts = 0;
        for retry in 0..=self.max_retries {
            self.pace().await;
            attempts += 1;
            let wait = match self.fetcher.get(url).await {
                Ok(resp) if resp.status == 200 => return Ok(resp),
                Ok(resp) if resp.status == 404 => {
                    return Err(FetchError::NotFound { url: url.to_owned() });
                }
                Ok(resp) if resp.status == 429 || (500..600).contains(&resp.status) => {
                    last = format!("HTTP {}", resp.status);
                    match retry_after(resp.header("retry-after")) {
                        Some(d) if d > self.max_backoff => {
                            last = format!(
                                "HTTP {} with Retry-After {}s beyond max_backoff_s",
                                resp.status,
                                d.as_secs()
                            );
                            break;
                        }
                        Some(d) => d,
                        None => self.backoff(retry),
                    }
                }
                Ok(resp) => {
                    return Err(FetchError::Refused { url: url.to_owned(), status: resp.status });
                }
                Err(e) => {
                    last = e.to_string();
                    self.backoff(retry)
                }
            };
            if retry < self.max_retries {
                tracing::warn!(url, %last, wait_ms = wait.as_millis(), "collateral fetch: retrying");
                self.hold_until(Instant::now() + wait).await;
            }
        }
        Err(FetchError::GaveUp { url: url.to_owned(), attempts, last })
    }
}

/// `Retry-After` as delay-seconds or an HTTP-date.
fn retry_after(value: Option<&str>) -> Option<Duration> {
    let v = value?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when =
        time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok()?;
    let secs = (when - time::OffsetDateTime::now_utc()).whole_seconds();
    Some(Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_delay_seconds() {
        assert_eq!(retry_after(Some("7")), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(Some("soon")), None);
        assert_eq!(retry_after(None), None);
    }

    #[test]
    fn retry_after_reads_a_past_http_date_as_zero() {
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(retry_after(Some(date)), Some(Duration::ZERO));
    }
}
