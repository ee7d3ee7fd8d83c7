"""Running the real ``meterlake serve`` in a subprocess on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ApiServer:
    """``meterlake serve`` for a warehouse; ``restart`` and ``kill`` for crash tests."""

    def __init__(self, warehouse: str | Path, port: int | None = None, **env: str) -> None:
        self.warehouse = str(warehouse)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("METERLAKE_NOW")}
        self.env.update({"METERLAKE_WAREHOUSE": self.warehouse, **env})
        if "METERLAKE_NOW" in env:  # a pinned clock is a test server's, declared as such
            self.env["METERLAKE_TEST_CLOCK"] = "on"
        self.process: subprocess.Popen | None = None

    def start(self) -> ApiServer:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "meterlake.cli", "serve", "--port", str(self.port)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.process.communicate()[1]
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError("meterlake serve did not answer /healthz within 60 s")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush; what was acknowledged must already be durable."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def landed_lines(warehouse: str | Path, tenant: str) -> list[bytes]:
    """Every event line landed for ``tenant`` (committed batches only: via the manifest)."""
    import json

    root = Path(warehouse)
    lines: list[bytes] = []
    for entry in sorted((root / "landing/_manifest").glob(f"{tenant}.*.json")):
        batch = json.loads(entry.read_text())
        data = (root / batch["landing_file"]).read_bytes()
        lines += [line for line in data.split(b"\n") if line.strip()]
    return lines


class FlakyProxy:
    """A TCP proxy to the API that drops connections at random: before a request reaches
    the server (lost request) or after the server answered (lost answer, so the client
    retries what was already landed). Connections to a dead server are closed at once."""

    def __init__(self, upstream_port: int, *, fail: float, seed: int) -> None:
        import random

        self.upstream_port = upstream_port
        self.fail = fail
        self.random = random.Random(seed)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.dropped = 0

    def start(self) -> FlakyProxy:
        import threading

        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        import threading

        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
        self._pump(upstream, client)

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                if self.random.random() < self.fail:
                    self.dropped += 1
                    break
                target.sendall(chunk)
        for side in (source, target):
            with contextlib.suppress(OSError):
                side.shutdown(socket.SHUT_RDWR)
            side.close()

    def close(self) -> None:
        self.listener.close()


class PoisonProxy:
    """An HTTP proxy to the API that answers 500 to any request whose body holds
    ``marker``: a server with a bug one event triggers, every time (what an SDK must
    isolate). Everything else goes to the real API and back unchanged."""

    def __init__(self, upstream: str, marker: bytes) -> None:
        import http.server

        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if marker in body:
                    proxy.refused += 1
                    self._answer(500, b'{"error": "internal error"}')
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                answer = httpx.post(upstream + self.path, content=body, headers=headers)
                self._answer(answer.status_code, answer.content)

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # quiet
                pass

        self.refused = 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> PoisonProxy:
        import threading

        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
