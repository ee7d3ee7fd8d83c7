#!/usr/bin/env bash
# infra/promtool.sh install|check — Prometheus's promtool into .cache/bin, and `check`:
# validate infra/prometheus/meterlake-alerts.yml and run its unit tests
# (meterlake-alerts.test.yml) with Prometheus's own rule engine.
#
# Taken from Debian's prometheus package at a pinned version (a 19 MB download: seconds);
# should Debian's archive no longer carry that version, built from the Go module proxy
# instead (about 8 minutes on 2 cores, which is why it is not the first choice).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEBIAN_VERSION=2.42.0+ds-5+deb12u1
MODULE=github.com/prometheus/prometheus/cmd/promtool@v0.316.0
BIN="$ROOT/.cache/bin/promtool"

from_debian() (
  apt=(apt-get)
  [ "$(id -u)" = 0 ] || apt=(sudo apt-get)
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  cd "$work"
  apt-get download -qq "prometheus=$DEBIAN_VERSION" 2>/dev/null ||
    { "${apt[@]}" update -qq && apt-get download -qq "prometheus=$DEBIAN_VERSION" 2>/dev/null; } ||
    exit 1
  dpkg-deb --fsys-tarfile prometheus_*.deb | tar -x ./usr/bin/promtool
  mkdir -p "$(dirname "$BIN")"
  cp usr/bin/promtool "$BIN"
)

install() {
  local want
  for want in "debian:$DEBIAN_VERSION" "go:$MODULE"; do
    [ -x "$BIN" ] && [ "$(cat "$BIN.source" 2>/dev/null)" = "$want" ] && return
  done
  echo "promtool: extracting it from Debian's prometheus $DEBIAN_VERSION into .cache/bin" >&2
  if from_debian; then
    echo "debian:$DEBIAN_VERSION" >"$BIN.source"
    return
  fi
  echo "promtool: Debian's archive has no prometheus $DEBIAN_VERSION; building $MODULE" \
    "(a few minutes, once)" >&2
  GOBIN="$ROOT/.cache/bin" GOFLAGS=-mod=mod go install "$MODULE"
  echo "go:$MODULE" >"$BIN.source"
}

check() {
  install
  cd "$ROOT/infra/prometheus"
  "$BIN" check rules meterlake-alerts.yml
  "$BIN" test rules meterlake-alerts.test.yml
}

case "${1:-}" in
  install) install ;;
  check) check ;;
  *) echo "usage: infra/promtool.sh install|check" >&2; exit 2 ;;
esac
