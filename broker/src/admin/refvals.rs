//! `/admin/v1/reference-values`: publish a signed bundle under a configured name (policy
//! authors), list names and show a name's history (policy authors and auditors).
//!
//! A bundle is accepted only if every signature is by a key configured for the name and
//! verifies, at least the threshold of distinct keys signed, it has not expired, its name is
//! the URL's, and its version is greater than the stored one. Each refusal has its own type:
//! `unknown-signer`, `bad-signature`, `below-threshold`, `bundle-expired`, `stale-version`.

use base64::Engine as _;
use reference_values::{check_replacement, BundleError, SignedBundle};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Role;
use super::{conclude, rfc3339, Caller, Done};
use crate::error::{json_body, store_error};
use crate::error::{ApiError, ErrorKind};
use crate::state::Broker;
use crate::store::{StoreError, StoredBundle};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    /// Standard base64 of the COSE_Sign bytes (`refval sign` output).
    bundle: String,
}

/// The API error for a refused bundle.
fn refusal(e: &BundleError) -> ApiError {
    let kind = match e {
        BundleError::UnknownSigner { .. } => ErrorKind::UnknownSigner,
        BundleError::SignatureInvalid { .. } | BundleError::MalformedSignature { .. } => {
            ErrorKind::BadSignature
        }
        BundleError::ThresholdNotMet { .. } | BundleError::NoSignatures => {
            ErrorKind::BelowThreshold
        }
        BundleError::Expired { .. } => ErrorKind::BundleExpired,
        BundleError::VersionNotGreater { .. } => ErrorKind::StaleVersion,
        _ => ErrorKind::BadRequest,
    };
    ApiError::new(kind, e.to_string())
}

fn history(rows: &[StoredBundle]) -> Vec<Value> {
    rows.iter()
        .map(|b| {
            json!({
                "version": b.version,
                "digest": b.digest,
                "expires": rfc3339(b.expires),
                "publisher": b.publisher,
                "published": rfc3339(b.published),
            })
        })
        .collect()
}

pub async fn publish(
    state: &Broker,
    caller: &Caller,
    name: &str,
    body: Result<&[u8], ApiError>,
) -> Result<Done, ApiError> {
    let result = async {
        caller.principal.require(&[Role::PolicyAuthor])?;
        let trust = state.bundles.trust(name).ok_or_else(|| {
            ApiError::new(ErrorKind::NotFound, format!("no reference values configured as {name}"))
        })?;
        let body: PublishBody = json_body(body?, "reference values")?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(body.bundle.trim())
            .map_err(|_| ApiError::new(ErrorKind::BadRequest, "bundle is not standard base64"))?;
        let signed = SignedBundle::from_bytes(&bytes).map_err(|e| refusal(&e))?;
        if signed.unverified_bundle().name != name {
            return Err(ApiError::new(
                ErrorKind::BadRequest,
                format!(
                    "bundle is named {:?}, published as {name:?}",
                    signed.unverified_bundle().name
                ),
            ));
        }
        let now = caller.now;
        let verified = check_replacement(None, &signed, trust, now).map_err(|e| refusal(&e))?;
        let bundle = verified.bundle();
        let stored = state.store.bundle_versions(name).await.map_err(|e| store_error(&e))?;
        if let Some(newest) = stored.first() {
            if bundle.version <= newest.version {
                return Err(refusal(&BundleError::VersionNotGreater {
                    stored: newest.version,
                    candidate: bundle.version,
                }));
            }
        }
        let digest = hex::encode(verified.digest());
        let row = StoredBundle {
            name: name.to_owned(),
            version: bundle.version,
            signed: bytes,
            digest: digest.clone(),
            expires: bundle.expires.unix_timestamp(),
            publisher: caller.principal.name.clone(),
            published: now.unix_timestamp(),
        };
        caller.intent("reference-values.publish", Some(name)).await?;
        match state.store.put_bundle(&row).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                return Err(ApiError::new(
                    ErrorKind::StaleVersion,
                    format!("version {} was published concurrently", bundle.version),
                ))
            }
            Err(e) => return Err(store_error(&e)),
        }
        state.bundles.invalidate();
        let signers: Vec<String> = verified.signers().iter().map(ToString::to_string).collect();
        Ok(Done {
            created: true,
            body: json!({
                "name": name,
                "version": bundle.version,
                "digest": digest,
                "expires": rfc3339(row.expires),
                "signers": signers,
            }),
            version: Some(bundle.version),
            detail: format!("sha256 {digest}, {} signers", signers.len()),
        })
    }
    .await;
    conclude(caller, "reference-values.publish", Some(name), result).await
}

pub async fn list(state: &Broker, caller: &Caller) -> Result<Done, ApiError> {
    let result = async {
        caller.principal.require(&[Role::PolicyAuthor, Role::Auditor])?;
        let current = state.store.current_bundles().await.map_err(|e| store_error(&e))?;
        let items: Vec<Value> = state
            .bundles
            .configured()
            .map(|(name, trust)| {
                let newest = current.iter().find(|b| &b.name == name);
                json!({
                    "name": name,
                    "threshold": trust.threshold(),
                    "author_kids": trust.keys().iter().map(|k| k.kid().to_string()).collect::<Vec<_>>(),
                    "current": newest.and_then(|b| history(std::slice::from_ref(b)).into_iter().next()),
                })
            })
            .collect();
        Ok(Done::ok(json!({"reference_values": items})))
    }
    .await;
    conclude(caller, "reference-values.list", None, result).await
}

pub async fn show(state: &Broker, caller: &Caller, name: &str) -> Result<Done, ApiError> {
    let result = async {
        caller.principal.require(&[Role::PolicyAuthor, Role::Auditor])?;
        let trust = state.bundles.trust(name).ok_or_else(|| {
            ApiError::new(ErrorKind::NotFound, format!("no reference values configured as {name}"))
        })?;
        let rows = state.store.bundle_versions(name).await.map_err(|e| store_error(&e))?;
        let bundle = rows
            .first()
            .and_then(|b| SignedBundle::from_bytes(&b.signed).ok())
            .and_then(|s| serde_json::to_value(s.unverified_bundle()).ok());
        Ok(Done::ok(json!({
            "name": name,
            "threshold": trust.threshold(),
            "author_kids": trust.keys().iter().map(|k| k.kid().to_string()).collect::<Vec<_>>(),
            "versions": history(&rows),
            "bundle": bundle,
        })))
    }
    .await;
    conclude(caller, "reference-values.show", Some(name), result).await
}
