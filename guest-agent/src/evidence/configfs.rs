//! Linux configfs-tsm (`Documentation/ABI/testing/configfs-tsm`): one report per directory.
//!
//! `mkdir` an entry under the report root; the kernel creates its attributes. Read `provider`
//! (`sev_guest` or `tdx_guest`) and `generation`, write the 64-byte `inblob` (which bumps
//! `generation`), read `outblob` (SNP: the attestation report; TDX: the quote) and, for SNP,
//! `auxblob` (the certificate table), read `generation` again and `rmdir` the entry. If
//! `generation` moved by more than the one write we made, another writer raced us and the
//! blobs may belong to its `inblob`: the whole exchange is retried once, then it is an error.
//!
//! On TDX the evidence also carries the event log, read as guest-components' TDX attester reads
//! it: the whole of `/sys/firmware/acpi/tables/data/CCEL` (the ACPI CCEL log area the firmware
//! filled, padding included), sent unchanged as standard base64 in `cc_eventlog`. No such file
//! (no CCEL table, or a kernel without the export) sends `null`, as upstream does; a file that
//! exists but cannot be read is an error rather than a silent `null`. Upstream falls back to
//! `/dev/mem` at the table's LASA/LAML only for kernels without the sysfs export, which predates
//! configfs-tsm, so on this path that fallback never applies and we do not open `/dev/mem`.
//!
//! The roots are parameters so tests run against a fake tree in a temporary directory, where a
//! thread plays the kernel.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use keylatch_wire::kbs_types::Tee;
use verifier::claims::SnpSigningKey;

use super::certtable::{self, VCEK_GUID, VLEK_GUID};
use super::EvidenceSource;
use crate::AgentError;

/// Where the kernel mounts configfs-tsm reports.
pub const DEFAULT_ROOT: &str = "/sys/kernel/config/tsm/report";

/// Where Linux exports the ACPI CCEL area: the TDX event log.
pub const DEFAULT_CCEL: &str = "/sys/firmware/acpi/tables/data/CCEL";

/// How long to wait for an attribute the kernel is about to produce. On real configfs the
/// attributes exist as soon as `mkdir` returns and `outblob` is produced on read, so this only
/// matters for emulated trees.
const ATTRIBUTE_WAIT: Duration = Duration::from_secs(5);

static ENTRY_COUNTER: AtomicU32 = AtomicU32::new(0);

/// The hardware behind the configfs-tsm provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    SevGuest,
    TdxGuest,
}

/// What one exchange produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsmReport {
    pub provider: Provider,
    pub outblob: Vec<u8>,
    pub auxblob: Option<Vec<u8>>,
}

/// A configfs-tsm evidence source rooted at `root`.
#[derive(Debug, Clone)]
pub struct ConfigfsTsm {
    root: PathBuf,
    provider: Provider,
    /// The CCEL data file sent with TDX evidence.
    ccel: PathBuf,
}

impl ConfigfsTsm {
    /// Probes `root`: makes an entry, reads its provider, removes it. TDX evidence carries the
    /// event log from [`DEFAULT_CCEL`] (see [`ConfigfsTsm::with_ccel`]).
    pub fn probe(root: &Path) -> Result<Self, AgentError> {
        let entry = Entry::create(root)?;
        let provider = entry.provider();
        drop(entry);
        Ok(Self { root: root.to_owned(), provider: provider?, ccel: PathBuf::from(DEFAULT_CCEL) })
    }

    /// Reads the TDX event log from `ccel` instead of [`DEFAULT_CCEL`].
    #[must_use]
    pub fn with_ccel(mut self, ccel: PathBuf) -> Self {
        self.ccel = ccel;
        self
    }

    #[must_use]
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// One report for `inblob`, retried once on a generation race.
    pub fn report(&self, inblob: &[u8; 64]) -> Result<TsmReport, AgentError> {
        match exchange(&self.root, inblob)? {
            Some(r) => Ok(r),
            None => exchange(&self.root, inblob)?.ok_or_else(|| {
                AgentError::Evidence("configfs-tsm: generation did not advance by exactly our write, twice (another writer?)".into())
            }),
        }
    }
}

impl EvidenceSource for ConfigfsTsm {
    fn tee(&self) -> Tee {
        match self.provider {
            Provider::SevGuest => Tee::Snp,
            Provider::TdxGuest => Tee::Tdx,
        }
    }

    fn evidence(&self, report_data: &[u8; 64]) -> Result<serde_json::Value, AgentError> {
        let r = self.report(report_data)?;
        if r.provider != self.provider {
            return Err(AgentError::Evidence(
                "configfs-tsm: provider changed since detection".into(),
            ));
        }
        match r.provider {
            Provider::SevGuest => snp_evidence(&r.outblob, r.auxblob.as_deref()),
            Provider::TdxGuest => Ok(tdx_evidence(&r.outblob, read_ccel(&self.ccel)?.as_deref())),
        }
    }

    fn describe(&self) -> String {
        let (tee, p) = match self.provider {
            Provider::SevGuest => ("snp", "sev_guest"),
            Provider::TdxGuest => ("tdx", "tdx_guest"),
        };
        format!("{tee}: configfs-tsm at {} (provider {p})", self.root.display())
    }
}

/// guest-components' SNP evidence: the report with the signer certificate the host supplied.
pub(crate) fn snp_evidence(
    report: &[u8],
    certs: Option<&[u8]>,
) -> Result<serde_json::Value, AgentError> {
    let parsed = verifier::snp::parse_report(report)
        .map_err(|e| AgentError::Evidence(format!("SNP report from the firmware: {e}")))?;
    let kind = parsed.key_info.signing_key;
    let guid = match kind {
        SnpSigningKey::Vcek => VCEK_GUID,
        SnpSigningKey::Vlek => VLEK_GUID,
    };
    let table = match certs {
        Some(t) if !t.is_empty() => Some(
            certtable::parse(t)
                .ok_or_else(|| AgentError::Evidence("SNP certificate table is malformed".into()))?,
        ),
        _ => None,
    };
    let signer = table.as_ref().and_then(|t| t.iter().find(|e| e.guid == guid));
    let json = verifier::snp::coco_evidence_json(report, signer.map(|e| (kind, e.data.as_slice())))
        .map_err(|e| AgentError::Evidence(format!("SNP evidence JSON: {e}")))?;
    serde_json::from_slice(&json)
        .map_err(|e| AgentError::Evidence(format!("SNP evidence JSON: {e}")))
}

/// The CCEL data file's bytes, `None` when it does not exist (see the module docs).
pub fn read_ccel(path: &Path) -> Result<Option<Vec<u8>>, AgentError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AgentError::Evidence(format!("TDX event log: read {}: {e}", path.display()))),
    }
}

/// guest-components' TDX evidence: `{"cc_eventlog": base64 | null, "quote": base64}`.
pub(crate) fn tdx_evidence(quote: &[u8], cc_eventlog: Option<&[u8]>) -> serde_json::Value {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    serde_json::json!({
        "cc_eventlog": cc_eventlog.map(b64),
        "quote": b64(quote),
    })
}

/// One exchange; `Ok(None)` when `generation` shows a race.
fn exchange(root: &Path, inblob: &[u8; 64]) -> Result<Option<TsmReport>, AgentError> {
    let entry = Entry::create(root)?;
    let provider = entry.provider()?;
    let before = entry.generation()?;
    entry.write("inblob", inblob)?;
    let written = entry.wait_generation_past(before)?;
    let outblob = entry.read("outblob")?;
    let auxblob = match provider {
        Provider::SevGuest => entry.read_optional("auxblob")?,
        Provider::TdxGuest => None,
    };
    let after = entry.generation()?;
    if written != before.wrapping_add(1) || after != written {
        return Ok(None);
    }
    if outblob.is_empty() {
        return Err(AgentError::Evidence("configfs-tsm: empty outblob".into()));
    }
    Ok(Some(TsmReport { provider, outblob, auxblob }))
}

/// A report entry; removed on drop.
struct Entry {
    dir: PathBuf,
}

impl Entry {
    fn create(root: &Path) -> Result<Self, AgentError> {
        let n = ENTRY_COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = root.join(format!("keylatch-{}-{n}", std::process::id()));
        fs::create_dir(&dir).map_err(|e| {
            AgentError::Evidence(format!("configfs-tsm: mkdir {}: {e}", dir.display()))
        })?;
        Ok(Self { dir })
    }

    fn path(&self, attr: &str) -> PathBuf {
        self.dir.join(attr)
    }

    fn read(&self, attr: &str) -> Result<Vec<u8>, AgentError> {
        let deadline = Instant::now() + ATTRIBUTE_WAIT;
        loop {
            match fs::read(self.path(attr)) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                r => {
                    return r.map_err(|e| {
                        AgentError::Evidence(format!("configfs-tsm: read {attr}: {e}"))
                    })
                }
            }
        }
    }

    fn read_optional(&self, attr: &str) -> Result<Option<Vec<u8>>, AgentError> {
        match fs::read(self.path(attr)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(AgentError::Evidence(format!("configfs-tsm: read {attr}: {e}"))),
        }
    }

    fn write(&self, attr: &str, data: &[u8]) -> Result<(), AgentError> {
        fs::write(self.path(attr), data)
            .map_err(|e| AgentError::Evidence(format!("configfs-tsm: write {attr}: {e}")))
    }

    fn provider(&self) -> Result<Provider, AgentError> {
        let raw = self.read("provider")?;
        match String::from_utf8_lossy(&raw).trim() {
            "sev_guest" => Ok(Provider::SevGuest),
            "tdx_guest" => Ok(Provider::TdxGuest),
            other => Err(AgentError::NoTee(format!(
                "configfs-tsm provider {other:?} is neither sev_guest nor tdx_guest"
            ))),
        }
    }

    fn generation(&self) -> Result<u64, AgentError> {
        let raw = self.read("generation")?;
        String::from_utf8_lossy(&raw)
            .trim()
            .parse()
            .map_err(|_| AgentError::Evidence("configfs-tsm: generation is not a number".into()))
    }

    /// The generation once it has moved past `before` (at once on real configfs).
    fn wait_generation_past(&self, before: u64) -> Result<u64, AgentError> {
        let deadline = Instant::now() + ATTRIBUTE_WAIT;
        loop {
            let g = self.generation()?;
            if g != before || Instant::now() >= deadline {
                return Ok(g);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        // On configfs rmdir removes the attributes with it; a fake tree holds regular files.
        if fs::remove_dir(&self.dir).is_err() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
