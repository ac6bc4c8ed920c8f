//! The offline export of an audit log: what `keylatch audit fetch` writes and `keylatch audit
//! verify` / `query` read. Reading accepts any bytes and never panics; everything in an export is
//! untrusted until `auditor::verify_log_dir` has tied it to signed checkpoints.
//!
//! Layout of an export directory (format `keylatch-audit-export/1`):
//!
//! ```text
//! DIR/
//!   manifest.json   optional. {"format":"keylatch-audit-export/1",
//!                              "start":{"size":N,"frontier":["<hex>",...]}}
//!                   A partial export (an archived range, or a log whose older entries were
//!                   pruned) starts at leaf N; `frontier` holds the roots of the complete subtrees
//!                   covering leaves [0, N), largest first (one per set bit of N). Absent: N = 0.
//!   entries.jsonl   one line per entry in index order, starting at N: the RFC 8785 form of
//!                   {"entry":{...AuditEntry...},"index":I}, each line ending in "\n".
//!                   The leaf hashed for entry I is SHA-256(0x00 || JCS(entry)).
//!   checkpoints/    one signed checkpoint (C2SP tlog-checkpoint note) per file, any file name;
//!                   `fetch` names them <size, 20 digits>.txt.
//!   proofs/         consistency proofs, one JSON file each (any name):
//!                   {"first":M,"second":N,"hashes":["<hex>",...]}.
//!                   `required_links` says which (M, N) pairs a verifier needs.
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::entry::AuditEntry;
use crate::jcs;
use crate::merkle::compact::Frontier;
use crate::merkle::{leaf_hash, Hash};

/// The manifest's format tag.
pub const FORMAT: &str = "keylatch-audit-export/1";
/// Largest single file the directory reader accepts (entries.jsonl excepted).
const MAX_SMALL_FILE: u64 = 1 << 20;

/// One entry as exported: its index, its leaf hash, and the parsed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedEntry {
    /// Index claimed by the line.
    pub index: u64,
    /// `SHA-256(0x00 || JCS(entry))` over the entry exactly as exported.
    pub leaf: Hash,
    /// The entry.
    pub entry: AuditEntry,
}

/// A signed checkpoint file, unparsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointFile {
    /// File name (reported in divergences).
    pub name: String,
    /// Note bytes.
    pub text: Vec<u8>,
}

/// A consistency proof between two tree sizes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    /// Older size.
    pub first: u64,
    /// Newer size.
    pub second: u64,
    /// Proof hashes, hex.
    #[serde(with = "hex_hashes")]
    pub hashes: Vec<Hash>,
}

/// An export, read into memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogExport {
    /// Frontier of the leaves before the first exported entry (empty for a full export).
    pub start: Frontier,
    /// Entries in file order.
    pub entries: Vec<ExportedEntry>,
    /// Checkpoint files, sorted by name.
    pub checkpoints: Vec<CheckpointFile>,
    /// Consistency proofs.
    pub proofs: Vec<ConsistencyProof>,
}

/// Why an export could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// Path concerned.
        path: String,
        /// The I/O error.
        message: String,
    },
    /// manifest.json is malformed.
    #[error("manifest.json: {0}")]
    Manifest(String),
    /// A line of entries.jsonl is malformed (1-based line number).
    #[error("entries.jsonl line {line}: {reason}")]
    Entry {
        /// Line number, from 1.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A proof file is malformed.
    #[error("proof {name}: {reason}")]
    Proof {
        /// File name.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    format: String,
    start: ManifestStart,
}

#[derive(Serialize, Deserialize)]
struct ManifestStart {
    size: u64,
    #[serde(with = "hex_hashes")]
    frontier: Vec<Hash>,
}

mod hex_hashes {
    use crate::merkle::Hash;
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(hashes: &[Hash], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(hashes.iter().map(Hash::to_hex))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Hash>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|h| Hash::from_hex(h).ok_or_else(|| D::Error::custom("hash is not 64 hex digits")))
            .collect()
    }
}

/// One canonical `entries.jsonl` line (with its trailing newline) for `entry` at `index`.
pub fn entry_line(index: u64, entry: &AuditEntry) -> Result<Vec<u8>, jcs::JcsError> {
    let value = serde_json::json!({ "entry": serde_json::to_value(entry).map_err(|e| jcs::JcsError::Serialize(e.to_string()))?, "index": index });
    let mut line = jcs::canonicalize(&value)?;
    line.push(b'\n');
    Ok(line)
}

/// The same line built from stored canonical entry bytes (what a broker keeps), without
/// re-serializing: `{"entry":` canonical `,"index":` I `}` is already RFC 8785 form, since
/// "entry" sorts before "index".
#[must_use]
pub fn entry_line_from_canonical(index: u64, canonical: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(canonical.len() + 32);
    line.extend_from_slice(b"{\"entry\":");
    line.extend_from_slice(canonical);
    line.extend_from_slice(format!(",\"index\":{index}}}\n").as_bytes());
    line
}

/// Parses `entries.jsonl`: lines ending in `\n` (the last newline may be missing), none empty.
pub fn parse_entries(jsonl: &[u8]) -> Result<Vec<ExportedEntry>, ExportError> {
    let body = jsonl.strip_suffix(b"\n").unwrap_or(jsonl);
    if body.is_empty() {
        return Ok(Vec::new());
    }
    body.split(|&b| b == b'\n').enumerate().map(|(i, raw)| parse_entry_line(i + 1, raw)).collect()
}

fn parse_entry_line(line: usize, raw: &[u8]) -> Result<ExportedEntry, ExportError> {
    let err = |reason: String| ExportError::Entry { line, reason };
    let value: Value = serde_json::from_slice(raw).map_err(|e| err(e.to_string()))?;
    let Value::Object(mut map) = value else {
        return Err(err("not a JSON object".into()));
    };
    let index = map
        .get("index")
        .and_then(Value::as_u64)
        .ok_or_else(|| err("no integer \"index\"".into()))?;
    let entry_value = map.remove("entry").ok_or_else(|| err("no \"entry\"".into()))?;
    // The leaf is the canonical form of the entry exactly as exported (unknown members included),
    // so an edit anywhere in it changes the hash.
    let canonical = jcs::canonicalize(&entry_value).map_err(|e| err(e.to_string()))?;
    let entry: AuditEntry =
        serde_json::from_value(entry_value).map_err(|e| err(format!("entry: {e}")))?;
    Ok(ExportedEntry { index, leaf: leaf_hash(&canonical), entry })
}

/// Parses `manifest.json` into the starting frontier.
pub fn parse_manifest(bytes: &[u8]) -> Result<Frontier, ExportError> {
    let manifest: Manifest =
        serde_json::from_slice(bytes).map_err(|e| ExportError::Manifest(e.to_string()))?;
    if manifest.format != FORMAT {
        return Err(ExportError::Manifest(format!("unknown format {:?}", manifest.format)));
    }
    Frontier::from_parts(manifest.start.size, manifest.start.frontier)
        .map_err(|e| ExportError::Manifest(e.to_string()))
}

/// Parses one proof file.
pub fn parse_proof(name: &str, bytes: &[u8]) -> Result<ConsistencyProof, ExportError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ExportError::Proof { name: name.to_owned(), reason: e.to_string() })
}

impl LogExport {
    /// Builds an export from file contents (the pure core of `read_dir`, and the fuzzing entry).
    pub fn from_files(
        manifest: Option<&[u8]>,
        entries_jsonl: &[u8],
        mut checkpoints: Vec<CheckpointFile>,
        proofs: &[(String, Vec<u8>)],
    ) -> Result<Self, ExportError> {
        let start = manifest.map(parse_manifest).transpose()?.unwrap_or_default();
        checkpoints.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Self {
            start,
            entries: parse_entries(entries_jsonl)?,
            checkpoints,
            proofs: proofs
                .iter()
                .map(|(name, bytes)| parse_proof(name, bytes))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Reads an export directory.
    pub fn read_dir(dir: &Path) -> Result<Self, ExportError> {
        let manifest_path = dir.join("manifest.json");
        let manifest =
            if manifest_path.exists() { Some(read_small(&manifest_path)?) } else { None };
        let entries_path = dir.join("entries.jsonl");
        let entries = std::fs::read(&entries_path).map_err(|e| io_err(&entries_path, &e))?;
        let checkpoints = read_files(&dir.join("checkpoints"))?
            .into_iter()
            .map(|(name, text)| CheckpointFile { name, text })
            .collect();
        let proofs = read_files(&dir.join("proofs"))?;
        Self::from_files(manifest.as_deref(), &entries, checkpoints, &proofs)
    }

    /// Writes this export as a directory (created if missing).
    pub fn write_dir(&self, dir: &Path) -> Result<(), ExportError> {
        for sub in ["checkpoints", "proofs"] {
            let p = dir.join(sub);
            std::fs::create_dir_all(&p).map_err(|e| io_err(&p, &e))?;
        }
        if self.start.size() > 0 {
            let manifest = Manifest {
                format: FORMAT.into(),
                start: ManifestStart {
                    size: self.start.size(),
                    frontier: self.start.hashes().to_vec(),
                },
            };
            let bytes = serde_json::to_vec_pretty(&manifest)
                .map_err(|e| ExportError::Manifest(e.to_string()))?;
            write(&dir.join("manifest.json"), &bytes)?;
        }
        let mut jsonl = Vec::new();
        for e in &self.entries {
            let line = entry_line(e.index, &e.entry)
                .map_err(|err| ExportError::Entry { line: 0, reason: err.to_string() })?;
            jsonl.extend_from_slice(&line);
        }
        write(&dir.join("entries.jsonl"), &jsonl)?;
        for cp in &self.checkpoints {
            write(&dir.join("checkpoints").join(&cp.name), &cp.text)?;
        }
        for p in &self.proofs {
            let bytes = serde_json::to_vec(p).map_err(|e| ExportError::Proof {
                name: format!("{}-{}", p.first, p.second),
                reason: e.to_string(),
            })?;
            write(
                &dir.join("proofs").join(format!("{:020}-{:020}.json", p.first, p.second)),
                &bytes,
            )?;
        }
        Ok(())
    }

    /// The index one past the last exported entry (the recomputed tree's size).
    #[must_use]
    pub fn end(&self) -> u64 {
        self.start.size() + self.entries.len() as u64
    }
}

/// The file name `fetch` gives a checkpoint of `size`.
#[must_use]
pub fn checkpoint_file_name(size: u64) -> String {
    format!("{size:020}.txt")
}

fn io_err(path: &Path, e: &std::io::Error) -> ExportError {
    ExportError::Io { path: path.display().to_string(), message: e.to_string() }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    std::fs::write(path, bytes).map_err(|e| io_err(path, &e))
}

fn read_small(path: &Path) -> Result<Vec<u8>, ExportError> {
    let meta = std::fs::metadata(path).map_err(|e| io_err(path, &e))?;
    if meta.len() > MAX_SMALL_FILE {
        return Err(ExportError::Io {
            path: path.display().to_string(),
            message: format!("larger than {MAX_SMALL_FILE} bytes"),
        });
    }
    std::fs::read(path).map_err(|e| io_err(path, &e))
}

/// Regular files of `dir` (absent directory: none), as (name, bytes), sorted by name.
fn read_files(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, ExportError> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for item in std::fs::read_dir(dir).map_err(|e| io_err(dir, &e))? {
        let item = item.map_err(|e| io_err(dir, &e))?;
        let path = item.path();
        if path.is_file() {
            let name = item.file_name().to_string_lossy().into_owned();
            out.push((name, read_small(&path)?));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::tests::sample_vm_entry;

    #[test]
    fn entry_line_is_canonical_and_parses_back() {
        let e = sample_vm_entry();
        let line = entry_line(7, &e).unwrap();
        assert!(line.starts_with(b"{\"entry\":{\"actor\":{"));
        assert!(line.ends_with(b",\"index\":7}\n"));
        assert_eq!(entry_line_from_canonical(7, &e.canonical_bytes().unwrap()), line);
        let parsed = parse_entries(&line).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].index, 7);
        assert_eq!(parsed[0].entry, e);
        assert_eq!(parsed[0].leaf, leaf_hash(&e.canonical_bytes().unwrap()));
    }

    #[test]
    fn leaf_covers_members_unknown_to_this_version() {
        let mut v = serde_json::to_value(sample_vm_entry()).unwrap();
        let plain = jcs::canonicalize(&v).unwrap();
        v["future_field"] = serde_json::json!("x");
        let line = format!("{{\"entry\":{v},\"index\":0}}\n");
        let parsed = parse_entries(line.as_bytes()).unwrap();
        assert_ne!(parsed[0].leaf, leaf_hash(&plain));
        assert_eq!(parsed[0].leaf, leaf_hash(&jcs::canonicalize(&v).unwrap()));
    }

    #[test]
    fn reports_the_bad_line_number() {
        let good = entry_line(0, &sample_vm_entry()).unwrap();
        let mut jsonl = good.clone();
        jsonl.extend_from_slice(b"{\"index\":1}\n");
        assert_eq!(
            parse_entries(&jsonl),
            Err(ExportError::Entry { line: 2, reason: "no \"entry\"".into() })
        );
        let mut jsonl = good.clone();
        jsonl.extend_from_slice(b"\n");
        jsonl.extend_from_slice(&good);
        assert_eq!(
            parse_entries(&jsonl),
            Err(ExportError::Entry {
                line: 2,
                reason: "EOF while parsing a value at line 1 column 0".into()
            })
        );
    }
}
