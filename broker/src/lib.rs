//! Keylatch broker core: the domain of a key release, with no HTTP server, HTTP client or
//! command line. The HTTP edge (`keylatch-server`) and the `keylatch` command line call it.
//!
//! From the top layer down:
//! - [`protocol`]: the three KBS 0.4.0 steps as functions (auth, attest, release);
//! - [`admin`]: the admin operations and their principals;
//! - [`state`]: everything built once at start ([`Broker`]);
//! - [`evidence`]: verifier choice, the sample TEE, init-data;
//! - [`collateral`]: VCEKs and TDX collateral from the evidence, offline, the store, KDS/PCS
//!   (fetched through a [`collateral::CollateralFetcher`] the edge supplies);
//! - [`custody`]: resource lifecycle and KEK operations (the one service CLI and admin API call);
//! - [`decision`]: the one hook every decision passes through, into
//! - [`audit`]: the tamper-evident audit log (group-commit writer, checkpoints, exports);
//! - [`token`]: ES256 attestation tokens;
//! - [`policy`]: release policies;
//! - [`store`]: the `Store` trait, SQLite and PostgreSQL (`broker/STORE.md`);
//! - [`metrics`]: Prometheus counters, histograms and gauges;
//! - [`error`]: the one [`ApiError`] and its stable types;
//! - [`config`]: the `keylatch.toml` file (`broker/CONFIG.md`);
//! - [`path`], [`files`], [`clock`]: resource-path syntax, key files on disk, the wall clock.

pub mod admin;
pub mod audit;
pub mod clock;
pub mod collateral;
pub mod config;
pub mod custody;
pub mod decision;
pub mod error;
pub mod evidence;
pub mod files;
pub mod metrics;
pub mod path;
pub mod policy;
pub mod protocol;
pub mod state;
pub mod store;
pub mod token;

pub use config::Config;
pub use error::{ApiError, ErrorKind};
pub use state::Broker;
