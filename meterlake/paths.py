"""Where meterlake's own data files (JSON Schemas, expectation suites) live."""

from __future__ import annotations

import os
from pathlib import Path


def schemas_dir() -> Path:
    """``schemas/`` of the checkout, or ``METERLAKE_SCHEMAS_DIR`` for an installed copy."""
    override = os.environ.get("METERLAKE_SCHEMAS_DIR")
    return Path(override) if override else Path(__file__).resolve().parent.parent / "schemas"


def expectations_dir() -> Path:
    """``expectations/`` of the checkout (Great Expectations suites, one folder per layer),
    or ``METERLAKE_EXPECTATIONS_DIR``."""
    override = os.environ.get("METERLAKE_EXPECTATIONS_DIR")
    root = Path(__file__).resolve().parent.parent
    return Path(override) if override else root / "expectations"
