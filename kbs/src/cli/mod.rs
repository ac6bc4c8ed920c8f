//! The `keylatch` subcommands: offline evidence tools (verify, simulate, bench verify), the
//! broker's `init` and `serve`, the store-level admin commands and `bench release` and `bench crypto`. Shared
//! argument types and file helpers live here.

pub mod admin;
pub mod audit;
pub mod bench_audit;
pub mod bench_crypto;
pub mod bench_release;
pub mod bench_verify;
pub mod custody;
pub mod evidence;
pub mod init;
pub mod remote;
pub mod serve;
pub mod sim;
pub mod token;

use std::io::Write as _;
use std::path::Path;

use anyhow::Context;
use verifier::sim::SimPki;
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

/// Loads a simulation PKI written by `keylatch sim init`.
pub fn load_sim_pki(dir: &Path) -> anyhow::Result<SimPki> {
    SimPki::from_files(|name| std::fs::read(dir.join(name)).ok())
        .with_context(|| format!("loading the simulation PKI from {}", dir.display()))
}

/// Writes a new file that only its owner may read (mode 0600); never overwrites.
pub fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents).with_context(|| format!("writing {}", path.display()))?;
    file.sync_all().with_context(|| format!("syncing {}", path.display()))
}

/// Writes a new public file (mode 0644); never overwrites.
pub fn write_public(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents).with_context(|| format!("writing {}", path.display()))
}
