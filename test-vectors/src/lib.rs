//! Where the shared conformance vectors (recorded SEV-SNP reports, TDX quotes, their collateral
//! and `expected.json`) are, for tests. Its own crate because the tests of `verifier`,
//! `reference-values`, `keylatch-server`, `keylatch` and `e2e` all read the same vectors and must
//! find and skip them the same way; it is only ever a dev-dependency (and `e2e`'s harness).
//! [`jwcrypto`] is the other test fixture several crates share: the independent JOSE
//! implementation their JWEs are checked against.

pub mod jwcrypto;

use std::path::PathBuf;

/// `KEYLATCH_VECTORS`, else `shared/vectors` beside the workspace.
fn location() -> PathBuf {
    std::env::var_os("KEYLATCH_VECTORS").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors")),
        PathBuf::from,
    )
}

/// The vectors directory, or `None` after printing `skipped: vectors not found at ...` when it
/// is absent (it is recognised by its `README.md`), so that the caller's test returns early.
#[must_use]
pub fn dir() -> Option<PathBuf> {
    let dir = location();
    if dir.join("README.md").is_file() {
        Some(dir)
    } else {
        println!("skipped: vectors not found at {}", dir.display());
        None
    }
}

/// The `azure/` cases (real Azure confidential VM evidence from confidential-containers/trustee
/// `deps/verifier/test_data`), or `None` after printing why they are skipped: they are not in
/// every copy of the shared vectors yet.
#[must_use]
pub fn azure_dir() -> Option<PathBuf> {
    let dir = dir()?.join("azure");
    if dir.is_dir() {
        Some(dir)
    } else {
        println!(
            "skipped: no azure/ cases at {} (real Azure evidence from confidential-containers/trustee deps/verifier/test_data; not yet in the shared vectors)",
            dir.display()
        );
        None
    }
}
