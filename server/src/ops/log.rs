//! Log setup: `[log] format = "text" | "json"` and `level`, installed once per process. JSON
//! lines carry the current span (the request span holds `request_id`, `method`, `route`), so
//! every line a request causes can be joined on its id. What is logged is decided where it is
//! logged; this module adds no request data (no headers, cookies, tokens or bodies).

use keylatch_broker::config::{LogConfig, LogFormat};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// The filter: `RUST_LOG` when set, else `level`.
fn filter(config: &LogConfig) -> anyhow::Result<EnvFilter> {
    match std::env::var("RUST_LOG") {
        Ok(env) if !env.is_empty() => {
            EnvFilter::try_new(env).map_err(|e| anyhow::anyhow!("RUST_LOG: {e}"))
        }
        _ => EnvFilter::try_new(&config.level)
            .map_err(|e| anyhow::anyhow!("[log] level {:?}: {e}", config.level)),
    }
}

/// Installs the process-wide subscriber writing to `writer` (no colours). Fails when the level
/// does not parse or a subscriber is already installed.
pub fn init_with_writer<W>(config: &LogConfig, writer: W) -> anyhow::Result<()>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    install(config, writer, false)
}

fn install<W>(config: &LogConfig, writer: W, ansi: bool) -> anyhow::Result<()>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = filter(config)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi && config.format == LogFormat::Text);
    let installed = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(false)
            .try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))
}

/// Installs the process-wide subscriber on stderr (colours only on a terminal).
pub fn init(config: &LogConfig) -> anyhow::Result<()> {
    install(config, std::io::stderr, std::io::IsTerminal::is_terminal(&std::io::stderr()))
}
