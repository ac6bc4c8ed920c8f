//! The one error every broker operation returns, [`ApiError`]: the rule that failed
//! ([`ErrorKind`], whose `type` values are stable identifiers documented in
//! `server/ERRORS.md`) and a detail. The HTTP edge maps each kind to a status code in one place
//! (`keylatch_server::error`); a `detail` says what failed (a verifier step, a policy rule,
//! an expectation) and never carries secret bytes. Internal causes (store and keystore
//! failures) go to the log; the client learns only that the service is unavailable.

/// What went wrong, from the client's point of view.
/// Not `#[non_exhaustive]`: the HTTP edge matches every kind, so a new kind cannot go out
/// without its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// `version` is not exactly 0.4.0.
    VersionMismatch,
    /// A TEE this broker does not serve.
    UnsupportedTee,
    /// No `kbs-session-id` cookie.
    SessionMissing,
    /// The cookie names no session.
    SessionUnknown,
    /// The session's lifetime passed.
    SessionExpired,
    /// The session's nonce was already answered (single use).
    SessionUsed,
    /// `runtime-data.nonce` is not the session's nonce.
    NonceMismatch,
    /// The evidence's REPORT_DATA does not bind the session's nonce and this tee-pubkey.
    ReportDataMismatch,
    /// Verification of the evidence failed at a named step.
    EvidenceInvalid,
    /// The init-data digest differs from HOST_DATA / MRCONFIGID.
    InitDataMismatch,
    /// Simulated evidence while `allow_simulated = false`.
    SimulatedNotAllowed,
    /// The `sample` TEE while `allow_sample = false`.
    SampleNotAllowed,
    /// No token (bearer or attested session) with a resource request.
    TokenMissing,
    /// A token that does not verify (signature, algorithm, expiry, format).
    TokenInvalid,
    /// The release policy denied the resource.
    PolicyDenied,
    /// No such resource (or no such route).
    NotFound,
    /// Malformed body, JWK or path.
    BadRequest,
    /// Method not allowed on this route.
    MethodNotAllowed,
    /// Body larger than `max_body_bytes`.
    TooLarge,
    /// The store or keystore cannot serve now.
    Unavailable,
    /// A bug or an unexpected internal failure.
    Internal,
    /// The resource exists but its custodian disabled it; `keylatch resource enable` undoes it.
    ResourceDisabled,
    /// The resource was destroyed (crypto-shredded); final. 404 rather than 410 so that clients
    /// that know only 403/404 as final answers (the guest agent, CoCo's) stop at once.
    ResourceDestroyed,
    /// A key-encryption key cannot be retired: resource versions are still sealed under it, or
    /// it is the current one.
    KekInUse,
    /// Admin API: no bearer token, or one that is unknown, revoked or expired.
    AdminUnauthenticated,
    /// Admin API: the principal's role or resource-path scope does not allow this.
    Forbidden,
    /// A published bundle's version is not greater than the stored one (no rollback, no replay).
    StaleVersion,
    /// A published bundle carries a signature by a key not trusted for its name.
    UnknownSigner,
    /// A published bundle has fewer valid trusted signatures than the configured threshold.
    BelowThreshold,
    /// A published bundle's expiry has passed.
    BundleExpired,
    /// A published bundle's signature does not verify (payload or header changed) or is malformed.
    BadSignature,
    /// This client address sent more protocol requests than `[rate_limit]` allows; the reply
    /// carries `Retry-After` (seconds).
    RateLimited,
    /// Collateral the evidence needs (VCEK, TDX TCB info / QE identity / CRLs) is neither in the
    /// evidence nor offline, and fetching it (AMD KDS, Intel PCS) failed or is disabled: the
    /// evidence was not judged; retry later. 503.
    CollateralUnavailable,
    /// The request body did not arrive within `client_timeout_s` (a slow or stalled client). 408.
    RequestTimeout,
}

impl ErrorKind {
    /// Every kind, in declaration order (the docs test checks each against `server/ERRORS.md`).
    pub const ALL: &'static [ErrorKind] = &[
        Self::VersionMismatch,
        Self::UnsupportedTee,
        Self::SessionMissing,
        Self::SessionUnknown,
        Self::SessionExpired,
        Self::SessionUsed,
        Self::NonceMismatch,
        Self::ReportDataMismatch,
        Self::EvidenceInvalid,
        Self::InitDataMismatch,
        Self::SimulatedNotAllowed,
        Self::SampleNotAllowed,
        Self::TokenMissing,
        Self::TokenInvalid,
        Self::PolicyDenied,
        Self::NotFound,
        Self::BadRequest,
        Self::MethodNotAllowed,
        Self::TooLarge,
        Self::Unavailable,
        Self::Internal,
        Self::ResourceDisabled,
        Self::ResourceDestroyed,
        Self::KekInUse,
        Self::AdminUnauthenticated,
        Self::Forbidden,
        Self::StaleVersion,
        Self::UnknownSigner,
        Self::BelowThreshold,
        Self::BundleExpired,
        Self::BadSignature,
        Self::RateLimited,
        Self::CollateralUnavailable,
        Self::RequestTimeout,
    ];

    /// The stable `type` value.
    #[must_use]
    pub fn type_id(self) -> &'static str {
        match self {
            Self::VersionMismatch => "version-mismatch",
            Self::UnsupportedTee => "unsupported-tee",
            Self::SessionMissing => "session-missing",
            Self::SessionUnknown => "session-unknown",
            Self::SessionExpired => "session-expired",
            Self::SessionUsed => "session-used",
            Self::NonceMismatch => "nonce-mismatch",
            Self::ReportDataMismatch => "report-data-mismatch",
            Self::EvidenceInvalid => "evidence-invalid",
            Self::InitDataMismatch => "init-data-mismatch",
            Self::SimulatedNotAllowed => "simulated-not-allowed",
            Self::SampleNotAllowed => "sample-not-allowed",
            Self::TokenMissing => "token-missing",
            Self::TokenInvalid => "token-invalid",
            Self::PolicyDenied => "policy-denied",
            Self::NotFound => "not-found",
            Self::BadRequest => "bad-request",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::TooLarge => "too-large",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
            Self::ResourceDisabled => "resource-disabled",
            Self::ResourceDestroyed => "resource-destroyed",
            Self::KekInUse => "kek-in-use",
            Self::AdminUnauthenticated => "admin-unauthenticated",
            Self::Forbidden => "forbidden",
            Self::StaleVersion => "stale-version",
            Self::UnknownSigner => "unknown-signer",
            Self::BelowThreshold => "below-threshold",
            Self::BundleExpired => "bundle-expired",
            Self::BadSignature => "bad-signature",
            Self::RateLimited => "rate-limited",
            Self::CollateralUnavailable => "collateral-unavailable",
            Self::RequestTimeout => "request-timeout",
        }
    }
}

/// An error answered to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub kind: ErrorKind,
    /// Client-facing text: what failed, never secret bytes.
    pub detail: String,
}

impl ApiError {
    #[must_use]
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self { kind, detail: detail.into() }
    }

    /// The store or keystore failed: the cause goes to the log, the client gets 503.
    #[must_use]
    pub fn unavailable(what: &'static str, cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(what, %cause, "backend unavailable");
        crate::metrics::backend_error(what, "unavailable");
        Self::new(ErrorKind::Unavailable, format!("{what} unavailable; retry later"))
    }

    /// An unexpected internal failure: logged, answered 500 without the cause.
    #[must_use]
    pub fn internal(what: &'static str, cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(what, %cause, "internal error");
        crate::metrics::backend_error(what, "internal");
        Self::new(ErrorKind::Internal, format!("internal error in {what}"))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.type_id(), self.detail)
    }
}

impl std::error::Error for ApiError {}

/// Maps a store error to 503 (logged).
#[must_use]
pub fn store_error(e: &crate::store::StoreError) -> ApiError {
    ApiError::unavailable("store", e)
}

/// Parses a JSON request body, answering 400 `bad-request` for a malformed one.
pub fn json_body<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &'static str,
) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        // serde's message names the field and position, never more than a few input bytes.
        ApiError::new(ErrorKind::BadRequest, format!("{what} body: {e}"))
    })
}
