"""Keys listed in the environment (``MICROMEGAS_API_KEYS``): the oldest and simplest credential.

``MICROMEGAS_API_KEYS`` is a JSON list of ``{"name": …, "key": …}`` objects (Micromegas's keyring
shape; an entry may also carry ``"audience"``). A request presents one key as
``Authorization: Bearer <key>``; the key's name becomes the principal's name. Env keys are
accepted by every service (ingestion and analytics alike), as in Micromegas when the
per-role ``MICROMEGAS_INGESTION_API_KEYS``/``MICROMEGAS_ANALYTICS_API_KEYS`` are not used.
"""

from __future__ import annotations

import hmac
import json
import os
from dataclasses import dataclass

from ._environment_variables import MICROMEGAS_API_KEYS
from ._exceptions import IdentityConfigurationError
from ._principal import ANONYMOUS, Principal

__all__ = ["BEARER_PREFIX", "EnvKeys", "bearer_token"]

BEARER_PREFIX = "Bearer "


def bearer_token(authorization: str | None) -> str | None:
    """The credential of an ``Authorization: Bearer <credential>`` header value, else None."""
    if not authorization or not authorization.startswith(BEARER_PREFIX):
        return None
    token = authorization[len(BEARER_PREFIX) :].strip()
    return token or None


@dataclass(frozen=True, slots=True)
class EnvKeys:
    """The keys of ``MICROMEGAS_API_KEYS``; an empty set means authentication is off.

    As an :class:`~sirius.identity.Authenticator` it returns a principal with method
    ``env_key`` for a listed key and None for anything else (another member of a chain may know
    it). Used on its own with no keys, it accepts every request as the anonymous principal, as
    the services did before any credential was configured; :func:`build_authenticator` only
    puts it in a chain when it has keys.

    Attributes:
        keys: ``(name, key)`` pairs.
        audiences: ``(name, audience)`` pairs for the entries that name an audience.
    """

    keys: tuple[tuple[str, str], ...] = ()
    audiences: tuple[tuple[str, str], ...] = ()

    @property
    def enabled(self) -> bool:
        """True when at least one key is configured (requests must then carry one)."""
        return bool(self.keys)

    @classmethod
    def parse(cls, text: str | None) -> EnvKeys:
        """Parse ``MICROMEGAS_API_KEYS`` JSON (``[{"name": …, "key": …, "audience"?: …}]``).

        Raises:
            IdentityConfigurationError: when the text is not such a list.
        """
        if not text or not text.strip():
            return cls()
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            msg = f"{MICROMEGAS_API_KEYS} is not valid JSON: {exc}"
            raise IdentityConfigurationError(msg) from exc
        if not isinstance(value, list):
            msg = f"{MICROMEGAS_API_KEYS} must be a JSON list of {{name, key}} objects"
            raise IdentityConfigurationError(msg)
        keys, audiences = [], []
        for item in value:
            if not (isinstance(item, dict) and isinstance(item.get("key"), str) and item["key"]):
                msg = f"{MICROMEGAS_API_KEYS}: each entry needs a non-empty string 'key'"
                raise IdentityConfigurationError(msg)
            name = str(item.get("name", ""))
            keys.append((name, item["key"]))
            audience = item.get("audience")
            if audience is not None:
                if not isinstance(audience, str) or not audience:
                    msg = f"{MICROMEGAS_API_KEYS}: entry {name!r}: 'audience' must be a non-empty string"
                    raise IdentityConfigurationError(msg)
                audiences.append((name, audience))
        return cls(tuple(keys), tuple(audiences))

    @classmethod
    def from_env(cls) -> EnvKeys:
        """Read the keys from ``MICROMEGAS_API_KEYS``."""
        return cls.parse(os.environ.get(MICROMEGAS_API_KEYS))

    def authenticate(self, authorization: str | None) -> Principal | None:
        """The key's principal when ``authorization`` is ``Bearer <one of the keys>``, else None.

        With no keys configured every request is accepted as the anonymous principal.
        """
        if not self.enabled:
            return ANONYMOUS
        token = bearer_token(authorization)
        if token is None:
            return None
        presented = token.encode()
        found: str | None = None
        for name, key in self.keys:
            # Constant-time, and every key is compared: neither the match nor its position leaks.
            if hmac.compare_digest(presented, key.encode()) and found is None:
                found = name
        if found is None:
            return None
        audiences = frozenset(audience for name, audience in self.audiences if name == found)
        return Principal(found, "env_key", audiences=audiences)
