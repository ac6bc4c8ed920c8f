//! Polite HTTP GETs to one upstream collateral service: a request rate limit shared by every
//! caller, exponential backoff that honours `Retry-After` on HTTP 429 (and on 503), a bounded
//! number of retries on 5xx and transport errors, and a timeout per request. rustls only.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::config::CollateralConfig;

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

/// A successful (200) response.
#[derive(Debug)]
pub struct Fetched {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// A client for one upstream service, with its own rate limit.
#[derive(Debug)]
pub struct Upstream {
    client: reqwest::Client,
    interval: Duration,
    /// The earliest instant the next request may start.
    next_slot: Mutex<Instant>,
    max_retries: u32,
    backoff_initial: Duration,
    max_backoff: Duration,
}

impl Upstream {
    pub fn new(config: &CollateralConfig) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_s))
            .connect_timeout(Duration::from_secs(config.timeout_s))
            .user_agent(concat!("keylatch/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            interval: Duration::from_secs(1) / config.requests_per_second.max(1),
            next_slot: Mutex::new(Instant::now()),
            max_retries: config.max_retries,
            backoff_initial: Duration::from_millis(config.backoff_initial_ms),
            max_backoff: Duration::from_secs(config.max_backoff_s),
        })
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

    /// GET `url` with pacing and retries.
    pub async fn get(&self, url: &str) -> Result<Fetched, FetchError> {
        let mut last = String::new();
        let mut attempts = 0;
        for retry in 0..=self.max_retries {
            self.pace().await;
            attempts += 1;
            let wait = match self.client.get(url).send().await {
                Ok(resp) => {
                    let status = resp.status();
                    if status == StatusCode::OK {
                        let headers = resp.headers().clone();
                        match resp.bytes().await {
                            Ok(body) => return Ok(Fetched { headers, body: body.to_vec() }),
                            Err(e) => {
                                last = format!("reading body: {e}");
                                self.backoff(retry)
                            }
                        }
                    } else if status == StatusCode::NOT_FOUND {
                        return Err(FetchError::NotFound { url: url.to_owned() });
                    } else if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                        last = format!("HTTP {}", status.as_u16());
                        match retry_after(resp.headers()) {
                            Some(d) if d > self.max_backoff => {
                                last = format!(
                                    "HTTP {} with Retry-After {}s beyond max_backoff_s",
                                    status.as_u16(),
                                    d.as_secs()
                                );
                                break;
                            }
                            Some(d) => d,
                            None => self.backoff(retry),
                        }
                    } else {
                        return Err(FetchError::Refused {
                            url: url.to_owned(),
                            status: status.as_u16(),
                        });
                    }
                }
                Err(e) => {
                    last = transport_text(&e);
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

fn transport_text(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else {
        "transport error".to_owned()
    }
}

/// `Retry-After` as delay-seconds or an HTTP-date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
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
        let mut h = HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap_or_else(|_| unreachable!()));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(reqwest::header::RETRY_AFTER, "soon".parse().unwrap_or_else(|_| unreachable!()));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn retry_after_reads_a_past_http_date_as_zero() {
        let mut h = HeaderMap::new();
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        h.insert(reqwest::header::RETRY_AFTER, date.parse().unwrap_or_else(|_| unreachable!()));
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
    }
}
