//! Test support: the shared vectors' cases and `Claims` built from their `expected.json` (the
//! SNP/TDX verifiers that produce real claims are separate; here the vectors' recorded field
//! values stand in for their output).
#![allow(dead_code)] // reason: each test binary uses a different subset of these helpers
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing, clippy::expect_used)] // reason: tests fail loudly on purpose

use serde_json::Value;
use verifier::claims::{
    SnpClaims, SnpCpuid, SnpFirmwareVersion, SnpPlatformInfo, SnpPolicy, SnpProduct, SnpSigningKey,
    SnpTcb, TcbStatus, TdAttributes, TdxBody, TdxClaims,
};
use verifier::{Claims, HexBytes, Tee};

/// One vector case: its folder name (`snp/milan-v2-virtee`) and parsed `expected.json`.
pub struct Case {
    pub name: String,
    pub expected: Value,
}

/// Every case under `snp/`, `tdx/` and `coco/`, sorted by name.
pub fn all_cases(dir: &std::path::Path) -> Vec<Case> {
    let mut cases = Vec::new();
    for group in ["snp", "tdx", "coco"] {
        let Ok(entries) = std::fs::read_dir(dir.join(group)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let file = path.join("expected.json");
            if file.is_file() {
                let text = std::fs::read_to_string(&file).unwrap();
                cases.push(Case {
                    name: format!("{group}/{}", path.file_name().unwrap().to_string_lossy()),
                    expected: serde_json::from_str(&text).unwrap(),
                });
            }
        }
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    cases
}

fn hex<const N: usize>(v: &Value) -> HexBytes<N> {
    HexBytes::from_hex(v.as_str().unwrap()).unwrap()
}

fn num<T: TryFrom<u64>>(v: &Value) -> T
where
    T::Error: std::fmt::Debug,
{
    T::try_from(v.as_u64().unwrap()).unwrap()
}

fn tcb(v: &Value) -> SnpTcb {
    SnpTcb {
        bootloader: num(&v["bootloader"]),
        tee: num(&v["tee"]),
        snp: num(&v["snp"]),
        microcode: num(&v["microcode"]),
        fmc: v.get("fmc").map(num),
    }
}

/// Claims as a verifier reports them for this case.
pub fn claims_of(case: &Case) -> Claims {
    let e = &case.expected;
    let c = &e["claims"];
    match e["tee"].as_str().unwrap() {
        "snp" => Claims {
            tee: Tee::Snp,
            simulated: false,
            report_data: hex(&c["report_data"]),
            evidence_sha256: HexBytes::default(),
            snp: Some(snp_claims(e)),
            tdx: None,
            azure: None,
        },
        "tdx" => Claims {
            tee: Tee::Tdx,
            simulated: false,
            report_data: hex(&c["report_data"]),
            evidence_sha256: HexBytes::default(),
            snp: None,
            tdx: Some(tdx_claims(e)),
            azure: None,
        },
        other => panic!("unknown tee {other}"),
    }
}

fn snp_claims(e: &Value) -> SnpClaims {
    let c = &e["claims"];
    let raw =
        u64::from_str_radix(c["policy"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
    let bit = |n: u32| raw & (1 << n) != 0;
    let policy = SnpPolicy {
        raw,
        abi_minor: (raw & 0xff) as u8,
        abi_major: ((raw >> 8) & 0xff) as u8,
        smt: bit(16),
        migrate_ma: bit(18),
        debug: bit(19),
        single_socket: bit(20),
        cxl_allow: bit(21),
        mem_aes_256_xts: bit(22),
        rapl_dis: bit(23),
        ciphertext_hiding: bit(24),
        page_swap_disable: bit(25),
    };
    // The decoded bits agree with the vector's own reading of them.
    assert_eq!(policy.debug, c["policy_debug"].as_bool().unwrap());
    assert_eq!(policy.smt, c["policy_smt"].as_bool().unwrap());
    assert_eq!(policy.migrate_ma, c["policy_migrate_ma"].as_bool().unwrap());
    let chip_id: HexBytes<64> = hex(&c["chip_id"]);
    let version = SnpFirmwareVersion { major: 0, minor: 0, build: 0 };
    SnpClaims {
        version: num(&c["version"]),
        product: SnpProduct::from_name(e["product"].as_str().unwrap()).unwrap(),
        signing_key: match c["signing_key"].as_str().unwrap() {
            "vcek" => SnpSigningKey::Vcek,
            "vlek" => SnpSigningKey::Vlek,
            other => panic!("unknown signing key {other}"),
        },
        guest_svn: num(&c["guest_svn"]),
        policy,
        family_id: hex(&c["family_id"]),
        image_id: hex(&c["image_id"]),
        vmpl: num(&c["vmpl"]),
        signature_algo: 1,
        current_tcb: tcb(&c["current_tcb"]),
        platform_info: SnpPlatformInfo {
            raw: 0,
            smt_enabled: false,
            tsme_enabled: false,
            ecc_enabled: false,
            rapl_disabled: false,
            ciphertext_hiding_enabled: false,
            alias_check_complete: false,
            tio_enabled: false,
        },
        author_key_en: false,
        mask_chip_key: chip_id.is_zero(),
        measurement: hex(&c["measurement"]),
        host_data: hex(&c["host_data"]),
        id_key_digest: hex(&c["id_key_digest"]),
        author_key_digest: hex(&c["author_key_digest"]),
        report_id: HexBytes::default(),
        report_id_ma: HexBytes::default(),
        reported_tcb: tcb(&c["reported_tcb"]),
        cpuid: c.get("cpuid").map(|v| SnpCpuid {
            family: num(&v["family"]),
            model: num(&v["model"]),
            stepping: num(&v["stepping"]),
        }),
        chip_id,
        committed_tcb: tcb(&c["current_tcb"]),
        current_version: version,
        committed_version: version,
        launch_tcb: tcb(&c["current_tcb"]),
        launch_mit_vector: None,
        current_mit_vector: None,
    }
}

fn tdx_claims(e: &Value) -> TdxClaims {
    let c = &e["claims"];
    let attributes: HexBytes<8> = hex(&c["td_attributes"]);
    let bits = u64::from_le_bytes(attributes.0);
    let rtmr = c["rtmr"].as_array().unwrap();
    TdxClaims {
        quote_version: num(&c["quote_version"]),
        body: match c["body"].as_str().unwrap() {
            "tdx10" => TdxBody::Tdx10,
            "tdx15" => TdxBody::Tdx15,
            other => panic!("unknown body {other}"),
        },
        tee_tcb_svn: hex(&c["tee_tcb_svn"]),
        mr_seam: hex(&c["mr_seam"]),
        mr_signer_seam: HexBytes::default(),
        seam_attributes: HexBytes::default(),
        td_attributes: TdAttributes {
            raw: attributes,
            debug: bits & 1 != 0,
            sept_ve_disable: bits & (1 << 28) != 0,
            pks: bits & (1 << 30) != 0,
            kl: bits & (1 << 31) != 0,
            perfmon: bits & (1 << 63) != 0,
        },
        xfam: hex(&c["xfam"]),
        mr_td: hex(&c["mr_td"]),
        mr_config_id: hex(&c["mr_config_id"]),
        mr_owner: hex(&c["mr_owner"]),
        mr_owner_config: hex(&c["mr_owner_config"]),
        rtmr: [hex(&rtmr[0]), hex(&rtmr[1]), hex(&rtmr[2]), hex(&rtmr[3])],
        tee_tcb_svn2: c.get("tee_tcb_svn2").map(hex),
        mr_service_td: None,
        tcb_status: TcbStatus::from_name(e["tcb_status"].as_str().unwrap()).unwrap(),
        advisory_ids: e["advisory_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect(),
        fmspc: HexBytes::default(),
        pce_svn: 0,
        // Not in every expected.json yet: absent reads as "no date" and evaluation number 0.
        tcb_date: e.get("tcb_date").and_then(Value::as_str).unwrap_or_default().to_owned(),
        tcb_evaluation_data_number: e
            .get("tcb_evaluation_data_number")
            .and_then(Value::as_u64)
            .map_or(0, |n| u32::try_from(n).unwrap()),
        event_log: None,
    }
}
