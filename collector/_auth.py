"""Bearer-key authentication shared by the collector's HTTP (and later gRPC) endpoints."""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
from dataclasses import dataclass

from ._environment_variables import MICROMEGAS_API_KEYS
from ._exceptions import AuthConfigurationError

BEARER_PREFIX = "Bearer "


@dataclass(frozen=True, slots=True)
class ApiKeys:
    """The accepted keys; an empty set means authentication is off.

    Attributes:
        keys: ``(name, key)`` pairs.
    """

    keys: tuple[tuple[str, str], ...] = ()

    @property
    def enabled(self) -> bool:
        """True when at least one key is configured (requests must then carry one)."""
        return bool(self.keys)

    @classmethod
    def parse(cls, text: str | None) -> ApiKeys:
        """Parse ``MICROMEGAS_API_KEYS`` JSON (``[{"name": …, "key": …}]``).

        Raises:
            AuthConfigurationError: when the text is not such a list.
        """
        if not text or not text.strip():
            return cls()
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            msg = f"{MICROMEGAS_API_KEYS} is not valid JSON: {exc}"
            raise AuthConfigurationError(msg) from exc
        if not isinstance(value, list):
            msg = f"{MICROMEGAS_API_KEYS} must be a JSON list of {{name, key}} objects"
            raise AuthConfigurationError(msg)
        keys = []
        for item in value:
            if not (isinstance(item, dict) and isinstance(item.get("key"), str) and item["key"]):
                msg = f"{MICROMEGAS_API_KEYS}: each entry needs a non-empty string 'key'"
                raise AuthConfigurationError(msg)
            keys.append((str(item.get("name", "")), item["key"]))
        return cls(tuple(keys))

    @classmethod
    def from_env(cls) -> ApiKeys:
        """Read the keys from ``MICROMEGAS_API_KEYS``."""
        return cls.parse(os.environ.get(MICROMEGAS_API_KEYS))

    def authenticate(self, authorization: str | None) -> str | None:
        """Return the key's name when the ``Authorization`` header carries a valid key, else None.

        With authentication off every request is accepted (name ``anonymous``).
        """
        if not self.enabled:
            return "anonymous"
        if not authorization or not authorization.startswith(BEARER_PREFIX):
            return None
        token = authorization[len(BEARER_PREFIX) :].strip().encode()
        for name, key in self.keys:
            # constant-time comparison: the key is a secret.
            if hmac.compare_digest(token, key.encode()):
                return name
        return None


def is_loopback(host: str) -> bool:
    """True when ``host`` names only the local machine."""
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind_is_safe(host: str, keys: ApiKeys, *, disable_auth: bool) -> None:
    """Refuse to serve a non-loopback address without keys unless auth is explicitly disabled.

    Raises:
        AuthConfigurationError: when the bind would expose an unauthenticated service.
    """
    if keys.enabled or disable_auth or is_loopback(host):
        return
    msg = f"refusing to listen on {host} without authentication: set {MICROMEGAS_API_KEYS} or pass --disable-auth"
    raise AuthConfigurationError(msg)
