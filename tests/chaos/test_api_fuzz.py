"""Schema-driven fuzzing of the running API (schemathesis on its own OpenAPI document):
``size.requests`` generated requests, valid and invalid (schemathesis' positive and
negative modes), against a real ``meterlake serve``. No 5xx, the server stays up, every
rejection says why, and what was accepted is exactly what landed."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings

from meterlake.audit.access import create_key
from meterlake.clock import format_instant
from meterlake.config import Settings
from tests.capture_server import ApiServer, landed_lines
from tests.chaos.conftest import Size


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Iterator[tuple[ApiServer, str]]:
    warehouse = tmp_path_factory.mktemp("fuzz") / "warehouse"
    key = create_key(Settings.load(env={}).with_warehouse(str(warehouse)), "acme", "ingest")[0]
    server = ApiServer(warehouse, METERLAKE_API_RATE="1000000", METERLAKE_API_BURST="1000000")
    yield server.start(), key
    server.stop()


def _check(response, seen: Counter, accepted: set[str]) -> None:
    """The rules every answer obeys; records what was accepted."""
    seen[response.status_code] += 1
    assert response.status_code < 500, response.text
    body = response.json() if "json" in response.headers.get("content-type", "") else None
    if 400 <= response.status_code < 500 and response.status_code != 422:
        assert body and str(body.get("error", "")).strip(), response.text
    if response.status_code in (202, 422):
        for result in body["results"]:
            if result["status"] == "rejected":
                assert result["reason"] and result["detail"], result
            elif result["status"] == "accepted":
                accepted.add(result["event_id"])


def test_generated_requests_get_no_5xx_and_every_rejection_has_a_reason(
    api, size: Size, tmp_path: Path
) -> None:
    import schemathesis
    from schemathesis import GenerationMode

    server, key = api
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    cases = schema.as_strategy(GenerationMode.POSITIVE) | schema.as_strategy(
        GenerationMode.NEGATIVE
    )
    seen: Counter[int] = Counter()
    accepted: set[str] = set()
    client = httpx.Client(timeout=30)

    @settings(
        max_examples=size.requests,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(cases)
    def fuzz(case) -> None:
        _recent(case.body)
        headers = {**(case.headers or {}), "Authorization": f"Bearer {key}"}
        request = case.as_transport_kwargs(base_url=server.url, headers=headers)
        response = client.request(
            request["method"],
            request["url"],
            headers=request.get("headers"),
            params=request.get("params"),
            content=_content(request),
        )
        _check(response, seen, accepted)

    fuzz()
    assert sum(seen.values()) >= size.requests
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    assert seen[202] > 0 and seen[400] + seen[422] > 0, seen
    landed = [json.loads(line) for line in landed_lines(server.warehouse, "acme")]
    assert {e["event_id"] for e in landed} == accepted
    assert len(landed) == len(accepted)  # an id accepted twice was landed once


def _recent(body) -> None:
    """Give every second generated event a timestamp of now: generated instants are nearly
    always years away (rejected as too old or ahead of the clock), and acceptance is part
    of what is fuzzed."""
    events = body.get("events") if isinstance(body, dict) else None
    for event in (events if isinstance(events, list) else [body])[::2]:
        if isinstance(event, dict) and isinstance(event.get("timestamp"), str):
            event["timestamp"] = format_instant(datetime.now(UTC))


def _content(request: dict) -> bytes | None:
    """The body as bytes, whichever way schemathesis prepared it."""
    if "json" in request:
        return json.dumps(request["json"]).encode()
    data = request.get("data") or request.get("content")
    return data.encode() if isinstance(data, str) else data
