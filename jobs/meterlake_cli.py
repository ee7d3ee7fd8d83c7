"""spark-submit entry point for any meterlake command, for clusters and managed Spark:

    infra/submit.sh jobs/meterlake_cli.py pipeline run --source kafka
    spark-submit --master spark://host:7077 --packages <python -m meterlake.spark --packages> \
        jobs/meterlake_cli.py invoices run --as-of 2026-03-01T00:00:00Z

Runs `meterlake.cli.main` with the arguments, in the driver spark-submit started (its
master, memory and packages); nothing else.
"""

from __future__ import annotations

import sys

from meterlake.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
