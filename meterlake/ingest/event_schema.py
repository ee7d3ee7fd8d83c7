"""Event schemas (``schemas/events/v<N>.json``) compiled into Spark validation expressions.

Each JSON Schema file is one ``schema_version``; adding ``v2.json`` needs no code change:
the reader compiles whatever versions it finds. Fields a version declares that bronze has
no column for are kept in ``bronze.events.extra`` as a JSON object.

The compiler supports the JSON Schema keywords an event contract needs (``type``,
``required``, ``properties``, ``additionalProperties``, ``minLength``, ``maxLength``,
``pattern``, ``enum``, ``minimum``, ``maximum``) and refuses a schema that uses any other
validation keyword, so a version is never half-enforced.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meterlake.errors import ConfigError
from meterlake.paths import schemas_dir

if TYPE_CHECKING:
    from pyspark.sql import Column

VALIDATION_KEYWORDS = {
    "type",
    "required",
    "properties",
    "additionalProperties",
    "minLength",
    "maxLength",
    "pattern",
    "enum",
    "minimum",
    "maximum",
}
ANNOTATIONS = {"$schema", "$id", "title", "description", "examples", "default", "$comment"}

# How schema_of_variant names the types JSON values parse into, per JSON Schema type.
_INTEGER_SQL = (
    "{t} IN ('TINYINT', 'SMALLINT', 'INT', 'BIGINT') OR {t} RLIKE '^DECIMAL\\\\([0-9]+,0\\\\)$'"
)
_TYPE_TESTS = {
    "string": "{t} = 'STRING'",
    "integer": _INTEGER_SQL,
    "number": f"{_INTEGER_SQL} OR {{t}} LIKE 'DECIMAL%' OR {{t}} IN ('DOUBLE', 'FLOAT')",
    "boolean": "{t} = 'BOOLEAN'",
    "null": "{t} = 'VOID'",
    "object": "{t} LIKE 'OBJECT%'",
    "array": "{t} LIKE 'ARRAY%'",
}
_JSON_TYPE_OF = (
    "CASE WHEN {t} = 'STRING' THEN 'string' WHEN {t} = 'BOOLEAN' THEN 'boolean' "
    "WHEN {t} = 'VOID' THEN 'null' WHEN {t} LIKE 'OBJECT%' THEN 'object' "
    "WHEN {t} LIKE 'ARRAY%' THEN 'array' ELSE 'number' END"
)


@dataclass(frozen=True)
class EventSchema:
    version: str
    document: dict[str, Any]
    path: Path

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.document.get("properties", {}))


@dataclass(frozen=True)
class Violation:
    """One check: when ``condition`` holds the line is rejected with ``reason`` and ``detail``.

    ``reason`` is a code, or a column when the check forwards another check's verdict.
    """

    condition: Column
    reason: str | Column
    detail: Column


def _check_keywords(node: dict[str, Any], where: str, file: Path) -> None:
    for key, value in node.items():
        if key not in VALIDATION_KEYWORDS and key not in ANNOTATIONS:
            raise ConfigError(f"{file}: {where}{key}: keyword not supported by the event reader")
        if key == "properties":
            for name, sub in value.items():
                _check_keywords(sub, f"{where}properties.{name}.", file)
        if key == "enum" and not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{file}: {where}enum: only string enums are supported")
        if key == "additionalProperties" and not isinstance(value, bool):
            raise ConfigError(f"{file}: {where}additionalProperties: must be true or false")


@cache
def load_event_schemas(directory: Path | None = None) -> dict[str, EventSchema]:
    """Every ``v<N>.json`` in ``schemas/events``, checked against the JSON Schema meta-schema."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    folder = directory or schemas_dir() / "events"
    found: dict[str, EventSchema] = {}
    for file in sorted(folder.glob("v*.json")):
        document = json.loads(file.read_text())
        try:
            Draft202012Validator.check_schema(document)
        except SchemaError as exc:
            raise ConfigError(f"{file}: not a valid JSON Schema: {exc.message}") from exc
        if document.get("type") != "object":
            raise ConfigError(f"{file}: type: an event schema must describe an object")
        _check_keywords(document, "", file)
        found[file.stem[1:]] = EventSchema(file.stem[1:], document, file)
    if not found:
        raise ConfigError(f"{folder}: no event schema (v1.json) found")
    return found


def json_path(parts: tuple[str, ...]) -> str:
    """Variant path for nested keys: ``("sdk", "name")`` → ``$['sdk']['name']``."""
    return "$" + "".join("['" + part.replace("'", "\\'") + "']" for part in parts)


def kind_column(at: tuple[str, ...]) -> str:
    """Name of the column holding ``schema_of_variant`` of the field at ``at``."""
    return "_k_" + "__".join(at)


def text_column(at: tuple[str, ...]) -> str:
    """Name of the column holding the field's value when it is a JSON string."""
    return "_s_" + "__".join(at)


def field_columns(
    schemas: dict[str, EventSchema],
    variant: str = "v",
    core: tuple[tuple[str, ...], ...] = (),
) -> dict[str, Column]:
    """Per-field type and string value, computed once per row for every version's checks.

    The checks read these columns instead of repeating ``schema_of_variant`` (which costs a
    type walk per call) for each keyword. ``core`` adds fields the reader itself needs
    whether or not a version declares them.
    """
    from pyspark.sql import functions as F

    columns: dict[str, Column] = {}

    def add(path: tuple[str, ...]) -> None:
        value = f'variant_get({variant}, "{json_path(path)}")'
        kind = F.expr(f"schema_of_variant({value})")
        columns[kind_column(path)] = kind
        columns[text_column(path)] = F.when(
            kind == "STRING",
            F.expr(f"try_variant_get({variant}, \"{json_path(path)}\", 'string')"),
        )

    def visit(node: dict[str, Any], at: tuple[str, ...]) -> None:
        for name, sub in node.get("properties", {}).items():
            add((*at, name))
            visit(sub, (*at, name))

    for path in core:
        add(path)
    for schema in schemas.values():
        visit(schema.document, ())
    return columns


def violations(schema: EventSchema, variant: str = "v", raw_text: str = "value") -> list[Violation]:
    """Ordered checks for one schema version; needs the `field_columns` and the raw JSON text
    (``raw_text``) beside the variant column."""
    return _object_violations(schema.document, (), variant, raw_text)


def _object_violations(
    node: dict[str, Any], at: tuple[str, ...], v: str, raw_text: str
) -> list[Violation]:
    found = _own_violations(node, at, v, raw_text)
    for name, sub in node.get("properties", {}).items():
        found.extend(field_violations(sub, (*at, name), v, raw_text))
    return found


def _own_violations(
    node: dict[str, Any], at: tuple[str, ...], v: str, raw_text: str
) -> list[Violation]:
    """The checks of the object at ``at`` itself: a field it requires, a key it does not
    declare (with ``additionalProperties: false``); not those of its fields."""
    from pyspark.sql import functions as F

    prefix = ".".join(at) + "." if at else ""
    found = [
        Violation(
            F.col(kind_column((*at, name))).isNull(),
            "missing_field",
            F.lit(f"{prefix}{name}: is required"),
        )
        for name in node.get("required", [])
    ]
    if node.get("additionalProperties") is False:
        found.append(_unknown_violation(node, at, v, raw_text))
    return found


def _unknown_violation(
    node: dict[str, Any], at: tuple[str, ...], v: str, raw_text: str
) -> Violation:
    from pyspark.sql import functions as F

    prefix = ".".join(at) + "." if at else ""
    allowed = ", ".join(f"'{name}'" for name in node.get("properties", {})) or "''"
    source = f'to_json(variant_get({v}, "{json_path(at)}"))' if at else raw_text
    unknown = f"array_except(json_object_keys({source}), array({allowed}))"
    return Violation(
        F.expr(f"size({unknown}) > 0"),
        "unknown_field",
        F.expr(f"concat('{prefix}', array_join({unknown}, ', '), ': unknown field')"),
    )


def top_level_violations(
    schema: EventSchema, v: str = "v", raw_text: str = "value"
) -> list[Violation]:
    """The checks of the document itself (required and unknown fields), not of its fields."""
    return _own_violations(schema.document, (), v, raw_text)


def field_violations(
    node: dict[str, Any], at: tuple[str, ...], v: str = "v", raw_text: str = "value"
) -> list[Violation]:
    """The checks of the field at ``at``: its type, its keyword rules, nested fields."""
    from pyspark.sql import functions as F

    path = json_path(at)
    label = ".".join(at)
    kind = f"`{kind_column(at)}`"
    text = f"`{text_column(at)}`"

    def typed(test: str) -> str:
        return test.replace("{t}", kind)

    found: list[Violation] = []
    types = node.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        test = " OR ".join(f"({typed(_TYPE_TESTS[name])})" for name in names)
        expected = " or ".join(names)
        found.append(
            Violation(
                F.expr(f"{kind} IS NOT NULL AND NOT ({test})"),
                "wrong_type",
                F.expr(f"concat('{label}: expected {expected}, got ', {typed(_JSON_TYPE_OF)})"),
            )
        )
    number = (
        f"CASE WHEN NOT ({typed(_TYPE_TESTS['number'])}) THEN NULL "
        f"ELSE try_variant_get({v}, \"{path}\", 'double') END"
    )
    rules = {
        "minLength": (f"char_length({text}) < {{0}}", "shorter than {0} characters"),
        "maxLength": (f"char_length({text}) > {{0}}", "longer than {0} characters"),
        "minimum": (f"{number} < {{0}}", "must be at least {0}"),
        "maximum": (f"{number} > {{0}}", "must be at most {0}"),
    }
    for keyword, (condition, message) in rules.items():
        if keyword in node:
            found.append(
                Violation(
                    F.expr(condition.format(node[keyword])),
                    "invalid_value",
                    F.lit(f"{label}: {message.format(node[keyword])}"),
                )
            )
    if "pattern" in node:
        found.append(
            Violation(
                F.expr(f"NOT regexp_like({text}, {_sql_string(node['pattern'])})"),
                "invalid_value",
                F.lit(f"{label}: does not match {node['pattern']}"),
            )
        )
    if "enum" in node:
        options = ", ".join(_sql_string(item) for item in node["enum"])
        found.append(
            Violation(
                F.expr(f"{kind} IS NOT NULL AND NOT coalesce({text} IN ({options}), false)"),
                "invalid_value",
                F.lit(f"{label}: must be one of {', '.join(node['enum'])}"),
            )
        )
    if node.get("properties") or node.get("required") or "additionalProperties" in node:
        nested = _object_violations(node, at, v, raw_text)
        object_test = typed(_TYPE_TESTS["object"])
        found.extend(
            Violation(F.expr(object_test) & item.condition, item.reason, item.detail)
            for item in nested
        )
    return found


def _sql_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
