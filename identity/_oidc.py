"""OIDC bearer tokens: ``Authorization: Bearer <JWT>`` validated against the configured issuers.

A token is accepted when, in this order: its header names an accepted asymmetric algorithm (never
``none``, never HMAC: an HMAC "signed" with the issuer's public key is a known forgery); its
``iss`` is a configured issuer; its ``kid`` is in that issuer's JWKS (refetched once when unknown,
so key rotation works); the signature verifies; ``aud`` is one of the issuer's configured
audiences; ``exp`` and ``nbf`` hold within the clock skew. Any failure raises
:class:`~sirius.identity.AuthenticationError` whose message is the reason the caller sees.

Bearer values that are not JWTs (API keys such as ``mmk_…``) are not this authenticator's:
``authenticate`` returns None and the chain goes on.

The principal's name is the first email-like claim present (``verified_primary_email``,
``email``, Micromegas's namespaced ``https://micromegas.io/email``, ``preferred_username``,
``upn``, ``unique_name``), else ``sub``. It is an admin when that name, its email or its ``sub``
is in ``MICROMEGAS_ADMINS``, or one of its groups is in ``admin_groups``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import jwt
from jwt import exceptions as jwt_errors

from ._exceptions import AuthenticationError
from ._jwks import IssuerKeys
from ._oidc_config import OidcSettings
from ._principal import Principal

__all__ = ["OidcAuthenticator"]

_BEARER = "bearer "
_EMAIL_CLAIMS = (
    "verified_primary_email",
    "email",
    "https://micromegas.io/email",
    "preferred_username",
    "upn",
    "unique_name",
)
_REQUIRED_CLAIMS = ["exp", "iss", "aud", "sub"]


def _bearer_token(authorization: str | None) -> str | None:
    if not authorization or authorization[: len(_BEARER)].lower() != _BEARER:
        return None
    token = authorization[len(_BEARER) :].strip()
    return token or None


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _when(seconds: Any) -> str:
    try:
        return datetime.fromtimestamp(float(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError, OverflowError, OSError):
        return repr(seconds)


class OidcAuthenticator:
    """The :class:`~sirius.identity.Authenticator` of OIDC bearer tokens.

    Args:
        settings: the issuers and rules (:meth:`OidcSettings.from_env`).
        clock: wall-clock seconds, for the validated-token cache.
        monotonic: monotonic seconds, for the JWKS cache and its refetch rate limit.
        ca_file: CA bundle for issuers behind a private CA.
    """

    def __init__(
        self,
        settings: OidcSettings,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        ca_file: str | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._keys = {
            issuer.issuer: IssuerKeys(
                issuer.issuer,
                refresh_interval=settings.jwks_refresh_interval_secs,
                min_refetch_interval=settings.jwks_min_refetch_interval_secs,
                clock=monotonic,
                ca_file=ca_file,
            )
            for issuer in settings.issuers
        }
        self._cache: OrderedDict[str, tuple[Principal, float, float]] = OrderedDict()
        self._cache_lock = threading.Lock()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OidcAuthenticator | None:
        """The authenticator ``MICROMEGAS_OIDC_CONFIG`` describes, or None when it is unset.

        Raises:
            IdentityConfigurationError: the configuration is set but unusable.
        """
        settings = OidcSettings.from_env(environ)
        return None if settings is None else cls(settings)

    def issuer_keys(self, issuer: str) -> IssuerKeys:
        """The key cache (and discovery document) of a configured issuer."""
        return self._keys[issuer]

    @property
    def can_grant_admin(self) -> bool:
        """Whether any identity can be an admin (admins or admin groups configured)."""
        return bool(self.settings.admins or self.settings.admin_groups)

    def authenticate(self, authorization: str | None) -> Principal | None:
        """The principal of a valid OIDC bearer token; None when the header carries no JWT.

        Raises:
            AuthenticationError: a JWT that is not valid here, with the reason.
        """
        token = _bearer_token(authorization)
        if token is None or token.count(".") != 2:
            return None
        try:
            header = jwt.get_unverified_header(token)
        except jwt_errors.DecodeError:
            return None  # three dot-separated parts, but not a JWT: an opaque key
        cached = self._cached(token)
        if cached is not None:
            return cached
        principal, expires = self._validate(token, header, nonce=None)
        self._remember(token, principal, expires)
        return principal

    def validate(self, token: str, *, nonce: str | None = None) -> Principal:
        """Validate ``token`` fully (no cache), checking its ``nonce`` claim when one is given (login).

        Raises:
            AuthenticationError: the token is not valid here, with the reason.
        """
        try:
            header = jwt.get_unverified_header(token)
        except jwt_errors.DecodeError:
            raise AuthenticationError("malformed token: not a JWT") from None
        return self._validate(token, header, nonce=nonce)[0]

    @staticmethod
    def expiry(token: str) -> float:
        """The ``exp`` of a token already validated (Unix seconds; 0 when it has none)."""
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
        return float(exp) if isinstance(exp, (int, float)) else 0.0

    def _cached(self, token: str) -> Principal | None:
        now = self._clock()
        with self._cache_lock:
            entry = self._cache.get(token)
            if entry is None:
                return None
            principal, expires, cached_at = entry
            if now - cached_at > self.settings.token_cache_ttl_secs:
                del self._cache[token]
                return None
            if now >= expires + self.settings.clock_skew_secs:
                del self._cache[token]
                raise AuthenticationError(f"token expired at {_when(expires)}")
            self._cache.move_to_end(token)
            return principal

    def _remember(self, token: str, principal: Principal, expires: float) -> None:
        if self.settings.token_cache_size <= 0:
            return
        with self._cache_lock:
            self._cache[token] = (principal, expires, self._clock())
            while len(self._cache) > self.settings.token_cache_size:
                self._cache.popitem(last=False)

    def _validate(self, token: str, header: Mapping[str, Any], nonce: str | None) -> tuple[Principal, float]:
        alg = self._algorithm(header)
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt_errors.DecodeError:
            raise AuthenticationError("malformed token: the payload is not JSON") from None
        iss = unverified.get("iss")
        issuer = self.settings.issuer(iss) if isinstance(iss, str) else None
        if issuer is None:
            accepted = ", ".join(i.issuer for i in self.settings.issuers)
            raise AuthenticationError(f"wrong issuer: {iss!r} is not an accepted issuer ({accepted})")
        kid = header.get("kid")
        keys = self._keys[issuer.issuer].candidates(kid if isinstance(kid, str) else None, alg)
        claims = self._verified_claims(token, alg, keys, issuer.issuer, issuer.audiences)
        if nonce is not None and claims.get("nonce") != nonce:
            raise AuthenticationError("the ID token's nonce does not match this login")
        return self._principal(claims), float(claims["exp"])

    def _algorithm(self, header: Mapping[str, Any]) -> str:
        alg = header.get("alg")
        if not isinstance(alg, str) or not alg:
            raise AuthenticationError("malformed token: the header names no algorithm")
        accepted = ", ".join(self.settings.algorithms)
        if alg.lower() == "none":
            raise AuthenticationError(f"unsigned token refused (alg 'none'); accepted algorithms: {accepted}")
        if alg.upper().startswith("HS"):
            raise AuthenticationError(
                f"algorithm {alg} refused: issuer tokens must be signed with a public-key algorithm ({accepted})"
            )
        if alg not in self.settings.algorithms:
            raise AuthenticationError(f"algorithm {alg} not accepted (accepted: {accepted})")
        return alg

    def _verified_claims(
        self, token: str, alg: str, keys: list[Any], iss: str, audiences: tuple[str, ...]
    ) -> dict[str, Any]:
        for signing_key in keys:
            try:
                return jwt.decode(
                    token,
                    signing_key.key,
                    algorithms=[alg],
                    audience=list(audiences),
                    issuer=iss,
                    leeway=self.settings.clock_skew_secs,
                    options={"require": _REQUIRED_CLAIMS},
                )
            except jwt_errors.InvalidSignatureError:
                continue  # without a kid several keys may fit; another may verify
            except jwt_errors.PyJWTError as exc:
                raise AuthenticationError(self._reason(exc, token, audiences)) from None
        raise AuthenticationError("bad signature: the token was not signed by the issuer's keys")

    def _reason(self, exc: jwt_errors.PyJWTError, token: str, audiences: tuple[str, ...]) -> str:
        claims = jwt.decode(token, options={"verify_signature": False})
        if isinstance(exc, jwt_errors.ExpiredSignatureError):
            skew = int(self.settings.clock_skew_secs)
            return f"token expired at {_when(claims.get('exp'))} (clock skew allowed: {skew} s)"
        if isinstance(exc, jwt_errors.ImmatureSignatureError):
            return f"token not yet valid (nbf {_when(claims.get('nbf'))}, iat {_when(claims.get('iat'))})"
        if isinstance(exc, jwt_errors.InvalidAudienceError):
            return f"wrong audience: the token is for {claims.get('aud')!r}, accepted: {', '.join(audiences)}"
        if isinstance(exc, jwt_errors.InvalidIssuerError):
            return f"wrong issuer: {claims.get('iss')!r}"
        if isinstance(exc, jwt_errors.MissingRequiredClaimError):
            return f"token lacks the required '{exc.claim}' claim"
        return f"invalid token: {exc}"

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        sub = str(claims["sub"])
        email = next((claims[c] for c in _EMAIL_CLAIMS if isinstance(claims.get(c), str) and claims[c]), None)
        name = email or sub
        groups = frozenset(_strings(claims.get(self.settings.groups_claim)))
        admins = self.settings.admins
        is_admin = bool({name, sub} & admins) or bool(groups & self.settings.admin_groups)
        claim = self.settings.audiences_claim
        audiences = frozenset(_strings(claims.get(claim))) if claim else frozenset()
        return Principal(name, "oidc", audiences=audiences, is_admin=is_admin, groups=groups)
