"""Where a data subject's identifier may be, field by field, in a raw event line.

Erasure must touch the subject and nothing else. A user id is erased where it is a user
id: the ``user_id`` field, and any string value inside the free-form fields (properties,
unknown fields an event schema keeps in ``extra``). The structured fields that bill and
identify events (`PROTECTED`: customer, event id, type, time, quantity, dimensions) are
never touched, even when another user's customer id happens to equal the erased user id,
so a replay from landing bills exactly what it billed before. A customer id is erased in
the ``customer_id`` field only (`CUSTOMER`), never in a user's fields that hold the same
value.

Lines are rewritten by splicing string tokens, never by re-serialising: every other byte
of the line (numbers as written, key order, spacing) stays as it was, and a token is
compared decoded, so ``"m\\u00fcller"`` and ``"müller"`` are the same user.
"""

from __future__ import annotations

import json
import re

# Top-level fields whose values are never a user's data to erase.
PROTECTED = frozenset(
    {
        "event_id", "customer_id", "event_type", "timestamp", "quantity", "resource_id",
        "session_id", "region", "schema_version", "sdk", "tenant_id",
    }
)  # fmt: skip

USER, CUSTOMER = "user", "customer"  # the kinds of subject, by the field each is named in

_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\]:,]|[^\s{}\[\]:,"]+', re.DOTALL)


def quoted_forms(value: str) -> tuple[str, str]:
    """``value`` as a JSON string token, ASCII-escaped and as UTF-8 (how Spark writes it)."""
    return json.dumps(value), json.dumps(value, ensure_ascii=False)


def erase_in_line(line: bytes, subject: str, pseudonym: str, kind: str = USER) -> bytes:
    """``line`` with ``subject`` replaced by ``pseudonym`` where it is the subject's (module
    docstring). A line that is not a JSON object (a quarantined malformed one) has no
    fields: there the subject is replaced wherever it is a whole JSON string."""
    try:
        return _splice(line, subject, pseudonym, kind)
    except ValueError:
        for form in quoted_forms(subject):
            line = line.replace(form.encode(), json.dumps(pseudonym).encode())
        return line


def holds_subject(line: bytes, subject: str, kind: str = USER) -> bool:
    """Whether `erase_in_line` would change ``line``."""
    return erase_in_line(line, subject, "\x00", kind) != line


def _erasable(kind: str, top_key: str | None, depth: int) -> bool:
    """Whether a string value under ``top_key`` (at ``depth``) is where ``kind`` is named."""
    if kind == CUSTOMER:
        return depth == 1 and top_key == "customer_id"
    return top_key not in PROTECTED  # user_id, properties, extra


def _splice(line: bytes, subject: str, pseudonym: str, kind: str) -> bytes:
    """Walk the line's tokens keeping the top-level key each value is under."""
    out, last, depth = [], 0, 0
    top_key: str | None = None
    expecting_key = False  # at depth 1, the next string is a key
    replacement = json.dumps(pseudonym).encode()
    saw_object = False
    for match in _TOKEN.finditer(line):
        token = match.group()
        if token in (b"{", b"["):
            if depth == 0 and token != b"{":
                raise ValueError("not an object")
            depth += 1
            saw_object = True
            expecting_key = depth == 1 and token == b"{"
        elif token in (b"}", b"]"):
            depth -= 1
        elif token == b",":
            expecting_key = depth == 1
        elif token == b":":
            expecting_key = False
        elif token.startswith(b'"'):
            if depth == 0:
                raise ValueError("not an object")
            value = json.loads(token)
            if depth == 1 and expecting_key:
                top_key = value
                continue
            if value == subject and _erasable(kind, top_key, depth):
                out.append(line[last : match.start()])
                out.append(replacement)
                last = match.end()
    if not saw_object or depth != 0:
        raise ValueError("not a whole object")
    out.append(line[last:])
    return b"".join(out)
