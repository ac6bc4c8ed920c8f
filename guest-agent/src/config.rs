//! The agent's settings and where they come from: one TOML file (`/etc/keylatch/agent.toml`
//! by default, `--config` or `KEYLATCH_AGENT_CONFIG` to name another), overridden field by field
//! by `KEYLATCH_AGENT_*` environment variables and then by command-line flags. [`Settings`] is
//! both the file's schema and the overrides' shape, so one [`Settings::overlay`] merges them;
//! the `resolve_*` functions turn the merged settings into what the client, the evidence
//! detection and the LUKS sink take, naming all three sources when something is missing.
//!
//! Paths in the file must be absolute: an initramfs hook copies each file to the same path
//! inside the image ([`Settings::files`]), so the file means the same on the build host and at
//! boot. The schema is documented in README.md ("Configuration").

use std::path::{Path, PathBuf};
use std::time::Duration;

use keylatch_wire::KeyKind;
use serde::Deserialize;

use crate::evidence::tpm::TpmPath;
use crate::evidence::{DetectOptions, SimTee};
use crate::AgentError;

/// The configuration file read when none is named (and skipped when it does not exist).
pub const DEFAULT_PATH: &str = "/etc/keylatch/agent.toml";
/// The LUKS mapping name when none is configured: `/dev/mapper/cryptroot`.
pub const DEFAULT_MAPPING: &str = "cryptroot";
/// Seconds to keep retrying an unreachable broker when none is configured.
pub const DEFAULT_DEADLINE_S: u64 = 60;

/// The ephemeral key the agent makes for the broker to encrypt to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum KeyType {
    P256,
    P384,
    Rsa3072,
}

/// The simulated TEE (`--simulate`, `[simulate] tee`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SimulateTee {
    Snp,
    Tdx,
}

/// Every setting, each optional so that a layer sets only what it names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Broker base URL, `https://HOST:PORT`.
    pub url: Option<String>,
    /// PEM file with the broker's CA: the only certificate trusted.
    pub ca: Option<PathBuf>,
    /// The disk key, `kbs:///REPO/TYPE/TAG` (`unlock-luks`).
    pub resource: Option<String>,
    pub key_type: Option<KeyType>,
    /// Init-data TOML file, sent as `{"format":"toml","body":...}`.
    pub init_data: Option<PathBuf>,
    /// Seconds to keep retrying an unreachable broker.
    pub deadline: Option<u64>,
    /// The TPM looked at for an Azure confidential VM's vTPM: a device (default
    /// `/dev/tpmrm0`) or `tcp:HOST:PORT` (a `swtpm` server socket, for tests).
    pub tpm: Option<String>,
    /// Azure's instance metadata service, where the VCEK (SNP) or the TD quote (TDX) comes
    /// from (default `http://169.254.169.254`).
    pub azure_imds: Option<String>,
    #[serde(default)]
    pub luks: LuksSettings,
    #[serde(default)]
    pub simulate: SimulateSettings,
}

/// `[luks]`: the volume `unlock-luks` opens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LuksSettings {
    /// The LUKS device, e.g. `/dev/vda3`.
    pub device: Option<PathBuf>,
    /// The mapping name (default `cryptroot`).
    pub name: Option<String>,
    /// The cryptsetup binary (default: `cryptsetup` on `PATH`).
    pub cryptsetup: Option<PathBuf>,
}

/// `[simulate]`: simulated evidence for images booted without TEE hardware (tests, demos).
/// A broker accepts it only when configured to, and marks every claim `simulated: true`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulateSettings {
    pub tee: Option<SimulateTee>,
    /// Directory of the simulation PKI (from `keylatch sim init`).
    pub sim_pki: Option<PathBuf>,
    /// SNP MEASUREMENT or TDX MRTD, 96 hex digits (default: the simulator's built-in image).
    pub measurement: Option<String>,
}

/// What the protocol client needs, resolved.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    pub url: String,
    pub ca: PathBuf,
    pub key_kind: KeyKind,
    pub init_data: Option<PathBuf>,
    pub deadline: Duration,
}

/// What `unlock-luks` needs besides the broker, resolved.
#[derive(Debug, Clone)]
pub struct LuksTarget {
    pub resource: String,
    pub device: PathBuf,
    pub name: String,
    pub cryptsetup: PathBuf,
}

impl Settings {
    /// Reads the configuration file: `path` when given (it must exist), otherwise
    /// [`DEFAULT_PATH`] when it exists, otherwise nothing.
    pub fn load(path: Option<&Path>) -> Result<Self, AgentError> {
        let (path, required) = match path {
            Some(p) => (p, true),
            None => (Path::new(DEFAULT_PATH), false),
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(AgentError::Local(format!("config {}: {e}", path.display()))),
        }
    }

    /// Parses a configuration file's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, AgentError> {
        let settings: Self = toml::from_str(text).map_err(|e| {
            let msg = e.message().to_owned();
            AgentError::Local(format!("config {}: {msg}", origin.display()))
        })?;
        for (key, path) in settings.paths() {
            if !path.is_absolute() {
                return Err(AgentError::Local(format!(
                    "config {}: {key} must be an absolute path, not {}",
                    origin.display(),
                    path.display()
                )));
            }
        }
        Ok(settings)
    }

    /// `over`'s values where it has them, this one's elsewhere.
    #[must_use]
    pub fn overlay(self, over: Settings) -> Settings {
        Settings {
            url: over.url.or(self.url),
            ca: over.ca.or(self.ca),
            resource: over.resource.or(self.resource),
            key_type: over.key_type.or(self.key_type),
            init_data: over.init_data.or(self.init_data),
            deadline: over.deadline.or(self.deadline),
            tpm: over.tpm.or(self.tpm),
            azure_imds: over.azure_imds.or(self.azure_imds),
            luks: LuksSettings {
                device: over.luks.device.or(self.luks.device),
                name: over.luks.name.or(self.luks.name),
                cryptsetup: over.luks.cryptsetup.or(self.luks.cryptsetup),
            },
            simulate: SimulateSettings {
                tee: over.simulate.tee.or(self.simulate.tee),
                sim_pki: over.simulate.sim_pki.or(self.simulate.sim_pki),
                measurement: over.simulate.measurement.or(self.simulate.measurement),
            },
        }
    }

    /// The files (and the simulation PKI directory) the settings name, which an initramfs
    /// must contain at the same paths: the CA, the init-data, the simulation PKI.
    #[must_use]
    pub fn files(&self) -> Vec<&Path> {
        [self.ca.as_deref(), self.init_data.as_deref(), self.simulate.sim_pki.as_deref()]
            .into_iter()
            .flatten()
            .collect()
    }

    /// Every path setting with its key, for the absolute-path check.
    fn paths(&self) -> impl Iterator<Item = (&'static str, &Path)> {
        [
            ("ca", self.ca.as_deref()),
            ("init_data", self.init_data.as_deref()),
            ("simulate.sim_pki", self.simulate.sim_pki.as_deref()),
            ("luks.device", self.luks.device.as_deref()),
            ("luks.cryptsetup", self.luks.cryptsetup.as_deref()),
        ]
        .into_iter()
        .filter_map(|(key, path)| path.map(|p| (key, p)))
    }

    /// The broker, its CA, the key type, init-data and deadline.
    pub fn resolve_broker(&self) -> Result<BrokerSettings, AgentError> {
        Ok(BrokerSettings {
            url: required(self.url.clone(), "--url", "URL", "url")?,
            ca: required(self.ca.clone(), "--ca", "CA", "ca")?,
            key_kind: match self.key_type.unwrap_or(KeyType::P256) {
                KeyType::P256 => KeyKind::P256,
                KeyType::P384 => KeyKind::P384,
                KeyType::Rsa3072 => KeyKind::Rsa3072,
            },
            init_data: self.init_data.clone(),
            deadline: Duration::from_secs(self.deadline.unwrap_or(DEFAULT_DEADLINE_S)),
        })
    }

    /// The volume `unlock-luks` opens and with what.
    pub fn resolve_luks(&self) -> Result<LuksTarget, AgentError> {
        Ok(LuksTarget {
            resource: required(self.resource.clone(), "--resource", "RESOURCE", "resource")?,
            device: required(self.luks.device.clone(), "--device", "DEVICE", "luks.device")?,
            name: self.luks.name.clone().unwrap_or_else(|| DEFAULT_MAPPING.to_owned()),
            cryptsetup: self.luks.cryptsetup.clone().unwrap_or_else(|| "cryptsetup".into()),
        })
    }

    /// Where evidence comes from: the simulator when `simulate.tee` is set (it then needs
    /// `simulate.sim_pki`), otherwise the hardware: the TPM (an Azure vTPM), `configfs_root`,
    /// `sev_guest`.
    pub fn resolve_detect(
        &self,
        configfs_root: PathBuf,
        sev_guest: PathBuf,
        ccel: PathBuf,
        init_data: Option<String>,
    ) -> Result<DetectOptions, AgentError> {
        let sim = &self.simulate;
        let simulate = match (sim.tee, &sim.sim_pki) {
            (Some(tee), Some(dir)) => {
                let tee = match tee {
                    SimulateTee::Snp => SimTee::Snp,
                    SimulateTee::Tdx => SimTee::Tdx,
                };
                Some((tee, dir.clone()))
            }
            (Some(_), None) => {
                return Err(AgentError::Local(
                    "simulation needs --sim-pki (KEYLATCH_AGENT_SIM_PKI, simulate.sim_pki)".into(),
                ))
            }
            (None, _) => None,
        };
        let sim_measurement = match (&sim.measurement, simulate.is_some()) {
            (Some(hex), true) => Some(
                parse_measurement(hex)
                    .map_err(|e| AgentError::Local(format!("simulated measurement: {e}")))?,
            ),
            (Some(_), false) => {
                return Err(AgentError::Local(
                    "a simulated measurement needs --simulate (KEYLATCH_AGENT_SIMULATE, \
                     simulate.tee)"
                        .into(),
                ))
            }
            (None, _) => None,
        };
        let defaults = DetectOptions::default();
        Ok(DetectOptions {
            configfs_root,
            sev_guest,
            ccel,
            tpm: self.tpm.as_deref().map_or(defaults.tpm, TpmPath::parse),
            azure_imds: self.azure_imds.clone().unwrap_or(defaults.azure_imds),
            simulate,
            init_data,
            sim_measurement,
        })
    }
}

/// 48 bytes from 96 hex digits.
pub fn parse_measurement(s: &str) -> Result<[u8; 48], String> {
    let bytes = hex::decode(s.trim()).map_err(|e| format!("not hex: {e}"))?;
    bytes.try_into().map_err(|b: Vec<u8>| format!("{} bytes, expected 48", b.len()))
}

/// `value`, or an error naming the flag, the variable and the file key that could set it.
fn required<T>(value: Option<T>, flag: &str, var: &str, key: &str) -> Result<T, AgentError> {
    value.ok_or_else(|| {
        AgentError::Local(format!(
            "no {flag}: give it, set KEYLATCH_AGENT_{var}, or set {key} in the config file \
             ({DEFAULT_PATH} by default)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
url = "https://10.0.2.100:8443"
ca = "/etc/keylatch/ca.pem"
resource = "kbs:///default/disk-key/vm-1"
key_type = "p384"
deadline = 120
tpm = "tcp:127.0.0.1:2321"
azure_imds = "http://127.0.0.1:8080"

[luks]
device = "/dev/vda"
name = "root"

[simulate]
tee = "snp"
sim_pki = "/etc/keylatch/sim-pki"
"#;

    fn parse(text: &str) -> Result<Settings, AgentError> {
        Settings::parse(text, Path::new("agent.toml"))
    }

    #[test]
    fn parses_every_key_and_lists_the_files_an_initramfs_needs() {
        let s = parse(FULL).unwrap();
        assert_eq!(s.url.as_deref(), Some("https://10.0.2.100:8443"));
        assert_eq!(s.key_type, Some(KeyType::P384));
        assert_eq!(s.deadline, Some(120));
        assert_eq!(s.luks.name.as_deref(), Some("root"));
        assert_eq!(s.simulate.tee, Some(SimulateTee::Snp));
        let detect = s.resolve_detect("/x".into(), "/y".into(), "/z".into(), None).unwrap();
        assert_eq!(detect.tpm, TpmPath::Tcp("127.0.0.1:2321".into()));
        assert_eq!(detect.azure_imds, "http://127.0.0.1:8080");
        assert_eq!(
            s.files(),
            vec![Path::new("/etc/keylatch/ca.pem"), Path::new("/etc/keylatch/sim-pki")]
        );
        let luks = s.resolve_luks().unwrap();
        assert_eq!(luks.device, Path::new("/dev/vda"));
        assert_eq!(luks.cryptsetup, Path::new("cryptsetup"));
    }

    #[test]
    fn refuses_unknown_keys_and_relative_paths() {
        let err = parse("url = \"https://x\"\nsimulated = true\n").unwrap_err().to_string();
        assert!(err.starts_with("config agent.toml: unknown field `simulated`"), "{err}");
        let err = parse("ca = \"ca.pem\"\n").unwrap_err().to_string();
        assert_eq!(err, "config agent.toml: ca must be an absolute path, not ca.pem");
        let err = parse("[simulate]\ntee = \"sample\"\n").unwrap_err().to_string();
        assert!(err.starts_with("config agent.toml: unknown variant `sample`"), "{err}");
    }

    #[test]
    fn overrides_win_field_by_field() {
        let file = parse(FULL).unwrap();
        let over = Settings {
            url: Some("https://broker:8443".into()),
            luks: LuksSettings { device: Some("/dev/vdb".into()), ..LuksSettings::default() },
            ..Settings::default()
        };
        let s = file.overlay(over);
        assert_eq!(s.url.as_deref(), Some("https://broker:8443"));
        assert_eq!(s.ca.as_deref(), Some(Path::new("/etc/keylatch/ca.pem")));
        assert_eq!(s.luks.device.as_deref(), Some(Path::new("/dev/vdb")));
        assert_eq!(s.luks.name.as_deref(), Some("root"));
    }

    #[test]
    fn missing_values_name_flag_variable_and_key() {
        let err = Settings::default().resolve_broker().unwrap_err().to_string();
        assert_eq!(
            err,
            "no --url: give it, set KEYLATCH_AGENT_URL, or set url in the config file \
             (/etc/keylatch/agent.toml by default)"
        );
        let s = Settings {
            simulate: SimulateSettings { tee: Some(SimulateTee::Tdx), ..Default::default() },
            ..Settings::default()
        };
        let err =
            s.resolve_detect("/x".into(), "/y".into(), "/z".into(), None).unwrap_err().to_string();
        assert_eq!(err, "simulation needs --sim-pki (KEYLATCH_AGENT_SIM_PKI, simulate.sim_pki)");
    }

    #[test]
    fn an_explicit_config_that_is_missing_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("agent.toml");
        let err = Settings::load(Some(&missing)).unwrap_err().to_string();
        assert!(err.starts_with(&format!("config {}: ", missing.display())), "{err}");
    }

    #[test]
    fn measurement_must_be_48_bytes_of_hex() {
        assert_eq!(parse_measurement(&"ab".repeat(48)).unwrap(), [0xab; 48]);
        assert_eq!(parse_measurement("abcd").unwrap_err(), "2 bytes, expected 48");
        assert!(parse_measurement("zz").unwrap_err().starts_with("not hex"));
    }
}
