//! `keylatch-bench`: the benchmarks `keylatch bench ...` runs. A program of its own so that
//! the broker binary does not link the guest agent (the release benchmark's simulated guests).

mod bench_audit;
mod bench_crypto;
mod bench_release;
mod bench_verify;
mod floor;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use keylatch_cli::run_async_logging;

#[derive(Debug, Parser)]
#[command(name = "keylatch bench", version, about = "Measure Keylatch performance on this machine")]
struct Cli {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Warm verification cost against the raw signature checks it cannot avoid.
    Verify(bench_verify::BenchVerifyArgs),
    /// JWE seal/open and token sign/verify against the raw aws-lc-rs operations they need.
    Crypto(bench_crypto::BenchCryptoArgs),
    /// Full key releases per second by simulated guests over HTTPS.
    Release(bench_release::BenchReleaseArgs),
    /// Durable audit appends per second: group commit against one transaction per entry.
    Audit(bench_audit::BenchAuditArgs),
}

fn main() -> ExitCode {
    let outcome = match &Cli::parse().command {
        BenchCommand::Verify(args) => bench_verify::run(args),
        BenchCommand::Crypto(args) => bench_crypto::run(args),
        // Thousands of decisions per run: logging each would measure the terminal.
        BenchCommand::Release(args) => run_async_logging("warn", bench_release::run(args)),
        BenchCommand::Audit(args) => run_async_logging("warn", bench_audit::run(args)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
