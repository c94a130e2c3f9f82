"""The OIDC authenticator against a real issuer on loopback (discovery, JWKS over HTTP, key rotation)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _issuer import LocalIssuer, new_rsa

from sirius.identity import (
    AuthenticationError,
    AuthenticatorChain,
    ClientCredentials,
    IdentityConfigurationError,
    OidcAuthenticator,
    OidcSettings,
)


@pytest.fixture
def issuer() -> Iterator[LocalIssuer]:
    running = LocalIssuer().start()
    yield running
    running.stop()


def _config(issuer: LocalIssuer, **extra: object) -> str:
    return json.dumps({"issuers": [{"issuer": issuer.url, "audience": "sirius"}], **extra})


def _authenticator(issuer: LocalIssuer, admins: str | None = None, **extra: object) -> OidcAuthenticator:
    env = {"MICROMEGAS_OIDC_CONFIG": _config(issuer, **extra)}
    if admins is not None:
        env["MICROMEGAS_ADMINS"] = admins
    authenticator = OidcAuthenticator.from_env(env)
    assert authenticator is not None
    return authenticator


def _refusal(authenticator: OidcAuthenticator, token: str) -> str:
    with pytest.raises(AuthenticationError) as caught:
        authenticator.authenticate(f"Bearer {token}")
    return str(caught.value)


def test_valid_rs256_and_es256_tokens_give_the_email_principal(issuer: LocalIssuer) -> None:
    authenticator = _authenticator(issuer)
    for token in (issuer.mint(), issuer.mint(issuer.ec)):
        principal = authenticator.authenticate(f"Bearer {token}")
        assert principal is not None
        assert (principal.name, principal.method, principal.is_admin) == ("alice@example.com", "oidc", False)


def test_identity_falls_back_to_sub_without_an_email_claim(issuer: LocalIssuer) -> None:
    principal = _authenticator(issuer).authenticate(f"Bearer {issuer.mint(email=None, sub='svc-42')}")
    assert principal is not None
    assert principal.name == "svc-42"


def test_each_invalid_token_is_refused_with_its_reason(issuer: LocalIssuer) -> None:
    authenticator = _authenticator(issuer)
    stranger = new_rsa(issuer.rsa.kid)  # same kid, another key: a forged signature
    now = int(time.time())
    cases = {
        "expired": (issuer.mint(exp=now - 3600, iat=now - 7200), "token expired at"),
        "wrong aud": (issuer.mint(aud="someone-else"), "wrong audience: the token is for 'someone-else'"),
        "wrong iss": (issuer.mint(iss="https://evil.example.com"), "wrong issuer: 'https://evil.example.com'"),
        "bad signature": (issuer.mint(stranger), "bad signature"),
        "alg none": (issuer.mint_unsigned(), "unsigned token refused (alg 'none')"),
        "hs256 with the public key": (issuer.mint_hs256_with_public_key(), "algorithm HS256 refused"),
        "unknown kid": (issuer.mint(new_rsa("ghost")), "unknown signing key id (kid) 'ghost'"),
        "not yet valid": (issuer.mint(nbf=now + 3600), "token not yet valid"),
        "no exp": (issuer.mint(exp=None), "lacks the required 'exp' claim"),
    }
    for label, (token, reason) in cases.items():
        assert reason in _refusal(authenticator, token), label


def test_clock_skew_of_sixty_seconds_is_tolerated(issuer: LocalIssuer) -> None:
    authenticator = _authenticator(issuer)
    now = int(time.time())
    assert authenticator.authenticate(f"Bearer {issuer.mint(exp=now - 30, nbf=now + 30)}") is not None
    assert "token expired" in _refusal(authenticator, issuer.mint(exp=now - 90))


def test_non_jwt_bearers_are_left_to_the_rest_of_the_chain(issuer: LocalIssuer) -> None:
    authenticator = _authenticator(issuer)
    for header in (None, "", "Bearer mmk_abc123", "Bearer a.b.c", "Basic dXNlcjpwdw==", "Bearer "):
        assert authenticator.authenticate(header) is None, header
    assert issuer.jwks_hits == 0  # nothing was fetched for them

    class Keys:
        def authenticate(self, authorization: str | None) -> object:
            return "key-principal" if authorization == "Bearer mmk_abc123" else None

    chain = AuthenticatorChain([authenticator, Keys()])  # type: ignore[list-item]
    assert chain.authenticate("Bearer mmk_abc123") == "key-principal"
    assert chain.authenticate(f"Bearer {issuer.mint()}").method == "oidc"  # type: ignore[union-attr]


def test_key_rotation_is_picked_up_by_refetching_the_jwks(issuer: LocalIssuer) -> None:
    authenticator = _authenticator(issuer, jwks_min_refetch_interval_secs=0)
    assert authenticator.authenticate(f"Bearer {issuer.mint()}") is not None
    assert issuer.jwks_hits == 1
    old_token = issuer.mint(jti="never-presented")
    issuer.rotate()
    rotated = authenticator.authenticate(f"Bearer {issuer.mint()}")  # kid rsa-2: unknown until refetched
    assert rotated is not None
    assert issuer.jwks_hits == 2
    # the old key left the JWKS: its tokens (not cached yet) are refused by their unknown kid
    assert "unknown signing key id (kid) 'rsa-1'" in _refusal(authenticator, old_token)


def test_unknown_kid_refetches_are_rate_limited(issuer: LocalIssuer) -> None:
    now = [1000.0]
    settings = OidcSettings.parse(_config(issuer, jwks_min_refetch_interval_secs=30))
    authenticator = OidcAuthenticator(settings, monotonic=lambda: now[0])
    assert authenticator.authenticate(f"Bearer {issuer.mint()}") is not None
    for i in range(5):
        assert "unknown signing key id" in _refusal(authenticator, issuer.mint(new_rsa(f"made-up-{i}")))
    assert issuer.jwks_hits == 1  # the first fetch was less than 30 s ago: no refetch for made-up kids
    issuer.rotate()
    assert "unknown signing key id (kid) 'rsa-2'" in _refusal(authenticator, issuer.mint())
    now[0] += 31
    assert authenticator.authenticate(f"Bearer {issuer.mint()}") is not None
    assert issuer.jwks_hits == 2


def test_cached_tokens_still_expire(issuer: LocalIssuer) -> None:
    wall = [time.time()]
    settings = OidcSettings.parse(_config(issuer))
    authenticator = OidcAuthenticator(settings, clock=lambda: wall[0])
    token = issuer.mint(exp=int(wall[0]) + 120)
    assert authenticator.authenticate(f"Bearer {token}") is not None
    issuer.stop()  # from the cache: no issuer needed
    assert authenticator.authenticate(f"Bearer {token}") is not None
    wall[0] += 120 + 61
    assert "token expired" in _refusal(authenticator, token)


def test_admins_by_list_and_by_group(issuer: LocalIssuer) -> None:
    authenticator = _authenticator(issuer, admins='["alice@example.com"]', admin_groups=["sre"])
    admin = authenticator.authenticate(f"Bearer {issuer.mint()}")
    assert admin is not None
    assert admin.is_admin
    by_group = authenticator.authenticate(f"Bearer {issuer.mint(email='bob@example.com', groups=['dev', 'sre'])}")
    assert by_group is not None
    assert by_group.is_admin
    assert by_group.groups == frozenset({"dev", "sre"})
    plain = authenticator.authenticate(f"Bearer {issuer.mint(email='carol@example.com', groups=['dev'])}")
    assert plain is not None
    assert not plain.is_admin


def test_audiences_claim_gives_data_audiences(issuer: LocalIssuer) -> None:
    authenticator = _authenticator(issuer, audiences_claim="teams")
    principal = authenticator.authenticate(f"Bearer {issuer.mint(teams=['payments', 'search'])}")
    assert principal is not None
    assert principal.audiences == frozenset({"payments", "search"})


def test_an_unreachable_issuer_is_a_clear_refusal() -> None:
    settings = OidcSettings.parse(json.dumps({"issuers": [{"issuer": "http://127.0.0.1:9", "audience": "a"}]}))
    authenticator = OidcAuthenticator(settings)
    token = LocalIssuer(url="http://127.0.0.1:9").mint()
    assert "cannot reach the token's issuer" in _refusal(authenticator, token)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ('{"issuers": []}', "'issuers' must be a non-empty list"),
        ('{"issuers": [{"issuer": "idp", "audience": "a"}]}', "must be an http(s) URL"),
        ('{"issuers": [{"issuer": "https://idp"}]}', "needs a non-empty 'audience'"),
        ('{"issuers": [{"issuer": "https://idp", "audience": "a"}], "algorithms": ["HS256"]}', "HS256 refused"),
        ('{"issuers": [{"issuer": "https://idp", "audience": "a"}], "clock_skew_secs": -1}', "'clock_skew_secs'"),
    ],
)
def test_bad_configuration_is_refused_at_start(text: str, message: str) -> None:
    with pytest.raises(IdentityConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        OidcSettings.parse(text)


def test_admins_list_shapes() -> None:
    config = '{"issuers": [{"issuer": "https://idp", "audience": "a"}]}'
    with pytest.raises(IdentityConfigurationError, match="MICROMEGAS_ADMINS"):
        OidcSettings.from_env({"MICROMEGAS_OIDC_CONFIG": config, "MICROMEGAS_ADMINS": '["alice", 3]'})
    for text in ('["alice", "bob"]', "alice, bob"):
        settings = OidcSettings.from_env({"MICROMEGAS_OIDC_CONFIG": config, "MICROMEGAS_ADMINS": text})
        assert settings is not None
        assert settings.admins == frozenset({"alice", "bob"})
    assert OidcSettings.from_env({}) is None


def test_client_credentials_fetch_and_reuse_a_token(issuer: LocalIssuer) -> None:
    env = {
        "MICROMEGAS_OIDC_ISSUER": issuer.url,
        "MICROMEGAS_OIDC_CLIENT_ID": "batch-job",
        "MICROMEGAS_OIDC_CLIENT_SECRET": "s3cret",
        "MICROMEGAS_OIDC_AUDIENCE": "sirius",
    }
    credentials = ClientCredentials.from_env(env)
    assert credentials is not None
    first = credentials.authorization()
    assert credentials.authorization() == first
    assert len(issuer.token_requests) == 1
    assert issuer.token_requests[0]["audience"] == "sirius"
    principal = _authenticator(issuer).authenticate(first)
    assert principal is not None
    assert principal.name == "batch-job"
    wrong = ClientCredentials(issuer.url, "batch-job", "nope")
    with pytest.raises(AuthenticationError, match="invalid_client"):
        wrong.token()
    with pytest.raises(IdentityConfigurationError, match="MICROMEGAS_OIDC_CLIENT_SECRET"):
        ClientCredentials.from_env({"MICROMEGAS_OIDC_CLIENT_ID": "x", "MICROMEGAS_OIDC_ISSUER": issuer.url})
