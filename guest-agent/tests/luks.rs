//! `cryptsetup open --key-file=-` as the agent runs it, against a real file-backed LUKS2 image:
//! the right key (fed on stdin, never argv) opens it with `--test-passphrase`, a wrong key does
//! not. Installs Debian's `cryptsetup-bin` when missing and running as root; otherwise skipped.

// reason: test helpers fail loudly; clippy.toml relaxes this only inside #[test] functions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

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

fn format_image(cs: &Path, image: &Path, key: &[u8]) -> Result<(), String> {
    std::fs::File::create(image).unwrap().set_len(32 << 20).unwrap();
    let mut child = Command::new(cs)
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
        .arg(image)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(key).unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// cryptsetup and a LUKS2 image in a temp dir formatted with `key`; `None` (after printing why)
/// when this machine cannot do it.
fn luks_image(key: &[u8]) -> Option<(PathBuf, tempfile::TempDir, PathBuf)> {
    let Some(cs) = cryptsetup() else {
        println!(
            "skipped: cryptsetup not available and cannot be installed (not root or no network)"
        );
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    if let Err(e) = format_image(&cs, &image, key) {
        println!("skipped: luksFormat failed here: {e}");
        return None;
    }
    Some((cs, dir, image))
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
    let key: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(37) ^ 0x0a).collect(); // includes '\n' bytes
    let Some((cs, _dir, image)) = luks_image(&key) else { return };
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

/// The whole agent: simulated SNP evidence, a local broker releasing the disk key, and
/// `keylatch-agent unlock-luks --test-passphrase`; then the same with the broker denying.
#[test]
fn unlock_luks_command_opens_image_with_released_key_and_not_when_denied() {
    use std::sync::Arc;
    let disk_key = b"\x01\x02 thirty-two byte disk key!\n";
    let Some((cs, dir, image)) = luks_image(disk_key) else { return };
    common::write_pki(dir.path());
    let t = common::tls();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &t.ca_pem).unwrap();
    let kbs = Arc::new(common::MiniKbs::new(disk_key));
    let server = common::Server::start(
        &t,
        Arc::new(move |r| {
            if r.path.ends_with("/denied") {
                return common::error(403, "policy-denied", "no rule allows this VM");
            }
            kbs.handle(r)
        }),
    );
    let run = |tag: &str| {
        Command::new(env!("CARGO_BIN_EXE_keylatch-agent"))
            .args([
                "unlock-luks",
                "--device",
                image.to_str().unwrap(),
                "--name",
                "kl-test",
                "--test-passphrase",
            ])
            .args(["--resource", &format!("kbs:///default/disk/{tag}"), "--url", &server.url()])
            .args([
                "--ca",
                ca.to_str().unwrap(),
                "--simulate",
                "snp",
                "--sim-pki",
                dir.path().to_str().unwrap(),
            ])
            .args(["--cryptsetup", cs.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let o = run("vm1");
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run("denied");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "error: resource: policy-denied: no rule allows this VM\n"
    );
}
