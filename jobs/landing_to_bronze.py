"""spark-submit entry point: landing (or Kafka) → bronze, once (availableNow) or continuously.

    infra/submit.sh jobs/landing_to_bronze.py --warehouse s3a://bucket/prefix \
        [--source kafka] [--continuous]

Parses flags and calls `meterlake.ingest.stream.run_landing_to_bronze`; nothing else.
"""

from __future__ import annotations

import argparse

from meterlake.config import SOURCES, Settings
from meterlake.ingest.stream import run_landing_to_bronze
from meterlake.spark import build_session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", help="warehouse root (default $METERLAKE_WAREHOUSE)")
    parser.add_argument("--source", choices=SOURCES, default="landing", help="what to read")
    parser.add_argument("--continuous", action="store_true", help="run until SIGTERM")
    args = parser.parse_args()
    settings = Settings.load(warehouse=args.warehouse)
    spark = build_session(settings, kafka=args.source == "kafka")
    run_landing_to_bronze(spark, settings, source=args.source, continuous=args.continuous)


if __name__ == "__main__":
    main()
