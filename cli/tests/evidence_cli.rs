//! `keylatch evidence verify` and `keylatch sim` as a user runs them: the real binary against the
//! shared hardware vectors (every expected.json field reproduced) and against simulated evidence.

// reason: test helpers fail loudly; clippy.toml relaxes this only inside #[test] functions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn keylatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keylatch")).args(args).output().expect("run keylatch")
}

fn json_file(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn claims_of(out: &Output) -> Value {
    assert!(out.status.success(), "keylatch failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Where an expected.json claim name lives in our claims JSON.
fn claim_path(tee: &str, name: &str) -> String {
    match (tee, name) {
        (_, "report_data") => "report_data".into(),
        ("snp", "policy") => "snp.policy.raw".into(),
        ("snp", n) if n.starts_with("policy_") => format!("snp.policy.{}", &n[7..]),
        ("tdx", "td_attributes") => "tdx.td_attributes.raw".into(),
        (tee, n) => format!("{tee}.{n}"),
    }
}

fn lookup<'a>(claims: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(claims, |v, key| &v[key])
}

/// Asserts every claim of an expected.json equals the CLI's output, and returns how many.
fn assert_claims_match(expected: &Value, claims: &Value) -> usize {
    let tee = expected["tee"].as_str().unwrap();
    assert_eq!(claims["tee"], tee);
    assert_eq!(claims["simulated"], false);
    let mut checked = 0;
    for (name, want) in expected["claims"].as_object().unwrap() {
        let got = lookup(claims, &claim_path(tee, name));
        assert_eq!(got, want, "claim {name}");
        checked += 1;
    }
    if let Some(product) = expected.get("product") {
        assert_eq!(claims["snp"]["product"], product.as_str().unwrap().to_lowercase());
        checked += 1;
    }
    for top in ["tcb_status", "advisory_ids"] {
        if let Some(want) = expected.get(top) {
            assert_eq!(&claims["tdx"][top], want, "{top}");
            checked += 1;
        }
    }
    checked
}

#[test]
fn verify_reproduces_every_expected_field_of_the_shared_vectors() {
    let Some(dir) = keylatch_test_vectors::dir() else { return };
    let cases: [(&str, &[&str]); 6] = [
        ("snp/milan-v2-virtee", &["--endorsement", "vcek.der"]),
        ("snp/milan-v2-go-sev-guest", &["--endorsement", "vcek.der"]),
        ("snp/genoa-v5-oak", &["--endorsement", "vcek.der"]),
        ("snp/milan-v3-vlek", &["--endorsement", "vlek.der"]),
        ("coco/snp-genoa-v3", &[]),
        ("tdx/v4-dcap-qvl", &["--collateral", "collateral.json"]),
    ];
    let mut checked = 0;
    for (case, extra) in cases {
        let case_dir = dir.join(case);
        let expected = json_file(&case_dir.join("expected.json"));
        let evidence = case_dir.join(expected["evidence"].as_str().unwrap());
        let mut args = vec![
            "evidence".to_string(),
            "verify".into(),
            "--tee".into(),
            expected["tee"].as_str().unwrap().into(),
            "--evidence".into(),
            evidence.display().to_string(),
            "--at".into(),
            expected["at"].as_str().unwrap().into(),
            "--report-data".into(),
            expected["claims"]["report_data"].as_str().unwrap().into(),
        ];
        for pair in extra.chunks(2) {
            args.push(pair[0].into());
            args.push(case_dir.join(pair[1]).display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        checked += assert_claims_match(&expected, &claims_of(&keylatch(&args)));
    }
    assert!(checked > 100, "only {checked} fields compared");
}

#[test]
fn verify_fails_with_step_and_reason_for_the_tdx_vector_without_tcb_level() {
    let Some(dir) = keylatch_test_vectors::dir() else { return };
    let out = verify_case(
        &dir.join("tdx/v5-dcap-qvl-no-tcb-level"),
        "tdx",
        "2026-03-20T10:41:14Z",
        ["quote.bin", "--collateral", "collateral.json"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "error: tcb: no TCB level applies\n");
}

/// `keylatch evidence verify --tee <tee> --at <at>` of the vector in `case`: its `evidence` file,
/// then `flag` (`--endorsement` or `--collateral`) with its `signer` file, then `extra`.
fn verify_case(
    case: &Path,
    tee: &str,
    at: &str,
    [evidence, flag, signer]: [&str; 3],
    extra: &[&str],
) -> Output {
    let (evidence, signer) = (case.join(evidence), case.join(signer));
    let mut args = vec!["evidence", "verify", "--tee", tee, "--at", at];
    args.extend(["--evidence", evidence.to_str().unwrap(), flag, signer.to_str().unwrap()]);
    args.extend(extra);
    keylatch(&args)
}

/// `keylatch evidence verify` of the AWS VLEK vector at `at`, with `extra` arguments.
fn verify_vlek(dir: &Path, at: &str, extra: &[&str]) -> Output {
    let vlek = ["report.bin", "--endorsement", "vlek.der"];
    verify_case(&dir.join("snp/milan-v3-vlek"), "snp", at, vlek, extra)
}

#[test]
fn verify_reports_the_vlek_expired_one_second_after_not_after() {
    let Some(dir) = keylatch_test_vectors::dir() else { return };
    let run = |at: &str| verify_vlek(&dir, at, &[]);
    assert!(run("2025-12-10T22:14:21Z").status.success());
    let out = run("2025-12-10T22:14:22Z");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: chain: VLEK certificate expired at 2025-12-10T22:14:21Z, now is 2025-12-10T22:14:22Z\n"
    );
}

#[test]
fn wrong_report_data_fails_at_the_report_data_step() {
    let Some(dir) = keylatch_test_vectors::dir() else { return };
    let out = verify_case(
        &dir.join("snp/genoa-v5-oak"),
        "snp",
        "2026-01-01T00:00:00Z",
        ["report.bin", "--endorsement", "vcek.der"],
        &["--report-data", "00"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: report-data: "));
}

#[test]
fn missing_file_is_a_usage_error_with_exit_code_2() {
    let out =
        keylatch(&["evidence", "verify", "--tee", "snp", "--evidence", "/nonexistent/report.bin"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/report.bin"));
}

#[test]
fn simulated_evidence_verifies_only_under_the_simulation_pki() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("pki");
    let pki_s = pki.to_str().unwrap();
    assert!(keylatch(&["sim", "init", "--out", pki_s]).status.success());
    // Keys are private, certificates public; a second init refuses to overwrite.
    let mode = |name: &str| std::fs::metadata(pki.join(name)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("amd-ark-key.pem"), 0o600);
    assert_eq!(mode("intel-pck.key.pem"), 0o600);
    assert_eq!(mode("amd-ark.pem"), 0o644);
    assert_eq!(keylatch(&["sim", "init", "--out", pki_s]).status.code(), Some(2));

    let rd = "ab".repeat(64);
    let measurement = "5e".repeat(48);
    for (tee, extra, endorsement_flag, suffix) in [
        ("snp", vec!["--product", "turin", "--version", "3"], "--endorsement", "vcek.der"),
        ("tdx", vec!["--version", "5", "--tdx15"], "--collateral", "collateral.json"),
    ] {
        let out_file = tmp.path().join(format!("{tee}.bin"));
        let out_s = out_file.to_str().unwrap();
        let mut args = vec![
            "sim",
            "evidence",
            "--tee",
            tee,
            "--pki",
            pki_s,
            "--report-data",
            &rd,
            "--measurement",
            &measurement,
            "--out",
            out_s,
        ];
        args.extend(extra);
        let minted = keylatch(&args);
        assert!(minted.status.success(), "{}", String::from_utf8_lossy(&minted.stderr));
        let beside = format!("{out_s}.{suffix}");
        let verify = |sim: bool| {
            let mut a = vec![
                "evidence",
                "verify",
                "--tee",
                tee,
                "--evidence",
                out_s,
                endorsement_flag,
                &beside,
                "--report-data",
                &rd,
            ];
            if sim {
                a.extend(["--sim-pki", pki_s]);
            }
            keylatch(&a)
        };
        let claims = claims_of(&verify(true));
        assert_eq!(claims["simulated"], true);
        assert_eq!(claims["report_data"], rd);
        if tee == "snp" {
            {
                assert_eq!(claims["snp"]["measurement"], measurement);
                assert_eq!(claims["snp"]["product"], "turin");
                assert_eq!(claims["snp"]["version"], 3);
                assert_eq!(claims["snp"]["policy"]["debug"], false);
            }
        } else {
            {
                assert_eq!(claims["tdx"]["mr_td"], measurement);
                assert_eq!(claims["tdx"]["body"], "tdx15");
                assert_eq!(claims["tdx"]["quote_version"], 5);
                assert_eq!(claims["tdx"]["tcb_status"], "UpToDate");
            }
        }
        // Under the hardware roots the same evidence is refused at the chain or collateral step.
        let refused = verify(false);
        assert_eq!(refused.status.code(), Some(1), "{tee}");
        let err = String::from_utf8_lossy(&refused.stderr).into_owned();
        assert!(
            err.starts_with("error: chain: ") || err.starts_with("error: collateral: "),
            "{err}"
        );
    }
}

/// Simulated SNP evidence: a simulation PKI made in `tmp/pki`, then a report with report data
/// `01` and `extra` arguments minted under it into `tmp/r.bin` (its VCEK beside it).
struct SimSnp {
    pki: String,
    out: String,
}

impl SimSnp {
    fn mint(tmp: &Path, extra: &[&str]) -> Self {
        let pki = tmp.join("pki").display().to_string();
        let out = tmp.join("r.bin").display().to_string();
        assert!(keylatch(&["sim", "init", "--out", &pki]).status.success());
        let mut args = vec!["sim", "evidence", "--tee", "snp", "--pki", &pki];
        args.extend(["--report-data", "01", "--out", &out]);
        args.extend(extra);
        let minted = keylatch(&args);
        assert!(minted.status.success(), "{}", String::from_utf8_lossy(&minted.stderr));
        Self { pki, out }
    }

    /// `keylatch evidence verify` of the report with its VCEK under the simulation PKI, with
    /// `extra` arguments.
    fn verify(&self, extra: &[&str]) -> Output {
        let vcek = format!("{}.vcek.der", self.out);
        let mut args = vec!["evidence", "verify", "--tee", "snp", "--evidence", &self.out];
        args.extend(["--endorsement", &vcek, "--sim-pki", &self.pki]);
        args.extend(extra);
        keylatch(&args)
    }
}

#[test]
fn sim_debug_flag_sets_the_guest_debug_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = SimSnp::mint(tmp.path(), &["--debug"]);
    let claims = claims_of(&sim.verify(&[]));
    assert_eq!(claims["snp"]["policy"]["debug"], true);
    assert_eq!(claims["snp"]["policy"]["raw"], "0xb0000");
}

#[test]
fn chain_still_accepts_an_extra_intermediate_checked_against_the_pinned_ark() {
    let Some(dir) = keylatch_test_vectors::dir() else { return };
    let run = |asvk: &str| {
        let path = dir.join(asvk);
        verify_vlek(&dir, "2025-06-01T00:00:00Z", &["--chain", path.to_str().unwrap()])
    };
    assert_eq!(claims_of(&run("roots/amd/milan/asvk.pem"))["snp"]["signing_key"], "vlek");
    // An intermediate the pinned ARK did not issue is ignored, not trusted.
    assert_eq!(claims_of(&run("roots/amd/genoa/asvk.pem"))["snp"]["signing_key"], "vlek");
}

/// `--crl` with CRLs of the simulation ARK: current and revoking nothing passes; revoking the
/// VCEK fails at the chain step naming the CRL; stale fails at the collateral step.
#[test]
fn amd_crl_evidence_verify_with_crl_file() {
    use verifier::sim::SimPki;
    let tmp = tempfile::tempdir().unwrap();
    let sim = SimSnp::mint(tmp.path(), &[]);
    let pki = SimPki::from_files(|name| std::fs::read(Path::new(&sim.pki).join(name)).ok());
    let pki = pki.unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let write = |name: &str, revoked: &[&[u8]], window: (i64, i64)| {
        let path = tmp.path().join(name);
        std::fs::write(&path, pki.amd.crl(revoked, window, &mut rand_core::OsRng).unwrap())
            .unwrap();
        path.display().to_string()
    };
    let good = write("good.crl", &[], (now - 3600, now + 86_400));
    let revoked = write("revoked.crl", &[&[0]], (now - 3600, now + 86_400));
    let stale = write("stale.crl", &[], (now - 86_400, now - 3600));
    let verify = |crl: &str| sim.verify(&["--crl", crl]);
    assert_eq!(claims_of(&verify(&good))["simulated"], true);
    let err = verify(&revoked);
    assert_eq!(err.status.code(), Some(1));
    let text = String::from_utf8_lossy(&err.stderr).into_owned();
    assert!(
        text.starts_with("error: chain: VCEK certificate serial 00 is revoked by the AMD "),
        "{text}"
    );
    let err = verify(&stale);
    assert_eq!(err.status.code(), Some(1));
    let text = String::from_utf8_lossy(&err.stderr).into_owned();
    assert!(
        text.starts_with("error: collateral: AMD ") && text.contains(" CRL expired at "),
        "{text}"
    );
}

/// `--tee sgx` on dcap-qvl's SGX sample (an extra vector; skipped when absent): the status,
/// advisories, TCB date and evaluation number its expected.json gives, as a user sees them.
#[test]
fn sgx_tcb_evidence_verify_prints_the_status_and_advisories_of_the_dcap_qvl_sample() {
    let Some(dir) = keylatch_test_vectors::dir() else { return };
    let case = dir.join("sgx/dcap-qvl-sample");
    if !case.join("expected.json").is_file() {
        println!("skipped: vector case sgx/dcap-qvl-sample not found under {}", dir.display());
        return;
    }
    let expected = json_file(&case.join("expected.json"));
    let file = |key: &str| expected[key].as_str().unwrap().to_owned();
    let at = file("at");
    let (quote, collateral) = (file("evidence"), file("collateral"));
    let files = [quote.as_str(), "--collateral", collateral.as_str()];
    let claims = claims_of(&verify_case(&case, "sgx", &at, files, &[]));
    assert_eq!(claims["tee"], "sgx");
    assert_eq!(claims["simulated"], false);
    for key in ["tcb_status", "advisory_ids", "tcb_date", "tcb_evaluation_data_number"] {
        assert_eq!(claims["sgx"][key], expected[key], "{key}");
    }
    assert_eq!(claims["sgx"]["tcb_status"], "ConfigurationAndSWHardeningNeeded");
    assert_eq!(
        claims["sgx"]["advisory_ids"],
        serde_json::json!(["INTEL-SA-00289", "INTEL-SA-00615"])
    );
    assert_eq!(claims["sgx"]["quote_version"], 3);

    // The same quote checked as TDX fails at the parse step, naming the version.
    let out = verify_case(&case, "tdx", &at, files, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: parse: unsupported TDX quote version 3\n"
    );
}
