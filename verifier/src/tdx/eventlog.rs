//! The TDX event log (CCEL): this module owns parsing the TCG PC Client crypto-agile event log
//! that TDVF leaves in the ACPI CCEL area, replaying it into RTMR0-3, and naming what it says
//! was measured ([`EventLogClaims`]).
//!
//! # Format (TCG PC Client Platform Firmware Profile, crypto-agile log)
//! The log starts with one `TCG_PCR_EVENT` (SHA-1 layout: MR index u32, type u32 = `EV_NO_ACTION`,
//! 20-byte digest, size u32, data) whose data is the Spec ID event: signature
//! `"Spec ID Event03\0"`, platform class, version, `uintnSize`, then the table of digest
//! algorithms `{algorithmId u16, digestSize u16}` used by every later event, and vendor info.
//! Then `TCG_PCR_EVENT2` records: MR index u32, type u32, digest count u32, `count` times
//! `{algorithmId u16, digest}` (the size comes from the table, so unknown algorithms are read
//! by their declared size), event size u32, event data. The CCEL area is larger than the log:
//! the rest is filled with `0xFF` (TDVF) or zero bytes. A record whose first word is
//! `0xFFFFFFFF`, or whose MR index and type are both 0, starts that padding, and everything
//! after it must be padding too; any other byte there is an error.
//!
//! # Replay
//! CC measurement register index 1..4 is RTMR 0..3 (index 0 is MRTD, which no event extends).
//! Every event except `EV_NO_ACTION` extends its RTMR: `RTMR = SHA-384(RTMR || digest)`, from
//! 48 zero bytes. The replayed values must equal the quote's RTMRs, or the evidence is invalid
//! ([`Step::EventLog`](crate::Step::EventLog), naming the RTMR).
//!
//! # Bounds
//! At most [`MAX_EVENT_LOG_LEN`] bytes, [`MAX_EVENTS`] events, [`MAX_ALGORITHMS`] algorithms of
//! at most 64 digest bytes each, each algorithm at most once per event, and every event must
//! carry a SHA-384 digest. Truncation, absurd counts and unknown algorithms fail closed.
//!
//! # What the claims trust
//! Only the digests are bound to the quote (through the replay). Event data is not, so a claim
//! taken from event data is set only when the event's SHA-384 digest is the digest of that data
//! (`cmdline`, `efi_variables`, `secure_boot`, grub's commands), and the kernel and initrd are
//! found by position or by label:
//! - grub: the file event right after a verified `grub_cmd: linux ...` or `grub_cmd: initrd ...`
//!   command (`kernel_sha384` is then the SHA-384 of the kernel file);
//! - direct kernel boot by OVMF/TDVF (QEMU `-kernel`, no bootloader): the firmware loads the
//!   kernel from its QEMU loader file system and measures it as an
//!   `EV_EFI_BOOT_SERVICES_APPLICATION` into RTMR1 whose `UEFI_IMAGE_LOAD_EVENT` device path is
//!   exactly `VenMedia(1428F772-B64A-441E-B8C3-9EBDD7F893C7)/File(kernel)`. That digest is the
//!   PE/COFF (Authenticode) image hash, not a file hash, so it is its own claim,
//!   `kernel_authenticode_sha384`;
//! - the Linux EFI stub's `EV_EVENT_TAG` events (PCR9, so RTMR2): tag `0x8F3B22EC` is the initrd
//!   (digest over the initrd bytes: `initrd_sha384`), tag `0x8F3B22ED` the `LoadOptions` (digest
//!   over the UTF-16LE load options exactly as the firmware passed them, terminating NUL
//!   included; OVMF's direct boot prefixes `initrd=initrd ` when it has an initrd):
//!   `cmdline_sha384`. These are the kernel's `INITRD_EVENT_TAG_ID` and
//!   `LOAD_OPTIONS_EVENT_TAG_ID` (drivers/firmware/efi/libstub/efistub.h).
//!
//! A label is only what the log says, so where it names two different digests (two events
//! labelled as the direct-boot kernel, two stub initrd events) the claim is left out rather than
//! picking one. `description` in the event list is informational only.

use std::collections::BTreeMap;

use sha2::{Digest, Sha384};

use crate::claims::{EventLogClaims, MeasuredEvent};
use crate::error::{AtStep, Reason, Step, VerifyError};
use crate::reader::Reader;
use crate::HexBytes;

/// The largest event log accepted (the CCEL area TDVF reserves is 64 KiB to 1 MiB).
pub const MAX_EVENT_LOG_LEN: usize = 4 << 20;
/// The most events one log may hold.
pub const MAX_EVENTS: usize = 8192;
/// The most digest algorithms the Spec ID event may declare.
pub const MAX_ALGORITHMS: usize = 8;
/// Longest description kept per event in the claims (bytes of text).
const MAX_DESCRIPTION: usize = 256;

const EV_NO_ACTION: u32 = 0x0000_0003;
const EV_SEPARATOR: u32 = 0x0000_0004;
const EV_EVENT_TAG: u32 = 0x0000_0006;
const EV_PLATFORM_CONFIG_FLAGS: u32 = 0x0000_000a;
const EV_IPL: u32 = 0x0000_000d;
const EV_EFI_VARIABLE_DRIVER_CONFIG: u32 = 0x8000_0001;
const EV_EFI_VARIABLE_BOOT: u32 = 0x8000_0002;
const EV_EFI_BOOT_SERVICES_APPLICATION: u32 = 0x8000_0003;
const EV_EFI_GPT_EVENT: u32 = 0x8000_0006;
const EV_EFI_ACTION: u32 = 0x8000_0007;
const EV_EFI_PLATFORM_FIRMWARE_BLOB: u32 = 0x8000_0008;
const EV_EFI_HANDOFF_TABLES: u32 = 0x8000_0009;
const EV_EFI_PLATFORM_FIRMWARE_BLOB2: u32 = 0x8000_000a;
const EV_EFI_HANDOFF_TABLES2: u32 = 0x8000_000b;
const EV_EFI_VARIABLE_BOOT2: u32 = 0x8000_000c;
const EV_EFI_VARIABLE_AUTHORITY: u32 = 0x8000_00e0;

/// TPM algorithm IDs whose digest size is fixed by the algorithm.
const TPM_ALG_SHA1: u16 = 0x0004;
const TPM_ALG_SHA256: u16 = 0x000b;
const TPM_ALG_SHA384: u16 = 0x000c;
const TPM_ALG_SHA512: u16 = 0x000d;
const TPM_ALG_SM3_256: u16 = 0x0012;

const SPEC_ID_SIGNATURE: &[u8; 16] = b"Spec ID Event03\0";

/// Linux EFI stub tagged events (`EV_EVENT_TAG`): the initrd and the command line.
const LINUX_INITRD_TAG: u32 = 0x8F3B_22EC;
const LINUX_LOAD_OPTIONS_TAG: u32 = 0x8F3B_22ED;

/// The device path OVMF's QEMU loader passes to `LoadImage` for a direct-boot kernel:
/// `VenMedia(QEMU_KERNEL_LOADER_FS_MEDIA_GUID)` (type 4, subtype 3, 20 bytes),
/// `File("kernel")` (type 4, subtype 4, 4 + 14 bytes of UTF-16LE with its NUL), end node.
const QEMU_DIRECT_KERNEL_PATH: [u8; 42] = [
    0x04, 0x03, 0x14, 0x00, 0x72, 0xf7, 0x28, 0x14, 0x4a, 0xb6, 0x1e, 0x44, 0xb8, 0xc3, 0x9e, 0xbd,
    0xd7, 0xf8, 0x93, 0xc7, 0x04, 0x04, 0x12, 0x00, b'k', 0, b'e', 0, b'r', 0, b'n', 0, b'e', 0,
    b'l', 0, 0, 0, 0x7f, 0xff, 0x04, 0x00,
];

/// The quote's RTMR names, for errors.
const RTMR_NAMES: [&str; 4] = [
    "RTMR0 (event log replay)",
    "RTMR1 (event log replay)",
    "RTMR2 (event log replay)",
    "RTMR3 (event log replay)",
];

/// One event of the log, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// CC measurement register index: 1..4 is RTMR 0..3.
    pub mr_index: u32,
    pub event_type: u32,
    /// The SHA-384 digest (every event must carry one).
    pub sha384: [u8; 48],
    pub data: Vec<u8>,
}

/// A parsed event log: the events after the Spec ID event, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLog {
    /// `(algorithmId, digestSize)` from the Spec ID event.
    pub algorithms: Vec<(u16, u16)>,
    pub events: Vec<Event>,
}

/// Parses a CCEL event log (the bytes of `/sys/firmware/acpi/tables/data/CCEL`, or the log
/// alone). Failures are [`Step::EventLog`].
pub fn parse_event_log(bytes: &[u8]) -> Result<EventLog, VerifyError> {
    parse(bytes).at(Step::EventLog)
}

/// Replays `log` into RTMR0-3 (see the module docs).
#[must_use]
pub fn replay(log: &EventLog) -> [[u8; 48]; 4] {
    let mut rtmr = [[0u8; 48]; 4];
    for e in &log.events {
        if e.event_type == EV_NO_ACTION {
            continue;
        }
        let Some(reg) = rtmr_index(e.mr_index).and_then(|i| rtmr.get_mut(i)) else { continue };
        let next: [u8; 48] =
            Sha384::new().chain_update(*reg).chain_update(e.sha384).finalize().into();
        *reg = next;
    }
    rtmr
}

/// Parses `bytes` and replays it: the RTMRs it extends to and what it says was measured, before
/// any quote is compared (what a policy author reads off a known-good log).
pub fn measure_event_log(bytes: &[u8]) -> Result<([[u8; 48]; 4], EventLogClaims), VerifyError> {
    let log = parse_event_log(bytes)?;
    Ok((replay(&log), claims(&log)))
}

/// Parses `bytes`, replays it, compares with `quote_rtmr` and returns what it measured.
pub fn check_event_log(
    bytes: &[u8],
    quote_rtmr: &[[u8; 48]; 4],
) -> Result<EventLogClaims, VerifyError> {
    let (replayed, claims) = measure_event_log(bytes)?;
    for ((name, want), got) in RTMR_NAMES.iter().zip(quote_rtmr).zip(&replayed) {
        if want != got {
            return Err(VerifyError::new(
                Step::EventLog,
                Reason::Mismatch {
                    what: name,
                    expected: hex::encode(want),
                    actual: hex::encode(got),
                },
            ));
        }
    }
    Ok(claims)
}

/// The `LoadOptions` OVMF's direct kernel boot passes to the kernel, which the Linux EFI stub
/// measures (`cmdline_sha384` is their SHA-384): UTF-16LE of `initrd=initrd ` (when QEMU was
/// given an initrd) followed by the command line, then a UTF-16 NUL. No command line and no
/// initrd is no load options at all (empty).
#[must_use]
pub fn ovmf_direct_boot_load_options(cmdline: &str, has_initrd: bool) -> Vec<u8> {
    let text = format!("{}{cmdline}", if has_initrd { "initrd=initrd " } else { "" });
    if text.is_empty() {
        return Vec::new();
    }
    text.encode_utf16().chain([0]).flat_map(u16::to_le_bytes).collect()
}

/// `UEFI_IMAGE_LOAD_EVENT` data for OVMF's direct-boot kernel (address and lengths zero).
#[must_use]
pub fn qemu_direct_kernel_image_event() -> Vec<u8> {
    let mut data = vec![0u8; 24];
    data.extend_from_slice(&(QEMU_DIRECT_KERNEL_PATH.len() as u64).to_le_bytes());
    data.extend_from_slice(&QEMU_DIRECT_KERNEL_PATH);
    data
}

fn rtmr_index(mr_index: u32) -> Option<usize> {
    match mr_index {
        1..=4 => usize::try_from(mr_index - 1).ok(),
        _ => None,
    }
}

fn known_size(alg: u16) -> Option<u16> {
    match alg {
        TPM_ALG_SHA1 => Some(20),
        TPM_ALG_SHA256 | TPM_ALG_SM3_256 => Some(32),
        TPM_ALG_SHA384 => Some(48),
        TPM_ALG_SHA512 => Some(64),
        _ => None,
    }
}

fn parse(bytes: &[u8]) -> Result<EventLog, Reason> {
    if bytes.len() > MAX_EVENT_LOG_LEN {
        return Err(Reason::InvalidValue { what: "event log", why: "longer than 4 MiB" });
    }
    let mut r = Reader::new("event log", bytes);
    let algorithms = spec_id_event(&mut r)?;
    let mut events = Vec::new();
    loop {
        if is_padding_start(&r) {
            let rest = r.rest();
            let fill = rest.first().copied().unwrap_or(0xff);
            if !matches!(fill, 0x00 | 0xff) || rest.iter().any(|b| *b != fill) {
                return Err(Reason::InvalidValue {
                    what: "event log padding",
                    why: "bytes after the last event must all be 0xFF or all zero",
                });
            }
            break;
        }
        if events.len() >= MAX_EVENTS {
            return Err(Reason::InvalidValue { what: "event log", why: "more than 8192 events" });
        }
        events.push(event(&mut r, &algorithms)?);
    }
    Ok(EventLog { algorithms, events })
}

/// True at the end of the log: no bytes left, a first word of `0xFFFFFFFF`, or an MR index
/// and type both zero (no event has either: MRTD is never extended by the log).
fn is_padding_start(r: &Reader<'_>) -> bool {
    let mut peek = r.clone();
    if peek.remaining() == 0 {
        return true;
    }
    match (peek.u32_le(), peek.u32_le()) {
        (Ok(0xffff_ffff), _) | (Ok(0), Ok(0)) => true,
        (Ok(_), Ok(_)) => false,
        // Fewer than 8 bytes left: the padding check decides.
        _ => true,
    }
}

fn spec_id_event(r: &mut Reader<'_>) -> Result<Vec<(u16, u16)>, Reason> {
    let _mr_index = r.u32_le()?;
    if r.u32_le()? != EV_NO_ACTION {
        return Err(Reason::InvalidValue {
            what: "event log first event",
            why: "must be the EV_NO_ACTION Spec ID event",
        });
    }
    let _sha1 = r.take(20)?;
    let size =
        usize::try_from(r.u32_le()?).map_err(|_| Reason::Malformed { what: "Spec ID event" })?;
    let mut s = r.sub("Spec ID event", size)?;
    if s.take_array::<16>()? != *SPEC_ID_SIGNATURE {
        return Err(Reason::InvalidValue {
            what: "Spec ID event signature",
            why: "expected \"Spec ID Event03\" (crypto-agile log)",
        });
    }
    let _platform_class = s.u32_le()?;
    let _minor = s.u8()?;
    if s.u8()? != 2 {
        return Err(Reason::UnsupportedVersion { what: "Spec ID event spec major", version: 0 });
    }
    let _errata = s.u8()?;
    let _uintn = s.u8()?;
    let count = usize::try_from(s.u32_le()?).unwrap_or(usize::MAX);
    if count == 0 || count > MAX_ALGORITHMS {
        return Err(Reason::InvalidValue {
            what: "Spec ID event numberOfAlgorithms",
            why: "must be 1 to 8",
        });
    }
    let mut algorithms: Vec<(u16, u16)> = Vec::with_capacity(count);
    for _ in 0..count {
        let (alg, size) = (s.u16_le()?, s.u16_le()?);
        if size == 0 || size > 64 || known_size(alg).is_some_and(|k| k != size) {
            return Err(Reason::InvalidValue {
                what: "Spec ID event digest size",
                why: "zero, over 64, or not the algorithm's size",
            });
        }
        if algorithms.iter().any(|(a, _)| *a == alg) {
            return Err(Reason::InvalidValue {
                what: "Spec ID event algorithms",
                why: "an algorithm is listed twice",
            });
        }
        algorithms.push((alg, size));
    }
    if !algorithms.iter().any(|(a, _)| *a == TPM_ALG_SHA384) {
        return Err(Reason::Missing { what: "SHA-384 in the event log's Spec ID event" });
    }
    let vendor = usize::from(s.u8()?);
    s.take(vendor)?;
    s.expect_end()?;
    Ok(algorithms)
}

fn event(r: &mut Reader<'_>, algorithms: &[(u16, u16)]) -> Result<Event, Reason> {
    let mr_index = r.u32_le()?;
    let event_type = r.u32_le()?;
    if event_type != EV_NO_ACTION && rtmr_index(mr_index).is_none() {
        return Err(Reason::InvalidValue {
            what: "event log MR index",
            why: "a measured event must target RTMR 0-3 (index 1-4)",
        });
    }
    let count = usize::try_from(r.u32_le()?).unwrap_or(usize::MAX);
    if count == 0 || count > algorithms.len() {
        return Err(Reason::InvalidValue {
            what: "event log digest count",
            why: "zero, or more than the Spec ID event's algorithms",
        });
    }
    let mut seen: Vec<u16> = Vec::with_capacity(count);
    let mut sha384 = None;
    for _ in 0..count {
        let alg = r.u16_le()?;
        let size = algorithms.iter().find(|(a, _)| *a == alg).map(|(_, s)| *s).ok_or(
            Reason::UnsupportedAlgorithm { what: "event log digest (not in Spec ID event)" },
        )?;
        if seen.contains(&alg) {
            return Err(Reason::InvalidValue {
                what: "event log digests",
                why: "an algorithm appears twice in one event",
            });
        }
        seen.push(alg);
        let digest = r.take(usize::from(size))?;
        if alg == TPM_ALG_SHA384 {
            let mut d = [0u8; 48];
            d.copy_from_slice(digest);
            sha384 = Some(d);
        }
    }
    let sha384 = sha384.ok_or(Reason::Missing { what: "SHA-384 digest of an event" })?;
    let size = usize::try_from(r.u32_le()?).unwrap_or(usize::MAX);
    let data = r.take(size)?.to_vec();
    Ok(Event { mr_index, event_type, sha384, data })
}

/// The name of an event type as the TCG spec spells it, or its number in hex.
fn type_name(t: u32) -> String {
    let name = match t {
        0x0000_0000 => "EV_PREBOOT_CERT",
        0x0000_0001 => "EV_POST_CODE",
        EV_NO_ACTION => "EV_NO_ACTION",
        EV_SEPARATOR => "EV_SEPARATOR",
        0x0000_0005 => "EV_ACTION",
        EV_EVENT_TAG => "EV_EVENT_TAG",
        0x0000_0007 => "EV_S_CRTM_CONTENTS",
        0x0000_0008 => "EV_S_CRTM_VERSION",
        0x0000_0009 => "EV_CPU_MICROCODE",
        EV_PLATFORM_CONFIG_FLAGS => "EV_PLATFORM_CONFIG_FLAGS",
        0x0000_000b => "EV_TABLE_OF_DEVICES",
        0x0000_000c => "EV_COMPACT_HASH",
        EV_IPL => "EV_IPL",
        0x0000_000e => "EV_IPL_PARTITION_DATA",
        0x0000_000f => "EV_NONHOST_CODE",
        0x0000_0010 => "EV_NONHOST_CONFIG",
        0x0000_0011 => "EV_NONHOST_INFO",
        0x0000_0012 => "EV_OMIT_BOOT_DEVICE_EVENTS",
        EV_EFI_VARIABLE_DRIVER_CONFIG => "EV_EFI_VARIABLE_DRIVER_CONFIG",
        EV_EFI_VARIABLE_BOOT => "EV_EFI_VARIABLE_BOOT",
        EV_EFI_BOOT_SERVICES_APPLICATION => "EV_EFI_BOOT_SERVICES_APPLICATION",
        0x8000_0004 => "EV_EFI_BOOT_SERVICES_DRIVER",
        0x8000_0005 => "EV_EFI_RUNTIME_SERVICES_DRIVER",
        EV_EFI_GPT_EVENT => "EV_EFI_GPT_EVENT",
        EV_EFI_ACTION => "EV_EFI_ACTION",
        EV_EFI_PLATFORM_FIRMWARE_BLOB => "EV_EFI_PLATFORM_FIRMWARE_BLOB",
        EV_EFI_HANDOFF_TABLES => "EV_EFI_HANDOFF_TABLES",
        EV_EFI_PLATFORM_FIRMWARE_BLOB2 => "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
        EV_EFI_HANDOFF_TABLES2 => "EV_EFI_HANDOFF_TABLES2",
        EV_EFI_VARIABLE_BOOT2 => "EV_EFI_VARIABLE_BOOT2",
        0x8000_0010 => "EV_EFI_HCRTM_EVENT",
        EV_EFI_VARIABLE_AUTHORITY => "EV_EFI_VARIABLE_AUTHORITY",
        0x8000_00e1 => "EV_EFI_SPDM_FIRMWARE_BLOB",
        0x8000_00e2 => "EV_EFI_SPDM_FIRMWARE_CONFIG",
        _ => return format!("{t:#010x}"),
    };
    name.to_owned()
}

/// Printable text of event data: up to the first NUL, lossy UTF-8, at most 256 bytes.
fn text(data: &[u8]) -> String {
    let end = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let bytes = data.get(..end.min(MAX_DESCRIPTION)).unwrap_or_default();
    String::from_utf8_lossy(bytes).chars().filter(|c| !c.is_control() || *c == '\n').collect()
}

/// `UEFI_VARIABLE_DATA`: GUID, name length (chars, u64), data length (u64), UTF-16 name, data.
fn efi_variable(data: &[u8]) -> Option<(String, &[u8])> {
    let mut r = Reader::new("UEFI_VARIABLE_DATA", data);
    r.take(16).ok()?;
    let name_len = usize::try_from(r.u64_le().ok()?).ok()?;
    let data_len = usize::try_from(r.u64_le().ok()?).ok()?;
    let name = r.take(name_len.checked_mul(2)?).ok()?;
    let value = r.take(data_len).ok()?;
    let units: Vec<u16> = name
        .chunks_exact(2)
        .filter_map(|c| <[u8; 2]>::try_from(c).ok().map(u16::from_le_bytes))
        .collect();
    let name = String::from_utf16(&units).ok()?;
    Some((name.trim_end_matches('\0').to_owned(), value))
}

/// A description that starts with a length byte (`EV_EFI_PLATFORM_FIRMWARE_BLOB2`,
/// `EV_EFI_HANDOFF_TABLES2`).
fn length_prefixed_text(data: &[u8]) -> String {
    let mut r = Reader::new("event description", data);
    let Ok(len) = r.u8() else { return String::new() };
    r.take(usize::from(len)).map(text).unwrap_or_default()
}

/// `UEFI_IMAGE_LOAD_EVENT`: image address, length and link-time address (u64 each), device path
/// length (u64), device path. True when the path is OVMF's direct-boot kernel.
fn is_qemu_direct_kernel(data: &[u8]) -> bool {
    let mut r = Reader::new("UEFI_IMAGE_LOAD_EVENT", data);
    let path = r.take(24).and_then(|_| r.u64_le()).ok().and_then(|n| usize::try_from(n).ok());
    path.and_then(|n| r.take(n).ok()).is_some_and(|p| p == QEMU_DIRECT_KERNEL_PATH)
        && r.remaining() == 0
}

/// One digest a label names, or none when labels disagree.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Labelled {
    Unseen,
    One([u8; 48]),
    Conflicting,
}

impl Labelled {
    fn see(&mut self, digest: [u8; 48]) {
        *self = match *self {
            Self::Unseen => Self::One(digest),
            Self::One(d) if d == digest => Self::One(d),
            _ => Self::Conflicting,
        };
    }

    fn get(self) -> Option<HexBytes<48>> {
        match self {
            Self::One(d) => Some(HexBytes(d)),
            Self::Unseen | Self::Conflicting => None,
        }
    }
}

/// `TCG_PCClientTaggedEvent`: tag ID u32, size u32, data.
fn tagged_event(data: &[u8]) -> Option<(u32, &[u8])> {
    let mut r = Reader::new("tagged event", data);
    let id = r.u32_le().ok()?;
    let size = usize::try_from(r.u32_le().ok()?).ok()?;
    Some((id, r.take(size).ok()?))
}

fn describe(e: &Event) -> String {
    match e.event_type {
        EV_EFI_VARIABLE_DRIVER_CONFIG
        | EV_EFI_VARIABLE_BOOT
        | EV_EFI_VARIABLE_BOOT2
        | EV_EFI_VARIABLE_AUTHORITY => efi_variable(&e.data).map(|(n, _)| n).unwrap_or_default(),
        EV_EFI_PLATFORM_FIRMWARE_BLOB2 | EV_EFI_HANDOFF_TABLES2 => length_prefixed_text(&e.data),
        EV_EFI_PLATFORM_FIRMWARE_BLOB => "firmware blob".to_owned(),
        EV_EFI_HANDOFF_TABLES => "handoff tables".to_owned(),
        EV_EFI_BOOT_SERVICES_APPLICATION if is_qemu_direct_kernel(&e.data) => {
            "direct-boot kernel (QEMU loader)".to_owned()
        }
        EV_EFI_BOOT_SERVICES_APPLICATION => "boot services application".to_owned(),
        EV_EFI_GPT_EVENT => "GPT partition table".to_owned(),
        EV_SEPARATOR => "separator".to_owned(),
        EV_EVENT_TAG => match tagged_event(&e.data) {
            Some((LINUX_INITRD_TAG, _)) => "Linux initrd".to_owned(),
            Some((LINUX_LOAD_OPTIONS_TAG, _)) => "Linux LOADED_IMAGE::LoadOptions".to_owned(),
            Some((id, _)) => format!("tag {id:#010x}"),
            None => String::new(),
        },
        _ => text(&e.data),
    }
}

/// Whether the event's SHA-384 digest is the digest of `bytes` (data the claims may trust).
fn covers(e: &Event, bytes: &[u8]) -> bool {
    <[u8; 48]>::from(Sha384::digest(bytes)) == e.sha384
}

/// grub's string events: `"<prefix>: <text>\0"`, the digest over `<text>`.
fn grub_string<'a>(e: &'a Event, prefix: &str) -> Option<&'a str> {
    if e.event_type != EV_IPL {
        return None;
    }
    let end = e.data.iter().position(|b| *b == 0).unwrap_or(e.data.len());
    let s = std::str::from_utf8(e.data.get(..end)?).ok()?;
    let body = s.strip_prefix(prefix)?;
    covers(e, body.as_bytes()).then_some(body)
}

/// What the next file event in the same RTMR is, after a grub `linux` or `initrd` command.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    Nothing,
    Kernel(u32),
    Initrd(u32),
}

/// The claims of a replayed log (see the module docs for what each one trusts).
fn claims(log: &EventLog) -> EventLogClaims {
    let mut out = EventLogClaims {
        events: Vec::new(),
        kernel_sha384: None,
        kernel_authenticode_sha384: None,
        initrd_sha384: None,
        cmdline: None,
        cmdline_sha384: None,
        efi_variables: BTreeMap::new(),
        secure_boot: None,
    };
    let mut conflicting: Vec<String> = Vec::new();
    let mut expect = Expect::Nothing;
    let (mut direct_kernel, mut stub_initrd, mut stub_options) =
        (Labelled::Unseen, Labelled::Unseen, Labelled::Unseen);
    for e in &log.events {
        let Some(rtmr) = rtmr_index(e.mr_index) else { continue };
        if e.event_type == EV_NO_ACTION {
            continue;
        }
        out.events.push(MeasuredEvent {
            rtmr: u8::try_from(rtmr).unwrap_or(u8::MAX),
            event_type: type_name(e.event_type),
            digest: HexBytes(e.sha384),
            description: describe(e),
        });
        match e.event_type {
            EV_EFI_VARIABLE_DRIVER_CONFIG | EV_EFI_VARIABLE_BOOT | EV_EFI_VARIABLE_BOOT2
                if covers(e, &e.data) =>
            {
                if let Some((name, value)) = efi_variable(&e.data) {
                    if name == "SecureBoot" {
                        out.secure_boot = value.first().map(|v| *v == 1);
                    }
                    match out.efi_variables.get(&name) {
                        Some(d) if d.0 != e.sha384 => conflicting.push(name),
                        _ => {
                            out.efi_variables.insert(name, HexBytes(e.sha384));
                        }
                    }
                }
            }
            EV_EFI_BOOT_SERVICES_APPLICATION
                if e.mr_index == 2 && is_qemu_direct_kernel(&e.data) =>
            {
                direct_kernel.see(e.sha384);
            }
            EV_EVENT_TAG => match tagged_event(&e.data) {
                Some((LINUX_INITRD_TAG, _)) => stub_initrd.see(e.sha384),
                Some((LINUX_LOAD_OPTIONS_TAG, _)) => stub_options.see(e.sha384),
                _ => {}
            },
            EV_IPL => {
                if let Some(cmd) = grub_string(e, "grub_cmd: ") {
                    let verb = cmd.split_whitespace().next().unwrap_or("");
                    expect = match verb {
                        "linux" | "linuxefi" | "linux16" => Expect::Kernel(e.mr_index),
                        "initrd" | "initrdefi" | "initrd16" => Expect::Initrd(e.mr_index),
                        _ => Expect::Nothing,
                    };
                    continue;
                }
                if let Some(cmdline) = grub_string(e, "kernel_cmdline: ") {
                    out.cmdline = Some(cmdline.to_owned());
                    out.cmdline_sha384 = Some(HexBytes(e.sha384));
                    continue;
                }
                match expect {
                    Expect::Kernel(mr) if mr == e.mr_index => {
                        out.kernel_sha384.get_or_insert(HexBytes(e.sha384));
                    }
                    Expect::Initrd(mr) if mr == e.mr_index => {
                        out.initrd_sha384.get_or_insert(HexBytes(e.sha384));
                    }
                    _ => {}
                }
                expect = Expect::Nothing;
            }
            _ => {}
        }
    }
    out.kernel_authenticode_sha384 = direct_kernel.get();
    if out.initrd_sha384.is_none() {
        out.initrd_sha384 = stub_initrd.get();
    }
    if out.cmdline_sha384.is_none() {
        out.cmdline_sha384 = stub_options.get();
    }
    for name in conflicting {
        out.efi_variables.remove(&name);
        if name == "SecureBoot" {
            out.secure_boot = None;
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // reason: tests fail loudly on purpose
mod tests {
    use super::*;

    #[test]
    fn ccel_known_algorithm_with_wrong_size_is_refused() {
        assert_eq!(known_size(TPM_ALG_SHA384), Some(48));
        assert_eq!(known_size(0x1234), None);
    }

    #[test]
    fn ccel_type_names_follow_the_tcg_spec() {
        assert_eq!(type_name(EV_IPL), "EV_IPL");
        assert_eq!(type_name(0x1234_5678), "0x12345678");
    }
}
