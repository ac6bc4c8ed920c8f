//! `/admin/v1/audit/...`: the auditor's door to the log. Everything here is read-only and
//! needs an `auditor` token without path prefixes (the log is one tree over every tenant's
//! entries; a scoped auditor could not check a proof over entries it may not see). The
//! answers are the plain functions of [`crate::audit::export`]; `keylatch audit fetch` turns
//! them into the offline export layout that `keylatch audit verify` checks.
//!
//! - `GET /admin/v1/audit` — `{"size", "checkpoints"}`: the tree size and how many checkpoints;
//! - `GET /admin/v1/audit/checkpoints` — `{"checkpoints": [{"size", "note"}]}`, oldest first;
//! - `GET /admin/v1/audit/entries?start=&end=` — `{"start", "end", "lines": [...]}`: the
//!   canonical entry lines of `[start, end)` exactly as hashed (at most 10,000);
//! - `GET /admin/v1/audit/proof/inclusion?index=&size=` — `{"index", "size", "hashes"}`;
//! - `GET /admin/v1/audit/proof/consistency?first=&second=` — `{"first", "second", "hashes"}`;
//! - `GET /admin/v1/audit/query?resource=&since=&until=&vm=&limit=` — matching entries (JSON),
//!   `since`/`until` as RFC 3339, `vm` a chip id, PCK id or FMSPC.

use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Role;
use super::{conclude, Caller, Done};
use crate::audit::export::{self, ReadError};
use crate::error::store_error;
use crate::error::{ApiError, ErrorKind};
use crate::state::Broker;
use crate::store::EntryQuery;

/// The most entries one query answer holds.
const MAX_QUERY: u64 = 10_000;

fn read_error(e: ReadError) -> ApiError {
    match e {
        ReadError::Store(s) => store_error(&s),
        ReadError::Invalid(m) => ApiError::new(ErrorKind::BadRequest, m),
    }
}

/// Auditors only, and only unscoped ones.
fn authorize(caller: &Caller) -> Result<(), ApiError> {
    caller.principal.require(&[Role::Auditor])?;
    if caller.principal.prefixes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorKind::Forbidden,
            "the audit log spans every tenant; it needs an auditor token without --prefix",
        ))
    }
}

pub async fn summary(state: &Broker, caller: &Caller) -> Result<Done, ApiError> {
    let result = async {
        authorize(caller)?;
        let size = state.store.audit_size().await.map_err(|e| store_error(&e))?;
        let checkpoints = state.store.audit_checkpoints().await.map_err(|e| store_error(&e))?.len();
        Ok(Done::ok(json!({"size": size, "checkpoints": checkpoints})))
    }
    .await;
    conclude(caller, "audit.read", Some("summary"), result).await
}

pub async fn checkpoints(state: &Broker, caller: &Caller) -> Result<Done, ApiError> {
    let result = async {
        authorize(caller)?;
        let rows = state.store.audit_checkpoints().await.map_err(|e| store_error(&e))?;
        let items: Vec<Value> =
            rows.into_iter().map(|c| json!({"size": c.size, "note": c.note})).collect();
        Ok(Done::ok(json!({"checkpoints": items})))
    }
    .await;
    conclude(caller, "audit.read", Some("checkpoints"), result).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    start: u64,
    end: u64,
}

pub async fn entries(
    state: &Broker,
    caller: &Caller,
    q: Result<Range, ApiError>,
) -> Result<Done, ApiError> {
    let result = async {
        authorize(caller)?;
        let Range { start, end } = q?;
        let jsonl =
            export::entries_jsonl(state.store.as_ref(), start, end).await.map_err(read_error)?;
        let text = String::from_utf8(jsonl)
            .map_err(|e| ApiError::internal("audit entries are not UTF-8", &e))?;
        let lines: Vec<&str> = text.lines().collect();
        Ok(Done::ok(json!({"start": start, "end": end, "lines": lines})))
    }
    .await;
    conclude(caller, "audit.read", Some("entries"), result).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionQuery {
    index: u64,
    size: u64,
}

pub async fn inclusion(
    state: &Broker,
    caller: &Caller,
    q: Result<InclusionQuery, ApiError>,
) -> Result<Done, ApiError> {
    let result = async {
        authorize(caller)?;
        let InclusionQuery { index, size } = q?;
        let proof = export::inclusion(&state.store, index, size).await.map_err(read_error)?;
        Ok(Done::ok(serde_json::to_value(proof).map_err(|e| ApiError::internal("proof", &e))?))
    }
    .await;
    conclude(caller, "audit.read", Some("inclusion-proof"), result).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyQuery {
    first: u64,
    second: u64,
}

pub async fn consistency(
    state: &Broker,
    caller: &Caller,
    q: Result<ConsistencyQuery, ApiError>,
) -> Result<Done, ApiError> {
    let result = async {
        authorize(caller)?;
        let ConsistencyQuery { first, second } = q?;
        let proof = export::consistency(&state.store, first, second).await.map_err(read_error)?;
        let hashes: Vec<String> = proof.hashes.iter().map(keylatch_audit::Hash::to_hex).collect();
        Ok(Done::ok(json!({"first": proof.first, "second": proof.second, "hashes": hashes})))
    }
    .await;
    conclude(caller, "audit.read", Some("consistency-proof"), result).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    resource: Option<String>,
    since: Option<String>,
    until: Option<String>,
    vm: Option<String>,
    limit: Option<u64>,
}

fn unix(field: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    value
        .map(|v| {
            time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
                .map(time::OffsetDateTime::unix_timestamp)
                .map_err(|e| {
                    ApiError::new(ErrorKind::BadRequest, format!("{field}: not RFC 3339: {e}"))
                })
        })
        .transpose()
}

pub async fn search(
    state: &Broker,
    caller: &Caller,
    q: Result<SearchQuery, ApiError>,
) -> Result<Done, ApiError> {
    let result = async {
        authorize(caller)?;
        let q = q?;
        let entry_query = EntryQuery {
            resource: q.resource,
            since: unix("since", q.since.as_deref())?,
            until: unix("until", q.until.as_deref())?,
            vm_id: q.vm,
            limit: q.limit.unwrap_or(MAX_QUERY).min(MAX_QUERY),
        };
        let text =
            export::query_json(state.store.as_ref(), &entry_query).await.map_err(read_error)?;
        let entries: Value =
            serde_json::from_str(&text).map_err(|e| ApiError::internal("query", &e))?;
        Ok(Done::ok(json!({"entries": entries})))
    }
    .await;
    conclude(caller, "audit.read", Some("query"), result).await
}
