//! The KBS 0.4.0 protocol as plain functions over a [`Broker`](crate::state::Broker), with typed
//! inputs (including `now`) and typed results; each records its decision in the audit log and
//! refuses with an [`ApiError`](crate::error::ApiError) that names the rule that failed.
//!
//! - [`auth`]: Request → Challenge (session and nonce), and the sweep of dead sessions;
//! - [`attest`]: Attestation → token (verify, appraise, sign);
//! - [`release`]: token → resource (policy, custody unseal, JWE), and resource-path syntax.

pub mod attest;
pub mod auth;
pub mod release;

pub use attest::{attest, Issued};
pub use auth::{auth, sweep_once, sweep_sessions, AuthRequest, Challenge};
pub use release::{release, Credentials, Released};
