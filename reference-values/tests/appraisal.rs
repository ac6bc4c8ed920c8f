//! Appraisal of the claims of every shared real vector: accepted by a bundle built from its own
//! values, and rejected with exactly one named mismatch by bundles that differ in one field.

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing, clippy::expect_used)] // reason: tests fail loudly on purpose

mod common;

use common::{all_cases, claims_of, Case};
use reference_values::bundle::{SnpMinTcb, SnpPolicyRequirements, TdAttributeRequirements};
use reference_values::{appraise, Bundle, Mismatch, SnpReference, TdxReference};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use verifier::claims::{SnpClaims, SnpProduct, SnpSigningKey, TcbStatus, TdxClaims};
use verifier::{Claims, HexBytes};

/// The cases whose evidence verifies; the TDX v5 case fails at the TCB step, so no verifier
/// yields claims for it and it has nothing to appraise.
const VALID_CASES: [&str; 6] = [
    "coco/snp-genoa-v3",
    "snp/genoa-v5-oak",
    "snp/milan-v2-go-sev-guest",
    "snp/milan-v2-virtee",
    "snp/milan-v3-vlek",
    "tdx/v4-dcap-qvl",
];

fn at(case: &Case) -> OffsetDateTime {
    OffsetDateTime::parse(case.expected["at"].as_str().unwrap(), &Rfc3339).unwrap()
}

fn valid_cases() -> Option<Vec<Case>> {
    let dir = keylatch_test_vectors::dir()?;
    let cases: Vec<Case> =
        all_cases(&dir).into_iter().filter(|c| c.expected["expect"] == "valid").collect();
    let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, VALID_CASES);
    Some(cases)
}

fn flip<const N: usize>(v: &HexBytes<N>) -> HexBytes<N> {
    let mut out = *v;
    out.0[0] ^= 0xff;
    out
}

fn other_product(p: SnpProduct) -> SnpProduct {
    if p == SnpProduct::Turin {
        SnpProduct::Milan
    } else {
        SnpProduct::Turin
    }
}

fn matching_snp(c: &SnpClaims) -> SnpReference {
    SnpReference {
        measurements: vec![c.measurement],
        min_tcb: Some(SnpMinTcb {
            bootloader: Some(c.reported_tcb.bootloader),
            tee: Some(c.reported_tcb.tee),
            snp: Some(c.reported_tcb.snp),
            microcode: Some(c.reported_tcb.microcode),
            fmc: c.reported_tcb.fmc,
        }),
        policy: SnpPolicyRequirements {
            allow_debug: c.policy.debug,
            allow_migration_agent: c.policy.migrate_ma,
            allow_smt: c.policy.smt,
            require_single_socket: c.policy.single_socket,
        },
        max_vmpl: c.vmpl,
        min_guest_svn: Some(c.guest_svn),
        family_ids: Some(vec![c.family_id]),
        image_ids: Some(vec![c.image_id]),
        host_data: Some(vec![c.host_data]),
        id_key_digests: Some(vec![c.id_key_digest]),
        author_key_digests: Some(vec![c.author_key_digest]),
        products: Some(vec![c.product]),
        signing_keys: Some(vec![c.signing_key]),
    }
}

fn matching_tdx(c: &TdxClaims) -> TdxReference {
    TdxReference {
        mr_td: vec![c.mr_td],
        rtmr0: Some(vec![c.rtmr[0]]),
        rtmr1: Some(vec![c.rtmr[1]]),
        rtmr2: Some(vec![c.rtmr[2]]),
        rtmr3: Some(vec![c.rtmr[3]]),
        mr_config_id: Some(vec![c.mr_config_id]),
        mr_owner: Some(vec![c.mr_owner]),
        mr_owner_config: Some(vec![c.mr_owner_config]),
        mr_seam: Some(vec![c.mr_seam]),
        xfam: Some(vec![c.xfam]),
        td_attributes: TdAttributeRequirements { allow_debug: c.td_attributes.debug },
        min_tee_tcb_svn: Some(c.tee_tcb_svn),
        accepted_tcb_statuses: vec![c.tcb_status],
        accepted_advisory_ids: c.advisory_ids.clone(),
        min_tcb_evaluation_data_number: Some(c.tcb_evaluation_data_number),
        event_log: None,
    }
}

fn matching_bundle(claims: &Claims, now: OffsetDateTime) -> Bundle {
    Bundle {
        name: "vector".into(),
        version: 1,
        expires: now + Duration::days(365),
        snp: claims.snp.as_ref().map(matching_snp),
        tdx: claims.tdx.as_ref().map(matching_tdx),
    }
}

fn miss(field: &str, expected: impl Into<String>, actual: impl Into<String>) -> Mismatch {
    Mismatch { field: field.into(), expected: expected.into(), actual: actual.into() }
}

type Mutation = (Box<dyn Fn(&mut Bundle)>, Mismatch);

#[allow(clippy::too_many_lines)] // reason: one table of mutations, read top to bottom
fn snp_mutations(c: &SnpClaims, now: OffsetDateTime) -> Vec<Mutation> {
    fn snp(b: &mut Bundle) -> &mut SnpReference {
        b.snp.as_mut().unwrap()
    }
    fn tcb(b: &mut Bundle) -> &mut SnpMinTcb {
        snp(b).min_tcb.as_mut().unwrap()
    }
    let t = c.reported_tcb;
    let mut out: Vec<Mutation> = vec![
        (
            Box::new({
                let m = flip(&c.measurement);
                move |b| snp(b).measurements = vec![m]
            }),
            miss("snp.measurement", flip(&c.measurement).to_hex(), c.measurement.to_hex()),
        ),
        (
            Box::new(move |b| tcb(b).bootloader = Some(t.bootloader + 1)),
            miss(
                "snp.reported_tcb.bootloader",
                format!(">= {}", t.bootloader + 1),
                t.bootloader.to_string(),
            ),
        ),
        (
            Box::new(move |b| tcb(b).tee = Some(t.tee + 1)),
            miss("snp.reported_tcb.tee", format!(">= {}", t.tee + 1), t.tee.to_string()),
        ),
        (
            Box::new(move |b| tcb(b).snp = Some(t.snp + 1)),
            miss("snp.reported_tcb.snp", format!(">= {}", t.snp + 1), t.snp.to_string()),
        ),
        (
            Box::new(move |b| tcb(b).microcode = Some(t.microcode + 1)),
            miss(
                "snp.reported_tcb.microcode",
                format!(">= {}", t.microcode + 1),
                t.microcode.to_string(),
            ),
        ),
        (Box::new(|b| tcb(b).fmc = Some(1)), miss("snp.reported_tcb.fmc", ">= 1", "absent")),
        (
            Box::new(|b| snp(b).policy.require_single_socket = true),
            miss("snp.policy.single_socket", "true", "false"),
        ),
        (
            Box::new({
                let svn = c.guest_svn + 1;
                move |b| snp(b).min_guest_svn = Some(svn)
            }),
            miss("snp.guest_svn", format!(">= {}", c.guest_svn + 1), c.guest_svn.to_string()),
        ),
        (
            Box::new({
                let v = flip(&c.family_id);
                move |b| snp(b).family_ids = Some(vec![v])
            }),
            miss("snp.family_id", flip(&c.family_id).to_hex(), c.family_id.to_hex()),
        ),
        (
            Box::new({
                let v = flip(&c.image_id);
                move |b| snp(b).image_ids = Some(vec![v])
            }),
            miss("snp.image_id", flip(&c.image_id).to_hex(), c.image_id.to_hex()),
        ),
        (
            Box::new({
                let v = flip(&c.host_data);
                move |b| snp(b).host_data = Some(vec![v])
            }),
            miss("snp.host_data", flip(&c.host_data).to_hex(), c.host_data.to_hex()),
        ),
        (
            Box::new({
                let v = flip(&c.id_key_digest);
                move |b| snp(b).id_key_digests = Some(vec![v])
            }),
            miss("snp.id_key_digest", flip(&c.id_key_digest).to_hex(), c.id_key_digest.to_hex()),
        ),
        (
            Box::new({
                let v = flip(&c.author_key_digest);
                move |b| snp(b).author_key_digests = Some(vec![v])
            }),
            miss(
                "snp.author_key_digest",
                flip(&c.author_key_digest).to_hex(),
                c.author_key_digest.to_hex(),
            ),
        ),
        (
            Box::new({
                let p = other_product(c.product);
                move |b| snp(b).products = Some(vec![p])
            }),
            miss("snp.product", other_product(c.product).as_str(), c.product.as_str()),
        ),
        (
            Box::new({
                let k = match c.signing_key {
                    SnpSigningKey::Vcek => SnpSigningKey::Vlek,
                    SnpSigningKey::Vlek => SnpSigningKey::Vcek,
                };
                move |b| snp(b).signing_keys = Some(vec![k])
            }),
            match c.signing_key {
                SnpSigningKey::Vcek => miss("snp.signing_key", "vlek", "vcek"),
                SnpSigningKey::Vlek => miss("snp.signing_key", "vcek", "vlek"),
            },
        ),
        (
            Box::new(move |b| b.expires = now),
            miss(
                "bundle.expires",
                format!("later than {}", now.format(&Rfc3339).unwrap()),
                now.format(&Rfc3339).unwrap(),
            ),
        ),
        (
            Box::new(|b| {
                b.tdx = Some(TdxReference {
                    mr_td: vec![HexBytes::default()],
                    ..matching_tdx_default()
                });
                b.snp = None;
            }),
            miss("tee", "tdx", "snp"),
        ),
    ];
    if c.policy.debug {
        out.push((
            Box::new(|b| snp(b).policy.allow_debug = false),
            miss("snp.policy.debug", "false", "true"),
        ));
    }
    if c.policy.smt {
        out.push((
            Box::new(|b| snp(b).policy.allow_smt = false),
            miss("snp.policy.smt", "false", "true"),
        ));
    }
    if c.vmpl > 0 {
        let max = c.vmpl - 1;
        out.push((
            Box::new(move |b| snp(b).max_vmpl = max),
            miss("snp.vmpl", format!("<= {max}"), c.vmpl.to_string()),
        ));
    }
    out
}

fn matching_tdx_default() -> TdxReference {
    TdxReference {
        mr_td: Vec::new(),
        rtmr0: None,
        rtmr1: None,
        rtmr2: None,
        rtmr3: None,
        mr_config_id: None,
        mr_owner: None,
        mr_owner_config: None,
        mr_seam: None,
        xfam: None,
        td_attributes: TdAttributeRequirements::default(),
        min_tee_tcb_svn: None,
        accepted_tcb_statuses: vec![TcbStatus::UpToDate],
        accepted_advisory_ids: Vec::new(),
        min_tcb_evaluation_data_number: None,
        event_log: None,
    }
}

fn tdx_mutations(c: &TdxClaims, now: OffsetDateTime) -> Vec<Mutation> {
    fn tdx(b: &mut Bundle) -> &mut TdxReference {
        b.tdx.as_mut().unwrap()
    }
    let mut out: Vec<Mutation> = Vec::new();
    let m = |field: &str, v: &HexBytes<48>| miss(field, flip(v).to_hex(), v.to_hex());
    out.push((
        Box::new({
            let v = flip(&c.mr_td);
            move |b| tdx(b).mr_td = vec![v]
        }),
        m("tdx.mr_td", &c.mr_td),
    ));
    for i in 0..4 {
        let v = flip(&c.rtmr[i]);
        out.push((
            Box::new(move |b| {
                let slot = match i {
                    0 => &mut tdx(b).rtmr0,
                    1 => &mut tdx(b).rtmr1,
                    2 => &mut tdx(b).rtmr2,
                    _ => &mut tdx(b).rtmr3,
                };
                *slot = Some(vec![v]);
            }),
            m(&format!("tdx.rtmr[{i}]"), &c.rtmr[i]),
        ));
    }
    let v = flip(&c.mr_config_id);
    out.push((
        Box::new(move |b| tdx(b).mr_config_id = Some(vec![v])),
        m("tdx.mr_config_id", &c.mr_config_id),
    ));
    let v = flip(&c.mr_owner);
    out.push((Box::new(move |b| tdx(b).mr_owner = Some(vec![v])), m("tdx.mr_owner", &c.mr_owner)));
    let v = flip(&c.mr_owner_config);
    out.push((
        Box::new(move |b| tdx(b).mr_owner_config = Some(vec![v])),
        m("tdx.mr_owner_config", &c.mr_owner_config),
    ));
    let v = flip(&c.mr_seam);
    out.push((Box::new(move |b| tdx(b).mr_seam = Some(vec![v])), m("tdx.mr_seam", &c.mr_seam)));
    let v = flip(&c.xfam);
    out.push((
        Box::new(move |b| tdx(b).xfam = Some(vec![v])),
        miss("tdx.xfam", flip(&c.xfam).to_hex(), c.xfam.to_hex()),
    ));
    let mut svn = c.tee_tcb_svn;
    svn.0[0] += 1;
    out.push((
        Box::new(move |b| tdx(b).min_tee_tcb_svn = Some(svn)),
        miss("tdx.tee_tcb_svn", format!(">= {svn} (each byte)"), c.tee_tcb_svn.to_hex()),
    ));
    assert_eq!(c.tcb_status, TcbStatus::UpToDate);
    out.push((
        Box::new(|b| {
            tdx(b).accepted_tcb_statuses = vec![TcbStatus::SWHardeningNeeded, TcbStatus::OutOfDate];
        }),
        miss("tdx.tcb_status", "one of [SWHardeningNeeded, OutOfDate]", "UpToDate"),
    ));
    out.push((
        Box::new(move |b| b.expires = now - Duration::seconds(1)),
        miss(
            "bundle.expires",
            format!("later than {}", now.format(&Rfc3339).unwrap()),
            (now - Duration::seconds(1)).format(&Rfc3339).unwrap(),
        ),
    ));
    out.push((
        Box::new(|b| {
            b.tdx = None;
            b.snp = Some(SnpReference {
                measurements: vec![HexBytes::default()],
                min_tcb: None,
                policy: SnpPolicyRequirements::default(),
                max_vmpl: 0,
                min_guest_svn: None,
                family_ids: None,
                image_ids: None,
                host_data: None,
                id_key_digests: None,
                author_key_digests: None,
                products: None,
                signing_keys: None,
            });
        }),
        miss("tee", "snp", "tdx"),
    ));
    out
}

#[test]
fn every_valid_vector_is_accepted_by_a_bundle_of_its_own_values() {
    let Some(cases) = valid_cases() else { return };
    for case in &cases {
        let claims = claims_of(case);
        let now = at(case);
        let bundle = matching_bundle(&claims, now);
        bundle.validate().unwrap();
        let appraisal = appraise(&claims, &bundle, now);
        assert_eq!(appraisal.mismatches, Vec::<Mismatch>::new(), "{}", case.name);
        assert!(appraisal.is_accepted());
        assert_eq!((appraisal.bundle.as_str(), appraisal.version), ("vector", 1));
    }
}

#[test]
fn each_single_field_difference_is_reported_as_exactly_that_mismatch() {
    let Some(cases) = valid_cases() else { return };
    let mut checked = 0;
    for case in &cases {
        let claims = claims_of(case);
        let now = at(case);
        let mutations = match (&claims.snp, &claims.tdx) {
            (Some(snp), _) => snp_mutations(snp, now),
            (_, Some(tdx)) => tdx_mutations(tdx, now),
            _ => unreachable!(),
        };
        for (mutate, expected) in mutations {
            let mut bundle = matching_bundle(&claims, now);
            mutate(&mut bundle);
            let appraisal = appraise(&claims, &bundle, now);
            assert_eq!(appraisal.mismatches, vec![expected], "{}", case.name);
            checked += 1;
        }
    }
    // 18 mutations per SNP case, plus debug (go-sev-guest) and VMPL (vlek), plus 14 for TDX.
    assert_eq!(checked, 5 * 18 + 2 + 14);
}

#[test]
fn rejects_debug_policy_vector_with_default_bundle() {
    let Some(cases) = valid_cases() else { return };
    let case = cases.iter().find(|c| c.name == "snp/milan-v2-go-sev-guest").unwrap();
    let claims = claims_of(case);
    assert_eq!(claims.snp.as_ref().unwrap().policy.raw, 0xb0000);
    let text = format!(
        "name = \"default\"\nversion = 1\nexpires = 2030-01-01T00:00:00Z\n[snp]\nmeasurements = [\"{}\"]\n",
        claims.snp.as_ref().unwrap().measurement
    );
    let bundle = Bundle::from_toml(&text).unwrap();
    let appraisal = appraise(&claims, &bundle, at(case));
    assert!(!appraisal.is_accepted());
    assert_eq!(appraisal.mismatches, vec![miss("snp.policy.debug", "false", "true")]);
}

#[test]
fn widening_changes_keep_a_vector_accepted() {
    let Some(cases) = valid_cases() else { return };
    let case = cases.iter().find(|c| c.name == "snp/milan-v2-virtee").unwrap();
    let claims = claims_of(case);
    let now = at(case);
    let mut bundle = matching_bundle(&claims, now);
    let snp = bundle.snp.as_mut().unwrap();
    snp.measurements.insert(0, HexBytes([7; 48]));
    snp.policy.allow_debug = true;
    snp.policy.allow_migration_agent = true;
    snp.max_vmpl = 3;
    snp.min_tcb = None;
    snp.products = Some(vec![SnpProduct::Turin, SnpProduct::Milan]);
    assert!(appraise(&claims, &bundle, now).is_accepted());
}

#[test]
fn reports_every_mismatch_not_only_the_first() {
    let Some(cases) = valid_cases() else { return };
    let case = cases.iter().find(|c| c.name == "snp/milan-v3-vlek").unwrap();
    let claims = claims_of(case);
    let now = at(case);
    let c = claims.snp.as_ref().unwrap();
    let mut bundle = matching_bundle(&claims, now);
    bundle.expires = now - Duration::days(1);
    let snp = bundle.snp.as_mut().unwrap();
    snp.measurements = vec![HexBytes([1; 48]), HexBytes([2; 48])];
    snp.min_tcb = Some(SnpMinTcb { microcode: Some(220), ..SnpMinTcb::default() });
    snp.max_vmpl = 0;
    snp.signing_keys = Some(vec![SnpSigningKey::Vcek]);
    let appraisal = appraise(&claims, &bundle, now);
    assert_eq!(
        appraisal.mismatches,
        vec![
            miss("bundle.expires", "later than 2025-06-01T00:00:00Z", "2025-05-31T00:00:00Z"),
            miss(
                "snp.measurement",
                format!("one of [{}, {}]", "01".repeat(48), "02".repeat(48)),
                c.measurement.to_hex()
            ),
            miss("snp.reported_tcb.microcode", ">= 220", "217"),
            miss("snp.vmpl", "<= 0", "1"),
            miss("snp.signing_key", "vcek", "vlek"),
        ]
    );
}

#[test]
fn rejects_advisory_not_listed_even_when_its_status_is_accepted() {
    let Some(cases) = valid_cases() else { return };
    let case = cases.iter().find(|c| c.name == "tdx/v4-dcap-qvl").unwrap();
    let mut claims = claims_of(case);
    let now = at(case);
    let mut bundle = matching_bundle(&claims, now);
    let tdx = claims.tdx.as_mut().unwrap();
    tdx.tcb_status = TcbStatus::SWHardeningNeeded;
    tdx.advisory_ids = vec!["INTEL-SA-00615".into(), "INTEL-SA-00837".into()];
    let reference = bundle.tdx.as_mut().unwrap();
    reference.accepted_tcb_statuses = vec![TcbStatus::UpToDate, TcbStatus::SWHardeningNeeded];
    reference.accepted_advisory_ids = vec!["INTEL-SA-00615".into()];
    assert_eq!(
        appraise(&claims, &bundle, now).mismatches,
        vec![miss("tdx.advisory_ids", "only [INTEL-SA-00615]", "[INTEL-SA-00615, INTEL-SA-00837]")]
    );
    bundle.tdx.as_mut().unwrap().accepted_advisory_ids.push("INTEL-SA-00837".into());
    assert!(appraise(&claims, &bundle, now).is_accepted());
}

#[test]
fn rejects_tdx_debug_attribute_unless_allowed() {
    let Some(cases) = valid_cases() else { return };
    let case = cases.iter().find(|c| c.name == "tdx/v4-dcap-qvl").unwrap();
    let mut claims = claims_of(case);
    let now = at(case);
    claims.tdx.as_mut().unwrap().td_attributes.debug = true;
    let mut bundle = matching_bundle(&claims, now);
    bundle.tdx.as_mut().unwrap().td_attributes.allow_debug = false;
    assert_eq!(
        appraise(&claims, &bundle, now).mismatches,
        vec![miss("tdx.td_attributes.debug", "false", "true")]
    );
}

#[test]
fn rejects_sample_tee_and_claims_missing_their_tee_section() {
    let Some(cases) = valid_cases() else { return };
    let case = cases.iter().find(|c| c.name == "snp/genoa-v5-oak").unwrap();
    let mut claims = claims_of(case);
    let now = at(case);
    let bundle = matching_bundle(&claims, now);
    claims.snp = None;
    assert_eq!(appraise(&claims, &bundle, now).mismatches, vec![miss("snp", "present", "absent")]);
    claims.tee = verifier::Tee::Sample;
    assert_eq!(appraise(&claims, &bundle, now).mismatches, vec![miss("tee", "snp", "sample")]);
}

#[test]
fn rejects_tcb_evaluation_number_below_the_minimum_naming_it() {
    let Some(cases) = valid_cases() else { return };
    let case = cases.iter().find(|c| c.name == "tdx/v4-dcap-qvl").unwrap();
    let mut claims = claims_of(case);
    let now = at(case);
    claims.tdx.as_mut().unwrap().tcb_evaluation_data_number = 17;
    let mut bundle = matching_bundle(&claims, now);
    bundle.tdx.as_mut().unwrap().min_tcb_evaluation_data_number = Some(18);
    assert_eq!(
        appraise(&claims, &bundle, now).mismatches,
        vec![miss("tdx.tcb_evaluation_data_number", ">= 18", "17")]
    );
}

#[test]
fn ccel_event_log_expectations_name_kernel_cmdline_and_a_missing_log() {
    use reference_values::EventLogReference;
    use verifier::sim::ccel::{event_log, rtmrs, SimEvent, SIM_CMDLINE};
    let Some(cases) = valid_cases() else { return };
    let case = cases.iter().find(|c| c.name == "tdx/v4-dcap-qvl").unwrap();
    let mut claims = claims_of(case);
    let now = at(case);
    let mut bundle = matching_bundle(&claims, now);
    let want = EventLogReference {
        kernel_sha384: Some(vec![HexBytes([0x11; 48])]),
        cmdline: Some(vec![SIM_CMDLINE.to_owned()]),
        secure_boot: Some(true),
        ..EventLogReference::default()
    };
    bundle.tdx.as_mut().unwrap().event_log = Some(want);
    assert_eq!(
        appraise(&claims, &bundle, now).mismatches,
        vec![miss("tdx.event_log", "a replayed event log (cc_eventlog)", "absent")]
    );
    let log = event_log(&SimEvent::direct_grub_boot(), 0);
    let measured = verifier::tdx::eventlog::check_event_log(&log, &rtmrs(&log).unwrap()).unwrap();
    let kernel = measured.kernel_sha384.unwrap();
    claims.tdx.as_mut().unwrap().event_log = Some(measured);
    assert_eq!(
        appraise(&claims, &bundle, now).mismatches,
        vec![miss("tdx.event_log.kernel_sha384", HexBytes([0x11; 48]).to_hex(), kernel.to_hex())]
    );
    bundle.tdx.as_mut().unwrap().event_log.as_mut().unwrap().kernel_sha384 = Some(vec![kernel]);
    assert!(appraise(&claims, &bundle, now).is_accepted());
}
