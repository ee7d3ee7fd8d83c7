"""Read-command latency: `usage show` direct (a JVM per command) and through a warm server.

    .venv/bin/python bench/cli.py [--calls 6]

Runs the demo into a fresh warehouse, then times `meterlake usage show --customer acme`
run directly twice (each starts its own JVM) and ``--calls`` times through a running
``meterlake serve`` (``--server URL``, server mode), whose first call starts the
server's JVM and the rest find it warm. Prints the medians and their ratio; the goal for
the warm path is < 1 s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from results import record

from meterlake.audit.access import create_key
from meterlake.config import Settings
from tests.capture_server import ApiServer
from tests.e2e.cli import cli_env, meterlake

SHOW = ("usage", "show", "--customer", "acme", "--as-of", "2026-03-20T00:00:00Z")


def timed(*args: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = meterlake(*args, env=env)
    assert done.returncode == 0, done.stderr
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=6)
    args = parser.parse_args()
    warehouse = Path(tempfile.mkdtemp(prefix="meterlake-bench-cli-")) / "warehouse"
    env = cli_env(warehouse)
    print("running the demo ...", flush=True)
    assert meterlake("demo", env=env).returncode == 0
    direct = [timed(*SHOW, env=env) for _ in range(2)]
    key, _ = create_key(Settings.load(env={}).with_warehouse(str(warehouse)), "*", "engineer")
    server = ApiServer(warehouse).start()
    try:
        remote = {**env, "METERLAKE_KEY": key}
        served = [timed("--server", server.url, *SHOW, env=remote) for _ in range(args.calls)]
    finally:
        server.stop()
    warm = statistics.median(served[1:])
    record(
        "cli",
        "Read commands: usage show direct and through a warm server",
        [
            ("direct (a JVM per command), median of 2", f"{statistics.median(direct):.1f} s"),
            ("server mode, first call (starts its JVM)", f"{served[0]:.1f} s"),
            (f"server mode, median of the other {args.calls - 1}", f"{warm:.1f} s"),
            ("warm goal", "< 1 s"),
            ("direct / warm", f"{statistics.median(direct) / warm:.1f}"),
        ],
    )


if __name__ == "__main__":
    main()
