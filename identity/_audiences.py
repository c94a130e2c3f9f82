"""Audiences: which data a principal may read, and which audience its writes are stamped with.

An audience is an opaque label on data (``public``, ``team-alpha``: letters, digits, ``_``,
``-``), as in Micromegas. A principal's audiences come from its credential and from grants:

* a database **ingestion key** is bound to exactly one audience (``sirius keys mint --kind
  ingestion --audience A``): its writes are stamped with it and it reads it;
* a database **analytics key** carries read audiences (``--audience`` repeated);
* an **environment key** may name one ``"audience"`` (its write and read audience);
* an **OIDC identity** reads the values of the issuer's ``audiences_claim`` when configured;
* **grants** (``MICROMEGAS_AUDIENCE_GRANTS``, Micromegas's name and shape) add read audiences by
  selector: ``{"team-alpha": ["group:eng", "user:alice@example.com"], "ops": ["*"]}`` (a value
  may also be ``{"read": [...], "mint": [...]}``; only ``read`` matters here). ``*`` is any
  authenticated principal, ``user:<name>`` its name (OIDC email or subject, key name),
  ``group:<g>`` one of its groups (OIDC ``groups`` claim, or a stored group such as those
  ``sirius keys`` manages).

Micromegas's two built-in rules hold: every authenticated principal reads ``public`` (so a
principal with no audience at all is not refused: it reads ``public`` and the unstamped data
that counts as ``public``), and nobody reads an audience merely for being named like it.
Admins (and every request when authentication is off) read everything.

Writes are stamped with the credential's own bound audience (:attr:`Principal.write_audience`):
an ingestion key's, an environment key's ``"audience"``. An OIDC identity or a key without one
writes unstamped data, as in Micromegas (read as ``MICROMEGAS_UNSTAMPED_AUDIENCE``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ._environment_variables import MICROMEGAS_AUDIENCE_GRANTS
from ._exceptions import IdentityConfigurationError
from ._principal import Principal

__all__ = ["PUBLIC_AUDIENCE", "AudienceGrants", "read_audiences", "write_audience"]

PUBLIC_AUDIENCE = "public"
"""The audience every authenticated principal reads."""

_AUDIENCE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_SELECTOR = re.compile(r"^(\*|user:.+|group:.+)$")


@dataclass(frozen=True, slots=True)
class AudienceGrants:
    """The read grants of ``MICROMEGAS_AUDIENCE_GRANTS``: audience → selectors."""

    read: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None) -> AudienceGrants:
        """Parse the JSON object; unset or empty means no grant.

        Raises:
            IdentityConfigurationError: not an object of audience names to selector lists (or
                ``{"read": [...], "mint": [...]}``), or an unknown selector shape.
        """
        if not text or not text.strip():
            return cls()
        try:
            value = json.loads(text, object_pairs_hook=_no_duplicates)
        except (json.JSONDecodeError, ValueError) as exc:
            msg = f"{MICROMEGAS_AUDIENCE_GRANTS} is not valid JSON: {exc}"
            raise IdentityConfigurationError(msg) from exc
        if not isinstance(value, dict):
            msg = f"{MICROMEGAS_AUDIENCE_GRANTS} must be a JSON object of audience names to selector lists"
            raise IdentityConfigurationError(msg)
        read: dict[str, frozenset[str]] = {}
        for audience, grant in value.items():
            if not _AUDIENCE_NAME.match(audience):
                msg = f"{MICROMEGAS_AUDIENCE_GRANTS}: audience {audience!r} must be letters, digits, '_' or '-'"
                raise IdentityConfigurationError(msg)
            selectors = grant.get("read", []) if isinstance(grant, dict) else grant
            if isinstance(grant, dict) and not set(grant) <= {"read", "mint"}:
                msg = f"{MICROMEGAS_AUDIENCE_GRANTS}: audience {audience!r}: only 'read' and 'mint' lists are allowed"
                raise IdentityConfigurationError(msg)
            if not isinstance(selectors, list) or not all(isinstance(s, str) and _SELECTOR.match(s) for s in selectors):
                msg = (
                    f"{MICROMEGAS_AUDIENCE_GRANTS}: audience {audience!r}: selectors are '*', 'user:<name>' "
                    "or 'group:<group>'"
                )
                raise IdentityConfigurationError(msg)
            read[audience] = frozenset(selectors)
        return cls(read)

    def granted(self, principal: Principal) -> frozenset[str]:
        """The audiences whose read grant matches ``principal``."""
        keys = {"*", f"user:{principal.name}"} | {f"group:{g}" for g in principal.groups}
        return frozenset(audience for audience, selectors in self.read.items() if selectors & keys)


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            msg = f"audience {key!r} appears twice"
            raise ValueError(msg)
        result[key] = value
    return result


def read_audiences(principal: Principal) -> frozenset[str] | None:
    """The audiences ``principal`` reads; None for everything (an admin, or authentication off)."""
    if principal.is_admin:
        return None
    return principal.audiences | {PUBLIC_AUDIENCE}


def write_audience(principal: Principal) -> str | None:
    """The audience stamped on what ``principal`` writes; None for unstamped data."""
    return principal.write_audience
