#!/usr/bin/env bash
# Install the Debian packages the test-suite needs, only when they are missing:
#   prometheus              -> /usr/bin/promtool (rule checks and rule unit tests)
#   prometheus-alertmanager -> /usr/bin/prometheus-alertmanager, /usr/bin/amtool
# Idempotent, quiet and non-interactive; never starts the packaged services.
# Target: Debian 12 (bookworm). Run as root, or as a user with sudo.
set -euo pipefail

PACKAGES=(prometheus prometheus-alertmanager)

is_installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = "installed" ]
}

missing=()
for pkg in "${PACKAGES[@]}"; do
  is_installed "$pkg" || missing+=("$pkg")
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-system-deps: apt-get not found; install ${missing[*]} by hand" >&2
  exit 1
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo -n)
  else
    echo "install-system-deps: need root (or sudo) to install ${missing[*]}" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-qq -y -o Dpkg::Use-Pty=0 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

# Keep the maintainer scripts from starting (or restarting) the daemons: a policy-rc.d that
# denies every action, removed afterwards unless one was already there.
POLICY=/usr/sbin/policy-rc.d
created_policy=0
cleanup() {
  if [ "$created_policy" -eq 1 ]; then
    "${SUDO[@]}" rm -f "$POLICY"
  fi
}
trap cleanup EXIT
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null
  "${SUDO[@]}" chmod 0755 "$POLICY"
  created_policy=1
fi

# A fresh machine (or container image) has empty package lists: refresh them only then,
# or when a package has no install candidate.
needs_update=0
for pkg in "${missing[@]}"; do
  cand="$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')"
  if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then
    needs_update=1
  fi
done
# apt and the maintainer scripts are chatty on stderr even with -qq: keep their output in a
# log and show it only when something fails.
log="$(mktemp)"
trap 'cleanup; rm -f "$log"' EXIT
run_logged() {
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    echo "install-system-deps: failed: $*" >&2
    exit 1
  fi
}
if [ "$needs_update" -eq 1 ]; then
  run_logged "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq update
fi
run_logged "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get "${APT_OPTS[@]}" install --no-install-recommends "${missing[@]}"

for bin in promtool amtool prometheus-alertmanager; do
  if ! command -v "$bin" >/dev/null 2>&1; then
    echo "install-system-deps: $bin not found after installing ${missing[*]}" >&2
    exit 1
  fi
done
