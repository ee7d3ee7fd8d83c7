"""Where meterlake's own data files (JSON Schemas) live."""

from __future__ import annotations

import os
from pathlib import Path


def schemas_dir() -> Path:
    """``schemas/`` of the checkout, or ``METERLAKE_SCHEMAS_DIR`` for an installed copy."""
    override = os.environ.get("METERLAKE_SCHEMAS_DIR")
    return Path(override) if override else Path(__file__).resolve().parent.parent / "schemas"
