#!/usr/bin/env bash
# Keylatch quickstart: the main job end to end on one machine, with embedded defaults and no
# confidential hardware (SEV-SNP and TDX are simulated; everything else is real):
#   1. an operator initializes a broker: SQLite store, the key-encryption key in a SoftHSM2
#      token (or, where SoftHSM2 cannot be installed, a local file), simulated evidence allowed;
#   2. a policy author measures nothing by hand here but signs the expected launch measurement
#      into a reference-value bundle; the broker trusts the author's key;
#   3. a key custodian creates a disk key inside the HSM and a release policy naming the bundle;
#   4. an image builder formats a LUKS2 disk with that key (fetched once by an attested VM);
#   5. the VM boots: keylatch-agent attests (simulated SEV-SNP) and unlocks the disk;
#   6. a VM whose launch measurement differs is denied, with the reason;
#   7. an auditor exports the log, verifies it offline and asks who got what.
# Everything happens in a throwaway directory that is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

apt_install cryptsetup-bin softhsm2

if [ -n "${KEYLATCH_BIN_DIR:-}" ]; then
  # The end-to-end test suite runs this script against the binaries it already built.
  bin="$KEYLATCH_BIN_DIR"
  step "using the binaries in $bin"
else
  step "building keylatch, keylatch-agent and refval (release)"
  cargo build --release --locked -q -p keylatch -p guest-agent -p refval
  bin="$(pwd)/target/release"
fi
keylatch="$bin/keylatch"
agent="$bin/keylatch-agent"
refval="$bin/refval"

work="$(mktemp -d -t keylatch-quickstart.XXXXXX)"
broker_pid=""
cleanup() {
  [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null && wait "$broker_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
note "working in $work"
export RUST_LOG=warn

random_hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

step "1. operator: initialize a broker"
port="$(free_port)"
hsm_args=()
softhsm_module=/usr/lib/softhsm/libsofthsm2.so
if command -v softhsm2-util >/dev/null 2>&1 && [ -f "$softhsm_module" ]; then
  mkdir -p "$work/hsm/tokens"
  printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
    "$work/hsm/tokens" > "$work/hsm/softhsm2.conf"
  export SOFTHSM2_CONF="$work/hsm/softhsm2.conf"
  pin="$(random_hex 8)"
  softhsm2-util --init-token --free --label keylatch --pin "$pin" --so-pin "$(random_hex 8)" > /dev/null
  (umask 077; printf '%s' "$pin" > "$work/hsm/pin")
  hsm_args=(--pkcs11-module "$softhsm_module" --pkcs11-token keylatch --pkcs11-pin-file "$work/hsm/pin")
  note "key-encryption key: generated inside a SoftHSM2 token (PKCS#11), never leaves it"
else
  note "SoftHSM2 not available: key-encryption key in a local 0600 file (development mode)"
fi
"$keylatch" init --dir "$work/broker" --simulated --listen "127.0.0.1:$port" "${hsm_args[@]}" \
  | sed 's/^/    /'
config="$work/broker/keylatch.toml"
"$refval" keygen --out "$work/alice.key" > /dev/null
cp "$work/alice.key.pub" "$work/broker/"
ca="$work/broker/tls/ca.pem"
url="https://127.0.0.1:$port"

# A checkpoint after every entry, so the auditor below sees every entry signed at once (the
# default is every 1000 entries or 60 s).
sed -i 's/^checkpoint_every_entries = .*/checkpoint_every_entries = 1/' "$config"
cat >> "$config" <<TOML

# The policy authors trusted for bundle "web-vm": bundles are published over the admin API.
[[reference_values]]
name = "web-vm"
author_keys = ["alice.key.pub"]
threshold = 1
TOML
"$keylatch" serve --config "$config" 2> "$work/broker.log" &
broker_pid=$!
for _ in $(seq 1 100); do
  python3 - "$port" <<'PY' 2>/dev/null && break
import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.2).close()
PY
  kill -0 "$broker_pid" 2>/dev/null || { cat "$work/broker.log"; die "the broker exited"; }
  sleep 0.1
done
note "broker serving on $url (log: broker.log)"
for role in key-custodian policy-author auditor; do
  (umask 077; "$keylatch" token create --config "$config" --role "$role" --name "$role-1" \
    > "$work/$role.token" 2> /dev/null)
done
note "admin tokens minted for a key custodian, a policy author and an auditor (shown once, stored hashed)"

step "2. policy author: sign the expected launch measurement and publish it"
good="$(random_hex 48)"   # what the image build pipeline says the VM measures to
cat > "$work/web.toml" <<TOML
name = "web-vm"
version = 1
expires = 2099-01-01T00:00:00Z

[snp]
measurements = ["$good"]
products = ["genoa"]
TOML
"$refval" sign "$work/web.toml" --key "$work/alice.key" --out "$work/web.cose" | sed 's/^/    /'
"$refval" push --url "$url" --ca "$ca" --token-file "$work/policy-author.token" web-vm "$work/web.cose" \
  | sed 's/^/    /'
note "a custodian's token cannot publish reference values:"
if "$refval" push --url "$url" --ca "$ca" --token-file "$work/key-custodian.token" web-vm \
    "$work/web.cose" > /dev/null 2> "$work/forbidden.err"; then
  die "UNEXPECTED: a key custodian published reference values"
fi
note "refused -> $(cat "$work/forbidden.err")"

step "3. key custodian: a disk key made inside the HSM, and its release policy"
cat > "$work/policy.toml" <<TOML
[[rules]]
name = "web-vms"
tees = ["snp", "tdx"]
allow_simulated = true
bundles = ["web-vm"]
TOML
custodian=("$keylatch" admin --url "$url" --ca "$ca" --token-file "$work/key-custodian.token")
"${custodian[@]}" resource put default/disk/web-vm --generate 32 | sed 's/^/    /'
"${custodian[@]}" policy set default/disk/web-vm --from "$work/policy.toml" | sed 's/^/    /'

vm() { # vm MEASUREMENT COMMAND ARGS...: keylatch-agent as a simulated SEV-SNP VM
  local measurement="$1"; shift
  "$agent" "$@" --url "$url" --ca "$ca" --simulate snp --sim-pki "$work/broker/sim-pki" \
    --sim-measurement "$measurement" --deadline 10
}

step "4. image builder: a LUKS2 disk sealed with the VM's key"
truncate -s 32M "$work/disk.img"
vm "$good" get-resource kbs:///default/disk/web-vm --out "$work/provision.key"
cryptsetup luksFormat --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --batch-mode \
  "$work/disk.img" --key-file "$work/provision.key"
shred -u "$work/provision.key" 2>/dev/null || rm -f "$work/provision.key"
note "disk.img formatted (LUKS2); the provisioning copy of the key is shredded"

step "5. the VM boots: attest, receive the key, unlock the disk"
vm "$good" unlock-luks --device "$work/disk.img" --name web-root \
  --resource kbs:///default/disk/web-vm --test-passphrase
note "unlocked: cryptsetup accepted the released key (--test-passphrase: no device-mapper needed)"

step "6. a VM that booted something else"
bad="$(random_hex 48)"
if vm "$bad" unlock-luks --device "$work/disk.img" --name web-root \
    --resource kbs:///default/disk/web-vm --test-passphrase 2> "$work/denied.err"; then
  die "UNEXPECTED: a VM with another measurement unlocked the disk"
fi
note "denied -> $(cat "$work/denied.err")"

step "7. auditor: fetch the log, verify it offline, ask who got what"
"$keylatch" audit fetch --url "$url" --ca "$ca" --token-file "$work/auditor.token" --out "$work/audit" \
  | sed 's/^/    /'
"$keylatch" audit verify "$work/audit" --key "$work/broker/audit.pub" | sed 's/^/    /'
note "who got what (releases and denials of the disk key):"
"$keylatch" audit query "$work/audit" --resource default/disk/web-vm | grep -E "INDEX|release|denial" \
  | cut -c1-150 | sed 's/^/    /'

step "done: the disk key went only to the VM that measured right; the other was refused, and the log proves it"
