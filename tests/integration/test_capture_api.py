"""The capture API's answers: auth, limits, malformed input, partial batches, tenants."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from meterlake.audit.access import create_key
from meterlake.config import Settings
from meterlake.ingest.progress import record_progress
from meterlake.storage import storage_for
from tests.capture_server import ApiServer, landed_lines


def event(event_id: str, customer: str = "acme", **extra) -> dict:
    return {
        "event_id": event_id,
        "customer_id": customer,
        "event_type": "api_call",
        "timestamp": "2026-11-26T01:00:00Z",
        **extra,
    }


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Iterator[tuple[ApiServer, Settings, dict[str, str]]]:
    warehouse = tmp_path_factory.mktemp("capture") / "warehouse"
    settings = Settings.load(env={}).with_warehouse(str(warehouse))
    keys = {
        name: create_key(settings, tenant, role)[0]
        for name, tenant, role in (
            ("acme", "acme", "ingest"),
            ("globex", "globex", "ingest"),
            ("limited", "limited", "ingest"),
            ("analyst", "acme", "analyst"),
            ("auditor", "*", "auditor"),
            ("acme-finance", "acme", "finance"),
        )
    }
    server = ApiServer(
        warehouse,
        METERLAKE_API_MAX_BYTES="65536",
        METERLAKE_API_MAX_EVENTS="200",
        METERLAKE_API_RATE="1",
        METERLAKE_API_BURST="200",
    ).start()
    yield server, settings, keys
    server.stop()


def post(server: ApiServer, key: str | None, body, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{server.url}/v1/events", content=content, headers=headers, **kwargs)


def test_auth(api) -> None:
    server, _, keys = api
    missing = post(server, None, event("a1"))
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert post(server, "mlk_not-a-key", event("a1")).status_code == 401
    refused = post(server, keys["analyst"], event("a1"))
    assert refused.status_code == 403 and "may not events.send" in refused.json()["error"]


def test_malformed_and_oversize(api) -> None:
    server, settings, keys = api
    key = keys["acme"]
    for body in (b"", b"{not json", b"[1, 2]", b'{"events": 5}', b'{"events": []}', b"NaN"):
        answer = post(server, key, body)
        assert answer.status_code == 400, (body, answer.text)
        assert answer.json()["error"]
    too_big = post(
        server, key, {"events": [event(f"big{i}", properties={"x": "y" * 400}) for i in range(200)]}
    )
    assert too_big.status_code == 413 and "65536" in too_big.json()["error"]
    too_many = post(server, key, {"events": [event(f"many{i}") for i in range(201)]})
    assert too_many.status_code == 413 and "201 events" in too_many.json()["error"]
    assert not landed_lines(settings.warehouse, "acme")  # nothing of the above landed


def test_partial_batch_lands_the_valid_events_and_explains_the_rest(api) -> None:
    server, settings, keys = api
    batch = [
        event("p1", quantity="0.000000001"),
        event("p2", quantity=-1),
        event("p3", timestamp="2026-11-26T01:00:00"),
        event("p4", tenant_id="globex"),  # the tenant is the key's, never the body's
        event("p5", quantity="QTY"),
        "not an object",
        event("p1", quantity="0.000000001"),  # the same event twice in one request
    ]
    # a number with more digits than a float holds, written as the client wrote it
    body = json.dumps({"events": batch}).replace('"QTY"', "12345678901234567890.123456789")
    answer = post(server, keys["acme"], body.encode())
    assert answer.status_code == 202, answer.text
    results = answer.json()["results"]
    assert [r["status"] for r in results] == [
        "accepted",
        "rejected",
        "rejected",
        "rejected",
        "accepted",
        "rejected",
        "duplicate",
    ]
    assert [r.get("reason") for r in results if r["status"] == "rejected"] == [
        "negative_quantity",
        "timestamp_without_offset",
        "unknown_field",
        "not_an_object",
    ]
    landed = [json.loads(line) for line in landed_lines(settings.warehouse, "acme")]
    assert [e["event_id"] for e in landed] == ["p1", "p5"]
    raw = b"\n".join(landed_lines(settings.warehouse, "acme"))
    assert b'"quantity":12345678901234567890.123456789' in raw  # the digits as sent

    again = post(server, keys["acme"], {"events": [event("p1", quantity="0.000000001")]})
    assert again.status_code == 202 and again.json()["results"][0]["status"] == "duplicate"
    changed = post(server, keys["acme"], event("p1", quantity="2"))
    assert changed.status_code == 422
    assert changed.json()["results"][0]["reason"] == "duplicate_conflict"
    assert len(landed_lines(settings.warehouse, "acme")) == 2


def test_tenants_do_not_see_each_other(api) -> None:
    server, settings, keys = api
    assert post(server, keys["globex"], event("g1", customer="initech")).status_code == 202
    assert [json.loads(x)["event_id"] for x in landed_lines(settings.warehouse, "globex")] == ["g1"]
    assert all(json.loads(x)["event_id"] != "g1" for x in landed_lines(settings.warehouse, "acme"))
    view = {"customers": {"initech": {"customer_id": "initech", "status": "estimate"}}}
    storage_for(settings).write("serving/usage/globex.json", json.dumps(view).encode())
    auth = {"Authorization": f"Bearer {keys['globex']}"}
    mine = httpx.get(f"{server.url}/v1/usage", params={"customer_id": "initech"}, headers=auth)
    assert mine.status_code == 200 and mine.json()["status"] == "estimate"
    acme = {"Authorization": f"Bearer {keys['acme']}"}
    other = httpx.get(f"{server.url}/v1/usage", params={"customer_id": "initech"}, headers=acme)
    assert other.status_code == 404
    forced = httpx.get(
        f"{server.url}/v1/usage",
        params={"customer_id": "initech", "tenant": "globex"},
        headers=acme,
    )
    assert forced.status_code == 403


def test_rate_limit_answers_429_with_retry_after(api) -> None:
    server, _, keys = api
    full = {"events": [event(f"r{i}", customer="c") for i in range(200)]}
    assert post(server, keys["limited"], full).status_code == 202  # the whole burst
    # 50 more events need 50 s of refill at 1 event/s, however slow this machine is
    more = {"events": [event(f"r-next{i}", customer="c") for i in range(50)]}
    limited = post(server, keys["limited"], more)
    assert limited.status_code == 429 and 40 <= int(limited.headers["retry-after"]) <= 50
    other_tenant = post(server, keys["globex"], event("g2", customer="initech"))
    assert other_tenant.status_code == 202  # one tenant's burst does not throttle another


def test_metrics_need_an_all_tenant_key_and_name_no_tenant_and_health_says_only_up(api) -> None:
    server, _, keys = api

    def scrape(key: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.get(f"{server.url}/metrics", headers=headers)

    assert scrape(None).status_code == 401
    assert scrape(keys["acme"]).status_code == 403  # ingest may not read status
    scoped = scrape(keys["acme-finance"])
    assert scoped.status_code == 403 and "spans every tenant" in scoped.json()["error"]
    text = scrape(keys["auditor"]).text
    assert 'meterlake_events_rejected_total{reason="negative_quantity"} 1' in text
    assert 'meterlake_api_requests_total{status="401"}' in text
    assert "meterlake_landing_backlog_events" in text and "meterlake_bronze_lag_seconds" in text
    assert "tenant=" not in text and "acme" not in text and "globex" not in text
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    schema = httpx.get(f"{server.url}/openapi.json").json()
    body = schema["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    assert "event_id" in body["schema"]["oneOf"][0]["properties"]
    assert set(schema["paths"]["/v1/events"]["post"]["responses"]) >= {"202", "413", "429", "503"}


def test_backpressure_answers_503_until_the_stream_catches_up(tmp_path: Path) -> None:
    settings = Settings.load(env={}).with_warehouse(str(tmp_path / "warehouse"))
    key, _ = create_key(settings, "acme", "ingest")
    server = ApiServer(settings.warehouse, METERLAKE_API_MAX_BACKLOG="3").start()
    try:
        batch = {"events": [event(f"b{i}") for i in range(4)]}
        assert post(server, key, batch).status_code == 202  # backlog now 4 > 3
        refused = post(server, key, event("b-next"))
        assert refused.status_code == 503 and refused.headers["retry-after"]
        assert "backlog of 4 events" in refused.json()["error"]
        record_progress(settings, settings.now())  # what the stream writes after a batch
        deadline = httpx.Timeout(10)
        for _ in range(30):
            answer = post(server, key, event("b-next"), timeout=deadline)
            if answer.status_code == 202:
                break
            time.sleep(0.2)
        assert answer.status_code == 202
    finally:
        server.stop()


def test_concurrent_same_id_different_payloads_get_one_verdict(api) -> None:
    """20 pairs of requests, each pair one event_id with two payloads sent at the same
    moment: one is accepted and the other refused as duplicate_conflict, and only the
    accepted one is landed (today's main: most pairs both accepted, bronze keeping either)."""
    from concurrent.futures import ThreadPoolExecutor

    server, settings, keys = api
    key = keys["globex"]
    with ThreadPoolExecutor(2) as pool:
        for n in range(20):
            gate = threading.Barrier(2)

            def send(quantity: int, n=n, gate=gate) -> httpx.Response:
                gate.wait()
                return post(server, key, event(f"pair{n}", "globex", quantity=quantity))

            answers = list(pool.map(send, (1, 2)))
            results = [a.json()["results"][0] for a in answers]
            statuses = sorted(r["status"] for r in results)
            assert statuses == ["accepted", "rejected"], results
            refused = next(r for r in results if r["status"] == "rejected")
            assert refused["reason"] == "duplicate_conflict"
            winner = next(
                q for q, r in zip((1, 2), results, strict=True) if r["status"] == "accepted"
            )
            landed = [json.loads(x) for x in landed_lines(settings.warehouse, "globex")]
            mine = [e for e in landed if e["event_id"] == f"pair{n}"]
            assert [e["quantity"] for e in mine] == [winner]


def test_duplicate_keys_and_impossible_offsets_are_refused_as_bronze_refuses_them(api) -> None:
    server, _, keys = api
    body = (
        b'{"events": [{"event_id": "dk1", "customer_id": "acme", "event_type": "api_call",'
        b' "timestamp": "2026-11-26T01:00:00Z", "quantity": 1, "quantity": 9},'
        + json.dumps(event("off1", timestamp="2026-11-26T01:00:00-23:59")).encode()
        + b", "
        + json.dumps(event("ok1")).encode()
        + b"]}"
    )
    answer = post(server, keys["acme"], body)
    assert answer.status_code == 202
    results = answer.json()["results"]
    assert [(r["status"], r.get("reason")) for r in results] == [
        ("rejected", "malformed_json"),
        ("rejected", "invalid_timestamp"),
        ("accepted", None),
    ]
    assert "'quantity' appears twice" in results[0]["detail"]


def test_made_up_keys_cost_a_bounded_number_of_lookups_per_address(tmp_path) -> None:
    warehouse = tmp_path / "warehouse"
    settings = Settings.load(env={}).with_warehouse(str(warehouse))
    key = create_key(settings, "acme", "ingest")[0]
    server = ApiServer(warehouse, METERLAKE_API_KEY_LOOKUPS="2").start()  # burst of 10
    try:
        assert post(server, key, event("known-1")).status_code == 202  # now cached
        began = time.monotonic()
        answers = [post(server, f"mlk_made-up-{i}", event(f"x{i}")) for i in range(40)]
        elapsed = time.monotonic() - began
        statuses = [a.status_code for a in answers]
        assert set(statuses) == {401, 429}
        assert statuses.count(401) <= 10 + 2 * elapsed + 1  # the burst, then 2 per second
        limited = next(a for a in answers if a.status_code == 429)
        assert int(limited.headers["retry-after"]) >= 1 and "unknown keys" in limited.text
        assert post(server, key, event("known-2")).status_code == 202  # a cached key: no lookup
    finally:
        server.stop()


def _trickle(port: int, head: bytes, drip: bytes, seconds: float) -> bytes:
    """Send ``head``, then a byte of ``drip`` every 0.25 s for up to ``seconds``; what the
    server answered before it closed (b"" if it never did)."""
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(head)
        conn.settimeout(0.25)
        deadline, answer = time.monotonic() + seconds, b""
        for byte in drip:
            if time.monotonic() > deadline:
                break
            try:
                conn.sendall(bytes([byte]))
                answer += conn.recv(4096)
                if answer:
                    return answer
            except TimeoutError:
                continue
            except OSError:
                return answer
        return answer


def test_slow_clients_are_cut_off_while_others_keep_their_latency(tmp_path) -> None:
    warehouse = tmp_path / "warehouse"
    settings = Settings.load(env={}).with_warehouse(str(warehouse))
    key = create_key(settings, "acme", "ingest")[0]
    server = ApiServer(
        warehouse, METERLAKE_API_HEADER_TIMEOUT_SECONDS="2", METERLAKE_API_BODY_TIMEOUT_SECONDS="3"
    ).start()
    head = b"POST /v1/events HTTP/1.1\r\nhost: x\r\n"
    body_head = head + f"authorization: Bearer {key}\r\ncontent-length: 500\r\n\r\n".encode()
    try:
        with ThreadPoolExecutor(24) as pool:
            began = time.monotonic()
            headers = [pool.submit(_trickle, server.port, head, b"x" * 400, 20) for _ in range(12)]
            bodies = [
                pool.submit(_trickle, server.port, body_head, b"{" * 400, 20) for _ in range(8)
            ]
            time.sleep(0.5)
            latency = []
            for i in range(5):
                sent = time.monotonic()
                assert post(server, key, event(f"fast{i}")).status_code == 202
                latency.append(time.monotonic() - sent)
            cut = [f.result() for f in headers + bodies]
            took = time.monotonic() - began
        assert all(b" 408 " in answer.split(b"\r\n", 1)[0] for answer in cut), cut
        assert took < 8  # every trickler answered within its timeout plus scheduling
        assert max(latency) < 1.5, latency
    finally:
        server.stop()
