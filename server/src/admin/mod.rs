//! The admin API under `/admin/v1` over HTTP ([`router`]): each handler extracts its inputs
//! and the authenticated [`Caller`], calls the operation of the same name in
//! `keylatch_broker::admin` (which records the call) and maps the outcome. The API is
//! documented in `server/ADMIN-API.md`.

mod extract;
mod handlers;

pub use extract::{answer, client_addr, query, Caller};
pub use handlers::router;
