#!/usr/bin/env bash
# Installs what the local stack needs and skips what is already there:
#   - Debian packages: build deps of librdkafka (built from source by the
#     rdkafka crate), curl, ClickHouse server and client, chromium (the
#     headless browser tests/ui.rs drives), and python3 with venv (the
#     virtualenvs of the OpenTelemetry Python SDK and of chdb, ClickHouse 26
#     in-process, that tests/otel_python.rs and tests/modern_clickhouse.rs
#     install from PyPI), and sqlite3 (up.sh and the tests add an index to
#     tansu's sqlite storage);
#   - the tansu Kafka broker, via cargo install (about 10 minutes on 2 cores).
# Safe to re-run: a machine that has everything gets no apt-get and no cargo.
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

APT_PACKAGES=(cmake pkg-config libssl-dev libsasl2-dev libcurl4-openssl-dev zlib1g-dev curl clickhouse-server clickhouse-client chromium python3 python3-venv sqlite3)
TANSU_FEATURES="dynostore,libsql"

installed() {
  dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed$'
}

as_root() {
  if [[ "$(id -u)" == 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root (or sudo) to run: $*"
  fi
}

install_apt_packages() {
  local missing=() pkg
  for pkg in "${APT_PACKAGES[@]}"; do
    if installed "$pkg"; then
      say "$pkg already installed"
    else
      missing+=("$pkg")
    fi
  done
  ((${#missing[@]})) || return 0

  say "installing ${missing[*]} (apt-get)"
  # Debian's clickhouse-server postinst starts its own instance on 8123/9000
  # (via invoke-rc.d) where no init policy forbids it; ours must own those
  # ports, so forbid service starts during this install unless a policy
  # already exists (Docker images ship one).
  local policy=/usr/sbin/policy-rc.d added_policy=0
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\n# temporary, written by skein deploy/local/install.sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod 755 "$policy"
    added_policy=1
  fi
  local rc=0
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q || rc=$?
  if ((rc == 0)); then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" || rc=$?
  fi
  if ((added_policy)); then
    as_root rm -f "$policy"
  fi
  ((rc == 0)) || die "apt-get failed (exit $rc) installing: ${missing[*]}"
  say "installed ${missing[*]}"
}

# Prints the pid of a `cargo install tansu` already running on this machine.
running_tansu_install() {
  local p cmd
  for p in /proc/[0-9]*; do
    [[ "${p#/proc/}" == "$$" ]] && continue
    cmd="$(proc_cmdline "${p#/proc/}")" || continue
    if [[ "$cmd" == *"cargo install tansu"* ]]; then
      echo "${p#/proc/}"
      return 0
    fi
  done
  return 1
}

install_tansu() {
  local pid version
  if ! command -v tansu >/dev/null 2>&1 && pid="$(running_tansu_install)"; then
    say "a 'cargo install tansu' is already running (pid $pid); waiting for it instead of starting another"
    while alive "$pid"; do sleep 5; done
    hash -r
  fi
  if command -v tansu >/dev/null 2>&1; then
    version="$(tansu --version 2>/dev/null | head -n 1 || true)"
    say "tansu already installed ($(command -v tansu)${version:+, $version})"
    if [[ -n "$version" && "$version" != *"$TANSU_VERSION"* ]]; then
      warn "expected tansu $TANSU_VERSION; remove $(command -v tansu) and re-run to reinstall"
    fi
    return 0
  fi
  command -v cargo >/dev/null 2>&1 || die "cargo not found (install the Rust toolchain with rustup first)"
  say "installing tansu $TANSU_VERSION with cargo install: this compiles from source and takes ~10 minutes on 2 cores"
  cargo install "tansu@$TANSU_VERSION" --locked --features "$TANSU_FEATURES"
  hash -r
  command -v tansu >/dev/null 2>&1 || die "cargo install finished but tansu is not on PATH (expected in $CARGO_BIN)"
  say "installed tansu ($(command -v tansu))"
}

install_apt_packages
install_tansu
