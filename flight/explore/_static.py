"""The Explore pages: ``index.html`` for every page path (the page's router reads the URL) and its assets.

* ``GET /`` and the deep links (``/services``, ``/service/<name>``, ``/traces``,
  ``/trace/<hex>``, ``/logs``, ``/metrics``, ``/processes``, ``/process/<uuid>``, ``/sql``)
  answer ``static/index.html``;
* ``GET /explore/static/<file>`` answers the file of ``static/`` with its content type; paths
  that leave the directory (``..``, absolute, symlinks out of it) or name a directory are 404.

No key is needed: these files hold no data (the API behind them checks keys). Files are read
from the installed package on every request (they are small), so no restart is needed while
editing them.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from aiohttp import web

__all__ = ["PAGE_PATHS", "STATIC_DIR", "STATIC_PREFIX", "add_static_routes"]

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
    return web.Response(body=index.read_bytes(), content_type="text/html", charset="utf-8", headers=_NO_CACHE)


async def _asset(request: web.Request) -> web.StreamResponse:
    path = static_file(request.match_info.get("path", ""))
    if path is None:
        return web.json_response({"error": f"no such file: {request.path}"}, status=404)
    content_type = _content_type(path)
    charset = "utf-8" if content_type.startswith("text/") or content_type.endswith(("json", "svg+xml")) else None
    return web.Response(body=path.read_bytes(), content_type=content_type, charset=charset, headers=_NO_CACHE)


def add_static_routes(app: web.Application) -> None:
    """Register the page paths and ``/explore/static/<file>`` on ``app``."""
    for path in PAGE_PATHS:
        app.router.add_get(path, _index)
        if path != "/":
            app.router.add_get(path + "/", _index)
    app.router.add_get(STATIC_PREFIX + "/{path:.*}", _asset)
