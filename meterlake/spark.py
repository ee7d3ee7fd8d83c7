"""The one SparkSession factory: Delta always, S3A and Kafka connectors when they are needed.

JVM packages are resolved from Maven Central by Spark's own package resolution into
``settings.ivy_dir``; the resolved jar list is remembered beside it so later sessions
start without re-resolving (and without Ivy's console chatter).

``python -m meterlake.spark --warm`` resolves every package once (``make setup`` runs it).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from meterlake.config import Settings
from meterlake.jvm import LOG_STORE_CLASS, log_store_jar
from meterlake.lease import add_companion

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

HADOOP_AWS = "org.apache.hadoop:hadoop-aws:3.5.0"
SPARK_VERSION = "4.2.0"
KAFKA = f"org.apache.spark:spark-sql-kafka-0-10_2.13:{SPARK_VERSION}"
LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties")
POOLS_CONFIG = Path(__file__).with_name("fairscheduler.xml")
BACKGROUND_POOL = "background"  # see fairscheduler.xml


# Compiled query classes kept per JVM (see `_start`).
CODEGEN_CACHE_ENTRIES = 2000


def delta_package() -> str:
    """The Delta artifact matching the installed pyspark and delta-spark (as delta's pip helper)."""
    from importlib.metadata import version

    spark_minor = ".".join(version("pyspark").split(".")[:2])
    return f"io.delta:delta-spark_{spark_minor}_2.13:{version('delta-spark')}"


def required_packages(settings: Settings, *, kafka: bool = False, s3: bool = False) -> list[str]:
    packages = [delta_package()]
    if s3 or settings.uses_s3:
        packages.append(HADOOP_AWS)
    if kafka:
        packages.append(KAFKA)
    return packages


def _jar_list_file(settings: Settings, packages: list[str]) -> Path:
    digest = hashlib.sha256(",".join(sorted(packages)).encode()).hexdigest()[:16]
    return Path(settings.ivy_dir) / f"resolved-{digest}.txt"


def _resolved_jars(settings: Settings, packages: list[str]) -> list[str] | None:
    listing = _jar_list_file(settings, packages)
    if not listing.exists():
        return None
    jars = [line for line in listing.read_text().splitlines() if line]
    return jars if jars and all(Path(j.removeprefix("file:")).exists() for j in jars) else None


def build_session(
    settings: Settings, *, app_name: str = "meterlake", kafka: bool = False, s3: bool = False
) -> SparkSession:
    """Return the process's SparkSession, creating it with Delta (and S3A/Kafka if asked).

    Example::

        spark = build_session(Settings.load(), kafka=True)
    """
    packages = required_packages(settings, kafka=kafka, s3=s3)
    jars = _resolved_jars(settings, packages)
    conf: dict[str, str] = {}
    if HADOOP_AWS in packages:
        if jars is None:  # the commit store is compiled against the resolved jars
            _resolve_in_child(settings, kafka=kafka)
            jars = _resolved_jars(settings, packages) or []
        jars = [*jars, log_store_jar(settings.ivy_dir, jars)]
        conf = dict.fromkeys(
            ("spark.delta.logStore.s3a.impl", "spark.delta.logStore.s3.impl"), LOG_STORE_CLASS
        )
    return _start(settings, app_name, packages, jars, conf)


def _resolve_in_child(settings: Settings, *, kafka: bool, s3: bool = True) -> None:
    """Resolve one package combination in a JVM of its own (packages are read at start),
    into the caller's Ivy cache, where the caller then looks for its jar listing."""
    flags = [*(["--kafka"] if kafka else []), *(["--s3"] if s3 else [])]
    env = {**os.environ, "METERLAKE_IVY_DIR": settings.ivy_dir}
    command = [sys.executable, "-m", "meterlake.spark", "--resolve", *flags]
    subprocess.run(command, check=True, env=env)


def _start(
    settings: Settings,
    app_name: str,
    packages: list[str],
    jars: list[str] | None,
    conf: dict[str, str],
) -> SparkSession:
    """Start (or join) the session with these jars, or resolve ``packages`` when None."""
    from pyspark.sql import SparkSession

    # PySpark turns TIMESTAMP values into naive datetimes in the *Python* process's zone;
    # pinning it to UTC makes every collected instant the UTC instant stored.
    os.environ["TZ"] = "UTC"
    time.tzset()

    java_opts = f"-Dlog4j2.configurationFile=file:{LOG4J_CONFIG} -XX:-DontCompileHugeMethods"
    builder = (
        SparkSession.builder.master(settings.spark_master)
        .appName(app_name)
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config(
            "spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog"
        )
        .config("spark.sql.catalogImplementation", "in-memory")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(settings.shuffle_partitions))
        # Delta rebuilds table state (e.g. to look up idempotent-write versions) with this many
        # partitions; its default of 50 costs seconds per commit on a small machine.
        .config("spark.databricks.delta.snapshotPartitions", str(settings.shuffle_partitions))
        # VACUUM lists the table's folders in this many tasks (default 10,000: ~25 s per
        # VACUUM of even a small table on two cores).
        .config(
            "spark.sql.sources.parallelPartitionDiscovery.parallelism",
            str(settings.shuffle_partitions * 4),
        )
        .config("spark.driver.memory", settings.driver_memory)
        .config("spark.executor.memory", settings.executor_memory)
        # On a cluster, executors' Python workers read instants in UTC as the driver does.
        .config("spark.executorEnv.TZ", "UTC")
        .config("spark.driver.extraJavaOptions", java_opts)
        .config("spark.executor.extraJavaOptions", java_opts)
        # Micro-batches are cached once and read twice; compressing that cache costs more
        # CPU than the memory it saves here.
        .config("spark.sql.inMemoryColumnarStorage.compressed", "false")
        # Generated code is compiled once per distinct plan shape and kept in this cache;
        # at its default of 100 entries one micro-batch's ~150 classes evict each other, so
        # every micro-batch compiled them all again (bench/microbatch.py, two runs: 151
        # compilations and 11.4-12.7 s per micro-batch at 100 entries, 4 and 7.4-9.8 s at
        # 2,000, with the same metaspace in use: 209 and 210 MiB).
        .config("spark.sql.codegen.cache.maxEntries", str(CODEGEN_CACHE_ENTRIES))
        # Catch-up work in a second thread (`in_background`) yields the cores to the jobs
        # a user waits on, which FIFO would queue behind a rollup's stages.
        .config("spark.scheduler.mode", "FAIR")
        .config("spark.scheduler.allocation.file", f"file:{POOLS_CONFIG}")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.jars.ivy", settings.ivy_dir)
        .config("spark.databricks.delta.schema.autoMerge.enabled", "false")
        # MERGE copies its source first unless told not to, in case it is non-deterministic;
        # meterlake's sources are cached frames, Python rows or Delta reads at a pinned
        # version, and the copy costs 0.3-0.5 s per insert (bronze micro-batch: 11.0 → 8.1 s).
        .config("spark.databricks.delta.merge.materializeSource", "none")
        .config("spark.sql.streaming.stopGracefullyOnShutdown", "true")
    )
    if jars:
        builder = builder.config("spark.jars", ",".join(jars))
    else:
        builder = builder.config("spark.jars.packages", ",".join(packages))
    for key, value in {**_s3a_conf(settings), **conf}.items():
        builder = builder.config(key, value)
    spark = _launch_with_log(builder, settings)
    gateway = getattr(spark.sparkContext._gateway, "proc", None)
    if gateway is not None:  # a lease held here is held until this JVM exits too
        add_companion(gateway.pid)
    spark.sparkContext.setLogLevel("ERROR")
    _quiet_query_errors()
    if settings.uses_s3:
        # A session that already existed ignores the builder's spark.hadoop.* settings;
        # S3A reads them from the live Hadoop configuration.
        hadoop = spark.sparkContext._jsc.hadoopConfiguration()
        for key, value in _s3a_conf(settings).items():
            hadoop.set(key.removeprefix("spark.hadoop."), value)
    if not jars:
        _remember_jars(settings, packages, spark)
    return spark


def _quiet_query_errors() -> None:
    """PySpark logs every SQL or DataFrame error it raises as a JSON line on stderr; the
    error itself still reaches the caller, and the CLI reports it in one line."""
    import logging

    from pyspark.logger import PySparkLogger

    for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
        PySparkLogger.getLogger(name).setLevel(logging.CRITICAL)


@contextmanager
def in_background(spark: SparkSession) -> Iterator[None]:
    """Run the Spark jobs this thread starts inside in the background pool: they take only
    the cores the default pool leaves (``pipeline stream``'s rollups beside its
    micro-batches)."""
    context = spark.sparkContext
    context.setLocalProperty("spark.scheduler.pool", BACKGROUND_POOL)
    try:
        yield
    finally:
        context.setLocalProperty("spark.scheduler.pool", None)


def compiled_classes(spark: SparkSession) -> int:
    """Classes Janino has compiled in this JVM so far (whole-stage and expression code): a
    micro-batch whose plans are all in the compiled-code cache adds next to nothing."""
    metrics = spark._jvm.org.apache.spark.metrics.source.CodegenMetrics
    return int(metrics.METRIC_COMPILATION_TIME().getCount())


def spark_log_path(settings: Settings) -> Path:
    return Path(settings.log_dir) / "spark-driver.log"


def _launch_with_log(builder: SparkSession.Builder, settings: Settings) -> SparkSession:
    """Start the JVM with its stderr going to the Spark log file, not the user's terminal.

    The JVM writes start-up banners and executor-side stack traces to stderr; meterlake
    reports failures itself, in one line, and names this file for the details.
    """
    from pyspark import SparkContext

    if SparkContext._jvm is not None:  # the JVM is already up; nothing to redirect
        return builder.getOrCreate()
    log = spark_log_path(settings)
    log.parent.mkdir(parents=True, exist_ok=True)
    saved = os.dup(2)
    with log.open("ab") as handle:
        os.dup2(handle.fileno(), 2)
        try:
            return builder.getOrCreate()
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _remember_jars(settings: Settings, packages: list[str], spark: SparkSession) -> None:
    resolved = spark.sparkContext.getConf().get("spark.jars", "")
    jars = [j for j in resolved.split(",") if j and Path(settings.ivy_dir).as_posix() in j]
    if jars:
        listing = _jar_list_file(settings, packages)
        listing.parent.mkdir(parents=True, exist_ok=True)
        listing.write_text("\n".join(jars) + "\n")


def _s3a_conf(settings: Settings) -> dict[str, str]:
    """S3A settings from config; credentials stay with the AWS default provider chain."""
    conf = {
        "spark.hadoop.fs.s3a.path.style.access": str(settings.s3.path_style).lower(),
        "spark.hadoop.fs.s3a.endpoint.region": settings.s3.region,
        "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
    }
    if settings.s3.endpoint:
        conf["spark.hadoop.fs.s3a.endpoint"] = settings.s3.endpoint
        conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(
            settings.s3.endpoint.startswith("https")
        ).lower()
    return conf


def warm(settings: Settings) -> list[list[str]]:
    """Resolve every package combination `build_session` can ask for, one JVM each.

    ``spark.jars.packages`` is only read when a JVM starts, so each combination is resolved
    in a child process; afterwards no run touches the network.
    """
    combos = [(kafka, s3) for kafka in (False, True) for s3 in (False, True)]
    for kafka, s3 in combos:
        _resolve_in_child(settings, kafka=kafka, s3=s3)
    return [required_packages(settings, kafka=k, s3=s) for k, s in combos]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m meterlake.spark")
    parser.add_argument("--warm", action="store_true", help="resolve all JVM packages once")
    parser.add_argument(
        "--packages",
        action="store_true",
        help="print the packages a job needs here (for spark-submit --packages; infra/submit.sh)",
    )
    parser.add_argument("--resolve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kafka", action="store_true", help="with --packages: a Kafka job")
    parser.add_argument("--s3", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    settings = Settings.load()
    if args.packages:
        print(",".join(required_packages(settings, kafka=args.kafka, s3=args.s3)))
    if args.resolve:
        packages = required_packages(settings, kafka=args.kafka, s3=args.s3)
        _start(settings, "meterlake-warm", packages, None, {}).stop()
        if HADOOP_AWS in packages:  # build the commit store now too, not at the first run
            log_store_jar(settings.ivy_dir, _resolved_jars(settings, packages) or [])
    if args.warm:
        for packages in warm(settings):
            print("resolved " + ", ".join(packages))
    return 0


if __name__ == "__main__":
    sys.exit(main())
