//! `POST /kbs/v0/attest`: the cookie, the peer address and the body go to
//! [`keylatch_broker::protocol::attest`]; the token comes back as `{"token": ...}`.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::{Extension, Json};
use serde_json::{json, Value};

use crate::error::HttpError;
use crate::extract::{body_bytes, session_cookie};
use crate::state::AppState;

pub async fn handle(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, HttpError> {
    let session_id = session_cookie(&headers);
    let client = peer.map(|Extension(ConnectInfo(p))| p.to_string());
    let body = body_bytes(body, "attest");
    let issued = keylatch_broker::protocol::attest(
        &state,
        session_id.as_deref(),
        body.as_deref().map_err(Clone::clone),
        client.as_deref(),
        time::OffsetDateTime::now_utc(),
    )
    .await?;
    Ok(Json(json!({"token": issued.token})))
}
