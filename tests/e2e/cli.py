"""Running the real ``meterlake`` command: in a subprocess, or by this process's ``main()``."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path


def cli_env(warehouse: Path | str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERLAKE_NOW")}
    env.update({"METERLAKE_WAREHOUSE": str(warehouse), "METERLAKE_SHUFFLE_PARTITIONS": "2"})
    env.update(extra)
    return env


def meterlake(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "meterlake.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def spawn(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "meterlake.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def meterlake_here(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``meterlake ARGS`` run by ``meterlake.cli.main`` in this process, with ``env`` as the
    environment: the same parsing, authorisation, output and exit code as :func:`meterlake`,
    on the suite's SparkSession instead of a new JVM (15–40 s per command here).

    For tests whose subject is a command's behaviour, not the process around it; start-up
    without a JVM, stderr redirection and signals are tested with :func:`meterlake`. Needs
    the ``spark`` fixture to have started the session first (its S3A jars come with it).
    """
    from meterlake.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse's usage errors
                code = exc.code if isinstance(exc.code, int) else 2
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return subprocess.CompletedProcess(["meterlake", *args], code, out.getvalue(), err.getvalue())
