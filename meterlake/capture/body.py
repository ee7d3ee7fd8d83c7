"""Request bodies: one event or ``{"events": [...]}`` → events and their landing lines.

Numbers are kept as written (parsed to `JsonNumber`, a `Decimal` that remembers its text,
and written back as that text), so ``"quantity": 0.1`` or a 30-digit quantity lands
exactly as the client sent it; a float round trip would change money. Each event becomes
one compact JSON line.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any


class BadBody(ValueError):
    """The body is not JSON, or not an event or a batch of events (HTTP 400)."""


class DuplicateKeys(dict):
    """A JSON object that named ``key`` more than once. Bronze's JSON reader refuses such a
    line (``malformed_json``), so the API refuses the event too, rather than keeping
    whichever value Python's reader happened to keep."""

    key: str = ""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    built = dict(pairs)
    if len(built) == len(pairs):
        return built
    seen: set[str] = set()
    twice = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
    marked = DuplicateKeys(built)
    marked.key = twice
    return marked


def duplicate_key(value: Any) -> str | None:
    """The first key named twice in any object inside ``value``, or None."""
    if isinstance(value, DuplicateKeys):
        return value.key
    children = (
        value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    )
    for child in children:
        found = duplicate_key(child)
        if found is not None:
            return found
    return None


def _no_constants(name: str) -> Any:
    raise BadBody(f"body is not valid JSON: {name} is not a JSON value")


MAX_DEPTH = 64  # arrays and objects inside each other; an event needs 3 or 4
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')  # unrolled: 2.7x faster than (?:a|b)*
_BRACKET = re.compile(rb"[\[\]{}]")
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
_INNERMOST = re.compile(rb"\[\]|\{\}")  # an empty array or object, once all else is gone


def nesting_depth(body: bytes) -> int:
    """How deep arrays and objects nest in ``body`` (strings skipped), one bracket at a
    time: exact for any text, and slow (a Python step per bracket)."""
    depth = deepest = 0
    for bracket in _BRACKET.finditer(_STRING.sub(b'""', body)):
        depth += 1 if bracket.group() in b"[{" else -1
        deepest = max(deepest, depth)
    return deepest


def too_deep(body: bytes) -> bool:
    """``body`` nests arrays and objects more than `MAX_DEPTH` levels deep, found before
    parsing (Python's reader recurses once per level and fails past about 1,000).

    Each pass removes the innermost level, in C, so a batch of flat events costs three or
    four passes (2.6 ms for 1,000 events, most of it removing the strings, against 4.5 ms
    for `nesting_depth`); only a body
    still holding brackets after `MAX_DEPTH` passes (too deep, or unbalanced, which the
    JSON reader then names) is measured exactly."""
    brackets = _NOT_BRACKET.sub(b"", _STRING.sub(b"", body))
    for _ in range(MAX_DEPTH):
        if not brackets:
            return False
        brackets = _INNERMOST.sub(b"", brackets)
    return bool(brackets) and nesting_depth(body) > MAX_DEPTH


def _integer(text: str) -> int | JsonNumber:
    """Python refuses integers over 4,300 digits; such a quantity is one event's error."""
    return int(text) if len(text) <= 4000 else JsonNumber(text)


def parse_body(body: bytes) -> list[Any]:
    """The events a request carries (each still unchecked: bad ones are reported one by one)."""
    if not body.strip():
        raise BadBody('body is empty; send one event or {"events": [...]}')
    if too_deep(body):
        raise BadBody(f"body nests arrays and objects more than {MAX_DEPTH} levels deep")
    try:
        document = json.loads(
            body,
            parse_float=JsonNumber,
            parse_int=_integer,
            parse_constant=_no_constants,
            object_pairs_hook=_object,
        )
    except (ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, BadBody):
            raise
        raise BadBody(f"body is not valid JSON: {exc}") from None
    if isinstance(document, dict) and "events" in document:
        events = document["events"]
        if (
            set(document) != {"events"}
            or not isinstance(events, list)
            or (isinstance(document, DuplicateKeys))
        ):
            raise BadBody('a batch is {"events": [...]} with nothing else')
        if not events:
            raise BadBody("the batch holds no events")
        return events
    if isinstance(document, dict):
        return [document]
    raise BadBody('body must be one event (a JSON object) or {"events": [...]}')


class JsonNumber(Decimal):
    """A JSON number with a fraction or an exponent, and the text it was written as (bronze
    reads the landed text, so that is what decides, e.g. whether it has an exponent)."""

    literal: str

    def __new__(cls, text: str) -> JsonNumber:
        number = super().__new__(cls, text)
        number.literal = text
        return number


class _Inexact(ValueError):
    """A number a float cannot hold exactly (the slow, exact writer takes over)."""


def _exact_float(value: Any) -> float:
    if isinstance(value, Decimal):
        as_float = float(value)
        if repr(as_float) == _text(value):  # the C encoder would write exactly this text
            return as_float
        raise _Inexact
    raise TypeError(f"{type(value).__name__} is not JSON")


def dump_line(value: Any) -> bytes:
    """``value`` as one compact JSON line (no newline), every number with its exact value.

    The C encoder writes numbers a float holds exactly (the usual case, ~7 µs an event);
    any other number sends the event through `_encode`, which writes each digit parsed.
    """
    try:
        return json.dumps(
            value, default=_exact_float, separators=(",", ":"), ensure_ascii=False
        ).encode()
    except _Inexact:
        return _encode(value).encode()


def _encode(value: Any) -> str:
    if isinstance(value, dict):
        items = (_encode(str(k)) + ":" + _encode(v) for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    if isinstance(value, Decimal):
        return _text(value)
    return json.dumps(value, ensure_ascii=False)


def _text(number: Decimal) -> str:
    return number.literal if isinstance(number, JsonNumber) else str(number)
