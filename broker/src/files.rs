//! Key files on disk: private keys are written owner-only ([`write_private`]) and refused when
//! group or others may read them ([`check_private`]); public files are written 0644
//! ([`write_public`]). Neither writer overwrites.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use anyhow::{bail, Context as _};

/// Refuses a private-key file whose mode lets group or others read it.
pub fn check_private(path: &Path) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        bail!("{}: private key readable by group or others (chmod 600)", path.display());
    }
    Ok(())
}

/// Writes a new file that only its owner may read (mode 0600); never overwrites.
pub fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    write_new(path, contents, 0o600)
}

/// Writes a new public file (mode 0644); never overwrites.
pub fn write_public(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    write_new(path, contents, 0o644)
}

/// Creates `path` with `mode` (refused when it exists), writes `contents` and syncs them.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents).with_context(|| format!("writing {}", path.display()))?;
    file.sync_all().with_context(|| format!("syncing {}", path.display()))
}
