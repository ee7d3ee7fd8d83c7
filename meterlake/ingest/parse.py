"""Raw landing lines → typed events or a rejection reason. Pure: DataFrame in, DataFrame out.

Input columns (see `LINE_COLUMNS`): the raw line and its lineage. Output: every bronze
column plus ``reason``/``detail`` (null for a valid event) and ``raw`` (the original bytes).
The rules applied, in order, are those of DESIGN.md: the line itself (size, UTF-8, JSON
object), the event schema of its ``schema_version``, quantity, timestamp, then time
bounds against ``received_at`` (clock skew clamps) and the first receipt, ``source_time``
where the source kept one, else ``received_at`` (too old rejects).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meterlake.ingest import reasons
from meterlake.ingest.event_schema import (
    EventSchema,
    Violation,
    field_columns,
    json_path,
    kind_column,
    text_column,
    violations,
)
from meterlake.ingest.fast_path import STRICT_TIMESTAMP, clean_line
from meterlake.ingest.identity import payload_hash

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from meterlake.config import Settings

LINE_COLUMNS = (
    "value",
    "tenant_id",
    "batch_id",
    "received_at",
    "source_time",  # when the source received the batch's oldest line (may be null)
    "landing_file",
    "line_number",
)

BRONZE_FIELDS = (
    "event_id",
    "customer_id",
    "event_type",
    "resource_id",
    "user_id",
    "session_id",
    "region",
)
_SERVER_FIELDS = {"quantity", "timestamp", "properties", "schema_version", "sdk", *BRONZE_FIELDS}
DEFAULT_SCHEMA_VERSION = "1"
QUANTITY = ("quantity",)
PROPERTIES = ("properties",)

_OFFSET = r"([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)"
_LOCAL = r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.,][0-9]{1,9})?)?"
ISO_WITH_OFFSET = f"^{_LOCAL}{_OFFSET}$"
ISO_WITHOUT_OFFSET = f"^{_LOCAL}$"
# Spark reads 12:00 but not 12:00Z or 12:00+01:00 (ISO 8601 allows both): add the seconds
_NO_SECONDS = r"^([0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2})([Z+-])"
DECIMAL_TEXT = r"^[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][+-]?[0-9]+)?$"
_DECIMAL_PARTS = r"^[+-]?([0-9]*)(?:[.]([0-9]*))?(?:[eE]([+-]?[0-9]+))?$"
EXPONENT_HINT = (
    " is a JSON number with an exponent or over 38 digits, which cannot be read exactly;"
    " send it as a decimal string"
)


def exponent_detail(text: str) -> str:
    """Why a quantity written as a JSON number with an exponent is refused (the API's
    wording; bronze's names the number as its reader saw it)."""
    return f"quantity: {text}{EXPONENT_HINT}"


def _too_many_decimals(text: Column) -> Column:
    """``text`` (a decimal number, maybe with an exponent) needs more than 9 decimal
    places, counted from its digits: no cast, so no rounding hides one (``1e-20``)."""
    from pyspark.sql import functions as F

    whole = F.regexp_extract(text, _DECIMAL_PARTS, 1)
    fraction = F.regexp_extract(text, _DECIMAL_PARTS, 2)
    exponent_text = F.regexp_extract(text, _DECIMAL_PARTS, 3)
    exponent = F.when(exponent_text == "", F.lit(0)).otherwise(exponent_text.try_cast("bigint"))
    digits = F.concat(whole, fraction)
    trailing = F.length(digits) - F.length(F.regexp_replace(digits, "0+$", ""))
    places = F.length(fraction) - exponent - trailing
    return digits.rlike("[1-9]") & (exponent.isNull() | (places > 9))


def _first(checks: list[Violation]) -> Column:
    """A struct (reason, detail) of the first check that holds, or null.

    One flat CASE (not nested ``otherwise``) so Spark's code generator can split it.
    """
    from pyspark.sql import functions as F

    result = F.when(F.lit(False), F.lit(None))
    for check in checks:
        reason = F.lit(check.reason) if isinstance(check.reason, str) else check.reason
        outcome = F.struct(reason.alias("reason"), check.detail.alias("detail"))
        result = result.when(check.condition, outcome)
    return result


def _schema_checks(schemas: dict[str, EventSchema]) -> Column:
    """The first schema violation of the event's own schema_version, as (reason, detail)."""
    from pyspark.sql import functions as F

    unknown = F.struct(
        F.lit(reasons.UNKNOWN_SCHEMA_VERSION).alias("reason"),
        F.concat(
            F.lit("schema_version: "),
            F.col("schema_version"),
            F.lit(f" is unknown (known: {', '.join(sorted(schemas))})"),
        ).alias("detail"),
    )
    result = None
    for version, schema in schemas.items():
        chosen = F.col("schema_version") == version
        checks = _first(violations(schema, raw_text="value"))
        result = (F.when if result is None else result.when)(chosen, checks)
    return result.otherwise(unknown)


def _extra(schemas: dict[str, EventSchema]) -> Column:
    """Fields a schema version declares beyond bronze's columns, as one JSON object."""
    from pyspark.sql import functions as F

    extra = F.lit(None).cast("string")
    for version, schema in schemas.items():
        names = [name for name in schema.fields if name not in _SERVER_FIELDS]
        if names:
            struct = ", ".join(f"'{n}', variant_get(v, \"{json_path((n,))}\")" for n in names)
            value = F.expr(f"to_json(named_struct({struct}))")
            extra = F.when(F.col("schema_version") == version, value).otherwise(extra)
    return extra


def _read_text(per_field: dict[str, Column], at: tuple[str, ...]) -> Column:
    """The field's text: the string its type columns read already, else the variant's own
    rendering of it (a number's digits), so a string field is navigated once."""
    from pyspark.sql import functions as F

    read = F.expr(f"try_variant_get(v, \"{json_path(at)}\", 'string')")
    name = text_column(at)
    return F.coalesce(F.col(name), read) if name in per_field else read


def parse_lines(
    lines: DataFrame, settings: Settings, schemas: dict[str, EventSchema], *, fast: bool = True
) -> DataFrame:
    """Parse and validate non-blank landing lines; see the module docstring for the rules.

    The full checks run only on lines `meterlake.ingest.fast_path` cannot vouch for;
    ``fast=False`` runs them on every line, the reference the fast path is tested against.
    """
    from pyspark.sql import functions as F

    skew = settings.max_clock_skew_seconds
    per_field = field_columns(schemas, core=(QUANTITY, PROPERTIES))
    q_kind = F.col(kind_column(QUANTITY))
    sent_time = _read_text(per_field, ("timestamp",))
    # Columns are added a stage at a time (`withColumns`), each stage reading only the
    # ones before it: every call re-analyses the whole plan, and one per column cost more
    # driver time than a small micro-batch's data (about 1.3 s per plan).
    parsed = (
        lines.withColumns(
            # A CRLF line's trailing \r is JSON whitespace, so the raw line parses as it is.
            {"raw": F.col("value").cast("binary"), "v": F.expr("try_parse_json(value)")}
        )
        .select("*", *(column.alias(name) for name, column in per_field.items()))
        .withColumns(
            {
                "schema_version": F.coalesce(
                    _read_text(per_field, ("schema_version",)), F.lit(DEFAULT_SCHEMA_VERSION)
                ),
                "ts_text": F.upper(F.trim(sent_time)),
                "q_text": F.when(
                    q_kind == "STRING", F.trim(F.col(text_column(QUANTITY)))
                ).otherwise(F.expr("to_json(variant_get(v, '$.quantity'))")),
            }
        )
        .withColumns(
            {
                "ts_strict": F.coalesce(F.col("ts_text").rlike(STRICT_TIMESTAMP), F.lit(False)),
                "quantity": F.when(q_kind.isNull(), F.lit(1).cast("decimal(38,9)")).otherwise(
                    F.expr("try_cast(q_text AS DECIMAL(38,9))")
                ),
            }
        )
        .withColumn(
            "event_time",
            F.when(F.col("ts_strict"), F.expr("try_cast(ts_text AS TIMESTAMP)")).otherwise(
                F.expr(
                    "try_cast(regexp_replace(regexp_replace(regexp_replace(regexp_replace("
                    "ts_text, ',', '.'), '([+-][0-9]{2})([0-9]{2})$', '$1:$2'),"
                    f" '([+-][0-9]{{2}})$', '$1:00'), '{_NO_SECONDS}', '$1:00$2') AS TIMESTAMP)"
                )
            ),
        )
    )
    max_bytes = settings.max_line_bytes
    too_old = F.col("event_time") < F.coalesce("source_time", "received_at") - F.expr(
        f"INTERVAL {settings.backfill_days} DAYS"
    )
    clean = clean_line(schemas, max_bytes, too_old, kind_column(QUANTITY)) if fast else F.lit(False)
    parsed = parsed.withColumn("clean", clean)
    full = ~F.col("clean")
    parsed = parsed.withColumn("schema_check", F.when(full, _schema_checks(schemas)))
    checks = [
        Violation(
            F.octet_length("value") > max_bytes,
            reasons.LINE_TOO_LONG,
            F.format_string(f"line is %d bytes; the limit is {max_bytes}", F.octet_length("value")),
        ),
        Violation(
            ~F.expr("is_valid_utf8(value)"), reasons.INVALID_UTF8, F.lit("line is not valid UTF-8")
        ),
        Violation(F.col("v").isNull(), reasons.MALFORMED_JSON, F.lit("line is not valid JSON")),
        Violation(
            ~F.expr("schema_of_variant(v) LIKE 'OBJECT%'"),
            reasons.NOT_AN_OBJECT,
            F.lit("line is JSON but not an object"),
        ),
        Violation(
            F.col("schema_check").isNotNull(),
            F.col("schema_check.reason"),
            F.col("schema_check.detail"),
        ),
        Violation(
            q_kind.isNotNull()
            & (~F.col("q_text").rlike(DECIMAL_TEXT) | F.col("quantity").isNull()),
            reasons.INVALID_QUANTITY,
            F.concat(F.lit("quantity: "), F.col("q_text"), F.lit(" is not a decimal number")),
        ),
        Violation(
            # JSON's reader holds such a number as a double: its digits are already lost.
            q_kind == "DOUBLE",
            reasons.INVALID_QUANTITY,
            F.concat(F.lit("quantity: "), F.col("q_text"), F.lit(EXPONENT_HINT)),
        ),
        Violation(
            q_kind.isNotNull() & _too_many_decimals(F.col("q_text")),
            reasons.INVALID_QUANTITY,
            F.concat(F.lit("quantity: "), F.col("q_text"), F.lit(" has more than 9 decimals")),
        ),
        Violation(
            F.col("quantity") < 0,
            reasons.NEGATIVE_QUANTITY,
            F.concat(F.lit("quantity: "), F.col("q_text"), F.lit(" is negative")),
        ),
        Violation(
            F.col("ts_text").rlike(ISO_WITHOUT_OFFSET),
            reasons.TIMESTAMP_WITHOUT_OFFSET,
            F.concat(F.lit("timestamp: "), F.col("ts_text"), F.lit(" has no offset; add Z")),
        ),
        Violation(
            ~F.col("ts_text").rlike(ISO_WITH_OFFSET) | F.col("event_time").isNull(),
            reasons.INVALID_TIMESTAMP,
            F.concat(F.lit("timestamp: "), F.col("ts_text"), F.lit(" is not ISO 8601")),
        ),
        Violation(
            # Judged from the first receipt: an API request or Kafka record is checked by
            # the API when it arrives, and its batch commits to landing a little later.
            too_old,
            reasons.TOO_OLD,
            F.lit(f"timestamp is more than {settings.backfill_days} days before receipt"),
        ),
    ]
    verdict = F.col("verdict")
    skewed = F.col("event_time") > F.col("received_at") + F.expr(f"INTERVAL {skew} SECONDS")
    read_texts = {name: _read_text(per_field, (name,)) for name in BRONZE_FIELDS}
    out = parsed.withColumn("verdict", F.when(full, _first(checks))).withColumns(
        {
            "reason": verdict.reason,
            "detail": verdict.detail,
            "clock_skew": F.coalesce(skewed, F.lit(False)),
            "billing_time": F.when(skewed, F.col("received_at")).otherwise(F.col("event_time")),
            "properties": F.expr(
                f"CASE WHEN `{kind_column(PROPERTIES)}` LIKE 'OBJECT%'"
                " THEN to_json(variant_get(v, '$.properties')) END"
            ),
            "extra": _extra(schemas),
            "sdk_name": _read_text(per_field, ("sdk", "name")),
            "sdk_version": _read_text(per_field, ("sdk", "version")),
            **read_texts,
        }
    )
    read = (*BRONZE_FIELDS, "schema_version", "sdk_name", "sdk_version", "properties", "extra")
    identity = [*map(F.col, read), sent_time.alias("timestamp"), F.col("q_text").alias("quantity")]
    out = out.withColumns(
        {"billing_date": F.to_date("billing_time"), "payload_sha256": payload_hash(identity)}
    )
    helpers = ["v", "ts_text", "ts_strict", "q_text", "clean", "schema_check", "verdict"]
    return out.drop(*helpers, *per_field)
