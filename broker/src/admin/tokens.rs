//! `/admin/v1/tokens`: create (the token is in the answer once, never again), list (metadata,
//! never hashes), revoke. Admins only.

use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{mint, Role, TokenRequest};
use super::{conclude, rfc3339, Caller, Done};
use crate::error::{json_body, store_error};
use crate::error::{ApiError, ErrorKind};
use crate::state::Broker;
use crate::store::AdminToken;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    role: Role,
    #[serde(default)]
    prefixes: Vec<String>,
    #[serde(default)]
    expires_in_days: Option<u32>,
}

/// A token's public metadata.
fn describe(t: &AdminToken) -> Value {
    json!({
        "id": t.id,
        "name": t.name,
        "role": t.role,
        "prefixes": t.prefixes,
        "created": rfc3339(t.created),
        "expires": t.expires.map(rfc3339),
        "revoked": t.revoked.map(rfc3339),
        "created_by": t.created_by,
    })
}

pub async fn create(
    state: &Broker,
    caller: &Caller,
    body: Result<&[u8], ApiError>,
) -> Result<Done, ApiError> {
    let mut target = None;
    let result = async {
        caller.principal.require(&[Role::Admin])?;
        let body: CreateBody = json_body(body?, "token")?;
        let token = mint(
            &TokenRequest {
                name: body.name,
                role: body.role,
                prefixes: body.prefixes,
                expires_in_days: body.expires_in_days,
                created_by: caller.principal.name.clone(),
            },
            caller.now.unix_timestamp(),
        )?;
        caller.intent("token.create", Some(&token.record.id)).await?;
        state.store.create_admin_token(&token.record).await.map_err(|e| store_error(&e))?;
        target = Some(token.record.id.clone());
        let mut answer = describe(&token.record);
        if let Some(obj) = answer.as_object_mut() {
            obj.insert("token".into(), Value::String(token.secret.as_str().to_owned()));
        }
        Ok(Done {
            created: true,
            body: answer,
            version: None,
            detail: format!("role {} name {}", token.record.role, token.record.name),
        })
    }
    .await;
    conclude(caller, "token.create", target.as_deref(), result).await
}

pub async fn list(state: &Broker, caller: &Caller) -> Result<Done, ApiError> {
    let result = async {
        caller.principal.require(&[Role::Admin])?;
        let tokens = state.store.list_admin_tokens().await.map_err(|e| store_error(&e))?;
        Ok(Done::ok(json!({"tokens": tokens.iter().map(describe).collect::<Vec<_>>()})))
    }
    .await;
    conclude(caller, "token.list", None, result).await
}

pub async fn revoke(state: &Broker, caller: &Caller, id: &str) -> Result<Done, ApiError> {
    let result = async {
        caller.principal.require(&[Role::Admin])?;
        caller.intent("token.revoke", Some(id)).await?;
        if !state
            .store
            .revoke_admin_token(id, caller.now.unix_timestamp())
            .await
            .map_err(|e| store_error(&e))?
        {
            return Err(ApiError::new(ErrorKind::NotFound, format!("no unrevoked token {id}")));
        }
        Ok(Done::ok(json!({"id": id, "revoked": true})))
    }
    .await;
    conclude(caller, "token.revoke", Some(id), result).await
}
