"""Tokens for services: the OAuth 2.0 client-credentials grant against an OIDC issuer.

A service (a batch job, ``sirius query`` in a script) holds a client id and secret, asks the
issuer's token endpoint (found through the discovery document) for an access token and sends it
as ``Authorization: Bearer …``. The token is reused until shortly before it expires. The
environment names are the ``micromegas`` Python client's (``OidcClientCredentialsProvider.from_env``):
``MICROMEGAS_OIDC_ISSUER``, ``MICROMEGAS_OIDC_CLIENT_ID``, ``MICROMEGAS_OIDC_CLIENT_SECRET`` and the
optional ``MICROMEGAS_OIDC_AUDIENCE``; ``MICROMEGAS_OIDC_SCOPE`` is optional too.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ._environment_variables import (
    MICROMEGAS_OIDC_AUDIENCE,
    MICROMEGAS_OIDC_CLIENT_ID,
    MICROMEGAS_OIDC_CLIENT_SECRET,
    MICROMEGAS_OIDC_ISSUER,
    MICROMEGAS_OIDC_SCOPE,
)
from ._exceptions import AuthenticationError, IdentityConfigurationError
from ._issuer_http import IssuerUnavailableError, discover, post_form

__all__ = ["ClientCredentials"]

_RENEW_BEFORE_SECONDS = 60.0
_DEFAULT_LIFETIME_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class _Settings:
    issuer: str
    client_id: str
    client_secret: str
    audience: str | None
    scope: str | None


@functools.lru_cache(maxsize=16)
def _shared(cls: type[ClientCredentials], settings: _Settings, ca_file: str | None) -> ClientCredentials:
    return cls(
        settings.issuer,
        settings.client_id,
        settings.client_secret,
        audience=settings.audience,
        scope=settings.scope,
        ca_file=ca_file,
    )


class ClientCredentials:
    """Fetches and caches access tokens with the client-credentials grant (thread-safe).

    Args:
        issuer: the OIDC issuer URL.
        client_id: the service's client id.
        client_secret: its secret.
        audience: the ``audience`` parameter some issuers need (Auth0, Azure AD), or None.
        scope: the ``scope`` parameter, or None.
        ca_file: CA bundle for an issuer behind a private CA.
        clock: wall-clock seconds (tests pass their own).
    """

    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str,
        *,
        audience: str | None = None,
        scope: str | None = None,
        ca_file: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not issuer or not client_id or not client_secret:
            raise IdentityConfigurationError("client credentials need an issuer, a client id and a client secret")
        self._settings = _Settings(issuer, client_id, client_secret, audience, scope)
        self._ca_file = ca_file
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, ca_file: str | None = None) -> ClientCredentials | None:
        """Credentials from the ``MICROMEGAS_OIDC_*`` variables; None when no client id is set.

        The same variables give the same instance within a process, so commands that query
        repeatedly (``sirius tail``) reuse one token until it is about to expire.

        Raises:
            IdentityConfigurationError: a client id without its issuer or secret.
        """
        env = os.environ if environ is None else environ
        client_id = env.get(MICROMEGAS_OIDC_CLIENT_ID, "").strip()
        if not client_id:
            return None
        issuer = env.get(MICROMEGAS_OIDC_ISSUER, "").strip()
        secret = env.get(MICROMEGAS_OIDC_CLIENT_SECRET, "")
        for name, value in ((MICROMEGAS_OIDC_ISSUER, issuer), (MICROMEGAS_OIDC_CLIENT_SECRET, secret)):
            if not value:
                raise IdentityConfigurationError(f"{MICROMEGAS_OIDC_CLIENT_ID} is set but {name} is not")
        settings = _Settings(
            issuer, client_id, secret, env.get(MICROMEGAS_OIDC_AUDIENCE) or None, env.get(MICROMEGAS_OIDC_SCOPE) or None
        )
        return _shared(cls, settings, ca_file)

    def token(self) -> str:
        """A current access token, fetched when none is cached or it is about to expire.

        Raises:
            AuthenticationError: the issuer refused the credentials or could not be reached.
        """
        with self._lock:
            if self._token is None or self._clock() >= self._renew_at:
                self._token, lifetime = self._fetch()
                self._renew_at = self._clock() + max(lifetime - _RENEW_BEFORE_SECONDS, lifetime / 2)
            return self._token

    def authorization(self) -> str:
        """``Bearer <token>``: the header value to send."""
        return f"Bearer {self.token()}"

    def _fetch(self) -> tuple[str, float]:
        settings = self._settings
        try:
            endpoint = discover(settings.issuer, self._ca_file).token_endpoint
            if endpoint is None:
                raise AuthenticationError(f"issuer {settings.issuer} publishes no token endpoint")
            fields = {
                "grant_type": "client_credentials",
                "client_id": settings.client_id,
                "client_secret": settings.client_secret,
            }
            if settings.audience:
                fields["audience"] = settings.audience
            if settings.scope:
                fields["scope"] = settings.scope
            answer = post_form(endpoint, fields, self._ca_file)
        except IssuerUnavailableError as exc:
            raise AuthenticationError(f"could not obtain a token with client credentials: {exc}") from None
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthenticationError(f"the token endpoint of {settings.issuer} answered no access_token")
        lifetime = answer.get("expires_in", _DEFAULT_LIFETIME_SECONDS)
        if isinstance(lifetime, bool) or not isinstance(lifetime, (int, float)) or lifetime <= 0:
            lifetime = _DEFAULT_LIFETIME_SECONDS
        return token, float(lifetime)
