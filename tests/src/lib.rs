//! Harness for Keylatch's whole-system tests. It drives the REAL binaries the way an operator
//! and a booting VM do, with real components around them, and owns nothing of the product:
//!
//! - [`bins`]: finds the built `keylatch` and `keylatch-agent` (and refuses stale ones);
//! - [`hsm`]: a private SoftHSM2 token in a directory;
//! - [`broker`]: a broker directory (`keylatch init`, pkcs11 keystore, a free port), the
//!   operator commands on it, and a running `keylatch serve` ([`Broker`]) killed on drop;
//! - [`agent`]: `keylatch-agent` runs against a broker, in simulated SNP or TDX mode;
//! - [`https`]: a raw HTTPS/1.1 client that sends exactly the bytes a test writes;
//! - [`luks`]: cryptsetup, file-backed LUKS2 images and a spy that records cryptsetup calls;
//! - [`postgres`]: a throwaway PostgreSQL server per test process, a database per test;
//! - [`vm`]: QEMU (TCG) booting the Debian kernel with an initramfs made by `mkinitramfs` from
//!   the shipped Keylatch hook and local-top script.
//!
//! Every fallible step returns `anyhow::Result` with what failed and the relevant output;
//! tests unwrap. Anything a machine may lack (SoftHSM2, cryptsetup) is an `Option` whose `None`
//! has already printed `skipped: <why>`.
//!
//! Run it with `cargo build -p keylatch -p guest-agent --bins && cargo nextest run -p e2e`
//! (`cargo nextest run --workspace` builds the binaries itself).

pub mod agent;
pub mod bins;
pub mod broker;
pub mod hsm;
pub mod https;
pub mod luks;
pub mod postgres;
pub mod vm;

pub use agent::{AgentTarget, Tee};
pub use broker::{Broker, BrokerDir};
pub use hsm::SoftHsm;

use std::process::Output;

/// The exit code, stdout and stderr of a finished command, for assertions and messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl From<Output> for Outcome {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code(),
            stdout: o.stdout,
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Outcome {
    /// stdout as text.
    #[must_use]
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// `Ok(self)` when the command exited 0; otherwise an error with its code and stderr.
    pub fn success(self, what: &str) -> anyhow::Result<Self> {
        if self.code == Some(0) {
            Ok(self)
        } else {
            anyhow::bail!("{what} exited {:?}: {}", self.code, self.stderr.trim())
        }
    }
}

/// Prints the skip line every optional component uses.
pub fn skipped(why: &str) {
    println!("skipped: {why}");
}

/// A prerequisite of a test is missing: under `CI=true` that is an error (CI installs
/// everything through scripts/test.sh, so a missing piece is a broken setup), elsewhere the
/// test prints `skipped: <why>` and the caller returns.
pub fn prerequisite_missing(why: &str) -> anyhow::Result<()> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        anyhow::bail!("CI=true and a prerequisite is missing: {why}");
    }
    skipped(why);
    Ok(())
}

/// 32 random bytes from the kernel: a disk key the test knows.
pub fn random_key() -> anyhow::Result<[u8; 32]> {
    use std::io::Read as _;
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .map_err(|e| anyhow::anyhow!("reading /dev/urandom: {e}"))?;
    Ok(key)
}

/// A policy whose one rule releases to simulated SNP and TDX guests.
pub const ALLOW_SIMULATED: &str =
    "[[rules]]\nname = \"sim\"\ntees = [\"snp\", \"tdx\"]\nallow_simulated = true\n";

/// The resource the tests release: a VM's disk key.
pub const DISK_KEY: &str = "default/disk-key/vm-1";

/// `keylatch sim init --out DIR`: a simulation PKI no broker here trusts.
pub fn foreign_sim_pki(dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let out = std::process::Command::new(bins::path(bins::KEYLATCH)?)
        .args(["sim", "init", "--out"])
        .arg(dir)
        .output()
        .map_err(|e| anyhow::anyhow!("running keylatch sim init: {e}"))?;
    Outcome::from(out).success("keylatch sim init")?;
    Ok(dir.to_path_buf())
}
