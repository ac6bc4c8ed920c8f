//! `scripts/quickstart.sh` is the README's first command; this runs it against the binaries the
//! suite built (`KEYLATCH_BIN_DIR`) so it cannot rot: every step must succeed, the VM with the
//! right measurement must unlock the disk, the other must be denied with the mismatch, the
//! wrong role must be refused, and the audit trail must verify offline.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // reason: test code

use std::path::Path;
use std::process::Command;

use e2e::bins;

#[test]
fn quickstart_runs_the_product_end_to_end() {
    let keylatch = bins::path(bins::KEYLATCH).unwrap();
    bins::path(bins::AGENT).unwrap();
    bins::path(bins::REFVAL).unwrap();
    let bin_dir = keylatch.parent().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Command::new("bash")
        .arg(root.join("scripts/quickstart.sh"))
        .env("KEYLATCH_BIN_DIR", bin_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "quickstart failed\n{stdout}\n{stderr}");
    for expected in [
        "refused -> error: HTTP 403 forbidden: role key-custodian may not do this (needs policy-author)",
        "unlocked: cryptsetup accepted the released key",
        "denied -> error: resource: policy-denied: policy v1 denies default/disk/web-vm: web-vms: \
         bundle \"web-vm\" mismatches: snp.measurement expected",
        "checkpoints verified (latest size",
        "==> done",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in\n{stdout}\n{stderr}");
    }
    assert!(!stdout.contains("UNEXPECTED"), "{stdout}");
}
