//! SEV-SNP.
