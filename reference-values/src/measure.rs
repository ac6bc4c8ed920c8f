//! Expected measurements computed from the boot inputs, so authors write down what a VM
//! *should* measure rather than copying a digest from a VM that may already be compromised.
//!
//! - SEV-SNP launch measurement, through the `sev` crate's launch-digest calculation (the
//!   `RustCrypto` backend, no OpenSSL): OVMF (with its SEV metadata pages), optional direct-boot
//!   kernel, initrd and command line hashes, and one VMSA page per vCPU for the given vCPU model
//!   and guest features.
//! - TDX event log: a CCEL file from a known-good boot of the image (a test TD, or the image
//!   pipeline) replayed by the verifier's own parser, giving the `[tdx.event_log]` expectations
//!   a bundle carries and the RTMRs the log extends to. The names are the ones the broker's
//!   claims use, because they come from the same code.

use std::fmt::Write as _;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;

use sev::measurement::snp::{snp_calc_launch_digest, SnpMeasurementArgs};
use sev::measurement::vcpu_types::CpuType;
use sev::measurement::vmsa::{GuestFeatures, VMMType};
use verifier::tdx::eventlog::measure_event_log;
use verifier::{HexBytes, VerifyError};

use crate::EventLogReference;

/// The default SEV features of the guest: `SNPActive` only (bit 0), as QEMU sets for SNP guests.
pub const DEFAULT_GUEST_FEATURES: u64 = 0x1;

/// Boot inputs of an SEV-SNP guest launched by QEMU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpLaunchInputs {
    /// The OVMF firmware image (an `AmdSev` or `OvmfX64` build with SEV metadata).
    pub ovmf: PathBuf,
    /// Direct-boot kernel; `initrd` and `append` are measured only with a kernel.
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub append: Option<String>,
    /// Number of vCPUs (one VMSA page each).
    pub vcpus: u32,
    /// QEMU vCPU model name, e.g. `EPYC-v4`, `EPYC-Milan`, `EPYC-Genoa`.
    pub vcpu_type: String,
    /// `SEV_FEATURES` of the VMSA (bit 0 `SNPActive`, bit 5 `DebugSwap`, ...).
    pub guest_features: u64,
}

/// Why a measurement could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MeasureError {
    #[error("unknown vCPU type {0:?} (e.g. EPYC-v4, EPYC-Milan, EPYC-Genoa, EPYC-Turin)")]
    VcpuType(String),
    #[error("--vcpus must be at least 1")]
    NoVcpus,
    #[error("--initrd and --append need --kernel")]
    NeedsKernel,
    #[error("measurement failed: {0}")]
    Calculation(String),
    /// The `sev` crate's OVMF parser does unchecked arithmetic on offsets read from the image
    /// and panics on some malformed files; that panic is caught and reported as this error.
    #[error(
        "the firmware image is malformed (its OVMF footer table or SEV metadata is out of bounds)"
    )]
    MalformedFirmware,
}

/// Computes the 48-byte SEV-SNP launch measurement for `inputs`.
pub fn snp_launch_measurement(inputs: &SnpLaunchInputs) -> Result<HexBytes<48>, MeasureError> {
    if inputs.vcpus == 0 {
        return Err(MeasureError::NoVcpus);
    }
    if inputs.kernel.is_none() && (inputs.initrd.is_some() || inputs.append.is_some()) {
        return Err(MeasureError::NeedsKernel);
    }
    let vcpu_type = CpuType::try_from(inputs.vcpu_type.as_str())
        .map_err(|_| MeasureError::VcpuType(inputs.vcpu_type.clone()))?;
    let args = SnpMeasurementArgs {
        vcpus: inputs.vcpus,
        vcpu_type,
        ovmf_file: inputs.ovmf.clone(),
        guest_features: GuestFeatures(inputs.guest_features),
        kernel_file: inputs.kernel.clone(),
        initrd_file: inputs.initrd.clone(),
        append: inputs.append.as_deref(),
        ovmf_hash_str: None,
        vmm_type: Some(VMMType::QEMU),
    };
    // AssertUnwindSafe: the closure owns its arguments and nothing it touches is observed after
    // a panic; the panic is turned into an error rather than crossing into the caller.
    let digest = std::panic::catch_unwind(AssertUnwindSafe(|| snp_calc_launch_digest(args)))
        .map_err(|_| MeasureError::MalformedFirmware)?
        .map_err(|e| MeasureError::Calculation(e.to_string()))?;
    HexBytes::from_hex(&digest.get_hex_ld())
        .map_err(|_| MeasureError::Calculation("digest is not 48 bytes".to_owned()))
}

/// What a TDX event log measured, as a bundle names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxEventLogMeasurement {
    /// RTMR0-3 the log replays to: a quote with this log must carry exactly these.
    pub rtmr: [HexBytes<48>; 4],
    /// The `[tdx.event_log]` expectations: each field the log identifies, one allowed value.
    pub reference: EventLogReference,
    /// How many events extend an RTMR.
    pub events: usize,
}

/// Replays the CCEL bytes `ccel` (see the module docs). Failures are the verifier's
/// `event-log` errors, exactly as a broker would report that log.
pub fn tdx_event_log_reference(ccel: &[u8]) -> Result<TdxEventLogMeasurement, VerifyError> {
    let (rtmr, claims) = measure_event_log(ccel)?;
    Ok(TdxEventLogMeasurement {
        rtmr: rtmr.map(HexBytes),
        reference: EventLogReference {
            kernel_sha384: claims.kernel_sha384.map(|d| vec![d]),
            kernel_authenticode_sha384: claims.kernel_authenticode_sha384.map(|d| vec![d]),
            initrd_sha384: claims.initrd_sha384.map(|d| vec![d]),
            cmdline: claims.cmdline.map(|c| vec![c]),
            cmdline_sha384: claims.cmdline_sha384.map(|d| vec![d]),
            secure_boot: claims.secure_boot,
        },
        events: claims.events.len(),
    })
}

impl TdxEventLogMeasurement {
    /// The TOML an author pastes under a bundle's `[tdx]` table: the RTMRs as comments (the
    /// `rtmr0`..`rtmr3` fields, for bundles that pin the registers themselves) and the
    /// `[tdx.event_log]` table.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        let mut out = format!(
            "# {} measured events; a quote with this log carries these RTMRs:\n",
            self.events
        );
        for (i, r) in self.rtmr.iter().enumerate() {
            // Writing to a String cannot fail.
            let _ = writeln!(out, "# rtmr{i} = [\"{}\"]", r.to_hex());
        }
        out.push_str("[tdx.event_log]\n");
        if self.reference == EventLogReference::default() {
            out.push_str(
                "# the log names no kernel, initrd, command line or SecureBoot value: this table\n\
                 # only requires that evidence carries a log\n",
            );
        }
        out.push_str(&toml::to_string(&self.reference)?);
        Ok(out)
    }
}
