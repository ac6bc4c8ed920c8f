#!/usr/bin/env bash
# Keylatch quickstart: builds the tools, then walks through what the broker decides on, with
# embedded defaults and no hardware:
#   1. a simulation PKI stands in for AMD's and Intel's roots;
#   2. a simulated SEV-SNP VM produces a report bound to a fresh nonce; it verifies, a tampered
#      copy does not, and the hardware roots refuse simulated evidence;
#   3. the same for a simulated TDX quote with its signed collateral;
#   4. a policy author signs reference values with two keys; the VM's claims are appraised
#      against them, and a debug VM is refused with the exact reason;
#   5. real hardware evidence from ../shared/vectors is verified, when present.
# Everything happens in a throwaway directory that is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

step "building keylatch and refval (release)"
cargo build --release --locked -q -p kbs -p reference-values
bin="$(pwd)/target/release"
keylatch="$bin/keylatch"
refval="$bin/refval"

work="$(mktemp -d -t keylatch-quickstart.XXXXXX)"
trap 'rm -rf "$work"' EXIT
note "working in $work"

random_hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }
# flip_byte FILE OFFSET: writes FILE.tampered with one byte inverted
flip_byte() { python3 - "$1" "$2" <<'PY'
import sys
data = bytearray(open(sys.argv[1], 'rb').read()); data[int(sys.argv[2])] ^= 0xFF
open(sys.argv[1] + '.tampered', 'wb').write(data)
PY
}
# excerpt FILE PATH...: prints the named claims (dotted paths) of a claims JSON file
excerpt() { python3 - "$@" <<'PY'
import json, sys
claims = json.load(open(sys.argv[1]))
for path in sys.argv[2:]:
    value = claims
    for key in path.split('.'):
        value = value[key]
    print("      %-22s %s" % (path, json.dumps(value)))
PY
}
# expect_refusal CMD...: the command must fail with one `error: <step>: <reason>` line
expect_refusal() {
  if "$@" > "$work/out" 2> "$work/err"; then echo "UNEXPECTED: accepted"; exit 1; fi
  note "refused -> $(cat "$work/err")"
}

step "1. a simulation PKI (sim AMD ARK/ASK/ASVK, sim Intel root/PCK/TCB signer)"
"$keylatch" sim init --out "$work/pki" | sed 's/^/    /'

step "2. a simulated SEV-SNP guest (Genoa, report v5) bound to a fresh nonce"
report_data="$(random_hex 48)"
measurement="$(random_hex 48)"
"$keylatch" sim evidence --tee snp --pki "$work/pki" --report-data "$report_data" \
  --measurement "$measurement" --out "$work/snp.bin" > /dev/null
"$keylatch" evidence verify --tee snp --evidence "$work/snp.bin" \
  --endorsement "$work/snp.bin.vcek.der" --report-data "$report_data" --sim-pki "$work/pki" \
  > "$work/snp-claims.json"
note "verified; claims (excerpt):"
excerpt "$work/snp-claims.json" tee simulated snp.product snp.measurement snp.policy.debug snp.reported_tcb
note "a report with one byte of its measurement flipped:"
flip_byte "$work/snp.bin" $((0x90))
expect_refusal "$keylatch" evidence verify --tee snp --evidence "$work/snp.bin.tampered" \
  --endorsement "$work/snp.bin.vcek.der" --sim-pki "$work/pki"
note "the same simulated report under AMD's real roots:"
expect_refusal "$keylatch" evidence verify --tee snp --evidence "$work/snp.bin" \
  --endorsement "$work/snp.bin.vcek.der"
note "the report with someone else's nonce:"
expect_refusal "$keylatch" evidence verify --tee snp --evidence "$work/snp.bin" \
  --endorsement "$work/snp.bin.vcek.der" --sim-pki "$work/pki" --report-data "$(random_hex 48)"

step "3. a simulated TDX guest (quote v4) with signed collateral"
"$keylatch" sim evidence --tee tdx --pki "$work/pki" --report-data "$report_data" \
  --measurement "$measurement" --out "$work/tdx.bin" > /dev/null
"$keylatch" evidence verify --tee tdx --evidence "$work/tdx.bin" \
  --collateral "$work/tdx.bin.collateral.json" --report-data "$report_data" \
  --sim-pki "$work/pki" > "$work/tdx-claims.json"
note "verified; claims (excerpt):"
excerpt "$work/tdx-claims.json" tee simulated tdx.mr_td tdx.tcb_status tdx.fmspc
note "the same quote under Intel's real root:"
expect_refusal "$keylatch" evidence verify --tee tdx --evidence "$work/tdx.bin" \
  --collateral "$work/tdx.bin.collateral.json"

step "4. reference values signed by two policy authors, and appraisal"
"$refval" keygen --out "$work/alice.key" > /dev/null
"$refval" keygen --out "$work/bob.key" > /dev/null
cat > "$work/web.toml" <<TOML
name = "web-frontend"
version = 1
expires = 2099-01-01T00:00:00Z

[snp]
measurements = ["$measurement"]
products = ["genoa"]
TOML
"$refval" sign "$work/web.toml" --key "$work/alice.key" --out "$work/web.cose" | sed 's/^/    /'
"$refval" cosign "$work/web.cose" --key "$work/bob.key" | sed 's/^/    /'
"$refval" verify "$work/web.cose" --trust "$work/alice.key.pub" --trust "$work/bob.key.pub" \
  --threshold 2 | sed 's/^/    /'
"$refval" appraise --claims "$work/snp-claims.json" "$work/web.cose" > /dev/null
note "the VM's claims are accepted by the bundle"
note "a second VM that boots with DEBUG on (the host could read its memory):"
"$keylatch" sim evidence --tee snp --pki "$work/pki" --report-data "$report_data" \
  --measurement "$measurement" --debug --out "$work/debug.bin" > /dev/null
"$keylatch" evidence verify --tee snp --evidence "$work/debug.bin" \
  --endorsement "$work/debug.bin.vcek.der" --sim-pki "$work/pki" > "$work/debug-claims.json"
if "$refval" appraise --claims "$work/debug-claims.json" "$work/web.cose" > "$work/appraisal.json" 2>/dev/null; then
  echo "UNEXPECTED: debug VM accepted"; exit 1
fi
python3 -c 'import json,sys; [print("      mismatch: %s expected %s, got %s" % (m["field"], m["expected"], m["actual"])) for m in json.load(open(sys.argv[1]))["mismatches"]]' "$work/appraisal.json"

vectors="${KEYLATCH_VECTORS:-$(cd .. && pwd)/shared/vectors}"
step "5. real hardware evidence"
if [ -d "$vectors" ]; then
  "$keylatch" evidence verify --tee snp --evidence "$vectors/snp/genoa-v5-oak/report.bin" \
    --endorsement "$vectors/snp/genoa-v5-oak/vcek.der" --at 2026-01-01T00:00:00Z > "$work/real.json"
  note "AMD Genoa report (project-oak): verified to AMD's Genoa ARK; measurement $(grep -o '"measurement": "[0-9a-f]*"' "$work/real.json" | cut -d'"' -f4 | cut -c1-16)..."
  "$keylatch" evidence verify --tee tdx --evidence "$vectors/tdx/v4-dcap-qvl/quote.bin" \
    --collateral "$vectors/tdx/v4-dcap-qvl/collateral.json" --at 2025-07-19T10:00:34Z > "$work/real.json"
  note "Intel TDX quote (dcap-qvl): verified to Intel's SGX root; TCB status $(grep -o '"tcb_status": "[A-Za-z]*"' "$work/real.json" | cut -d'"' -f4)"
else
  note "skipped: vectors not found at $vectors"
fi

step "done: every check above ran against real binary formats and real signatures"
