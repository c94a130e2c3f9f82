"""Authentication settings of the collector's listeners: the bind-safety check, and the old name of environment keys.

Credentials are checked by ``sirius.identity`` (one :class:`~sirius.identity.AccessPolicy` per
service, shared by all its listeners). ``ApiKeys`` is kept as the name of
:class:`sirius.identity.EnvKeys` so code written against it keeps working.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Protocol

from aiohttp import web

from ..identity import ANONYMOUS, BEARER_PREFIX, EnvKeys, Principal
from ._environment_variables import MICROMEGAS_API_KEYS
from ._exceptions import AuthConfigurationError

__all__ = ["BEARER_PREFIX", "PRINCIPAL_KEY", "ApiKeys", "check_bind_is_safe", "is_loopback", "request_principal"]

ApiKeys = EnvKeys
"""The keys of ``MICROMEGAS_API_KEYS`` (:class:`sirius.identity.EnvKeys`; its former name)."""


class _Enforcing(Protocol):
    @property
    def enabled(self) -> bool: ...


def is_loopback(host: str) -> bool:
    """True when ``host`` names only the local machine."""
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind_is_safe(host: str, keys: _Enforcing, *, disable_auth: bool) -> None:
    """Refuse to serve a non-loopback address without authentication unless it is explicitly disabled.

    Args:
        host: the bind address.
        keys: the service's access policy (or environment keys): ``enabled`` when requests
            must carry a credential.
        disable_auth: the operator's ``--disable-auth``.

    Raises:
        AuthConfigurationError: when the bind would expose an unauthenticated service.
    """
    if keys.enabled or disable_auth or is_loopback(host):
        return
    msg = (
        f"refusing to listen on {host} without authentication: set {MICROMEGAS_API_KEYS}, "
        "mint a key (sirius keys mint) or pass --disable-auth"
    )
    raise AuthConfigurationError(msg)


# aiohttp before 3.13 has no typed request keys: the plain string works there.
PRINCIPAL_KEY: Any = web.RequestKey("sirius.principal", Principal) if hasattr(web, "RequestKey") else "sirius.principal"
"""Where an aiohttp handler finds the request's :class:`~sirius.identity.Principal` (``request[PRINCIPAL_KEY]``)."""


def request_principal(request: web.Request) -> Principal:
    """The principal the service's access policy found for ``request`` (anonymous if none was checked)."""
    principal = request.get(PRINCIPAL_KEY)
    return principal if isinstance(principal, Principal) else ANONYMOUS
