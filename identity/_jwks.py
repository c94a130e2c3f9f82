"""The signing keys of one OIDC issuer: discovered, fetched, cached, refetched when the issuer rotates.

The JWKS is fetched on first use (discovery document, then ``jwks_uri``) and kept for
``jwks_refresh_interval_secs``. A token naming a ``kid`` the cached set lacks triggers one
refetch (the issuer has rotated its key), at most once per ``jwks_min_refetch_interval_secs``
so tokens with made-up ``kid`` values cannot make the server hammer the issuer.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from jwt.exceptions import PyJWTError

from ._exceptions import AuthenticationError
from ._issuer_http import IssuerMetadata, IssuerUnavailableError, discover, get_json

__all__ = ["IssuerKeys", "SigningKey"]

_FAMILY = {"RS": "RSA", "PS": "RSA", "ES": "EC"}


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One verification key of the JWKS.

    Attributes:
        kid: its key id ("" when the issuer gives none).
        kty: ``RSA`` or ``EC``.
        alg: the algorithm the JWK pins (``alg`` member), or None.
        key: the public key object PyJWT verifies with.
    """

    kid: str
    kty: str
    alg: str | None
    key: Any

    def fits(self, alg: str) -> bool:
        """Whether this key may verify an ``alg`` token (same family; the JWK's ``alg`` if it pins one)."""
        if self.alg is not None and self.alg != alg:
            return False
        return _FAMILY.get(alg[:2]) == self.kty


def _load(jwk: dict[str, Any]) -> SigningKey | None:
    """A verification key from one JWK; None for keys that are not for signatures or not RSA/EC."""
    if jwk.get("use", "sig") != "sig":
        return None
    kty = jwk.get("kty")
    text = json.dumps(jwk)
    try:
        if kty == "RSA":
            key = RSAAlgorithm.from_jwk(text)
        elif kty == "EC":
            key = ECAlgorithm.from_jwk(text)
        else:
            return None
    except (PyJWTError, ValueError, TypeError, KeyError):  # a malformed JWK is skipped, not fatal
        return None
    if not hasattr(key, "verify"):
        key = key.public_key()  # a private JWK published by mistake: verify with its public half
    alg = jwk.get("alg") if isinstance(jwk.get("alg"), str) else None
    return SigningKey(str(jwk.get("kid", "")), kty, alg, key)


class IssuerKeys:
    """The cached JWKS of one issuer (thread-safe: listeners authenticate from several threads).

    Args:
        issuer: the issuer URL.
        refresh_interval: seconds a fetched JWKS is trusted before it is fetched again.
        min_refetch_interval: least seconds between two fetches caused by an unknown ``kid``.
        clock: monotonic seconds (tests pass their own).
        ca_file: CA bundle for an issuer behind a private CA.
    """

    def __init__(
        self,
        issuer: str,
        *,
        refresh_interval: float = 3600.0,
        min_refetch_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        ca_file: str | None = None,
    ) -> None:
        self.issuer = issuer
        self._refresh_interval = refresh_interval
        self._min_refetch_interval = min_refetch_interval
        self._clock = clock
        self._ca_file = ca_file
        self._lock = threading.Lock()
        self._metadata: IssuerMetadata | None = None
        self._keys: tuple[SigningKey, ...] = ()
        self._fetched_at: float | None = None
        self.fetches = 0
        """JWKS fetches so far (for operators' logs and the tests of the rate limit)."""

    def metadata(self) -> IssuerMetadata:
        """The issuer's discovery document (fetched once).

        Raises:
            AuthenticationError: the issuer is unreachable (the reason names it).
        """
        with self._lock:
            return self._discover()

    def _discover(self) -> IssuerMetadata:
        if self._metadata is None:
            try:
                self._metadata = discover(self.issuer, self._ca_file)
            except IssuerUnavailableError as exc:
                raise AuthenticationError(f"cannot reach the token's issuer: {exc}") from None
        return self._metadata

    def _fetch(self) -> None:
        metadata = self._discover()
        self.fetches += 1
        self._fetched_at = self._clock()
        try:
            document = get_json(metadata.jwks_uri, self._ca_file)
        except IssuerUnavailableError as exc:
            raise AuthenticationError(f"cannot fetch the issuer's signing keys: {exc}") from None
        raw = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(raw, list):
            raise AuthenticationError(f"the issuer's JWKS at {metadata.jwks_uri} has no 'keys' list")
        self._keys = tuple(key for key in (_load(k) for k in raw if isinstance(k, dict)) if key is not None)

    def candidates(self, kid: str | None, alg: str) -> list[SigningKey]:
        """The keys that may verify a token with header ``kid`` and ``alg``.

        With a ``kid``, the key of that id (refetching the JWKS once, rate-limited, when it is
        unknown); without one, every key of the algorithm's family.

        Raises:
            AuthenticationError: ``unknown signing key id …`` when no key has that id even after
                a refetch; ``no signing key for …`` when none fits the algorithm; the issuer or
                its JWKS unreachable.
        """
        with self._lock:
            now = self._clock()
            if self._fetched_at is None or now - self._fetched_at >= self._refresh_interval:
                self._fetch()
            found = self._matching(kid, alg)
            if kid is not None and not any(k.kid == kid for k in self._keys):
                last = self._fetched_at if self._fetched_at is not None else now
                if now - last >= self._min_refetch_interval:
                    self._fetch()  # the issuer may have rotated its key since the last fetch
                    found = self._matching(kid, alg)
                if not any(k.kid == kid for k in self._keys):
                    raise AuthenticationError(f"unknown signing key id (kid) {kid!r}: not in the issuer's JWKS")
        if not found:
            raise AuthenticationError(f"no signing key of the issuer fits algorithm {alg}")
        return found

    def _matching(self, kid: str | None, alg: str) -> list[SigningKey]:
        return [k for k in self._keys if (kid is None or k.kid == kid) and k.fits(alg)]
