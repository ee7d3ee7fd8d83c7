#!/usr/bin/env bash
# infra/promtool.sh install|check — Prometheus's promtool (built from the Go module proxy at a
# pinned version into .cache/bin), and `check`: validate infra/prometheus/meterlake-alerts.yml
# and run its unit tests (meterlake-alerts.test.yml) with Prometheus's own rule engine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODULE=github.com/prometheus/prometheus/cmd/promtool@v0.316.0
BIN="$ROOT/.cache/bin/promtool"

install() {
  [ -x "$BIN" ] && [ "$(cat "$BIN.module" 2>/dev/null)" = "$MODULE" ] && return
  echo "promtool: building $MODULE into .cache/bin (a few minutes, once)" >&2
  GOBIN="$ROOT/.cache/bin" GOFLAGS=-mod=mod go install "$MODULE"
  echo "$MODULE" >"$BIN.module"
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
