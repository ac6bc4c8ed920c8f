//! The collateral fetcher: one HTTPS GET to AMD KDS, Intel PCS or a PCCS with ureq (rustls,
//! ring, webpki roots; no OpenSSL) on a blocking thread, within `[collateral] timeout_s` for the
//! connection and for the whole request. Pacing, retries and `Retry-After` are the broker's
//! (`keylatch_broker::collateral::http`).

use std::time::Duration;

use keylatch_broker::collateral::{
    BoxFuture, CollateralConfig, CollateralFetcher, Fetched, TransportError,
};

/// The largest collateral response read (CRLs and TCB info are tens of kilobytes).
const MAX_BODY: u64 = 16 * 1024 * 1024;

/// [`CollateralFetcher`] over a ureq agent.
#[derive(Debug, Clone)]
pub struct UreqFetcher {
    agent: ureq::Agent,
}

impl UreqFetcher {
    #[must_use]
    pub fn new(config: &CollateralConfig) -> Self {
        let timeout = Duration::from_secs(config.timeout_s);
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(timeout)
            .timeout(timeout)
            .user_agent(concat!("keylatch/", env!("CARGO_PKG_VERSION")))
            .build();
        Self { agent }
    }

    fn get_blocking(&self, url: &str) -> Result<Fetched, TransportError> {
        let response = match self.agent.get(url).call() {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(t)) => return Err(transport_error(&t)),
        };
        let status = response.status();
        let headers = response
            .headers_names()
            .into_iter()
            .filter_map(|n| response.header(&n).map(|v| (n.clone(), v.to_owned())))
            .collect();
        let mut body = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(response.into_reader(), MAX_BODY),
            &mut body,
        )
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::TimedOut {
                TransportError::TimedOut
            } else {
                TransportError::Body(e.kind().to_string())
            }
        })?;
        Ok(Fetched { status, headers, body })
    }
}

impl CollateralFetcher for UreqFetcher {
    fn get<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<Fetched, TransportError>> {
        let this = self.clone();
        let url = url.to_owned();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || this.get_blocking(&url))
                .await
                .unwrap_or(Err(TransportError::Other))
        })
    }
}

fn transport_error(t: &ureq::Transport) -> TransportError {
    let timed_out =
        std::error::Error::source(t).and_then(|e| e.downcast_ref::<std::io::Error>()).is_some_and(
            |e| matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock),
        );
    match t.kind() {
        _ if timed_out => TransportError::TimedOut,
        ureq::ErrorKind::Dns | ureq::ErrorKind::ConnectionFailed => {
            TransportError::ConnectionFailed
        }
        _ => TransportError::Other,
    }
}
