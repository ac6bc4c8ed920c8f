//! Test fixtures: a private SoftHSM2 token in a temporary directory, a soft keystore in another,
//! and one `Fixture` type so each behavioural test is written once and run against both.

#![allow(dead_code)] // reason: each test binary uses a different subset of these helpers.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)] // reason: test fixtures fail loudly on purpose

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use keylatch_keystore::pkcs11::{PinSource, Pkcs11Config, Pkcs11Keystore};
use keylatch_keystore::soft::SoftKeystore;
use keylatch_keystore::Keystore;

pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const TOKEN_LABEL: &str = "keylatch-test";
pub const USER_PIN: &str = "4321-user";
const SO_PIN: &str = "8765-so";

/// A freshly initialized SoftHSM2 token that only this test process sees.
pub struct SoftHsm {
    pub dir: tempfile::TempDir,
    /// `directories.tokendir`: SoftHSM keeps one sub-directory per token here.
    pub token_dir: PathBuf,
    pub config: Pkcs11Config,
}

impl SoftHsm {
    /// `None` (after printing `skipped: ...`) when SoftHSM2 is absent and cannot be installed.
    pub fn new() -> Option<Self> {
        if !ensure_softhsm() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let token_dir = dir.path().join("tokens");
        std::fs::create_dir(&token_dir).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                token_dir.display()
            ),
        )
        .unwrap();
        let out = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", TOKEN_LABEL])
            .args(["--pin", USER_PIN, "--so-pin", SO_PIN])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .unwrap();
        assert!(out.status.success(), "softhsm2-util: {}", String::from_utf8_lossy(&out.stderr));
        // SoftHSM reads SOFTHSM2_CONF in-process at C_Initialize. nextest runs every test in a
        // process of its own, so setting it here cannot reach another test's token.
        std::env::set_var("SOFTHSM2_CONF", &conf);
        let pin_file = dir.path().join("pin");
        std::fs::write(&pin_file, format!("{USER_PIN}\n")).unwrap();
        std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = Pkcs11Config {
            module: PathBuf::from(SOFTHSM_MODULE),
            token_label: TOKEN_LABEL.into(),
            pin: PinSource::File(pin_file),
        };
        Some(Self { dir, token_dir, config })
    }

    pub fn open(&self) -> Pkcs11Keystore {
        Pkcs11Keystore::open(self.config.clone()).unwrap()
    }

    /// Where the token directory goes while the "HSM" is unplugged.
    pub fn unplugged_dir(&self) -> PathBuf {
        self.dir.path().join("tokens-unplugged")
    }
}

/// Installs Debian's softhsm2 when missing and running as root; says why not otherwise.
fn ensure_softhsm() -> bool {
    if Path::new(SOFTHSM_MODULE).exists() {
        return true;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if root {
        // Tests run in parallel processes: wait for the dpkg lock rather than fail on it.
        let _ = Command::new("apt-get")
            .args(["install", "-y", "-qq", "-o", "DPkg::Lock::Timeout=600", "softhsm2"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output();
    }
    if Path::new(SOFTHSM_MODULE).exists() {
        return true;
    }
    println!("skipped: SoftHSM2 not found at {SOFTHSM_MODULE} (apt-get install softhsm2)");
    false
}

/// Which backend a behavioural test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Soft,
    Pkcs11,
}

/// One backend with its files, reopenable like a restarted broker.
pub struct Fixture {
    pub kind: Kind,
    pub soft_dir: tempfile::TempDir,
    pub hsm: Option<SoftHsm>,
    ks: Option<Box<dyn Keystore>>,
}

impl Fixture {
    pub fn new(kind: Kind) -> Option<Self> {
        let soft_dir = tempfile::tempdir().unwrap();
        let (hsm, ks): (_, Box<dyn Keystore>) = match kind {
            Kind::Soft => {
                (None, Box::new(SoftKeystore::create(&soft_dir.path().join("kek.json")).unwrap()))
            }
            Kind::Pkcs11 => {
                let hsm = SoftHsm::new()?;
                let ks = hsm.open();
                (Some(hsm), Box::new(ks))
            }
        };
        Some(Self { kind, soft_dir, hsm, ks: Some(ks) })
    }

    pub fn ks(&self) -> &dyn Keystore {
        self.ks.as_deref().unwrap()
    }

    /// Drops the keystore (closing the session and finalizing the module) and opens it again.
    pub fn reopen(&mut self) {
        drop(self.ks.take());
        self.ks = Some(match self.kind {
            Kind::Soft => {
                Box::new(SoftKeystore::open(&self.soft_dir.path().join("kek.json")).unwrap())
            }
            Kind::Pkcs11 => Box::new(self.hsm.as_ref().unwrap().open()),
        });
    }

    /// Closes the keystore for good (tests that inspect the token themselves).
    pub fn close(&mut self) {
        drop(self.ks.take());
    }

    /// Every file the backend keeps at rest.
    pub fn files_at_rest(&self) -> Vec<PathBuf> {
        let root = match &self.hsm {
            Some(hsm) => hsm.token_dir.clone(),
            None => self.soft_dir.path().to_path_buf(),
        };
        let mut out = Vec::new();
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    out.push(path);
                }
            }
        }
        out
    }
}

/// Runs a behavioural test `fn name(Kind)` against both backends, as `name::soft` and
/// `name::pkcs11`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn soft() {
                super::$name($crate::common::Kind::Soft);
            }
            #[test]
            fn pkcs11() {
                super::$name($crate::common::Kind::Pkcs11);
            }
        }
    )*};
}

/// An independent BYOK wrapper: Python `cryptography` (OAEP SHA-256 + aes_key_wrap_with_padding).
/// `None` after printing `skipped: ...` when it cannot be had.
pub fn python_wrap_for_import(spki_der: &[u8], key: &[u8]) -> Option<Vec<u8>> {
    const SCRIPT: &str = r"
import os, sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding
pub = serialization.load_der_public_key(bytes.fromhex(sys.argv[1]))
key = bytes.fromhex(sys.argv[2])
eph = os.urandom(32)
oaep = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
sys.stdout.write((pub.encrypt(eph, oaep) + aes_key_wrap_with_padding(eph, key)).hex())
";
    let has = |py: &str| {
        Command::new(py)
            .args(["-c", "import cryptography.hazmat.primitives.keywrap"])
            .status()
            .is_ok_and(|s| s.success())
    };
    let python = "python3";
    if !has(python) {
        let _ =
            Command::new(python).args(["-m", "pip", "install", "--quiet", "cryptography"]).status();
        if !has(python) {
            println!(
                "skipped: Python `cryptography` unavailable (python3 -m pip install cryptography)"
            );
            return None;
        }
    }
    let out = Command::new(python)
        .args(["-c", SCRIPT, &hex::encode(spki_der), &hex::encode(key)])
        .output()
        .unwrap();
    assert!(out.status.success(), "python: {}", String::from_utf8_lossy(&out.stderr));
    Some(hex::decode(out.stdout).unwrap())
}
