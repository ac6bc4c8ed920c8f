//! The simulator as an evidence source: SNP reports and TDX quotes minted under a simulation
//! PKI saved by `keylatch sim init` (a directory of PEM files). Only used when the operator asks
//! for it with `--simulate`; a broker accepts such evidence only when configured to, and marks
//! every claim `simulated: true`.
//!
//! Init-data, if given, is measured into HOST_DATA (SNP, 32 bytes) or MRCONFIGID (TDX, 48 bytes)
//! the way a VMM would at launch: the digest named by the TOML's `algorithm` over its raw bytes,
//! zero-padded or truncated.

use std::path::Path;

use keylatch_wire::kbs_types::Tee;
use rand_core::OsRng;
use sha2::Digest;
use verifier::claims::{SnpProduct, SnpSigningKey};
use verifier::sim::snp::SimSnpReport;
use verifier::sim::tdx::SimTdxQuote;
use verifier::sim::SimPki;

use super::configfs::tdx_evidence;
use super::{EvidenceSource, SimTee};
use crate::AgentError;

/// A simulated TEE.
pub struct SimSource {
    tee: SimTee,
    pki: SimPki,
    init_digest: Option<Vec<u8>>,
    /// SNP MEASUREMENT / TDX MRTD to claim; the simulator's default image when `None`.
    measurement: Option<[u8; 48]>,
    /// TDX: a CCEL event log to send; the quote's RTMRs are its replay.
    event_log: Option<Vec<u8>>,
    dir: String,
}

impl std::fmt::Debug for SimSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimSource")
            .field("tee", &self.tee)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl SimSource {
    /// Loads the simulation PKI from `dir`.
    pub fn load(tee: SimTee, dir: &Path, init_data: Option<&str>) -> Result<Self, AgentError> {
        let pki = SimPki::from_files(|name| std::fs::read(dir.join(name)).ok())
            .map_err(|e| AgentError::Local(format!("simulation PKI at {}: {e}", dir.display())))?;
        let init_digest = init_data.map(init_data_digest).transpose()?;
        Ok(Self {
            tee,
            pki,
            init_digest,
            measurement: None,
            event_log: None,
            dir: dir.display().to_string(),
        })
    }

    /// Claims `measurement` (SNP MEASUREMENT or TDX MRTD) instead of the default image's, to
    /// play a VM that booted something else.
    #[must_use]
    pub fn with_measurement(mut self, measurement: [u8; 48]) -> Self {
        self.measurement = Some(measurement);
        self
    }

    /// TDX: sends `log` as `cc_eventlog` and quotes the RTMRs its replay gives, as a TD whose
    /// firmware and bootloader measured what the log says.
    #[must_use]
    pub fn with_event_log(mut self, log: Vec<u8>) -> Self {
        self.event_log = Some(log);
        self
    }
}

/// The init-data digest: the TOML's `algorithm` (sha256, sha384, sha512) over its raw bytes.
pub fn init_data_digest(toml_text: &str) -> Result<Vec<u8>, AgentError> {
    let doc: toml::Table =
        toml_text.parse().map_err(|e| AgentError::Local(format!("init-data is not TOML: {e}")))?;
    let alg = doc.get("algorithm").and_then(toml::Value::as_str).unwrap_or("sha384");
    Ok(match alg {
        "sha256" => sha2::Sha256::digest(toml_text.as_bytes()).to_vec(),
        "sha384" => sha2::Sha384::digest(toml_text.as_bytes()).to_vec(),
        "sha512" => sha2::Sha512::digest(toml_text.as_bytes()).to_vec(),
        other => {
            return Err(AgentError::Local(format!(
                "init-data algorithm {other:?} is not sha256/sha384/sha512"
            )))
        }
    })
}

fn fit<const N: usize>(digest: Option<&[u8]>) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(d) = digest {
        out.iter_mut().zip(d).for_each(|(o, b)| *o = *b);
    }
    out
}

impl EvidenceSource for SimSource {
    fn tee(&self) -> Tee {
        match self.tee {
            SimTee::Snp => Tee::Snp,
            SimTee::Tdx => Tee::Tdx,
        }
    }

    fn evidence(&self, report_data: &[u8; 64]) -> Result<serde_json::Value, AgentError> {
        let digest = self.init_digest.as_deref();
        match self.tee {
            SimTee::Snp => {
                let default = SimSnpReport::for_product(SnpProduct::Genoa);
                let spec = SimSnpReport {
                    report_data: *report_data,
                    host_data: fit::<32>(digest),
                    measurement: self.measurement.unwrap_or(default.measurement),
                    ..default
                };
                let (report, vcek) = self
                    .pki
                    .amd
                    .mint(&spec, &mut OsRng)
                    .map_err(|e| AgentError::Evidence(format!("simulated SNP report: {e}")))?;
                let json =
                    verifier::snp::coco_evidence_json(&report, Some((SnpSigningKey::Vcek, &vcek)))
                        .map_err(|e| AgentError::Evidence(format!("SNP evidence JSON: {e}")))?;
                serde_json::from_slice(&json)
                    .map_err(|e| AgentError::Evidence(format!("SNP evidence JSON: {e}")))
            }
            SimTee::Tdx => {
                let default = SimTdxQuote::default();
                let rtmr = match &self.event_log {
                    Some(log) => verifier::sim::ccel::rtmrs(log)
                        .map_err(|e| AgentError::Evidence(format!("simulated event log: {e}")))?,
                    None => default.rtmr,
                };
                let spec = SimTdxQuote {
                    report_data: *report_data,
                    mr_config_id: fit::<48>(digest),
                    mr_td: self.measurement.unwrap_or(default.mr_td),
                    rtmr,
                    ..default
                };
                let quote = self
                    .pki
                    .intel
                    .mint(&spec, &mut OsRng)
                    .map_err(|e| AgentError::Evidence(format!("simulated TDX quote: {e}")))?;
                Ok(tdx_evidence(&quote, self.event_log.as_deref()))
            }
        }
    }

    fn describe(&self) -> String {
        let tee = match self.tee {
            SimTee::Snp => "snp",
            SimTee::Tdx => "tdx",
        };
        format!("{tee} (SIMULATED): simulation PKI at {} — not hardware evidence", self.dir)
    }
}
