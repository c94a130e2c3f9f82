"""The OIDC settings of the services, resolved once from ``MICROMEGAS_OIDC_CONFIG`` and ``MICROMEGAS_ADMINS``.

``MICROMEGAS_OIDC_CONFIG`` has Micromegas's shape, so one value configures both::

    {"issuers": [{"issuer": "https://idp.example.com", "audience": "sirius"}],
     "jwks_refresh_interval_secs": 3600, "token_cache_size": 1000, "token_cache_ttl_secs": 300}

Sirius reads a few more optional keys (Micromegas ignores them): ``clock_skew_secs`` (60),
``jwks_min_refetch_interval_secs`` (30: how often an unknown ``kid`` may trigger a JWKS
refetch), ``algorithms`` (``["RS256", "ES256"]``), ``groups_claim`` (``"groups"``),
``admin_groups`` (groups whose members are admins) and ``audiences_claim`` (a claim whose
value(s) become the principal's data audiences). An issuer may appear more than once with
different audiences (access tokens for an API and ID tokens for a web client).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._environment_variables import MICROMEGAS_ADMINS, MICROMEGAS_OIDC_CONFIG
from ._exceptions import IdentityConfigurationError

__all__ = ["ALLOWED_ALGORITHMS", "OidcIssuerSettings", "OidcSettings", "parse_admins"]

ALLOWED_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "PS256"})
"""Asymmetric algorithms a configuration may name; ``none`` and the HMAC family never verify an
issuer's token (an HMAC "signed" with the issuer's public key is a classic forgery)."""

_DEFAULT_ALGORITHMS = ("RS256", "ES256")


@dataclass(frozen=True, slots=True)
class OidcIssuerSettings:
    """One accepted issuer.

    Attributes:
        issuer: the ``iss`` value, also the base of the discovery document URL.
        audiences: accepted ``aud`` values (the API's audience for access tokens, the client id
            for ID tokens); the first is the client id of Explore's login.
    """

    issuer: str
    audiences: tuple[str, ...]

    @property
    def discovery_url(self) -> str:
        """``<issuer>/.well-known/openid-configuration``."""
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"


@dataclass(frozen=True, slots=True)
class OidcSettings:
    """Everything the OIDC authenticator needs, resolved once."""

    issuers: tuple[OidcIssuerSettings, ...]
    jwks_refresh_interval_secs: float = 3600.0
    token_cache_size: int = 1000
    token_cache_ttl_secs: float = 300.0
    clock_skew_secs: float = 60.0
    jwks_min_refetch_interval_secs: float = 30.0
    algorithms: tuple[str, ...] = _DEFAULT_ALGORITHMS
    groups_claim: str = "groups"
    admin_groups: frozenset[str] = field(default_factory=frozenset)
    audiences_claim: str | None = None
    admins: frozenset[str] = field(default_factory=frozenset)

    def issuer(self, iss: str) -> OidcIssuerSettings | None:
        """The settings of issuer ``iss`` (audiences of repeated entries merged), or None."""
        return next((i for i in self.issuers if i.issuer == iss), None)

    @property
    def login_issuer(self) -> OidcIssuerSettings:
        """The issuer Explore's login redirects to: the first configured (as Micromegas's web app)."""
        return self.issuers[0]

    @classmethod
    def parse(cls, text: str, admins: frozenset[str] = frozenset()) -> OidcSettings:
        """Parse ``MICROMEGAS_OIDC_CONFIG`` text.

        Raises:
            IdentityConfigurationError: not JSON, no issuers, a bad field.
        """
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise IdentityConfigurationError(f"{MICROMEGAS_OIDC_CONFIG} is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise IdentityConfigurationError(f"{MICROMEGAS_OIDC_CONFIG} must be a JSON object with an 'issuers' list")
        return cls(
            issuers=_issuers(value.get("issuers")),
            jwks_refresh_interval_secs=_number(value, "jwks_refresh_interval_secs", 3600.0),
            token_cache_size=int(_number(value, "token_cache_size", 1000)),
            token_cache_ttl_secs=_number(value, "token_cache_ttl_secs", 300.0),
            clock_skew_secs=_number(value, "clock_skew_secs", 60.0),
            jwks_min_refetch_interval_secs=_number(value, "jwks_min_refetch_interval_secs", 30.0),
            algorithms=_algorithms(value.get("algorithms", list(_DEFAULT_ALGORITHMS))),
            groups_claim=_text(value, "groups_claim", "groups"),
            admin_groups=frozenset(_strings(value, "admin_groups")),
            audiences_claim=_text(value, "audiences_claim", "") or None,
            admins=admins,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OidcSettings | None:
        """The settings from ``MICROMEGAS_OIDC_CONFIG`` and ``MICROMEGAS_ADMINS``; None when OIDC is not configured.

        Raises:
            IdentityConfigurationError: either variable is set but unusable.
        """
        env = os.environ if environ is None else environ
        text = env.get(MICROMEGAS_OIDC_CONFIG, "")
        if not text.strip():
            return None
        return cls.parse(text, parse_admins(env.get(MICROMEGAS_ADMINS)))


def parse_admins(text: str | None) -> frozenset[str]:
    """``MICROMEGAS_ADMINS``: a JSON list of names (email, ``sub`` or key name); a comma-separated list is accepted too.

    Raises:
        IdentityConfigurationError: a JSON value that is not a list of non-empty strings.
    """
    if not text or not text.strip():
        return frozenset()
    stripped = text.strip()
    if not stripped.startswith("["):
        return frozenset(name.strip() for name in stripped.split(",") if name.strip())
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise IdentityConfigurationError(f"{MICROMEGAS_ADMINS} is not valid JSON: {exc}") from None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise IdentityConfigurationError(
            f"{MICROMEGAS_ADMINS} must be a JSON list of non-empty strings (emails, subjects or key names),"
            ' e.g. ["alice@example.com"]'
        )
    return frozenset(value)


def _issuers(value: Any) -> tuple[OidcIssuerSettings, ...]:
    if not isinstance(value, list) or not value:
        raise IdentityConfigurationError(f"{MICROMEGAS_OIDC_CONFIG}: 'issuers' must be a non-empty list")
    merged: dict[str, list[str]] = {}
    for item in value:
        if not isinstance(item, dict):
            raise IdentityConfigurationError(f"{MICROMEGAS_OIDC_CONFIG}: each issuer is an object {{issuer, audience}}")
        issuer, audience = item.get("issuer"), item.get("audience")
        if not isinstance(issuer, str) or not issuer.startswith(("https://", "http://")):
            raise IdentityConfigurationError(f"{MICROMEGAS_OIDC_CONFIG}: issuer {issuer!r} must be an http(s) URL")
        if not isinstance(audience, str) or not audience:
            raise IdentityConfigurationError(f"{MICROMEGAS_OIDC_CONFIG}: issuer {issuer} needs a non-empty 'audience'")
        audiences = merged.setdefault(issuer, [])
        if audience not in audiences:
            audiences.append(audience)
    return tuple(OidcIssuerSettings(issuer, tuple(audiences)) for issuer, audiences in merged.items())


def _number(value: Mapping[str, Any], name: str, default: float) -> float:
    number = value.get(name, default)
    if isinstance(number, bool) or not isinstance(number, (int, float)) or number < 0:
        raise IdentityConfigurationError(f"{MICROMEGAS_OIDC_CONFIG}: '{name}' must be a number >= 0")
    return float(number)


def _text(value: Mapping[str, Any], name: str, default: str) -> str:
    text = value.get(name, default)
    if text is None:
        return default
    if not isinstance(text, str):
        raise IdentityConfigurationError(f"{MICROMEGAS_OIDC_CONFIG}: '{name}' must be a string")
    return text


def _strings(value: Mapping[str, Any], name: str) -> list[str]:
    items = value.get(name, [])
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise IdentityConfigurationError(f"{MICROMEGAS_OIDC_CONFIG}: '{name}' must be a list of strings")
    return items


def _algorithms(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(a, str) for a in value):
        raise IdentityConfigurationError(f"{MICROMEGAS_OIDC_CONFIG}: 'algorithms' must be a non-empty list")
    refused = [a for a in value if a not in ALLOWED_ALGORITHMS]
    if refused:
        allowed = ", ".join(sorted(ALLOWED_ALGORITHMS))
        raise IdentityConfigurationError(
            f"{MICROMEGAS_OIDC_CONFIG}: algorithm(s) {', '.join(refused)} refused (asymmetric only: {allowed})"
        )
    return tuple(value)
