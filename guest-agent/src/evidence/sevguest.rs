//! SEV-SNP extended reports through `/dev/sev-guest`, for kernels without configfs-tsm. The
//! ioctl lives in the `sev` crate's guest firmware API, so this crate stays free of `unsafe`.
//! (The `sev` crate opens the fixed path `/dev/sev-guest`; the configurable path here only
//! decides whether the device is considered present.)

use std::path::{Path, PathBuf};

use keylatch_wire::kbs_types::Tee;
use sev::firmware::host::CertType;

use super::certtable::{self, ARK_GUID, ASK_GUID, VCEK_GUID, VLEK_GUID};
use super::configfs::snp_evidence;
use super::EvidenceSource;
use crate::AgentError;

pub const DEFAULT_DEVICE: &str = "/dev/sev-guest";

/// The `/dev/sev-guest` evidence source.
#[derive(Debug, Clone)]
pub struct SevGuest {
    device: PathBuf,
}

impl SevGuest {
    #[must_use]
    pub fn new(device: &Path) -> Self {
        Self { device: device.to_owned() }
    }
}

impl EvidenceSource for SevGuest {
    fn tee(&self) -> Tee {
        Tee::Snp
    }

    fn evidence(&self, report_data: &[u8; 64]) -> Result<serde_json::Value, AgentError> {
        let mut fw = sev::firmware::guest::Firmware::open()
            .map_err(|e| AgentError::Evidence(format!("open {}: {e}", self.device.display())))?;
        let (report, certs) = fw
            .get_ext_report(None, Some(*report_data), None)
            .map_err(|e| AgentError::Evidence(format!("SNP extended report: {e}")))?;
        // Re-encode the sev crate's entries as a GHCB table so one code path picks the signer.
        let entries: Vec<([u8; 16], &[u8])> = certs
            .iter()
            .flatten()
            .filter_map(|c| {
                let guid = match c.cert_type {
                    CertType::VCEK => VCEK_GUID,
                    CertType::VLEK => VLEK_GUID,
                    CertType::ASK => ASK_GUID,
                    CertType::ARK => ARK_GUID,
                    _ => return None,
                };
                Some((guid, c.data.as_slice()))
            })
            .collect();
        let table = (!entries.is_empty()).then(|| certtable::build(&entries));
        snp_evidence(&report, table.as_deref())
    }

    fn describe(&self) -> String {
        format!("snp: {} (SEV guest device, extended report ioctl)", self.device.display())
    }
}
