"""Which lines are plainly valid, judged from cheap tests, so the full checks skip them.

Every rule of `meterlake.ingest.parse` costs a regular expression, a type walk or a
re-serialisation per line, and a line pays for all of them although almost every line a
real source sends passes every one. `clean_line` is one conjunction of tests on columns
the parser computes anyway (the field types and texts) plus a few narrow patterns; where
it holds the line passes every check, so the parser evaluates the full checks only where
it does not. It never decides a rejection: a line it cannot vouch for (a timestamp
written another way, a quantity with an exponent, a schema shape it does not know) goes
through the full checks, which give the same verdict they always did.
"""

from __future__ import annotations

import re
from functools import reduce
from itertools import combinations
from typing import TYPE_CHECKING, Any

from meterlake.ingest.event_schema import (
    EventSchema,
    Violation,
    field_violations,
    kind_column,
    top_level_violations,
)

if TYPE_CHECKING:
    from pyspark.sql import Column

# An ISO 8601 instant as clients write it (after upper-casing): the parser's rewrites of
# other spellings (a comma, an offset without a colon, no seconds) leave it unchanged.
STRICT_TIMESTAMP = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]{1,9})?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})$"
)
# A quantity bronze's DECIMAL(38, 9) holds exactly as written: no sign, exponent or excess.
PLAIN_DECIMAL = r"^[0-9]{1,29}([.][0-9]{1,9})?$"
# Variant types a plain decimal text can come from (a DOUBLE's text is already rounded).
EXACT_KINDS = ("TINYINT", "SMALLINT", "INT", "BIGINT", "STRING")
# Beyond this many declared subfields the shapes of a nested object are not enumerated.
MAX_ENUMERATED_FIELDS = 4
_PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _none_hold(checks: list[Violation]) -> Column:
    """True where no check holds; a check whose condition is null does not hold."""
    from pyspark.sql import functions as F

    conditions = [~F.coalesce(check.condition, F.lit(False)) for check in checks]
    return reduce(lambda a, b: a & b, conditions, F.lit(True))


def _object_shapes(node: dict[str, Any]) -> list[str] | None:
    """Every ``schema_of_variant`` text of an object holding only declared string fields,
    required ones included; None when the object's rules are not of that simple kind."""
    declared = node.get("properties", {})
    required = set(node.get("required", []))
    simple = all(
        _PLAIN_NAME.match(name) and sub.get("type") == "string" and "properties" not in sub
        for name, sub in declared.items()
    )
    if not simple or len(declared) > MAX_ENUMERATED_FIELDS:
        return None
    names = sorted(declared)
    shapes = []
    for size in range(len(names) + 1):
        for chosen in combinations(names, size):
            if required <= set(chosen):
                fields = ", ".join(f"{name}: STRING" for name in chosen)
                shapes.append(f"OBJECT<{fields}>")
    return shapes


def _field_clean(node: dict[str, Any], name: str, v: str, raw_text: str) -> Column | None:
    """True where the top-level field ``name`` passes its checks; None when not judged."""
    from pyspark.sql import functions as F

    at = (name,)
    if not (node.get("properties") or node.get("required") or "additionalProperties" in node):
        return _none_hold(field_violations(node, at, v, raw_text))
    shapes = _object_shapes(node)
    if shapes is None:
        return None
    kind = F.col(kind_column(at))
    # Its subfields' own rules (lengths, patterns); their types and names are in the shape.
    nested = [
        check
        for sub_name, sub in node.get("properties", {}).items()
        for check in field_violations(sub, (*at, sub_name), v, raw_text)
    ]
    return kind.isNull() | (kind.isin(*shapes) & _none_hold(nested))


def schema_clean(schemas: dict[str, EventSchema], v: str = "v", raw_text: str = "value") -> Column:
    """True where the line passes every check of its own schema_version; False, never
    null, where it fails one or the version's rules are beyond these tests."""
    from pyspark.sql import functions as F

    chosen = None
    for version, schema in schemas.items():
        parts = [_none_hold(top_level_violations(schema, v, raw_text))]
        fields = schema.document.get("properties", {}).items()
        parts += [_field_clean(sub, name, v, raw_text) for name, sub in fields]
        if any(part is None for part in parts):
            continue
        clean = reduce(lambda a, b: a & b, parts)
        test = F.col("schema_version") == version
        chosen = F.when(test, clean) if chosen is None else chosen.when(test, clean)
    if chosen is None:
        return F.lit(False)
    return F.coalesce(chosen.otherwise(F.lit(False)), F.lit(False))


def clean_line(
    schemas: dict[str, EventSchema], max_bytes: int, too_old: Column, quantity_kind: str
) -> Column:
    """True where every check of the parser is known to pass; never null.

    Reads the parser's own columns: ``value`` (the line), ``v`` (its variant),
    ``schema_version``, the field type columns, ``q_text``, ``ts_strict`` and
    ``event_time``; ``too_old`` is the parser's own test.
    """
    from pyspark.sql import functions as F

    kind = F.col(quantity_kind)
    quantity = kind.isNull() | (
        (kind.isin(*EXACT_KINDS) | kind.startswith("DECIMAL("))
        & F.col("q_text").rlike(PLAIN_DECIMAL)
    )
    test = (
        (F.octet_length("value") <= max_bytes)
        & F.expr("is_valid_utf8(value)")
        & F.col("v").isNotNull()
        & F.col("value").startswith("{")
        & schema_clean(schemas)
        & quantity
        & F.col("ts_strict")
        & F.col("event_time").isNotNull()
        & ~too_old
    )
    return F.coalesce(test, F.lit(False))
