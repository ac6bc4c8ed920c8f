//! The admin API under `/admin/v1`: resources, release policies, reference-value bundles and
//! admin tokens, JSON in and out, for authenticated [`auth::Principal`]s with separated roles.
//! Every call, allowed or refused, is recorded through [`crate::decision::record_admin`].

pub mod auth;
