"""Delta commits on S3 from two processes at once: none is lost (`meterlake.jvm`).

Delta's own S3 log store is safe for one driver only: two drivers committing version N
at once both "succeed" and the later PUT replaces the earlier commit. meterlake's store
creates commit files with a conditional PUT, so the loser retries at N + 1.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from py4j.protocol import Py4JJavaError
from pyspark.sql import functions as F

from meterlake.jvm import LOG_STORE_CLASS
from meterlake.spark import build_session
from tests.helpers import bucket_settings

APPENDS = 15

APPENDER = """
import sys
from meterlake.config import Settings
from meterlake.spark import build_session
from pyspark.sql import functions as F
path, appends = sys.argv[1], int(sys.argv[2])
spark = build_session(Settings.load(), app_name="s3-appender", s3=True)
print("ready", flush=True)
sys.stdin.readline()  # "go": both processes start appending at the same moment
for i in range(appends):
    frame = spark.range(10).select(F.lit("child").alias("who"), F.lit(i).alias("i"), "id")
    frame.write.format("delta").mode("append").save(path)
"""


@pytest.fixture
def s3_spark(spark, s3_endpoint: str):
    """The suite's session, its S3A pointed at the test's MinIO."""
    return build_session(bucket_settings(s3_endpoint, "commits"))


def _append(spark, path: str, who: str, i: int) -> None:
    frame = spark.range(10).select(F.lit(who).alias("who"), F.lit(i).alias("i"), "id")
    frame.write.format("delta").mode("append").save(path)


@pytest.mark.slow
def test_two_processes_appending_to_one_s3_table_lose_no_commit(s3_spark, s3_endpoint) -> None:
    spark = s3_spark
    assert spark.sparkContext.getConf().get("spark.delta.logStore.s3a.impl") == LOG_STORE_CLASS
    path = f"s3a://meterlake/commits-{uuid.uuid4().hex[:12]}/t"
    _append(spark, path, "setup", 0)  # both then append to an existing table
    env = {**os.environ, "METERLAKE_S3_ENDPOINT": s3_endpoint,
           "METERLAKE_SHUFFLE_PARTITIONS": "2"}  # fmt: skip
    child = subprocess.Popen(
        [sys.executable, "-c", APPENDER, path, str(APPENDS)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
        child.stdin.write("go\n")
        child.stdin.flush()
        for i in range(APPENDS):
            _append(spark, path, "parent", i)
        assert child.wait(timeout=300) == 0, child.stderr.read()
    finally:
        child.kill()
    table = spark.read.format("delta").load(path)
    counts = {r.who: r["count"] for r in table.groupBy("who").count().collect()}
    assert counts == {"setup": 10, "parent": 10 * APPENDS, "child": 10 * APPENDS}
    versions = spark.sql(f"DESCRIBE HISTORY delta.`{path}`").select("version").collect()
    assert sorted(v.version for v in versions) == list(range(2 * APPENDS + 1))


def test_a_commit_file_is_created_once_and_a_retry_of_the_same_bytes_succeeds(s3_spark) -> None:
    spark = s3_spark
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    store = jvm.io.meterlake.delta.S3ConditionalLogStore(conf)
    path = jvm.org.apache.hadoop.fs.Path(
        f"s3a://meterlake/commits-{uuid.uuid4().hex[:12]}/_delta_log/00000000000000000000.json"
    )

    def write(*lines: str) -> None:
        store.write(path, jvm.java.util.ArrayList(list(lines)).iterator(), False, conf)

    write('{"commitInfo":{"txnId":"a"}}')
    write('{"commitInfo":{"txnId":"a"}}')  # S3A's retry of a PUT whose answer was lost
    with pytest.raises(Py4JJavaError, match="FileAlreadyExistsException"):
        write('{"commitInfo":{"txnId":"b"}}')  # another writer of the same version
    read = store.read(path, conf)
    assert [read.next()] == ['{"commitInfo":{"txnId":"a"}}'] and not read.hasNext()
