//! Shared helpers for the SNP integration tests: reading vector files, expected.json, and
//! claims checks against it.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)] // reason: tests fail loudly on purpose
#![allow(dead_code)] // reason: each test binary uses a different subset of these helpers

use serde_json::Value;
use verifier::claims::{SnpProduct, SnpSigningKey};
use verifier::Claims;

pub fn read(dir: &std::path::Path, rel: &str) -> Vec<u8> {
    std::fs::read(dir.join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

pub fn expected(dir: &std::path::Path, case: &str) -> Value {
    serde_json::from_slice(&read(dir, &format!("{case}/expected.json"))).unwrap()
}

pub fn at(expected: &Value) -> verifier::Now {
    time::OffsetDateTime::parse(
        expected["at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
}

pub fn product(expected: &Value) -> SnpProduct {
    SnpProduct::from_name(expected["product"].as_str().unwrap()).unwrap()
}

/// The real SNP report cases: (case dir, report file, signer file).
pub const REAL_CASES: [(&str, &str); 4] = [
    ("snp/milan-v2-virtee", "vcek.der"),
    ("snp/milan-v2-go-sev-guest", "vcek.der"),
    ("snp/milan-v3-vlek", "vlek.der"),
    ("snp/genoa-v5-oak", "vcek.der"),
];

/// AMD's production anchors as shipped (ARKs pinned; ASKs and ASVKs built in).
pub fn production_anchors() -> verifier::snp::SnpTrustAnchors {
    verifier::snp::SnpTrustAnchors::production().unwrap()
}

fn hex_of(v: &Value) -> String {
    serde_json::to_value(v).unwrap().as_str().unwrap().to_owned()
}

/// Asserts every field of expected.json's `claims` against the verified claims.
pub fn assert_claims(claims: &Claims, expected: &Value) {
    let e = &expected["claims"];
    let snp = claims.snp.as_ref().unwrap();
    assert_eq!(snp.product, product(expected));
    assert_eq!(u64::from(snp.version), e["version"].as_u64().unwrap());
    assert_eq!(u64::from(snp.guest_svn), e["guest_svn"].as_u64().unwrap());
    assert_eq!(format!("{:#x}", snp.policy.raw), e["policy"].as_str().unwrap());
    assert_eq!(snp.policy.debug, e["policy_debug"].as_bool().unwrap());
    assert_eq!(snp.policy.smt, e["policy_smt"].as_bool().unwrap());
    assert_eq!(snp.policy.migrate_ma, e["policy_migrate_ma"].as_bool().unwrap());
    assert_eq!(snp.family_id.to_hex(), hex_of(&e["family_id"]));
    assert_eq!(snp.image_id.to_hex(), hex_of(&e["image_id"]));
    assert_eq!(u64::from(snp.vmpl), e["vmpl"].as_u64().unwrap());
    let kind = match e["signing_key"].as_str().unwrap() {
        "vcek" => SnpSigningKey::Vcek,
        "vlek" => SnpSigningKey::Vlek,
        other => panic!("signing key {other}"),
    };
    assert_eq!(snp.signing_key, kind);
    assert_eq!(claims.report_data.to_hex(), hex_of(&e["report_data"]));
    assert_eq!(snp.measurement.to_hex(), hex_of(&e["measurement"]));
    assert_eq!(snp.host_data.to_hex(), hex_of(&e["host_data"]));
    assert_eq!(snp.id_key_digest.to_hex(), hex_of(&e["id_key_digest"]));
    assert_eq!(snp.author_key_digest.to_hex(), hex_of(&e["author_key_digest"]));
    assert_eq!(snp.chip_id.to_hex(), hex_of(&e["chip_id"]));
    for (name, tcb) in [("reported_tcb", snp.reported_tcb), ("current_tcb", snp.current_tcb)] {
        let t = &e[name];
        assert_eq!(u64::from(tcb.bootloader), t["bootloader"].as_u64().unwrap(), "{name}");
        assert_eq!(u64::from(tcb.tee), t["tee"].as_u64().unwrap(), "{name}");
        assert_eq!(u64::from(tcb.snp), t["snp"].as_u64().unwrap(), "{name}");
        assert_eq!(u64::from(tcb.microcode), t["microcode"].as_u64().unwrap(), "{name}");
        assert_eq!(tcb.fmc.map(u64::from), t["fmc"].as_u64(), "{name}");
    }
    match e.get("cpuid") {
        Some(c) => {
            let cpuid = snp.cpuid.unwrap();
            assert_eq!(u64::from(cpuid.family), c["family"].as_u64().unwrap());
            assert_eq!(u64::from(cpuid.model), c["model"].as_u64().unwrap());
            assert_eq!(u64::from(cpuid.stepping), c["stepping"].as_u64().unwrap());
        }
        None => assert_eq!(snp.cpuid, None),
    }
    assert!(!claims.simulated);
    assert_eq!(claims.tee, verifier::Tee::Snp);
}

/// One simulation PKI per test binary (RSA key generation is the slow part).
pub fn sim_pki() -> &'static verifier::sim::snp::SimAmdPki {
    static PKI: std::sync::OnceLock<verifier::sim::snp::SimAmdPki> = std::sync::OnceLock::new();
    PKI.get_or_init(|| verifier::sim::snp::SimAmdPki::generate(&mut rand_core::OsRng).unwrap())
}

/// 2030-01-01T00:00:00Z: inside the sim certificates' default validity.
pub fn sim_now() -> verifier::Now {
    time::macros::datetime!(2030-01-01 0:00 UTC)
}
