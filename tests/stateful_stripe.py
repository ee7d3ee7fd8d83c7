"""A small Stripe that remembers: the objects `meterlake.integrations.stripe_sync` creates,
its idempotency keys (which a test can make it forget, as Stripe does after 24 hours),
and a hook that runs after each create, before the answer goes out (where a test kills
the client).

stripe-mock, Stripe's own mock server, answers every request from fixtures and keeps no
state, so it cannot show that a resumed sync creates nothing twice; this server exists for
exactly that, and speaks only the few endpoints the sync uses, as the official ``stripe``
client sends them (form-encoded bodies, nested ``a[b]`` keys, search queries on
metadata).
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count
from typing import Any
from urllib.parse import parse_qsl, urlparse

_CLAUSE = re.compile(r"metadata\['([^']+)'\]:'([^']*)'")


def _nested(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """``metadata[a]=1&period[start]=2`` → ``{"metadata": {"a": "1"}, "period": {...}}``."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+", key)
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


class StatefulStripe:
    def __init__(self, after_create: Callable[[int, str], None] | None = None) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.meter_events: dict[str, dict[str, Any]] = {}
        self.keys: dict[str, tuple[int, bytes]] = {}
        self.creates: Counter[str] = Counter()  # path → creates performed
        self.after_create = after_create
        self._ids = count(1)
        self._lock = threading.Lock()
        stripe = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = _nested(parse_qsl(url.query))
                status, body = stripe.get(url.path, query)
                self._answer(status, body)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                params = _nested(parse_qsl(raw.decode()))
                key = self.headers.get("Idempotency-Key")
                with stripe._lock:
                    if key and key in stripe.keys:
                        status, data = stripe.keys[key]
                        self._answer(status, json.loads(data))
                        return
                    status, body, created = stripe.post(urlparse(self.path).path, params)
                    if key:
                        stripe.keys[key] = (status, json.dumps(body).encode())
                if created and stripe.after_create is not None:
                    stripe.after_create(sum(stripe.creates.values()), self.path)
                self._answer(status, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def forget_idempotency_keys(self) -> None:
        """What Stripe does to keys older than 24 hours."""
        with self._lock:
            self.keys.clear()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects.values() if o["object"] == kind]

    def _new(self, prefix: str, kind: str, **fields: Any) -> dict[str, Any]:
        made = {"id": f"{prefix}_{next(self._ids)}", "object": kind, "livemode": False, **fields}
        self.objects[made["id"]] = made
        return made

    def post(self, path: str, params: dict[str, Any]) -> tuple[int, dict[str, Any], bool]:
        metadata = params.get("metadata", {})
        if path == "/v1/customers":
            made = self._new("cus", "customer", name=params.get("name"), metadata=metadata)
        elif path == "/v1/invoices":
            made = self._new(
                "in", "invoice", customer=params["customer"], currency=params["currency"],
                status="draft", total=0, metadata=metadata,
            )  # fmt: skip
        elif path == "/v1/invoiceitems":
            invoice = self.objects[params["invoice"]]
            amount = int(params["amount"])
            invoice["total"] += amount
            made = self._new(
                "ii", "invoiceitem", invoice=invoice["id"], amount=amount,
                currency=params["currency"], metadata=metadata,
            )  # fmt: skip
        elif path.startswith("/v1/invoices/") and path.endswith("/finalize"):
            invoice = self.objects[path.split("/")[3]]
            if invoice["status"] != "draft":
                return (
                    400,
                    _error("invoice_not_editable", "This invoice is already finalized"),
                    False,
                )
            invoice["status"] = "open"
            self.creates[path.rsplit("/", 2)[0] + "/finalize"] += 1
            return 200, invoice, True
        elif path == "/v1/billing/meter_events":
            identifier = params["identifier"]
            if identifier in self.meter_events:
                message = f"An event already exists with identifier {identifier}."
                return 400, _error("resource_already_exists", message), False
            made = {"object": "billing.meter_event", **params}
            self.meter_events[identifier] = made
        else:
            return 404, _error("resource_missing", f"no route {path}"), False
        self.creates[path] += 1
        return 200, made, True

    def get(self, path: str, query: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        for kind, route in (
            ("customer", "/v1/customers/search"),
            ("invoice", "/v1/invoices/search"),
        ):
            if path == route:
                wanted = dict(_CLAUSE.findall(query.get("query", "")))
                found = [o for o in self.of(kind) if _holds(o["metadata"], wanted)]
                return 200, {"object": "search_result", "data": found, "has_more": False,
                             "next_page": None, "url": route}  # fmt: skip
        if path == "/v1/invoiceitems":
            found = [i for i in self.of("invoiceitem") if i["invoice"] == query.get("invoice")]
            return 200, {"object": "list", "data": found, "has_more": False, "url": path}
        if path.startswith("/v1/invoices/") and path.split("/")[3] in self.objects:
            return 200, self.objects[path.split("/")[3]]
        return 404, _error("resource_missing", f"no such object {path}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _holds(metadata: dict[str, str], wanted: dict[str, str]) -> bool:
    return all(metadata.get(k) == v for k, v in wanted.items())


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"type": "invalid_request_error", "code": code, "message": message}}
