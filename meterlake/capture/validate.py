"""Early validation of one event at the API, with the reason codes bronze uses.

The API answers each event at once (accepted or rejected with a reason) instead of letting
a client learn minutes later, from the quarantine, that it sent garbage. The rules come
from the same places bronze's reader uses: the event's JSON Schema file (applied with
``jsonschema``), and the quantity and timestamp patterns of `meterlake.ingest.parse`.
Bronze still checks every landed line again and has the last word (e.g. an unknown
customer, which the API cannot see without the catalog, is quarantined there).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from meterlake.capture.body import JsonNumber, duplicate_key
from meterlake.ingest import reasons
from meterlake.ingest.event_schema import EventSchema, load_event_schemas
from meterlake.ingest.parse import (
    DECIMAL_TEXT,
    DEFAULT_SCHEMA_VERSION,
    ISO_WITH_OFFSET,
    ISO_WITHOUT_OFFSET,
    exponent_detail,
)

# JSON Schema keyword that failed → the reason bronze gives the same line.
_SCHEMA_REASONS = {
    "required": reasons.MISSING_FIELD,
    "type": reasons.WRONG_TYPE,
    "additionalProperties": reasons.UNKNOWN_FIELD,
}
_INTEGER_DIGITS = 29  # DECIMAL(38, 9) holds 29 integer digits
_FRACTION = re.compile(r"[.,]([0-9]{1,9})")


@dataclass(frozen=True)
class Rejection:
    reason: str
    detail: str


_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    # 2.0 is not an integer here: bronze's reader (a DECIMAL(2,1)) and jsonschema agree
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float | Decimal) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}


def compile_schema(node: dict[str, Any]) -> Callable[[Any], bool]:
    """A fast yes/no for the keywords event schemas may use (`event_schema` refuses any
    other), so valid events skip ``jsonschema``, which then only explains refusals."""
    checks: list[Callable[[Any], bool]] = []
    if "type" in node:
        names = [node["type"]] if isinstance(node["type"], str) else node["type"]
        tests = [_JSON_TYPES[name] for name in names]
        checks.append(lambda v: any(test(v) for test in tests))
    text = _JSON_TYPES["string"]
    number = _JSON_TYPES["number"]
    if "minLength" in node:
        checks.append(lambda v, n=node["minLength"]: not text(v) or len(v) >= n)
    if "maxLength" in node:
        checks.append(lambda v, n=node["maxLength"]: not text(v) or len(v) <= n)
    if "pattern" in node:
        checks.append(lambda v, p=re.compile(node["pattern"]): not text(v) or bool(p.search(v)))
    if "enum" in node:
        checks.append(lambda v, options=node["enum"]: text(v) and v in options)
    if "minimum" in node:
        checks.append(lambda v, n=node["minimum"]: not number(v) or v >= n)
    if "maximum" in node:
        checks.append(lambda v, n=node["maximum"]: not number(v) or v <= n)
    required = tuple(node.get("required", ()))
    properties = {k: compile_schema(v) for k, v in node.get("properties", {}).items()}
    closed = node.get("additionalProperties") is False
    if required or properties or closed:

        def object_ok(v: Any) -> bool:
            if not isinstance(v, dict):
                return True
            if any(key not in v for key in required):
                return False
            if closed and any(key not in properties for key in v):
                return False
            return all(check(v[key]) for key, check in properties.items() if key in v)

        checks.append(object_ok)
    return lambda v: all(check(v) for check in checks)


class EventValidator:
    """Checks events against every known schema version; one instance serves all requests."""

    def __init__(
        self, backfill_days: int, max_line_bytes: int, schemas: dict[str, EventSchema] | None = None
    ) -> None:
        from jsonschema import Draft202012Validator

        found = schemas if schemas is not None else load_event_schemas()
        self._validators = {v: Draft202012Validator(s.document) for v, s in found.items()}
        self._fast = {v: compile_schema(s.document) for v, s in found.items()}
        self._backfill = timedelta(days=backfill_days)
        self._max_line_bytes = max_line_bytes

    def check(self, event: Any, line: bytes, received: datetime) -> Rejection | None:
        """The first rule ``event`` (serialised as ``line``) breaks, or None."""
        if len(line) > self._max_line_bytes:
            return Rejection(
                reasons.LINE_TOO_LONG,
                f"event is {len(line)} bytes; the limit is {self._max_line_bytes}",
            )
        twice = duplicate_key(event)
        if twice is not None:
            return Rejection(
                reasons.MALFORMED_JSON, f"event is not valid JSON: key {twice!r} appears twice"
            )
        if not isinstance(event, dict):
            return Rejection(reasons.NOT_AN_OBJECT, "event is JSON but not an object")
        version = event.get("schema_version", DEFAULT_SCHEMA_VERSION)
        validator = self._validators.get(version) if isinstance(version, str) else None
        if validator is None:
            known = ", ".join(sorted(self._validators))
            return Rejection(
                reasons.UNKNOWN_SCHEMA_VERSION, f"schema_version: {version!r} is not one of {known}"
            )
        if not self._fast[version](event):
            error = _first_error(validator, event)
            if error is not None:
                return error
        return _check_quantity(event.get("quantity")) or self._check_time(
            event["timestamp"], received
        )

    def _check_time(self, text: str, received: datetime) -> Rejection | None:
        stamp = text.strip().upper()
        if re.match(ISO_WITHOUT_OFFSET, stamp):
            return Rejection(
                reasons.TIMESTAMP_WITHOUT_OFFSET, f"timestamp: {stamp} has no offset; add Z"
            )
        instant = _instant(stamp) if re.match(ISO_WITH_OFFSET, stamp) else None
        if instant is None:
            return Rejection(reasons.INVALID_TIMESTAMP, f"timestamp: {stamp} is not ISO 8601")
        if instant < received - self._backfill:
            return Rejection(
                reasons.TOO_OLD,
                f"timestamp is more than {self._backfill.days} days before receipt",
            )
        return None


def _first_error(validator, event: dict) -> Rejection | None:
    from jsonschema.exceptions import best_match

    error = best_match(validator.iter_errors(event))
    if error is None:
        return None
    where = ".".join(str(part) for part in error.absolute_path) or "event"
    return Rejection(
        _SCHEMA_REASONS.get(str(error.validator), reasons.INVALID_VALUE),
        f"{where}: {error.message}",
    )


def _check_quantity(value: Any) -> Rejection | None:
    if value is None:  # absent: 1 (a JSON null is refused by the schema's type)
        return None
    if isinstance(value, JsonNumber) and "e" in value.literal.lower():
        return Rejection(reasons.INVALID_QUANTITY, exponent_detail(value.literal))
    text = value.strip() if isinstance(value, str) else str(value)
    try:
        number = Decimal(text) if re.match(DECIMAL_TEXT, text) else None
    except InvalidOperation:
        number = None
    # adjusted(): the power of ten of the first digit, read without arithmetic (which
    # overflows on "1e999999999999")
    if number is None or not number.is_finite() or number.adjusted() >= _INTEGER_DIGITS:
        return Rejection(reasons.INVALID_QUANTITY, f"quantity: {text} is not a decimal number")
    if fraction_digits(number) > 9:
        return Rejection(reasons.INVALID_QUANTITY, f"quantity: {text} has more than 9 decimals")
    if number < 0:
        return Rejection(reasons.NEGATIVE_QUANTITY, f"quantity: {text} is negative")
    return None


def fraction_digits(number: Decimal) -> int:
    """Decimal places ``number`` needs (1.50 → 1, 1e-12 → 12, 1200 → 0), without rounding."""
    _, digits, exponent = number.as_tuple()
    trailing = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -(exponent + trailing)) if any(digits) else 0


_MAX_OFFSET = timedelta(hours=18)  # the widest UTC offset Spark's timestamps (Java) accept
_OFFSET_MINUTES = re.compile(r"[+-][0-9]{2}:?([0-9]{2})$")


def _instant(stamp: str) -> datetime | None:
    """The instant of a timestamp that matched ``ISO_WITH_OFFSET`` (nanoseconds cut to µs),
    or None where bronze's reader finds none (Python accepts offsets up to ±23:59)."""
    minutes = _OFFSET_MINUTES.search(stamp)
    if minutes and int(minutes.group(1)) > 59:  # Python reads +05:75 as 6 h 15 min
        return None
    normal = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), stamp, count=1)
    normal = normal.replace("Z", "+00:00")
    try:
        instant = datetime.fromisoformat(normal)
    except ValueError:
        return None
    offset = instant.utcoffset()
    if offset is None or abs(offset) > _MAX_OFFSET:
        return None
    return instant
