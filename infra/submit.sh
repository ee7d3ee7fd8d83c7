#!/usr/bin/env bash
# infra/submit.sh JOB [ARGS...] — spark-submit one of jobs/ to ${METERLAKE_SPARK_MASTER:-local[2]}
# with the JVM packages meterlake needs here (Delta, the Kafka connector, and hadoop-aws
# when the warehouse or cold tier is s3a://), resolved through the project's Ivy cache
# (${METERLAKE_IVY_DIR:-.cache/ivy}); driver memory ${METERLAKE_DRIVER_MEMORY:-2g}; the
# driver and the executors run the project's Python. For example:
#   METERLAKE_SPARK_MASTER=spark://127.0.0.1:7077 infra/submit.sh jobs/meterlake_cli.py demo
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="$ROOT/.venv/bin/python"
[ $# -ge 1 ] || { echo "usage: infra/submit.sh JOB [ARGS...]" >&2; exit 2; }
SPARK_HOME="$("$PYTHON" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
IVY="${METERLAKE_IVY_DIR:-$ROOT/.cache/ivy}"
export SPARK_HOME PYSPARK_PYTHON="$PYTHON" SPARK_LOCAL_IP=127.0.0.1
exec "$SPARK_HOME/bin/spark-submit" \
  --master "${METERLAKE_SPARK_MASTER:-local[2]}" \
  --packages "$("$PYTHON" -m meterlake.spark --packages --kafka)" \
  --conf "spark.jars.ivy=$IVY" \
  --driver-memory "${METERLAKE_DRIVER_MEMORY:-2g}" \
  --driver-java-options "-Dlog4j2.configurationFile=file:$ROOT/meterlake/log4j2.properties" \
  "$@"
