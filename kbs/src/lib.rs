//! Keylatch broker. This crate owns the server side of a key release: the KBS 0.4.0 protocol
//! over HTTPS, sessions and resources in the store, evidence verification through `verifier`,
//! appraisal against signed reference values, attestation tokens, release policies, and the
//! `keylatch` command line.
//!
//! - [`config`]: the `keylatch.toml` file;
//! - [`state`]: everything built once at start ([`AppState`]);
//! - [`server`]: TLS and the accept loop ([`serve`]);
//! - [`protocol`]: the three KBS endpoints;
//! - [`collateral`]: VCEKs and TDX collateral from the evidence, offline, the store, KDS/PCS;
//! - [`evidence`]: verifier choice, the sample TEE, init-data;
//! - [`token`]: ES256 attestation tokens;
//! - [`policy`]: release policies;
//! - [`store`]: the `Store` trait, SQLite and PostgreSQL (`kbs/STORE.md`);
//! - [`custody`]: resource lifecycle and KEK operations (the one service CLI and admin API call);
//! - [`decision`]: the one hook every decision passes through, into
//! - [`audit`]: the tamper-evident audit log (group-commit writer, checkpoints, exports);
//! - [`error`]: the one `ApiError` and its stable types;
//! - [`admin`]: the admin API (`/admin/v1`) and its principals;
//! - [`metrics`]: Prometheus counters, histograms and gauges;
//! - [`ops`]: the operations surface: health, readiness, `/metrics`, request ids and access
//!   logs, rate limiting, log setup;
//! - [`cli`]: the subcommands.

pub mod admin;
pub mod audit;
pub mod cli;
pub mod collateral;
pub mod config;
pub mod custody;
pub mod decision;
pub mod error;
pub mod evidence;
pub(crate) mod files;
pub mod metrics;
pub mod ops;
pub mod policy;
pub mod protocol;
pub mod server;
pub mod state;
pub mod store;
pub mod token;

pub use config::Config;
pub use error::{ApiError, ErrorKind};
pub use server::serve;
pub use state::AppState;
