#!/usr/bin/env bash
# infra/stripe-mock.sh install|start|stop — Stripe's own mock API server (stripe-mock, built
# from the Go module proxy at a pinned version into .cache/bin) on
# 127.0.0.1:${METERLAKE_STRIPE_MOCK_PORT:-12111}. It answers every Stripe endpoint from
# Stripe's OpenAPI fixtures (it keeps no state); point meterlake at it with
# METERLAKE_STRIPE_API_BASE=http://127.0.0.1:12111 and any key (e.g. sk_test_123).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$ROOT/infra/lib.sh"
MODULE=github.com/stripe/stripe-mock@v0.203.0
BIN="$ROOT/.cache/bin/stripe-mock"
PORT="${METERLAKE_STRIPE_MOCK_PORT:-12111}"
RUN="${METERLAKE_STRIPE_MOCK_RUN:-$ROOT/.cache/stripe-mock}"
PIDFILE="$RUN/$PORT.pid"

install() {
  [ -x "$BIN" ] && [ "$(cat "$BIN.module" 2>/dev/null)" = "$MODULE" ] && return
  echo "stripe-mock: building $MODULE into .cache/bin (once)" >&2
  GOBIN="$ROOT/.cache/bin" GOFLAGS=-mod=mod go install "$MODULE"
  echo "$MODULE" >"$BIN.module"
}

start() {
  install
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    echo "stripe-mock: already running on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"))"
    return
  fi
  mkdir -p "$RUN"
  # Its HTTPS listener (always started) gets any free loopback port.
  nohup "$BIN" -http-addr "127.0.0.1:$PORT" -https-addr 127.0.0.1:0 >"$RUN/$PORT.log" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 100); do
    if curl -fs -H "Authorization: Bearer sk_test_123" "http://127.0.0.1:$PORT/v1/balance" \
      >/dev/null; then
      echo "stripe-mock: http://127.0.0.1:$PORT (log $RUN/$PORT.log)"
      return
    fi
    sleep 0.1
  done
  echo "stripe-mock: did not answer on 127.0.0.1:$PORT; see $RUN/$PORT.log" >&2
  exit 1
}

stop() {
  stop_pid stripe-mock "$PIDFILE"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: infra/stripe-mock.sh install|start|stop" >&2; exit 2 ;;
esac
