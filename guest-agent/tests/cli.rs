//! The `keylatch-agent` binary as an initramfs script runs it: exit codes, one-line errors,
//! `detect`, `evidence`, and `get-resource --out` creating a 0600 file and never overwriting.

// reason: test helpers fail loudly; clippy.toml relaxes this only inside #[test] functions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;

use common::{tls, write_pki, MiniKbs, Server, TestTls};

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keylatch-agent")).args(args).output().unwrap()
}

/// A directory holding the simulation PKI and `ca.pem`, the CA of the returned server TLS
/// identity (the agent's `--sim-pki` and `--ca`).
fn pki_and_ca() -> (tempfile::TempDir, TestTls, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    write_pki(dir.path());
    let t = tls();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &t.ca_pem).unwrap();
    (dir, t, ca)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn detect_without_tee_exits_4_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("absent");
    let o = agent(&[
        "detect",
        "--configfs-root",
        root.to_str().unwrap(),
        "--sev-guest",
        root.to_str().unwrap(),
        "--tpm",
        root.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(4));
    let err = stderr(&o);
    assert!(err.starts_with("error: no TEE: "), "{err}");
    assert_eq!(err.lines().count(), 1);
}

#[test]
fn detect_and_evidence_in_simulation() {
    let dir = tempfile::tempdir().unwrap();
    write_pki(dir.path());
    let pki = dir.path().to_str().unwrap();
    let o = agent(&["detect", "--simulate", "tdx", "--sim-pki", pki]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("tdx (SIMULATED): simulation PKI at "));
    let o = agent(&["evidence", "--report-data", "00ff", "--simulate", "snp", "--sim-pki", pki]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let ev: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rd: Vec<u8> =
        serde_json::from_value(ev["attestation_report"]["report_data"].clone()).unwrap();
    assert_eq!(&rd[..3], &[0x00, 0xff, 0x00]);
    assert_eq!(ev["cert_chain"][0]["cert_type"], "VCEK");
    let o = agent(&["evidence", "--report-data", "zz", "--simulate", "snp", "--sim-pki", pki]);
    assert_eq!(
        (o.status.code(), stderr(&o).as_str()),
        (Some(4), "error: --report-data is not hex\n")
    );
}

#[test]
fn unreachable_broker_exits_3_after_deadline() {
    let (dir, _tls, ca) = pki_and_ca();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("https://127.0.0.1:{port}");
    let o = agent(&[
        "get-resource",
        "kbs:///default/disk/vm1",
        "--url",
        &url,
        "--ca",
        ca.to_str().unwrap(),
        "--deadline",
        "1",
        "--simulate",
        "snp",
        "--sim-pki",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).starts_with("error: broker unreachable within 1 s: auth: "),
        "{}",
        stderr(&o)
    );
    assert!(o.stdout.is_empty());
}

#[test]
fn writes_key_to_new_0600_file_and_never_overwrites() {
    let (dir, t, ca) = pki_and_ca();
    let kbs = Arc::new(MiniKbs::new(b"file secret"));
    let server = Server::start(&t, Arc::new(move |r| kbs.handle(r)));
    let out = dir.path().join("key.bin");
    let args = |out: &str| {
        vec![
            "get-resource".to_owned(),
            "kbs:///default/disk/vm1".into(),
            "--url".into(),
            server.url(),
            "--ca".into(),
            ca.to_str().unwrap().into(),
            "--simulate".into(),
            "snp".into(),
            "--sim-pki".into(),
            dir.path().to_str().unwrap().into(),
            "--key-type".into(),
            "rsa3072".into(),
            "--out".into(),
            out.into(),
        ]
    };
    let run = |a: Vec<String>| {
        Command::new(env!("CARGO_BIN_EXE_keylatch-agent")).args(a).output().unwrap()
    };
    let o = run(args(out.to_str().unwrap()));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::read(&out).unwrap(), b"file secret");
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(o.stdout.is_empty());
    let o = run(args(out.to_str().unwrap()));
    assert_eq!(o.status.code(), Some(4));
    assert!(stderr(&o).contains("File exists"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&out).unwrap(), b"file secret");
}
