//! The reference-value bundle: what a policy author expects of a VM, as written in TOML and as
//! carried (in deterministic CBOR) inside a signed bundle. This module owns the format, its
//! defaults and its validation; nothing here is trusted until a signature check says so.
//!
//! Defaults are chosen so that leaving a key out never widens what is accepted unsafely:
//! measurement lists are required and non-empty, debug and the migration agent are forbidden
//! unless allowed explicitly, VMPL must be 0 unless raised, and only the `UpToDate` TDX TCB
//! status with no advisories is accepted unless others are listed. Every struct denies unknown
//! fields, so a misspelt key is an error rather than a silently dropped constraint.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use verifier::claims::{SnpProduct, SnpSigningKey, TcbStatus};
use verifier::HexBytes;

/// The longest bundle name accepted (names become identifiers in the broker's store and API).
pub const MAX_NAME_LEN: usize = 128;

/// A reference-value bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// Identifies the bundle; a replacement must carry the same name.
    pub name: String,
    /// Must increase with every publication: a broker refuses a version not greater than the
    /// one it holds, so an old bundle cannot be replayed.
    pub version: u64,
    /// After this instant the bundle appraises nothing as acceptable (RFC 3339, kept in UTC).
    #[serde(with = "expires_serde")]
    pub expires: OffsetDateTime,
    /// Expectations for AMD SEV-SNP evidence; absent means SNP evidence is not accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snp: Option<SnpReference>,
    /// Expectations for Intel TDX evidence; absent means TDX evidence is not accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tdx: Option<TdxReference>,
}

/// What SEV-SNP evidence must show. List-valued fields are "one of"; `None` is no constraint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpReference {
    /// Allowed launch measurements (MEASUREMENT). Required, non-empty.
    pub measurements: Vec<HexBytes<48>>,
    /// Minimum `REPORTED_TCB`, per component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tcb: Option<SnpMinTcb>,
    /// Guest policy requirements (debug, migration agent, SMT, single socket).
    #[serde(default)]
    pub policy: SnpPolicyRequirements,
    /// Highest VMPL (least privilege) allowed to request the report. Default 0.
    #[serde(default)]
    pub max_vmpl: u32,
    /// Minimum `GUEST_SVN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_guest_svn: Option<u32>,
    /// Allowed `FAMILY_ID` values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_ids: Option<Vec<HexBytes<16>>>,
    /// Allowed `IMAGE_ID` values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_ids: Option<Vec<HexBytes<16>>>,
    /// Allowed `HOST_DATA` values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_data: Option<Vec<HexBytes<32>>>,
    /// Allowed `ID_KEY_DIGEST` values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_key_digests: Option<Vec<HexBytes<48>>>,
    /// Allowed `AUTHOR_KEY_DIGEST` values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_key_digests: Option<Vec<HexBytes<48>>>,
    /// Allowed AMD products (`milan`, `genoa`, `turin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub products: Option<Vec<SnpProduct>>,
    /// Allowed report signing keys (`vcek`, `vlek`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_keys: Option<Vec<SnpSigningKey>>,
}

/// Minimum `REPORTED_TCB` components; an absent component has no minimum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpMinTcb {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootloader: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tee: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snp: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub microcode: Option<u8>,
    /// Turin and later only: a report without an FMC component fails this minimum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fmc: Option<u8>,
}

/// Guest policy requirements. Defaults: debug and migration agent forbidden, SMT allowed,
/// single socket not required.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(clippy::struct_excessive_bools)] // reason: one switch per policy bit, named after it
pub struct SnpPolicyRequirements {
    /// Allow `POLICY.DEBUG` (the host can read and write guest memory). Default false.
    #[serde(default)]
    pub allow_debug: bool,
    /// Allow `POLICY.MIGRATE_MA` (a migration agent may be associated). Default false.
    #[serde(default)]
    pub allow_migration_agent: bool,
    /// Allow `POLICY.SMT` (simultaneous multithreading). Default true.
    #[serde(default = "yes")]
    pub allow_smt: bool,
    /// Require `POLICY.SINGLE_SOCKET`. Default false.
    #[serde(default)]
    pub require_single_socket: bool,
}

impl Default for SnpPolicyRequirements {
    fn default() -> Self {
        Self {
            allow_debug: false,
            allow_migration_agent: false,
            allow_smt: true,
            require_single_socket: false,
        }
    }
}

fn yes() -> bool {
    true
}

/// What TDX evidence must show. List-valued fields are "one of"; `None` is no constraint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdxReference {
    /// Allowed MRTD values. Required, non-empty.
    pub mr_td: Vec<HexBytes<48>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtmr0: Option<Vec<HexBytes<48>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtmr1: Option<Vec<HexBytes<48>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtmr2: Option<Vec<HexBytes<48>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtmr3: Option<Vec<HexBytes<48>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mr_config_id: Option<Vec<HexBytes<48>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mr_owner: Option<Vec<HexBytes<48>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mr_owner_config: Option<Vec<HexBytes<48>>>,
    /// Allowed MRSEAM values (the TDX module's measurement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mr_seam: Option<Vec<HexBytes<48>>>,
    /// Allowed XFAM values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xfam: Option<Vec<HexBytes<8>>>,
    /// `TD_ATTRIBUTES` requirements.
    #[serde(default)]
    pub td_attributes: TdAttributeRequirements,
    /// Minimum `TEE_TCB_SVN`, compared byte by byte (each byte is one SVN component).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tee_tcb_svn: Option<HexBytes<16>>,
    /// Accepted platform TCB statuses. Default `["UpToDate"]`.
    #[serde(default = "up_to_date_only")]
    pub accepted_tcb_statuses: Vec<TcbStatus>,
    /// Intel advisories the platform may be affected by. Default none: any advisory rejects.
    #[serde(default)]
    pub accepted_advisory_ids: Vec<String>,
    /// Minimum `tcbEvaluationDataNumber` of the collateral the TCB was judged by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tcb_evaluation_data_number: Option<u32>,
    /// What the TD's event log must show; present means evidence without a log is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_log: Option<EventLogReference>,
}

/// Expectations on the replayed TDX event log (`tdx.event_log` claims). List-valued fields are
/// "one of"; `None` is no constraint.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventLogReference {
    /// Allowed kernel digests (SHA-384 of the kernel file grub loaded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_sha384: Option<Vec<HexBytes<48>>>,
    /// Allowed Authenticode SHA-384 digests of a kernel OVMF/TDVF booted directly (QEMU
    /// `-kernel`, no bootloader).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_authenticode_sha384: Option<Vec<HexBytes<48>>>,
    /// Allowed initrd digests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd_sha384: Option<Vec<HexBytes<48>>>,
    /// Allowed kernel command lines, exactly as measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<Vec<String>>,
    /// Allowed command-line event digests (for boots whose log carries no command-line text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline_sha384: Option<Vec<HexBytes<48>>>,
    /// Require the measured `SecureBoot` variable to be on (true) or off (false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_boot: Option<bool>,
}

/// `TD_ATTRIBUTES` requirements. Default: debug forbidden.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdAttributeRequirements {
    /// Allow `TUD.DEBUG` (the host can read the TD's memory). Default false.
    #[serde(default)]
    pub allow_debug: bool,
}

fn up_to_date_only() -> Vec<TcbStatus> {
    vec![TcbStatus::UpToDate]
}

/// Why a bundle's text or contents are not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The TOML does not parse or does not fit the schema (includes unknown keys).
    #[error("bundle TOML: {0}")]
    Toml(String),
    /// A field holds a value that the schema allows but the rules do not.
    #[error("bundle field `{field}`: {reason}")]
    Invalid { field: &'static str, reason: &'static str },
}

impl Bundle {
    /// Parses and validates a bundle written in TOML.
    pub fn from_toml(text: &str) -> Result<Self, FormatError> {
        let mut bundle: Self =
            toml::from_str(text).map_err(|e| FormatError::Toml(e.to_string()))?;
        bundle.expires = bundle.expires.to_offset(time::UtcOffset::UTC);
        bundle.validate()?;
        Ok(bundle)
    }

    /// Checks the rules serde cannot express: a usable name, at least one TEE, non-empty lists.
    pub fn validate(&self) -> Result<(), FormatError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= MAX_NAME_LEN
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !name_ok {
            return Err(invalid("name", "1 to 128 characters of A-Z a-z 0-9 - _ ."));
        }
        if self.expires.offset() != time::UtcOffset::UTC {
            return Err(invalid("expires", "must be in UTC"));
        }
        if self.snp.is_none() && self.tdx.is_none() {
            return Err(invalid("snp/tdx", "a bundle needs an [snp] or a [tdx] table"));
        }
        if let Some(snp) = &self.snp {
            snp.validate()?;
        }
        if let Some(tdx) = &self.tdx {
            tdx.validate()?;
        }
        Ok(())
    }

    /// The TEEs this bundle has expectations for.
    #[must_use]
    pub fn tees(&self) -> Vec<verifier::Tee> {
        let mut tees = Vec::new();
        if self.snp.is_some() {
            tees.push(verifier::Tee::Snp);
        }
        if self.tdx.is_some() {
            tees.push(verifier::Tee::Tdx);
        }
        tees
    }
}

const EMPTY_LIST: &str = "an empty list allows nothing: omit the key for no constraint";

impl SnpReference {
    fn validate(&self) -> Result<(), FormatError> {
        if self.measurements.is_empty() {
            return Err(invalid(
                "snp.measurements",
                "at least one allowed measurement is required",
            ));
        }
        non_empty("snp.family_ids", self.family_ids.as_deref())?;
        non_empty("snp.image_ids", self.image_ids.as_deref())?;
        non_empty("snp.host_data", self.host_data.as_deref())?;
        non_empty("snp.id_key_digests", self.id_key_digests.as_deref())?;
        non_empty("snp.author_key_digests", self.author_key_digests.as_deref())?;
        non_empty("snp.products", self.products.as_deref())?;
        non_empty("snp.signing_keys", self.signing_keys.as_deref())?;
        Ok(())
    }
}

impl TdxReference {
    fn validate(&self) -> Result<(), FormatError> {
        if self.mr_td.is_empty() {
            return Err(invalid("tdx.mr_td", "at least one allowed MRTD is required"));
        }
        non_empty("tdx.rtmr0", self.rtmr0.as_deref())?;
        non_empty("tdx.rtmr1", self.rtmr1.as_deref())?;
        non_empty("tdx.rtmr2", self.rtmr2.as_deref())?;
        non_empty("tdx.rtmr3", self.rtmr3.as_deref())?;
        non_empty("tdx.mr_config_id", self.mr_config_id.as_deref())?;
        non_empty("tdx.mr_owner", self.mr_owner.as_deref())?;
        non_empty("tdx.mr_owner_config", self.mr_owner_config.as_deref())?;
        non_empty("tdx.mr_seam", self.mr_seam.as_deref())?;
        non_empty("tdx.xfam", self.xfam.as_deref())?;
        if self.accepted_tcb_statuses.is_empty() {
            return Err(invalid("tdx.accepted_tcb_statuses", EMPTY_LIST));
        }
        if let Some(log) = &self.event_log {
            non_empty("tdx.event_log.kernel_sha384", log.kernel_sha384.as_deref())?;
            non_empty(
                "tdx.event_log.kernel_authenticode_sha384",
                log.kernel_authenticode_sha384.as_deref(),
            )?;
            non_empty("tdx.event_log.initrd_sha384", log.initrd_sha384.as_deref())?;
            non_empty("tdx.event_log.cmdline", log.cmdline.as_deref())?;
            non_empty("tdx.event_log.cmdline_sha384", log.cmdline_sha384.as_deref())?;
        }
        Ok(())
    }
}

fn non_empty<T>(field: &'static str, list: Option<&[T]>) -> Result<(), FormatError> {
    match list {
        Some([]) => Err(invalid(field, EMPTY_LIST)),
        _ => Ok(()),
    }
}

fn invalid(field: &'static str, reason: &'static str) -> FormatError {
    FormatError::Invalid { field, reason }
}

/// `expires` as an RFC 3339 string; TOML authors may also write a bare TOML datetime.
mod expires_serde {
    use std::fmt;

    use serde::de::{self, MapAccess, Visitor};
    use serde::{Deserializer, Serializer};
    use time::format_description::well_known::Rfc3339;
    use time::OffsetDateTime;

    pub(crate) fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        let text = t.format(&Rfc3339).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        d.deserialize_any(Rfc3339Visitor)
    }

    struct Rfc3339Visitor;

    impl<'de> Visitor<'de> for Rfc3339Visitor {
        type Value = OffsetDateTime;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an RFC 3339 date-time with offset, e.g. 2026-12-31T00:00:00Z")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            OffsetDateTime::parse(v, &Rfc3339)
                .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
        }

        /// A TOML datetime arrives as a one-entry map holding its text.
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let Some((_key, text)) = map.next_entry::<String, String>()? else {
                return Err(de::Error::invalid_length(0, &self));
            };
            if map.next_key::<de::IgnoredAny>()?.is_some() {
                return Err(de::Error::invalid_length(2, &self));
            }
            self.visit_str(&text)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // reason: tests fail loudly on purpose
mod tests {
    use super::*;

    const MINIMAL_SNP: &str = r#"
name = "web"
version = 1
expires = 2030-01-01T00:00:00Z
[snp]
measurements = ["7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f"]
"#;

    #[test]
    fn minimal_snp_bundle_gets_safe_defaults() {
        let b = Bundle::from_toml(MINIMAL_SNP).unwrap();
        let snp = b.snp.unwrap();
        assert!(!snp.policy.allow_debug);
        assert!(!snp.policy.allow_migration_agent);
        assert!(snp.policy.allow_smt);
        assert_eq!(snp.max_vmpl, 0);
        assert_eq!(b.expires.unix_timestamp(), 1_893_456_000);
    }

    #[test]
    fn accepts_expires_as_quoted_string_and_normalizes_to_utc() {
        let text = MINIMAL_SNP
            .replace("expires = 2030-01-01T00:00:00Z", "expires = \"2030-01-01T02:00:00+02:00\"");
        let b = Bundle::from_toml(&text).unwrap();
        assert_eq!(b.expires.unix_timestamp(), 1_893_456_000);
        assert_eq!(b.expires.offset(), time::UtcOffset::UTC);
    }

    #[test]
    fn rejects_unknown_key_so_typos_cannot_drop_constraints() {
        let text = MINIMAL_SNP.replace("[snp]\n", "[snp]\nmin_guest_svm = 3\n");
        let err = Bundle::from_toml(&text).unwrap_err();
        assert!(matches!(&err, FormatError::Toml(m) if m.contains("min_guest_svm")), "{err}");
    }

    #[test]
    fn rejects_missing_or_empty_measurements() {
        let text = MINIMAL_SNP.replace(
            "measurements = [\"7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f\"]",
            "measurements = []",
        );
        assert_eq!(
            Bundle::from_toml(&text).unwrap_err(),
            FormatError::Invalid {
                field: "snp.measurements",
                reason: "at least one allowed measurement is required"
            }
        );
        let missing =
            "name = \"x\"\nversion = 1\nexpires = 2030-01-01T00:00:00Z\n[snp]\nmax_vmpl = 1\n";
        assert!(
            matches!(Bundle::from_toml(missing), Err(FormatError::Toml(m)) if m.contains("measurements"))
        );
    }

    #[test]
    fn rejects_bundle_without_any_tee() {
        let text = "name = \"x\"\nversion = 1\nexpires = 2030-01-01T00:00:00Z\n";
        assert_eq!(
            Bundle::from_toml(text).unwrap_err(),
            FormatError::Invalid {
                field: "snp/tdx",
                reason: "a bundle needs an [snp] or a [tdx] table"
            }
        );
    }

    #[test]
    fn rejects_empty_allow_list_and_bad_name() {
        let text = MINIMAL_SNP.replace("[snp]\n", "[snp]\nhost_data = []\n");
        assert_eq!(
            Bundle::from_toml(&text).unwrap_err(),
            FormatError::Invalid { field: "snp.host_data", reason: EMPTY_LIST }
        );
        let text = MINIMAL_SNP.replace("name = \"web\"", "name = \"a/b\"");
        assert!(matches!(
            Bundle::from_toml(&text),
            Err(FormatError::Invalid { field: "name", .. })
        ));
    }

    #[test]
    fn rejects_wrong_length_measurement() {
        let text = MINIMAL_SNP.replace("cd81841f\"", "cd81841f00\"");
        assert!(
            matches!(Bundle::from_toml(&text), Err(FormatError::Toml(m)) if m.contains("96 hex digits"))
        );
    }
}
