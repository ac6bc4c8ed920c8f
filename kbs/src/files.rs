//! Private keys on disk are refused when group or others may read them (writing them is
//! `cli::write_private`).

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
