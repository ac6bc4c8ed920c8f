//! Where a released key goes: stdout, a new file created 0600 (never an existing one), or
//! `cryptsetup open --key-file=-` on stdin — never through argv or a temporary file.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::AgentError;

/// Writes `key` to a new file at `path` with mode 0600; fails if the file exists.
pub fn write_new_file(path: &Path, key: &[u8]) -> Result<(), AgentError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| AgentError::Local(format!("--out {}: {e}", path.display())))?;
    f.write_all(key)
        .and_then(|()| f.sync_all())
        .map_err(|e| AgentError::Local(format!("--out {}: {e}", path.display())))
}

/// Writes `key` to stdout.
pub fn write_stdout(key: &[u8]) -> Result<(), AgentError> {
    let mut out = std::io::stdout().lock();
    out.write_all(key)
        .and_then(|()| out.flush())
        .map_err(|e| AgentError::Local(format!("stdout: {e}")))
}

/// How to hand a key to cryptsetup.
#[derive(Debug, Clone)]
pub struct Luks<'a> {
    /// The `cryptsetup` binary (default: found on `PATH`).
    pub cryptsetup: &'a Path,
    pub device: &'a Path,
    pub name: &'a str,
    /// `cryptsetup open --test-passphrase`: checks the key without device-mapper.
    pub test_passphrase: bool,
}

/// Runs `cryptsetup open --key-file=- DEVICE NAME` with `key` on its stdin.
pub fn cryptsetup_open(luks: &Luks<'_>, key: &[u8]) -> Result<(), AgentError> {
    let mut cmd = Command::new(luks.cryptsetup);
    cmd.arg("open").arg("--key-file=-");
    if luks.test_passphrase {
        cmd.arg("--test-passphrase");
    }
    cmd.arg(luks.device).arg(luks.name);
    let mut child =
        cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().map_err(
            |e| AgentError::Cryptsetup(format!("cannot run {}: {e}", luks.cryptsetup.display())),
        )?;
    let mut stdin =
        child.stdin.take().ok_or_else(|| AgentError::Cryptsetup("no stdin pipe".into()))?;
    let written = stdin.write_all(key);
    drop(stdin);
    let out = child
        .wait_with_output()
        .map_err(|e| AgentError::Cryptsetup(format!("waiting for cryptsetup: {e}")))?;
    written.map_err(|e| AgentError::Cryptsetup(format!("writing the key to cryptsetup: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        let msg = String::from_utf8_lossy(&out.stderr);
        let line = msg.lines().find(|l| !l.trim().is_empty()).unwrap_or("no message").trim();
        Err(AgentError::Cryptsetup(format!(
            "open {} failed ({}): {line}",
            luks.device.display(),
            out.status
        )))
    }
}
