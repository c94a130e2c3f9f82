"""Calls of functions that take several argument types, pointed at the right registered variant.

DataFusion-python registers a UDF with one exact signature, but ``property_get`` and the JSONB
functions must accept JSONB as ``Dictionary(Int32, Binary)`` or ``Binary``, and properties as
``List<Struct<key, value>>`` or its dictionary. Each such function is registered once per type
(``name`` for the views' type, ``name__binary``, ``name__list``, ``name__dict_list``).

:func:`plan_with_overloads` plans the statement as written. Only when DataFusion refuses a call
of one of these functions for its argument types does it rename call sites: it reads the
refused types from the error, renames one call of that name to the variant for them, and keeps
the renaming. A wrong pick is refused later under the variant's name and renamed again the same
way; a call that is the only one under a refused name is remembered as not taking it, so the
search never flips between two names and ends within a few plans per call. Statements
that use the views' own types are planned once, exactly as before.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import datafusion

from ._read_only_sql import read_only_sql
from ._sql_text import find_calls

__all__ = ["OverloadError", "plan_with_overloads"]

_REFUSED = re.compile(r"call to '(?P<name>\w+)' function: coercion from (?P<types>.*?) to the signature")
_VARIANT_PREFIXES = (
    ("Dictionary(Int32, Binary)", None),
    ("Dictionary(Int32, List(", "dict_list"),
    ("Dictionary(", "dict_list"),
    ("LargeBinary", "binary"),
    ("BinaryView", "binary"),
    ("Binary", "binary"),
    ("FixedSizeBinary", None),
    ("List(", "list"),
    ("LargeList(", "list"),
)


class OverloadError(ValueError):
    """A call of an overloaded function whose argument type none of its variants takes."""


_RESULT_KINDS: dict[str, str | None] = {
    "jsonb_parse": None,
    "jsonb_get": None,
    "jsonb_path_query": None,
    "jsonb_path_query_first": None,
    "properties_to_jsonb": None,
    "properties_to_dict": "dict_list",
    "properties_to_array": "list",
}
"""Functions whose result type is known from the text: None = the views' JSONB type, else a suffix."""


@dataclass(frozen=True)
class _Site:
    name: str  # base name, lower-case
    start: int  # index of the name in the SQL text
    first_arg: str  # text of the first argument


def _sites(sql: str, names: set[str], offset: int = 0) -> list[_Site]:
    sites: list[_Site] = []
    for call in find_calls(sql, names):
        sites.append(_Site(call.name, offset + call.start, call.args[0] if call.args else ""))
        inner_start = call.start + len(call.name)
        sites.extend(_sites(sql[inner_start : call.end], names, offset + inner_start))
    return sorted(sites, key=lambda s: s.start)


def _render(sql: str, names: dict[int, tuple[str, str]]) -> str:
    """``sql`` with the name at each site start replaced (``start → (old, new)``)."""
    out, last = [], 0
    for start in sorted(names):
        old, new = names[start]
        out += [sql[last:start], new]
        last = start + len(old)
    out.append(sql[last:])
    return "".join(out)


def _refusal(exc: BaseException, families: set[str]) -> tuple[str, str, str] | None:
    """``(refused name, its base name, first argument type)`` when ``exc`` is such a refusal."""
    match = _REFUSED.search(str(exc))
    if match is None:
        return None
    name = match.group("name")
    base = name.split("__", 1)[0]
    if base not in families:
        return None
    return name, base, match.group("types")


def _variant(base: str, types: str, variants: dict[str, set[str]]) -> str:
    for prefix, suffix in _VARIANT_PREFIXES:
        if types.startswith(prefix):
            if suffix is None:
                return base
            if suffix in variants.get(base, set()):
                return f"{base}__{suffix}"
            break
    first = types.split(",", 1)[0]
    msg = f"{base}: unsupported argument type {first} (expects JSONB or properties)"
    raise OverloadError(msg)


def plan_with_overloads(
    ctx: datafusion.SessionContext,
    sql: str,
    variants: dict[str, set[str]],
    plan: Callable[[datafusion.SessionContext, str], datafusion.DataFrame] | None = None,
) -> datafusion.DataFrame:
    """Plan ``sql``, renaming calls of overloaded functions to the variants their types need.

    Args:
        ctx: the session, with every variant registered.
        sql: the statement.
        variants: base name → the suffixes registered for it (``binary``, ``list``, …).
        plan: plans a text and reports type errors (default: ``ctx.sql`` then the optimised plan).

    Raises:
        OverloadError: an argument type no variant takes.
        Exception: any other planning error, unchanged.
    """
    run = plan or _plan
    families = set(variants)
    sites = _sites(sql, families)
    if not sites:
        return read_only_sql(ctx, sql)
    try:
        return run(ctx, sql)
    except Exception as exc:  # noqa: BLE001 - DataFusion's planning errors are plain exceptions
        error: BaseException = exc
    chosen = _known(sites, variants)  # site start -> the name it is renamed to
    known = set(chosen)
    wrong: set[tuple[int, str]] = set()  # (site, name) pairs planning refused
    if any(chosen[start] != _name_at(sites, start) for start in chosen):
        try:
            return run(ctx, _render(sql, _renames(sql, sites, chosen)))
        except Exception as exc:  # noqa: BLE001 - the next refusal to resolve, or re-raised below
            error = exc
    for _ in range(2 * len(sites) * (len(_VARIANT_PREFIXES) + 1)):
        refusal = _refusal(error, families)
        if refusal is None:
            raise error
        refused, base, types = refusal
        target = _variant(base, types, variants)
        named = [site for site in sites if chosen.get(site.start, site.name) == refused and site.start not in known]
        if len(named) == 1:  # the only call of that name: it is the refused one
            wrong.add((named[0].start, refused))
        candidates = [site for site in named if (site.start, target) not in wrong]
        if not candidates:
            raise error
        chosen[candidates[0].start] = target
        try:
            return run(ctx, _render(sql, _renames(sql, sites, chosen)))
        except Exception as exc:  # noqa: BLE001 - the next refusal to resolve, or re-raised above
            error = exc
    raise error


def _known(sites: list[_Site], variants: dict[str, set[str]]) -> dict[int, str]:
    """Names of the calls whose first argument is a call with a known result type."""
    chosen: dict[int, str] = {}
    for site in sites:
        inner = find_calls(site.first_arg, set(_RESULT_KINDS))
        if len(inner) != 1 or inner[0].start != 0 or inner[0].end != len(site.first_arg):
            continue
        kind = _RESULT_KINDS[inner[0].name]
        if kind is None:
            chosen[site.start] = site.name
        elif kind in variants.get(site.name, set()):
            chosen[site.start] = f"{site.name}__{kind}"
    return chosen


def _renames(sql: str, sites: Iterable[_Site], chosen: dict[int, str]) -> dict[int, tuple[str, str]]:
    return {start: (sql[start : start + len(_name_at(sites, start))], name) for start, name in chosen.items()}


def _name_at(sites: Iterable[_Site], start: int) -> str:
    return next(site.name for site in sites if site.start == start)


def _plan(ctx: datafusion.SessionContext, sql: str) -> datafusion.DataFrame:
    df = read_only_sql(ctx, sql)
    df.optimized_logical_plan()  # type coercion of WHERE/ORDER BY runs here
    return df
