//! What the edge serves with: the [`Broker`] and, for HTTPS, the rustls configuration
//! ([`AppState`]), built once from the configuration with the collateral fetcher wired in.

use std::sync::Arc;

use anyhow::bail;
use keylatch_broker::collateral::CollateralFetcher;
use keylatch_broker::{Broker, Config};

/// Everything a request handler needs. Cheap to clone; derefs to the [`Broker`].
#[derive(Clone, Debug)]
pub struct AppState {
    pub broker: Broker,
    /// `None` serves plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl std::ops::Deref for AppState {
    type Target = Broker;
    fn deref(&self) -> &Broker {
        &self.broker
    }
}

impl AppState {
    /// Builds the broker and the TLS configuration from a loaded configuration.
    pub async fn from_config(config: &Config) -> anyhow::Result<Self> {
        let tls = match (&config.tls, config.insecure_http) {
            (_, true) => {
                tracing::warn!(
                    "insecure_http = true: serving PLAIN HTTP; tokens and cookies travel in clear"
                );
                None
            }
            (Some(t), false) => Some(Arc::new(crate::tls::tls_config(&t.cert, &t.key)?)),
            (None, false) => bail!("[tls] is required unless insecure_http = true"),
        };
        let fetcher: Arc<dyn CollateralFetcher> =
            Arc::new(crate::fetch::UreqFetcher::new(&config.collateral));
        let broker = Broker::from_config(config, Some(fetcher)).await?;
        Ok(Self { broker, tls })
    }
}
