//! The admin API's extraction and answers: the authenticated [`Caller`] (through
//! `keylatch_broker::admin::auth::authenticate`, which records refusals), query strings, and
//! the mapping of an operation's outcome to a response ([`answer`]).

use std::net::SocketAddr;

use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use keylatch_broker::admin::auth::{authenticate, Presented};
use keylatch_broker::admin::Done;
use keylatch_broker::{ApiError, ErrorKind};

use crate::error::{respond, HttpError};
use crate::state::AppState;

/// The authenticated caller of an admin route.
#[derive(Debug, Clone)]
pub struct Caller(pub keylatch_broker::admin::Caller);

/// The client's address as the server saw it, when known.
#[must_use]
pub fn client_addr(parts: &Parts) -> Option<String> {
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.to_string())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, HttpError> {
        let presented = if parts.headers.contains_key(axum::http::header::AUTHORIZATION) {
            crate::extract::bearer_token(&parts.headers)
                .map_or(Presented::NotBearer, Presented::Bearer)
        } else {
            Presented::Nothing
        };
        let client = client_addr(parts);
        let now = time::OffsetDateTime::now_utc();
        let principal = authenticate(
            state,
            presented,
            parts.method.as_str(),
            parts.uri.path(),
            client.as_deref(),
            now.unix_timestamp(),
        )
        .await?;
        Ok(Self(keylatch_broker::admin::Caller {
            principal,
            client,
            audit: state.audit.clone(),
            now,
        }))
    }
}

/// The answer to an admin operation: 201 or 200 with its JSON body, or the refusal.
#[must_use]
pub fn answer(result: Result<Done, ApiError>) -> Response {
    match result {
        Ok(done) => {
            let status = if done.created { StatusCode::CREATED } else { StatusCode::OK };
            (status, Json(done.body)).into_response()
        }
        Err(e) => respond(e),
    }
}

/// A query string, or 400 in the broker's error format.
pub fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v).map_err(|e| ApiError::new(ErrorKind::BadRequest, format!("query: {e}")))
}
