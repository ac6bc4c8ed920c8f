//! The `keylatch` command line: one binary for the broker and its offline tools. The work is
//! in the library (`kbs::cli`); this file parses arguments and maps outcomes to exit codes.

use std::process::ExitCode;

use kbs::cli;

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
    /// Create a broker directory: config, keys, TLS certificate, KEK, database.
    Init(cli::init::InitArgs),
    /// Run the broker.
    Serve(cli::serve::ServeArgs),
    /// Stored resources (sealed by the keystore).
    #[command(subcommand)]
    Resource(ResourceCommand),
    /// Release policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// The tamper-evident audit log: export, verify offline, query, key generation.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// BYOK: the broker's import public key, and wrapping a key for it (customer side).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Key-encryption keys in the keystore: rotate, status, re-wrap, retire.
    #[command(subcommand)]
    Kek(KekCommand),
    /// Admin API tokens, directly in the store (bootstrap).
    #[command(subcommand)]
    Token(TokenCommand),
    /// The admin API of a running broker, over HTTPS (token from --token-file or KEYLATCH_TOKEN).
    Admin(cli::remote::commands::AdminArgs),
    /// Reference-value bundles on a running broker.
    #[command(subcommand)]
    Refval(RefvalCommand),
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Print (or write) the keystore's RSA import public key as PEM.
    ImportPublicKey(cli::custody::ImportPublicKeyArgs),
    /// Wrap a key for the broker's import public key (RSA-OAEP-SHA-256 + AES-KWP); offline.
    WrapForImport(cli::custody::WrapForImportArgs),
}

#[derive(Debug, Subcommand)]
enum KekCommand {
    /// Make a new KEK current (older ones still open what they sealed).
    Rotate(cli::custody::KekArgs),
    /// Which KEK seals each resource version.
    Status(cli::custody::KekStatusArgs),
    /// Re-seal every version under the current KEK (resumable).
    Rewrap(cli::custody::KekRewrapArgs),
    /// Destroy a KEK no version depends on.
    Retire(cli::custody::KekRetireArgs),
}

#[derive(Debug, Subcommand)]
enum RefvalCommand {
    /// Publish a signed bundle under NAME (policy-author token).
    Push(cli::remote::commands::PushArgs),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Mint an admin token in the store; prints it once.
    Create(cli::token::TokenCreateArgs),
}

#[derive(Debug, Subcommand)]
enum ResourceCommand {
    /// Store a new version of a resource from a file.
    Put(cli::admin::ResourcePutArgs),
    /// Store a new version of a resource as fresh random bytes made by the keystore.
    Generate(cli::admin::ResourceGenerateArgs),
    /// Store a new version from a BYOK blob (unwrapped inside the keystore).
    Import(cli::custody::ImportArgs),
    /// Make a new version current (generated, or --from / --wrapped); old versions stay.
    Rotate(cli::custody::RotateArgs),
    /// Stop releasing a resource.
    Disable(cli::custody::PathArgs),
    /// Release a disabled resource again.
    Enable(cli::custody::PathArgs),
    /// Remove every version for good (crypto-shred); the path can never be reused.
    Destroy(cli::custody::DestroyArgs),
    /// Set or clear a resource's rotate-by date or cryptoperiod.
    SetRotateBy(cli::custody::SetRotateByArgs),
    /// Every resource, its state, versions and rotation due dates.
    List(cli::custody::ListArgs),
    /// One resource and its versions (JSON).
    Show(cli::custody::ShowArgs),
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Export the log from the configured store (entries, checkpoints) into a directory.
    Export(cli::audit::ExportArgs),
    /// Fetch the log and its checkpoints from a running broker (auditor token) into DIR.
    Fetch(cli::audit::FetchArgs),
    /// Verify an export offline: signatures, consistency, the recomputed tree. Exit 1 and the
    /// first bad index when it diverges.
    Verify(cli::audit::VerifyArgs),
    /// Query an export by resource, time or VM identity.
    Query(cli::audit::QueryArgs),
    /// Generate a checkpoint signing key (0600) and its verifier key.
    Keygen(cli::audit::KeygenArgs),
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Set a resource's release policy (a new version).
    Set(cli::admin::PolicySetArgs),
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
    /// JWE seal/open and token sign/verify against the raw aws-lc-rs operations they need.
    Crypto(cli::bench_crypto::BenchCryptoArgs),
    /// Full key releases per second by simulated guests over HTTPS.
    Release(cli::bench_release::BenchReleaseArgs),
    /// Durable audit appends per second: group commit against one transaction per entry.
    Audit(cli::bench_audit::BenchAuditArgs),
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

/// Runs an async command on a multi-threaded runtime, with logs on stderr at `default_level`
/// unless `RUST_LOG` says otherwise.
fn run_async_logging(
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

/// [`run_async_logging`] at `info`: every decision is logged.
fn run_async(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    run_async_logging("info", fut)
}

/// `keylatch serve`: the configuration's `[log]` sets up logging, then the broker runs.
fn serve(args: &cli::serve::ServeArgs) -> anyhow::Result<()> {
    let config = cli::serve::load(args)?;
    kbs::ops::log::init(&config.log)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(cli::serve::serve_config(config))
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
        Command::Bench(BenchCommand::Crypto(args)) => cli::bench_crypto::run(args),
        Command::Bench(BenchCommand::Release(args)) => {
            // Thousands of decisions per run: logging each would measure the terminal.
            run_async_logging("warn", cli::bench_release::run(args))
        }
        Command::Bench(BenchCommand::Audit(args)) => {
            run_async_logging("warn", cli::bench_audit::run(args))
        }
        Command::Audit(AuditCommand::Export(args)) => run_async(cli::audit::export(args)),
        Command::Audit(AuditCommand::Fetch(args)) => cli::audit::fetch(args),
        Command::Audit(AuditCommand::Verify(args)) => match cli::audit::verify(args) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(1),
            Err(e) => Err(e),
        },
        Command::Audit(AuditCommand::Query(args)) => cli::audit::query_cmd(args),
        Command::Audit(AuditCommand::Keygen(args)) => cli::audit::keygen(args),
        Command::Init(args) => run_async(cli::init::run(args)),
        Command::Serve(args) => serve(args),
        Command::Resource(ResourceCommand::Put(args)) => run_async(cli::admin::put(args)),
        Command::Resource(ResourceCommand::Generate(args)) => run_async(cli::admin::generate(args)),
        Command::Policy(PolicyCommand::Set(args)) => run_async(cli::admin::policy_set(args)),
        Command::Resource(ResourceCommand::Import(args)) => run_async(cli::custody::import(args)),
        Command::Resource(ResourceCommand::Rotate(args)) => run_async(cli::custody::rotate(args)),
        Command::Resource(ResourceCommand::Disable(args)) => run_async(cli::custody::disable(args)),
        Command::Resource(ResourceCommand::Enable(args)) => run_async(cli::custody::enable(args)),
        Command::Resource(ResourceCommand::Destroy(args)) => run_async(cli::custody::destroy(args)),
        Command::Resource(ResourceCommand::SetRotateBy(args)) => {
            run_async(cli::custody::set_rotate_by(args))
        }
        Command::Resource(ResourceCommand::List(args)) => run_async(cli::custody::list(args)),
        Command::Resource(ResourceCommand::Show(args)) => run_async(cli::custody::show(args)),
        Command::Key(KeyCommand::ImportPublicKey(args)) => {
            run_async(cli::custody::import_public_key(args))
        }
        Command::Key(KeyCommand::WrapForImport(args)) => cli::custody::wrap_for_import(args),
        Command::Kek(KekCommand::Rotate(args)) => run_async(cli::custody::kek_rotate(args)),
        Command::Kek(KekCommand::Status(args)) => run_async(cli::custody::kek_status(args)),
        Command::Kek(KekCommand::Rewrap(args)) => run_async(cli::custody::kek_rewrap(args)),
        Command::Kek(KekCommand::Retire(args)) => run_async(cli::custody::kek_retire(args)),
        Command::Admin(args) => cli::remote::commands::run(args).and_then(|v| print_json(&v)),
        Command::Refval(RefvalCommand::Push(args)) => {
            cli::remote::commands::run_push(args).and_then(|v| print_json(&v))
        }
        Command::Token(TokenCommand::Create(args)) => {
            run_async_logging("warn", cli::token::create(args))
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
