"""The analyst SQL allow-list on Spark's own parser: what a query may hold, and the one
line a refused query gets naming the construct."""

from __future__ import annotations

import pytest

from meterlake.analytics.sql_guard import FUNCTIONS, check_query
from meterlake.errors import ConfigError

ALLOWED = {
    "SELECT tenant_id, sum(events) FROM views.tenant_daily_usage GROUP BY 1": {
        "views.tenant_daily_usage"
    },
    "WITH e AS (SELECT DISTINCT customer_id FROM bronze.events) SELECT * FROM e"
    " JOIN silver.usage_day USING (customer_id)": {"bronze.events", "silver.usage_day"},
    "SELECT x FROM a.b WHERE x IN (SELECT y FROM c.d) AND EXISTS (SELECT 1 FROM e.f)": {
        "a.b",
        "c.d",
        "e.f",
    },
    "SELECT y, sum(x) FROM a.b GROUP BY ROLLUP(y) HAVING sum(x) > 1"
    " ORDER BY 2 DESC NULLS LAST LIMIT 10 OFFSET 2": {"a.b"},
    "SELECT sum(x) OVER w, rank() OVER (PARTITION BY y ORDER BY z DESC ROWS BETWEEN"
    " UNBOUNDED PRECEDING AND CURRENT ROW) FROM a.b WINDOW w AS (PARTITION BY y)": {"a.b"},
    "SELECT y FROM a.b UNION ALL SELECT y FROM c.d EXCEPT SELECT 1": {"a.b", "c.d"},
    "SELECT * FROM a.b PIVOT (sum(x) FOR y IN ('a', 'b'))": {"a.b"},
    "SELECT x::string, m['k'], arr[0], date_trunc('month', ts), count(DISTINCT u),"
    " percentile_cont(0.5) WITHIN GROUP (ORDER BY x), count(*) FILTER (WHERE x > 1)"
    " FROM a.b": {"a.b"},
    "SELECT transform(array(1), v -> v + 1), CASE x WHEN 1 THEN 'a' END, extract(year FROM"
    " ts), trim(BOTH 'x' FROM y), substring(y FROM 1 FOR 2), current_date FROM a.b": {"a.b"},
    "SELECT * FROM a.b LATERAL VIEW explode(array(1)) t AS c": {"a.b"},
    "SELECT * FROM a.b QUALIFY row_number() OVER (ORDER BY x) = 1": {"a.b"},
    "SELECT * FROM VALUES (1), (2) AS t(a)": set(),
    "TABLE a.b": {"a.b"},
}

REFUSED = {
    "SELECT reflect('java.lang.System', 'getenv', 'AWS_SECRET_ACCESS_KEY')": "function reflect",
    "SELECT `reflect`('java.lang.System', 'getenv', 'PATH')": "function reflect",
    "SELECT java_method('org.apache.spark.util.Utils', 'createDirectory', '/tmp/x')": (
        "function java_method"
    ),
    "SELECT try_reflect('java.lang.System', 'getenv', 'HOME')": "function try_reflect",
    "WITH e AS (SELECT reflect('a', 'b') AS v) SELECT * FROM e": "function reflect",
    "SELECT sum(x) OVER w FROM a.b WINDOW w AS (PARTITION BY reflect('a', 'b'))": (
        "function reflect"
    ),
    "SELECT x FROM a.b WHERE x IN (SELECT java_method('a', 'b'))": "function java_method",
    "SELECT input_file_name() FROM a.b": "function input_file_name",
    "SELECT current_user": "function current_user",
    "SELECT * FROM range(10)": "a table-valued function",
    "SELECT * FROM read_files('/etc/passwd')": "a table-valued function",
    "SELECT * FROM table_changes_by_path('/w/bronze/events', 0)": "a table-valued function",
    "SELECT * FROM a.b VERSION AS OF 1": "time travel",
    "SELECT IDENTIFIER('refl' || 'ect')('a', 'b')": "IDENTIFIER(...) with a computed name",
    "SELECT * FROM a.b WITH ('path' = '/etc')": "options on table a.b",
    "SELECT * FROM a.b.c": "table a.b.c",
    "SET spark.sql.runSQLOnFiles=true": "SET",
    "DROP TABLE bronze.events": "DropTable",
    "INSERT INTO a.b SELECT 1": "InsertInto (a command)",
    "CREATE TEMP VIEW v AS SELECT 1": "CreateView (a command)",
    "CREATE TEMPORARY FUNCTION f AS 'x.Y'": "CreateFunction (a command)",
    "EXPLAIN SELECT 1": "Explain (a command)",
    "SELECT 1; SELECT 2": "PARSE_SYNTAX_ERROR",
    # Spliced into a wrapper it would parse; alone it does not: refused, never run wrapped.
    "SELECT 1) AS x, (SELECT reflect('a', 'b')": "PARSE_SYNTAX_ERROR",
}


@pytest.mark.parametrize("query", ALLOWED)
def test_allowed_queries_name_their_tables(spark, query: str) -> None:
    assert check_query(spark, query) == ALLOWED[query]


@pytest.mark.parametrize("query", REFUSED)
def test_refused_constructs_get_one_line_naming_them(spark, query: str) -> None:
    with pytest.raises(ConfigError) as refused:
        check_query(spark, query)
    message = str(refused.value)
    assert message.startswith("query: ") and "\n" not in message
    assert REFUSED[query] in message


def test_every_allowed_function_is_one_spark_has(spark) -> None:
    """The list names real functions (a typo would refuse what it meant to allow), and none
    of the ones that reach outside the query's values."""
    registry = spark._jsparkSession.sessionState().functionRegistry()
    iterator = registry.listFunction().iterator()
    known = set()
    while iterator.hasNext():
        known.add(iterator.next().funcName().lower())
    assert known >= FUNCTIONS, sorted(FUNCTIONS - known)
    outside = {"reflect", "java_method", "try_reflect", "input_file_name", "current_user",
               "uuid", "raise_error", "assert_true", "aes_decrypt", "xpath", "version"}  # fmt: skip
    assert not FUNCTIONS & outside


def test_a_deeply_nested_query_is_refused_not_recursed(spark) -> None:
    assert check_query(spark, "SELECT " + "abs(" * 50 + "1" + ")" * 50) == set()
    # Beyond the walk's limit of 300 levels, and so deep that Spark's parser overflows its
    # stack; where between the two the parser gives up depends on the JVM's thread stack.
    for depth in (400, 5000):
        query = "SELECT " + "abs(" * depth + "1" + ")" * depth
        with pytest.raises(ConfigError) as refused:  # the walk's limit, or Spark's parser's
            check_query(spark, query)
        message = str(refused.value)
        assert "\n" not in message
        assert "nested deeper than 300" in message or "TOO_COMPLEX" in message, message
    # A chain of 400 additions parses (no bracket), so the walk's own limit refuses it.
    with pytest.raises(ConfigError, match="nested deeper than 300 levels"):
        check_query(spark, "SELECT " + "+".join(["1"] * 400))
