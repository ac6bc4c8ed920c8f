//! The admin routes and their handlers: extract, call
//! `keylatch_broker::admin::<module>::<operation>`, answer.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::Response;

use axum::routing::get;
use axum::Router;

use super::extract::{answer, query, Caller};
use crate::extract::body_bytes;
use crate::state::AppState;

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

pub mod audit {
    #[allow(clippy::wildcard_imports)] // reason: the shared extractor imports of the parent
    use super::*;
    use keylatch_broker::admin::audit as op;

    pub async fn summary(State(state): State<AppState>, Caller(caller): Caller) -> Response {
        answer(op::summary(&state, &caller).await)
    }

    pub async fn checkpoints(State(state): State<AppState>, Caller(caller): Caller) -> Response {
        answer(op::checkpoints(&state, &caller).await)
    }

    pub async fn entries(
        State(state): State<AppState>,
        Caller(caller): Caller,
        q: Result<Query<op::Range>, QueryRejection>,
    ) -> Response {
        answer(op::entries(&state, &caller, query(q)).await)
    }

    pub async fn inclusion(
        State(state): State<AppState>,
        Caller(caller): Caller,
        q: Result<Query<op::InclusionQuery>, QueryRejection>,
    ) -> Response {
        answer(op::inclusion(&state, &caller, query(q)).await)
    }

    pub async fn consistency(
        State(state): State<AppState>,
        Caller(caller): Caller,
        q: Result<Query<op::ConsistencyQuery>, QueryRejection>,
    ) -> Response {
        answer(op::consistency(&state, &caller, query(q)).await)
    }

    pub async fn search(
        State(state): State<AppState>,
        Caller(caller): Caller,
        q: Result<Query<op::SearchQuery>, QueryRejection>,
    ) -> Response {
        answer(op::search(&state, &caller, query(q)).await)
    }
}

pub mod policies {
    #[allow(clippy::wildcard_imports)] // reason: the shared extractor imports of the parent
    use super::*;
    use keylatch_broker::admin::policies as op;

    pub async fn set(
        State(state): State<AppState>,
        Caller(caller): Caller,
        Path(path): Path<String>,
        body: Result<Bytes, BytesRejection>,
    ) -> Response {
        answer(
            op::set(
                &state,
                &caller,
                &path,
                body_bytes(body, "policy").as_deref().map_err(Clone::clone),
            )
            .await,
        )
    }

    pub async fn get(
        State(state): State<AppState>,
        Caller(caller): Caller,
        Path(path): Path<String>,
        version: Result<Query<keylatch_broker::admin::VersionQuery>, QueryRejection>,
    ) -> Response {
        answer(op::get(&state, &caller, &path, query(version).map(|q| q.version)).await)
    }

    pub async fn list(State(state): State<AppState>, Caller(caller): Caller) -> Response {
        answer(op::list(&state, &caller).await)
    }
}

pub mod refvals {
    #[allow(clippy::wildcard_imports)] // reason: the shared extractor imports of the parent
    use super::*;
    use keylatch_broker::admin::refvals as op;

    pub async fn publish(
        State(state): State<AppState>,
        Caller(caller): Caller,
        Path(name): Path<String>,
        body: Result<Bytes, BytesRejection>,
    ) -> Response {
        answer(
            op::publish(
                &state,
                &caller,
                &name,
                body_bytes(body, "reference values").as_deref().map_err(Clone::clone),
            )
            .await,
        )
    }

    pub async fn list(State(state): State<AppState>, Caller(caller): Caller) -> Response {
        answer(op::list(&state, &caller).await)
    }

    pub async fn show(
        State(state): State<AppState>,
        Caller(caller): Caller,
        Path(name): Path<String>,
    ) -> Response {
        answer(op::show(&state, &caller, &name).await)
    }
}

pub mod resources {
    #[allow(clippy::wildcard_imports)] // reason: the shared extractor imports of the parent
    use super::*;
    use keylatch_broker::admin::resources as op;

    pub async fn put(
        State(state): State<AppState>,
        Caller(caller): Caller,
        Path(path): Path<String>,
        body: Result<Bytes, BytesRejection>,
    ) -> Response {
        answer(
            op::put(
                &state,
                &caller,
                &path,
                body_bytes(body, "resource").as_deref().map_err(Clone::clone),
            )
            .await,
        )
    }

    pub async fn list(State(state): State<AppState>, Caller(caller): Caller) -> Response {
        answer(op::list(&state, &caller).await)
    }

    pub async fn show(
        State(state): State<AppState>,
        Caller(caller): Caller,
        Path(path): Path<String>,
    ) -> Response {
        answer(op::show(&state, &caller, &path).await)
    }

    pub async fn delete(
        State(state): State<AppState>,
        Caller(caller): Caller,
        Path(path): Path<String>,
    ) -> Response {
        answer(op::delete(&state, &caller, &path).await)
    }

    pub async fn patch(
        State(state): State<AppState>,
        Caller(caller): Caller,
        Path(path): Path<String>,
        body: Result<Bytes, BytesRejection>,
    ) -> Response {
        answer(
            op::patch(
                &state,
                &caller,
                &path,
                body_bytes(body, "resource").as_deref().map_err(Clone::clone),
            )
            .await,
        )
    }

    pub async fn import_key(State(state): State<AppState>, Caller(caller): Caller) -> Response {
        answer(op::import_key(&state, &caller).await)
    }
}

pub mod tokens {
    #[allow(clippy::wildcard_imports)] // reason: the shared extractor imports of the parent
    use super::*;
    use keylatch_broker::admin::tokens as op;

    pub async fn create(
        State(state): State<AppState>,
        Caller(caller): Caller,
        body: Result<Bytes, BytesRejection>,
    ) -> Response {
        answer(
            op::create(&state, &caller, body_bytes(body, "token").as_deref().map_err(Clone::clone))
                .await,
        )
    }

    pub async fn list(State(state): State<AppState>, Caller(caller): Caller) -> Response {
        answer(op::list(&state, &caller).await)
    }

    pub async fn revoke(
        State(state): State<AppState>,
        Caller(caller): Caller,
        Path(id): Path<String>,
    ) -> Response {
        answer(op::revoke(&state, &caller, &id).await)
    }
}
