"""Per-call authentication and request headers for the FlightSQL server (a pyarrow server middleware).

* ``Authorization: Bearer <key>`` on every call when ``MICROMEGAS_API_KEYS`` has keys (missing
  or wrong → UNAUTHENTICATED ``invalid token``); with no keys every call is accepted.
* ``Handshake`` with ``Authorization: Basic base64(name:key)`` (Grafana's username/password,
  ADBC's ``username``/``password``): the key must be valid (the name is informational); the
  response carries ``Authorization: Bearer <key>``, which those clients send on later calls.
* The call's headers (lower-case names, first value) are kept for the handler.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Mapping
from typing import Any

from pyarrow import flight

from ..collector import ApiKeys
from ._session import Caller

__all__ = ["MIDDLEWARE_KEY", "CallContext", "CallContextFactory", "HandshakeHandler"]

MIDDLEWARE_KEY = "sirius"
_BASIC = "Basic "


class CallContext(flight.ServerMiddleware):
    """What the handlers of one call need: the caller, its headers, the call's query id.

    The query id is chosen here because response headers are sent before the handler runs:
    every response carries it as ``x-query-id`` (Grafana copies response headers into the
    frame's metadata) and every error message names it.
    """

    def __init__(self, caller: Caller, headers: Mapping[str, str]) -> None:
        self.caller = caller
        self.headers = headers
        self.query_id = str(uuid.uuid4())
        self.response_headers: dict[str, str] = {"x-query-id": self.query_id}

    def sending_headers(self) -> dict[str, str]:
        """Response headers (``x-query-id``; ``authorization`` after a basic-auth handshake)."""
        return dict(self.response_headers)

    def call_completed(self, exception: BaseException | None) -> None:
        """Nothing to clean up."""
        del exception


def _first_values(headers: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for name, values in headers.items():
        value = values[0] if isinstance(values, (list, tuple)) and values else values
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        out[str(name).lower()] = str(value)
    return out


class CallContextFactory(flight.ServerMiddlewareFactory):
    """Authenticates each call and creates its :class:`CallContext`.

    Args:
        keys: accepted API keys (none = authentication off).
        admin_key_names: names of the keys whose callers are admins; None makes every caller an
            admin, Micromegas's rule for deployments that can never produce an admin principal
            (API keys only).
    """

    def __init__(self, keys: ApiKeys, admin_key_names: frozenset[str] | None = None) -> None:
        super().__init__()
        self._keys = keys
        self._admins = admin_key_names

    def _caller(self, name: str, headers: Mapping[str, str]) -> Caller:
        is_admin = self._admins is None or name in self._admins
        return Caller(name, is_admin=is_admin, client_type=headers.get("x-client-type", "unknown") or "unknown")

    def start_call(self, info: flight.CallInfo, headers: Mapping[str, Any]) -> CallContext:
        """Authenticate the call (raises ``FlightUnauthenticatedError``) and capture its headers."""
        values = _first_values(headers)
        authorization = values.get("authorization")
        if info.method == flight.FlightMethod.HANDSHAKE and authorization and authorization.startswith(_BASIC):
            return self._handshake(authorization, values)
        name = self._keys.authenticate(authorization)
        if name is None:
            raise flight.FlightUnauthenticatedError("invalid token")
        return CallContext(self._caller(name, values), values)

    def _handshake(self, authorization: str, values: Mapping[str, str]) -> CallContext:
        encoded = authorization[len(_BASIC) :].strip()
        encoded += "=" * (-len(encoded) % 4)  # Go's Flight client sends unpadded base64
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise flight.FlightUnauthenticatedError("invalid basic credentials") from None
        _, _, password = decoded.partition(":")
        bearer = f"Bearer {password}"
        name = self._keys.authenticate(bearer)
        if name is None:
            raise flight.FlightUnauthenticatedError("invalid username or password")
        context = CallContext(self._caller(name, values), values)
        context.response_headers["authorization"] = bearer
        return context


class HandshakeHandler(flight.ServerAuthHandler):
    """Lets ``Handshake`` succeed; the credentials themselves are checked by :class:`CallContextFactory`.

    pyarrow answers ``Handshake`` with UNIMPLEMENTED unless an auth handler is installed. Clients
    doing basic auth (Grafana, ADBC) send their credentials in the ``Authorization`` header and
    no handshake message; the middleware validates them and returns the bearer header.
    """

    def authenticate(self, outgoing: flight.ServerAuthSender, incoming: flight.ServerAuthReader) -> None:
        """Nothing to exchange in the handshake stream."""
        del outgoing, incoming

    def is_valid(self, token: bytes) -> bytes:
        """Every call is authenticated by the middleware (``Authorization`` header), not by this token."""
        del token
        return b""
