//! The `keylatch` command line.
fn main() {}
