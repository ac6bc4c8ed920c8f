# Shared helpers for the scripts in this folder: progress lines and installing what is missing.
# Sourced, not run.

step() { printf '\n==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }

# apt_install PKG...: installs Debian packages that are not installed yet (root or sudo).
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  step "installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_cargo_nextest() {
  cargo nextest --version >/dev/null 2>&1 && return 0
  step "installing cargo-nextest"
  cargo install --locked cargo-nextest
}

ensure_cargo_deb() {
  cargo deb --version >/dev/null 2>&1 && return 0
  step "installing cargo-deb"
  cargo install --locked cargo-deb
}
