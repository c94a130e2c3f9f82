"""HTTP to OIDC issuers: the discovery document, the JWKS and the token endpoint.

Requests never follow redirects (an issuer answers its own documents; following a redirect would
let a compromised or misconfigured issuer point the server at an internal address) and have a
short timeout, so a slow issuer delays one authentication, not a listener.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from ._exceptions import IdentityError

__all__ = ["IssuerMetadata", "IssuerUnavailableError", "discover", "get_json", "post_form"]

_TIMEOUT_SECONDS = 5.0
_MAX_BYTES = 1024 * 1024


class IssuerUnavailableError(IdentityError):
    """The issuer did not answer, or answered something unusable (the message says which)."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        """Refuse every redirect: the 3xx surfaces as an error."""
        del args, kwargs


def _opener(ca_file: str | None) -> urllib.request.OpenerDirector:
    context = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    return urllib.request.build_opener(_NoRedirect(), urllib.request.HTTPSHandler(context=context))


def _read_json(request: urllib.request.Request, ca_file: str | None) -> Any:
    url = request.full_url
    try:
        with _opener(ca_file).open(request, timeout=_TIMEOUT_SECONDS) as response:
            body = response.read(_MAX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        detail = exc.read(2000).decode("utf-8", "replace").strip()
        raise IssuerUnavailableError(f"{url} answered HTTP {exc.code}{': ' + detail if detail else ''}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise IssuerUnavailableError(f"{url} is unreachable ({reason})") from None
    if len(body) > _MAX_BYTES:
        raise IssuerUnavailableError(f"{url} answered more than {_MAX_BYTES} bytes")
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise IssuerUnavailableError(f"{url} did not answer JSON") from None


def _checked(url: str) -> str:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise IssuerUnavailableError(f"{url} is not an http(s) URL")
    return url


def get_json(url: str, ca_file: str | None = None) -> Any:
    """GET ``url`` and parse its JSON body.

    Raises:
        IssuerUnavailableError: not http(s), unreachable, an HTTP error, a redirect or not JSON.
    """
    request = urllib.request.Request(_checked(url), headers={"Accept": "application/json"})  # noqa: S310 - checked
    return _read_json(request, ca_file)


def post_form(url: str, fields: dict[str, str], ca_file: str | None = None) -> Any:
    """POST ``fields`` form-encoded (the token endpoint's encoding) and parse the JSON answer.

    Raises:
        IssuerUnavailableError: unreachable, an HTTP error (the issuer's error text included) or not JSON.
    """
    data = urllib.parse.urlencode(fields).encode()
    headers = {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"}
    request = urllib.request.Request(_checked(url), data=data, headers=headers, method="POST")  # noqa: S310 - checked
    return _read_json(request, ca_file)


@dataclass(frozen=True, slots=True)
class IssuerMetadata:
    """The parts of a discovery document Sirius uses."""

    issuer: str
    jwks_uri: str
    token_endpoint: str | None
    authorization_endpoint: str | None
    end_session_endpoint: str | None


def discover(issuer: str, ca_file: str | None = None) -> IssuerMetadata:
    """Read ``<issuer>/.well-known/openid-configuration``.

    Raises:
        IssuerUnavailableError: unreachable, not a discovery document, or one naming another
            issuer (OIDC Discovery §4.3: the ``issuer`` inside must be the one asked).
    """
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    document = get_json(url, ca_file)
    if not isinstance(document, dict) or not isinstance(document.get("jwks_uri"), str):
        raise IssuerUnavailableError(f"{url} is not an OIDC discovery document (no jwks_uri)")
    if document.get("issuer") != issuer:
        raise IssuerUnavailableError(f"{url} names issuer {document.get('issuer')!r}, not {issuer!r}")

    def text(name: str) -> str | None:
        value = document.get(name)
        return value if isinstance(value, str) else None

    return IssuerMetadata(
        issuer=issuer,
        jwks_uri=document["jwks_uri"],
        token_endpoint=text("token_endpoint"),
        authorization_endpoint=text("authorization_endpoint"),
        end_session_endpoint=text("end_session_endpoint"),
    )
