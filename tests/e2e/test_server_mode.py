"""The trust boundary, tried by a hostile analyst: the CLI's server mode and the API's
``/v1/sql`` and ``/v1/cli`` against a real ``meterlake serve`` that alone holds the
warehouse. The client side has a key and nothing else (its warehouse variable points at
nowhere); every refusal is one line; a tenant key never sees another tenant's row, file
or secret; keys cannot escalate and a revoked key is refused on its next request."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from meterlake import tables
from meterlake.config import Settings
from tests.capture_server import ApiServer
from tests.e2e.cli import cli_env, meterlake_here

SECRET = "server-only-secret-4711"


@pytest.fixture(scope="module")
def server(usage_warehouse: Settings) -> Iterator[ApiServer]:
    api = ApiServer(
        usage_warehouse.warehouse,
        METERLAKE_ACCESS_CONTROL="on",
        METERLAKE_SHUFFLE_PARTITIONS="2",
        METERLAKE_SERVER_SECRET_PROBE=SECRET,  # in the server's environment only
    ).start()
    yield api
    api.stop()


def _operator(settings: Settings, *args: str) -> str:
    """The operator, in direct mode on the warehouse (access control off)."""
    result = meterlake_here(*args, env=cli_env(settings.warehouse))
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _client(server: ApiServer, key: str, tmp: Path):
    """A person's machine: a key and the server's address; no warehouse to reach."""
    env = cli_env(tmp / "no-warehouse-here", METERLAKE_SERVER=server.url, METERLAKE_KEY=key)

    def run(*args: str):
        return meterlake_here(*args, env=env)

    return run


def test_a_tenant_key_through_the_server_sees_only_its_tenant(
    spark, usage_warehouse: Settings, server: ApiServer, tmp_path: Path
) -> None:
    key = _operator(usage_warehouse, "keys", "create", "--tenant", "t2", "--role", "analyst")
    run = _client(server, key, tmp_path)
    query = "SELECT tenant_id, count(*) AS n FROM bronze.events GROUP BY 1"
    mine = run("sql", query, "--format", "json")
    assert mine.returncode == 0, mine.stderr
    rows = json.loads(mine.stdout)
    bronze = tables.read(spark, usage_warehouse, tables.BRONZE_EVENTS)
    assert rows == [{"tenant_id": "t2", "n": bronze.where("tenant_id = 't2'").count()}]
    assert not (tmp_path / "no-warehouse-here").exists()  # the client touched no storage

    published = Path(usage_warehouse.warehouse) / "serving" / "usage"
    hostile = {
        ("sql", "SELECT reflect('java.lang.System', 'getenv', 'METERLAKE_SERVER_SECRET_PROBE')"):
            (2, "function reflect"),
        ("sql", "SELECT java_method('org.apache.spark.util.Utils', 'getPropertiesFromFile',"
                f" '{published}/default.json')"): (2, "function java_method"),
        ("sql", f"SELECT * FROM read_files('{published}')"): (2, "a table-valued function"),
        ("sql", "SET spark.sql.runSQLOnFiles=true"): (2, "SET"),
        ("sql", query, "--tenant", "default"): (4, "scoped to tenant t2"),
        ("--warehouse", str(tmp_path), "sql", query): (2, "--warehouse: the server uses its own"),
        ("--now", "2026-01-01T00:00:00Z", "sql", query): (4, "--now"),
        ("events", "load", str(tmp_path / "x.jsonl")): (2, "events load is not run by the server"),
        ("pipeline", "run"): (2, "pipeline run is not run by the server"),
        ("invoices", "run", "--as-of", "2026-03-01T00:00:00Z"): (4, "role analyst may not"),
        ("keys", "create", "--tenant", "t2", "--role", "engineer"): (4, "role analyst may not"),
    }  # fmt: skip
    for args, (code, message) in hostile.items():
        result = run(*args)
        assert (result.returncode, result.stderr.count("\n")) == (code, 1), (args, result)
        assert message in result.stderr, (args, result.stderr)
        assert SECRET not in result.stdout + result.stderr

    # The API's own SQL route: the same rules, JSON in and out.
    auth = {"Authorization": f"Bearer {key}"}
    api = httpx.post(f"{server.url}/v1/sql", json={"query": query}, headers=auth, timeout=120)
    assert api.status_code == 200 and api.json()["rows"] == rows
    refused = httpx.post(
        f"{server.url}/v1/sql", json={"query": "SELECT reflect('a', 'b')"}, headers=auth
    )
    assert refused.status_code == 400 and "function reflect" in refused.json()["error"]
    assert httpx.post(f"{server.url}/v1/sql", json={"query": query}).status_code == 401
    for body in (b"[", b'{"query": 1}', b'{"argv": "sql"}', b"[" * 100 + b"]" * 100):
        bad = httpx.post(f"{server.url}/v1/cli", content=body, headers=auth)
        assert bad.status_code == 400, (body, bad.text)

    # Invoices: finance's, the key's tenant only (this warehouse has none yet).
    refused = httpx.get(f"{server.url}/v1/invoices", headers=auth)
    assert refused.status_code == 403 and "role analyst may not" in refused.json()["error"]
    finance = _operator(usage_warehouse, "keys", "create", "--tenant", "t2", "--role", "finance")
    books = {"Authorization": f"Bearer {finance}"}
    listed = httpx.get(f"{server.url}/v1/invoices", headers=books, timeout=120)
    assert listed.status_code == 200 and listed.json() == {"invoices": []}, listed.text
    other = httpx.get(f"{server.url}/v1/invoices", params={"tenant": "default"}, headers=books)
    assert other.status_code == 403 and "scoped to tenant t2" in other.json()["error"]
    assert httpx.get(f"{server.url}/v1/invoices").status_code == 401
    lineage = f"{server.url}/v1/invoices/in_x/lineage"
    strange = [  # flags smuggled in parameters, a dash-led line id, bytes that are not text
        (f"{server.url}/v1/invoices", {"tenant": "--now"}),
        (f"{server.url}/v1/invoices", {"tenant": "t2\x00; DROP"}),
        (lineage, {"line_id": "in_x-001", "tenant": "--warehouse=/"}),
        (lineage, {"line_id": "-in_x-001"}),
        (f"{lineage}?line_id=in_x-%ED%A0%80%FF", None),  # a lone surrogate, then 0xFF
        (lineage, None),  # no line at all
        (f"{server.url}/v1/usage", {"customer_id": ["a", "b"], "tenant": ["t2", "t3"]}),
    ]
    for url, params in strange:
        answer = httpx.get(url, params=params, headers=books, timeout=120)
        assert 400 <= answer.status_code < 500, (params, answer.status_code, answer.text)
        assert answer.json()["error"].strip(), answer.text  # one error shape, with a reason

    # Every read through the server is in the query log, as the key's holder.
    log = tables.read(spark, usage_warehouse, tables.AUDIT_QUERY_LOG).collect()
    mine_logged = [r for r in log if r.key_id == key_id(key) and r.command == "sql"]
    assert len(mine_logged) == 2 and {r.tenant for r in mine_logged} == {"t2"}
    exports = [r for r in log if r.key_id == key_id(finance)]
    assert [(r.command, r.tenant) for r in exports] == [("invoices export", "t2")]


def key_id(secret: str) -> str:
    import hashlib

    return hashlib.sha256(secret.encode()).hexdigest()[:12]


def test_keys_cannot_escalate_and_a_revoked_key_is_refused_next(
    usage_warehouse: Settings, server: ApiServer, tmp_path: Path
) -> None:
    engineer = _operator(usage_warehouse, "keys", "create", "--tenant", "t2", "--role", "engineer")
    run = _client(server, engineer, tmp_path)
    escalations = {
        ("keys", "create", "--tenant", "t2", "--role", "finance"): "may not mint a finance key",
        ("keys", "create", "--tenant", "t2", "--role", "auditor"): "may not mint a auditor key",
        ("keys", "create", "--tenant", "default", "--role", "analyst"): "scoped to tenant t2",
        ("keys", "create", "--tenant", "*", "--role", "analyst"): "scoped to tenant t2",
    }
    for args, message in escalations.items():
        result = run(*args)
        assert result.returncode == 4 and message in result.stderr, (args, result.stderr)

    minted = run("keys", "create", "--tenant", "t2", "--role", "analyst")
    assert minted.returncode == 0, minted.stderr
    analyst = minted.stdout.strip()
    listed = run("keys", "list")
    assert listed.returncode == 0, listed.stderr
    assert key_id(analyst) in listed.stdout and analyst not in listed.stdout
    assert all(" t2 " in line for line in listed.stdout.splitlines()[2:])  # its tenant only

    as_analyst = _client(server, analyst, tmp_path)
    assert as_analyst("usage", "show", "--customer", "globex").returncode == 0
    revoked = run("keys", "revoke", key_id(analyst))
    assert revoked.returncode == 0 and "revoked" in revoked.stdout, revoked.stderr
    again = as_analyst("usage", "show", "--customer", "globex")
    assert again.returncode == 4 and "revoked" in again.stderr, again.stderr
    assert "revoked" in run("keys", "list").stdout


def test_the_apis_reads_are_in_the_query_log_once_even_beside_a_second_fold(
    spark, usage_warehouse: Settings, server: ApiServer
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from meterlake.audit.query_log import fold_reads
    from meterlake.audit.read_spool import READS
    from meterlake.billing.current_usage import publish_usage

    assert publish_usage(spark, usage_warehouse, {("t2", "globex")}, None) == 1
    key = _operator(usage_warehouse, "keys", "create", "--tenant", "t2", "--role", "analyst")
    auth = {"Authorization": f"Bearer {key}"}
    reads = [("/v1/usage", {"customer_id": "globex"}), ("/v1/usage", {"customer_id": "nobody"}),
             ("/v1/dashboard", {})]  # fmt: skip
    answers = [httpx.get(f"{server.url}{path}", params=p, headers=auth) for path, p in reads]
    assert [a.status_code for a in answers] == [200, 404, 200]
    spool = Path(usage_warehouse.warehouse) / READS
    waiting = sorted(spool.glob("*.json"))
    assert len(waiting) >= 3  # on disk before the answers were sent
    saved = {path: path.read_bytes() for path in waiting}

    with ThreadPoolExecutor(2) as pool:  # two folds at once: each read logged once
        list(pool.map(lambda _: fold_reads(spark, usage_warehouse), range(2)))
    assert not list(spool.glob("*.json"))
    for path, body in saved.items():  # a fold killed after its MERGE, before the deletes
        path.write_bytes(body)
    assert fold_reads(spark, usage_warehouse) == len(saved)

    log = tables.read(spark, usage_warehouse, tables.AUDIT_QUERY_LOG)
    mine = log.where(f"key_id = '{key_id(key)}'").collect()
    assert sorted(
        (r.command, json.loads(r.arguments).get("customer_id"), r.rows) for r in mine
    ) == [
        ("api GET /v1/dashboard", None, 1),
        ("api GET /v1/usage", "globex", 1),
        ("api GET /v1/usage", "nobody", 0),
    ]
    assert {(r.role, r.key_tenant, r.tenant) for r in mine} == {("analyst", "t2", "t2")}
    assert log.groupBy("query_id").count().where("count > 1").count() == 0

    # A read that cannot be logged is not served: the spool's folder made unwritable.
    spool.rmdir()
    spool.write_text("not a folder")
    try:
        refused = httpx.get(f"{server.url}/v1/usage", params=reads[0][1], headers=auth)
        assert refused.status_code == 503 and "globex" not in refused.text, refused.text
    finally:
        spool.unlink()
