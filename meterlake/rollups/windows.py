"""Analyst windows over metered events: tumbling, sliding and session windows in event
(billing) time, via Spark's own window functions.

Specs as typed on the command line: ``tumbling:1h``, ``sliding:1h/15m`` (size/slide),
``session:30m`` (gap). Durations take s, m, h or d.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meterlake.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_DURATION = re.compile(r"^([1-9][0-9]{0,5})([smhd])$")


@dataclass(frozen=True)
class WindowSpec:
    kind: str  # tumbling | sliding | session
    size: str  # a Spark interval such as "1 hours" (the gap, for sessions)
    slide: str | None = None


def _duration(text: str, flag: str) -> str:
    match = _DURATION.match(text.strip())
    if not match:
        raise ConfigError(f"{flag}: {text!r} is not a duration like 30s, 15m, 1h or 1d")
    return f"{match[1]} {_UNITS[match[2]]}"


def parse_window(text: str, flag: str = "--window") -> WindowSpec:
    """``tumbling:1h`` → WindowSpec("tumbling", "1 hours"); errors name the flag."""
    kind, _, rest = text.partition(":")
    if kind == "tumbling" and rest:
        return WindowSpec(kind, _duration(rest, flag))
    if kind == "sliding" and "/" in rest:
        size, slide = rest.split("/", 1)
        return WindowSpec(kind, _duration(size, flag), _duration(slide, flag))
    if kind == "session" and rest:
        return WindowSpec(kind, _duration(rest, flag))
    raise ConfigError(
        f"{flag}: {text!r} is not one of tumbling:SIZE, sliding:SIZE/SLIDE, session:GAP, period"
    )


def usage_windows(metered: DataFrame, spec: WindowSpec) -> DataFrame:
    """Per meter and window: events, sum, min and max of the metered value, exact distinct
    count, ordered by meter and window start."""
    from pyspark.sql import functions as F

    from meterlake.rollups.meter_values import exact_distinct

    if spec.kind == "session":
        window = F.session_window("billing_time", spec.size)
    else:
        window = F.window("billing_time", spec.size, spec.slide)
    return (
        metered.groupBy("meter_key", window.alias("w"))
        .agg(
            F.count("*").alias("events"),
            F.sum("value").alias("sum_value"),
            F.min("value").alias("min_value"),
            F.max("value").alias("max_value"),
            exact_distinct("unique_value").alias("unique_count"),
        )
        .select(
            "meter_key",
            F.col("w.start").alias("window_start"),
            F.col("w.end").alias("window_end"),
            "events",
            "sum_value",
            "min_value",
            "max_value",
            "unique_count",
        )
        .orderBy("meter_key", "window_start")
    )
