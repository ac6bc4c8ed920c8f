//! `keylatch-agent`: command-line edge of the guest agent. Parses arguments, runs one command,
//! prints one line on failure and exits with the documented code (see README.md).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use keylatch_agent::config::{KeyType, LuksSettings, Settings, SimulateSettings, SimulateTee};
use keylatch_agent::evidence::{detect, DetectOptions};
use keylatch_agent::sink::{self, Luks};
use keylatch_agent::{AgentConfig, AgentError, Client, ExitCode, ResourcePath};

#[derive(Parser)]
#[command(
    name = "keylatch-agent",
    version,
    about = "Attest this confidential VM to a Keylatch broker and receive its keys"
)]
struct Cli {
    /// Configuration file (TOML). Default: /etc/keylatch/agent.toml when it exists. Flags and
    /// KEYLATCH_AGENT_* variables override its values.
    #[arg(long, global = true, env = "KEYLATCH_AGENT_CONFIG")]
    config: Option<PathBuf>,
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
        /// The LUKS device.
        #[arg(long, env = "KEYLATCH_AGENT_DEVICE")]
        device: Option<PathBuf>,
        /// The mapping name [default: cryptroot].
        #[arg(long, env = "KEYLATCH_AGENT_NAME")]
        name: Option<String>,
        /// The disk key, kbs:///REPO/TYPE/TAG.
        #[arg(long, env = "KEYLATCH_AGENT_RESOURCE")]
        resource: Option<String>,
        /// Only check the key (`cryptsetup open --test-passphrase`), e.g. without device-mapper.
        #[arg(long)]
        test_passphrase: bool,
        /// The cryptsetup binary [default: cryptsetup on PATH].
        #[arg(long, env = "KEYLATCH_AGENT_CRYPTSETUP")]
        cryptsetup: Option<PathBuf>,
        #[command(flatten)]
        broker: BrokerArgs,
        #[command(flatten)]
        ev: EvidenceArgs,
    },
    /// Check the configuration as `unlock-luks` reads it and print the files it names (CA,
    /// init-data, simulation PKI), one per line: what an initramfs hook must copy.
    CheckConfig,
}

#[derive(Args)]
struct BrokerArgs {
    /// Broker base URL, https://host:port.
    #[arg(long, env = "KEYLATCH_AGENT_URL")]
    url: Option<String>,
    /// PEM file with the broker's CA: the only certificate trusted.
    #[arg(long, env = "KEYLATCH_AGENT_CA")]
    ca: Option<PathBuf>,
    /// The ephemeral key [default: p256].
    #[arg(long, value_enum, env = "KEYLATCH_AGENT_KEY_TYPE")]
    key_type: Option<KeyType>,
    /// Init-data TOML file, sent as {"format":"toml","body":...}.
    #[arg(long, env = "KEYLATCH_AGENT_INIT_DATA")]
    init_data: Option<PathBuf>,
    /// Seconds to keep retrying an unreachable broker [default: 60].
    #[arg(long, env = "KEYLATCH_AGENT_DEADLINE")]
    deadline: Option<u64>,
}

#[derive(Args)]
struct EvidenceArgs {
    /// Use the simulator instead of hardware (needs --sim-pki).
    #[arg(long, value_enum, env = "KEYLATCH_AGENT_SIMULATE")]
    simulate: Option<SimulateTee>,
    /// Directory of the simulation PKI (from `keylatch sim init`).
    #[arg(long, env = "KEYLATCH_AGENT_SIM_PKI")]
    sim_pki: Option<PathBuf>,
    /// The simulated VM's launch measurement (SNP MEASUREMENT or TDX MRTD, 96 hex digits);
    /// default: the simulator's built-in image. Lets a demo play a VM that booted something else.
    #[arg(long, env = "KEYLATCH_AGENT_SIM_MEASUREMENT")]
    sim_measurement: Option<String>,
    /// The TPM to look at for an Azure vTPM: a device or tcp:HOST:PORT [default: /dev/tpmrm0].
    #[arg(long, env = "KEYLATCH_AGENT_TPM")]
    tpm: Option<String>,
    /// Azure's instance metadata service [default: http://169.254.169.254].
    #[arg(long, env = "KEYLATCH_AGENT_AZURE_IMDS")]
    azure_imds: Option<String>,
    #[arg(long, hide = true, default_value = keylatch_agent::evidence::configfs::DEFAULT_ROOT)]
    configfs_root: PathBuf,
    #[arg(long, hide = true, default_value = keylatch_agent::evidence::sevguest::DEFAULT_DEVICE)]
    sev_guest: PathBuf,
    #[arg(long, hide = true, default_value = keylatch_agent::evidence::configfs::DEFAULT_CCEL)]
    ccel: PathBuf,
}

impl EvidenceArgs {
    /// These flags as the top layer over `file`.
    fn over(&self, file: Settings) -> Settings {
        file.overlay(Settings {
            tpm: self.tpm.clone(),
            azure_imds: self.azure_imds.clone(),
            simulate: SimulateSettings {
                tee: self.simulate,
                sim_pki: self.sim_pki.clone(),
                measurement: self.sim_measurement.clone(),
            },
            ..Settings::default()
        })
    }
}

impl BrokerArgs {
    /// These flags as the top layer over `file`.
    fn over(&self, file: Settings, ev: &EvidenceArgs, luks: LuksSettings) -> Settings {
        ev.over(file).overlay(Settings {
            url: self.url.clone(),
            ca: self.ca.clone(),
            key_type: self.key_type,
            init_data: self.init_data.clone(),
            deadline: self.deadline,
            luks,
            ..Settings::default()
        })
    }
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

fn detect_opts(
    settings: &Settings,
    ev: &EvidenceArgs,
    init_data: Option<String>,
) -> Result<DetectOptions, AgentError> {
    settings.resolve_detect(
        ev.configfs_root.clone(),
        ev.sev_guest.clone(),
        ev.ccel.clone(),
        init_data,
    )
}

fn read_text(path: &Path, what: &str) -> Result<String, AgentError> {
    std::fs::read_to_string(path)
        .map_err(|e| AgentError::Local(format!("{what} {}: {e}", path.display())))
}

fn client(settings: &Settings, ev: &EvidenceArgs) -> Result<Client, AgentError> {
    let broker = settings.resolve_broker()?;
    let init_data = broker.init_data.as_deref().map(|p| read_text(p, "init-data")).transpose()?;
    let source = detect(&detect_opts(settings, ev, init_data.clone())?)?;
    let ca_pem = std::fs::read(&broker.ca)
        .map_err(|e| AgentError::Local(format!("CA {}: {e}", broker.ca.display())))?;
    Client::new(AgentConfig {
        url: broker.url,
        ca_pem,
        key_kind: broker.key_kind,
        init_data,
        deadline: broker.deadline,
        evidence: Arc::from(source),
    })
}

fn run(cli: Cli) -> Result<(), AgentError> {
    let file = Settings::load(cli.config.as_deref())?;
    match cli.command {
        Command::Detect(ev) => {
            let settings = ev.over(file);
            let source = detect(&detect_opts(&settings, &ev, None)?)?;
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
            let settings = ev.over(file);
            let source = detect(&detect_opts(&settings, &ev, None)?)?;
            let evidence = source.evidence(&rd)?;
            println!("{}", serde_json::to_string_pretty(&evidence).unwrap_or_default());
            Ok(())
        }
        Command::GetResource { resource, out, broker, ev } => {
            let resource = ResourcePath::parse(&resource)?;
            let settings = broker.over(file, &ev, LuksSettings::default());
            let key = client(&settings, &ev)?.get_resource(&resource)?;
            match out {
                Some(path) => sink::write_new_file(&path, &key),
                None => sink::write_stdout(&key),
            }
        }
        Command::UnlockLuks { device, name, resource, test_passphrase, cryptsetup, broker, ev } => {
            let mut settings = broker.over(file, &ev, LuksSettings { device, name, cryptsetup });
            settings.resource = resource.or(settings.resource);
            let target = settings.resolve_luks()?;
            let resource = ResourcePath::parse(&target.resource)?;
            let key = client(&settings, &ev)?.get_resource(&resource)?;
            sink::cryptsetup_open(
                &Luks {
                    cryptsetup: &target.cryptsetup,
                    device: &target.device,
                    name: &target.name,
                    test_passphrase,
                },
                &key,
            )
        }
        Command::CheckConfig => {
            file.resolve_broker()?;
            file.resolve_luks()?;
            let defaults = DetectOptions::default();
            let opts = file.resolve_detect(
                defaults.configfs_root,
                defaults.sev_guest,
                defaults.ccel,
                None,
            )?;
            // A build host has no TEE of the VM's: only a simulated source is loaded here.
            if opts.simulate.is_some() {
                detect(&opts)?;
            }
            for path in file.files() {
                if !path.exists() {
                    return Err(AgentError::Local(format!("{} does not exist", path.display())));
                }
                println!("{}", path.display());
            }
            Ok(())
        }
    }
}
