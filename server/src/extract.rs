//! What the handlers read from a request besides its route: the body (within the size limit,
//! as JSON), `Authorization: Bearer` credentials and the `kbs-session-id` cookie.

use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use keylatch_broker::{ApiError, ErrorKind};
use serde::de::DeserializeOwned;

use crate::error::HttpError;

/// The session cookie's name (what upstream clients send back).
pub const COOKIE_NAME: &str = "kbs-session-id";

/// The body's bytes, or 413 for an oversized body and 400 for one that could not be read.
pub fn body_bytes(
    body: Result<axum::body::Bytes, BytesRejection>,
    what: &'static str,
) -> Result<axum::body::Bytes, ApiError> {
    body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(ErrorKind::TooLarge, format!("{what} body exceeds the size limit"))
        } else {
            ApiError::new(ErrorKind::BadRequest, format!("{what} body could not be read"))
        }
    })
}

/// Reads and parses a JSON body ([`body_bytes`], then `keylatch_broker::error::json_body`).
pub fn json_body<T: DeserializeOwned>(
    body: Result<axum::body::Bytes, BytesRejection>,
    what: &'static str,
) -> Result<T, HttpError> {
    Ok(keylatch_broker::error::json_body(&body_bytes(body, what)?, what)?)
}

/// The credentials of `Authorization: Bearer <token>` (the scheme matched case-insensitively,
/// RFC 9110 §11.1), trimmed; `None` without the header or with another scheme.
#[must_use]
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credentials) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| credentials.trim())
}

/// The `kbs-session-id` cookie value, if any.
#[must_use]
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim_matches('"').to_owned())
}
