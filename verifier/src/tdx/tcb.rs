//! TCB evaluation for TDX: the signed TCB info (id "TDX", version 3) decoded into typed levels,
//! and the rules that turn the PCK certificate's SGX TCB, the TD report's `TEE_TCB_SVN` (and
//! `TEE_TCB_SVN2` of a TDX 1.5 body) and the QE's TCB level into one status with its advisory IDs.
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

/// The TDX TCB info, decoded.
#[derive(Debug, Clone)]
pub(crate) struct TcbInfo {
    pub(crate) issue_date: i64,
    pub(crate) next_update: i64,
    pub(crate) fmspc: [u8; 6],
    pub(crate) pce_id: [u8; 2],
    /// Intel's TCB evaluation data number: increases with every TCB recovery.
    pub(crate) tcb_evaluation_data_number: u32,
    pub(crate) tdx_module: ModuleIdentity,
    pub(crate) module_identities: Vec<ModuleIdentity>,
    /// Highest first (see the module docs).
    pub(crate) levels: Vec<PlatformLevel>,
}

#[derive(Debug, Clone)]
pub(crate) struct PlatformLevel {
    pub(crate) sgx: [u8; 16],
    pub(crate) pce_svn: u16,
    pub(crate) tdx: [u8; 16],
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
    tdx_module: ModuleJson,
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
    tdxtcbcomponents: Vec<ComponentJson>,
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
    /// Decodes the signed TCB info text. Only `id: "TDX"`, `version: 3` is accepted.
    pub(crate) fn from_json(text: &str) -> Result<Self, Reason> {
        let what = "TCB info";
        let j: TcbInfoJson = serde_json::from_str(text).map_err(|_| Reason::Malformed { what })?;
        if j.id != "TDX" {
            return Err(Reason::InvalidValue { what: "TCB info id", why: "expected TDX" });
        }
        if j.version != 3 {
            return Err(Reason::UnsupportedVersion { what, version: j.version });
        }
        let mut levels = j
            .tcb_levels
            .into_iter()
            .map(|l| {
                Ok(PlatformLevel {
                    sgx: components("TCB level sgxtcbcomponents", &l.tcb.sgxtcbcomponents)?,
                    pce_svn: l.tcb.pcesvn,
                    tdx: components("TCB level tdxtcbcomponents", &l.tcb.tdxtcbcomponents)?,
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
            issue_date: parse_date("TCB info issueDate", &j.issue_date)?,
            next_update: parse_date("TCB info nextUpdate", &j.next_update)?,
            fmspc: hex_array("TCB info fmspc", &j.fmspc)?,
            pce_id: hex_array("TCB info pceId", &j.pce_id)?,
            tcb_evaluation_data_number: j.tcb_evaluation_data_number,
            tdx_module: module_identity(j.tdx_module)?,
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

/// The platform level (converged with the module level) that `tee_tcb_svn` meets.
fn platform_verdict(
    info: &TcbInfo,
    ext: &SgxExtensions,
    tee_tcb_svn: &[u8; 16],
) -> Result<TcbVerdict, Reason> {
    let skip = if tee_tcb_svn[1] > 0 { 2 } else { 0 };
    let level = info
        .levels
        .iter()
        .find(|l| {
            ext.tcb_components.iter().zip(&l.sgx).all(|(have, need)| have >= need)
                && ext.pce_svn >= l.pce_svn
                && tee_tcb_svn.iter().zip(&l.tdx).skip(skip).all(|(have, need)| have >= need)
        })
        .ok_or(Reason::NoMatch { what: "TCB level" })?;
    let mut verdict = TcbVerdict {
        status: level.status,
        advisory_ids: level.advisory_ids.clone(),
        tcb_date: level.tcb_date.clone(),
        tcb_evaluation_data_number: info.tcb_evaluation_data_number,
    };
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
    let identity = info.module_identity(report.tee_tcb_svn[1])?.unwrap_or(&info.tdx_module);
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

/// Step 7 (TCB): the verdict for this platform, TD report and QE level. `Revoked` and no
/// applicable level are errors.
pub(crate) fn evaluate(
    info: &TcbInfo,
    ext: &SgxExtensions,
    report: &TdReport,
    qe: &QeLevel,
) -> Result<TcbVerdict, Reason> {
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
    check_module_identity(info, report)?;
    let mut verdict = platform_verdict(info, ext, &report.tee_tcb_svn)?;
    verdict.status = converge(verdict.status, qe.status);
    add_advisories(&mut verdict.advisory_ids, &qe.advisory_ids);
    if let Some(svn2) = &report.tee_tcb_svn2 {
        let current = converge(platform_verdict(info, ext, svn2)?.status, qe.status);
        if current == TcbStatus::Revoked {
            return Err(Reason::Revoked { what: "current TCB (TEE_TCB_SVN2)" });
        }
        if verdict.status != TcbStatus::Revoked {
            verdict.status = check_for_relaunch(verdict.status, current);
        }
    }
    if verdict.status == TcbStatus::Revoked {
        return Err(Reason::Revoked { what: "platform TCB" });
    }
    verdict.advisory_ids.sort_unstable();
    verdict.advisory_ids.dedup();
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use TcbStatus::*;

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
