//! The admin routes ([`router`]) and their handlers. Every handler is the same three steps
//! (extract, call `keylatch_broker::admin::<module>::<operation>`, answer), written once in
//! [`handler!`] for each shape of input.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use keylatch_broker::admin::VersionQuery;

use super::extract::{answer, query, Caller};
use crate::extract::body_bytes;
use crate::state::AppState;

/// One handler `$name` for the broker's operation `$op`: the state and the authenticated caller,
/// then, by shape, the path segment, the body (read within the limit, `$what` naming it in
/// errors), `?version=N`, or a query string of type `$query`.
macro_rules! handler {
    ($name:ident => $op:path) => {
        pub async fn $name(State(state): State<AppState>, Caller(caller): Caller) -> Response {
            answer($op(&state, &caller).await)
        }
    };
    ($name:ident => $op:path, path) => {
        pub async fn $name(
            State(state): State<AppState>,
            Caller(caller): Caller,
            Path(path): Path<String>,
        ) -> Response {
            answer($op(&state, &caller, &path).await)
        }
    };
    ($name:ident => $op:path, path, body $what:literal) => {
        pub async fn $name(
            State(state): State<AppState>,
            Caller(caller): Caller,
            Path(path): Path<String>,
            body: Result<Bytes, BytesRejection>,
        ) -> Response {
            let body = body_bytes(body, $what);
            answer($op(&state, &caller, &path, body.as_deref().map_err(Clone::clone)).await)
        }
    };
    ($name:ident => $op:path, body $what:literal) => {
        pub async fn $name(
            State(state): State<AppState>,
            Caller(caller): Caller,
            body: Result<Bytes, BytesRejection>,
        ) -> Response {
            let body = body_bytes(body, $what);
            answer($op(&state, &caller, body.as_deref().map_err(Clone::clone)).await)
        }
    };
    ($name:ident => $op:path, path, version) => {
        pub async fn $name(
            State(state): State<AppState>,
            Caller(caller): Caller,
            Path(path): Path<String>,
            version: Result<Query<VersionQuery>, QueryRejection>,
        ) -> Response {
            answer($op(&state, &caller, &path, query(version).map(|q| q.version)).await)
        }
    };
    ($name:ident => $op:path, query $query:ty) => {
        pub async fn $name(
            State(state): State<AppState>,
            Caller(caller): Caller,
            q: Result<Query<$query>, QueryRejection>,
        ) -> Response {
            answer($op(&state, &caller, query(q)).await)
        }
    };
}

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
    #[allow(clippy::wildcard_imports)] // reason: the extractors the handler macro names
    use super::*;
    use keylatch_broker::admin::audit as op;

    handler!(summary => op::summary);
    handler!(checkpoints => op::checkpoints);
    handler!(entries => op::entries, query op::Range);
    handler!(inclusion => op::inclusion, query op::InclusionQuery);
    handler!(consistency => op::consistency, query op::ConsistencyQuery);
    handler!(search => op::search, query op::SearchQuery);
}

pub mod policies {
    #[allow(clippy::wildcard_imports)] // reason: the extractors the handler macro names
    use super::*;
    use keylatch_broker::admin::policies as op;

    handler!(set => op::set, path, body "policy");
    handler!(get => op::get, path, version);
    handler!(list => op::list);
}

pub mod refvals {
    #[allow(clippy::wildcard_imports)] // reason: the extractors the handler macro names
    use super::*;
    use keylatch_broker::admin::refvals as op;

    handler!(publish => op::publish, path, body "reference values");
    handler!(list => op::list);
    handler!(show => op::show, path);
}

pub mod resources {
    #[allow(clippy::wildcard_imports)] // reason: the extractors the handler macro names
    use super::*;
    use keylatch_broker::admin::resources as op;

    handler!(put => op::put, path, body "resource");
    handler!(list => op::list);
    handler!(show => op::show, path);
    handler!(delete => op::delete, path);
    handler!(patch => op::patch, path, body "resource");
    handler!(import_key => op::import_key);
}

pub mod tokens {
    #[allow(clippy::wildcard_imports)] // reason: the extractors the handler macro names
    use super::*;
    use keylatch_broker::admin::tokens as op;

    handler!(create => op::create, body "token");
    handler!(list => op::list);
    handler!(revoke => op::revoke, path);
}
