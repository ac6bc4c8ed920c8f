//! The Request → Challenge step of KBS 0.4.0 ([`auth`]): checks the protocol version (exactly
//! 0.4.0) and the TEE, creates a session in the store with a fresh 32-byte nonce, and records
//! the decision. [`sweep_sessions`] removes sessions nobody can use any more, so challenges that
//! are never answered do not pile up in the store. The `kbs-session-id` cookie that carries the
//! session id is the HTTP edge's business.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rand_core::{OsRng, RngCore as _};
use serde::Deserialize;

use crate::decision::{record_decision, Action, DecisionRecord};
use crate::error::{store_error, ApiError, ErrorKind};
use crate::state::Broker;
use crate::store::{Session, SessionState};

/// The KBS `Request`, with `tee` as a string so an unknown TEE is a clear error, not a 400.
#[derive(Debug, Deserialize)]
pub struct AuthRequest {
    pub version: String,
    pub tee: String,
    #[serde(rename = "extra-params", default)]
    #[allow(dead_code)] // reason: accepted and ignored; SHA-384 is always selected
    extra_params: serde_json::Value,
}

/// An issued challenge: the new session (its id goes into the cookie, its nonce to the guest).
#[derive(Debug, Clone)]
pub struct Challenge {
    pub session_id: String,
    pub nonce: String,
    /// When the session's challenge expires (Unix seconds).
    pub expires: i64,
}

/// Answers a Request at `now`: a challenge, or the rule that refused it. The decision is
/// recorded either way; an error from recording refuses the challenge.
pub async fn auth(
    broker: &Broker,
    req: &AuthRequest,
    now: time::OffsetDateTime,
) -> Result<Challenge, ApiError> {
    let result = challenge(broker, req, now.unix_timestamp()).await;
    let (allowed, outcome, detail, session) = match &result {
        Ok(c) => (true, "challenge", String::new(), Some(c.session_id.clone())),
        Err(e) => (false, e.kind.type_id(), e.detail.clone(), None),
    };
    record_decision(
        &broker.audit,
        &DecisionRecord {
            tee: Some(&req.tee),
            session: session.as_deref(),
            ..DecisionRecord::new(Action::Auth, allowed, outcome, &detail)
        },
    )
    .await?;
    result
}

async fn challenge(broker: &Broker, req: &AuthRequest, now: i64) -> Result<Challenge, ApiError> {
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
    let served = crate::evidence::served_tees(broker.settings.allow_sample);
    match req.tee.as_str() {
        tee if served.contains(&tee) => {}
        "sample" => return Err(crate::evidence::sample_refused()),
        other => {
            return Err(ApiError::new(
                ErrorKind::UnsupportedTee,
                format!(
                    "tee {:?} is not served ({})",
                    other.chars().take(32).collect::<String>(),
                    served.join(", ")
                ),
            ))
        }
    }
    let mut nonce = [0u8; 32];
    OsRng.fill_bytes(&mut nonce);
    let mut id = [0u8; 32];
    OsRng.fill_bytes(&mut id);
    let session = Session {
        id: URL_SAFE_NO_PAD.encode(id),
        nonce: STANDARD.encode(nonce),
        tee: req.tee.clone(),
        created: now,
        expires: now.saturating_add(broker.settings.session_lifetime_s),
        state: SessionState::Issued,
        token_jti: None,
        token: None,
    };
    broker.store.create_session(&session).await.map_err(|e| store_error(&e))?;
    Ok(Challenge { session_id: session.id, nonce: session.nonce, expires: session.expires })
}

/// How often [`sweep_sessions`] runs.
pub const SESSION_SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Deletes, every [`SESSION_SWEEP_INTERVAL`], each session whose challenge expired more than a
/// token lifetime ago: its nonce can no longer be answered, and a token it issued (at the
/// latest when the challenge expired) has expired too, so neither its cookie nor its token can
/// release anything. Runs until the process ends; a store failure is logged and retried on the
/// next tick. With several replicas each sweeps; the deletes are idempotent.
pub async fn sweep_sessions(broker: Broker) {
    let mut tick = tokio::time::interval(SESSION_SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match sweep_once(&broker, crate::clock::now_s()).await {
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
pub async fn sweep_once(broker: &Broker, now: i64) -> Result<u64, crate::store::StoreError> {
    broker.store.purge_sessions(now.saturating_sub(broker.settings.token_lifetime_s)).await
}
