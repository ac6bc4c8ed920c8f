//! Where evidence comes from. One trait, four sources, and [`detect`], which picks one and says
//! why:
//!
//! 1. `--simulate snp|tdx --sim-pki DIR`: the simulator, when asked for explicitly;
//! 2. an Azure confidential VM's vTPM (`/dev/tpmrm0`, or `tpm = "..."`): its NV index
//!    0x01400001 holds an HCL report of type SNP or TDX (`az-snp-vtpm`, `az-tdx-vtpm`). Looked
//!    at before the others, as guest-components does: on Azure the paravisor owns the hardware;
//! 3. Linux configfs-tsm (`/sys/kernel/config/tsm/report`), whose `provider` says SNP or TDX;
//! 4. `/dev/sev-guest` extended reports (SNP on kernels without configfs-tsm).
//!
//! With none of them, detection fails: there is no unsigned fallback.

pub mod azure;
pub mod certtable;
pub mod configfs;
pub mod sevguest;
pub mod sim;
pub mod tpm;

use std::path::PathBuf;

use kbs_types::Tee;
use keylatch_wire::kbs_types;

use crate::AgentError;

/// A source of hardware (or simulated) evidence.
pub trait EvidenceSource: Send + Sync {
    /// The TEE named in the KBS `auth` request.
    fn tee(&self) -> Tee;
    /// The `primary_evidence` JSON for a report carrying `report_data`, in the form
    /// guest-components sends.
    fn evidence(&self, report_data: &[u8; 64]) -> Result<serde_json::Value, AgentError>;
    /// One line for `keylatch-agent detect`.
    fn describe(&self) -> String;
}

/// Which simulated TEE to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimTee {
    Snp,
    Tdx,
}

/// Where to look.
#[derive(Debug, Clone)]
pub struct DetectOptions {
    /// configfs-tsm report directory (default `/sys/kernel/config/tsm/report`).
    pub configfs_root: PathBuf,
    /// The SEV guest device (default `/dev/sev-guest`).
    pub sev_guest: PathBuf,
    /// The TDX event log (default `/sys/firmware/acpi/tables/data/CCEL`).
    pub ccel: PathBuf,
    /// The TPM looked at for an Azure vTPM (default `/dev/tpmrm0`).
    pub tpm: tpm::TpmPath,
    /// Azure's instance metadata service (default `http://169.254.169.254`).
    pub azure_imds: String,
    /// Use the simulator instead of hardware.
    pub simulate: Option<(SimTee, PathBuf)>,
    /// Init-data TOML; the simulator measures it into HOST_DATA / MRCONFIGID as a VMM would.
    pub init_data: Option<String>,
    /// The simulator's SNP MEASUREMENT / TDX MRTD (default: its built-in image's).
    pub sim_measurement: Option<[u8; 48]>,
}

impl Default for DetectOptions {
    fn default() -> Self {
        Self {
            configfs_root: PathBuf::from(configfs::DEFAULT_ROOT),
            sev_guest: PathBuf::from(sevguest::DEFAULT_DEVICE),
            ccel: PathBuf::from(configfs::DEFAULT_CCEL),
            tpm: tpm::TpmPath::default(),
            azure_imds: azure::DEFAULT_IMDS.to_owned(),
            simulate: None,
            init_data: None,
            sim_measurement: None,
        }
    }
}

/// Finds the evidence source to use.
pub fn detect(opts: &DetectOptions) -> Result<Box<dyn EvidenceSource>, AgentError> {
    if let Some((tee, dir)) = &opts.simulate {
        let mut source = sim::SimSource::load(*tee, dir, opts.init_data.as_deref())?;
        if let Some(measurement) = opts.sim_measurement {
            source = source.with_measurement(measurement);
        }
        return Ok(Box::new(source));
    }
    let not_azure = match azure::AzureVtpm::probe(&opts.tpm, &opts.azure_imds)? {
        Ok(vtpm) => return Ok(Box::new(vtpm)),
        Err(why) => why,
    };
    if opts.configfs_root.is_dir() {
        let tsm = configfs::ConfigfsTsm::probe(&opts.configfs_root)?.with_ccel(opts.ccel.clone());
        return Ok(Box::new(tsm));
    }
    if opts.sev_guest.exists() {
        return Ok(Box::new(sevguest::SevGuest::new(&opts.sev_guest)));
    }
    Err(AgentError::NoTee(format!(
        "{not_azure}, {} is not a directory (configfs-tsm), {} does not exist, and no --simulate \
         was given",
        opts.configfs_root.display(),
        opts.sev_guest.display()
    )))
}
