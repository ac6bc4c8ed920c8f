//! Simulated TDX event logs: this module owns building a CCEL event log in the real
//! crypto-agile format (Spec ID event, then `TCG_PCR_EVENT2` records with one SHA-384 digest
//! each, then `0xFF` padding as TDVF leaves it) and the RTMRs a quote must carry for it.
//! The RTMRs come from [`crate::tdx::eventlog`]'s own parser and replay, so the simulator and
//! the verifier cannot disagree about the format.
//!
//! [`SimEvent::direct_grub_boot`] is the boot a policy author's guide shows: a firmware volume,
//! the `SecureBoot` variable, a separator, grub's `linux` command, the kernel file and the
//! kernel command line, with the event types, RTMRs and digests grub and TDVF use.
//! [`SimEvent::direct_kernel_boot`] is QEMU `-kernel -initrd -append` on OVMF/TDVF with no
//! bootloader: the firmware measures the kernel image as a boot application from its QEMU loader
//! file system, and the Linux EFI stub measures the initrd and the load options as tagged events.
//! The simulated kernel is not a PE file, so its "Authenticode" digest is SHA-384 of
//! [`SIM_KERNEL`], a stand-in.

use sha2::{Digest, Sha384};

use crate::tdx::eventlog::{
    ovmf_direct_boot_load_options, parse_event_log, qemu_direct_kernel_image_event, replay,
};
use crate::VerifyError;

/// One event to put in a simulated log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimEvent {
    /// 0..3.
    pub rtmr: u8,
    pub event_type: u32,
    /// The SHA-384 digest extended; for events whose digest covers their data, that digest.
    pub digest: [u8; 48],
    pub data: Vec<u8>,
}

/// The kernel the default simulated boot loads (its bytes stand in for a bzImage).
pub const SIM_KERNEL: &[u8] = b"keylatch simulated kernel image";
/// The kernel command line of the default simulated boot.
pub const SIM_CMDLINE: &str = "/vmlinuz console=ttyS0 root=/dev/vda1 ro";

/// The initrd the simulated direct kernel boot loads.
pub const SIM_INITRD: &[u8] = b"keylatch simulated initrd";
/// The command line (QEMU `-append`) of the simulated direct kernel boot.
pub const SIM_DIRECT_CMDLINE: &str = "console=ttyS0 root=/dev/vda1 ro";

impl SimEvent {
    /// An event whose digest is SHA-384 of `digested` (which may differ from `data`).
    #[must_use]
    pub fn new(rtmr: u8, event_type: u32, digested: &[u8], data: Vec<u8>) -> Self {
        Self { rtmr, event_type, digest: Sha384::digest(digested).into(), data }
    }

    /// grub's string event: data `"<prefix><text>\0"`, digest over `<text>`.
    #[must_use]
    pub fn grub_string(prefix: &str, text: &str) -> Self {
        let mut data = format!("{prefix}{text}").into_bytes();
        data.push(0);
        Self::new(2, 0x0d, text.as_bytes(), data)
    }

    /// An EFI variable event (`EV_EFI_VARIABLE_DRIVER_CONFIG`) whose digest covers its data.
    #[must_use]
    pub fn efi_variable(name: &str, value: &[u8]) -> Self {
        const EFI_GLOBAL_VARIABLE: [u8; 16] = [
            0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03,
            0x2b, 0x8c,
        ];
        let units: Vec<u16> = name.encode_utf16().collect();
        let mut data = EFI_GLOBAL_VARIABLE.to_vec();
        data.extend_from_slice(&(units.len() as u64).to_le_bytes());
        data.extend_from_slice(&(value.len() as u64).to_le_bytes());
        for u in units {
            data.extend_from_slice(&u.to_le_bytes());
        }
        data.extend_from_slice(value);
        let digested = data.clone();
        Self::new(0, 0x8000_0001, &digested, data)
    }

    /// The Linux EFI stub's tagged event (`EV_EVENT_TAG` into PCR9, so RTMR2): tag ID, size,
    /// NUL-terminated description; the digest is over `digested` (the initrd or load options).
    #[must_use]
    pub fn linux_stub_tag(tag: u32, description: &str, digested: &[u8]) -> Self {
        let mut text = description.as_bytes().to_vec();
        text.push(0);
        let mut data = tag.to_le_bytes().to_vec();
        data.extend_from_slice(&u32::try_from(text.len()).unwrap_or(u32::MAX).to_le_bytes());
        data.extend_from_slice(&text);
        Self::new(2, 0x06, digested, data)
    }

    /// QEMU direct kernel boot on OVMF/TDVF (see the module docs), Secure Boot off.
    #[must_use]
    pub fn direct_kernel_boot() -> Vec<Self> {
        let mut fv = vec![29u8];
        fv.extend_from_slice(b"Fv(SIMULATED-TDVF-FIRMWARE)\0\0");
        let action = "Calling EFI Application from Boot Option";
        vec![
            Self::new(0, 0x8000_000a, b"simulated TDVF firmware volume", fv),
            Self::efi_variable("SecureBoot", &[0]),
            Self::new(0, 0x04, &[0; 4], vec![0; 4]),
            Self::new(1, 0x8000_0007, action.as_bytes(), action.as_bytes().to_vec()),
            Self::new(1, 0x04, &[0; 4], vec![0; 4]),
            Self::new(1, 0x8000_0003, SIM_KERNEL, qemu_direct_kernel_image_event()),
            Self::linux_stub_tag(0x8F3B_22EC, "Linux initrd", SIM_INITRD),
            Self::linux_stub_tag(
                0x8F3B_22ED,
                "LOADED_IMAGE::LoadOptions",
                &ovmf_direct_boot_load_options(SIM_DIRECT_CMDLINE, true),
            ),
        ]
    }

    /// The default simulated boot (see the module docs), with Secure Boot on.
    #[must_use]
    pub fn direct_grub_boot() -> Vec<Self> {
        let mut fv = vec![29u8];
        fv.extend_from_slice(b"Fv(SIMULATED-TDVF-FIRMWARE)\0\0");
        vec![
            Self::new(0, 0x8000_000a, b"simulated TDVF firmware volume", fv),
            Self::efi_variable("SecureBoot", &[1]),
            Self::new(0, 0x04, &[0; 4], vec![0; 4]),
            Self::new(1, 0x04, &[0; 4], vec![0; 4]),
            Self::grub_string("grub_cmd: ", &format!("linux {SIM_CMDLINE}")),
            Self::new(2, 0x0d, SIM_KERNEL, b"/vmlinuz\0".to_vec()),
            Self::grub_string("kernel_cmdline: ", SIM_CMDLINE),
        ]
    }
}

/// Builds the CCEL bytes for `events`, padded with `0xFF` to `area` bytes (when larger).
#[must_use]
pub fn event_log(events: &[SimEvent], area: usize) -> Vec<u8> {
    let mut out = Vec::new();
    // TCG_PCR_EVENT header: MR index 0, EV_NO_ACTION, 20 zero bytes, then the Spec ID event.
    let mut spec = b"Spec ID Event03\0".to_vec();
    spec.extend_from_slice(&0u32.to_le_bytes()); // platform class
    spec.extend_from_slice(&[0, 2, 0, 2]); // minor, major, errata, uintnSize
    spec.extend_from_slice(&1u32.to_le_bytes());
    spec.extend_from_slice(&0x000c_u16.to_le_bytes());
    spec.extend_from_slice(&48u16.to_le_bytes());
    spec.push(0); // vendor info size
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&[0; 20]);
    out.extend_from_slice(&u32::try_from(spec.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&spec);
    for e in events {
        out.extend_from_slice(&(u32::from(e.rtmr) + 1).to_le_bytes());
        out.extend_from_slice(&e.event_type.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&0x000c_u16.to_le_bytes());
        out.extend_from_slice(&e.digest);
        out.extend_from_slice(&u32::try_from(e.data.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&e.data);
    }
    if out.len() < area {
        out.resize(area, 0xff);
    }
    out
}

/// The RTMRs a quote must carry for `log` (by the verifier's own parser and replay).
pub fn rtmrs(log: &[u8]) -> Result<[[u8; 48]; 4], VerifyError> {
    Ok(replay(&parse_event_log(log)?))
}
