"""Who is calling: the authenticated principal, and the interface every credential check implements.

Every listener (native ingestion, OTLP gRPC/HTTP, FlightSQL, the gateway and Explore) turns the
request's ``Authorization`` header into a :class:`Principal` through one :class:`Authenticator`.
Several authenticators (environment keys, database keys, OIDC issuers) are tried in order by
:class:`AuthenticatorChain`; the first that recognises the credential decides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ._exceptions import AuthenticationError

__all__ = ["ANONYMOUS", "Authenticator", "AuthenticatorChain", "Principal"]


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    Attributes:
        name: the key's name, or the identity's email (else ``sub``) for OIDC; ``anonymous``
            when authentication is off.
        method: how it was authenticated: ``anonymous``, ``env_key``, ``db_key`` or ``oidc``.
        audiences: the audiences whose data it may read and write; empty means none given,
            which only an admin (or authentication off) turns into "all".
        is_admin: may run the admin functions (partition retirement, DDL views, keys, deny list).
        groups: group names carried by the credential (OIDC ``groups`` claim, stored groups).
        write_audience: the audience stamped on what it writes (``micromegas.audience``): the
            bound audience of its key; None writes unstamped data (``_audiences.py``).
    """

    name: str
    method: str = "anonymous"
    audiences: frozenset[str] = field(default_factory=frozenset)
    is_admin: bool = False
    groups: frozenset[str] = field(default_factory=frozenset)
    write_audience: str | None = None


ANONYMOUS = Principal("anonymous", "anonymous", is_admin=True)


@runtime_checkable
class Authenticator(Protocol):
    """Turns an ``Authorization`` header value into a principal.

    ``authenticate`` returns None when the credential is not of a kind this authenticator
    handles (another one in a chain may accept it), and raises
    :class:`~sirius.identity.AuthenticationError` with a clear reason when it is of its kind but
    invalid (expired token, wrong audience, revoked key).
    """

    def authenticate(self, authorization: str | None) -> Principal | None:
        """The principal behind ``authorization`` (a full header value such as ``Bearer …``)."""
        ...


class AuthenticatorChain:
    """Tries authenticators in order; the first that returns a principal (or raises) decides."""

    def __init__(self, authenticators: Sequence[Authenticator]) -> None:
        self._authenticators = tuple(authenticators)

    def authenticate(self, authorization: str | None) -> Principal | None:
        """The first principal any member recognises, else None."""
        for authenticator in self._authenticators:
            principal = authenticator.authenticate(authorization)
            if principal is not None:
                return principal
        return None

    def require(self, authorization: str | None) -> Principal:
        """Like :meth:`authenticate` but raises when nobody recognises the credential.

        Raises:
            AuthenticationError: ``missing credentials`` or ``invalid token``.
        """
        principal = self.authenticate(authorization)
        if principal is None:
            raise AuthenticationError("missing credentials" if not authorization else "invalid token")
        return principal
