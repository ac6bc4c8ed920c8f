//! The admin API under `/admin/v1` over HTTP: the routes, the [`Caller`] extractor
//! (authentication through `keylatch_broker::admin::auth::authenticate`), and the handlers,
//! each of which extracts its inputs, calls the operation of the same name in
//! `keylatch_broker::admin` (which records the call) and maps the outcome ([`answer`]). The API
//! is documented in `server/ADMIN-API.md`.

mod handlers;

use std::net::SocketAddr;

use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use keylatch_broker::admin::auth::{authenticate, Presented};
use keylatch_broker::admin::Done;
use keylatch_broker::{ApiError, ErrorKind};

use crate::error::{respond, HttpError};
use crate::state::AppState;
use handlers::{audit, policies, refvals, resources, tokens};

/// The admin routes, to be merged into the broker's router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/resources", get(resources::list))
        .route(
            "/admin/v1/resources/{*path}",
            get(resources::show)
                .put(resources::put)
                .patch(resources::patch)
                .delete(resources::delete),
        )
        .route("/admin/v1/policies", get(policies::list))
        .route("/admin/v1/policies/{*path}", get(policies::get).put(policies::set))
        .route("/admin/v1/reference-values", get(refvals::list))
        .route("/admin/v1/reference-values/{name}", get(refvals::show).put(refvals::publish))
        .route("/admin/v1/tokens", get(tokens::list).post(tokens::create))
        .route("/admin/v1/tokens/{id}", axum::routing::delete(tokens::revoke))
        .route("/admin/v1/keystore/import-key", get(resources::import_key))
        .route("/admin/v1/audit", get(audit::summary))
        .route("/admin/v1/audit/checkpoints", get(audit::checkpoints))
        .route("/admin/v1/audit/entries", get(audit::entries))
        .route("/admin/v1/audit/proof/inclusion", get(audit::inclusion))
        .route("/admin/v1/audit/proof/consistency", get(audit::consistency))
        .route("/admin/v1/audit/query", get(audit::search))
}

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
            crate::protocol::bearer_token(&parts.headers)
                .map_or(Presented::NotBearer, Presented::Bearer)
        } else {
            Presented::Nothing
        };
        let client = client_addr(parts);
        let principal = authenticate(
            state,
            presented,
            parts.method.as_str(),
            parts.uri.path(),
            client.as_deref(),
            keylatch_broker::clock::now_s(),
        )
        .await?;
        Ok(Self(keylatch_broker::admin::Caller { principal, client, audit: state.audit.clone() }))
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
