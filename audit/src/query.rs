//! Questions auditors ask of an export — who got which resource, since when, on which chip — and
//! the two renderings of the answer: an aligned plain-text table and JSON.

use std::fmt::Write as _;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::entry::Actor;
use crate::export::{ExportedEntry, LogExport};

/// Entry filter; every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryFilter {
    /// Exact resource path.
    pub resource: Option<String>,
    /// Entries at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Entries before this time.
    pub until: Option<OffsetDateTime>,
    /// VM identity: matches an SNP chip_id, or a TDX pck_id or fmspc (hex, any case).
    pub chip_id: Option<String>,
}

impl QueryFilter {
    /// Whether `e` passes the filter.
    #[must_use]
    pub fn matches(&self, e: &ExportedEntry) -> bool {
        let entry = &e.entry;
        if let Some(r) = &self.resource {
            if entry.resource.as_ref().is_none_or(|res| &res.path != r) {
                return false;
            }
        }
        if self.since.is_some_and(|t| entry.time < t) || self.until.is_some_and(|t| entry.time >= t)
        {
            return false;
        }
        if let Some(id) = &self.chip_id {
            let Actor::Vm(vm) = &entry.actor else {
                return false;
            };
            let same =
                |v: &Option<String>| v.as_deref().is_some_and(|v| v.eq_ignore_ascii_case(id));
            if !(same(&vm.chip_id) || same(&vm.pck_id) || same(&vm.fmspc)) {
                return false;
            }
        }
        true
    }
}

/// The export's entries that pass `filter`, in index order.
#[must_use]
pub fn query<'a>(export: &'a LogExport, filter: &QueryFilter) -> Vec<&'a ExportedEntry> {
    export.entries.iter().filter(|e| filter.matches(e)).collect()
}

/// Columns of the table.
const HEADERS: [&str; 8] =
    ["INDEX", "TIME", "KIND", "RESOURCE", "VERSION", "DECISION", "ACTOR", "REASONS"];

/// A plain-text table, columns separated by two spaces and padded to width; reasons joined by
/// "; ". The last column is not padded.
#[must_use]
pub fn render_table(entries: &[&ExportedEntry]) -> String {
    let rows: Vec<[String; 8]> = entries.iter().map(|e| row(e)).collect();
    let mut widths = HEADERS.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header = HEADERS.map(str::to_owned);
    for r in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, w)) in r.iter().zip(widths).enumerate() {
            if i + 1 == HEADERS.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn row(e: &ExportedEntry) -> [String; 8] {
    let entry = &e.entry;
    [
        e.index.to_string(),
        entry.time.format(&Rfc3339).unwrap_or_default(),
        serde_name(&entry.kind),
        entry.resource.as_ref().map_or_else(|| "-".into(), |r| r.path.clone()),
        entry
            .resource
            .as_ref()
            .and_then(|r| r.version)
            .map_or_else(|| "-".into(), |v| v.to_string()),
        serde_name(&entry.decision),
        entry.actor_summary(),
        entry.reasons.join("; "),
    ]
}

/// The serde name of a unit enum value (`release`, `allow`), as shown in the table.
fn serde_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::from("?"),
    }
}

/// JSON: an array of `{"index": I, "entry": {...}}`, pretty-printed.
pub fn render_json(entries: &[&ExportedEntry]) -> Result<String, serde_json::Error> {
    let items: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            Ok(serde_json::json!({ "index": e.index, "entry": serde_json::to_value(&e.entry)? }))
        })
        .collect::<Result<_, serde_json::Error>>()?;
    serde_json::to_string_pretty(&items)
}
