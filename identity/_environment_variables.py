"""Environment variables read by ``sirius.identity``: one documented constant each.

The names are Micromegas's where Micromegas has one (its server, its web app and its Python
client read the same variables), so one environment configures both.
"""

from __future__ import annotations

__all__ = [
    "MICROMEGAS_ADMINS",
    "MICROMEGAS_API_KEYS",
    "MICROMEGAS_API_KEY_CACHE_TTL_SECONDS",
    "MICROMEGAS_AUDIENCE_GRANTS",
    "MICROMEGAS_OIDC_AUDIENCE",
    "MICROMEGAS_OIDC_CLIENT_ID",
    "MICROMEGAS_OIDC_CLIENT_SECRET",
    "MICROMEGAS_OIDC_CONFIG",
    "MICROMEGAS_OIDC_ISSUER",
    "MICROMEGAS_OIDC_SCOPE",
    "MICROMEGAS_STATE_SECRET",
]

MICROMEGAS_OIDC_CONFIG = "MICROMEGAS_OIDC_CONFIG"
"""Server side: JSON ``{"issuers": [{"issuer": …, "audience": …}], …}``, the OIDC issuers whose
tokens the services accept (unset: OIDC off)."""

MICROMEGAS_ADMINS = "MICROMEGAS_ADMINS"
"""Server side: JSON list of identities (email or ``sub``) that are admins when they sign in with OIDC."""

MICROMEGAS_STATE_SECRET = "MICROMEGAS_STATE_SECRET"  # noqa: S105 - a variable name, not a secret
"""Explore login: the key signing the login-in-progress cookie (default: random per process, which
is right for one gateway; replicas behind a load balancer need the same value)."""

MICROMEGAS_OIDC_ISSUER = "MICROMEGAS_OIDC_ISSUER"
"""Client side (client credentials): the issuer whose token endpoint issues the service's tokens."""

MICROMEGAS_OIDC_CLIENT_ID = "MICROMEGAS_OIDC_CLIENT_ID"
"""Client side (client credentials): the service account's client id."""

MICROMEGAS_OIDC_CLIENT_SECRET = "MICROMEGAS_OIDC_CLIENT_SECRET"  # noqa: S105 - a variable name
"""Client side (client credentials): the service account's client secret."""

MICROMEGAS_OIDC_AUDIENCE = "MICROMEGAS_OIDC_AUDIENCE"
"""Client side (client credentials): the ``audience`` to ask for (Auth0, Azure AD); optional."""

MICROMEGAS_OIDC_SCOPE = "MICROMEGAS_OIDC_SCOPE"
"""Client side (client credentials): the ``scope`` to ask for; optional."""

MICROMEGAS_API_KEYS = "MICROMEGAS_API_KEYS"
"""Server side: JSON list of ``{"name": …, "key": …}`` (optionally ``"audience"``), the keys every
service accepts as ``Authorization: Bearer <key>`` besides the database keys."""

MICROMEGAS_API_KEY_CACHE_TTL_SECONDS = "MICROMEGAS_API_KEY_CACHE_TTL_SECONDS"
"""Server side: the longest a database key change (mint, revocation) can go unseen by a running
service should PostgreSQL's change notification be lost (default 5 s; notifications make it
immediate otherwise)."""

MICROMEGAS_AUDIENCE_GRANTS = "MICROMEGAS_AUDIENCE_GRANTS"
"""Server side: JSON object granting read access to audiences, ``{"team-alpha": ["group:eng",
"user:alice@example.com"], "ops": ["*"]}`` (Micromegas's name and shape)."""
