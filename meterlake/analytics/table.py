"""Rows as an aligned text table, for the terminal."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any


def cell(value: Any) -> str:
    """A value as text: decimals plainly (``12.5``, never ``1.25E+1``), instants in ISO."""
    if value is None:
        return "NULL"
    if isinstance(value, Decimal):
        text = format(value, "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)


def text_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Header, rule and one line per row; numbers right-aligned."""
    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    numbers = (int, float, Decimal)
    numeric = [
        bool(rows) and all(isinstance(r[i], numbers) for r in rows if r[i] is not None)
        for i in range(len(columns))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return [line(columns), line(["-" * w for w in widths]), *(line(r) for r in cells)]
