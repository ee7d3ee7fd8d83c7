#!/usr/bin/env bash
# infra/kafka.sh install|start|stop — a real Apache Kafka broker in KRaft mode (one node,
# broker and controller) on 127.0.0.1:${METERLAKE_KAFKA_PORT:-9092} (controller on the next
# port), data in ${METERLAKE_KAFKA_DATA:-.cache/kafka/data/<port>}. The broker is Apache
# Kafka's own server as published on Maven Central (kafka/ivy.xml), resolved once into
# .cache/kafka/<version>/lib by the Ivy that pyspark bundles, and run with the machine's
# Java (17+), as the distribution's kafka-server-start.sh would.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$ROOT/infra/lib.sh"
HERE="$ROOT/infra/kafka"
VERSION="$(sed -n 's/.*name="kafka_2.13" rev="\([^"]*\)".*/\1/p' "$HERE/ivy.xml")"
LIB="$ROOT/.cache/kafka/$VERSION/lib"
PORT="${METERLAKE_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${METERLAKE_KAFKA_CONTROLLER_PORT:-$((PORT + 1))}"
DATA="${METERLAKE_KAFKA_DATA:-$ROOT/.cache/kafka/data/$PORT}"
PIDFILE="$DATA.pid"

install() {
  [ -f "$LIB/.complete" ] && return
  ivy="$(ls "$ROOT"/.venv/lib/python3*/site-packages/pyspark/jars/ivy-*.jar | head -1)"
  echo "kafka: resolving Apache Kafka $VERSION from Maven Central into $LIB (once)" >&2
  rm -rf "$LIB"
  mkdir -p "$ROOT/.cache/kafka"
  java -jar "$ivy" -ivy "$HERE/ivy.xml" -confs default -cache "$ROOT/.cache/kafka/ivy" \
    -retrieve "$LIB/[artifact]-[revision](-[classifier]).[ext]" -types jar bundle >"$ROOT/.cache/kafka/install.log" 2>&1 \
    || { echo "kafka: resolution failed; see .cache/kafka/install.log" >&2; exit 1; }
  touch "$LIB/.complete"
}

# java with the broker's classpath, heap and logging, for the server and its tools
JAVA=(java -Xmx"${METERLAKE_KAFKA_HEAP:-512m}" -Dlog4j2.configurationFile="$HERE/log4j2.yaml" -cp "$LIB/*")

start() {
  install
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    echo "kafka: already running on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"))"
    return
  fi
  mkdir -p "$DATA"
  sed -e "s|@PORT@|$PORT|g" -e "s|@CONTROLLER_PORT@|$CONTROLLER_PORT|g" -e "s|@DATA@|$DATA|g" \
    "$HERE/server.properties.in" >"$DATA/server.properties"
  if [ ! -f "$DATA/logs/meta.properties" ]; then
    cluster="$("${JAVA[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null)"
    "${JAVA[@]}" kafka.tools.StorageTool format --standalone -t "$cluster" \
      -c "$DATA/server.properties" >"$DATA/format.log" 2>&1
  fi
  nohup "${JAVA[@]}" kafka.Kafka "$DATA/server.properties" >"$DATA/kafka.log" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 600); do
    if grep -q "Kafka Server started" "$DATA/kafka.log" 2>/dev/null; then
      echo "kafka: Apache Kafka $VERSION (KRaft) on 127.0.0.1:$PORT, data in $DATA"
      return
    fi
    kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break
    sleep 0.1
  done
  echo "kafka: the broker did not start on 127.0.0.1:$PORT; see $DATA/kafka.log" >&2
  exit 1
}

stop() {
  stop_pid kafka "$PIDFILE" 30  # a controlled shutdown flushes the logs
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: infra/kafka.sh install|start|stop" >&2; exit 2 ;;
esac
