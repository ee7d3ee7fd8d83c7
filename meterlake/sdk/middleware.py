"""WSGI and ASGI middleware: one usage event per request, recorded through the SDK.

The event (``event_type`` default ``api_request``, quantity 1) carries the route, method,
status and duration in ``properties``; the customer comes from a header (default
``X-Customer-Id``) or a callable. Recording is a spool append after the response is
done, so the request never waits for the network. Requests without a customer are not
recorded (counted in ``skipped``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from meterlake.sdk.client import Client, log


class _Recorder:
    """What both middlewares share: the wrapped app, the SDK client and the event's shape."""

    def __init__(
        self,
        app: Callable,
        client: Client,
        *,
        header: str = "X-Customer-Id",
        customer: Callable[[dict], str | None] | None = None,
        event_type: str = "api_request",
    ) -> None:
        self.app = app
        self.client = client
        self.header = header
        self.customer = customer
        self.event_type = event_type
        self.recorded = 0
        self.skipped = 0

    def record(self, customer: str | None, method: str, route: str, status: int, began: float):
        """Track the request; a failure to record is logged, never raised into the app."""
        if not customer:
            self.skipped += 1
            return
        duration_ms = round((time.perf_counter() - began) * 1000, 3)
        facts = {"method": method, "route": route, "status": status, "duration_ms": duration_ms}
        try:
            self.client.track(customer, self.event_type, 1, properties=facts)
        except Exception:
            log.exception("meterlake: could not record usage for %s %s", method, route)
            return
        self.recorded += 1


class WsgiUsageMiddleware(_Recorder):
    """Wrap a WSGI app: ``app = WsgiUsageMiddleware(app, client)``. ``customer`` gets the
    WSGI environ."""

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        began = time.perf_counter()
        status = [500]

        def recording(status_line: str, headers, exc_info=None):
            status[0] = int(status_line.split(" ", 1)[0])
            return start_response(status_line, headers, exc_info)

        def done() -> None:
            header = "HTTP_" + self.header.upper().replace("-", "_")
            who = self.customer(environ) if self.customer else environ.get(header)
            route = environ.get("PATH_INFO") or "/"
            self.record(who, environ.get("REQUEST_METHOD", "GET"), route, status[0], began)

        try:
            body = self.app(environ, recording)
        except BaseException:
            done()
            raise
        return _ClosingIterable(body, done)


class _ClosingIterable:
    """Yields the app's body; records when the server closes it (the response is sent)."""

    def __init__(self, body: Iterable[bytes], done: Callable[[], None]) -> None:
        self._body = body
        self._done = done

    def __iter__(self):
        return iter(self._body)

    def close(self) -> None:
        try:
            if hasattr(self._body, "close"):
                self._body.close()
        finally:
            self._done()


class AsgiUsageMiddleware(_Recorder):
    """Wrap an ASGI app: ``app = AsgiUsageMiddleware(app, client)``. ``customer`` gets the
    ASGI scope. The route is the framework's route template when it sets one (Starlette,
    FastAPI), else the path."""

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = [500]

        async def recording(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording)
        finally:
            if self.customer:
                who = self.customer(scope)
            else:
                raw = dict(scope.get("headers") or []).get(self.header.lower().encode())
                who = raw.decode("latin-1") if raw else None
            route = getattr(scope.get("route"), "path", None) or scope.get("path", "/")
            self.record(who, scope.get("method", "GET"), route, status[0], began)
