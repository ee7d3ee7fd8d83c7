"""Local stand-ins the billing-integration tests talk to over 127.0.0.1: stripe-mock
(Stripe's own mock server, started by infra/stripe-mock.sh), an HTTP proxy in front of it
that records every request and can fail them, and a webhook receiver."""

from __future__ import annotations

import http.client
import os
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "infra/stripe-mock.sh"


def start_stripe_mock(port: int, run_dir: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "METERLAKE_STRIPE_MOCK_PORT": str(port),
        "METERLAKE_STRIPE_MOCK_RUN": str(run_dir),
    }
    subprocess.run(["bash", str(SCRIPT), "start"], env=env, check=True, capture_output=True)
    return env


def stop_stripe_mock(env: dict[str, str]) -> None:
    subprocess.run(["bash", str(SCRIPT), "stop"], env=env, check=True, capture_output=True)


@dataclass
class Seen:
    method: str
    path: str
    idempotency_key: str | None
    status: int


@dataclass
class RecordingProxy:
    """Forwards to ``upstream_port``; answers 500 itself (without forwarding) to every
    request after the first ``fail_after`` (None: never)."""

    upstream_port: int
    fail_after: int | None = None
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                key = self.headers.get("Idempotency-Key")
                if proxy.fail_after is not None and len(proxy.seen) >= proxy.fail_after:
                    proxy.seen.append(Seen(self.command, self.path, key, 500))
                    payload = b'{"error": {"type": "api_error", "message": "injected"}}'
                    self.send_response(500)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=10)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                upstream.request(self.command, self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                proxy.seen.append(Seen(self.command, self.path, key, answer.status))
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def posts(self) -> list[Seen]:
        return [s for s in self.seen if s.method == "POST"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class WebhookReceiver:
    """Records each delivery; answers 500 to the first ``fail_first`` of them."""

    fail_first: int = 0
    received: list[tuple[dict[str, str], bytes, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = 500 if len(receiver.received) < receiver.fail_first else 200
                receiver.received.append((dict(self.headers.items()), body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/billing"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
