"""WSGI and ASGI middleware record exactly one usage event per request, through the SDK
and a real capture API."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

import httpx
import pytest

from meterlake.audit.access import create_key
from meterlake.config import Settings
from meterlake.sdk import Client
from meterlake.sdk.middleware import AsgiUsageMiddleware, WsgiUsageMiddleware
from tests.capture_server import ApiServer, free_port, landed_lines


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[Client, str]]:
    settings = Settings.load(env={}).with_warehouse(str(tmp_path / "warehouse"))
    key, _ = create_key(settings, "shop", "ingest")
    server = ApiServer(settings.warehouse).start()
    sdk = Client(key, server.url, spool_dir=tmp_path / "spool", flush_interval=0.2)
    try:
        yield sdk, settings.warehouse
    finally:
        sdk.close()
        server.stop()


def recorded(warehouse: str) -> Counter:
    events = [json.loads(line) for line in landed_lines(warehouse, "shop")]
    return Counter(
        (e["customer_id"], e["properties"]["route"], e["properties"]["status"]) for e in events
    )


def exercise(url: str) -> None:
    for customer in ("c1", "c2", "c1"):
        assert httpx.get(f"{url}/items/7", headers={"X-Customer-Id": customer}).status_code == 200
    assert httpx.get(f"{url}/missing", headers={"X-Customer-Id": "c2"}).status_code == 404
    assert httpx.get(f"{url}/items/7").status_code == 200  # no customer: not recorded


def test_wsgi_middleware_records_one_event_per_request(client) -> None:
    sdk, warehouse = client

    def app(environ, start_response):
        found = environ["PATH_INFO"].startswith("/items/")
        start_response("200 OK" if found else "404 Not Found", [("Content-Type", "text/plain")])
        return [b"item" if found else b"no"]

    wrapped = WsgiUsageMiddleware(app, sdk)

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args) -> None:
            pass

    httpd = make_server("127.0.0.1", free_port(), wrapped, handler_class=Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        exercise(f"http://127.0.0.1:{httpd.server_port}")
    finally:
        httpd.shutdown()
    assert sdk.flush(timeout=30)
    assert recorded(warehouse) == {
        ("c1", "/items/7", 200): 2,
        ("c2", "/items/7", 200): 1,
        ("c2", "/missing", 404): 1,
    }
    assert (wrapped.recorded, wrapped.skipped) == (4, 1)


def test_asgi_middleware_records_one_event_per_request_with_the_route_template(client) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    sdk, warehouse = client

    async def item(request):
        return PlainTextResponse(f"item {request.path_params['item_id']}")

    app = Starlette(routes=[Route("/items/{item_id}", item)])
    wrapped = AsgiUsageMiddleware(app, sdk)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(wrapped, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            thread.join(0.05)
        exercise(f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(10)
    assert sdk.flush(timeout=30)
    assert recorded(warehouse) == {
        ("c1", "/items/{item_id}", 200): 2,
        ("c2", "/items/{item_id}", 200): 1,
        ("c2", "/missing", 404): 1,
    }
    assert (wrapped.recorded, wrapped.skipped) == (4, 1)
