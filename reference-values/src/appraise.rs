//! Appraisal: comparing verified claims with a bundle's expectations. Every constraint is
//! evaluated and every miss is reported with the claim path it concerns, what the bundle expected
//! and what the evidence showed, so a denied VM (and its operator) learns exactly why. There is
//! no bare "deny": an empty mismatch list is the only way to be accepted.

use std::fmt::Display;

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use verifier::claims::{EventLogClaims, SnpClaims, SnpSigningKey, SnpTcb, TcbStatus, TdxClaims};
use verifier::{Claims, HexBytes, Tee};

use crate::bundle::{Bundle, EventLogReference, SnpMinTcb, SnpReference, TdxReference};

/// One expectation the evidence did not meet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatch {
    /// Claim path, e.g. `snp.measurement`, `snp.reported_tcb.microcode`, `tdx.rtmr[2]`.
    pub field: String,
    /// What the bundle requires, e.g. `>= 115` or `one of [..]`.
    pub expected: String,
    /// What the evidence shows.
    pub actual: String,
}

/// The outcome of appraising claims against one bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appraisal {
    /// The bundle's name and version, for audit.
    pub bundle: String,
    pub version: u64,
    /// Every expectation missed; empty means accepted.
    pub mismatches: Vec<Mismatch>,
}

impl Appraisal {
    #[must_use]
    pub fn is_accepted(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// Appraises `claims` against `bundle` at `now`. Pass a bundle from a
/// [`VerifiedBundle`](crate::VerifiedBundle): this function does not check signatures.
#[must_use]
pub fn appraise(claims: &Claims, bundle: &Bundle, now: OffsetDateTime) -> Appraisal {
    let mut out = Findings(Vec::new());
    if now >= bundle.expires {
        out.miss("bundle.expires", format!("later than {}", rfc3339(now)), rfc3339(bundle.expires));
    }
    match (claims.tee, &bundle.snp, &bundle.tdx) {
        (Tee::Snp, Some(reference), _) => match &claims.snp {
            Some(snp) => appraise_snp(&mut out, snp, reference),
            None => out.miss("snp", "present", "absent"),
        },
        (Tee::Tdx, _, Some(reference)) => match &claims.tdx {
            Some(tdx) => appraise_tdx(&mut out, tdx, reference),
            None => out.miss("tdx", "present", "absent"),
        },
        (tee, _, _) => {
            let tees: Vec<&str> = bundle.tees().into_iter().map(Tee::as_str).collect();
            out.miss("tee", one_of_text(&tees, |t| (*t).to_owned()), tee.as_str());
        }
    }
    Appraisal { bundle: bundle.name.clone(), version: bundle.version, mismatches: out.0 }
}

fn appraise_snp(out: &mut Findings, c: &SnpClaims, r: &SnpReference) {
    out.one_of("snp.measurement", Some(&r.measurements), &c.measurement, HexBytes::to_hex);
    appraise_snp_tcb(out, c.reported_tcb, r.min_tcb.unwrap_or_default());

    let p = &r.policy;
    if c.policy.debug && !p.allow_debug {
        out.miss("snp.policy.debug", "false", "true");
    }
    if c.policy.migrate_ma && !p.allow_migration_agent {
        out.miss("snp.policy.migrate_ma", "false", "true");
    }
    if c.policy.smt && !p.allow_smt {
        out.miss("snp.policy.smt", "false", "true");
    }
    if !c.policy.single_socket && p.require_single_socket {
        out.miss("snp.policy.single_socket", "true", "false");
    }
    if c.vmpl > r.max_vmpl {
        out.miss("snp.vmpl", format!("<= {}", r.max_vmpl), c.vmpl.to_string());
    }
    out.at_least("snp.guest_svn", r.min_guest_svn, c.guest_svn);
    out.one_of("snp.family_id", r.family_ids.as_deref(), &c.family_id, HexBytes::to_hex);
    out.one_of("snp.image_id", r.image_ids.as_deref(), &c.image_id, HexBytes::to_hex);
    out.one_of("snp.host_data", r.host_data.as_deref(), &c.host_data, HexBytes::to_hex);
    out.one_of(
        "snp.id_key_digest",
        r.id_key_digests.as_deref(),
        &c.id_key_digest,
        HexBytes::to_hex,
    );
    out.one_of(
        "snp.author_key_digest",
        r.author_key_digests.as_deref(),
        &c.author_key_digest,
        HexBytes::to_hex,
    );
    out.one_of("snp.product", r.products.as_deref(), &c.product, |p| p.as_str().to_owned());
    out.one_of("snp.signing_key", r.signing_keys.as_deref(), &c.signing_key, |k| {
        match k {
            SnpSigningKey::Vcek => "vcek",
            SnpSigningKey::Vlek => "vlek",
        }
        .to_owned()
    });
}

fn appraise_snp_tcb(out: &mut Findings, tcb: SnpTcb, min: SnpMinTcb) {
    out.at_least("snp.reported_tcb.bootloader", min.bootloader, tcb.bootloader);
    out.at_least("snp.reported_tcb.tee", min.tee, tcb.tee);
    out.at_least("snp.reported_tcb.snp", min.snp, tcb.snp);
    out.at_least("snp.reported_tcb.microcode", min.microcode, tcb.microcode);
    if let Some(min_fmc) = min.fmc {
        match tcb.fmc {
            Some(fmc) => out.at_least("snp.reported_tcb.fmc", Some(min_fmc), fmc),
            None => out.miss("snp.reported_tcb.fmc", format!(">= {min_fmc}"), "absent"),
        }
    }
}

fn appraise_tdx(out: &mut Findings, c: &TdxClaims, r: &TdxReference) {
    let hex48 = HexBytes::<48>::to_hex;
    out.one_of("tdx.mr_td", Some(&r.mr_td), &c.mr_td, hex48);
    let rtmrs = [&r.rtmr0, &r.rtmr1, &r.rtmr2, &r.rtmr3];
    for (i, (allowed, actual)) in rtmrs.into_iter().zip(&c.rtmr).enumerate() {
        out.one_of(&format!("tdx.rtmr[{i}]"), allowed.as_deref(), actual, hex48);
    }
    out.one_of("tdx.mr_config_id", r.mr_config_id.as_deref(), &c.mr_config_id, hex48);
    out.one_of("tdx.mr_owner", r.mr_owner.as_deref(), &c.mr_owner, hex48);
    out.one_of("tdx.mr_owner_config", r.mr_owner_config.as_deref(), &c.mr_owner_config, hex48);
    out.one_of("tdx.mr_seam", r.mr_seam.as_deref(), &c.mr_seam, hex48);
    out.one_of("tdx.xfam", r.xfam.as_deref(), &c.xfam, HexBytes::to_hex);
    if c.td_attributes.debug && !r.td_attributes.allow_debug {
        out.miss("tdx.td_attributes.debug", "false", "true");
    }
    if let Some(min) = &r.min_tee_tcb_svn {
        let below = min.0.iter().zip(c.tee_tcb_svn.0.iter()).any(|(m, a)| a < m);
        if below {
            out.miss("tdx.tee_tcb_svn", format!(">= {min} (each byte)"), c.tee_tcb_svn.to_hex());
        }
    }
    out.one_of("tdx.tcb_status", Some(&r.accepted_tcb_statuses), &c.tcb_status, tcb_status_name);
    let unaccepted = c.advisory_ids.iter().any(|id| !r.accepted_advisory_ids.contains(id));
    if unaccepted {
        let expected = if r.accepted_advisory_ids.is_empty() {
            "none".to_owned()
        } else {
            format!("only [{}]", r.accepted_advisory_ids.join(", "))
        };
        out.miss("tdx.advisory_ids", expected, format!("[{}]", c.advisory_ids.join(", ")));
    }
    out.at_least(
        "tdx.tcb_evaluation_data_number",
        r.min_tcb_evaluation_data_number,
        c.tcb_evaluation_data_number,
    );
    if let Some(want) = &r.event_log {
        match &c.event_log {
            Some(log) => appraise_event_log(out, log, want),
            None => out.miss("tdx.event_log", "a replayed event log (cc_eventlog)", "absent"),
        }
    }
}

fn appraise_event_log(out: &mut Findings, c: &EventLogClaims, r: &EventLogReference) {
    let hex48 = HexBytes::<48>::to_hex;
    let files = [
        ("tdx.event_log.kernel_sha384", r.kernel_sha384.as_deref(), c.kernel_sha384.as_ref()),
        (
            "tdx.event_log.kernel_authenticode_sha384",
            r.kernel_authenticode_sha384.as_deref(),
            c.kernel_authenticode_sha384.as_ref(),
        ),
        ("tdx.event_log.initrd_sha384", r.initrd_sha384.as_deref(), c.initrd_sha384.as_ref()),
    ];
    for (field, allowed, actual) in files {
        out.one_of_present(field, allowed, actual, hex48);
    }
    out.one_of_present(
        "tdx.event_log.cmdline",
        r.cmdline.as_deref(),
        c.cmdline.as_ref(),
        String::clone,
    );
    out.one_of_present(
        "tdx.event_log.cmdline_sha384",
        r.cmdline_sha384.as_deref(),
        c.cmdline_sha384.as_ref(),
        hex48,
    );
    if let Some(want) = r.secure_boot {
        if c.secure_boot != Some(want) {
            let actual = c.secure_boot.map_or_else(|| "absent".to_owned(), |b| b.to_string());
            out.miss("tdx.event_log.secure_boot", want.to_string(), actual);
        }
    }
}

#[allow(clippy::trivially_copy_pass_by_ref)] // reason: shaped to fit `Findings::one_of`
fn tcb_status_name(s: &TcbStatus) -> String {
    // The variant names are Intel's status strings.
    format!("{s:?}")
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// `a` for a one-item list, `one of [a, b]` otherwise.
fn one_of_text<T>(allowed: &[T], show: impl Fn(&T) -> String) -> String {
    match allowed {
        [only] => show(only),
        many => format!("one of [{}]", many.iter().map(show).collect::<Vec<_>>().join(", ")),
    }
}

struct Findings(Vec<Mismatch>);

impl Findings {
    fn miss(&mut self, field: &str, expected: impl Into<String>, actual: impl Into<String>) {
        self.0.push(Mismatch {
            field: field.to_owned(),
            expected: expected.into(),
            actual: actual.into(),
        });
    }

    /// No constraint when `allowed` is `None`.
    fn one_of<T: PartialEq>(
        &mut self,
        field: &str,
        allowed: Option<&[T]>,
        actual: &T,
        show: impl Fn(&T) -> String,
    ) {
        if let Some(allowed) = allowed {
            if !allowed.contains(actual) {
                self.miss(field, one_of_text(allowed, &show), show(actual));
            }
        }
    }

    /// [`Findings::one_of`] for a claim the evidence may lack: absent misses any constraint.
    fn one_of_present<T: PartialEq>(
        &mut self,
        field: &str,
        allowed: Option<&[T]>,
        actual: Option<&T>,
        show: impl Fn(&T) -> String,
    ) {
        match (allowed, actual) {
            (Some(allowed), None) => self.miss(field, one_of_text(allowed, &show), "absent"),
            (allowed, Some(actual)) => self.one_of(field, allowed, actual, show),
            (None, None) => {}
        }
    }

    /// No constraint when `min` is `None`.
    fn at_least<T: PartialOrd + Display + Copy>(&mut self, field: &str, min: Option<T>, actual: T) {
        if let Some(min) = min {
            if actual < min {
                self.miss(field, format!(">= {min}"), actual.to_string());
            }
        }
    }
}
