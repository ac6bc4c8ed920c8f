//! `keylatch-agent` as a booting VM runs it: `get-resource` and `unlock-luks` against a broker
//! URL, trusting one CA, with evidence minted by the simulator (`--simulate snp|tdx`) under a
//! simulation PKI — the broker's own, or a foreign one to be refused. For loads of guests
//! (hundreds at once), [`AgentTarget::release_in_process`] runs the agent's library in a
//! thread instead of a process per guest.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;

use crate::{bins, Outcome};

/// The simulated TEE the agent claims to run in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tee {
    Snp,
    Tdx,
}

impl Tee {
    /// The `--simulate` value and the policy's `tees` name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Tee::Snp => "snp",
            Tee::Tdx => "tdx",
        }
    }
}

/// Where an agent goes and what it trusts. Fields are public so a test can aim it at a dead
/// port, a foreign simulation PKI or another CA.
#[derive(Debug, Clone)]
pub struct AgentTarget {
    /// `https://HOST:PORT`.
    pub url: String,
    /// `--ca`: the only certificate the agent trusts.
    pub ca: PathBuf,
    /// `--sim-pki`: the simulation PKI that signs the agent's evidence.
    pub sim_pki: PathBuf,
    /// `--deadline` in seconds: how long an unreachable broker is retried.
    pub deadline_s: u64,
}

impl AgentTarget {
    /// `keylatch-agent SUBCOMMAND` with the broker and simulation arguments.
    pub fn command(&self, subcommand: &str, tee: Tee) -> anyhow::Result<Command> {
        let mut cmd = Command::new(bins::path(bins::AGENT)?);
        cmd.arg(subcommand)
            .args(["--url", &self.url, "--deadline", &self.deadline_s.to_string()])
            .arg("--ca")
            .arg(&self.ca)
            .args(["--simulate", tee.name()])
            .arg("--sim-pki")
            .arg(&self.sim_pki);
        Ok(cmd)
    }

    /// `get-resource kbs:///RESOURCE` to stdout; the key is [`Outcome::stdout`].
    pub fn get_resource(&self, tee: Tee, resource: &str) -> anyhow::Result<Outcome> {
        let out = self
            .command("get-resource", tee)?
            .arg(format!("kbs:///{resource}"))
            .output()
            .context("running keylatch-agent get-resource")?;
        Ok(out.into())
    }

    /// One guest's whole release (auth, attest, resource) by the agent's library in this
    /// process, with a fresh TEE key, retrying transient failures within `deadline_s` (0: no
    /// retrying, a broker that is gone shows as an error at once; each call still gets 1 s):
    /// the key bytes, or the agent's error as text.
    pub fn release_in_process(&self, tee: Tee, resource: &str) -> Result<Vec<u8>, String> {
        use keylatch_agent::evidence::sim::SimSource;
        use keylatch_agent::evidence::SimTee;
        let sim_tee = match tee {
            Tee::Snp => SimTee::Snp,
            Tee::Tdx => SimTee::Tdx,
        };
        let evidence = SimSource::load(sim_tee, &self.sim_pki, None).map_err(|e| e.to_string())?;
        let ca_pem = std::fs::read(&self.ca).map_err(|e| format!("{}: {e}", self.ca.display()))?;
        let mut client = keylatch_agent::Client::new(keylatch_agent::AgentConfig {
            url: self.url.clone(),
            ca_pem,
            key_kind: keylatch_wire::KeyKind::P256,
            init_data: None,
            deadline: std::time::Duration::from_secs(self.deadline_s),
            evidence: std::sync::Arc::new(evidence),
        })
        .map_err(|e| e.to_string())?;
        let path = keylatch_agent::ResourcePath::parse(&format!("kbs:///{resource}"))
            .map_err(|e| e.to_string())?;
        client.get_resource(&path).map(|k| k.to_vec()).map_err(|e| e.to_string())
    }

    /// `unlock-luks --device IMAGE --name NAME --resource kbs:///RESOURCE --test-passphrase`
    /// through the `cryptsetup` binary given.
    pub fn unlock_luks_test(
        &self,
        tee: Tee,
        resource: &str,
        image: &Path,
        name: &str,
        cryptsetup: &Path,
    ) -> anyhow::Result<Outcome> {
        let out = self
            .command("unlock-luks", tee)?
            .arg("--device")
            .arg(image)
            .args(["--name", name, "--resource", &format!("kbs:///{resource}")])
            .arg("--test-passphrase")
            .arg("--cryptsetup")
            .arg(cryptsetup)
            .output()
            .context("running keylatch-agent unlock-luks")?;
        Ok(out.into())
    }
}
