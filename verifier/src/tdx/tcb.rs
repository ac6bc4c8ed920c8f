//! TCB evaluation for Intel DCAP quotes: the signed TCB info (version 3, id "TDX" or "SGX")
//! decoded into typed levels, and the rules that turn the PCK certificate's SGX TCB, the TD
//! report's `TEE_TCB_SVN` (and `TEE_TCB_SVN2` of a TDX 1.5 body) and the QE's TCB level into one
//! status with its advisory IDs.
//!
//! SGX quotes ([`evaluate_sgx`], TCB info id "SGX") use the first three rules only: FMSPC and
//! PCE-ID, the first level whose 16 SGX components and PCESVN the PCK certificate meets (levels
//! of an SGX TCB info have no TDX components), and the QE level converged into it.
//!
//! The rules are Intel QVL's, as documented for TCB info v3:
//! - FMSPC and PCE-ID of the PCK certificate must equal the TCB info's.
//! - The TD report's MRSIGNERSEAM and `SEAM_ATTRIBUTES` (under the mask) must match the TDX module
//!   identity selected by the module major version `TEE_TCB_SVN[1]` (`tdxModuleIdentities` entry
//!   `TDX_<version as two hex digits>`), or the base `tdxModule` when that version is 0.
//! - Platform levels are ordered highest first (SGX components, then PCESVN, then TDX
//!   components, each compared lexicographically, as QVL orders them regardless of the JSON
//!   order); the first level whose 16 SGX components and PCESVN the PCK certificate meets and
//!   whose 16 TDX components `TEE_TCB_SVN` meets applies. When `TEE_TCB_SVN[1] > 0`, TDX components
//!   0 and 1 are not compared there: the module's ISVSVN (`TEE_TCB_SVN[0]`) is instead judged by
//!   the selected module identity's own `tcbLevels` (first level with `isvsvn <= TEE_TCB_SVN[0]`),
//!   whose status converges into the platform's.
//! - The QE's level converges the same way: only an `OutOfDate` or `Revoked` component changes
//!   the platform status.
//! - TDX 1.5: `TEE_TCB_SVN2` (the current TCB after a TD-preserving update) must be appraisable
//!   too; an out-of-date launch TCB with a current TCB that is not out of date becomes
//!   `TDRelaunchAdvised` (QVL's `checkForRelaunch`).
//! - `Revoked` (launch or current) and "no level applies" are failures, never a status.
//!
//! The verdict also carries the matched platform level's `tcbDate` and the TCB info's
//! `tcbEvaluationDataNumber`, so a policy can require "evaluated against data at least this
//! recent". Advisory IDs are the union of the platform level's, the TDX module level's and the
//! QE level's, as Intel's QVL and dcap-qvl merge them (`TcbStatusWithAdvisory::merge` appends
//! the IDs not yet present); ours are then sorted, so equal verdicts print and digest alike.

use serde::Deserialize;

use super::fields::{hex_array, parse_date, parse_status};
use super::pck::SgxExtensions;
use super::quote::TdReport;
use crate::claims::TcbStatus;
use crate::error::Reason;

/// Which Intel TEE a piece of collateral (TCB info, QE identity) is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IntelTee {
    Sgx,
    Tdx,
}

impl IntelTee {
    /// The TCB info `id` for this TEE.
    pub(crate) fn tcb_info_id(self) -> &'static str {
        match self {
            Self::Sgx => "SGX",
            Self::Tdx => "TDX",
        }
    }

    /// The QE identity `id` of this TEE's quoting enclave.
    pub(crate) fn qe_identity_id(self) -> &'static str {
        match self {
            Self::Sgx => "QE",
            Self::Tdx => "TD_QE",
        }
    }
}

/// A TCB info (TDX or SGX), decoded.
#[derive(Debug, Clone)]
pub(crate) struct TcbInfo {
    pub(crate) tee: IntelTee,
    pub(crate) issue_date: i64,
    pub(crate) next_update: i64,
    pub(crate) fmspc: [u8; 6],
    pub(crate) pce_id: [u8; 2],
    /// Intel's TCB evaluation data number: increases with every TCB recovery.
    pub(crate) tcb_evaluation_data_number: u32,
    /// TDX only (required there, absent for SGX).
    pub(crate) tdx_module: Option<ModuleIdentity>,
    pub(crate) module_identities: Vec<ModuleIdentity>,
    /// Highest first (see the module docs).
    pub(crate) levels: Vec<PlatformLevel>,
}

#[derive(Debug, Clone)]
pub(crate) struct PlatformLevel {
    pub(crate) sgx: [u8; 16],
    pub(crate) pce_svn: u16,
    /// TDX TCB info levels only (required there, absent for SGX).
    pub(crate) tdx: Option<[u8; 16]>,
    pub(crate) status: TcbStatus,
    /// `tcbDate`, RFC 3339 as Intel writes it (validated to parse).
    pub(crate) tcb_date: String,
    pub(crate) advisory_ids: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct ModuleIdentity {
    pub(crate) id: String,
    pub(crate) mrsigner: [u8; 48],
    pub(crate) attributes: [u8; 8],
    pub(crate) attributes_mask: [u8; 8],
    /// Highest ISVSVN first.
    pub(crate) levels: Vec<ModuleLevel>,
}

#[derive(Debug, Clone)]
pub(crate) struct ModuleLevel {
    pub(crate) isvsvn: u8,
    pub(crate) status: TcbStatus,
    pub(crate) advisory_ids: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct QeLevel {
    pub(crate) isvsvn: u16,
    pub(crate) status: TcbStatus,
    pub(crate) advisory_ids: Vec<String>,
}

/// The outcome of TCB evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TcbVerdict {
    pub(crate) status: TcbStatus,
    /// Sorted, without duplicates.
    pub(crate) advisory_ids: Vec<String>,
    /// The matched platform level's `tcbDate` (the launch TCB's for TDX 1.5).
    pub(crate) tcb_date: String,
    pub(crate) tcb_evaluation_data_number: u32,
}

/// Statuses Intel's QVL accepts in platform TCB levels.
const PLATFORM_STATUSES: &[TcbStatus] = &[
    TcbStatus::UpToDate,
    TcbStatus::SWHardeningNeeded,
    TcbStatus::ConfigurationNeeded,
    TcbStatus::ConfigurationAndSWHardeningNeeded,
    TcbStatus::OutOfDate,
    TcbStatus::OutOfDateConfigurationNeeded,
    TcbStatus::Revoked,
];
/// Statuses Intel's QVL accepts in TDX module identity levels.
const MODULE_STATUSES: &[TcbStatus] =
    &[TcbStatus::UpToDate, TcbStatus::OutOfDate, TcbStatus::Revoked];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TcbInfoJson {
    id: String,
    version: u32,
    issue_date: String,
    next_update: String,
    fmspc: String,
    pce_id: String,
    tcb_evaluation_data_number: u32,
    #[serde(default)]
    tdx_module: Option<ModuleJson>,
    #[serde(default)]
    tdx_module_identities: Vec<ModuleJson>,
    tcb_levels: Vec<LevelJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModuleJson {
    #[serde(default)]
    id: String,
    mrsigner: String,
    attributes: String,
    attributes_mask: String,
    #[serde(default)]
    tcb_levels: Vec<ModuleLevelJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModuleLevelJson {
    tcb: ModuleTcbJson,
    tcb_status: String,
    #[serde(rename = "advisoryIDs", default)]
    advisory_ids: Vec<String>,
}

#[derive(Deserialize)]
struct ModuleTcbJson {
    isvsvn: u8,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LevelJson {
    tcb: LevelTcbJson,
    tcb_date: String,
    tcb_status: String,
    #[serde(rename = "advisoryIDs", default)]
    advisory_ids: Vec<String>,
}

#[derive(Deserialize)]
struct LevelTcbJson {
    sgxtcbcomponents: Vec<ComponentJson>,
    pcesvn: u16,
    #[serde(default)]
    tdxtcbcomponents: Option<Vec<ComponentJson>>,
}

#[derive(Deserialize)]
struct ComponentJson {
    svn: u8,
}

fn components(what: &'static str, list: &[ComponentJson]) -> Result<[u8; 16], Reason> {
    let mut out = [0u8; 16];
    if list.len() != out.len() {
        return Err(Reason::InvalidValue { what, why: "expected 16 TCB components" });
    }
    for (o, c) in out.iter_mut().zip(list) {
        *o = c.svn;
    }
    Ok(out)
}

fn module_identity(m: ModuleJson) -> Result<ModuleIdentity, Reason> {
    let mut levels = m
        .tcb_levels
        .into_iter()
        .map(|l| {
            Ok(ModuleLevel {
                isvsvn: l.tcb.isvsvn,
                status: parse_status("TDX module TCB level", &l.tcb_status, MODULE_STATUSES)?,
                advisory_ids: l.advisory_ids,
            })
        })
        .collect::<Result<Vec<_>, Reason>>()?;
    levels.sort_by_key(|l| std::cmp::Reverse(l.isvsvn));
    Ok(ModuleIdentity {
        id: m.id,
        mrsigner: hex_array("TDX module mrsigner", &m.mrsigner)?,
        attributes: hex_array("TDX module attributes", &m.attributes)?,
        attributes_mask: hex_array("TDX module attributesMask", &m.attributes_mask)?,
        levels,
    })
}

impl TcbInfo {
    /// Decodes the signed TCB info text. Only version 3 with `id` "TDX" (which must carry the
    /// TDX module and TDX components of every level) or "SGX" (which must carry neither) is
    /// accepted.
    pub(crate) fn from_json(text: &str) -> Result<Self, Reason> {
        let what = "TCB info";
        let j: TcbInfoJson = serde_json::from_str(text).map_err(|_| Reason::Malformed { what })?;
        let tee = [IntelTee::Tdx, IntelTee::Sgx]
            .into_iter()
            .find(|t| t.tcb_info_id() == j.id)
            .ok_or(Reason::InvalidValue { what: "TCB info id", why: "expected TDX or SGX" })?;
        if j.version != 3 {
            return Err(Reason::UnsupportedVersion { what, version: j.version });
        }
        let tdx_only = |present: bool, what| match (tee, present) {
            (IntelTee::Tdx, true) | (IntelTee::Sgx, false) => Ok(()),
            (IntelTee::Tdx, false) => Err(Reason::Missing { what }),
            (IntelTee::Sgx, true) => {
                Err(Reason::InvalidValue { what, why: "not allowed in an SGX TCB info" })
            }
        };
        tdx_only(j.tdx_module.is_some(), "TCB info tdxModule")?;
        let mut levels = j
            .tcb_levels
            .into_iter()
            .map(|l| {
                let tdx = l.tcb.tdxtcbcomponents.as_deref();
                tdx_only(tdx.is_some(), "TCB level tdxtcbcomponents")?;
                Ok(PlatformLevel {
                    sgx: components("TCB level sgxtcbcomponents", &l.tcb.sgxtcbcomponents)?,
                    pce_svn: l.tcb.pcesvn,
                    tdx: tdx.map(|c| components("TCB level tdxtcbcomponents", c)).transpose()?,
                    status: parse_status("TCB level", &l.tcb_status, PLATFORM_STATUSES)?,
                    tcb_date: {
                        parse_date("TCB level tcbDate", &l.tcb_date)?;
                        l.tcb_date
                    },
                    advisory_ids: l.advisory_ids,
                })
            })
            .collect::<Result<Vec<_>, Reason>>()?;
        levels.sort_by_key(|l| std::cmp::Reverse((l.sgx, l.pce_svn, l.tdx)));
        Ok(Self {
            tee,
            issue_date: parse_date("TCB info issueDate", &j.issue_date)?,
            next_update: parse_date("TCB info nextUpdate", &j.next_update)?,
            fmspc: hex_array("TCB info fmspc", &j.fmspc)?,
            pce_id: hex_array("TCB info pceId", &j.pce_id)?,
            tcb_evaluation_data_number: j.tcb_evaluation_data_number,
            tdx_module: j.tdx_module.map(module_identity).transpose()?,
            module_identities: j
                .tdx_module_identities
                .into_iter()
                .map(module_identity)
                .collect::<Result<_, _>>()?,
            levels,
        })
    }

    /// The module identity for module major version `version` (`TEE_TCB_SVN[1]`), `None` for 0.
    fn module_identity(&self, version: u8) -> Result<Option<&ModuleIdentity>, Reason> {
        if version == 0 {
            return Ok(None);
        }
        let wanted = format!("TDX_{version:02X}");
        self.module_identities
            .iter()
            .find(|m| m.id.eq_ignore_ascii_case(&wanted))
            .map(Some)
            .ok_or(Reason::NoMatch { what: "TDX module identity for TEE_TCB_SVN[1]" })
    }
}

/// Combines a platform status with a component's (QE or TDX module) like QVL's
/// `convergeTcbStatuses`.
fn converge(platform: TcbStatus, component: TcbStatus) -> TcbStatus {
    use TcbStatus::{
        ConfigurationAndSWHardeningNeeded, ConfigurationNeeded, OutOfDate,
        OutOfDateConfigurationNeeded, Revoked, SWHardeningNeeded, UpToDate,
    };
    match (component, platform) {
        (Revoked, _) => Revoked,
        (OutOfDate, UpToDate | SWHardeningNeeded) => OutOfDate,
        (OutOfDate, ConfigurationNeeded | ConfigurationAndSWHardeningNeeded) => {
            OutOfDateConfigurationNeeded
        }
        _ => platform,
    }
}

/// TDX 1.5: combines the launch status with the current one like QVL's `checkForRelaunch`.
fn check_for_relaunch(launch: TcbStatus, current: TcbStatus) -> TcbStatus {
    use TcbStatus::{
        ConfigurationAndSWHardeningNeeded, ConfigurationNeeded, OutOfDate,
        OutOfDateConfigurationNeeded, SWHardeningNeeded, TDRelaunchAdvised,
        TDRelaunchAdvisedConfigurationNeeded, UpToDate,
    };
    let needs_config = |s| {
        matches!(
            s,
            ConfigurationNeeded
                | OutOfDateConfigurationNeeded
                | ConfigurationAndSWHardeningNeeded
                | TDRelaunchAdvisedConfigurationNeeded
        )
    };
    match (launch, current) {
        (
            OutOfDate | OutOfDateConfigurationNeeded,
            UpToDate | SWHardeningNeeded | ConfigurationNeeded | ConfigurationAndSWHardeningNeeded,
        ) => {
            if needs_config(launch) || needs_config(current) {
                TDRelaunchAdvisedConfigurationNeeded
            } else {
                TDRelaunchAdvised
            }
        }
        _ => launch,
    }
}

fn add_advisories(into: &mut Vec<String>, from: &[String]) {
    for a in from {
        if !into.contains(a) {
            into.push(a.clone());
        }
    }
}

/// The verdict of the first (highest) level whose SGX components and PCESVN the PCK
/// certificate meets and which `also` accepts.
fn level_verdict(
    info: &TcbInfo,
    ext: &SgxExtensions,
    also: impl Fn(&PlatformLevel) -> bool,
) -> Result<TcbVerdict, Reason> {
    let level = info
        .levels
        .iter()
        .find(|l| {
            ext.tcb_components.iter().zip(&l.sgx).all(|(have, need)| have >= need)
                && ext.pce_svn >= l.pce_svn
                && also(l)
        })
        .ok_or(Reason::NoMatch { what: "TCB level" })?;
    Ok(TcbVerdict {
        status: level.status,
        advisory_ids: level.advisory_ids.clone(),
        tcb_date: level.tcb_date.clone(),
        tcb_evaluation_data_number: info.tcb_evaluation_data_number,
    })
}

/// The platform level (converged with the module level) that `tee_tcb_svn` meets.
fn platform_verdict(
    info: &TcbInfo,
    ext: &SgxExtensions,
    tee_tcb_svn: &[u8; 16],
) -> Result<TcbVerdict, Reason> {
    let skip = if tee_tcb_svn[1] > 0 { 2 } else { 0 };
    let mut verdict = level_verdict(info, ext, |l| {
        l.tdx.is_some_and(|tdx| {
            tee_tcb_svn.iter().zip(&tdx).skip(skip).all(|(have, need)| have >= need)
        })
    })?;
    if let Some(identity) = info.module_identity(tee_tcb_svn[1])? {
        let module = identity
            .levels
            .iter()
            .find(|m| tee_tcb_svn[0] >= m.isvsvn)
            .ok_or(Reason::NoMatch { what: "TDX module TCB level" })?;
        verdict.status = converge(verdict.status, module.status);
        add_advisories(&mut verdict.advisory_ids, &module.advisory_ids);
    }
    Ok(verdict)
}

/// Checks MRSIGNERSEAM and `SEAM_ATTRIBUTES` against the module identity (see the module docs).
fn check_module_identity(info: &TcbInfo, report: &TdReport) -> Result<(), Reason> {
    let base = info.tdx_module.as_ref().ok_or(Reason::Missing { what: "TCB info tdxModule" })?;
    let identity = info.module_identity(report.tee_tcb_svn[1])?.unwrap_or(base);
    if report.mr_signer_seam != identity.mrsigner {
        return Err(Reason::Mismatch {
            what: "MRSIGNERSEAM",
            expected: hex::encode(identity.mrsigner),
            actual: hex::encode(report.mr_signer_seam),
        });
    }
    let masked = |v: &[u8; 8]| -> [u8; 8] {
        let mut out = *v;
        for (o, m) in out.iter_mut().zip(&identity.attributes_mask) {
            *o &= m;
        }
        out
    };
    if masked(&report.seam_attributes) != masked(&identity.attributes) {
        return Err(Reason::Mismatch {
            what: "SEAM_ATTRIBUTES (masked)",
            expected: hex::encode(masked(&identity.attributes)),
            actual: hex::encode(masked(&report.seam_attributes)),
        });
    }
    Ok(())
}

/// FMSPC and PCE-ID of the PCK certificate must be the TCB info's.
fn check_platform(info: &TcbInfo, ext: &SgxExtensions) -> Result<(), Reason> {
    if ext.fmspc != info.fmspc {
        return Err(Reason::Mismatch {
            what: "FMSPC",
            expected: hex::encode(info.fmspc),
            actual: hex::encode(ext.fmspc),
        });
    }
    if ext.pce_id != info.pce_id {
        return Err(Reason::Mismatch {
            what: "PCE-ID",
            expected: hex::encode(info.pce_id),
            actual: hex::encode(ext.pce_id),
        });
    }
    Ok(())
}

/// The TCB step for an SGX quote: the verdict for this platform and QE level. `Revoked` and no
/// applicable level are errors.
pub(crate) fn evaluate_sgx(
    info: &TcbInfo,
    ext: &SgxExtensions,
    qe: &QeLevel,
) -> Result<TcbVerdict, Reason> {
    check_platform(info, ext)?;
    let mut verdict = level_verdict(info, ext, |_| true)?;
    add_qe_level(&mut verdict, qe);
    finish(verdict)
}

/// The QE's level converges into the platform's; its advisories join.
fn add_qe_level(verdict: &mut TcbVerdict, qe: &QeLevel) {
    verdict.status = converge(verdict.status, qe.status);
    add_advisories(&mut verdict.advisory_ids, &qe.advisory_ids);
}

/// `Revoked` is a failure; advisory IDs are sorted and deduplicated.
fn finish(mut verdict: TcbVerdict) -> Result<TcbVerdict, Reason> {
    if verdict.status == TcbStatus::Revoked {
        return Err(Reason::Revoked { what: "platform TCB" });
    }
    verdict.advisory_ids.sort_unstable();
    verdict.advisory_ids.dedup();
    Ok(verdict)
}

/// The TCB step for a TDX quote: the verdict for this platform, TD report and QE level.
/// `Revoked` and no applicable level are errors.
pub(crate) fn evaluate(
    info: &TcbInfo,
    ext: &SgxExtensions,
    report: &TdReport,
    qe: &QeLevel,
) -> Result<TcbVerdict, Reason> {
    check_platform(info, ext)?;
    check_module_identity(info, report)?;
    let mut verdict = platform_verdict(info, ext, &report.tee_tcb_svn)?;
    add_qe_level(&mut verdict, qe);
    if let Some(svn2) = &report.tee_tcb_svn2 {
        let current = converge(platform_verdict(info, ext, svn2)?.status, qe.status);
        if current == TcbStatus::Revoked {
            return Err(Reason::Revoked { what: "current TCB (TEE_TCB_SVN2)" });
        }
        if verdict.status != TcbStatus::Revoked {
            verdict.status = check_for_relaunch(verdict.status, current);
        }
    }
    finish(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use TcbStatus::*;

    /// A one-level TCB info with `id`, and with a TDX module and TDX components or not.
    fn info_json(id: &str, tdx_module: bool, tdx_components: bool) -> String {
        let comps = format!("[{}]", vec![r#"{"svn":1}"#; 16].join(","));
        let module = r#","tdxModule":{"mrsigner":"00","attributes":"0000000000000000","attributesMask":"FFFFFFFFFFFFFFFF"}"#;
        format!(
            r#"{{"id":"{id}","version":3,"issueDate":"2025-01-01T00:00:00Z","nextUpdate":"2025-02-01T00:00:00Z","fmspc":"00A067110000","pceId":"0000","tcbEvaluationDataNumber":17{module},"tcbLevels":[{{"tcb":{{"sgxtcbcomponents":{comps},"pcesvn":13{tdx}}},"tcbDate":"2024-03-13T00:00:00Z","tcbStatus":"UpToDate"}}]}}"#,
            module = if tdx_module { module } else { "" },
            tdx = if tdx_components {
                format!(r#","tdxtcbcomponents":{comps}"#)
            } else {
                String::new()
            },
        )
    }

    #[test]
    fn sgx_tcb_info_must_carry_no_tdx_parts_and_tdx_tcb_info_all_of_them() {
        let sgx = TcbInfo::from_json(&info_json("SGX", false, false)).unwrap();
        assert_eq!(sgx.tee, IntelTee::Sgx);
        assert!(sgx.tdx_module.is_none() && sgx.levels[0].tdx.is_none());
        let err =
            |id, module, comps| TcbInfo::from_json(&info_json(id, module, comps)).unwrap_err();
        assert_eq!(
            err("SGX", true, false).to_string(),
            "invalid TCB info tdxModule: not allowed in an SGX TCB info"
        );
        assert_eq!(
            err("SGX", false, true).to_string(),
            "invalid TCB level tdxtcbcomponents: not allowed in an SGX TCB info"
        );
        assert_eq!(err("TDX", false, true).to_string(), "missing TCB info tdxModule");
        assert_eq!(err("TDX", true, false).to_string(), "missing TCB level tdxtcbcomponents");
        assert_eq!(err("QE", false, false).to_string(), "invalid TCB info id: expected TDX or SGX");
    }

    #[test]
    fn module_out_of_date_converges_platform_up_to_date_to_out_of_date() {
        assert_eq!(converge(UpToDate, OutOfDate), OutOfDate);
        assert_eq!(converge(ConfigurationNeeded, OutOfDate), OutOfDateConfigurationNeeded);
        assert_eq!(converge(SWHardeningNeeded, UpToDate), SWHardeningNeeded);
        assert_eq!(converge(UpToDate, Revoked), Revoked);
    }

    #[test]
    fn out_of_date_launch_with_current_up_to_date_advises_relaunch() {
        assert_eq!(check_for_relaunch(OutOfDate, UpToDate), TDRelaunchAdvised);
        assert_eq!(
            check_for_relaunch(OutOfDate, ConfigurationNeeded),
            TDRelaunchAdvisedConfigurationNeeded
        );
        assert_eq!(check_for_relaunch(OutOfDate, OutOfDate), OutOfDate);
        assert_eq!(check_for_relaunch(UpToDate, UpToDate), UpToDate);
    }
}
