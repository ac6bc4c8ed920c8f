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
ensure_cargo_deb
apt_install cryptsetup-bin softhsm2 postgresql
# The boot test (tests/tests/qemu_boot.rs): a Debian kernel under QEMU (TCG) with an initramfs
# from the shipped hook; the package test installs the .deb files and checks the unit.
apt_install qemu-system-x86 linux-image-amd64 initramfs-tools busybox socat systemd
# The Azure vTPM test (tests/tests/azure_vtpm.rs): a software TPM provisioned with tpm2-tools.
apt_install swtpm swtpm-tools tpm2-tools

step "format"
cargo fmt --all -- --check

step "lints (clippy, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "binaries (the end-to-end suite in tests/ runs the built keylatch and keylatch-agent)"
cargo build --workspace --bins --locked

step "Debian packages (tests/tests/deb_packages.rs installs them): target/debian/*.deb"
cargo deb -p keylatch --locked
cargo deb -p guest-agent --locked

step "tests"
cargo nextest run --workspace --locked --no-fail-fast
