//! `/admin/v1/policies`: set a resource's release policy (a new version; the body is the policy
//! as JSON), get the newest or a given version, list every path with its versions. Key
//! custodians write; custodians and auditors read; both only inside their prefixes.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::auth::Role;
use super::{conclude, rfc3339, Caller, Done};
use crate::error::{json_body, store_error};
use crate::error::{ApiError, ErrorKind};
use crate::policy::Policy;
use crate::state::Broker;
use crate::store::PolicyVersionMeta;

pub async fn set(
    state: &Broker,
    caller: &Caller,
    path: &str,
    body: Result<&[u8], ApiError>,
) -> Result<Done, ApiError> {
    let result = async {
        let path = caller.authorize_path(&[Role::KeyCustodian], path)?;
        let value: Value = json_body(body?, "policy")?;
        let text = value.to_string();
        Policy::parse(&text)
            .map_err(|e| ApiError::new(ErrorKind::BadRequest, format!("policy: {e}")))?;
        caller.intent("policy.set", Some(&path)).await?;
        let (version, digest) =
            store_policy(state.store.as_ref(), &path, &text, caller.now.unix_timestamp())
                .await
                .map_err(|e| ApiError::unavailable("store", &e))?;
        Ok(Done {
            created: true,
            body: json!({"path": path, "version": version, "digest": digest}),
            version: Some(version),
            detail: format!("sha256 {digest}"),
        })
    }
    .await;
    conclude(caller, "policy.set", Some(path), result).await
}

pub async fn get(
    state: &Broker,
    caller: &Caller,
    path: &str,
    query: Result<Option<u64>, ApiError>,
) -> Result<Done, ApiError> {
    let result = async {
        let path = caller.authorize_path(&[Role::KeyCustodian, Role::Auditor], path)?;
        let version = query?;
        let stored = state
            .store
            .get_policy_version(&path, version)
            .await
            .map_err(|e| store_error(&e))?
            .ok_or_else(|| ApiError::new(ErrorKind::NotFound, format!("no policy for {path}")))?;
        let policy: Value = serde_json::from_str(&stored.body)
            .map_err(|e| ApiError::internal("stored policy", &e))?;
        Ok(Done {
            version: Some(stored.version),
            ..Done::ok(json!({
                "path": stored.path,
                "version": stored.version,
                "digest": stored.digest,
                "created": rfc3339(stored.created),
                "policy": policy,
            }))
        })
    }
    .await;
    conclude(caller, "policy.get", Some(path), result).await
}

pub async fn list(state: &Broker, caller: &Caller) -> Result<Done, ApiError> {
    let result = async {
        caller.principal.require(&[Role::KeyCustodian, Role::Auditor])?;
        let rows = state.store.list_policy_versions().await.map_err(|e| store_error(&e))?;
        let mut by_path: BTreeMap<String, Vec<PolicyVersionMeta>> = BTreeMap::new();
        for r in rows.into_iter().filter(|r| caller.principal.may_access(&r.path)) {
            by_path.entry(r.path.clone()).or_default().push(r);
        }
        let items: Vec<Value> = by_path
            .into_iter()
            .map(|(path, versions)| {
                json!({
                    "path": path,
                    "current_version": versions.iter().map(|v| v.version).max(),
                    "versions": versions.iter().map(|v| json!({
                        "version": v.version,
                        "digest": v.digest,
                        "created": rfc3339(v.created),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let detail = format!("{} policies listed", items.len());
        Ok(Done { detail, ..Done::ok(json!({"policies": items})) })
    }
    .await;
    conclude(caller, "policy.list", None, result).await
}

/// Parses, canonicalizes and stores a policy for the (validated) `path`, created at `now` (Unix
/// seconds); returns (version, digest). The caller records the action (the CLI as `cli`, the
/// admin API as its principal).
pub async fn store_policy(
    store: &dyn crate::store::Store,
    path: &str,
    text: &str,
    now: i64,
) -> anyhow::Result<(u64, String)> {
    let policy = Policy::parse(text)?;
    let body = policy.canonical_json()?;
    let digest = policy.digest()?;
    let version = store.put_policy(path, &body, &digest, now).await?;
    Ok((version, digest))
}
