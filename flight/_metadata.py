"""FlightSQL metadata results: ``GetSqlInfo``, ``GetTables``, catalogs, schemas, table types, keys.

Schemas follow ``FlightSql.proto``. ``GetSqlInfo`` rows come in a fixed order that satisfies
both Grafana front ends (micromegas-query.md §12.2): exactly 17 ids below 508 first, then 508
(keywords), 509 (numeric functions), 510 (string functions), 511 (system functions), 512
(date-time functions) at rows 17-21, then the rest. The upstream plugin reads those lists by row
position; the Micromegas fork looks them up by id.

Sirius serves one unnamed catalog and schema (``""``, as Micromegas does) holding the global
views, with table type ``table``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa

__all__ = [
    "CATALOGS_SCHEMA",
    "DB_SCHEMAS_SCHEMA",
    "KEYS_SCHEMA",
    "PRIMARY_KEYS_SCHEMA",
    "SQL_INFO_SCHEMA",
    "TABLES_SCHEMA",
    "TABLES_SCHEMA_WITH_SCHEMA",
    "TABLE_TYPE",
    "TABLE_TYPES_SCHEMA",
    "catalogs_table",
    "db_schemas_table",
    "like_to_regex",
    "sql_info_table",
    "table_types_table",
    "tables_table",
]

TABLE_TYPE = "table"
_CATALOG = ""
_DB_SCHEMA = ""

_STRING_LIST = pa.list_(pa.field("item", pa.utf8()))
_INT_MAP = pa.map_(pa.int32(), pa.list_(pa.field("item", pa.int32())))
_VALUE_TYPE = pa.dense_union(
    [
        pa.field("string_value", pa.utf8()),
        pa.field("bool_value", pa.bool_()),
        pa.field("bigint_value", pa.int64()),
        pa.field("int32_bitmask", pa.int32()),
        pa.field("string_list", _STRING_LIST),
        pa.field("int32_to_int32_list_map", _INT_MAP),
    ],
    type_codes=[0, 1, 2, 3, 4, 5],
)
SQL_INFO_SCHEMA = pa.schema(
    [pa.field("info_name", pa.uint32(), nullable=False), pa.field("value", _VALUE_TYPE, nullable=False)]
)
CATALOGS_SCHEMA = pa.schema([pa.field("catalog_name", pa.utf8(), nullable=False)])
DB_SCHEMAS_SCHEMA = pa.schema(
    [pa.field("catalog_name", pa.utf8()), pa.field("db_schema_name", pa.utf8(), nullable=False)]
)
TABLE_TYPES_SCHEMA = pa.schema([pa.field("table_type", pa.utf8(), nullable=False)])
TABLES_SCHEMA = pa.schema(
    [
        pa.field("catalog_name", pa.utf8()),
        pa.field("db_schema_name", pa.utf8()),
        pa.field("table_name", pa.utf8(), nullable=False),
        pa.field("table_type", pa.utf8(), nullable=False),
    ]
)
TABLES_SCHEMA_WITH_SCHEMA = TABLES_SCHEMA.append(pa.field("table_schema", pa.binary(), nullable=False))
PRIMARY_KEYS_SCHEMA = pa.schema(
    [
        pa.field("catalog_name", pa.utf8()),
        pa.field("db_schema_name", pa.utf8()),
        pa.field("table_name", pa.utf8(), nullable=False),
        pa.field("column_name", pa.utf8(), nullable=False),
        pa.field("key_name", pa.utf8()),
        pa.field("key_sequence", pa.int32(), nullable=False),
    ]
)
KEYS_SCHEMA = pa.schema(
    [
        pa.field("pk_catalog_name", pa.utf8()),
        pa.field("pk_db_schema_name", pa.utf8()),
        pa.field("pk_table_name", pa.utf8(), nullable=False),
        pa.field("pk_column_name", pa.utf8(), nullable=False),
        pa.field("fk_catalog_name", pa.utf8()),
        pa.field("fk_db_schema_name", pa.utf8()),
        pa.field("fk_table_name", pa.utf8(), nullable=False),
        pa.field("fk_column_name", pa.utf8(), nullable=False),
        pa.field("key_sequence", pa.int32(), nullable=False),
        pa.field("fk_key_name", pa.utf8()),
        pa.field("pk_key_name", pa.utf8()),
        pa.field("update_rule", pa.uint8(), nullable=False),
        pa.field("delete_rule", pa.uint8(), nullable=False),
    ]
)

SQL_KEYWORDS = [
    "ALL",
    "AND",
    "ANY",
    "ARRAY",
    "AS",
    "ASC",
    "BETWEEN",
    "BY",
    "CASE",
    "CAST",
    "COPY",
    "CREATE",
    "CROSS",
    "CUBE",
    "CURRENT",
    "DATE",
    "DAY",
    "DESC",
    "DESCRIBE",
    "DISTINCT",
    "ELSE",
    "END",
    "EXCEPT",
    "EXISTS",
    "EXPLAIN",
    "EXTERNAL",
    "FALSE",
    "FILTER",
    "FIRST",
    "FOLLOWING",
    "FOR",
    "FROM",
    "FULL",
    "GROUP",
    "GROUPING",
    "HAVING",
    "HOUR",
    "IN",
    "INNER",
    "INTERSECT",
    "INTERVAL",
    "INTO",
    "IS",
    "JOIN",
    "LAST",
    "LATERAL",
    "LEFT",
    "LIKE",
    "ILIKE",
    "LIMIT",
    "MINUTE",
    "MONTH",
    "NATURAL",
    "NOT",
    "NULL",
    "NULLS",
    "OFFSET",
    "ON",
    "OR",
    "ORDER",
    "OUTER",
    "OVER",
    "PARTITION",
    "PRECEDING",
    "QUALIFY",
    "RANGE",
    "RECURSIVE",
    "RIGHT",
    "ROLLUP",
    "ROW",
    "ROWS",
    "SECOND",
    "SELECT",
    "SEMI",
    "ANTI",
    "SET",
    "SHOW",
    "SIMILAR",
    "SOME",
    "TABLE",
    "TABLES",
    "THEN",
    "TIME",
    "TIMESTAMP",
    "TO",
    "TRUE",
    "UNBOUNDED",
    "UNION",
    "UNNEST",
    "USING",
    "VALUES",
    "VIEW",
    "WHEN",
    "WHERE",
    "WINDOW",
    "WITH",
    "YEAR",
]
NUMERIC_FUNCTIONS = [
    "abs",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atan2",
    "atanh",
    "cbrt",
    "ceil",
    "cos",
    "cosh",
    "cot",
    "degrees",
    "exp",
    "factorial",
    "floor",
    "gcd",
    "isnan",
    "iszero",
    "lcm",
    "ln",
    "log",
    "log10",
    "log2",
    "nanvl",
    "pi",
    "pow",
    "power",
    "radians",
    "random",
    "round",
    "signum",
    "sin",
    "sinh",
    "sqrt",
    "tan",
    "tanh",
    "trunc",
    "avg",
    "count",
    "max",
    "min",
    "sum",
    "median",
    "stddev",
    "stddev_pop",
    "var",
    "var_pop",
    "approx_distinct",
    "approx_median",
    "approx_percentile_cont",
    "corr",
    "covar_samp",
    "covar_pop",
    "make_histogram",
    "sum_histograms",
    "quantile_from_histogram",
    "variance_from_histogram",
    "count_from_histogram",
    "sum_from_histogram",
    "rgba",
    "lerp_color",
    "color_scale",
    "bin_center",
    "lerp",
    "unlerp",
]
STRING_FUNCTIONS = [
    "ascii",
    "bit_length",
    "btrim",
    "char_length",
    "character_length",
    "chr",
    "concat",
    "concat_ws",
    "ends_with",
    "find_in_set",
    "initcap",
    "instr",
    "left",
    "length",
    "levenshtein",
    "lower",
    "lpad",
    "ltrim",
    "octet_length",
    "overlay",
    "position",
    "repeat",
    "replace",
    "reverse",
    "right",
    "rpad",
    "rtrim",
    "split_part",
    "starts_with",
    "strpos",
    "substr",
    "substr_index",
    "substring",
    "translate",
    "trim",
    "upper",
    "uuid",
    "regexp_like",
    "regexp_match",
    "regexp_replace",
    "regexp_count",
    "encode",
    "decode",
    "md5",
    "sha256",
    "digest",
    "string_agg",
    "array_agg",
]
SYSTEM_FUNCTIONS = [
    "arrow_cast",
    "arrow_typeof",
    "coalesce",
    "nullif",
    "nvl",
    "nvl2",
    "greatest",
    "least",
    "array_has",
    "array_position",
    "array_length",
    "cardinality",
    "unnest",
    "named_struct",
    "get_field",
    "view_instance",
    "property_get",
    "properties_length",
    "jsonb_parse",
    "jsonb_get",
    "jsonb_format_json",
    "jsonb_as_string",
    "jsonb_as_f64",
    "jsonb_as_i64",
    "jsonb_object_keys",
    "jsonb_array_length",
    "jsonb_each",
    "jsonb_array_elements",
    "jsonb_path_query",
    "jsonb_path_query_first",
    "properties_to_jsonb",
    "properties_to_dict",
    "properties_to_array",
    "parse_block",
    "get_payload",
    "expand_histogram",
    "list_partitions",
    "list_view_sets",
    "process_spans",
    "perfetto_trace_chunks",
    "retire_partitions",
    "materialize_partitions",
    "regenerate_partitions",
    "retire_partition_by_file",
    "retire_partition_by_metadata",
    "list_view_set_definitions",
]
DATETIME_FUNCTIONS = [
    "current_date",
    "current_time",
    "date_bin",
    "date_part",
    "date_trunc",
    "datepart",
    "datetrunc",
    "from_unixtime",
    "make_date",
    "now",
    "to_char",
    "to_date",
    "to_timestamp",
    "to_timestamp_micros",
    "to_timestamp_millis",
    "to_timestamp_nanos",
    "to_timestamp_seconds",
    "to_unixtime",
]

# SqlSupportedCaseSensitivity.SQL_CASE_SENSITIVITY_LOWERCASE: unquoted identifiers are folded.
_CASE_LOWERCASE = 3
# SqlNullOrdering.SQL_NULLS_SORTED_HIGH (DataFusion: NULLS LAST for ASC).
_NULLS_SORTED_HIGH = 0


def _info_rows(name: str, version: str, arrow_version: str, timeout_ms: int) -> list[tuple[int, int, Any]]:
    """``(info id, union type code, value)`` in the served order (see the module docstring)."""
    first = [
        (0, 0, name),
        (1, 0, version),
        (2, 0, arrow_version),
        (3, 1, True),  # read only: no DML or DDL through FlightSQL
        (4, 1, True),  # SQL queries
        (5, 1, False),  # Substrait
        (6, 0, ""),
        (7, 0, ""),
        (8, 3, 0),  # transactions: none
        (9, 1, False),  # cancel
        (100, 3, min(timeout_ms, 2**31 - 1)),
        (101, 3, 0),
        (500, 1, False),
        (501, 1, False),
        (502, 1, False),
        (503, 3, _CASE_LOWERCASE),
        (504, 0, '"'),
    ]
    lists = [
        (508, 4, SQL_KEYWORDS),
        (509, 4, NUMERIC_FUNCTIONS),
        (510, 4, STRING_FUNCTIONS),
        (511, 4, SYSTEM_FUNCTIONS),
        (512, 4, DATETIME_FUNCTIONS),
    ]
    rest = [(505, 3, _CASE_LOWERCASE), (506, 1, True), (507, 3, _NULLS_SORTED_HIGH)]
    return first + lists + rest


def sql_info_table(
    requested: Sequence[int], *, name: str, version: str, arrow_version: str, timeout_ms: int = 0
) -> pa.Table:
    """The ``GetSqlInfo`` result (all infos when ``requested`` is empty), as a dense union table."""
    rows = _info_rows(name, version, arrow_version, timeout_ms)
    if requested:
        wanted = set(requested)
        rows = [row for row in rows if row[0] in wanted]
    children: dict[int, list[Any]] = {code: [] for code in range(6)}
    type_ids, offsets = [], []
    for _, code, value in rows:
        type_ids.append(code)
        offsets.append(len(children[code]))
        children[code].append(list(value) if code == 4 else value)
    child_types = [field.type for field in _VALUE_TYPE]
    arrays = [pa.array(children[code], child_types[code]) for code in range(6)]
    union = pa.UnionArray.from_dense(
        pa.array(type_ids, pa.int8()),
        pa.array(offsets, pa.int32()),
        arrays,
        [field.name for field in _VALUE_TYPE],
        list(range(6)),
    )
    return pa.Table.from_arrays([pa.array([row[0] for row in rows], pa.uint32()), union], schema=SQL_INFO_SCHEMA)


def like_to_regex(pattern: str | None) -> re.Pattern[str] | None:
    r"""A SQL ``LIKE`` pattern (``%`` any run, ``_`` one char, ``\\`` escapes) as a regex; None = all."""
    if pattern is None:
        return None
    out, escaped = [], False
    for ch in pattern:
        if escaped:
            out.append(re.escape(ch))
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def _matches(regex: re.Pattern[str] | None, text: str) -> bool:
    return regex is None or regex.fullmatch(text) is not None


def catalogs_table() -> pa.Table:
    """``GetCatalogs``: the one unnamed catalog."""
    return pa.table({"catalog_name": [_CATALOG]}, schema=CATALOGS_SCHEMA)


def db_schemas_table(catalog: str | None, schema_pattern: str | None) -> pa.Table:
    """``GetDbSchemas`` filtered by catalog and schema pattern."""
    rows = []
    if catalog in (None, _CATALOG) and _matches(like_to_regex(schema_pattern), _DB_SCHEMA):
        rows.append({"catalog_name": _CATALOG, "db_schema_name": _DB_SCHEMA})
    return pa.Table.from_pylist(rows, schema=DB_SCHEMAS_SCHEMA)


def table_types_table() -> pa.Table:
    """``GetTableTypes``."""
    return pa.table({"table_type": [TABLE_TYPE]}, schema=TABLE_TYPES_SCHEMA)


def tables_table(
    tables: Iterable[tuple[str, pa.Schema]],
    *,
    catalog: str | None,
    schema_pattern: str | None,
    table_pattern: str | None,
    table_types: Sequence[str],
    include_schema: bool,
) -> pa.Table:
    """``GetTables``: one row per table that passes the filters, sorted by name.

    A type filter matches our ``table`` when it lists ``table`` or ``BASE TABLE`` (Grafana asks
    for both; DataFusion's information schema calls them ``BASE TABLE``).
    """
    wanted_types = {t.lower() for t in table_types}
    type_ok = not wanted_types or bool(wanted_types & {TABLE_TYPE, "base table"})
    schema_ok = catalog in (None, _CATALOG) and _matches(like_to_regex(schema_pattern), _DB_SCHEMA)
    name_regex = like_to_regex(table_pattern)
    rows = []
    if type_ok and schema_ok:
        for name, schema in sorted(tables, key=lambda item: item[0]):
            if not _matches(name_regex, name):
                continue
            row: dict[str, Any] = {
                "catalog_name": _CATALOG,
                "db_schema_name": _DB_SCHEMA,
                "table_name": name,
                "table_type": TABLE_TYPE,
            }
            if include_schema:
                row["table_schema"] = schema.serialize().to_pybytes()
            rows.append(row)
    return pa.Table.from_pylist(rows, schema=TABLES_SCHEMA_WITH_SCHEMA if include_schema else TABLES_SCHEMA)
