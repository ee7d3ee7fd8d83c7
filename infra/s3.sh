#!/usr/bin/env bash
# infra/s3.sh install|start|stop — a real S3 server (MinIO, built from the Go module proxy
# at a pinned version into .cache/bin) on 127.0.0.1:${METERLAKE_S3_PORT:-9000}, data in
# ${METERLAKE_S3_DATA:-.cache/s3/<port>}, with the bucket ${METERLAKE_S3_BUCKET:-meterlake}.
# Its root credentials are AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (local defaults
# meterlake / meterlake-secret, see README), the same the AWS chain gives meterlake.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$ROOT/infra/lib.sh"
MODULE=github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c
BIN="$ROOT/.cache/bin/minio"
PORT="${METERLAKE_S3_PORT:-9000}"
DATA="${METERLAKE_S3_DATA:-$ROOT/.cache/s3/$PORT}"
BUCKET="${METERLAKE_S3_BUCKET:-meterlake}"
PIDFILE="$DATA.pid"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-meterlake}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-meterlake-secret}"

install() {
  [ -x "$BIN" ] && [ "$(cat "$BIN.module" 2>/dev/null)" = "$MODULE" ] && return
  echo "s3: building MinIO ($MODULE) into .cache/bin (a few minutes, once)" >&2
  GOBIN="$ROOT/.cache/bin" GOFLAGS=-mod=mod go install "$MODULE"
  echo "$MODULE" >"$BIN.module"
}

start() {
  install
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    echo "s3: already running on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"))"
    return
  fi
  mkdir -p "$DATA"
  MINIO_ROOT_USER="$AWS_ACCESS_KEY_ID" MINIO_ROOT_PASSWORD="$AWS_SECRET_ACCESS_KEY" \
    MINIO_BROWSER=off MINIO_UPDATE=off \
    nohup "$BIN" server "$DATA" --address "127.0.0.1:$PORT" >"$DATA.log" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 100); do
    if curl -fs "http://127.0.0.1:$PORT/minio/health/live" >/dev/null; then
      "$ROOT/.venv/bin/python" -m meterlake.storage --create-bucket "$BUCKET" \
        --endpoint "http://127.0.0.1:$PORT"
      echo "s3: MinIO on http://127.0.0.1:$PORT, bucket $BUCKET, data in $DATA"
      return
    fi
    sleep 0.2
  done
  echo "s3: MinIO did not answer on 127.0.0.1:$PORT; see $DATA.log" >&2
  exit 1
}

stop() {
  stop_pid s3 "$PIDFILE"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: infra/s3.sh install|start|stop" >&2; exit 2 ;;
esac
