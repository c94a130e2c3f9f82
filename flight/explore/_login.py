"""Explore's sign-in with the OIDC issuer (authorization code + PKCE, the code exchanged by the gateway).

Mounted when ``MICROMEGAS_OIDC_CONFIG`` names an issuer:

* ``GET /explore/auth/me``: ``{"login": true|false, "issuer": …, "user": {"name", "is_admin"} | null}``
  (no authentication: it says whether a sign-in is possible and who is signed in);
* ``GET /explore/auth/login?return_to=/traces``: redirects to the issuer's authorization endpoint;
  the state, nonce and PKCE verifier wait in a signed httpOnly cookie scoped to
  ``/explore/auth`` for ten minutes;
* ``GET /explore/auth/callback``: the issuer's redirect; the gateway exchanges the code (with the
  verifier), validates the ID token and keeps it in the httpOnly session cookie
  (``sirius_session``, ``SameSite=Lax``, ``Secure`` on HTTPS or with
  ``MICROMEGAS_SECURE_COOKIES=true``, until the token expires), then returns to the page;
* ``POST /explore/auth/logout``: forgets the session cookie.

The gateway sends the session's token as ``Authorization: Bearer`` when a request has no
header of its own (:data:`sirius.flight.SESSION_COOKIE`), so page scripts never see the token.
"""

from __future__ import annotations

import asyncio
import html
import logging
import os
import time
from collections.abc import Mapping

from aiohttp import web

from ...identity import AuthenticationError, IdentityError, OidcAuthenticator, OidcLogin
from .. import _environment_variables as env
from .._gateway import SESSION_COOKIE

__all__ = ["AUTH_PREFIX", "ExploreLogin", "mount_login"]

_LOG = logging.getLogger(__name__)
AUTH_PREFIX = "/explore/auth"
_LOGIN_COOKIE = "sirius_login"


def _safe_return(path: str | None) -> str:
    """A same-site path to return to (an absolute or protocol-relative URL would be an open redirect)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path or AUTH_PREFIX in path:
        return "/"
    return path


class ExploreLogin:
    """The sign-in routes over one :class:`~sirius.identity.OidcLogin`.

    Args:
        login: the PKCE flow against the configured issuer.
        authenticator: validates the session cookie for ``/me``.
        redirect_uri: the callback URL registered at the issuer (None: derived from each request).
        secure_cookies: mark cookies ``Secure`` even over plain HTTP (behind a TLS proxy).
    """

    def __init__(
        self,
        login: OidcLogin,
        authenticator: OidcAuthenticator,
        *,
        redirect_uri: str | None = None,
        secure_cookies: bool = False,
    ) -> None:
        self._login = login
        self._authenticator = authenticator
        self._redirect_uri = redirect_uri
        self._secure_cookies = secure_cookies

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ExploreLogin | None:
        """The sign-in ``MICROMEGAS_OIDC_CONFIG`` allows, or None when no issuer is configured.

        Raises:
            IdentityConfigurationError: the OIDC configuration is unusable.
        """
        variables = os.environ if environ is None else environ
        authenticator = OidcAuthenticator.from_env(variables)
        if authenticator is None:
            return None
        secure = variables.get(env.MICROMEGAS_SECURE_COOKIES, "").strip().lower() in ("1", "true", "yes")
        return cls(
            OidcLogin.from_env(authenticator, variables),
            authenticator,
            redirect_uri=variables.get(env.MICROMEGAS_AUTH_REDIRECT_URI) or None,
            secure_cookies=secure,
        )

    def add_routes(self, app: web.Application) -> None:
        """Register the ``/explore/auth/*`` routes."""
        app.router.add_get(f"{AUTH_PREFIX}/me", self._me)
        app.router.add_get(f"{AUTH_PREFIX}/login", self._start)
        app.router.add_get(f"{AUTH_PREFIX}/callback", self._callback)
        app.router.add_post(f"{AUTH_PREFIX}/logout", self._logout)

    def _secure(self, request: web.Request) -> bool:
        return self._secure_cookies or request.secure

    def _callback_url(self, request: web.Request) -> str:
        return self._redirect_uri or f"{request.scheme}://{request.host}{AUTH_PREFIX}/callback"

    async def _me(self, request: web.Request) -> web.Response:
        user = None
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            try:
                principal = await asyncio.to_thread(self._authenticator.authenticate, f"Bearer {token}")
            except AuthenticationError:
                principal = None  # an expired session: the page offers the sign-in again
            if principal is not None:
                user = {"name": principal.name, "is_admin": principal.is_admin}
        return web.json_response({"login": True, "issuer": self._login.issuer, "user": user})

    async def _start(self, request: web.Request) -> web.StreamResponse:
        return_to = _safe_return(request.query.get("return_to"))
        try:
            url, pending = await asyncio.to_thread(self._login.start, self._callback_url(request), return_to)
        except AuthenticationError as exc:
            return _failure_page(str(exc), 502)
        response = web.HTTPFound(url)
        response.set_cookie(
            _LOGIN_COOKIE,
            pending,
            max_age=600,
            path=AUTH_PREFIX,
            httponly=True,
            samesite="Lax",  # the issuer's redirect back is a cross-site top-level navigation
            secure=self._secure(request),
        )
        raise response  # aiohttp sends a raised HTTPFound with its cookies

    async def _callback(self, request: web.Request) -> web.StreamResponse:
        error = request.query.get("error")
        if error:
            detail = request.query.get("error_description", "")
            return _failure_page(f"the issuer refused the sign-in: {error}{': ' + detail if detail else ''}", 401)
        code, state = request.query.get("code", ""), request.query.get("state", "")
        if not code or not state:
            return _failure_page("the issuer's answer has no code or state", 400)
        try:
            result = await asyncio.to_thread(self._login.finish, code, state, request.cookies.get(_LOGIN_COOKIE))
        except IdentityError as exc:
            _LOG.warning("explore sign-in refused: %s", exc)
            return _failure_page(str(exc), 401)
        _LOG.info("explore sign-in: %s", result.principal.name)
        response = web.HTTPFound(_safe_return(result.return_to))
        lifetime = max(int(result.expires_at - time.time()), 1)
        response.set_cookie(
            SESSION_COOKIE,
            result.id_token,
            max_age=lifetime,
            path="/",
            httponly=True,
            samesite="Lax",
            secure=self._secure(request),
        )
        response.del_cookie(_LOGIN_COOKIE, path=AUTH_PREFIX)
        raise response

    async def _logout(self, _request: web.Request) -> web.Response:
        response = web.json_response({"signed_out": True})
        response.del_cookie(SESSION_COOKIE, path="/")
        return response


async def _no_login(_request: web.Request) -> web.Response:
    return web.json_response({"login": False, "issuer": None, "user": None})


def _failure_page(reason: str, status: int) -> web.Response:
    body = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Sign-in failed · Sirius Explore</title></head>"
        "<body style='font-family: sans-serif; margin: 3em'><h1>Sign-in failed</h1>"
        f"<p data-testid='login-error'>{html.escape(reason)}</p><p><a href='/'>Back to Explore</a></p></body></html>"
    )
    return web.Response(text=body, status=status, content_type="text/html")


def mount_login(app: web.Application, login: ExploreLogin | None) -> None:
    """Mount the sign-in routes, or only ``/me`` answering ``{"login": false}`` when OIDC is off."""
    if login is None:
        app.router.add_get(f"{AUTH_PREFIX}/me", _no_login)
        return
    login.add_routes(app)
