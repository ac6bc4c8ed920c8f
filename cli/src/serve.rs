//! `keylatch serve --config FILE`: load, bind, serve until SIGTERM or ctrl-c. The binary
//! loads the configuration first ([`load`]) so `[log]` decides the log setup, then runs
//! [`serve_config`].

use std::path::PathBuf;

use anyhow::Context as _;

use keylatch_broker::config::Config;
use keylatch_server::AppState;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The configuration file (`keylatch init` writes one).
    #[arg(long)]
    pub config: PathBuf,
}

/// Loads the configuration named by `args`.
pub fn load(args: &ServeArgs) -> anyhow::Result<Config> {
    Config::load(&args.config)
}

/// Loads and serves (logging as already set up).
pub async fn run(args: &ServeArgs) -> anyhow::Result<()> {
    serve_config(load(args)?).await
}

/// Serves a loaded configuration until SIGTERM or ctrl-c.
pub async fn serve_config(config: Config) -> anyhow::Result<()> {
    let state = AppState::from_config(&config).await?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let scheme = if state.tls.is_some() { "https" } else { "http" };
    tracing::info!(address = %listener.local_addr()?, %scheme, "keylatch broker listening");
    tokio::spawn(keylatch_broker::protocol::sweep_sessions(state.broker.clone()));
    keylatch_server::serve(listener, state, keylatch_server::server::shutdown_signal()).await?;
    Ok(())
}
