//! The three KBS 0.4.0 handlers. Each extracts its inputs ([`crate::extract`]), calls the
//! function of the same step in `keylatch_broker::protocol`, and maps the outcome.

pub mod attest;
pub mod auth;
pub mod resource;
