//! The simulator: a simulation PKI and evidence minted under it. Filled in by the SNP and TDX
//! modules.

pub mod snp;
