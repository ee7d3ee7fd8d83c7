"""spark-submit entry point: landing → bronze, once (availableNow) or continuously.

    spark-submit --packages io.delta:delta-spark_4.2_2.13:4.4.0 jobs/landing_to_bronze.py \
        --warehouse s3a://bucket/prefix [--continuous]

Parses flags and calls `meterlake.ingest.stream.run_landing_to_bronze`; nothing else.
"""

from __future__ import annotations

import argparse

from meterlake.config import Settings
from meterlake.ingest.stream import run_landing_to_bronze
from meterlake.spark import build_session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", help="warehouse root (default $METERLAKE_WAREHOUSE)")
    parser.add_argument("--continuous", action="store_true", help="run until SIGTERM")
    args = parser.parse_args()
    settings = Settings.load(warehouse=args.warehouse)
    run_landing_to_bronze(build_session(settings), settings, continuous=args.continuous)


if __name__ == "__main__":
    main()
