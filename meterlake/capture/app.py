"""The HTTP capture and usage API (FastAPI on uvicorn): ``meterlake serve``.

``POST /v1/events`` takes one event or ``{"events": [...]}`` with ``Authorization:
Bearer <key>``; the tenant is the key's, never the body's. Answers: 202 with a result per
event once the accepted ones are durably in landing; 422 when none could be accepted;
400 for a body that is not an event or a batch; 401 without a valid key; 403 for a key
that may not send; 413 over the size or count limit; 429 over the tenant's rate and 503
under backpressure, both with ``Retry-After``. ``GET /v1/usage``, ``/healthz``,
``/metrics``, the usage dashboard (``/dashboard``, its data at ``GET /v1/dashboard``) and
the OpenAPI schema (``/openapi.json``, ``/docs``) complete it.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse

from meterlake import __version__
from meterlake.audit.access import PERMISSIONS, AccessDenied, Principal, authorize, lookup_key
from meterlake.audit.read_spool import log_entry, spool_read
from meterlake.capture.body import BadBody, dump_line, parse_body
from meterlake.capture.limits import Backlog, RateLimits
from meterlake.capture.metrics import Metrics
from meterlake.capture.publisher import KafkaPublisher
from meterlake.capture.seen import CONFLICT, DUPLICATE, SeenEvents
from meterlake.capture.validate import EventValidator
from meterlake.capture.writer import LandingWriter
from meterlake.clock import format_instant
from meterlake.config import Settings
from meterlake.errors import ConfigError
from meterlake.ingest import reasons
from meterlake.ingest.landing import TENANT_PATTERN, LandingBatch

DASHBOARD_PAGE = Path(__file__).resolve().parents[1] / "analytics" / "dashboard.html"

# What the warehouse's storage raises when it cannot be reached (local disk or S3).
STORAGE_ERRORS: tuple[type[Exception], ...] = (OSError, BotoCoreError, ClientError)


class KeyCache:
    """Key → principal, read from the warehouse once per ``ttl`` seconds (unknown: 5 s), so
    a key revoked in the warehouse by another process is refused within ``ttl``; one
    revoked through this server (`forget`) on its next request; an expired one at once."""

    def __init__(self, settings: Settings, ttl: float = 5.0) -> None:
        self._settings = settings
        self._ttl = ttl
        self._known: dict[str, tuple[Principal | None, float]] = {}

    def forget(self) -> None:
        """Drop every cached key (after a revocation made here)."""
        self._known.clear()

    def cached(self, key: str) -> bool:
        """Known here without a storage read (a key seen within its ttl, known or not)."""
        entry = self._known.get(key)
        return entry is not None and entry[1] > time.monotonic()

    async def principal(self, key: str) -> Principal | None:
        if self.cached(key):
            known = self._known[key][0]
            return known if known is None or not known.expired() else None
        found = await asyncio.to_thread(lookup_key, self._settings, key)
        if len(self._known) >= 10_000:  # bounded: a flood of made-up keys cannot grow it
            self._known.clear()
        self._known[key] = (found, time.monotonic() + (self._ttl if found else 5.0))
        return found


@dataclass
class Outcome:
    """What one POST did: per-event results and the lines to land."""

    results: list[dict[str, Any]]
    lines: list[bytes]
    customers: list[str]  # of each line, for the Kafka record key
    ids: list[tuple[str, bytes]]


class Capture:
    """The API's state: validator, limits, writer, metrics; one per server process."""

    def __init__(self, settings: Settings) -> None:
        api = settings.api
        self.settings = settings
        self.validator = EventValidator(settings.backfill_days, settings.max_line_bytes)
        self.backlog = Backlog(settings)
        sink = settings.kafka.sink
        self.writer = LandingWriter(settings, self.backlog) if sink != "kafka" else None
        self.publisher = KafkaPublisher(settings) if sink != "landing" else None
        self.limits = RateLimits(api.rate, max(api.burst, api.max_events))
        self.seen = SeenEvents()
        self.keys = KeyCache(settings)
        # storage reads for keys not cached, per client address: a flood of made-up keys
        # costs the warehouse at most this, whatever the number of keys
        self.lookups = RateLimits(api.key_lookups, api.key_lookups * 5)
        self.metrics = Metrics()
        self.metrics.gauge(
            "meterlake_landing_backlog_events",
            "events landed by this server and not yet in bronze",
            lambda: self.backlog.state()[0],
        )
        self.metrics.gauge(
            "meterlake_bronze_lag_seconds",
            "age of the oldest event landed and not yet in bronze (0: none waiting)",
            self._bronze_lag,
        )
        self.metrics.gauge(
            "meterlake_freshness_seconds",
            "age of the newest receipt time bronze has taken in (-1: never ran)",
            self._freshness,
        )

    def _bronze_lag(self) -> float:
        _, oldest, _ = self.backlog.state()
        return 0.0 if oldest is None else (self.settings.now() - oldest).total_seconds()

    def _freshness(self) -> float:
        _, _, through = self.backlog.state()
        return -1.0 if through is None else (self.settings.now() - through).total_seconds()

    async def store(self, tenant: str, outcome: Outcome, received: datetime) -> LandingBatch | None:
        """Make the accepted lines durable in each configured sink; the landing batch
        (None when only Kafka takes them). Raises with the failing sink named."""
        batch = None
        if self.writer is not None:
            try:
                batch = await self.writer.land(tenant, outcome.lines, received)
            except Exception as exc:
                raise RuntimeError(f"landing failed: {exc}") from exc
        if self.publisher is not None:
            records = list(zip(outcome.customers, outcome.lines, strict=True))
            try:
                await self.publisher.publish(tenant, records, received)
            except Exception as exc:
                raise RuntimeError(f"publishing to Kafka failed: {exc}") from exc
        return batch

    def classify(self, tenant: str, events: list[Any], received: datetime) -> Outcome:
        """Validate each event and spot duplicates (known ids and repeats in the request)."""
        outcome = Outcome([], [], [], [])
        in_request: dict[str, bytes] = {}
        for index, event in enumerate(events):
            result: dict[str, Any] = {"index": index}
            try:
                line = dump_line(event)
            except UnicodeEncodeError as exc:  # a lone surrogate such as "\ud800"
                detail = f"a string holds {exc.object[exc.start : exc.end]!a}, not a character"
                outcome.results.append(_rejected(result, reasons.MALFORMED_JSON, detail))
                continue
            if isinstance(event, dict) and isinstance(event.get("event_id"), str):
                result["event_id"] = event["event_id"]
            rejection = self.validator.check(event, line, received)
            if rejection is not None:
                outcome.results.append(_rejected(result, rejection.reason, rejection.detail))
                continue
            event_id, print_ = event["event_id"], SeenEvents.fingerprint(line)
            earlier = in_request.get(event_id)
            if earlier is not None:  # a repeat inside this request: its first copy decides
                verdict = DUPLICATE if earlier == print_ else CONFLICT
            else:
                verdict = self.seen.claim(tenant, event_id, print_)
            if verdict == CONFLICT:
                detail = f"event_id {event_id} was already sent with a different payload"
                outcome.results.append(_rejected(result, reasons.DUPLICATE_CONFLICT, detail))
            elif verdict == DUPLICATE:
                outcome.results.append({**result, "status": "duplicate"})
            else:
                in_request[event_id] = print_
                outcome.results.append({**result, "status": "accepted"})
                outcome.lines.append(line)
                outcome.customers.append(event["customer_id"])
                outcome.ids.append((event_id, print_))
        return outcome


def _rejected(result: dict[str, Any], reason: str, detail: str) -> dict[str, Any]:
    return {**result, "status": "rejected", "reason": reason, "detail": detail}


def create_app(settings: Settings):
    """The ASGI application (FastAPI)."""
    from meterlake.analytics.dashboard import read_dashboard
    from meterlake.billing.current_usage import read_usage
    from meterlake.capture.openapi import EVENTS_REQUEST, EVENTS_RESPONSES

    capture = Capture(settings)
    app = FastAPI(
        title="meterlake capture API",
        version=__version__,
        description="Send usage events; read current-period usage.",
    )
    app.state.capture = capture

    def error(status: int, message: str, **headers: str) -> JSONResponse:
        capture.metrics.inc("meterlake_api_requests_total", status=str(status))
        return JSONResponse({"error": message}, status_code=status, headers=headers or None)

    async def storage_unavailable(request: Request, exc: Exception) -> JSONResponse:
        """The warehouse's storage (keys, progress mark, published usage) cannot be reached:
        nothing was acknowledged, so the client retries later."""
        return error(503, f"storage unavailable: {exc}", **{"Retry-After": "5"})

    for kind in STORAGE_ERRORS:
        app.add_exception_handler(kind, storage_unavailable)

    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        """A parameter FastAPI could not take (missing, wrong type): a 400 naming it, in the
        one error shape every other refusal has."""
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "query")
        return error(400, f"{where or 'request'}: {first.get('msg', 'invalid')}")

    app.add_exception_handler(RequestValidationError, invalid_request)

    async def authenticate(request: Request, action: str | None) -> Principal | JSONResponse:
        """The bearer's principal, or the refusal; ``action`` None: the route authorises
        what the principal may do itself (server mode runs the CLI's checks)."""
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return error(401, "send Authorization: Bearer <key>", **{"WWW-Authenticate": "Bearer"})
        address = request.client.host if request.client else "?"
        if not capture.keys.cached(key):
            wait = capture.lookups.retry_after(address, 1)
            if wait:
                message = f"too many unknown keys from {address}; retry in {wait} s"
                return error(429, message, **{"Retry-After": str(wait)})
        principal = await capture.keys.principal(key)
        if principal is None:
            message = "the key is not known, or was revoked or has expired"
            return error(401, message, **{"WWW-Authenticate": "Bearer"})
        if action is not None and principal.role not in PERMISSIONS[action]:
            return error(403, f"role {principal.role} may not {action}")
        return principal

    def tenant_scope(principal: Principal, tenant: str | None) -> str | JSONResponse:
        """The one tenant a read covers: the key's own, or the one an all-tenant key names."""
        scope = principal.tenant if principal.tenant != "*" else tenant
        if not scope or not TENANT_PATTERN.match(scope):
            return error(400, "an all-tenant key must name a valid tenant (tenant=...)")
        if tenant and not principal.can_see(tenant):
            return error(403, f"the key is scoped to tenant {principal.tenant}")
        return scope

    async def read_body(request: Request) -> bytes | JSONResponse:
        limit = settings.api.max_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return error(413, f"body is {declared} bytes; the limit is {limit}")
        body = bytearray()
        seconds = settings.api.body_timeout_seconds
        try:
            async with asyncio.timeout(seconds):  # a trickling body holds a connection
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > limit:
                        return error(413, f"body exceeds the limit of {limit} bytes")
        except TimeoutError:
            return error(408, f"the body did not arrive within {seconds:g} s")
        return bytes(body)

    app.state.authenticate, app.state.read_body = authenticate, read_body

    @app.post(
        "/v1/events",
        status_code=202,
        openapi_extra={"requestBody": EVENTS_REQUEST},
        responses=EVENTS_RESPONSES,
        summary="Send one event or a batch",
    )
    async def post_events(request: Request) -> JSONResponse:
        started = time.perf_counter()
        principal = await authenticate(request, "events.send")
        if isinstance(principal, JSONResponse):
            return principal
        tenant = principal.tenant
        body = await read_body(request)
        if isinstance(body, JSONResponse):
            return body
        pressure = await asyncio.to_thread(capture.backlog.pressure)
        if pressure is not None:
            return error(503, pressure.reason, **{"Retry-After": str(pressure.retry_after)})
        try:
            events = parse_body(body)
        except BadBody as exc:
            return error(400, str(exc))
        limit = settings.api.max_events
        if len(events) > limit:
            return error(413, f"batch of {len(events)} events; the limit is {limit}")
        wait = capture.limits.retry_after(tenant, len(events))
        if wait:
            message = f"tenant {tenant} is over its rate limit"
            return error(429, message, **{"Retry-After": str(wait)})
        received = settings.now()
        outcome = await asyncio.to_thread(capture.classify, tenant, events, received)
        batch = None
        if outcome.lines:
            try:
                batch = await capture.store(tenant, outcome, received)
            except BaseException as exc:  # nothing is acknowledged; the client retries
                capture.seen.release(tenant, outcome.ids)
                if not isinstance(exc, Exception):
                    raise  # the request was cancelled (client gone, server stopping)
                return error(503, str(exc), **{"Retry-After": "5"})
            capture.seen.confirm(tenant, outcome.ids)
        batch_id = batch.batch_id if batch else None
        counts = {"accepted": 0, "duplicate": 0, "rejected": 0}
        for result in outcome.results:
            counts[result["status"]] += 1
            if result["status"] == "rejected":
                capture.metrics.inc(
                    "meterlake_events_rejected_total", tenant=tenant, reason=result["reason"]
                )
        capture.metrics.inc("meterlake_events_accepted_total", counts["accepted"], tenant=tenant)
        capture.metrics.inc("meterlake_events_duplicate_total", counts["duplicate"], tenant=tenant)
        if batch_id:
            capture.metrics.inc("meterlake_landing_batches_total")
        status = 422 if counts["rejected"] == len(events) else 202
        capture.metrics.inc("meterlake_api_requests_total", status=str(status))
        capture.metrics.observe(time.perf_counter() - started)
        payload = {
            "accepted": counts["accepted"],
            "duplicates": counts["duplicate"],
            "rejected": counts["rejected"],
            "batch_id": batch_id,
            "received_at": batch.received_at if batch else format_instant(received),
            "results": outcome.results,
        }
        return JSONResponse(payload, status_code=status)

    async def audited(
        principal: Principal, command: str, arguments: dict, scope: str, found: Any
    ) -> None:
        """Log a read in audit.query_log's spool before its answer is sent (a storage
        error here is the 503 of any storage error: nothing unlogged is served)."""
        row = log_entry(principal, command, arguments, scope, 0 if found is None else 1)
        await asyncio.to_thread(spool_read, settings, row)

    @app.get("/v1/usage", summary="Current-period usage of one customer (estimate until final)")
    async def get_usage(
        request: Request,
        customer_id: str | None = None,
        customer: str | None = None,
        tenant: str | None = None,
    ) -> JSONResponse:
        principal = await authenticate(request, "usage.read")
        if isinstance(principal, JSONResponse):
            return principal
        wanted = customer_id or customer
        if not wanted:
            return error(400, "customer_id is required")
        scope = tenant_scope(principal, tenant)
        if isinstance(scope, JSONResponse):
            return scope
        found = await asyncio.to_thread(read_usage, settings, scope, wanted)
        await audited(principal, "api GET /v1/usage", {"customer_id": wanted}, scope, found)
        if found is None:
            return error(404, f"no current usage for customer {wanted} in tenant {scope}")
        capture.metrics.inc("meterlake_api_requests_total", status="200")
        return JSONResponse(found)

    @app.get("/v1/dashboard", summary="The usage dashboard's data for the key's tenant")
    async def get_dashboard(request: Request, tenant: str | None = None) -> JSONResponse:
        principal = await authenticate(request, "usage.read")
        if isinstance(principal, JSONResponse):
            return principal
        scope = tenant_scope(principal, tenant)
        if isinstance(scope, JSONResponse):
            return scope
        found = await asyncio.to_thread(read_dashboard, settings, scope)
        await audited(principal, "api GET /v1/dashboard", {}, scope, found)
        if found is None:
            message = f"no dashboard published for tenant {scope} (meterlake views refresh)"
            return error(404, message)
        capture.metrics.inc("meterlake_api_requests_total", status="200")
        return JSONResponse(found)

    @app.get("/dashboard", summary="The usage dashboard page", response_class=HTMLResponse)
    async def dashboard_page() -> HTMLResponse:
        return HTMLResponse(DASHBOARD_PAGE.read_text(encoding="utf-8"))

    @app.get("/healthz", summary="Liveness: up or down, and nothing else (no key needed)")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.get(
        "/metrics",
        summary="Prometheus metrics (an all-tenant key with status.read)",
        response_class=PlainTextResponse,
    )
    async def metrics(request: Request) -> Response:
        principal = await authenticate(request, "status.read")
        if isinstance(principal, JSONResponse):
            return principal
        try:  # the counters span every tenant: the CLI's rule for status.read
            authorize(principal, "status.read", None, scopable=False)
        except AccessDenied as exc:
            return error(403, str(exc))
        render = functools.partial(capture.metrics.render, tenants=settings.api.metrics_tenants)
        text = await asyncio.to_thread(render)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    return app


def serve(
    settings: Settings, host: str, port: int, routes: Callable[[Any, Settings], None] | None = None
) -> None:
    """Run the API until SIGTERM/SIGINT (requests in flight finish first). A server stamps
    receipt times for every caller, so it runs on the real clock unless the operator says
    it is a test server (``METERLAKE_TEST_CLOCK=on``)."""
    import uvicorn

    from meterlake.capture.slow_clients import protocol
    from meterlake.ingest.landing import ensure_landing

    if settings.pinned_now is not None and not settings.test_clock:
        raise ConfigError(
            "--now: a server stamps receipt times with the real clock; a pinned one needs"
            " METERLAKE_TEST_CLOCK=on (tests only)"
        )
    ensure_landing(settings)
    print(f"meterlake API on http://{host}:{port} (warehouse {settings.warehouse}); SIGTERM stops")
    app = create_app(settings)
    if routes is not None:  # what the layers above add (server mode's command routes)
        routes(app, settings)
    uvicorn.run(
        app,
        host=host,
        port=port,
        http=protocol(settings.api.header_timeout_seconds),
        log_level="warning",
        access_log=False,
    )
