"""``sirius keys mint|list|revoke|import|group``: database keys and stored groups, from a shell.

A thin layer over ``sirius.identity``'s key management. It talks to PostgreSQL directly
(``--sql-connection-string`` or ``MICROMEGAS_SQL_CONNECTION_STRING``), so whoever can run it is
trusted as an admin of the deployment; running services see every change within a second
(PostgreSQL notifies them) and at worst within ``MICROMEGAS_API_KEY_CACHE_TTL_SECONDS``.

``import`` reads Micromegas's keyring shape, a JSON list of ``{"name", "key"}`` objects with an
optional ``"audience"`` (ingestion only), from an environment variable (default: the kind's
``MICROMEGAS_INGESTION_API_KEYS``/``MICROMEGAS_ANALYTICS_API_KEYS``, else ``MICROMEGAS_API_KEYS``,
as Micromegas's ``micromegas-import-keys``) or from a file.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import asyncpg

from ..identity import (
    ADMINS_GROUP,
    EnvKeys,
    KeyInfo,
    KeyKind,
    add_group_member,
    import_key,
    list_group_members,
    list_keys,
    mint_key,
    remove_group_member,
    revoke_key,
)
from ..lakehouse import LakehouseConfig, migrate
from ._exceptions import AdminError

__all__ = ["add_keys_parser", "keys_command"]

_T = TypeVar("_T")

# Micromegas's import defaults: each kind's own variable, then the shared one.
_DEFAULT_VAR = {"ingestion": "MICROMEGAS_INGESTION_API_KEYS", "analytics": "MICROMEGAS_ANALYTICS_API_KEYS"}
_FALLBACK_VAR = "MICROMEGAS_API_KEYS"


def add_keys_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``sirius keys``."""
    keys = sub.add_parser("keys", help="mint, list, revoke and import API keys; stored groups (admins)")
    keys.add_argument("--sql-connection-string", help="PostgreSQL URI (default: $MICROMEGAS_SQL_CONNECTION_STRING)")
    keys.add_argument("--by", help="who makes the change, as recorded (default: cli:<login name>)")
    actions = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")

    mint = actions.add_parser("mint", help="create a key and print its secret (once: only its hash is stored)")
    mint.add_argument("--kind", choices=["ingestion", "analytics"], required=True, help="where the key works")
    mint.add_argument("--name", required=True, help="the principal's name (shown in audits)")
    mint.add_argument(
        "--audience",
        action="append",
        default=[],
        help="ingestion: the one audience it writes (default public); analytics: an audience it reads (repeatable)",
    )
    mint.add_argument("--admin", action="store_true", help="also add NAME to the admins group")
    mint.add_argument("--secret-only", action="store_true", help="print only the secret (for scripts)")

    listing = actions.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--kind", choices=["ingestion", "analytics"], help="one kind only")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    listing.add_argument("--json", action="store_true", help="JSON lines instead of a table")

    revoke = actions.add_parser("revoke", help="revoke a key: every running service refuses it within seconds")
    revoke.add_argument("key_id", help="the key's id (sirius keys list)")

    imports = actions.add_parser("import", help="store existing keys (MICROMEGAS_API_KEYS-style JSON)")
    imports.add_argument("--kind", choices=["ingestion", "analytics"], required=True, help="which table")
    imports.add_argument("--source", choices=["env", "file"], default="env", help="where the keyring is")
    imports.add_argument("--var", help="variable holding the keyring (default: the kind's, else MICROMEGAS_API_KEYS)")
    imports.add_argument("--path", help="file holding the keyring (--source file)")
    selection = imports.add_mutually_exclusive_group()
    selection.add_argument("--only", nargs="+", metavar="NAME", help="import only these entries")
    selection.add_argument("--exclude", nargs="+", metavar="NAME", help="import every entry but these")
    imports.add_argument("--audience", help="write audience of imported ingestion keys without their own")

    group = actions.add_parser("group", help=f"stored group membership (the {ADMINS_GROUP!r} group makes admins)")
    group.add_argument("group_action", choices=["add", "remove", "list"])
    group.add_argument("group", nargs="?", help=f"group name (e.g. {ADMINS_GROUP})")
    group.add_argument("member", nargs="?", help="key name, OIDC email or subject")


async def keys_command(args: argparse.Namespace) -> int:
    """Run ``sirius keys …``; 0 on success, 1 when an import left a key out.

    Raises:
        AdminError: a bad flag combination or keyring (nothing changed).
        IdentityError: the change was refused (bad name or audience, unknown key id).
        LakehouseError: PostgreSQL is unreachable or not configured.
    """
    if args.keys_command == "import":
        entries = _read_keyring(args)  # before connecting: a bad keyring changes nothing
    dsn = LakehouseConfig.resolve_dsn(args.sql_connection_string)
    await migrate(dsn)
    by = args.by or f"cli:{getpass.getuser()}"

    async def on(action: Callable[[asyncpg.Connection], Awaitable[_T]]) -> _T:
        conn = await asyncpg.connect(dsn, timeout=10.0)
        try:
            return await action(conn)
        finally:
            await conn.close()

    if args.keys_command == "mint":
        minted = await on(
            lambda c: mint_key(
                c, KeyKind(args.kind), args.name, created_by=by, audiences=args.audience, admin=args.admin
            )
        )
        if args.secret_only:
            print(minted.secret)
            return 0
        rows = [("key_id", str(minted.key_id)), ("kind", minted.kind.value), ("name", minted.name)]
        rows += [("audiences", ",".join(minted.audiences) or "-"), ("admin", "yes" if minted.admin else "no")]
        rows.append(("secret", minted.secret))
        _print_rows(rows)
        print("the secret is shown only now: store it (only its SHA-256 is kept)", file=sys.stderr)
        return 0
    if args.keys_command == "list":
        kind = KeyKind(args.kind) if args.kind else None
        keys = await on(lambda c: list_keys(c, kind, include_revoked=args.all))
        _print_keys(keys, as_json=args.json)
        return 0
    if args.keys_command == "revoke":
        info = await on(lambda c: revoke_key(c, args.key_id, revoked_by=by))
        print(f"revoked {info.kind.value} key {info.key_id} ({info.name})")
        return 0
    if args.keys_command == "import":
        return await on(lambda c: _import(c, args, entries, by))
    return await on(lambda c: _group(c, args, by))


def _read_keyring(args: argparse.Namespace) -> list[tuple[str, str, str | None]]:
    if args.source == "file":
        if not args.path:
            raise AdminError("--source file needs --path")
        try:
            text = Path(args.path).read_text(encoding="utf-8")
        except OSError as exc:
            msg = f"cannot read {args.path}: {exc}"
            raise AdminError(msg) from None
    else:
        names = [args.var] if args.var else [_DEFAULT_VAR[args.kind], _FALLBACK_VAR]
        text = next((os.environ[name] for name in names if name in os.environ), None)
        if text is None:
            msg = f"{' nor '.join(names)} is set"
            raise AdminError(msg)
    keyring = EnvKeys.parse(text)
    audiences = dict(keyring.audiences)
    if audiences and args.kind != "ingestion":
        raise AdminError("an entry's 'audience' is only valid with --kind ingestion")
    if args.audience and args.kind != "ingestion":
        raise AdminError("--audience is only valid with --kind ingestion")
    entries = [(name, key, audiences.get(name)) for name, key in keyring.keys]
    known = {name for name, _, _ in entries}
    chosen = set(args.only or args.exclude or ())
    if chosen - known:
        msg = f"not in the keyring: {', '.join(sorted(chosen - known))}"
        raise AdminError(msg)
    if args.only:
        return [entry for entry in entries if entry[0] in chosen]
    return [entry for entry in entries if entry[0] not in chosen]


async def _import(
    conn: asyncpg.Connection, args: argparse.Namespace, entries: list[tuple[str, str, str | None]], by: str
) -> int:
    ok = True
    for name, key, audience in entries:
        result = await import_key(
            conn, KeyKind(args.kind), name, key, created_by=by, audience=audience or args.audience
        )
        if result.imported:
            print(f"{name}: imported (key_id={result.key_id})")
        elif result.revoked:
            print(f"{name}: already present (revoked) (key_id={result.key_id})")
            ok = False
        else:
            print(f"{name}: already present (key_id={result.key_id})")
    if not entries:
        print("no keys selected to import")
    return 0 if ok else 1


async def _group(conn: asyncpg.Connection, args: argparse.Namespace, by: str) -> int:
    if args.group_action == "list":
        for group, member in await list_group_members(conn, args.group):
            print(f"{group}\t{member}")
        return 0
    if not args.group or not args.member:
        msg = f"group {args.group_action} needs GROUP and MEMBER"
        raise AdminError(msg)
    if args.group_action == "add":
        added = await add_group_member(conn, args.group, args.member, created_by=by)
        print(f"{args.member} {'added to' if added else 'already in'} {args.group}")
    else:
        removed = await remove_group_member(conn, args.group, args.member)
        print(f"{args.member} {'removed from' if removed else 'was not in'} {args.group}")
    return 0


def _print_rows(rows: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def _print_keys(keys: list[KeyInfo], *, as_json: bool) -> None:
    if as_json:
        for key in keys:
            record = {
                "key_id": str(key.key_id),
                "kind": key.kind.value,
                "name": key.name,
                "audiences": list(key.audiences),
                "created_at": key.created_at.isoformat(),
                "created_by": key.created_by,
                "last_used_at": key.last_used_at.isoformat() if key.last_used_at else None,
                "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
                "revoked_by": key.revoked_by,
            }
            print(json.dumps(record))
        return
    header = ("KEY_ID", "KIND", "NAME", "AUDIENCES", "CREATED", "LAST USED", "REVOKED")
    table = [header]
    for key in keys:
        table.append(
            (
                str(key.key_id),
                key.kind.value,
                key.name,
                ",".join(key.audiences) or "-",
                key.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                key.last_used_at.strftime("%Y-%m-%d %H:%M:%S") if key.last_used_at else "-",
                key.revoked_at.strftime("%Y-%m-%d %H:%M:%S") if key.revoked_at else "-",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
