"""A person's sign-in through the issuer: the authorization-code flow with PKCE, done server-side.

:meth:`OidcLogin.start` makes a fresh ``state``, ``nonce`` and PKCE verifier and returns the
issuer's authorization URL (carrying only the S256 challenge) plus a value to keep in an
httpOnly cookie: those three secrets and where to return, signed with HMAC-SHA256 so the
browser can neither read a forged one into the server nor replay it after ten minutes.
:meth:`OidcLogin.finish` checks the callback's ``state`` against that cookie, exchanges the code
at the token endpoint with the verifier, and validates the ID token (signature, issuer,
audience = the client id, expiry, nonce) with the same :class:`OidcAuthenticator` every listener
uses. The client is public (no secret): PKCE binds the code to this login.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ._environment_variables import MICROMEGAS_STATE_SECRET
from ._exceptions import AuthenticationError
from ._issuer_http import IssuerUnavailableError, post_form
from ._oidc import OidcAuthenticator
from ._principal import Principal

__all__ = ["LoginResult", "OidcLogin"]

LOGIN_LIFETIME_SECONDS = 600
_SCOPE = "openid email profile"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class LoginResult:
    """A finished sign-in.

    Attributes:
        principal: who signed in.
        id_token: the validated ID token (what the browser's session cookie carries).
        expires_at: its ``exp`` (Unix seconds).
        return_to: the Explore path to go back to.
    """

    principal: Principal
    id_token: str
    expires_at: float
    return_to: str


class OidcLogin:
    """Explore's sign-in against the first configured issuer, whose first audience is the client id.

    Args:
        authenticator: validates the ID token (and knows the issuer's discovery document).
        state_secret: HMAC key of the login cookie (``MICROMEGAS_STATE_SECRET``; random when absent).
        clock: wall-clock seconds.
    """

    def __init__(
        self,
        authenticator: OidcAuthenticator,
        state_secret: bytes | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._authenticator = authenticator
        self._issuer = authenticator.settings.login_issuer
        self._secret = state_secret or secrets.token_bytes(32)
        self._clock = clock

    @classmethod
    def from_env(cls, authenticator: OidcAuthenticator, environ: Mapping[str, str] | None = None) -> OidcLogin:
        """A login whose cookie key is ``MICROMEGAS_STATE_SECRET`` (random per process when unset)."""
        env = os.environ if environ is None else environ
        secret = env.get(MICROMEGAS_STATE_SECRET, "")
        return cls(authenticator, secret.encode() if secret else None)

    @property
    def issuer(self) -> str:
        """The issuer people sign in with."""
        return self._issuer.issuer

    @property
    def client_id(self) -> str:
        """The OAuth client id (the issuer's first configured audience, as Micromegas's web app)."""
        return self._issuer.audiences[0]

    def start(self, redirect_uri: str, return_to: str) -> tuple[str, str]:
        """Begin a sign-in: the issuer URL to redirect the browser to, and the login cookie's value.

        Raises:
            AuthenticationError: the issuer cannot be reached or has no authorization endpoint.
        """
        metadata = self._authenticator.issuer_keys(self.issuer).metadata()
        if metadata.authorization_endpoint is None:
            raise AuthenticationError(f"issuer {self.issuer} publishes no authorization endpoint")
        state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
        challenge = _b64(hashlib.sha256(verifier.encode()).digest())
        query = urllib.parse.urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": redirect_uri,
                "scope": _SCOPE,
                "state": state,
                "nonce": nonce,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        separator = "&" if "?" in metadata.authorization_endpoint else "?"
        pending = {
            "state": state,
            "nonce": nonce,
            "verifier": verifier,
            "redirect_uri": redirect_uri,
            "return_to": return_to,
            "expires": self._clock() + LOGIN_LIFETIME_SECONDS,
        }
        return metadata.authorization_endpoint + separator + query, self._sign(pending)

    def finish(self, code: str, state: str, cookie: str | None) -> LoginResult:
        """Complete a sign-in from the callback's ``code`` and ``state`` and the login cookie.

        Raises:
            AuthenticationError: no or a forged/expired login cookie, a ``state`` mismatch, the
                issuer refusing the code, or an ID token that does not validate.
        """
        pending = self._verify(cookie)
        if not hmac.compare_digest(str(pending.get("state", "")), state):
            raise AuthenticationError("the sign-in's state does not match (start again from Explore)")
        metadata = self._authenticator.issuer_keys(self.issuer).metadata()
        if metadata.token_endpoint is None:
            raise AuthenticationError(f"issuer {self.issuer} publishes no token endpoint")
        fields = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": str(pending["redirect_uri"]),
            "client_id": self.client_id,
            "code_verifier": str(pending["verifier"]),
        }
        try:
            answer = post_form(metadata.token_endpoint, fields)
        except IssuerUnavailableError as exc:
            raise AuthenticationError(f"the issuer refused the sign-in code: {exc}") from None
        id_token = answer.get("id_token") if isinstance(answer, dict) else None
        if not isinstance(id_token, str):
            raise AuthenticationError("the issuer's token answer has no id_token")
        principal = self._authenticator.validate(id_token, nonce=str(pending["nonce"]))
        expires = self._authenticator.expiry(id_token)
        return LoginResult(principal, id_token, expires, str(pending["return_to"]))

    def _sign(self, payload: Mapping[str, object]) -> str:
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        mac = _b64(hmac.new(self._secret, body.encode(), hashlib.sha256).digest())
        return f"{body}.{mac}"

    def _verify(self, cookie: str | None) -> dict[str, object]:
        if not cookie or "." not in cookie:
            raise AuthenticationError("no sign-in in progress in this browser (start again from Explore)")
        body, _, mac = cookie.partition(".")
        expected = _b64(hmac.new(self._secret, body.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(mac, expected):
            raise AuthenticationError("the sign-in cookie is not this server's (start again from Explore)")
        try:
            payload = json.loads(_unb64(body))
        except (ValueError, json.JSONDecodeError):
            raise AuthenticationError("the sign-in cookie is malformed") from None
        if not isinstance(payload, dict) or float(payload.get("expires", 0)) < self._clock():
            raise AuthenticationError("the sign-in took too long (over 10 minutes): start again from Explore")
        return payload
