//! The Attestation → token step of KBS 0.4.0 ([`attest`]), in order:
//!
//! 1. the cookie names a session that is `issued` and unexpired;
//! 2. `runtime-data.nonce` equals the session's nonce;
//! 3. the session is consumed in one conditional update (a nonce is answered once, even by
//!    racing replicas);
//! 4. REPORT_DATA is rebuilt from the **session's** nonce, the body's tee-pubkey and
//!    additional evidence, and the evidence verified against it (off the async runtime);
//! 5. init-data, when present, must match HOST_DATA / MRCONFIGID;
//! 6. the claims are appraised against every configured reference-value bundle;
//! 7. a token is signed and recorded on the session.

use keylatch_wire::kbs_types::Attestation;
use keylatch_wire::{report_data_binding, Jwk};
use rand_core::{OsRng, RngCore as _};
use serde_json::{json, Map, Value};
use verifier::{Claims, Tee};

use crate::decision::{record_decision, Action, Appraised, DecisionRecord};
use crate::error::{json_body, store_error, ApiError, ErrorKind};
use crate::evidence::{check_init_data, init_data_digest};
use crate::state::Broker;
use crate::store::SessionState;

/// What a successful attestation produced, for the decision record.
struct Attested {
    claims: Claims,
    jti: String,
    token: String,
    bundles: Vec<Appraised>,
}

/// A token issued to an attested session.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The signed attestation token (compact JWS).
    pub token: String,
}

/// Answers an Attestation at `now` for the session the cookie names (`session_id`). `body` is
/// the request body as received, or why it could not be read: it is parsed only after the
/// session checks, so a stale or missing cookie is reported as such whatever the body. The
/// decision is recorded either way; an error from recording withholds the token.
pub async fn attest(
    broker: &Broker,
    session_id: Option<&str>,
    body: Result<&[u8], ApiError>,
    client: Option<&str>,
    now: time::OffsetDateTime,
) -> Result<Issued, ApiError> {
    let result = appraise_session(broker, session_id, body, now).await;
    let (allowed, outcome, detail) = match &result {
        Ok(_) => (true, "token-issued", String::new()),
        Err(e) => (false, e.kind.type_id(), e.detail.clone()),
    };
    let ok = result.as_ref().ok();
    let evidence = ok.map(|a| hex::encode(a.claims.evidence_sha256.0));
    let vm = ok
        .and_then(|a| serde_json::to_value(&a.claims).ok())
        .map(|v| crate::audit::record::vm_identity(&v));
    record_decision(
        &broker.audit,
        &DecisionRecord {
            action: Action::Attest,
            allowed,
            request_id: None,
            client,
            tee: ok.map(|a| a.claims.tee.as_str()),
            simulated: ok.map(|a| a.claims.simulated),
            vm,
            session: session_id,
            token_jti: ok.map(|a| a.jti.as_str()),
            evidence_sha256: evidence.as_deref(),
            resource: None,
            resource_version: None,
            policy_version: None,
            policy_digest: None,
            bundles: ok.map(|a| a.bundles.clone()).unwrap_or_default(),
            outcome,
            detail: &detail,
        },
    )
    .await?;
    let attested = result?;
    Ok(Issued { token: attested.token })
}

/// The appraisals of a token, for the decision record.
fn appraised(appraisals: &[Value]) -> Vec<Appraised> {
    crate::audit::record::bundles_of(&Value::Array(appraisals.to_vec()))
        .into_iter()
        .zip(appraisals)
        .map(|(bundle, a)| Appraised {
            bundle,
            accepted: a.get("accepted").and_then(Value::as_bool).unwrap_or(false),
        })
        .collect()
}

async fn appraise_session(
    broker: &Broker,
    session_id: Option<&str>,
    body: Result<&[u8], ApiError>,
    at: time::OffsetDateTime,
) -> Result<Attested, ApiError> {
    let id = session_id.ok_or_else(|| {
        ApiError::new(
            ErrorKind::SessionMissing,
            "no kbs-session-id cookie; call /kbs/v0/auth first",
        )
    })?;
    let now = at.unix_timestamp();
    let session =
        broker.store.get_session(id).await.map_err(|e| store_error(&e))?.ok_or_else(|| {
            ApiError::new(ErrorKind::SessionUnknown, "the kbs-session-id cookie names no session")
        })?;
    if session.state != SessionState::Issued {
        return Err(ApiError::new(
            ErrorKind::SessionUsed,
            "this session's nonce was already answered",
        ));
    }
    if now >= session.expires {
        return Err(ApiError::new(
            ErrorKind::SessionExpired,
            format!("the session expired at {} (now {now})", session.expires),
        ));
    }
    let req: Attestation = json_body(body?, "attest")?;
    if req.runtime_data.nonce != session.nonce {
        return Err(ApiError::new(
            ErrorKind::NonceMismatch,
            "runtime-data.nonce is not this session's nonce",
        ));
    }
    let jwk = Jwk::from_tee_pubkey(&req.runtime_data.tee_pubkey)
        .map_err(|e| ApiError::new(ErrorKind::BadRequest, e.to_string()))?;
    let init = req.init_data.as_ref().map(|d| init_data_digest(&d.format, &d.body)).transpose()?;
    if !broker.store.consume_session(id, &session.nonce, now).await.map_err(|e| store_error(&e))? {
        return Err(ApiError::new(
            ErrorKind::SessionUsed,
            "this session's nonce was already answered",
        ));
    }
    let Some(tee) = Tee::from_name(&session.tee) else {
        return Err(ApiError::new(ErrorKind::UnsupportedTee, "session TEE is not served"));
    };
    // Rebuilt from the session's nonce: the body's copy was only compared above.
    let expected = report_data_binding(&session.nonce, &jwk, &req.tee_evidence.additional_evidence);
    let claims = crate::evidence::verify_at(
        &broker.collateral,
        &broker.verifiers,
        tee,
        req.tee_evidence.primary_evidence,
        expected,
        at,
    )
    .await?;
    if let Some((_, digest)) = &init {
        check_init_data(&claims, digest)?;
    }
    let current = broker.bundles.current(broker.store.as_ref()).await?;
    let appraisals: Vec<Value> = current
        .iter()
        .map(|b| {
            let a = reference_values::appraise(&claims, b.bundle(), at);
            json!({
                "bundle": a.bundle,
                "version": a.version,
                "digest": hex::encode(b.digest()),
                "accepted": a.is_accepted(),
                "mismatches": a.mismatches,
            })
        })
        .collect();
    let bundles = appraised(&appraisals);
    let mut jti = [0u8; 16];
    OsRng.fill_bytes(&mut jti);
    let jti = hex::encode(jti);
    let mut token_claims = Map::new();
    token_claims.insert("jti".into(), json!(jti));
    token_claims.insert("iat".into(), json!(now));
    token_claims.insert("nbf".into(), json!(now));
    token_claims.insert("exp".into(), json!(now.saturating_add(broker.settings.token_lifetime_s)));
    token_claims.insert("tee-pubkey".into(), jwk.to_json());
    token_claims.insert(
        "evidence".into(),
        serde_json::to_value(&claims).map_err(|e| ApiError::internal("claims", &e))?,
    );
    token_claims.insert("appraisals".into(), Value::Array(appraisals));
    token_claims.insert(
        "init_data".into(),
        init.map_or(Value::Null, |(alg, d)| json!({"algorithm": alg, "digest": hex::encode(d)})),
    );
    let token = broker.token_key.sign(token_claims).map_err(|e| ApiError::internal("token", &e))?;
    broker.store.attest_session(id, &jti, &token).await.map_err(|e| store_error(&e))?;
    Ok(Attested { claims, jti, token, bundles })
}
