"""What an analyst's SQL may contain, decided on Spark's parse tree before anything runs.

Allow-lists, not deny-lists: a query is a tree of plan nodes and expressions, and every
node's kind must be on `PLAN_NODES` or `EXPRESSIONS`, every function named on `FUNCTIONS`,
every table one meterlake registers (or a CTE the query defines). So ``reflect``,
``java_method``, table-valued functions (``range``, ``read_files``,
``table_changes_by_path``), path reads (``delta.`/x```), time travel, ``IDENTIFIER(...)``
with a computed name, ``SET``, DDL, DML and every other command are refused because they
are not on a list, not because someone thought of them. A Spark upgrade that adds a
function or a node kind adds nothing here until it is listed.

The walk follows every field of every node (Scala's ``productIterator``), so expressions
kept outside a node's ``expressions`` (CTE definitions, named windows) are checked too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from meterlake.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Spark's function groups that compute on values only (no JVM reflection, no files, no
# session state, no user): aggregates, arrays, maps, strings, dates, math, predicates,
# conditionals, casts, hashes, JSON, lambdas, windows, generators (in LATERAL VIEW or a
# select list; in FROM they are table-valued functions, which are refused).
FUNCTIONS = _names(
    """
    any any_value approx_count_distinct approx_percentile array_agg avg bit_and bit_or
    bit_xor bool_and bool_or collect_list collect_set corr count count_if covar_pop
    covar_samp every first first_value grouping grouping_id histogram_numeric kurtosis last
    last_value listagg max max_by mean median min min_by mode percentile percentile_approx
    percentile_cont percentile_disc regr_avgx regr_avgy regr_count regr_intercept regr_r2
    regr_slope regr_sxx regr_sxy regr_syy skewness some std stddev stddev_pop stddev_samp
    string_agg sum try_avg try_sum var_pop var_samp variance
    array array_append array_compact array_contains array_distinct array_except
    array_insert array_intersect array_join array_max array_min array_position
    array_prepend array_remove array_repeat array_size array_union arrays_overlap
    arrays_zip flatten get sequence slice sort_array
    bit_count bit_get getbit shiftleft shiftright shiftrightunsigned
    cardinality concat element_at reverse size try_element_at
    between coalesce if ifnull nanvl nullif nullifzero nvl nvl2 when zeroifnull
    bigint binary boolean cast date decimal double float int smallint string timestamp
    tinyint
    add_months convert_timezone curdate current_date current_timestamp current_timezone
    date_add date_diff date_format date_from_unix_date date_part date_sub date_trunc
    dateadd datediff datepart day dayname dayofmonth dayofweek dayofyear extract
    from_unixtime from_utc_timestamp hour last_day localtimestamp make_date
    make_dt_interval make_interval make_timestamp make_timestamp_ltz make_timestamp_ntz
    make_ym_interval minute month monthname months_between next_day now quarter second
    timestamp_micros timestamp_millis timestamp_seconds to_date to_timestamp
    to_timestamp_ltz to_timestamp_ntz to_unix_timestamp to_utc_timestamp trunc
    try_make_interval try_make_timestamp try_to_date try_to_timestamp unix_date
    unix_micros unix_millis unix_seconds unix_timestamp weekday weekofyear window year
    explode explode_outer inline inline_outer posexplode posexplode_outer stack
    crc32 hash md5 sha sha1 sha2 xxhash64
    from_json get_json_object json_array_length json_object_keys json_tuple to_json
    aggregate array_sort exists filter forall map_filter map_zip_with reduce transform
    transform_keys transform_values zip_with
    map map_concat map_contains_key map_entries map_from_arrays map_from_entries map_keys
    map_values str_to_map
    abs acos acosh asin asinh atan atan2 atanh bin bround cbrt ceil ceiling conv cos cosh
    cot csc degrees div e exp expm1 factorial floor greatest hex hypot least ln log log10
    log1p log2 mod negative pi pmod positive pow power radians rint round sec sign signum
    sin sinh sqrt tan tanh try_add try_divide try_mod try_multiply try_subtract unhex
    width_bucket
    equal_null ilike isnan isnotnull isnull like not regexp regexp_like rlike
    ascii base64 bit_length btrim char char_length character_length chr concat_ws contains
    decode elt encode endswith find_in_set format_number format_string initcap instr lcase
    left len length levenshtein locate lower lpad ltrim mask octet_length overlay position
    printf regexp_count regexp_extract regexp_extract_all regexp_instr regexp_replace
    regexp_substr repeat replace right rpad rtrim sentences soundex space split split_part
    startswith substr substring substring_index to_char to_number to_varchar translate
    trim try_to_number ucase unbase64 upper
    named_struct struct
    cume_dist dense_rank lag lead nth_value ntile percent_rank rank row_number
    """
)

# The parser's logical plan nodes for a read-only query.
PLAN_NODES = _names(
    """
    Aggregate Distinct Except Filter Generate GlobalLimit Intersect Join LateralJoin
    LocalLimit LocalRelation Offset OneRowRelation Pivot Project RepartitionByExpression
    Sample Sort SubqueryAlias Union UnresolvedHaving UnresolvedHint UnresolvedInlineTable
    UnresolvedQualify UnresolvedRelation UnresolvedSubqueryColumnAliases UnresolvedWith
    Unpivot WithWindowDefinition
    """
)

# The parser's expressions: references, literals, operators and the syntax that has its
# own node (CAST, CASE, LIKE, IN, subqueries, lambdas, windows, grouping sets).
EXPRESSIONS = _names(
    """
    Add Alias And Ascending$ BitwiseAnd BitwiseNot BitwiseOr BitwiseXor CaseWhen Cast
    Coalesce Concat CreateNamedStruct CurrentRow$ Cube Descending$ Divide EqualNullSafe EqualTo
    Exists GreaterThan GreaterThanOrEqual GroupingSets In InSubquery ILike IntegralDivide IsNotNull
    IsNull LambdaFunction LateralSubquery LessThan LessThanOrEqual Like LikeAll LikeAny
    ListQuery Literal MultiAlias Multiply Not NotLikeAll NotLikeAny NullsFirst$ NullsLast$
    Or Overlay RLike Remainder Rollup ScalarSubquery SortOrder SpecifiedWindowFrame
    StringLocate StringTrim StringTrimBoth StringTrimLeft StringTrimRight Substring Subtract
    UnaryMinus UnaryPositive UnboundedFollowing$ UnboundedPreceding$ UnresolvedAlias
    UnresolvedAttribute UnresolvedExtractValue UnresolvedFunction UnresolvedGenerator
    UnresolvedNamedLambdaVariable UnresolvedOrdinal UnresolvedRegex UnresolvedStar
    UnresolvedStarExceptOrReplace UnresolvedWindowExpression UnspecifiedFrame$
    WindowExpression WindowSpecDefinition WindowSpecReference RangeFrame$ RowFrame$
    AttributeReference Inner$ LeftOuter$ RightOuter$ FullOuter$ LeftSemi$ LeftAnti$ Cross$
    NaturalJoin UsingJoin
    """
)

MAX_DEPTH = 300  # tree levels; a hostile query nested deeper is refused, not recursed into
_TREE = "org.apache.spark.sql.catalyst.trees.TreeNode"
_PLAN = "org.apache.spark.sql.catalyst.plans.logical.LogicalPlan"
_ITERABLE = "scala.collection.Iterable"
_PRODUCT = "scala.Product"  # tuples, Options' Some, case-class fields that are not nodes
_OPTION = "scala.Option"


@dataclass
class _Found:
    builtins: frozenset[str]  # every function Spark knows (a bare name may resolve to one)
    relations: set[tuple[str, ...]] = field(default_factory=set)
    ctes: set[str] = field(default_factory=set)


_BUILTINS: list[frozenset[str]] = []  # Spark's function names, listed once per process


def _builtin_functions(session: Any) -> frozenset[str]:
    if not _BUILTINS:
        names = _scala_list(session.functionRegistry().listFunction())
        _BUILTINS.append(frozenset(str(f.funcName()).lower() for f in names))
    return _BUILTINS[0]


def first_line(exc: Exception) -> str:
    """An error's first non-blank line: Spark's messages run on with the SQL and a caret."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def check_query(spark: SparkSession, statement: str) -> set[str]:
    """Refuse ``statement`` unless every construct in it is allowed; returns the tables it
    names (lower case, ``layer.name``). The caller must run exactly this text: the check
    is of its parse, and a text that does not parse is refused here."""
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException

    session = spark._jsparkSession.sessionState()
    try:
        plan = session.sqlParser().parsePlan(statement)
    except PySparkException as exc:
        raise ConfigError(f"query: {first_line(exc)}") from None
    except Py4JJavaError as exc:  # the parser's own stack gave out (thousands of levels)
        error = exc.java_exception.getClass().getSimpleName()
        if error != "StackOverflowError":
            raise
        raise ConfigError(f"query: nested deeper than {MAX_DEPTH} levels") from None
    load = spark._jvm.java.lang.Class.forName
    kinds = {name: load(name) for name in (_TREE, _PLAN, _ITERABLE, _PRODUCT, _OPTION)}
    found = _Found(builtins=_builtin_functions(session))
    _walk(plan, kinds, found)
    names = set()
    for parts in found.relations:
        if len(parts) == 1 and parts[0] in found.ctes:
            continue
        if len(parts) != 2:
            raise ConfigError(f"query: table {'.'.join(parts)} is not one of meterlake's tables")
        names.add(".".join(parts))
    return names


def _walk(plan: Any, kinds: dict, found: _Found) -> None:
    """Check every tree node the plan holds, through every field of every node. The walk
    keeps its own stack: a query's depth must not become Python's recursion depth."""
    pending = [(plan, 0)]
    while pending:
        value, depth = pending.pop()
        if value is None or isinstance(value, str | int | float | bool):
            continue
        if kinds[_TREE].isInstance(value):
            if depth > MAX_DEPTH:
                raise ConfigError(f"query: nested deeper than {MAX_DEPTH} levels")
            _check_node(value, kinds, found)
            fields, depth = value.productIterator(), depth + 1
        elif kinds[_ITERABLE].isInstance(value):
            fields = value.iterator()
        elif kinds[_OPTION].isInstance(value) or kinds[_PRODUCT].isInstance(value):
            fields = value.productIterator()
        else:
            continue
        pending.extend((item, depth) for item in _drain(fields))


def _check_node(node: Any, kinds: dict, found: _Found) -> None:
    """Refuse one node unless its kind is listed; note the tables and CTEs it names."""
    kind = node.getClass().getSimpleName()
    is_plan = kinds[_PLAN].isInstance(node)
    if kind not in (PLAN_NODES if is_plan else EXPRESSIONS):
        raise ConfigError(f"query: {_construct(kind)} is not allowed (read-only queries only)")
    if kind == "UnresolvedRelation":
        parts = tuple(str(p).lower() for p in _scala_list(node.multipartIdentifier()))
        if not node.options().isEmpty():
            raise ConfigError(f"query: options on table {'.'.join(parts)} are not allowed")
        found.relations.add(parts)
    elif kind == "UnresolvedAttribute":
        parts = _scala_list(node.nameParts())
        if len(parts) == 1 and str(parts[0]).lower() in found.builtins:
            _allow_function(parts)  # `current_user` without brackets is a function call
    elif kind == "UnresolvedFunction":
        _allow_function(_scala_list(node.nameParts()))
    elif kind == "UnresolvedGenerator":
        _allow_function(_scala_list(node.name().nameParts()))
    elif kind == "UnresolvedWith":
        for pair in _scala_list(node.cteRelations()):
            found.ctes.add(str(pair._1()).lower())


def _allow_function(parts: list) -> None:
    name = ".".join(str(p) for p in parts).lower()
    if name not in FUNCTIONS:
        raise ConfigError(f"query: function {name} is not allowed (see meterlake sql --help)")


def _scala_list(seq: Any) -> list:
    return _drain(seq.iterator())


def _drain(iterator: Any) -> list:
    items = []
    while iterator.hasNext():
        items.append(iterator.next())
    return items


def _construct(kind: str) -> str:
    """A node's kind as a user would name it."""
    named = {
        "UnresolvedTableValuedFunction": "a table-valued function",
        "RelationTimeTravel": "time travel",
        "ExpressionWithUnresolvedIdentifier": "IDENTIFIER(...) with a computed name",
        "PlanWithUnresolvedIdentifier": "IDENTIFIER(...) with a computed name",
        "SetCommand": "SET",
    }
    if kind in named:
        return named[kind]
    if kind.endswith("Command") or kind.endswith("Statement"):
        return f"{kind.removesuffix('Command').removesuffix('Statement')} (a command)"
    return kind.removesuffix("$")
