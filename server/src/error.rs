//! The edge's one mapping from a broker refusal ([`ApiError`]: the rule that failed and why) to
//! an HTTP answer: the status of its kind ([`status`]) and the KBS error body
//! `{"type", "detail"}` ([`HttpError`]). The `type` values are documented in `server/ERRORS.md`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keylatch_broker::{ApiError, ErrorKind};
use keylatch_wire::ErrorBody;

/// The HTTP status of each refusal kind (the table in `server/ERRORS.md`).
#[must_use]
pub fn status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::VersionMismatch
        | ErrorKind::UnsupportedTee
        | ErrorKind::SessionMissing
        | ErrorKind::SessionUnknown
        | ErrorKind::SessionExpired
        | ErrorKind::SessionUsed
        | ErrorKind::NonceMismatch
        | ErrorKind::ReportDataMismatch
        | ErrorKind::EvidenceInvalid
        | ErrorKind::InitDataMismatch
        | ErrorKind::SimulatedNotAllowed
        | ErrorKind::SampleNotAllowed
        | ErrorKind::TokenMissing
        | ErrorKind::TokenInvalid
        | ErrorKind::AdminUnauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::PolicyDenied | ErrorKind::ResourceDisabled | ErrorKind::Forbidden => {
            StatusCode::FORBIDDEN
        }
        ErrorKind::NotFound | ErrorKind::ResourceDestroyed => StatusCode::NOT_FOUND,
        ErrorKind::KekInUse | ErrorKind::StaleVersion => StatusCode::CONFLICT,
        ErrorKind::UnknownSigner
        | ErrorKind::BelowThreshold
        | ErrorKind::BundleExpired
        | ErrorKind::BadSignature => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Unavailable | ErrorKind::CollateralUnavailable => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
    }
}

/// A refusal on its way to the client (`?` converts an [`ApiError`]).
#[derive(Debug)]
pub struct HttpError(pub ApiError);

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = ErrorBody::new(self.0.kind.type_id(), self.0.detail);
        (status(self.0.kind), axum::Json(body)).into_response()
    }
}

/// The response for a refusal.
#[must_use]
pub fn respond(e: ApiError) -> Response {
    HttpError(e).into_response()
}
