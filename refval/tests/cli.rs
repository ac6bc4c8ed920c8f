//! The `refval` binary end to end, as a policy author uses it: keygen, sign with two keys,
//! cosign with a third, verify at thresholds 2 and 3, show --json, and measure (SNP launch digest,
//! TDX event-log table).

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing, clippy::expect_used)] // reason: tests fail loudly on purpose

// The library's test support (vectors, claims from `expected.json`): one copy for both packages.
#[path = "../../reference-values/tests/common/mod.rs"]
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

const AT: &str = "2026-06-01T00:00:00Z";

fn refval(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_refval")).args(args).current_dir(dir).output().unwrap()
}

fn ok(args: &[&str], dir: &Path) -> String {
    let out = refval(args, dir);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail, and returns its single stderr line.
fn fails(args: &[&str], dir: &Path) -> String {
    let out = refval(args, dir);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    err.trim_end().to_owned()
}

/// The arguments of `refval verify web.cose` with these trusted keys, threshold and instant.
fn verify_args<'a>(trust: &[&'a str], threshold: &'a str, at: &'a str) -> Vec<&'a str> {
    let mut args = vec!["verify", "web.cose", "--threshold", threshold, "--at", at];
    for t in trust {
        args.extend(["--trust", t]);
    }
    args
}

fn keygen(name: &str, dir: &Path) -> String {
    let out = ok(&["keygen", "--out", name], dir);
    let kid = out.trim().strip_prefix("kid ").unwrap().to_owned();
    assert_eq!(kid.len(), 64);
    let mode = std::fs::metadata(dir.join(name)).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{name} mode {mode:o}");
    let private = std::fs::read_to_string(dir.join(name)).unwrap();
    assert!(private.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    let public = std::fs::read_to_string(dir.join(format!("{name}.pub"))).unwrap();
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    kid
}

#[test]
fn author_workflow_keygen_sign_cosign_verify_show() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../reference-values/examples/snp.toml");

    let kids = [keygen("a", dir), keygen("b", dir), keygen("c", dir)];
    assert!(fails(&["keygen", "--out", "a"], dir).contains("refusing to overwrite"));

    let out = ok(&["sign", example, "--key", "a", "--key", "b", "--out", "web.cose"], dir);
    assert_eq!(out, "signed \"web-frontend\" version 1 with 2 key(s)\n");

    let verify = |trust: &[&str], threshold: &str| refval(&verify_args(trust, threshold, AT), dir);
    let out = verify(&["a.pub", "b.pub"], "2");
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "ok: bundle \"web-frontend\" version 1, expires 2030-01-01T00:00:00Z");
    assert_eq!(
        lines[1],
        format!("signed by 2 trusted key(s), threshold 2: {}, {}", kids[0], kids[1])
    );

    let err = fails(&verify_args(&["a.pub", "b.pub", "c.pub"], "3", AT), dir);
    assert!(
        err.ends_with(": 2 valid signature(s) from distinct trusted keys, 3 required"),
        "{err}"
    );

    assert_eq!(
        ok(&["cosign", "web.cose", "--key", "c"], dir),
        format!("added signature by {}\n", kids[2])
    );
    assert!(fails(&["cosign", "web.cose", "--key", "c"], dir)
        .ends_with(&format!("already signed by key {}", kids[2])));

    let out = verify(&["a.pub", "b.pub", "c.pub"], "3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Every signer must be trusted: with c.pub left out, c's signature is an unknown signer.
    let out = verify(&["a.pub", "b.pub"], "2");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.trim_end()
            .ends_with(&format!("signed by key {}, which is not trusted for this bundle", kids[2])),
        "{err}"
    );

    let shown: serde_json::Value =
        serde_json::from_str(&ok(&["show", "web.cose", "--json"], dir)).unwrap();
    assert_eq!(shown["bundle"]["name"], "web-frontend");
    assert_eq!(shown["bundle"]["version"], 1);
    assert_eq!(shown["bundle"]["expires"], "2030-01-01T00:00:00Z");
    assert_eq!(shown["bundle"]["snp"]["min_tcb"]["microcode"], 115);
    assert_eq!(shown["signatures_verified"], false);
    let shown_kids: Vec<&str> = shown["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kid"].as_str().unwrap())
        .collect();
    assert_eq!(shown_kids, kids.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(shown["payload_sha256"].as_str().unwrap().len(), 64);

    let err = fails(&verify_args(&["a.pub", "b.pub", "c.pub"], "1", "2030-01-01T00:00:00Z"), dir);
    assert_eq!(
        err,
        "error: web.cose: bundle expired at 2030-01-01T00:00:00Z (now 2030-01-01T00:00:00Z)"
    );
}

#[test]
fn sign_refuses_bundle_with_unknown_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    keygen("a", dir);
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../reference-values/examples/tdx.toml"
    ))
    .unwrap()
    .replace("allow_debug = false", "alow_debug = true");
    std::fs::write(dir.join("typo.toml"), text).unwrap();
    let err = fails(&["sign", "typo.toml", "--key", "a", "--out", "x.cose"], dir);
    assert!(err.contains("unknown field `alow_debug`"), "{err}");
    assert!(!dir.join("x.cose").exists());
}

#[test]
fn measure_snp_prints_the_launch_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let err = fails(
        &["measure", "snp", "--ovmf", "x.fd", "--vcpus", "1", "--vcpu-type", "EPYC-v99"],
        tmp.path(),
    );
    assert!(err.contains("unknown vCPU type \"EPYC-v99\""), "{err}");

    let home = std::env::var_os("CARGO_HOME").map_or_else(
        || Path::new(&std::env::var_os("HOME").unwrap()).join(".cargo"),
        std::path::PathBuf::from,
    );
    let found = std::fs::read_dir(home.join("registry/src")).ok().and_then(|d| {
        d.filter_map(Result::ok)
            .map(|e| e.path().join("sev-8.0.0/tests/measurement/ovmf_AmdSev_suffix.bin"))
            .find(|p| p.is_file())
    });
    let Some(ovmf) = found else {
        println!("skipped: sev-8.0.0 test inputs not found in the cargo registry");
        return;
    };
    let out = ok(
        &[
            "measure",
            "snp",
            "--ovmf",
            ovmf.to_str().unwrap(),
            "--kernel",
            "/dev/null",
            "--initrd",
            "/dev/null",
            "--append",
            "console=ttyS0 loglevel=7",
            "--vcpus",
            "1",
            "--vcpu-type",
            "EPYC-v4",
            "--guest-features",
            "0x21",
        ],
        tmp.path(),
    );
    assert_eq!(
        out,
        "803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba7e534442e7e1e17895dfe778d0228977\n"
    );
}

#[test]
fn measure_tdx_event_log_prints_the_ccel_table() {
    let tmp = tempfile::tempdir().unwrap();
    let log =
        verifier::sim::ccel::event_log(&verifier::sim::ccel::SimEvent::direct_grub_boot(), 4096);
    std::fs::write(tmp.path().join("CCEL"), &log).unwrap();
    let out = ok(&["measure", "tdx-event-log", "--ccel", "CCEL"], tmp.path());
    let want = reference_values::measure::tdx_event_log_reference(&log).unwrap().to_toml().unwrap();
    assert_eq!(out, want);

    std::fs::write(tmp.path().join("bad"), &log[..100]).unwrap();
    let err = fails(&["measure", "tdx-event-log", "--ccel", "bad"], tmp.path());
    assert!(err.starts_with("error: bad: event-log: "), "{err}");
    let err = fails(&["measure", "tdx-event-log", "--ccel", "missing"], tmp.path());
    assert!(err.starts_with("error: reading missing: "), "{err}");
}

#[test]
fn appraise_reports_mismatches_of_recorded_claims() {
    let Some(dir) = keylatch_test_vectors::dir() else { return };
    let case = common::all_cases(&dir)
        .into_iter()
        .find(|c| c.name == "snp/milan-v2-go-sev-guest")
        .unwrap();
    let claims = common::claims_of(&case);
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("claims.json"), serde_json::to_vec(&claims).unwrap()).unwrap();
    let measurement = claims.snp.as_ref().unwrap().measurement;
    std::fs::write(
        tmp.path().join("default.toml"),
        format!(
            "name = \"d\"\nversion = 1\nexpires = 2030-01-01T00:00:00Z\n[snp]\nmeasurements = [\"{measurement}\"]\n"
        ),
    )
    .unwrap();
    let out = refval(
        &["appraise", "--claims", "claims.json", "default.toml", "--at", "2023-01-01T00:00:00Z"],
        tmp.path(),
    );
    assert!(!out.status.success());
    assert_eq!(String::from_utf8(out.stderr).unwrap(), "error: 1 mismatch(es)\n");
    let appraisal: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        appraisal["mismatches"],
        serde_json::json!([{"field": "snp.policy.debug", "expected": "false", "actual": "true"}])
    );
}
