//! `GET /kbs/v0/resource/<repo>/<type>/<tag>`: the path, the bearer token, the cookie and the
//! peer address go to [`keylatch_broker::protocol::release`]; the JWE comes back as the body.

use std::net::SocketAddr;

use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::HeaderMap;
use axum::{Extension, Json};
use keylatch_broker::protocol::Credentials;
use keylatch_broker::{ApiError, ErrorKind};
use serde_json::Value;

use crate::error::HttpError;
use crate::extract::{bearer_token, session_cookie};
use crate::state::AppState;

pub async fn handle(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Result<Json<Value>, HttpError> {
    // A path that does not percent-decode to UTF-8 (`%ff`) is a malformed path like any other:
    // the same `bad-request` body (not axum's plain-text rejection), and audited.
    let path = path.map(|Path(p)| p).map_err(|_| {
        ApiError::new(ErrorKind::BadRequest, "resource path is not percent-encoded UTF-8")
    });
    let cookie = session_cookie(&headers);
    let credentials = Credentials { bearer: bearer_token(&headers), cookie: cookie.as_deref() };
    let client = peer.map(|Extension(ConnectInfo(p))| p.to_string());
    let released = keylatch_broker::protocol::release(
        &state,
        credentials,
        path.as_deref().map_err(Clone::clone),
        client.as_deref(),
        time::OffsetDateTime::now_utc(),
    )
    .await?;
    Ok(Json(released.jwe))
}
