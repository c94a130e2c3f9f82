"""A tiny OIDC issuer on loopback, run by the tests: discovery, JWKS, token and authorize endpoints.

Keys are generated here (RSA 2048 and EC P-256); the JWKS publishes the current ones and
:meth:`LocalIssuer.rotate` replaces the RSA key mid-test. Tokens are minted with any claims,
key, ``kid`` or algorithm a test wants (including forged ones). The token endpoint answers the
client-credentials grant for registered clients and the authorization-code grant with PKCE
(S256 checked); the authorize endpoint shows a one-button sign-in page for a configured user.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class _Key:
    kid: str
    alg: str
    private: Any

    def public_jwk(self) -> dict[str, Any]:
        algorithm = RSAAlgorithm if self.alg.startswith("RS") else ECAlgorithm
        jwk = json.loads(algorithm.to_jwk(self.private.public_key()))
        jwk.update({"kid": self.kid, "alg": self.alg, "use": "sig"})
        return jwk


def new_rsa(kid: str) -> _Key:
    return _Key(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


def new_ec(kid: str) -> _Key:
    return _Key(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))


@dataclass
class _Pending:
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str | None


@dataclass
class LocalIssuer:
    """The issuer. Start with :meth:`start`; ``url`` is its ``iss``."""

    audience: str = "sirius"
    user: dict[str, Any] = field(default_factory=lambda: {"sub": "user-1", "email": "alice@example.com"})
    clients: dict[str, str] = field(default_factory=lambda: {"batch-job": "s3cret"})
    url: str = ""
    jwks_hits: int = 0
    token_requests: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rsa = new_rsa("rsa-1")
        self.ec = new_ec("ec-1")
        self.published: list[_Key] = [self.rsa, self.ec]
        self._codes: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self) -> LocalIssuer:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                del args

            def do_GET(self) -> None:
                issuer._get(self)

            def do_POST(self) -> None:
                issuer._post(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # ---- keys and tokens ----------------------------------------------------------------------
    def rotate(self) -> _Key:
        """Replace the RSA signing key (a new ``kid``); the old one leaves the JWKS."""
        with self._lock:
            old = self.rsa
            self.rsa = new_rsa(f"rsa-{int(old.kid.split('-')[1]) + 1}")
            self.published = [self.rsa, *(k for k in self.published if k is not old)]
            return self.rsa

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        base = {"iss": self.url, "aud": self.audience, "sub": self.user["sub"], "iat": now, "exp": now + 600}
        base.update({k: v for k, v in self.user.items() if k != "sub"})
        base.update(overrides)
        return {k: v for k, v in base.items() if v is not None}

    def mint(self, key: _Key | None = None, *, kid: str | None = "", alg: str | None = None, **claims: Any) -> str:
        """A token signed with ``key`` (default the current RSA key), header ``kid`` (``""``: the key's; None: none)."""
        key = key or self.rsa
        headers = {} if kid is None else {"kid": kid or key.kid}
        return jwt.encode(self.claims(**claims), key.private, algorithm=alg or key.alg, headers=headers)

    def mint_unsigned(self, **claims: Any) -> str:
        header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": self.rsa.kid}).encode())
        return f"{header}.{_b64(json.dumps(self.claims(**claims)).encode())}."

    def mint_hs256_with_public_key(self, **claims: Any) -> str:
        """The algorithm-confusion forgery: HS256 keyed with the issuer's public key PEM."""
        pem = self.rsa.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": self.rsa.kid}).encode())
        body = _b64(json.dumps(self.claims(**claims)).encode())
        mac = hmac.new(pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
        return f"{header}.{body}.{_b64(mac)}"

    # ---- HTTP ---------------------------------------------------------------------------------
    def _json(self, handler: BaseHTTPRequestHandler, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _get(self, handler: BaseHTTPRequestHandler) -> None:
        parsed = urllib.parse.urlsplit(handler.path)
        if parsed.path == "/.well-known/openid-configuration":
            self._json(
                handler,
                200,
                {
                    "issuer": self.url,
                    "jwks_uri": f"{self.url}/jwks",
                    "token_endpoint": f"{self.url}/token",
                    "authorization_endpoint": f"{self.url}/authorize",
                    "response_types_supported": ["code"],
                    "code_challenge_methods_supported": ["S256"],
                    "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                },
            )
        elif parsed.path == "/jwks":
            with self._lock:
                self.jwks_hits += 1
                keys = [k.public_jwk() for k in self.published]
            self._json(handler, 200, {"keys": keys})
        elif parsed.path == "/authorize":
            self._sign_in_page(handler, dict(urllib.parse.parse_qsl(parsed.query)))
        else:
            self._json(handler, 404, {"error": "not_found"})

    def _sign_in_page(self, handler: BaseHTTPRequestHandler, params: dict[str, str]) -> None:
        if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            self._json(handler, 400, {"error": "invalid_request", "error_description": "PKCE S256 required"})
            return
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in params.items()
        )
        page = (
            "<!doctype html><html><head><title>Local issuer sign-in</title></head><body>"
            "<h1>Local issuer</h1>"
            f"<p>Sign in to <b>{html.escape(params.get('client_id', ''))}</b> as "
            f"<b data-testid='issuer-user'>{html.escape(str(self.user.get('email', self.user['sub'])))}</b></p>"
            f'<form method="post" action="/authorize">{hidden}'
            '<button type="submit" data-testid="issuer-approve">Sign in</button></form></body></html>'
        ).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "text/html; charset=utf-8")
        handler.send_header("Content-Length", str(len(page)))
        handler.end_headers()
        handler.wfile.write(page)

    def _form(self, handler: BaseHTTPRequestHandler) -> dict[str, str]:
        length = int(handler.headers.get("Content-Length") or 0)
        return dict(urllib.parse.parse_qsl(handler.rfile.read(length).decode()))

    def _post(self, handler: BaseHTTPRequestHandler) -> None:
        path = urllib.parse.urlsplit(handler.path).path
        form = self._form(handler)
        if path == "/authorize":
            code = secrets.token_urlsafe(16)
            with self._lock:
                self._codes[code] = _Pending(
                    form["client_id"], form["redirect_uri"], form["code_challenge"], form.get("nonce")
                )
            query = urllib.parse.urlencode({"code": code, "state": form.get("state", "")})
            handler.send_response(302)
            handler.send_header("Location", f"{form['redirect_uri']}?{query}")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
        elif path == "/token":
            with self._lock:
                self.token_requests.append(form)
            self._token(handler, form)
        else:
            self._json(handler, 404, {"error": "not_found"})

    def _token(self, handler: BaseHTTPRequestHandler, form: dict[str, str]) -> None:
        grant = form.get("grant_type")
        if grant == "client_credentials":
            client = form.get("client_id", "")
            if client not in self.clients or not hmac.compare_digest(
                self.clients[client], form.get("client_secret", "")
            ):
                self._json(handler, 401, {"error": "invalid_client"})
                return
            token = self.mint(sub=client, email=None, aud=form.get("audience") or self.audience)
            self._json(handler, 200, {"access_token": token, "token_type": "Bearer", "expires_in": 600})
            return
        if grant == "authorization_code":
            with self._lock:
                pending = self._codes.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "")
            if (
                pending is None
                or pending.client_id != form.get("client_id")
                or pending.redirect_uri != form.get("redirect_uri")
                or _b64(hashlib.sha256(verifier.encode()).digest()) != pending.challenge
            ):
                self._json(handler, 400, {"error": "invalid_grant"})
                return
            id_token = self.mint(aud=pending.client_id, nonce=pending.nonce)
            self._json(
                handler,
                200,
                {"id_token": id_token, "access_token": id_token, "token_type": "Bearer", "expires_in": 600},
            )
            return
        self._json(handler, 400, {"error": "unsupported_grant_type"})
