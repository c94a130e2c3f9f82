"""The Explore pages: ``index.html`` for every page path (the page's router reads the URL) and its assets.

* ``GET /`` and the deep links (``/services``, ``/service/<name>``, ``/traces``,
  ``/trace/<hex>``, ``/logs``, ``/metrics``, ``/processes``, ``/process/<uuid>``, ``/sql``)
  answer ``static/index.html``;
* ``GET /explore/static/<file>`` answers the file of ``static/`` with its content type; paths
  that leave the directory (``..``, absolute, symlinks out of it) or name a directory are 404.

No key is needed: these files hold no data (the API behind them checks keys). Files are read
from the installed package on every request (they are small), so no restart is needed while
editing them. ``index.html`` is served with its asset links versioned,
``/explore/static/@<version>/app.js`` (the version: a hash of the static files' names, sizes and
mtimes); a versioned asset of the current version may be cached for a year, so a reload or a
second page costs no module request, and an edit changes the version. The modules' relative
imports keep the version. Unversioned paths answer the same files with ``no-cache``.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
from pathlib import Path

from aiohttp import web

__all__ = ["PAGE_PATHS", "STATIC_DIR", "STATIC_PREFIX", "add_static_routes", "asset_version", "index_html"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_PREFIX = "/explore/static"
PAGE_PATHS = (
    "/",
    "/services",
    "/service/{name:.+}",
    "/traces",
    "/trace/{trace_id}",
    "/logs",
    "/metrics",
    "/processes",
    "/process/{process_id}",
    "/sql",
)
_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain",
    ".map": "application/json",
}
_NO_CACHE = {"Cache-Control": "no-cache"}
_IMMUTABLE = {"Cache-Control": "public, max-age=31536000, immutable"}
_VERSIONED = re.compile(r"@([0-9a-f]{1,32})/(.*)", re.DOTALL)


def asset_version(root: Path = STATIC_DIR) -> str:
    """A short hash of the static files' names, sizes and modification times (changes with any edit)."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:12]


def index_html(root: Path = STATIC_DIR) -> bytes:
    """``index.html`` with its ``/explore/static/`` links versioned (see the module docstring)."""
    body = (root / "index.html").read_bytes()
    return body.replace(b'"/explore/static/', f'"{STATIC_PREFIX}/@{asset_version(root)}/'.encode())


def _content_type(path: Path) -> str:
    return _TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def static_file(relative: str, root: Path = STATIC_DIR) -> Path | None:
    """The file ``relative`` names inside ``root``, or None when it is outside, missing or not a file.

    >>> static_file("../__init__.py") is None
    True
    """
    if not relative or "\x00" in relative or relative.startswith(("/", "\\")):
        return None
    base = root.resolve()
    try:
        candidate = (base / relative).resolve()
    except (OSError, RuntimeError):
        return None
    if not candidate.is_relative_to(base) or not candidate.is_file():
        return None
    return candidate


async def _index(_request: web.Request) -> web.StreamResponse:
    index = STATIC_DIR / "index.html"
    if not index.is_file():
        return web.Response(status=404, text="Explore is not installed (static/index.html is missing)")
    return web.Response(body=index_html(), content_type="text/html", charset="utf-8", headers=_NO_CACHE)


async def _asset(request: web.Request) -> web.StreamResponse:
    relative = request.match_info.get("path", "")
    headers = _NO_CACHE
    versioned = _VERSIONED.fullmatch(relative)
    if versioned is not None:
        relative = versioned.group(2)
        if versioned.group(1) == asset_version():
            headers = _IMMUTABLE  # an older version's path gets today's file, not to be kept
    path = static_file(relative)
    if path is None:
        return web.json_response({"error": f"no such file: {request.path}"}, status=404)
    content_type = _content_type(path)
    charset = "utf-8" if content_type.startswith("text/") or content_type.endswith(("json", "svg+xml")) else None
    return web.Response(body=path.read_bytes(), content_type=content_type, charset=charset, headers=headers)


def add_static_routes(app: web.Application) -> None:
    """Register the page paths and ``/explore/static/<file>`` on ``app``."""
    for path in PAGE_PATHS:
        app.router.add_get(path, _index)
        if path != "/":
            app.router.add_get(path + "/", _index)
    app.router.add_get(STATIC_PREFIX + "/{path:.*}", _asset)
