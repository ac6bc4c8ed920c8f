//! `POST /kbs/v0/auth`: the Request → Challenge step. Checks the protocol version (exactly
//! 0.4.0) and the TEE, creates a session in the store with a fresh 32-byte nonce, and sets the
//! `kbs-session-id` cookie. [`sweep_sessions`] removes sessions nobody can use any more, so
//! challenges that are never answered do not pile up in the store.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rand_core::{OsRng, RngCore as _};
use serde::Deserialize;
use serde_json::json;

use super::{json_body, now_s, store_error, COOKIE_NAME};
use crate::decision::{record_decision, Action, DecisionRecord};
use crate::error::{ApiError, ErrorKind};
use crate::state::AppState;
use crate::store::{Session, SessionState};

/// The KBS `Request`, with `tee` as a string so an unknown TEE is a clear error, not a 400.
#[derive(Deserialize)]
struct AuthRequest {
    version: String,
    tee: String,
    #[serde(rename = "extra-params", default)]
    #[allow(dead_code)] // reason: accepted and ignored; SHA-384 is always selected
    extra_params: serde_json::Value,
}

pub async fn handle(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: AuthRequest = json_body(body, "auth")?;
    let result = challenge(&state, &req).await;
    let (allowed, outcome, detail, session) = match &result {
        Ok((s, _)) => (true, "challenge", String::new(), Some(s.id.clone())),
        Err(e) => (false, e.kind.type_id(), e.detail.clone(), None),
    };
    record_decision(
        &state.audit,
        &DecisionRecord {
            action: Action::Auth,
            allowed,
            request_id: None,
            client: None,
            tee: Some(&req.tee),
            simulated: None,
            vm: None,
            session: session.as_deref(),
            token_jti: None,
            evidence_sha256: None,
            resource: None,
            resource_version: None,
            policy_version: None,
            policy_digest: None,
            bundles: Vec::new(),
            outcome,
            detail: &detail,
        },
    )
    .await?;
    let (session, cookie) = result?;
    let body = json!({"nonce": session.nonce, "extra-params": ""});
    Ok(([(SET_COOKIE, cookie)], axum::Json(body)).into_response())
}

async fn challenge(state: &AppState, req: &AuthRequest) -> Result<(Session, String), ApiError> {
    if req.version != keylatch_wire::KBS_PROTOCOL_VERSION {
        return Err(ApiError::new(
            ErrorKind::VersionMismatch,
            format!(
                "protocol version mismatch: this broker speaks {} only, the request says {:?}",
                keylatch_wire::KBS_PROTOCOL_VERSION,
                req.version.chars().take(32).collect::<String>()
            ),
        ));
    }
    match req.tee.as_str() {
        "snp" | "tdx" => {}
        "sample" if state.settings.allow_sample => {}
        "sample" => return Err(crate::evidence::sample_refused()),
        other => {
            return Err(ApiError::new(
                ErrorKind::UnsupportedTee,
                format!(
                    "tee {:?} is not served (snp, tdx)",
                    other.chars().take(32).collect::<String>()
                ),
            ))
        }
    }
    let mut nonce = [0u8; 32];
    OsRng.fill_bytes(&mut nonce);
    let mut id = [0u8; 32];
    OsRng.fill_bytes(&mut id);
    let now = now_s();
    let session = Session {
        id: URL_SAFE_NO_PAD.encode(id),
        nonce: STANDARD.encode(nonce),
        tee: req.tee.clone(),
        created: now,
        expires: now.saturating_add(state.settings.session_lifetime_s),
        state: SessionState::Issued,
        token_jti: None,
        token: None,
    };
    state.store.create_session(&session).await.map_err(|e| store_error(&e))?;
    let expires = time::OffsetDateTime::from_unix_timestamp(session.expires)
        .map_err(|e| ApiError::internal("session expiry", &e))?;
    let mut cookie = format!(
        "{COOKIE_NAME}={}; Expires={}; HttpOnly; Path=/kbs",
        session.id,
        http_date(expires)
    );
    if state.settings.secure_cookie {
        cookie.push_str("; Secure");
    }
    Ok((session, cookie))
}

/// RFC 9110 IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
fn http_date(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let months =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let day = days.get(usize::from(t.weekday().number_days_from_monday())).unwrap_or(&"Mon");
    let month = months.get(usize::from(u8::from(t.month())) - 1).unwrap_or(&"Jan");
    format!(
        "{day}, {:02} {month} {} {:02}:{:02}:{:02} GMT",
        t.day(),
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// How often [`sweep_sessions`] runs.
pub const SESSION_SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Deletes, every [`SESSION_SWEEP_INTERVAL`], each session whose challenge expired more than a
/// token lifetime ago: its nonce can no longer be answered, and a token it issued (at the
/// latest when the challenge expired) has expired too, so neither its cookie nor its token can
/// release anything. Runs until the process ends; a store failure is logged and retried on the
/// next tick. With several replicas each sweeps; the deletes are idempotent.
pub async fn sweep_sessions(state: AppState) {
    let mut tick = tokio::time::interval(SESSION_SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match sweep_once(&state, now_s()).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(sessions = n, "swept sessions past their use"),
            Err(e) => {
                crate::metrics::backend_error("store", "unavailable");
                tracing::warn!(error = %e, "sweeping expired sessions failed; retrying later");
            }
        }
    }
}

/// One sweep at `now` (Unix seconds): the number of sessions removed.
pub async fn sweep_once(state: &AppState, now: i64) -> Result<u64, crate::store::StoreError> {
    state.store.purge_sessions(now.saturating_sub(state.settings.token_lifetime_s)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_cookie_dates_as_imf_fixdate() {
        let t = time::OffsetDateTime::from_unix_timestamp(784_111_777).unwrap();
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
