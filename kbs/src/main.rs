//! The `keylatch` command line: one binary for the broker and its offline tools.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "keylatch", version, about = "Attested key broker for confidential VMs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with hardware evidence offline.
    #[command(subcommand)]
    Evidence(EvidenceCommand),
    /// The simulation PKI and simulated evidence (no hardware needed).
    #[command(subcommand)]
    Sim(SimCommand),
    /// Measure performance on this machine.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
enum EvidenceCommand {
    /// Verify an SEV-SNP report or TDX quote; print its claims as JSON. Exit 0 when genuine,
    /// 1 with `error: <step>: <reason>` when not, 2 on usage or I/O errors.
    Verify(cli::evidence::VerifyArgs),
}

#[derive(Debug, Subcommand)]
enum SimCommand {
    /// Create a simulation PKI (sim AMD ARK/ASK/ASVK/VLEK, sim Intel root/PCK/TCB signer).
    Init(cli::sim::InitArgs),
    /// Mint a simulated SNP report or TDX quote (with what verifies it).
    Evidence(cli::sim::EvidenceArgs),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Warm verification cost against the raw signature checks it cannot avoid.
    Verify(cli::bench_verify::BenchVerifyArgs),
}

/// Prints a value as pretty JSON on stdout. A closed pipe (`| head`) is not an error.
fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut json = serde_json::to_vec_pretty(value)?;
    json.push(b'\n');
    match std::io::stdout().lock().write_all(&json) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match &cli.command {
        Command::Evidence(EvidenceCommand::Verify(args)) => match cli::evidence::run(args) {
            Ok(Ok(claims)) => print_json(&claims),
            Ok(Err(failure)) => {
                eprintln!("error: {failure}");
                return ExitCode::from(1);
            }
            Err(e) => Err(e),
        },
        Command::Sim(SimCommand::Init(args)) => cli::sim::init(args),
        Command::Sim(SimCommand::Evidence(args)) => cli::sim::evidence(args),
        Command::Bench(BenchCommand::Verify(args)) => cli::bench_verify::run(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
