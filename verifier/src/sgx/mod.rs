//! Intel SGX quote verification (DCAP ECDSA quote version 3): this module owns the question "is
//! this SGX quote genuine, on what TCB, and what does the enclave report say?". It exists so
//! Keylatch's Intel TCB evaluation is checked against real SGX evidence (dcap-qvl's sample) as
//! well as TDX: the broker releases keys to confidential VMs (SNP, TDX) only and never accepts
//! SGX evidence; `keylatch evidence verify --tee sgx` verifies an SGX quote offline.
//!
//! Everything but the layout and the TCB rule is the TDX code's: the header fields, signature
//! data and QE report certification data parsers ([`crate::tdx::quote`]), the collateral
//! ([`TdxCollateral`](crate::tdx::TdxCollateral), with TCB info id "SGX" and QE identity id
//! "QE"), the PCK chain, QE report, QE identity and quote signature steps and their caches, and
//! the TCB level matching (SGX components and PCESVN of the PCK certificate) with the QE level's
//! status and advisories merged exactly as for TDX.
//!
//! # Quote layout (version 3)
//! Header (48 bytes: version 3, attestation key type 2, reserved u32 that must be 0 (the TEE
//! type of later versions: SGX), QE SVN, PCE SVN, QE vendor ID, user data), then the enclave's
//! SGX report body (384 bytes); the attestation key signs these 432 bytes. Then the signature
//! data length (u32) and the signature data: quote signature (64 bytes), attestation key (64),
//! and directly the QE report certification data (QE report, its signature, QE auth data,
//! certification data type 5 with the PEM PCK chain). Every length must match exactly; only
//! zero bytes may follow the signature data, as for TDX.

mod quote;
mod verify;

pub use quote::{parse_sgx_quote, SgxQuote};
pub use verify::SgxVerifier;
