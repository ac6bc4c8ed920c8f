//! `keylatch serve --config FILE`: load, bind, serve until SIGTERM or ctrl-c.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::config::Config;
use crate::state::AppState;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The configuration file (`keylatch init` writes one).
    #[arg(long)]
    pub config: PathBuf,
}

pub async fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let state = AppState::from_config(&config).await?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let scheme = if state.tls.is_some() { "https" } else { "http" };
    tracing::info!(address = %listener.local_addr()?, %scheme, "keylatch broker listening");
    crate::server::serve(listener, state, crate::server::shutdown_signal()).await?;
    Ok(())
}
