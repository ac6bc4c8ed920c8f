//! The `keylatch` subcommands: offline evidence tools (verify, simulate), the broker's `init`
//! and `serve`, the store-level custody, policy, token and audit commands, the remote admin
//! client, and `bench` (which runs the separate `keylatch-bench` program). Shared argument
//! types and the async runner live here.

pub mod admin;
pub mod audit;
pub mod bench;
pub mod custody;
pub mod evidence;
pub mod init;
pub mod remote;
pub mod serve;
pub mod sim;
pub mod token;

use verifier::Now;

/// The TEE a command is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TeeArg {
    Snp,
    Tdx,
}

/// Parses an RFC 3339 instant (`2025-01-01T00:00:00Z`).
pub fn parse_time(s: &str) -> Result<Now, String> {
    Now::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("not an RFC 3339 time ({e}): {s}"))
}

pub use keylatch_broker::evidence::load_sim_pki;
pub use keylatch_broker::files::{write_private, write_public};

/// Runs an async command on a multi-threaded runtime, with logs on stderr at `default_level`
/// unless `RUST_LOG` says otherwise.
pub fn run_async_logging(
    default_level: &str,
    fut: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(fut)
}
