"""What the notebooks in ``notebooks/`` open the warehouse with, so they hold no logic of
their own: the process's Spark session on the configured warehouse (``METERLAKE_WAREHOUSE``,
else ``./warehouse`` as ``make demo`` leaves it), the caller's key checked as the CLI checks
it (``METERLAKE_KEY`` when access control is on), and SQL through ``meterlake sql``'s runner
(tenant scope, read-only, logged in ``audit.query_log``) returned as pandas frames.

Example::

    ws = open_warehouse()
    ws.sql("SELECT * FROM views.tenant_daily_usage ORDER BY day")
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meterlake.config import Settings

if TYPE_CHECKING:
    import pandas
    from pyspark.sql import SparkSession

    from meterlake.audit.access import Principal


@dataclass(frozen=True)
class Workspace:
    spark: SparkSession
    settings: Settings
    principal: Principal
    tenant: str | None  # the key's tenant (None: every tenant)

    def sql(self, query: str, limit: int = 10_000) -> pandas.DataFrame:
        """One read-only query, within the key's tenant, logged; at most ``limit`` rows."""
        import pandas

        from meterlake.analytics.sql import run_query
        from meterlake.audit.query_log import log_query

        result = run_query(self.spark, self.settings, query, self.tenant, limit=limit)
        arguments = {"query": query, "limit": limit}
        rows = len(result.rows)
        log_query(self.spark, self.settings, self.principal, "notebook sql", arguments,
                  self.tenant, rows)  # fmt: skip
        return pandas.DataFrame([tuple(r) for r in result.rows], columns=result.columns)


def open_warehouse(warehouse: str | None = None, *, now: str | None = None) -> Workspace:
    """The warehouse, checked to exist, for the holder of ``METERLAKE_KEY``."""
    from meterlake.audit.access import authenticate, authorize
    from meterlake.spark import build_session
    from meterlake.warehouse import require_tables

    settings = Settings.load(warehouse=warehouse, now=now)
    principal = authenticate(settings, os.environ.get("METERLAKE_KEY"))
    tenant = authorize(principal, "sql.query", None, scopable=True)
    spark = build_session(settings, app_name="meterlake-notebook")
    require_tables(spark, settings)
    return Workspace(spark, settings, principal, tenant)
