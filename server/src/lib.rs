//! Keylatch HTTP edge: the KBS 0.4.0 endpoints, the admin API, the operations surface and TLS
//! serving, over the broker core (`keylatch_broker`). Handlers extract, call the core and map
//! its refusals to HTTP in one place ([`error`]); no domain rule lives here.
//!
//! - [`server`]: the accept loop ([`serve`]), over [`router`] (every route and layer);
//! - [`protocol`]: the three KBS handlers;
//! - [`admin`]: the admin API routes and their authenticated [`admin::Caller`];
//! - [`ops`]: health, readiness, `/metrics`, request ids and access logs, rate limiting, log
//!   setup;
//! - [`state`]: the broker plus the TLS configuration ([`AppState`]);
//! - [`extract`]: body, bearer credentials and session cookie of a request;
//! - [`tls`]: the rustls server configuration;
//! - [`fetch`]: the collateral fetcher (ureq) the broker fetches KDS/PCS collateral with;
//! - [`error`]: refusal kind → HTTP status and KBS error body.

pub mod admin;
pub mod error;
pub mod extract;
pub mod fetch;
pub mod ops;
pub mod protocol;
pub mod router;
pub mod server;
pub mod state;
pub mod tls;

pub use server::serve;
pub use state::AppState;
