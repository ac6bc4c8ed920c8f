//! The KBS 0.4.0 client:
//!
//! 1. `POST /kbs/v0/auth` `{version, tee, extra-params}` → challenge nonce + `kbs-session-id` cookie;
//! 2. a fresh ephemeral key pair; REPORT_DATA = SHA-384(JCS({additional-evidence, nonce, tee-pubkey}));
//! 3. evidence from the [`EvidenceSource`];
//! 4. `POST /kbs/v0/attest` `{init-data, runtime-data {nonce, tee-pubkey}, tee-evidence}` → token;
//! 5. `GET /kbs/v0/resource/<repo>/<type>/<tag>` with the cookie and the bearer token → JWE,
//!    decrypted with the ephemeral key.
//!
//! The token (and the key pair it names) is reused for further resources while its `exp` (read
//! from the payload without verifying it: the broker verifies) is more than a margin away. A 401
//! on the resource triggers one fresh handshake, as the upstream client does; 403/404 fail at
//! once; connection errors and 5xx are retried by [`retry`](crate::retry) within the deadline.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use keylatch_wire::kbs_types::{
    Attestation, Challenge, CompositeEvidence, InitData, Request, RuntimeData,
};
use keylatch_wire::{
    decrypt, report_data_binding, ErrorBody, Jwe, KeyKind, TeeKeyPair, KBS_PROTOCOL_VERSION,
};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::evidence::EvidenceSource;
use crate::http::{Http, Reply};
use crate::{retry, AgentError};

/// A token is reused only while it has more than this left.
const TOKEN_MARGIN_S: u64 = 30;
const COOKIE_NAME: &str = "kbs-session-id";

/// Everything the client needs.
#[derive(Clone)]
pub struct AgentConfig {
    /// `https://host:port` of the broker.
    pub url: String,
    /// PEM of the broker's CA: the only trust anchor.
    pub ca_pem: Vec<u8>,
    pub key_kind: KeyKind,
    /// Init-data TOML text, sent as `{"format":"toml","body":..}`.
    pub init_data: Option<String>,
    /// How long to keep retrying an unreachable broker.
    pub deadline: Duration,
    pub evidence: Arc<dyn EvidenceSource>,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("url", &self.url)
            .field("key_kind", &self.key_kind)
            .field("deadline", &self.deadline)
            .field("evidence", &self.evidence.describe())
            .finish_non_exhaustive()
    }
}

/// `kbs:///repo/type/tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    pub repo: String,
    pub kind: String,
    pub tag: String,
}

impl ResourcePath {
    /// Parses `kbs:///repo/type/tag`; each segment matches `[A-Za-z0-9_-]+[A-Za-z0-9_.-]*`.
    pub fn parse(uri: &str) -> Result<Self, AgentError> {
        let bad = || AgentError::Local(format!("resource {uri:?} is not kbs:///repo/type/tag"));
        let rest = uri.strip_prefix("kbs:///").ok_or_else(bad)?;
        let parts: Vec<&str> = rest.split('/').collect();
        let [repo, kind, tag] = parts.as_slice() else { return Err(bad()) };
        for s in [repo, kind, tag] {
            let mut chars = s.chars();
            let first_ok =
                chars.next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !first_ok
                || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            {
                return Err(bad());
            }
        }
        Ok(Self { repo: (*repo).to_owned(), kind: (*kind).to_owned(), tag: (*tag).to_owned() })
    }

    #[must_use]
    pub fn http_path(&self) -> String {
        format!("/kbs/v0/resource/{}/{}/{}", self.repo, self.kind, self.tag)
    }
}

impl std::fmt::Display for ResourcePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "kbs:///{}/{}/{}", self.repo, self.kind, self.tag)
    }
}

/// `{"token": ..}` from `attest`.
#[derive(Deserialize)]
struct TokenReply {
    token: String,
}

/// An attested session: the token and the key pair it was issued for.
struct Session {
    cookie: Option<String>,
    token: String,
    exp: Option<u64>,
    key: TeeKeyPair,
}

/// A KBS client; keeps the token between resources.
pub struct Client {
    http: Http,
    config: AgentConfig,
    session: Option<Session>,
    /// How many handshakes this client ran (for tests and diagnostics).
    handshakes: u32,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.config)
            .field("attested", &self.session.is_some())
            .finish_non_exhaustive()
    }
}

/// Fetches one resource: the whole flow, with retries inside the configured deadline.
pub fn fetch_resource(
    config: &AgentConfig,
    resource: &ResourcePath,
) -> Result<Zeroizing<Vec<u8>>, AgentError> {
    Client::new(config.clone())?.get_resource(resource)
}

impl Client {
    pub fn new(config: AgentConfig) -> Result<Self, AgentError> {
        Ok(Self {
            http: Http::new(&config.url, &config.ca_pem)?,
            config,
            session: None,
            handshakes: 0,
        })
    }

    /// Handshakes run so far.
    #[must_use]
    pub fn handshakes(&self) -> u32 {
        self.handshakes
    }

    /// Gets and decrypts `resource`, retrying transient failures until the deadline.
    pub fn get_resource(
        &mut self,
        resource: &ResourcePath,
    ) -> Result<Zeroizing<Vec<u8>>, AgentError> {
        let total = self.config.deadline;
        let deadline = Instant::now() + total;
        retry::with_deadline(deadline, total, || self.get_once(resource, deadline))
    }

    fn get_once(
        &mut self,
        resource: &ResourcePath,
        deadline: Instant,
    ) -> Result<Zeroizing<Vec<u8>>, AgentError> {
        let mut rehandshaked = false;
        if !self.session.as_ref().is_some_and(reusable) {
            self.session = None;
            self.handshake(deadline)?;
        }
        loop {
            let session =
                self.session.as_ref().ok_or_else(|| AgentError::Protocol("no session".into()))?;
            let reply = self.http.get(
                "resource",
                &resource.http_path(),
                session.cookie.as_deref(),
                Some(&session.token),
                call_timeout(deadline),
            )?;
            match reply.status {
                200 => {
                    let jwe = Jwe::from_json(&reply.body)?;
                    return Ok(decrypt(&session.key, &jwe)?);
                }
                401 if !rehandshaked => {
                    self.session = None;
                    self.handshake(deadline)?;
                    rehandshaked = true;
                }
                401 => return Err(refused("resource", &reply)),
                403 | 404 => {
                    return Err(AgentError::Denied {
                        what: "resource",
                        status: reply.status,
                        body: ErrorBody::parse(&reply.body),
                    })
                }
                _ => return Err(unexpected("resource", &reply)),
            }
        }
    }

    fn handshake(&mut self, deadline: Instant) -> Result<(), AgentError> {
        self.handshakes += 1;
        let source = Arc::clone(&self.config.evidence);
        let request = Request {
            version: KBS_PROTOCOL_VERSION.to_owned(),
            tee: source.tee(),
            extra_params: serde_json::json!({"supported-hash-algorithms": ["sha384"]}),
        };
        let reply = self.http.post_json(
            "auth",
            "/kbs/v0/auth",
            None,
            &to_json(&request)?,
            call_timeout(deadline),
        )?;
        if reply.status != 200 {
            return Err(unexpected("auth", &reply));
        }
        let challenge: Challenge = serde_json::from_slice(&reply.body)
            .map_err(|_| AgentError::Protocol("auth: reply is not a KBS challenge".into()))?;
        if let Some(h) =
            challenge.extra_params.get("selected-hash-algorithm").and_then(|v| v.as_str())
        {
            if !h.eq_ignore_ascii_case("sha384") {
                return Err(AgentError::Protocol(format!(
                    "auth: broker selected hash {h:?}; only sha384 is supported"
                )));
            }
        }
        let cookie = reply
            .set_cookie
            .iter()
            .filter_map(|c| c.split(';').next())
            .map(str::trim)
            .find(|c| c.starts_with(&format!("{COOKIE_NAME}=")))
            .map(str::to_owned);

        let key = TeeKeyPair::generate(self.config.key_kind)?;
        let jwk = key.public_jwk();
        let report_data = report_data_binding(&challenge.nonce, &jwk, "");
        let evidence = source.evidence(&report_data)?;
        let attestation = Attestation {
            init_data: self
                .config
                .init_data
                .as_ref()
                .map(|body| InitData { format: "toml".to_owned(), body: body.clone() }),
            runtime_data: RuntimeData {
                nonce: challenge.nonce.clone(),
                tee_pubkey: jwk.to_tee_pubkey(),
            },
            tee_evidence: CompositeEvidence {
                primary_evidence: evidence,
                additional_evidence: String::new(),
            },
        };
        let reply = self.http.post_json(
            "attest",
            "/kbs/v0/attest",
            cookie.as_deref(),
            &to_json(&attestation)?,
            call_timeout(deadline),
        )?;
        if reply.status != 200 {
            return Err(unexpected("attest", &reply));
        }
        let token: TokenReply = serde_json::from_slice(&reply.body)
            .map_err(|_| AgentError::Protocol("attest: reply has no token".into()))?;
        let exp = token_exp(&token.token);
        self.session = Some(Session { cookie, token: token.token, exp, key });
        Ok(())
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, AgentError> {
    serde_json::to_vec(v).map_err(|e| AgentError::Local(format!("serializing a request: {e}")))
}

fn refused(what: &'static str, reply: &Reply) -> AgentError {
    AgentError::Refused { what, status: reply.status, body: ErrorBody::parse(&reply.body) }
}

/// Non-200 outside the resource's own cases: 5xx and 429 (the broker's per-address rate limit,
/// hit when many VMs boot behind one NAT address) are transient, other statuses a refusal.
fn unexpected(what: &'static str, reply: &Reply) -> AgentError {
    if reply.status >= 500 || reply.status == 429 {
        let body = ErrorBody::parse(&reply.body)
            .map_or_else(String::new, |b| format!(": {}: {}", b.error_type, b.detail));
        AgentError::Transient { what, reason: format!("HTTP {}{body}", reply.status) }
    } else {
        refused(what, reply)
    }
}

/// One call's timeout: what is left of the deadline, at least 1 s, at most 30 s.
fn call_timeout(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .clamp(Duration::from_secs(1), Duration::from_secs(30))
}

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn reusable(s: &Session) -> bool {
    s.exp.is_some_and(|exp| now_s().saturating_add(TOKEN_MARGIN_S) < exp)
}

/// The `exp` claim of a JWT, read without verification (the broker verifies its own tokens).
#[must_use]
pub fn token_exp(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let bytes = keylatch_wire::b64::decode("token payload", payload).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("exp")?.as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_resource_uris() {
        let r = ResourcePath::parse("kbs:///default/disk-key/vm-1.v2").unwrap();
        assert_eq!(r.http_path(), "/kbs/v0/resource/default/disk-key/vm-1.v2");
        assert_eq!(r.to_string(), "kbs:///default/disk-key/vm-1.v2");
        for bad in [
            "kbs://default/a/b",
            "kbs:///a/b",
            "kbs:///a/b/c/d",
            "kbs:///a/../c",
            "kbs:///a/b/.c",
            "kbs:///a/b/c?x",
            "kbs:///a//c",
        ] {
            assert!(ResourcePath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_exp_from_token_payload() {
        let payload = keylatch_wire::b64::encode(br#"{"exp":1900000000,"iss":"kbs"}"#);
        assert_eq!(token_exp(&format!("eyJhbGciOiJFUzI1NiJ9.{payload}.sig")), Some(1_900_000_000));
        assert_eq!(token_exp("not-a-jwt"), None);
    }
}
