#!/usr/bin/env bash
# Fuzzing smoke run: every parser target in fuzz/ for a short time each (default 30 s).
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
# cargo-fuzz needs nightly-only compiler flags; on this project's stable toolchain
# RUSTC_BOOTSTRAP=1 unlocks them for the fuzz build only. Seeds come from the shared vectors
# when present. Crashes land in fuzz/artifacts/<target>/ and make this script fail.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

seconds="${1:-30}"; shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(snp_report snp_coco_evidence tdx_quote sgx_quote tdx_collateral certificate
  kbs_request jwe signed_bundle checkpoint audit_export broker_inputs amd_crl tdx_event_log tpm_response
  azure_hcl_report azure_tpms_attest azure_evidence)

command -v cargo-fuzz >/dev/null 2>&1 || { step "installing cargo-fuzz"; cargo install --locked cargo-fuzz; }
vectors="${KEYLATCH_VECTORS:-$(cd .. && pwd)/shared/vectors}"

seed() { # seed TARGET: copy matching vector files into the target's corpus
  local dir="fuzz/corpus/$1"; mkdir -p "$dir"
  [ -d "$vectors" ] || return 0
  case "$1" in
    snp_report) cp "$vectors"/snp/*/report.bin "$dir"/ 2>/dev/null || true ;;
    snp_coco_evidence) cp "$vectors"/coco/*/evidence.json "$dir"/ 2>/dev/null || true ;;
    tdx_quote) for f in "$vectors"/tdx/*/quote.bin; do cp "$f" "$dir/$(basename "$(dirname "$f")").bin"; done ;;
    sgx_quote) for f in "$vectors"/sgx/*/quote.bin; do [ -f "$f" ] || continue; cp "$f" "$dir/$(basename "$(dirname "$f")").bin"; done ;;
    tdx_collateral) for f in "$vectors"/tdx/*/collateral.json; do cp "$f" "$dir/$(basename "$(dirname "$f")").json"; done ;;
    kbs_request)
      printf '%s' '{"version":"0.4.0","tee":"snp","extra-params":""}' > "$dir/auth.json"
      printf '%s' '{"runtime-data":{"nonce":"bm9uY2U=","tee-pubkey":{"kty":"EC","crv":"P-256","alg":"ES256","x":"AAAA","y":"AAAA"}},"tee-evidence":{}}' > "$dir/attest.json" ;;
    jwe)
      printf '%s' '{"protected":"eyJhbGciOiJFQ0RILUVTK0EyNTZLVyIsImVuYyI6IkEyNTZHQ00ifQ","encrypted_key":"AAAA","iv":"AAAAAAAAAAAAAAAA","ciphertext":"AAAA","tag":"AAAAAAAAAAAAAAAAAAAAAA"}' > "$dir/jwe.json" ;;
    checkpoint)
      printf 'keylatch.fuzz/log\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\xe2\x80\x94 keylatch.fuzz/log AAAAAAAA\n' > "$dir/checkpoint.txt" ;;
    audit_export)
      printf '{"format":"keylatch-audit-export/1","start":{"size":0,"frontier":[]}}\xff{"entry":{"kind":"release","decision":"allow"},"index":0}\n\xff\xff[]' > "$dir/export.bin" ;;
    broker_inputs)
      printf '%s' 'eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJrZXlsYXRjaCJ9.AAAA' > "$dir/token.txt"
      printf '%s' 'default/disk-key/vm-1' > "$dir/path.txt"
      printf '[[rules]]\nname = "sim"\ntees = ["snp", "tdx"]\nallow_simulated = true\n' > "$dir/policy.toml" ;;
    tpm_response) # a TPM2_PCR_Read response (one SHA-256 PCR) and a TPM_RC_HANDLE refusal
      printf '\x80\x01\x00\x00\x00\x3e\x00\x00\x00\x00\x00\x00\x00\x07\x00\x00\x00\x01\x00\x0b\x03\x01\x00\x00\x00\x00\x00\x01\x00\x20%032d' 0 > "$dir/pcr_read.bin"
      printf '\x80\x01\x00\x00\x00\x0a\x00\x00\x01\x8b' > "$dir/rc_handle.bin" ;;
    certificate) for f in "$vectors"/snp/*/*.der "$vectors"/roots/amd/*/*.pem; do cp "$f" "$dir/$(basename "$(dirname "$f")")-$(basename "$f")"; done ;;
  esac
}

for t in "${targets[@]}"; do
  step "fuzzing $t for ${seconds}s"
  seed "$t"
  RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz "$t" "fuzz/corpus/$t" -- \
    -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 2>&1 | grep -E "^(Done|stat::number_of_executed_units|==[0-9]+==|SUMMARY)"
done
step "no crashes"
