"""Creating the warehouse: every table of `meterlake.tables` plus the landing zone."""

from __future__ import annotations

from typing import TYPE_CHECKING

from meterlake import tables
from meterlake.delta_io import per_table
from meterlake.ingest.landing import ensure_landing

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from meterlake.config import Settings


def init_warehouse(spark: SparkSession, settings: Settings) -> list[tuple[tables.TableSpec, bool]]:
    """Create whatever is missing; returns each table with whether this call created it."""
    ensure_landing(settings)
    created = per_table(lambda spec: tables.create_table(spark, settings, spec), tables.ALL_TABLES)
    return list(zip(tables.ALL_TABLES, created, strict=True))


def require_tables(spark: SparkSession, settings: Settings) -> None:
    """Refuse to run a job against a warehouse `init` has not created."""
    from delta.tables import DeltaTable

    from meterlake.errors import WarehouseError

    for spec in tables.ALL_TABLES:
        if not DeltaTable.isDeltaTable(spark, spec.path(settings)):
            raise WarehouseError(
                f"{settings.warehouse}: {spec.qualified_name} is missing; run `meterlake init`"
            )
