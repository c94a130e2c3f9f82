"""Per-call authentication and request headers for the FlightSQL server (a pyarrow server middleware).

* ``Authorization: Bearer <credential>`` on every call, checked by the service's access policy
  (``sirius.identity``: environment keys, analytics database keys, OIDC tokens); missing or
  wrong → UNAUTHENTICATED ``invalid token`` (with the reason when there is one, e.g. a revoked
  key). With no credential configured every call is accepted.
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

from ..identity import AuthenticationError, Authenticator, Principal, as_access_policy, refusal_detail
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
        keys: the service's access policy (``sirius.identity.build_authenticator``), or bare
            environment keys; None = authentication off. The policy decides who is an admin.
        admin_key_names: when given, exactly the principals of these names are admins
            (overrides the policy's decision; kept for embedders that name admin keys).
    """

    def __init__(self, keys: Authenticator | None, admin_key_names: frozenset[str] | None = None) -> None:
        super().__init__()
        self._keys = as_access_policy(keys)
        self._admins = admin_key_names

    def _caller(self, principal: Principal, headers: Mapping[str, str]) -> Caller:
        is_admin = principal.is_admin if self._admins is None else principal.name in self._admins
        client_type = headers.get("x-client-type", "unknown") or "unknown"
        return Caller(principal.name, is_admin=is_admin, client_type=client_type, principal=principal)

    def _authenticate(self, authorization: str | None, refusal: str = "invalid token") -> Principal:
        try:
            return self._keys.require(authorization)
        except AuthenticationError as exc:
            raise flight.FlightUnauthenticatedError(refusal + refusal_detail(exc)) from None

    def start_call(self, info: flight.CallInfo, headers: Mapping[str, Any]) -> CallContext:
        """Authenticate the call (raises ``FlightUnauthenticatedError``) and capture its headers."""
        values = _first_values(headers)
        authorization = values.get("authorization")
        if info.method == flight.FlightMethod.HANDSHAKE and authorization and authorization.startswith(_BASIC):
            return self._handshake(authorization, values)
        return CallContext(self._caller(self._authenticate(authorization), values), values)

    def _handshake(self, authorization: str, values: Mapping[str, str]) -> CallContext:
        encoded = authorization[len(_BASIC) :].strip()
        encoded += "=" * (-len(encoded) % 4)  # Go's Flight client sends unpadded base64
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise flight.FlightUnauthenticatedError("invalid basic credentials") from None
        _, _, password = decoded.partition(":")
        bearer = f"Bearer {password}"
        principal = self._authenticate(bearer, "invalid username or password")
        context = CallContext(self._caller(principal, values), values)
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
