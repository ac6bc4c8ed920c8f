//! `keylatch-agent`: command-line edge of the guest agent. Parses arguments, runs one command,
//! prints one line on failure and exits with the documented code (see README.md).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use keylatch_agent::evidence::{detect, DetectOptions, SimTee};
use keylatch_agent::sink::{self, Luks};
use keylatch_agent::{AgentConfig, AgentError, Client, ExitCode, ResourcePath};
use keylatch_wire::KeyKind;

#[derive(Parser)]
#[command(
    name = "keylatch-agent",
    version,
    about = "Attest this confidential VM to a Keylatch broker and receive its keys"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Say which TEE was found and why.
    Detect(#[command(flatten)] EvidenceArgs),
    /// Dump the evidence JSON for a given REPORT_DATA (debugging).
    Evidence {
        /// REPORT_DATA as hex (up to 64 bytes; zero-padded).
        #[arg(long)]
        report_data: String,
        #[command(flatten)]
        ev: EvidenceArgs,
    },
    /// Fetch kbs:///repo/type/tag and write it to --out (new file, 0600) or stdout.
    GetResource {
        resource: String,
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        broker: BrokerArgs,
        #[command(flatten)]
        ev: EvidenceArgs,
    },
    /// Fetch a LUKS key and pipe it to `cryptsetup open --key-file=-`.
    UnlockLuks {
        #[arg(long)]
        device: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long)]
        resource: String,
        /// Only check the key (`cryptsetup open --test-passphrase`), e.g. without device-mapper.
        #[arg(long)]
        test_passphrase: bool,
        /// The cryptsetup binary.
        #[arg(long, default_value = "cryptsetup")]
        cryptsetup: PathBuf,
        #[command(flatten)]
        broker: BrokerArgs,
        #[command(flatten)]
        ev: EvidenceArgs,
    },
}

#[derive(Args)]
struct BrokerArgs {
    /// Broker base URL, https://host:port.
    #[arg(long)]
    url: String,
    /// PEM file with the broker's CA: the only certificate trusted.
    #[arg(long)]
    ca: PathBuf,
    #[arg(long, value_enum, default_value_t = KeyType::P256)]
    key_type: KeyType,
    /// Init-data TOML file, sent as {"format":"toml","body":...}.
    #[arg(long)]
    init_data: Option<PathBuf>,
    /// Seconds to keep retrying an unreachable broker.
    #[arg(long, default_value_t = 60)]
    deadline: u64,
}

#[derive(Args)]
struct EvidenceArgs {
    /// Use the simulator instead of hardware (needs --sim-pki).
    #[arg(long, value_enum, requires = "sim_pki")]
    simulate: Option<SimArg>,
    /// Directory of the simulation PKI (from `keylatch sim init`).
    #[arg(long)]
    sim_pki: Option<PathBuf>,
    /// The simulated VM's launch measurement (SNP MEASUREMENT or TDX MRTD, 96 hex digits);
    /// default: the simulator's built-in image. Lets a demo play a VM that booted something else.
    #[arg(long, requires = "simulate", value_parser = parse_measurement)]
    sim_measurement: Option<Measurement>,
    #[arg(long, hide = true, default_value = keylatch_agent::evidence::configfs::DEFAULT_ROOT)]
    configfs_root: PathBuf,
    #[arg(long, hide = true, default_value = keylatch_agent::evidence::sevguest::DEFAULT_DEVICE)]
    sev_guest: PathBuf,
    #[arg(long, hide = true, default_value = keylatch_agent::evidence::configfs::DEFAULT_CCEL)]
    ccel: PathBuf,
}

/// 48 bytes from 96 hex digits.
#[derive(Clone, Copy)]
struct Measurement([u8; 48]);

fn parse_measurement(s: &str) -> Result<Measurement, String> {
    let bytes = hex::decode(s).map_err(|e| format!("not hex: {e}"))?;
    let array: [u8; 48] =
        bytes.try_into().map_err(|b: Vec<u8>| format!("{} bytes, expected 48", b.len()))?;
    Ok(Measurement(array))
}

#[derive(Clone, Copy, ValueEnum)]
enum SimArg {
    Snp,
    Tdx,
}

#[derive(Clone, Copy, ValueEnum)]
enum KeyType {
    P256,
    P384,
    Rsa3072,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::from(ExitCode::Ok as u8),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn detect_opts(ev: &EvidenceArgs, init_data: Option<String>) -> DetectOptions {
    let simulate = ev.simulate.zip(ev.sim_pki.clone()).map(|(t, dir)| {
        let t = match t {
            SimArg::Snp => SimTee::Snp,
            SimArg::Tdx => SimTee::Tdx,
        };
        (t, dir)
    });
    DetectOptions {
        configfs_root: ev.configfs_root.clone(),
        sev_guest: ev.sev_guest.clone(),
        ccel: ev.ccel.clone(),
        simulate,
        init_data,
        sim_measurement: ev.sim_measurement.map(|m| m.0),
    }
}

fn read_text(path: &PathBuf, what: &str) -> Result<String, AgentError> {
    std::fs::read_to_string(path)
        .map_err(|e| AgentError::Local(format!("{what} {}: {e}", path.display())))
}

fn client(broker: &BrokerArgs, ev: &EvidenceArgs) -> Result<Client, AgentError> {
    let init_data = broker.init_data.as_ref().map(|p| read_text(p, "--init-data")).transpose()?;
    let source = detect(&detect_opts(ev, init_data.clone()))?;
    let ca_pem = std::fs::read(&broker.ca)
        .map_err(|e| AgentError::Local(format!("--ca {}: {e}", broker.ca.display())))?;
    Client::new(AgentConfig {
        url: broker.url.clone(),
        ca_pem,
        key_kind: match broker.key_type {
            KeyType::P256 => KeyKind::P256,
            KeyType::P384 => KeyKind::P384,
            KeyType::Rsa3072 => KeyKind::Rsa3072,
        },
        init_data,
        deadline: Duration::from_secs(broker.deadline),
        evidence: Arc::from(source),
    })
}

fn run(cli: Cli) -> Result<(), AgentError> {
    match cli.command {
        Command::Detect(ev) => {
            let source = detect(&detect_opts(&ev, None))?;
            println!("{}", source.describe());
            Ok(())
        }
        Command::Evidence { report_data, ev } => {
            let bytes = hex::decode(report_data.trim())
                .map_err(|_| AgentError::Local("--report-data is not hex".into()))?;
            if bytes.len() > 64 {
                return Err(AgentError::Local("--report-data is longer than 64 bytes".into()));
            }
            let mut rd = [0u8; 64];
            rd.iter_mut().zip(&bytes).for_each(|(o, b)| *o = *b);
            let source = detect(&detect_opts(&ev, None))?;
            let evidence = source.evidence(&rd)?;
            println!("{}", serde_json::to_string_pretty(&evidence).unwrap_or_default());
            Ok(())
        }
        Command::GetResource { resource, out, broker, ev } => {
            let resource = ResourcePath::parse(&resource)?;
            let key = client(&broker, &ev)?.get_resource(&resource)?;
            match out {
                Some(path) => sink::write_new_file(&path, &key),
                None => sink::write_stdout(&key),
            }
        }
        Command::UnlockLuks { device, name, resource, test_passphrase, cryptsetup, broker, ev } => {
            let resource = ResourcePath::parse(&resource)?;
            let key = client(&broker, &ev)?.get_resource(&resource)?;
            sink::cryptsetup_open(
                &Luks { cryptsetup: &cryptsetup, device: &device, name: &name, test_passphrase },
                &key,
            )
        }
    }
}
