//! Keylatch evidence verification. This crate owns the question "is this hardware evidence
//! genuine, and what does it say?": strict parsers for AMD SEV-SNP attestation reports, Intel
//! TDX quotes (and SGX quotes, verified offline only: [`sgx`]) and Azure confidential VMs' vTPM
//! evidence ([`azure`]), their certificate chains to pinned hardware roots, TCB evaluation, the
//! normalized [`Claims`] every later decision reads, and the simulator ([`sim`]) that mints
//! evidence in the same binary formats under a simulation PKI.
//!
//! The crate is pure: no I/O, no clock, no network. Time (`now`), endorsements (VCEK/VLEK and
//! their chains) and collateral (TCB info, QE identity, CRLs) are arguments, so every check is
//! reproducible at any instant and the caller decides where evidence and collateral come from.
//!
//! Every failure is a [`VerifyError`] naming the [`Step`] that failed and a [`Reason`].

pub mod azure;
pub mod claims;
pub mod coco;
pub mod error;
pub mod fuzzing;
pub mod hex_bytes;
pub(crate) mod reader;
pub mod sgx;
pub mod sim;
pub mod snp;
pub mod tdx;
pub mod x509;

pub use claims::{AzureClaims, AzureVmConfiguration, Claims, Tee};
pub use coco::CocoEvidence;
pub use error::{Reason, Step, VerifyError};
pub use hex_bytes::HexBytes;

/// The instant verification happens at. Always an argument, never read from a clock here.
pub type Now = time::OffsetDateTime;
