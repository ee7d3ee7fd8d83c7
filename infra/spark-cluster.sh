#!/usr/bin/env bash
# infra/spark-cluster.sh start|stop — a Spark standalone cluster on 127.0.0.1 from the
# installed pyspark (its own spark-class; pip's pyspark has no start-master.sh): a master
# on ${METERLAKE_SPARK_PORT:-7077} (web UI ${METERLAKE_SPARK_UI_PORT:-8080}, workers' UIs
# the ports after it) and ${METERLAKE_SPARK_WORKERS:-2} workers with
# ${METERLAKE_SPARK_WORKER_CORES:-1} core(s) and ${METERLAKE_SPARK_WORKER_MEMORY:-3g} each.
# Logs and work folders in ${METERLAKE_SPARK_DIR:-.cache/spark-cluster/<port>}. Then
#   METERLAKE_SPARK_MASTER=spark://127.0.0.1:7077 meterlake ...   or   infra/submit.sh ...
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$ROOT/infra/lib.sh"
PORT="${METERLAKE_SPARK_PORT:-7077}"
UI="${METERLAKE_SPARK_UI_PORT:-8080}"
WORKERS="${METERLAKE_SPARK_WORKERS:-2}"
DIR="${METERLAKE_SPARK_DIR:-$ROOT/.cache/spark-cluster/$PORT}"
SPARK_HOME="$("$ROOT/.venv/bin/python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
# Every daemon binds to loopback only; executors run the project's Python.
export SPARK_HOME SPARK_LOCAL_IP=127.0.0.1 SPARK_LOG_DIR="$DIR" PYSPARK_PYTHON="$ROOT/.venv/bin/python"

daemon() {  # name, class, args...: start one JVM in the background, its pid in DIR/name.pid
  local name="$1"
  shift
  nohup "$SPARK_HOME/bin/spark-class" "$@" >"$DIR/$name.log" 2>&1 &
  echo $! >"$DIR/$name.pid"
}

wait_for() {  # name, line: wait (60 s) until the daemon's log holds the line
  for _ in $(seq 1 600); do
    grep -q "$2" "$DIR/$1.log" 2>/dev/null && return
    kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null || break
    sleep 0.1
  done
  echo "spark-cluster: $1 did not start; see $DIR/$1.log" >&2
  exit 1
}

start() {
  if [ -f "$DIR/master.pid" ] && kill -0 "$(cat "$DIR/master.pid")" 2>/dev/null; then
    echo "spark-cluster: already running at spark://127.0.0.1:$PORT"
    return
  fi
  mkdir -p "$DIR"
  daemon master org.apache.spark.deploy.master.Master \
    --host 127.0.0.1 --port "$PORT" --webui-port "$UI"
  wait_for master "I have been elected leader"
  for i in $(seq 1 "$WORKERS"); do
    mkdir -p "$DIR/work-$i"
    daemon "worker-$i" org.apache.spark.deploy.worker.Worker \
      --host 127.0.0.1 --webui-port "$((UI + i))" --work-dir "$DIR/work-$i" \
      --cores "${METERLAKE_SPARK_WORKER_CORES:-1}" --memory "${METERLAKE_SPARK_WORKER_MEMORY:-3g}" \
      "spark://127.0.0.1:$PORT"
  done
  for i in $(seq 1 "$WORKERS"); do wait_for "worker-$i" "Successfully registered with master"; done
  echo "spark-cluster: master spark://127.0.0.1:$PORT (UI http://127.0.0.1:$UI), $WORKERS workers; logs in $DIR"
}

stop() {
  for i in $(seq 1 "$WORKERS"); do stop_pid "spark-cluster worker $i" "$DIR/worker-$i.pid" 10; done
  stop_pid "spark-cluster master" "$DIR/master.pid" 10
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: infra/spark-cluster.sh start|stop" >&2; exit 2 ;;
esac
