"""``meterlake sql``: an analyst's read-only Spark SQL over the warehouse, within the
caller's tenant scope, logged in ``audit.query_log``.

Every meterlake table is queryable by its name (``views.current_usage``,
``silver.usage_day``, ``billing.invoices``, ...). Only the tables a query names are
registered (a few catalog entries, not thirty). For a key scoped to one tenant each name
is a view of that tenant's rows; of the tables without a tenant column it sees only the
definitions every tenant shares (meters, plans, their charges, exchange rates).

What a query may contain is an allow-list checked on its parse before it runs
(`meterlake.analytics.sql_guard`): those tables, CTEs, the listed functions, nothing that
reads files, reflects into the JVM, changes the session or is a command. Reading files by
path is switched off for the run as well.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meterlake import tables
from meterlake.analytics.sql_guard import check_query, first_line
from meterlake.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import Row, SparkSession

    from meterlake.config import Settings

PATH_READS = "spark.sql.runSQLOnFiles"
# Without a tenant column, but the same for every tenant: a tenant's key may read them.
SHARED = (tables.REF_METERS, tables.REF_PLANS, tables.REF_PLAN_CHARGES, tables.REF_FX_RATES)


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[Row]
    truncated: bool  # more rows than the limit were there


def named_tables(names: set[str]) -> list[tables.TableSpec]:
    """The meterlake tables of ``names`` (cold tier as ``cold.events``); refuses any other."""
    specs = {_name(spec): spec for spec in tables.ALL_TABLES}
    unknown = sorted(names - set(specs))
    if unknown:
        raise ConfigError(f"query: table {unknown[0]} is not one of meterlake's tables")
    return [specs[name] for name in sorted(names)]


def _name(spec: tables.TableSpec) -> str:
    return f"cold.{spec.name}" if spec.cold else spec.qualified_name


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@contextmanager
def _registered(
    spark: SparkSession, settings: Settings, specs: list[tables.TableSpec], tenant: str | None
) -> Iterator[None]:
    """``specs`` as views under their names for the length of one query; the tables behind
    them in a database named at random, dropped afterwards."""
    hidden = f"meterlake_{uuid.uuid4().hex}"
    spark.sql(f"CREATE DATABASE {hidden}")
    layers = sorted({_name(spec).split(".")[0] for spec in specs})
    try:
        for layer in layers:
            spark.sql(f"DROP DATABASE IF EXISTS {layer} CASCADE")
            spark.sql(f"CREATE DATABASE {layer}")
        for spec in specs:
            source = f"{hidden}.{spec.name}_{spec.layer}"
            spark.sql(f"CREATE TABLE {source} USING delta LOCATION {_quoted(spec.path(settings))}")
            scoped = tenant is not None and spec not in SHARED
            scope = f" WHERE tenant_id = {_quoted(tenant)}" if scoped else ""
            spark.sql(f"CREATE VIEW {_name(spec)} AS SELECT * FROM {source}{scope}")
        yield
    finally:
        for layer in layers:
            spark.sql(f"DROP DATABASE IF EXISTS {layer} CASCADE")
        spark.sql(f"DROP DATABASE IF EXISTS {hidden} CASCADE")


def run_query(
    spark: SparkSession, settings: Settings, query: str, tenant: str | None, *, limit: int
) -> QueryResult:
    """Run one read-only query within ``tenant`` (None: every tenant); at most ``limit`` rows."""
    from pyspark.errors import PySparkException

    statement = query.strip().rstrip(";").strip()
    if not statement:
        raise ConfigError("query: empty")
    specs = named_tables(check_query(spark, statement))
    if tenant is not None:
        unscoped = [
            _name(s) for s in specs if "tenant_id" not in s.schema.fieldNames() and s not in SHARED
        ]
        if unscoped:
            raise ConfigError(
                f"query: {', '.join(unscoped)} has no tenant column; a key scoped to tenant"
                f" {tenant} cannot read it"
            )
    before = spark.conf.get(PATH_READS)
    with _registered(spark, settings, specs, tenant):
        spark.conf.set(PATH_READS, "false")
        try:
            frame = spark.sql(statement)  # exactly the text check_query parsed
            rows = frame.limit(limit + 1).collect()
        except PySparkException as exc:
            raise ConfigError(f"query: {first_line(exc)}") from None
        finally:
            spark.conf.set(PATH_READS, before)
    return QueryResult(frame.columns, rows[:limit], len(rows) > limit)
