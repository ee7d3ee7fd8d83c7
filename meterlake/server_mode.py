"""Server mode: the CLI's commands run by ``meterlake serve`` for a caller who holds only a
key.

In a multi-user deployment only the server holds the warehouse's credentials. A person
runs ``meterlake --server URL <command>`` with ``METERLAKE_KEY``; the command line goes to
``POST /v1/cli``, and the server parses it with the same parser, authorises it with the
same layer as the direct CLI (`meterlake.cli.execute`: role, tenant scope, the test-clock
rule, ``audit.query_log``) and runs it with its own settings. What the caller cannot
choose there: the warehouse, the Spark master, the key (the bearer's), access control
(always on), and the clock (the server's, unless it is a test server).

Only `REMOTE_COMMANDS` run this way: reads, invoice runs and exports, reconciliation and
key management. Commands that read a file on the caller's machine (``events load``,
``catalog load``) or run the platform (``pipeline``, ``tier``, ``replay``, ``serve``) are
the operator's, in direct mode. A command's ``--out`` file is written on the server in a
private directory and returned to the client (`meterlake.server_client`), which writes
it where the caller said.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import sys
import tempfile
import threading
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import JSONResponse

from meterlake.capture.body import MAX_DEPTH, too_deep
from meterlake.errors import ConfigError, MeterlakeError

if TYPE_CHECKING:
    from meterlake.audit.access import Principal
    from meterlake.config import Settings

REMOTE_COMMANDS = frozenset(
    {
        "usage show", "invoices run", "invoices export", "lineage", "reconcile", "sql",
        "anomalies", "status", "gdpr export", "gdpr verify", "keys create", "keys list",
        "keys revoke", "stripe sync", "webhooks deliver", "views refresh",
    }
)  # fmt: skip
CALLER_FIXED = ("warehouse", "master", "key")  # the server's own, never the caller's

# One command at a time: they share the server's SparkSession (whose SQL registers views
# under fixed names) and the process's stdout, which is redirected to capture the output.
_RUNNING = threading.Lock()


@dataclass(frozen=True)
class CommandResult:
    command: str | None  # as the parser named it (None: the line did not parse)
    exit_code: int
    stdout: str
    stderr: str
    out: bytes | None  # the --out file's bytes, when the command wrote one

    def to_json(self) -> dict[str, Any]:
        out = base64.b64encode(self.out).decode() if self.out is not None else None
        return {"exit_code": self.exit_code, "stdout": self.stdout, "stderr": self.stderr,
                "out": out}  # fmt: skip


def run_command(settings: Settings, principal: Principal, argv: list[str]) -> CommandResult:
    """Run one command line for ``principal`` with the server's ``settings``."""
    with _RUNNING, tempfile.TemporaryDirectory(prefix="meterlake-remote-") as private:
        stdout, stderr = io.StringIO(), io.StringIO()
        out = Path(private) / "out"
        with redirect_stdout(stdout), redirect_stderr(stderr):
            command, code, asked = _run(settings, principal, argv, out)
        data = out.read_bytes() if out.exists() else None

        def caller_paths(text: str) -> str:  # the caller's --out, not the server's folder
            return text.replace(str(out), asked) if asked else text

        texts = (caller_paths(stdout.getvalue()), caller_paths(stderr.getvalue()))
        return CommandResult(command, code, *texts, data)


def _run(
    settings: Settings, principal: Principal, argv: list[str], out: Path
) -> tuple[str | None, int, str | None]:
    """The command's name, exit code and the ``--out`` the caller asked for."""
    from meterlake import cli

    try:
        args = cli.build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or argparse's own one-line error (already printed)
        return None, exc.code if isinstance(exc.code, int) else 2, None
    asked = getattr(args, "out", None)
    return args.command, _execute(settings, principal, args, out), asked


def _execute(settings: Settings, principal: Principal, args: argparse.Namespace, out: Path) -> int:
    from meterlake import cli
    from meterlake.clock import parse_instant

    try:
        _check_remote(args)
        pinned = parse_instant(args.now, "--now") if args.now else None
    except MeterlakeError as exc:
        print(f"meterlake: error: {exc}", file=sys.stderr)
        return exc.exit_code
    if getattr(args, "out", None):
        args.out = str(out)
    lease = settings.lease if args.wait is None else replace(settings.lease, wait_seconds=args.wait)
    remote = replace(settings, access_control=True, pinned_now=pinned, lease=lease)
    return cli.execute(args, remote, principal)


def _tenant_flag(tenant: str | None) -> list[str]:
    """A route's ``tenant`` parameter as the command's flag (none: the key's own)."""
    return ["--tenant", tenant] if tenant else []


def _check_remote(args: argparse.Namespace) -> None:
    if args.command not in REMOTE_COMMANDS or args.action is None:
        raise ConfigError(
            f"{args.command} is not run by the server; it is the operator's, in direct mode"
            " (without --server)"
        )
    for name in CALLER_FIXED:
        if getattr(args, name, None):
            raise ConfigError(f"--{name}: the server uses its own; leave it out in server mode")


def add_command_routes(app: Any, settings: Settings) -> None:
    """``POST /v1/cli``, ``POST /v1/sql``, ``GET /v1/invoices`` and an invoice line's
    lineage on the capture API's app."""
    capture, authenticate, read_body = (
        app.state.capture, app.state.authenticate, app.state.read_body
    )  # fmt: skip

    async def run(request: Request, argv_from) -> CommandResult | JSONResponse:
        """Authenticate, read the body, take the command line from it, run it: the result,
        or the refusal (an unauthenticated caller's body is never read)."""
        principal = await authenticate(request, None)
        if isinstance(principal, JSONResponse):
            return principal
        raw = await read_body(request)
        if isinstance(raw, JSONResponse):
            return raw
        if too_deep(raw):
            return JSONResponse({"error": f"body nested deeper than {MAX_DEPTH}"}, 400)
        try:
            argv = argv_from(json.loads(raw) if raw else None)  # a GET has no body
        except (ValueError, TypeError, KeyError) as exc:
            return JSONResponse({"error": f"body: {exc}"}, status_code=400)
        result = await asyncio.to_thread(run_command, settings, principal, argv)
        if result.command == "keys revoke" and result.exit_code == 0:
            capture.keys.forget()  # refused from the next request, not the cache's next read
        return result

    def argv_of(body: Any) -> list[str]:
        argv = body["argv"]
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            raise TypeError("argv must be a list of strings")
        return argv

    @app.post("/v1/cli", summary="Run a meterlake command as the key's holder (server mode)")
    async def post_cli(request: Request) -> JSONResponse:
        result = await run(request, argv_of)
        return result if isinstance(result, JSONResponse) else JSONResponse(result.to_json())

    def sql_argv(body: Any) -> list[str]:
        query, limit, tenant = body["query"], body.get("limit", 1000), body.get("tenant")
        if not isinstance(query, str) or not isinstance(limit, int) or isinstance(limit, bool):
            raise TypeError("query must be a string and limit an integer")
        if tenant is not None and not isinstance(tenant, str):
            raise TypeError("tenant must be a string")
        return ["sql", query, "--format", "json", "--limit", str(limit), *_tenant_flag(tenant)]

    def refused(result: CommandResult) -> JSONResponse | None:
        """A command's failure as the HTTP answer: 403 for access, else 400."""
        if result.exit_code == 0:
            return None
        status = 403 if result.exit_code == 4 else 400
        error = result.stderr.strip().removeprefix("meterlake: error: ")
        return JSONResponse({"error": error}, status_code=status)

    @app.post("/v1/sql", summary="A read-only, tenant-scoped, audited SQL query (rows as JSON)")
    async def post_sql(request: Request) -> JSONResponse:
        result = await run(request, sql_argv)
        if isinstance(result, JSONResponse):
            return result
        return refused(result) or JSONResponse({"rows": json.loads(result.stdout)})

    @app.get("/v1/invoices", summary="The key's tenant's invoices at their current revision")
    async def get_invoices(
        request: Request, tenant: str | None = None, customer_id: str | None = None
    ) -> JSONResponse:
        argv = ["invoices", "export", "--out", "invoices.json", *_tenant_flag(tenant)]
        result = await run(request, lambda _: argv)
        if isinstance(result, JSONResponse):
            return result
        failed = refused(result)
        if failed is not None or result.out is None:
            return failed or JSONResponse({"error": "the export wrote nothing"}, 500)
        invoices = json.loads(result.out)["invoices"]
        wanted = [i for i in invoices if customer_id in (None, i["customer_id"])]
        return JSONResponse({"invoices": wanted})

    @app.get(
        "/v1/invoices/{invoice_id}/lineage",
        summary="One line's trace to aggregates, events and landing files, with its events",
    )
    async def get_lineage(
        request: Request, invoice_id: str, line_id: str | None = None, tenant: str | None = None
    ) -> JSONResponse:
        def argv(_: Any) -> list[str]:
            if not line_id:
                raise ValueError("line_id is required")
            if not line_id.startswith(f"{invoice_id}-"):
                raise ValueError(f"line_id {line_id!r} is not a line of invoice {invoice_id!r}")
            flags = ["--invoice-line", line_id, "--out", "events.jsonl", *_tenant_flag(tenant)]
            return ["lineage", *flags]

        result = await run(request, argv)
        if isinstance(result, JSONResponse):
            return result
        events = [json.loads(line) for line in (result.out or b"").splitlines() if line]
        report = result.stdout.splitlines()
        return refused(result) or JSONResponse({"report": report, "events": events})
