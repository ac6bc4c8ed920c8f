//! A SoftHSM2 token that only one test sees: its own `softhsm2.conf` and token directory under a
//! directory the caller owns, initialized with `softhsm2-util`. Every process that opens the
//! token (the broker, the operator commands) gets `SOFTHSM2_CONF` from [`SoftHsm::env`].

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;

/// Debian's SoftHSM2 PKCS#11 module.
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const TOKEN_LABEL: &str = "keylatch-e2e";
const USER_PIN: &str = "2468-user";
const SO_PIN: &str = "1357-so";

/// An initialized token and the files that reach it.
#[derive(Debug, Clone)]
pub struct SoftHsm {
    /// `softhsm2.conf`; export it as `SOFTHSM2_CONF`.
    pub conf: PathBuf,
    /// `directories.tokendir` (one sub-directory per token).
    pub token_dir: PathBuf,
    /// The user PIN, one line, mode 0600.
    pub pin_file: PathBuf,
    pub label: String,
}

impl SoftHsm {
    /// A fresh token in `dir/softhsm`, PIN in `dir/hsm-pin`. `Ok(None)` after printing
    /// `skipped: ...` when SoftHSM2 is not installed.
    pub fn create(dir: &Path) -> anyhow::Result<Option<Self>> {
        if !Path::new(MODULE).exists() {
            crate::skipped(&format!(
                "SoftHSM2 not found at {MODULE} (apt-get install softhsm2; scripts/test.sh does)"
            ));
            return Ok(None);
        }
        let base = dir.join("softhsm");
        let token_dir = base.join("tokens");
        std::fs::create_dir_all(&token_dir)
            .with_context(|| format!("creating {}", token_dir.display()))?;
        let conf = base.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                token_dir.display()
            ),
        )
        .with_context(|| format!("writing {}", conf.display()))?;
        let out = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", TOKEN_LABEL])
            .args(["--pin", USER_PIN, "--so-pin", SO_PIN])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .context("running softhsm2-util")?;
        crate::Outcome::from(out).success("softhsm2-util --init-token")?;
        let pin_file = dir.join("hsm-pin");
        std::fs::write(&pin_file, format!("{USER_PIN}\n"))
            .with_context(|| format!("writing {}", pin_file.display()))?;
        std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o600))?;
        Ok(Some(Self { conf, token_dir, pin_file, label: TOKEN_LABEL.to_owned() }))
    }

    /// The environment a process needs to see this token.
    #[must_use]
    pub fn env(&self) -> (&'static str, &Path) {
        ("SOFTHSM2_CONF", &self.conf)
    }

    /// The `[keystore]` table of `keylatch.toml` for this token.
    #[must_use]
    pub fn keystore_toml(&self) -> toml::Table {
        let mut pin = toml::Table::new();
        pin.insert("file".into(), path_value(&self.pin_file));
        let mut pkcs11 = toml::Table::new();
        pkcs11.insert("module".into(), toml::Value::String(MODULE.into()));
        pkcs11.insert("token_label".into(), toml::Value::String(self.label.clone()));
        pkcs11.insert("pin".into(), toml::Value::Table(pin));
        let mut keystore = toml::Table::new();
        keystore.insert("backend".into(), toml::Value::String("pkcs11".into()));
        keystore.insert("pkcs11".into(), toml::Value::Table(pkcs11));
        keystore
    }
}

pub(crate) fn path_value(p: &Path) -> toml::Value {
    toml::Value::String(p.display().to_string())
}
