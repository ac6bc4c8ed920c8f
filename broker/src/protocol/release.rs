//! The release decision of KBS 0.4.0 (`GET /kbs/v0/resource/<repo>/<type>/<tag>`, [`release`]):
//! checks the path, finds the token (bearer, or the token issued to the cookie's session) and
//! verifies it, evaluates the resource's release
//! policy over the token's claims, unseals the resource through the keystore (off the async
//! runtime), builds the JWE to the token's tee-pubkey, and answers it only once the release's
//! audit entry is durable (write-ahead; see [`release`]).

use std::sync::Arc;

use keylatch_keystore::{KeystoreError, ResourceBinding};
use keylatch_wire::Jwk;
use serde_json::{Map, Value};

use crate::decision::{record_decision, Action, Appraised, DecisionRecord};
use crate::error::{store_error, ApiError, ErrorKind};
use crate::path::parse_path;
use crate::policy::{Decision, Policy, Subject};
use crate::state::Broker;
use crate::store::SessionState;

/// The facts of one release attempt, for the decision record.
#[derive(Default)]
struct Facts {
    claims: Option<Map<String, Value>>,
    resource_version: Option<u64>,
    policy_version: Option<u64>,
    policy_digest: Option<String>,
}

/// What a resource request presents: `Authorization: Bearer` credentials and the
/// `kbs-session-id` cookie, either possibly absent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    pub bearer: Option<&'a str>,
    pub cookie: Option<&'a str>,
}

/// A released resource: the JWE (JSON serialization) to the token's tee-pubkey.
#[derive(Debug)]
pub struct Released {
    pub jwe: Value,
}

/// Decides a resource request at `now`. `path` is the `<repo>/<type>/<tag>` as decoded from the
/// URL, or why it could not be (a malformed path like any other: refused and recorded).
///
/// Write-ahead order: decide (token, resource, policy) → unseal and build the JWE → append the
/// decision's audit entry and await its durability → return. If an allowed release cannot be
/// recorded, the JWE is dropped and the error is `unavailable`.
pub async fn release(
    broker: &Broker,
    credentials: Credentials<'_>,
    path: Result<&str, ApiError>,
    client: Option<&str>,
    now: time::OffsetDateTime,
) -> Result<Released, ApiError> {
    let mut facts = Facts::default();
    let (path, result) = match path {
        Ok(path) => {
            (path, decide(broker, path, credentials, now.unix_timestamp(), &mut facts).await)
        }
        Err(e) => ("", Err(e)),
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
    record_decision(
        &broker.audit,
        &DecisionRecord {
            action: Action::Release,
            allowed,
            request_id: None,
            client,
            tee: evidence.and_then(|e| e.get("tee")).and_then(Value::as_str),
            simulated: evidence.and_then(|e| e.get("simulated")).and_then(Value::as_bool),
            vm: evidence.map(crate::audit::record::vm_identity),
            session: None,
            token_jti: claims.and_then(|c| c.get("jti")).and_then(Value::as_str),
            evidence_sha256: evidence
                .and_then(|e| e.get("evidence_sha256"))
                .and_then(Value::as_str),
            resource: Some(path),
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
    Ok(Released { jwe })
}

/// The token: `Authorization: Bearer`, else the token of the cookie's attested session.
async fn find_token(broker: &Broker, credentials: Credentials<'_>) -> Result<String, ApiError> {
    if let Some(t) = credentials.bearer {
        return Ok(t.to_owned());
    }
    let missing = || {
        ApiError::new(
            ErrorKind::TokenMissing,
            "no bearer token and no attested session; attest first",
        )
    };
    let id = credentials.cookie.ok_or_else(missing)?;
    let session =
        broker.store.get_session(id).await.map_err(|e| store_error(&e))?.ok_or_else(missing)?;
    if session.state != SessionState::Attested {
        return Err(missing());
    }
    session.token.ok_or_else(missing)
}

async fn decide(
    broker: &Broker,
    raw_path: &str,
    credentials: Credentials<'_>,
    now: i64,
    facts: &mut Facts,
) -> Result<(Value, String), ApiError> {
    let path = parse_path(raw_path)?;
    let token = find_token(broker, credentials).await?;
    let claims = broker
        .token_key
        .verify(&token, now)
        .map_err(|e| ApiError::new(ErrorKind::TokenInvalid, e.to_string()))?;
    facts.claims = Some(claims.clone());
    let inputs = broker.store.release_inputs(&path).await.map_err(|e| store_error(&e))?;
    let resource =
        crate::custody::releasable(&path, inputs.state, inputs.resource).map_err(ApiError::from)?;
    facts.resource_version = Some(resource.version);
    let Some(stored) = inputs.policy else {
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
    let keystore = Arc::clone(&broker.keystore);
    let binding = ResourceBinding::new(path.clone(), resource.version);
    let sealed = resource.sealed;
    let jwe = tokio::task::spawn_blocking(move || {
        let plaintext = keystore.unseal(&binding, &sealed)?;
        Ok::<_, KeystoreError>(keylatch_wire::jwe::encrypt(&jwk, &plaintext))
    })
    .await
    .map_err(|e| ApiError::internal("keystore", &e))?
    .map_err(|e| ApiError::from(crate::custody::keystore_error(broker.keystore.as_ref(), e)))?
    .map_err(|e| ApiError::internal("JWE", &e))?;
    let body: Value =
        serde_json::from_str(&jwe.to_json()).map_err(|e| ApiError::internal("JWE", &e))?;
    Ok((body, rule))
}
