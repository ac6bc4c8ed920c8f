//! The one error every HTTP handler returns, [`ApiError`], and its single mapping to a status
//! code and the KBS error body `{"type", "detail"}`. The `type` values are stable identifiers
//! documented in `kbs/ERRORS.md`; a `detail` says what failed (a verifier step, a policy rule,
//! an expectation) and never carries secret bytes. Internal causes (store and keystore
//! failures) go to the log; the client learns only that the service is unavailable.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keylatch_wire::ErrorBody;

/// What went wrong, from the client's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
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
    /// Collateral the evidence needs (VCEK, TDX TCB info / QE identity / CRLs) is neither in the
    /// evidence nor offline, and fetching it (AMD KDS, Intel PCS) failed or is disabled: the
    /// evidence was not judged; retry later. 503.
    CollateralUnavailable,
}

impl ErrorKind {
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
            Self::CollateralUnavailable => "collateral-unavailable",
        }
    }

    #[must_use]
    pub fn status(self) -> StatusCode {
        match self {
            Self::VersionMismatch
            | Self::UnsupportedTee
            | Self::SessionMissing
            | Self::SessionUnknown
            | Self::SessionExpired
            | Self::SessionUsed
            | Self::NonceMismatch
            | Self::ReportDataMismatch
            | Self::EvidenceInvalid
            | Self::InitDataMismatch
            | Self::SimulatedNotAllowed
            | Self::SampleNotAllowed
            | Self::TokenMissing
            | Self::TokenInvalid => StatusCode::UNAUTHORIZED,
            Self::PolicyDenied => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unavailable | Self::CollateralUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
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
        Self::new(ErrorKind::Unavailable, format!("{what} unavailable; retry later"))
    }

    /// An unexpected internal failure: logged, answered 500 without the cause.
    #[must_use]
    pub fn internal(what: &'static str, cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(what, %cause, "internal error");
        Self::new(ErrorKind::Internal, format!("internal error in {what}"))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.type_id(), self.detail)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody::new(self.kind.type_id(), self.detail);
        (self.kind.status(), axum::Json(body)).into_response()
    }
}
