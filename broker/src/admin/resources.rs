//! `/admin/v1/resources`: put (a new sealed version from base64 bytes, keystore-generated
//! random bytes or a BYOK blob; `rotate` for an existing resource), patch (state, rotate-by),
//! list, show metadata, delete. Key custodians write; custodians and auditors read; both only
//! inside their prefixes, lists included. Key bytes are decoded into zeroizing memory, sealed by
//! the keystore and never echoed or logged.
//!
//! The work on store and keystore is done by [`crate::custody`] (the same functions the
//! store-direct CLI uses): a new version through `custody::put` (or `custody::rotate`), DELETE
//! as `custody::destroy` (crypto-shred: final, the path can never be reused). A write is
//! recorded once: custody records the change (intent, then outcome) with the caller as
//! principal; only a call refused before it reaches custody is recorded here, as
//! `resource.put|update|delete`.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::{Zeroize as _, Zeroizing};

use super::auth::Role;
use super::{conclude, rfc3339, Caller, Done};
use crate::custody::{self, Actor, Cryptoperiod, Material};
use crate::error::{json_body, store_error};
use crate::error::{ApiError, ErrorKind};
use crate::state::Broker;
use crate::store::ResourceVersionMeta;

/// The largest random resource the broker generates on request.
pub const MAX_GENERATE: usize = 4096;

/// `PUT` body: exactly one of `value` (standard base64 of the bytes), `generate` (a length) or
/// `wrapped` (standard base64 of a BYOK blob for the keystore's import key, as
/// `keylatch key wrap-for-import` writes it). With `rotate: true` the resource must exist
/// (`custody::rotate`), and without any of the three a key of the current version's length is
/// generated.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    #[serde(default)]
    rotate: bool,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    generate: Option<usize>,
    #[serde(default)]
    wrapped: Option<String>,
}

impl Drop for PutBody {
    fn drop(&mut self) {
        if let Some(v) = self.value.as_mut() {
            v.zeroize();
        }
    }
}

fn actor(caller: &Caller) -> Actor<'_> {
    Actor {
        principal: &caller.principal.name,
        role: caller.principal.role.as_str(),
        client: caller.client.as_deref(),
        audit: &caller.audit,
    }
}

/// Seals and stores a new version of `path`, which becomes current: `resource.rotate` (the path
/// must exist; no material generates a key of the current length) or a put (creating the
/// resource when new); returns the version.
async fn seal_new_version(
    state: &Broker,
    caller: &Caller,
    path: &str,
    material: Option<Material>,
    rotate: bool,
) -> Result<u64, ApiError> {
    let (store, keystore, now) =
        (state.store.as_ref(), &state.keystore, caller.now.unix_timestamp());
    let period = Cryptoperiod::Inherit;
    let added = match (rotate, material) {
        (true, m) => custody::rotate(store, keystore, actor(caller), now, path, m, period).await?,
        (false, Some(m)) => {
            custody::put(store, keystore, actor(caller), now, path, m, period).await?
        }
        (false, None) => {
            return Err(ApiError::new(ErrorKind::BadRequest, "no key material for a new resource"))
        }
    };
    Ok(added.version)
}

/// Destroys every version of `path` (crypto-shred); returns how many there were.
async fn destroy(state: &Broker, caller: &Caller, path: &str) -> Result<u64, ApiError> {
    Ok(custody::destroy(state.store.as_ref(), actor(caller), caller.now.unix_timestamp(), path)
        .await?)
}

/// Groups version rows by path: `{path, current_version, versions: [...]}`.
fn summaries(rows: Vec<ResourceVersionMeta>) -> Vec<Value> {
    let mut by_path: BTreeMap<String, Vec<ResourceVersionMeta>> = BTreeMap::new();
    for r in rows {
        by_path.entry(r.path.clone()).or_default().push(r);
    }
    by_path.into_iter().map(|(path, versions)| summary(&path, &versions)).collect()
}

fn summary(path: &str, versions: &[ResourceVersionMeta]) -> Value {
    let current = versions.iter().filter(|v| v.enabled).map(|v| v.version).max();
    json!({
        "path": path,
        "current_version": current,
        "versions": versions.iter().map(|v| json!({
            "version": v.version,
            "enabled": v.enabled,
            "created": rfc3339(v.created),
        })).collect::<Vec<_>>(),
    })
}

pub async fn put(
    state: &Broker,
    caller: &Caller,
    path: &str,
    body: Result<&[u8], ApiError>,
) -> Result<Done, ApiError> {
    // Refusals before the change are recorded here; the change itself is recorded by custody
    // (its intent, then its outcome, with this principal): once.
    let checked = async {
        let path = caller.authorize_path(&[Role::KeyCustodian], path)?;
        let body: PutBody = json_body(body?, "resource")?;
        let material = match (&body.value, body.generate, &body.wrapped) {
            (None, None, None) if body.rotate => None,
            (None, None, Some(w)) => {
                let blob =
                    base64::engine::general_purpose::STANDARD.decode(w.trim()).map_err(|_| {
                        ApiError::new(ErrorKind::BadRequest, "wrapped is not standard base64")
                    })?;
                Some(Material::Wrapped(blob))
            }
            (Some(v), None, None) => {
                let bytes = Zeroizing::new(
                    base64::engine::general_purpose::STANDARD.decode(v.trim()).map_err(|_| {
                        ApiError::new(ErrorKind::BadRequest, "value is not standard base64")
                    })?,
                );
                if bytes.is_empty() {
                    return Err(ApiError::new(ErrorKind::BadRequest, "value is empty"));
                }
                Some(Material::Plaintext(bytes))
            }
            (None, Some(n), None) if (1..=MAX_GENERATE).contains(&n) => Some(Material::Generate(n)),
            _ => {
                return Err(ApiError::new(
                    ErrorKind::BadRequest,
                    format!(
                        "give exactly one of value (base64), generate (1..={MAX_GENERATE}) or \
                         wrapped (base64 BYOK blob); with rotate, none generates a key of the \
                         current length"
                    ),
                ))
            }
        };
        let rotate = body.rotate;
        drop(body);
        Ok((path, material, rotate))
    }
    .await;
    let (path, material, rotate) = match checked {
        Ok(checked) => checked,
        Err(e) => return conclude(caller, "resource.put", Some(path), Err(e)).await,
    };
    let version = seal_new_version(state, caller, &path, material, rotate).await?;
    Ok(Done {
        created: true,
        body: json!({"path": path, "version": version}),
        version: Some(version),
        detail: String::new(),
    })
}

pub async fn list(state: &Broker, caller: &Caller) -> Result<Done, ApiError> {
    let result = async {
        caller.principal.require(&[Role::KeyCustodian, Role::Auditor])?;
        let rows = state.store.list_resource_versions().await.map_err(|e| store_error(&e))?;
        let visible: Vec<_> =
            rows.into_iter().filter(|r| caller.principal.may_access(&r.path)).collect();
        let items = summaries(visible);
        let detail = format!("{} resources listed", items.len());
        Ok(Done { detail, ..Done::ok(json!({"resources": items})) })
    }
    .await;
    conclude(caller, "resource.list", None, result).await
}

pub async fn show(state: &Broker, caller: &Caller, path: &str) -> Result<Done, ApiError> {
    let result = async {
        let path = caller.authorize_path(&[Role::KeyCustodian, Role::Auditor], path)?;
        let rows = state.store.list_resource_versions().await.map_err(|e| store_error(&e))?;
        let versions: Vec<_> = rows.into_iter().filter(|r| r.path == path).collect();
        if versions.is_empty() {
            return Err(ApiError::new(ErrorKind::NotFound, format!("no resource {path}")));
        }
        let policy = state.store.current_policy(&path).await.map_err(|e| store_error(&e))?;
        let lifecycle = state.store.resource_lifecycle(&path).await.map_err(|e| store_error(&e))?;
        let mut body = summary(&path, &versions);
        if let Some(obj) = body.as_object_mut() {
            obj.insert(
                "policy".into(),
                policy.map_or(Value::Null, |p| json!({"version": p.version, "digest": p.digest})),
            );
            if let Some(l) = lifecycle {
                obj.insert("state".into(), l.state.as_str().into());
                obj.insert("rotate_by".into(), l.rotate_by.map_or(Value::Null, rfc3339));
            }
        }
        Ok(Done::ok(body))
    }
    .await;
    conclude(caller, "resource.show", Some(path), result).await
}

pub async fn delete(state: &Broker, caller: &Caller, path: &str) -> Result<Done, ApiError> {
    // A refused call is recorded here; the destruction itself by custody, once.
    let path = match caller.authorize_path(&[Role::KeyCustodian], path) {
        Ok(path) => path,
        Err(e) => return conclude(caller, "resource.delete", Some(path), Err(e)).await,
    };
    let n = destroy(state, caller, &path).await?;
    if n == 0 {
        return Err(ApiError::new(ErrorKind::NotFound, format!("no resource {path}")));
    }
    Ok(Done {
        detail: format!("{n} versions deleted"),
        ..Done::ok(json!({"path": path, "deleted_versions": n}))
    })
}

/// `PATCH` body: any of `state` (`active` or `disabled`; a disabled resource is never released),
/// `rotate_by` (an RFC 3339 time) and `clear_rotate_by` (`true` removes the date).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    rotate_by: Option<String>,
    #[serde(default)]
    clear_rotate_by: bool,
}

pub async fn patch(
    state: &Broker,
    caller: &Caller,
    path: &str,
    body: Result<&[u8], ApiError>,
) -> Result<Done, ApiError> {
    // Refusals before any change are recorded here; each change by custody, once.
    let checked = async {
        let path = caller.authorize_path(&[Role::KeyCustodian], path)?;
        let body: PatchBody = json_body(body?, "resource")?;
        if body.state.is_none() && body.rotate_by.is_none() && !body.clear_rotate_by {
            return Err(ApiError::new(
                ErrorKind::BadRequest,
                "give state, rotate_by and/or clear_rotate_by",
            ));
        }
        if body.rotate_by.is_some() && body.clear_rotate_by {
            return Err(ApiError::new(
                ErrorKind::BadRequest,
                "rotate_by and clear_rotate_by exclude each other",
            ));
        }
        // Every field is checked before anything changes: a refused PATCH changes nothing.
        let enable = match body.state.as_deref() {
            Some("disabled") => Some(false),
            Some("active") => Some(true),
            Some(other) => {
                return Err(ApiError::new(
                    ErrorKind::BadRequest,
                    format!("state must be active or disabled, not {other:?}"),
                ))
            }
            None => None,
        };
        let period = match (body.rotate_by.as_deref(), body.clear_rotate_by) {
            (_, true) => Some(Cryptoperiod::Clear),
            (Some(t), false) => Some(Cryptoperiod::Until(
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                    .map_err(|e| {
                        ApiError::new(
                            ErrorKind::BadRequest,
                            format!("rotate_by: not RFC 3339: {e}"),
                        )
                    })?
                    .unix_timestamp(),
            )),
            (None, false) => None,
        };
        Ok((path, enable, period))
    }
    .await;
    let (path, enable, period) = match checked {
        Ok(checked) => checked,
        Err(e) => return conclude(caller, "resource.update", Some(path), Err(e)).await,
    };
    let store = state.store.as_ref();
    let mut changed = Vec::new();
    match enable {
        Some(false) => {
            custody::disable(store, actor(caller), caller.now.unix_timestamp(), &path).await?;
            changed.push("disabled".to_owned());
        }
        Some(true) => {
            custody::enable(store, actor(caller), caller.now.unix_timestamp(), &path).await?;
            changed.push("enabled".to_owned());
        }
        None => {}
    }
    if let Some(period) = period {
        custody::set_cryptoperiod(store, actor(caller), caller.now.unix_timestamp(), &path, period)
            .await?;
        changed.push("rotate_by".to_owned());
    }
    let detail = changed.join(", ");
    Ok(Done { detail, ..Done::ok(json!({"path": path, "changed": changed})) })
}

/// `GET /admin/v1/keystore/import-key`: the keystore's RSA import public key (PEM) that BYOK
/// blobs are wrapped to (`keylatch key wrap-for-import --public-key`).
pub async fn import_key(state: &Broker, caller: &Caller) -> Result<Done, ApiError> {
    let result = async {
        caller.principal.require(&[Role::KeyCustodian])?;
        let spki = custody::import_public_key(&state.keystore).await?;
        let pem = der::pem::encode_string("PUBLIC KEY", der::pem::LineEnding::LF, &spki)
            .map_err(|e| ApiError::internal("import key PEM", &e))?;
        Ok(Done::ok(json!({"public_key_pem": pem})))
    }
    .await;
    conclude(caller, "keystore.import-key", None, result).await
}
