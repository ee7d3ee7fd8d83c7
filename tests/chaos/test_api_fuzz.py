"""Schema-driven fuzzing of the running API (schemathesis on its own OpenAPI document):
``size.requests`` generated requests, valid and invalid (schemathesis' positive and
negative modes), against a real ``meterlake serve``. No 5xx, the server stays up, every
rejection says why, and what was accepted is exactly what landed."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


# Poison events, written as raw JSON text so escapes and numbers reach the server as sent:
# each is valid JSON that Python's or bronze's reader cannot hold as an event.
_EVENT = (
    '{{"event_id":"{id}","customer_id":"acme","event_type":"api_call","timestamp":"{ts}"{extra}}}'
)
POISON = {
    "huge exponent": ',"quantity":1e{n}999999999',
    "huge exponent text": ',"quantity":"-1e-{n}99999999999"',
    "huge integer": ',"quantity":{digits}',
    "surrogate": ',"properties":{{"name":"\\ud8{n:02d}"}}',
    "surrogate key": ',"properties":{{"\\udfff{n}":1}}',
    "duplicate key": ',"region":"eu","region":"us{n}"',
    "control characters": ',"properties":{{"x":"\\u0000\\u001f{n}"}}',
    "nested": ',"properties":{{"x":' + "[" * 40 + "{n}" + "]" * 40 + "}}",
}


@st.composite
def mixed_batches(draw) -> tuple[str, list[str]]:
    """A batch of valid events with poison ones among them; the valid events' ids."""
    now = format_instant(datetime.now(UTC))
    valid = [f"ok-{uuid.uuid4().hex}" for _ in range(draw(st.integers(1, 4)))]
    parts = [_EVENT.format(id=v, ts=now, extra="") for v in valid]
    for _ in range(draw(st.integers(1, 4))):
        template = POISON[draw(st.sampled_from(sorted(POISON)))]
        n = draw(st.integers(0, 99))
        extra = template.format(n=n, digits="9" * draw(st.integers(30, 6000)))
        parts.insert(
            draw(st.integers(0, len(parts))), _EVENT.format(id=f"p-{n}", ts=now, extra=extra)
        )
    return '{"events":[' + ",".join(parts) + "]}", valid


def test_poison_events_never_get_a_5xx_nor_sink_the_valid_events_beside_them(
    api, size: Size
) -> None:
    server, key = api
    headers = {"Authorization": f"Bearer {key}"}
    client = httpx.Client(timeout=30)
    sent: set[str] = set()

    @settings(max_examples=size.requests, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(mixed_batches())
    def poison(batch: tuple[str, list[str]]) -> None:
        body, valid = batch
        answer = client.post(f"{server.url}/v1/events", content=body.encode(), headers=headers)
        assert answer.status_code == 202, answer.text
        results = {r.get("event_id"): r for r in answer.json()["results"]}
        assert all(results[v]["status"] == "accepted" for v in valid), answer.text
        assert all(r["reason"] and r["detail"] for r in answer.json()["results"]
                   if r["status"] == "rejected")  # fmt: skip
        sent.update(valid)

    poison()
    deep = "[" * 65 + "]" * 65
    refused = client.post(f"{server.url}/v1/events", content=deep.encode(), headers=headers)
    assert refused.status_code == 400 and "64 levels" in refused.json()["error"]
    landed = {json.loads(line)["event_id"] for line in landed_lines(server.warehouse, "acme")}
    assert sent <= landed
