//! `cryptsetup open --key-file=-` as the agent runs it, against a real file-backed LUKS2 image:
//! the right key (fed on stdin, never argv) opens it with `--test-passphrase`, a wrong key does
//! not. Installs Debian's `cryptsetup-bin` when missing and running as root; otherwise skipped.

// reason: test helpers fail loudly; clippy.toml relaxes this only inside #[test] functions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use keylatch_agent::sink::{cryptsetup_open, Luks};
use keylatch_agent::{AgentError, ExitCode};

fn find_cryptsetup() -> Option<PathBuf> {
    for p in ["/usr/sbin/cryptsetup", "/sbin/cryptsetup", "/usr/bin/cryptsetup"] {
        if Path::new(p).exists() {
            return Some(PathBuf::from(p));
        }
    }
    None
}

fn cryptsetup() -> Option<PathBuf> {
    if let Some(p) = find_cryptsetup() {
        return Some(p);
    }
    let root = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&root.stdout).trim() != "0" {
        return None;
    }
    let quiet = |c: &mut Command| c.stdout(Stdio::null()).stderr(Stdio::null()).status().ok();
    quiet(Command::new("apt-get").args(["update", "-qq"]));
    quiet(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "cryptsetup-bin"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    );
    find_cryptsetup()
}

#[test]
fn cryptsetup_accepts_right_key_on_stdin_and_rejects_wrong_one() {
    let Some(cs) = cryptsetup() else {
        println!(
            "skipped: cryptsetup not available and cannot be installed (not root or no network)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    std::fs::File::create(&image).unwrap().set_len(32 << 20).unwrap();
    let key: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(37) ^ 0x0a).collect(); // includes '\n' bytes
    let mut child = Command::new(&cs)
        .args([
            "luksFormat",
            "--batch-mode",
            "--type",
            "luks2",
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
            "--key-file=-",
        ])
        .arg(&image)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&key).unwrap();
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        println!(
            "skipped: luksFormat failed here: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return;
    }
    let luks =
        Luks { cryptsetup: &cs, device: &image, name: "keylatch-test", test_passphrase: true };
    cryptsetup_open(&luks, &key).unwrap();
    let mut wrong = key.clone();
    wrong[31] ^= 1;
    let err = cryptsetup_open(&luks, &wrong).unwrap_err();
    assert!(matches!(err, AgentError::Cryptsetup(_)), "{err}");
    assert_eq!(err.exit_code(), ExitCode::Local);
    // A key that is a prefix of the right one must not open it either (no newline trimming).
    let err = cryptsetup_open(&luks, &key[..31]).unwrap_err();
    assert!(err.to_string().starts_with("cryptsetup: open "), "{err}");
}
