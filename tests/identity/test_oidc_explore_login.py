"""Explore's sign-in in a real browser: authorization code + PKCE against the local issuer.

A stack configured with the loopback issuer serves Explore; Chromium (Debian's, driven by
Playwright) opens a screen, is refused, signs in through the issuer's page, comes back to the
screen with its data, shows who is signed in, keeps the token out of reach of scripts
(httpOnly cookie) and signs out.
"""

from __future__ import annotations

import base64
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "e2e" / "explore"))

from _chromium import chromium_context
from _explore_stack import ARTIFACTS, chromium_path  # fixture: Debian's Chromium, installed on first use
from _issuer import LocalIssuer

__all__ = ["chromium_path"]

pytestmark = pytest.mark.timeout(900)  # the first use may install Debian's chromium
READY_MS = 30_000
SERVICE = "oidc-login-shop"


@pytest.fixture
def issuer() -> Iterator[LocalIssuer]:
    running = LocalIssuer().start()
    yield running
    running.stop()


@pytest.fixture
def gateway(issuer: LocalIssuer, stack_factory: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(
        "MICROMEGAS_OIDC_CONFIG", json.dumps({"issuers": [{"issuer": issuer.url, "audience": "sirius"}]})
    )
    stack = stack_factory(daemon=True)
    urls = {e.name: e.url for e in stack.endpoints}
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    exporter = OTLPSpanExporter(
        endpoint=f"{urls['otlp-http']}/v1/traces", headers={"authorization": f"Bearer {issuer.mint()}"}
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("login").start_as_current_span("GET /cart"):
        pass
    provider.shutdown()
    return urls["gateway"].removesuffix("/gateway")


@pytest.fixture
def browser_context(gateway: str, chromium_path: Path, tmp_path: Path) -> Iterator[Any]:
    """A headless Chromium with a fresh profile, started after the stack (Playwright's sync API
    runs an event loop in this thread, so the database fixtures must be set up before it)."""
    del gateway
    with chromium_context(chromium_path, tmp_path / "profile") as context:
        yield context


def _me(gateway: str, cookie: str | None = None) -> dict[str, Any]:
    headers = {"Cookie": f"sirius_session={cookie}"} if cookie else {}
    with urllib.request.urlopen(urllib.request.Request(f"{gateway}/explore/auth/me", headers=headers), timeout=10) as r:
        return json.loads(r.read())


def _wait_screen(page: Any, screen: str) -> str:
    page.wait_for_function(
        "s => { const m = document.querySelector('#screen'); return m && m.dataset.screen === s && m.dataset.state !== 'loading'; }",
        arg=screen,
        timeout=READY_MS,
    )
    return page.get_attribute("#screen", "data-state")


def test_sign_in_with_pkce_query_and_sign_out(gateway: str, issuer: LocalIssuer, browser_context: Any) -> None:
    assert _me(gateway) == {"login": True, "issuer": issuer.url, "user": None}
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.goto(f"{gateway}/services?from=1h")
    prompt = page.get_by_test_id("key-prompt")
    prompt.wait_for(state="visible", timeout=READY_MS)
    assert "this server needs" in page.get_by_test_id("auth-reason").inner_text()
    sign_in = page.get_by_test_id("dialog-sign-in")
    sign_in.wait_for(state="visible")
    assert sign_in.inner_text() == f"Sign in with {issuer.url}"
    sign_in.click()

    # the issuer's own page: the request carried a PKCE S256 challenge and our client id
    page.get_by_test_id("issuer-approve").wait_for(timeout=READY_MS)
    assert page.url.startswith(f"{issuer.url}/authorize?")
    assert "code_challenge_method=S256" in page.url
    assert "client_id=sirius" in page.url
    page.get_by_test_id("issuer-approve").click()

    # back on the screen asked for, with its data, signed in
    page.wait_for_url(f"{gateway}/services?from=1h", timeout=READY_MS)
    assert _wait_screen(page, "services") == "ready", page.inner_text("#screen")[:600]
    page.get_by_text(SERVICE).first.wait_for(timeout=READY_MS)
    user = page.get_by_test_id("account-user")
    user.wait_for(timeout=READY_MS)
    assert user.inner_text() == "alice@example.com"
    exchange = issuer.token_requests[-1]
    assert exchange["grant_type"] == "authorization_code"
    assert exchange["code_verifier"]  # the verifier never left the gateway before this exchange
    assert exchange["redirect_uri"] == f"{gateway}/explore/auth/callback"

    # the token sits in an httpOnly cookie: scripts cannot read it, the server knows who it is
    cookies = {c["name"]: c for c in browser_context.cookies(gateway)}
    session = cookies["sirius_session"]
    assert session["httpOnly"]
    assert session["sameSite"] == "Lax"
    assert "sirius_session" not in page.evaluate("document.cookie")
    assert _me(gateway, session["value"])["user"] == {"name": "alice@example.com", "is_admin": False}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "oidc-signed-in.png"))

    # the SQL screen's query goes through with the session too
    page.goto(f"{gateway}/sql?q=" + urllib.parse.quote("SELECT 6 * 7 AS answer"))
    _wait_screen(page, "sql")
    if page.locator("table[data-testid=result]").count() == 0:
        page.click("button[data-testid=run]")
    page.locator("table[data-testid=result]").wait_for(timeout=READY_MS)
    assert "42" in page.locator("table[data-testid=result]").inner_text()

    # sign out: the cookie is gone and the next call asks again
    page.get_by_test_id("sign-out").click()
    page.get_by_test_id("sign-in").wait_for(timeout=READY_MS)
    assert "sirius_session" not in {c["name"] for c in browser_context.cookies(gateway)}
    page.screenshot(path=str(ARTIFACTS / "oidc-signed-out.png"))
    page.close()
    assert not errors, errors


def test_forged_or_stale_callbacks_are_refused(gateway: str) -> None:
    expected = {
        "code=abc&state=xyz": "no sign-in in progress",
        "error=access_denied&error_description=user+said+no": "user said no",
    }
    for query, reason in expected.items():
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{gateway}/explore/auth/callback?{query}", timeout=10)
        assert refused.value.code == 401
        assert reason in refused.value.read().decode()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def test_return_to_cannot_leave_the_site(gateway: str, issuer: LocalIssuer) -> None:
    opener = urllib.request.build_opener(_NoRedirect())
    for target in ("https://evil.example.com/", "//evil.example.com/x", "/traces"):
        with pytest.raises(urllib.error.HTTPError) as redirected:
            opener.open(f"{gateway}/explore/auth/login?return_to={urllib.parse.quote(target)}", timeout=10)
        assert redirected.value.code == 302
        assert redirected.value.headers["Location"].startswith(f"{issuer.url}/authorize?")
        cookie = redirected.value.headers["Set-Cookie"]
        assert "HttpOnly" in cookie
        assert "Path=/explore/auth" in cookie
        payload = json.loads(_b64decode(cookie.split("=", 1)[1].split(".", 1)[0]))
        assert payload["return_to"] == ("/traces" if target == "/traces" else "/")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
