//! Keylatch reference values. This crate owns the policy author's word: bundles of expected
//! measurements written in TOML ([`Bundle`]), signed by one or more authors as a `COSE_Sign` with
//! ES384 ([`SignedBundle`]), accepted by a broker only with enough trusted signatures, unexpired
//! and with a greater version than the one it holds ([`check_replacement`]), and compared with
//! verified evidence claims ([`appraise`]) so that every missed expectation is named.
//! [`measure`] computes expected SEV-SNP launch measurements from boot inputs.
//!
//! Like the verifier, the library reads no clock and does no I/O: `now` is an argument, and
//! files are the business of the `refval` tool (its own package).

pub mod appraise;
pub mod bundle;
mod canonical;
pub mod keys;
pub mod measure;
pub mod signed;

pub use appraise::{appraise, Appraisal, Mismatch};
pub use bundle::{Bundle, EventLogReference, FormatError, SnpReference, TdxReference};
pub use canonical::CanonicalError;
pub use keys::{AuthorKeys, AuthorPublicKey, AuthorSigningKey, KeyError, KeyId};
pub use signed::{
    check_replacement, verify_bundle, verify_signatures, BundleError, SignedBundle, VerifiedBundle,
};
