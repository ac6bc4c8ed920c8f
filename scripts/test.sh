#!/usr/bin/env bash
# Runs every Keylatch test: formatting, lints, the whole workspace test suite (unit, property,
# conformance against ../shared/vectors, end to end). Installs what it needs when missing.
# Usage: scripts/test.sh            (CI calls this through .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

export KEYLATCH_VECTORS="${KEYLATCH_VECTORS:-$(cd .. && pwd)/shared/vectors}"
[ -d "$KEYLATCH_VECTORS" ] || note "vectors not found at $KEYLATCH_VECTORS: conformance tests will say they skipped"

ensure_cargo_nextest
apt_install cryptsetup-bin softhsm2 postgresql

step "format"
cargo fmt --all -- --check

step "lints (clippy, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "binaries (the end-to-end suite in tests/ runs the built keylatch and keylatch-agent)"
cargo build --workspace --bins --locked

step "tests"
cargo nextest run --workspace --locked --no-fail-fast
