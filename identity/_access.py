"""The access policy every listener holds: authenticate, then decide who is an admin and in which groups.

A service builds one :class:`AccessPolicy` at start (:func:`~sirius.identity.build_authenticator`)
and every request's ``Authorization`` header goes through it. The policy asks its authenticators
in order (environment keys, database keys, OIDC issuers), then completes the principal:

* **groups**: the groups the credential carries, plus the stored groups its name belongs to;
* **admin**: the authenticator said so, or the name is in ``MICROMEGAS_ADMINS``, or it belongs to
  the reserved :data:`ADMINS_GROUP` stored in PostgreSQL. When no admin can ever exist (only
  environment keys are in use: no admin list, no admins group, no database key, no OIDC issuer),
  every caller is an admin: Micromegas's rule for API-key-only deployments, kept so such a
  deployment can still retire partitions or edit views. As soon as a database key exists, or an
  admin is named, callers are admins only when named. A key bound to an audience is never an
  admin by that rule: it belongs to one tenant, and admins read every audience;
* **audiences** (``_audiences.py``): a key bound to one audience writes to it; the read
  grants of ``MICROMEGAS_AUDIENCE_GRANTS`` and of the stored ``audience_grants`` table
  matching the principal add read audiences.

When nothing is configured at all (no environment key, no database key ever minted, no issuer),
authentication is off and every request is the anonymous principal, as before identity existed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

from ._audiences import AudienceGrants
from ._exceptions import AuthenticationError
from ._principal import ANONYMOUS, Authenticator, AuthenticatorChain, Principal

__all__ = ["ADMINS_GROUP", "AccessPolicy", "GroupDirectory", "as_access_policy", "refusal_detail"]

MISSING_CREDENTIALS = "missing credentials"
INVALID_TOKEN = "invalid token"  # noqa: S105 - a message, not a secret

ADMINS_GROUP = "admins"

# Credentials whose single audience is bound to them (Micromegas: ingestion keys); an OIDC
# identity's claimed audiences are read audiences only.
_BOUND_METHODS = frozenset({"db_key", "env_key"})
"""The reserved group whose members (principal names) are admins."""


class GroupDirectory(Protocol):
    """Stored group memberships (``sirius_group_members``), as the key store's snapshot holds them."""

    def groups_of(self, name: str) -> frozenset[str]:
        """The groups ``name`` belongs to."""
        ...

    @property
    def has_admins(self) -> bool:
        """True when the admins group has a member."""
        ...

    @property
    def in_use(self) -> bool:
        """True once a database key exists (live or revoked): authentication is then enforced."""
        ...

    @property
    def read_grants(self) -> AudienceGrants:
        """The read grants stored in PostgreSQL (``audience_grants``)."""
        ...


class AccessPolicy:
    """Authenticates a request and completes its principal (groups, admin flag).

    It is itself an :class:`~sirius.identity.Authenticator`, so anything that accepts one
    accepts a policy.

    Args:
        authenticators: tried in order; the first that recognises the credential decides.
        admins: names (key names, OIDC emails or subjects) that are admins (``MICROMEGAS_ADMINS``).
        directory: stored groups and key-store state, or None when the service has no database.
        always_enforced: True when a credential is configured outside the database (environment
            keys, an OIDC issuer): requests without one are then refused even if the key store
            is empty.
        admin_possible: True when a configured authenticator can name admins by itself (OIDC
            with ``MICROMEGAS_ADMINS``); False for environment keys alone.
        grants: ``MICROMEGAS_AUDIENCE_GRANTS``, the read grants of audiences.
    """

    def __init__(
        self,
        authenticators: Sequence[Authenticator],
        *,
        admins: frozenset[str] = frozenset(),
        directory: GroupDirectory | None = None,
        always_enforced: bool = False,
        admin_possible: bool = False,
        grants: AudienceGrants | None = None,
    ) -> None:
        self._grants = grants or AudienceGrants()
        self._chain = AuthenticatorChain(authenticators)
        self._admins = admins
        self._directory = directory
        self._always_enforced = always_enforced
        self._admin_possible = admin_possible or bool(admins)

    @property
    def enabled(self) -> bool:
        """True when requests must carry a valid credential (authentication is on)."""
        return self._always_enforced or (self._directory is not None and self._directory.in_use)

    @property
    def admin_principal_possible(self) -> bool:
        """False in an environment-keys-only deployment, where every caller is then an admin."""
        if self._admin_possible:
            return True
        directory = self._directory
        return directory is not None and (directory.in_use or directory.has_admins)

    def authenticate(self, authorization: str | None) -> Principal | None:
        """The completed principal behind ``authorization``; None when nobody recognises it.

        Raises:
            AuthenticationError: a member recognised the credential but refused it (revoked key,
                expired token), with the reason.
        """
        principal = self._chain.authenticate(authorization)
        if principal is None:
            return None if self.enabled else ANONYMOUS
        if principal.method == ANONYMOUS.method:
            return principal
        return self._complete(principal)

    def require(self, authorization: str | None) -> Principal:
        """Like :meth:`authenticate` but raises when the credential is missing or unknown.

        Raises:
            AuthenticationError: ``missing credentials``, ``invalid token`` or a member's reason.
        """
        principal = self.authenticate(authorization)
        if principal is None:
            raise AuthenticationError(MISSING_CREDENTIALS if not (authorization or "").strip() else INVALID_TOKEN)
        return principal

    def _complete(self, principal: Principal) -> Principal:
        groups = principal.groups
        if self._directory is not None:
            groups = groups | self._directory.groups_of(principal.name)
        is_admin = (
            principal.is_admin
            or principal.name in self._admins
            or ADMINS_GROUP in groups
            or (not self.admin_principal_possible and not principal.audiences)
        )
        write_audience = principal.write_audience
        if write_audience is None and principal.method in _BOUND_METHODS and len(principal.audiences) == 1:
            (write_audience,) = principal.audiences  # the key's bound audience
        completed = replace(principal, groups=groups, is_admin=is_admin, write_audience=write_audience)
        granted = self._grants.granted(completed)
        if self._directory is not None:
            granted |= self._directory.read_grants.granted(completed)
        return replace(completed, audiences=completed.audiences | granted) if granted else completed


def as_access_policy(authenticator: Authenticator | None) -> AccessPolicy:
    """The policy a service uses for what it was given.

    None means authentication off. A bare authenticator (``EnvKeys`` as services were given
    before, or a chain) gets a policy with the environment-keys-only admin rule; an
    ``EnvKeys`` with no keys keeps authentication off.
    """
    if isinstance(authenticator, AccessPolicy):
        return authenticator
    if authenticator is None:
        return AccessPolicy(())
    return AccessPolicy((authenticator,), always_enforced=bool(getattr(authenticator, "enabled", True)))


def refusal_detail(exc: AuthenticationError) -> str:
    """``": <reason>"`` when a refusal says more than "missing" or "invalid" (a revoked key), else ``""``.

    Listeners keep their own wording for the common refusal (FlightSQL's ``invalid token``,
    Micromegas's) and append this.
    """
    reason = str(exc)
    return "" if reason in (MISSING_CREDENTIALS, INVALID_TOKEN) else f": {reason}"
