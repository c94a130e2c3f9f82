"""Deny-rule expressions (SQL subset, three-valued logic) and the SQL fingerprint, on fixed inputs."""

from __future__ import annotations

import pytest

from sirius.lakehouse import MatchExpressionError, sql_fingerprint
from sirius.lakehouse._query_deny_list import compile_match_expr

CONTEXT = {
    "user_id": "mallory",
    "email": "mallory@corp.com",
    "client": "python",
    "sql": "SELECT * FROM thread_spans WHERE x = 1",
    "notebook": None,
    "client_ip": "10.4.9.221",
}


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("user_id = 'mallory'", True),
        ("user_id <> 'mallory'", False),
        ("user_id != 'bob'", True),
        ("USER_ID = 'mallory' and client = 'grafana'", False),
        ("sql LIKE '%thread_spans%' OR client_ip = '10.0.0.1'", True),
        ("sql LIKE 'select%'", False),  # LIKE is case-sensitive
        ("sql ILIKE 'select%'", True),
        ("sql NOT LIKE '%thread\\_spans%'", True),  # no escape character: '\' is literal
        ("email LIKE 'mallory@corp.co_'", True),
        ("client IN ('grafana', 'python')", True),
        ("client NOT IN ('grafana', 'python')", False),
        ("notebook = 'fleet'", None),  # NULL column: unknown, so the rule does not fire
        ("NOT notebook = 'fleet'", None),
        ("notebook = 'fleet' OR user_id = 'mallory'", True),
        ("notebook = 'fleet' AND user_id = 'mallory'", None),
        ("notebook = 'fleet' AND user_id = 'bob'", False),
        ("notebook IS NULL", True),
        ("notebook IS NOT NULL", False),
        ("(client = 'x' OR client = 'python') AND NOT (user_id = 'bob')", True),
        ("user_id = 'it''s'", False),
        ("client IN ('x', NULL)", None),
    ],
)
def test_expressions(expr: str, expected: bool | None) -> None:
    assert compile_match_expr(expr)(CONTEXT) is expected


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("'a' = 'a'", "names no column"),
        ("nobody = 'x'", "unknown column 'nobody' at position 1"),
        ("user_id = ", "expected a column name or a '…' string at position 11"),
        ("user_id = 'x", "unterminated string literal at position 11"),
        ("user_id", "expected a comparison"),
        ("user_id = 'a' AND", "position 18"),
        ("(user_id = 'a'", "expected ')'"),
        ("user_id LIKE client", "expected a '…' pattern after LIKE"),
        ("user_id = 'a' user_id", "expected AND, OR or the end"),
        ("user_id = 'a'; DROP TABLE x", "unexpected ';'"),
        ("user_id IS 'x'", "expected NULL after IS"),
        ("user_id = " + "'x' OR user_id = " * 300 + "'y'", "longer than"),
    ],
)
def test_bad_expressions_are_refused(expr: str, message: str) -> None:
    with pytest.raises(MatchExpressionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compile_match_expr(expr)


def test_fingerprint_ignores_literals_whitespace_comments_and_keyword_case() -> None:
    a = sql_fingerprint("SELECT * FROM log_entries WHERE time > '2024-01-01' LIMIT 10")
    b = sql_fingerprint("select *\n  from log_entries -- refresh\n where time > '2025-06-01' limit 500")
    assert a == b
    assert len(a) == 16
    assert int(a, 16) >= 0
    # quoted identifiers keep their case and text; different tables differ
    assert sql_fingerprint('SELECT "A" FROM t') != sql_fingerprint('SELECT "a" FROM t')
    assert sql_fingerprint("SELECT * FROM log_entries") != sql_fingerprint("SELECT * FROM measures")
