"""Server mode's client half: ``meterlake --server URL <command>`` sends the command line
to ``POST /v1/cli`` with the caller's key and prints what the command printed there. The
caller's machine needs the key and nothing else: no warehouse credentials, no JVM."""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Any

EX_UNAVAILABLE = 69  # sysexits: the server could not be reached


def call_server(server: str, key: str | None, argv: list[str], out: str | None) -> int:
    """The client half: send ``argv`` to ``server``, print what the command printed, write
    its ``--out`` file to ``out``; returns the command's exit code."""
    import httpx

    if not key:
        print("meterlake: error: server mode needs a key: set METERLAKE_KEY", file=sys.stderr)
        return 4
    url = f"{server.rstrip('/')}/v1/cli"
    try:
        response = httpx.post(
            url, json={"argv": argv}, headers={"Authorization": f"Bearer {key}"}, timeout=None
        )
    except httpx.HTTPError as exc:
        print(f"meterlake: error: server {server} unreachable: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    if response.status_code != 200:
        message = _error_of(response)
        print(f"meterlake: error: server: {message}", file=sys.stderr)
        return 4 if response.status_code in (401, 403) else EX_UNAVAILABLE
    result = response.json()
    sys.stdout.write(result["stdout"])
    sys.stderr.write(result["stderr"])
    if out and result["out"] is not None:
        Path(out).write_bytes(base64.b64decode(result["out"]))
    return int(result["exit_code"])


def _error_of(response: Any) -> str:
    try:
        return str(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"
