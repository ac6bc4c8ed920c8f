//! Real LUKS2 images in files: `cryptsetup luksFormat` with the key on stdin (pbkdf2 at 1000
//! iterations, so opening takes milliseconds), a direct `--test-passphrase` check, and a spy
//! wrapper that logs every cryptsetup invocation the agent makes before running the real one.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context as _;

use crate::Outcome;

/// Image size: LUKS2's header and keyslot area take 16 MiB; the rest is payload.
pub const IMAGE_BYTES: u64 = 32 << 20;

/// The installed `cryptsetup`, or `None` after printing `skipped: ...`.
#[must_use]
pub fn cryptsetup() -> Option<PathBuf> {
    let found = ["/usr/sbin/cryptsetup", "/sbin/cryptsetup", "/usr/bin/cryptsetup"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    if found.is_none() {
        crate::skipped(
            "cryptsetup not found (apt-get install cryptsetup-bin; scripts/test.sh does)",
        );
    }
    found
}

/// Creates `image` (sparse, [`IMAGE_BYTES`]) and formats it as LUKS2 with `key` in slot 0.
pub fn format(cryptsetup: &Path, image: &Path, key: &[u8]) -> anyhow::Result<()> {
    std::fs::File::create(image)
        .and_then(|f| f.set_len(IMAGE_BYTES))
        .with_context(|| format!("creating {}", image.display()))?;
    let args = ["luksFormat", "--type", "luks2", "--pbkdf", "pbkdf2"];
    let args2 = ["--pbkdf-force-iterations", "1000", "--batch-mode", "--key-file=-"];
    with_key_on_stdin(Command::new(cryptsetup).args(args).args(args2).arg(image), key)?
        .success("cryptsetup luksFormat")
        .map(drop)
}

/// Whether `key` opens `image` (`cryptsetup open --test-passphrase`, no device-mapper).
pub fn key_opens(cryptsetup: &Path, image: &Path, key: &[u8]) -> anyhow::Result<bool> {
    let out = with_key_on_stdin(
        Command::new(cryptsetup).args(["open", "--test-passphrase", "--key-file=-"]).arg(image),
        key,
    )?;
    Ok(out.code == Some(0))
}

fn with_key_on_stdin(cmd: &mut Command, key: &[u8]) -> anyhow::Result<Outcome> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running cryptsetup")?;
    let mut stdin = child.stdin.take().context("cryptsetup stdin")?;
    stdin.write_all(key).context("writing the key to cryptsetup")?;
    drop(stdin);
    Ok(child.wait_with_output().context("waiting for cryptsetup")?.into())
}

/// A `cryptsetup` stand-in that appends its arguments (one line per call) to a log and then
/// runs the real one: proof of whether, and how, the agent invoked cryptsetup.
#[derive(Debug, Clone)]
pub struct Spy {
    /// Pass this as the agent's `--cryptsetup`.
    pub program: PathBuf,
    pub log: PathBuf,
}

impl Spy {
    /// Writes the wrapper into `dir`.
    pub fn install(dir: &Path, real: &Path) -> anyhow::Result<Self> {
        let program = dir.join("cryptsetup-spy");
        let log = dir.join("cryptsetup-calls.log");
        std::fs::write(
            &program,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
                log.display(),
                real.display()
            ),
        )
        .with_context(|| format!("writing {}", program.display()))?;
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755))?;
        Ok(Self { program, log })
    }

    /// The recorded invocations, oldest first.
    #[must_use]
    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log).unwrap_or_default().lines().map(str::to_owned).collect()
    }
}
