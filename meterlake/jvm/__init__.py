"""Java sources meterlake adds to Spark's classpath, compiled once into the Ivy cache.

Only the S3 commit store lives here (`S3ConditionalLogStore.java`); it is compiled with the
JDK's ``javac`` against the jars Spark already resolved (delta-storage, hadoop-client-api),
so nothing but source is shipped and the class always matches the jars it runs with.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from meterlake.errors import ConfigError

LOG_STORE_CLASS = "io.meterlake.delta.S3ConditionalLogStore"
_SOURCES = (Path(__file__).with_name("S3ConditionalLogStore.java"),)


def log_store_jar(ivy_dir: str, classpath: list[str]) -> str:
    """The jar of `LOG_STORE_CLASS` for this source and classpath, built on first use."""
    digest = hashlib.sha256()
    for source in _SOURCES:
        digest.update(source.read_bytes())
    digest.update("\n".join(sorted(classpath)).encode())
    jar = Path(ivy_dir) / "meterlake" / f"meterlake-jvm-{digest.hexdigest()[:16]}.jar"
    if jar.exists():
        return str(jar)
    javac, jar_tool = shutil.which("javac"), shutil.which("jar")
    if javac is None or jar_tool is None:
        raise ConfigError(
            "an S3 warehouse needs a JDK (javac and jar on PATH) to build meterlake's"
            " conditional Delta commit store once; install one (e.g. openjdk-17-jdk)"
        )
    jar.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=jar.parent) as work:
        paths = ":".join(entry.removeprefix("file:") for entry in classpath)
        classes = Path(work) / "classes"
        _run([javac, "--release", "17", "-nowarn", "-cp", paths, "-d", str(classes),
              *map(str, _SOURCES)])  # fmt: skip
        built = Path(work) / jar.name
        _run([jar_tool, "--create", "--file", str(built), "-C", str(classes), "."])
        built.replace(jar)  # atomic: a concurrent builder's jar is the same bytes
    return str(jar)


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        first = (done.stderr or done.stdout).strip().splitlines()[:1]
        raise ConfigError(f"building meterlake's JVM classes failed: {' '.join(first)}")
