//! `GET /kbs/v0/resource/<repo>/<type>/<tag>`: checks the path, finds the token (bearer, or the
//! token issued to the cookie's session) and verifies it, evaluates the resource's release
//! policy over the token's claims, unseals the resource through the keystore (off the async
//! runtime), builds the JWE to the token's tee-pubkey, and answers it only once the release's
//! audit entry is durable (write-ahead; see [`handle`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::HeaderMap;
use axum::Extension;
use axum::Json;
use keylatch_keystore::{KeystoreError, ResourceBinding};
use keylatch_wire::Jwk;
use serde_json::{Map, Value};

use super::{now_s, session_cookie, store_error};
use crate::decision::{record_decision, Action, Appraised, DecisionRecord};
use crate::error::{ApiError, ErrorKind};
use crate::policy::{Decision, Policy, Subject};
use crate::state::AppState;
use crate::store::SessionState;

/// Checks one path segment: `[A-Za-z0-9_-]+[A-Za-z0-9_.-]*`, and never `..` anywhere.
#[must_use]
pub fn valid_segment(s: &str) -> bool {
    let mut chars = s.chars();
    let first = chars.next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    first
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !s.contains("..")
}

/// Validates `repo/type/tag`.
pub fn parse_path(path: &str) -> Result<String, ApiError> {
    let parts: Vec<&str> = path.split('/').collect();
    if parts.len() == 3 && parts.iter().all(|p| valid_segment(p)) {
        Ok(parts.join("/"))
    } else {
        Err(ApiError::new(
            ErrorKind::BadRequest,
            "resource path must be <repo>/<type>/<tag>, each [A-Za-z0-9_-][A-Za-z0-9_.-]* without ..",
        ))
    }
}

/// The facts of one release attempt, for the decision record.
#[derive(Default)]
struct Facts {
    claims: Option<Map<String, Value>>,
    resource_version: Option<u64>,
    policy_version: Option<u64>,
    policy_digest: Option<String>,
}

/// Write-ahead order: decide (token, resource, policy) → unseal and build the JWE → append the
/// decision's audit entry and await its durability → answer. If an allowed release cannot be
/// recorded, the JWE is dropped unsent and the client gets 503 `unavailable`.
pub async fn handle(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let mut facts = Facts::default();
    // A path that does not percent-decode to UTF-8 (`%ff`) is a malformed path like any other:
    // the same `bad-request` body (not axum's plain-text rejection), and audited.
    let (path, result) = match path {
        Ok(Path(path)) => {
            let result = release(&state, &path, &headers, &mut facts).await;
            (path, result)
        }
        Err(_) => (
            String::new(),
            Err(ApiError::new(ErrorKind::BadRequest, "resource path is not percent-encoded UTF-8")),
        ),
    };
    let (allowed, outcome, detail) = match &result {
        Ok((_, rule)) => (true, rule.clone(), String::new()),
        Err(e) => (false, e.kind.type_id().to_owned(), e.detail.clone()),
    };
    let claims = facts.claims.as_ref();
    let evidence = claims.and_then(|c| c.get("evidence"));
    let accepted = |a: &Value| a.get("accepted").and_then(Value::as_bool).unwrap_or(false);
    let bundles = claims
        .and_then(|c| c.get("appraisals"))
        .map(|a| {
            crate::audit::record::bundles_of(a)
                .into_iter()
                .zip(a.as_array().into_iter().flatten())
                .map(|(bundle, a)| Appraised { bundle, accepted: accepted(a) })
                .collect()
        })
        .unwrap_or_default();
    let client = peer.map(|Extension(ConnectInfo(p))| p.to_string());
    record_decision(
        &state.audit,
        &DecisionRecord {
            action: Action::Release,
            allowed,
            request_id: None,
            client: client.as_deref(),
            tee: evidence.and_then(|e| e.get("tee")).and_then(Value::as_str),
            simulated: evidence.and_then(|e| e.get("simulated")).and_then(Value::as_bool),
            vm: evidence.map(crate::audit::record::vm_identity),
            session: None,
            token_jti: claims.and_then(|c| c.get("jti")).and_then(Value::as_str),
            evidence_sha256: evidence
                .and_then(|e| e.get("evidence_sha256"))
                .and_then(Value::as_str),
            resource: Some(&path),
            resource_version: facts.resource_version,
            policy_version: facts.policy_version,
            policy_digest: facts.policy_digest.as_deref(),
            bundles,
            outcome: &outcome,
            detail: &detail,
        },
    )
    .await?;
    let (jwe, _) = result?;
    Ok(Json(jwe))
}

/// The token: `Authorization: Bearer`, else the token of the cookie's attested session.
async fn find_token(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    if let Some(t) = super::bearer_token(headers) {
        return Ok(t.to_owned());
    }
    let missing = || {
        ApiError::new(
            ErrorKind::TokenMissing,
            "no bearer token and no attested session; attest first",
        )
    };
    let id = session_cookie(headers).ok_or_else(missing)?;
    let session =
        state.store.get_session(&id).await.map_err(|e| store_error(&e))?.ok_or_else(missing)?;
    if session.state != SessionState::Attested {
        return Err(missing());
    }
    session.token.ok_or_else(missing)
}

async fn release(
    state: &AppState,
    raw_path: &str,
    headers: &HeaderMap,
    facts: &mut Facts,
) -> Result<(Value, String), ApiError> {
    let path = parse_path(raw_path)?;
    let token = find_token(state, headers).await?;
    let claims = state
        .token_key
        .verify(&token, now_s())
        .map_err(|e| ApiError::new(ErrorKind::TokenInvalid, e.to_string()))?;
    facts.claims = Some(claims.clone());
    let resource =
        crate::custody::releasable(state.store.as_ref(), &path).await.map_err(ApiError::from)?;
    facts.resource_version = Some(resource.version);
    let stored = state.store.current_policy(&path).await.map_err(|e| store_error(&e))?;
    let Some(stored) = stored else {
        return Err(ApiError::new(
            ErrorKind::PolicyDenied,
            format!("resource {path} has no release policy (deny by default)"),
        ));
    };
    facts.policy_version = Some(stored.version);
    facts.policy_digest = Some(stored.digest.clone());
    let policy =
        Policy::parse(&stored.body).map_err(|e| ApiError::internal("stored policy", &e))?;
    let null = Value::Null;
    let subject = Subject {
        evidence: claims.get("evidence").unwrap_or(&null),
        appraisals: claims.get("appraisals").unwrap_or(&null),
    };
    let rule = match policy.evaluate(subject) {
        Decision::Allow { rule } => rule,
        Decision::Deny { reasons } => {
            return Err(ApiError::new(
                ErrorKind::PolicyDenied,
                format!("policy v{} denies {path}: {}", stored.version, reasons.join(" | ")),
            ))
        }
    };
    let jwk =
        claims.get("tee-pubkey").map(Jwk::from_json).transpose().ok().flatten().ok_or_else(
            || ApiError::new(ErrorKind::TokenInvalid, "token has no usable tee-pubkey"),
        )?;
    let keystore = Arc::clone(&state.keystore);
    let binding = ResourceBinding::new(path.clone(), resource.version);
    let sealed = resource.sealed;
    let jwe = tokio::task::spawn_blocking(move || {
        let plaintext = keystore.unseal(&binding, &sealed)?;
        Ok::<_, KeystoreError>(keylatch_wire::jwe::encrypt(&jwk, &plaintext))
    })
    .await
    .map_err(|e| ApiError::internal("keystore", &e))?
    .map_err(|e| ApiError::from(crate::custody::keystore_error(state.keystore.as_ref(), e)))?
    .map_err(|e| ApiError::internal("JWE", &e))?;
    let body: Value =
        serde_json::from_str(&jwe.to_json()).map_err(|e| ApiError::internal("JWE", &e))?;
    Ok((body, rule))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kbs_segments_and_refuses_traversal() {
        assert_eq!(parse_path("default/key/vm-1.v2").unwrap(), "default/key/vm-1.v2");
        for bad in
            ["a/b", "a/b/c/d", "a/../c", "a/b/..", "a/b/.c", "a/b/x..y", "a//c", "a/b/c d", ""]
        {
            assert_eq!(parse_path(bad).unwrap_err().kind, ErrorKind::BadRequest, "{bad}");
        }
    }
}
