"""TLS settings of the listeners: what is refused before anything listens, and the plain-text warning.

``ServerTls`` reads flags, else ``SIRIUS_TLS_CERT_FILE`` / ``SIRIUS_TLS_KEY_FILE``, and refuses
unusable files with the reason; ``sirius ingest`` (a real process) reports such a refusal and
exits 2 without binding; a non-loopback bind without TLS is warned about in exactly one stderr
line per start, and not at all on loopback or with TLS.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tls_certificates import Pki, make_pki

from sirius.collector import ServerTls, TlsConfigurationError, warn_plaintext_bind
from sirius.tracing import SinkConfig

SIRIUS = [sys.executable, "-m", "sirius.admin.cli"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_a_good_pair_loads_with_its_pem_bytes(pki: Pki) -> None:
    tls = ServerTls.load(pki.cert, pki.key)
    assert tls.certificate_chain == pki.cert.read_bytes()
    assert tls.private_key == pki.key.read_bytes()
    assert "PRIVATE" not in repr(tls)  # the key never shows in logs


def test_resolve_reads_the_environment_and_flags_win(pki: Pki, tmp_path: Path) -> None:
    assert ServerTls.resolve(environ={}) is None
    env = {"SIRIUS_TLS_CERT_FILE": str(pki.cert), "SIRIUS_TLS_KEY_FILE": str(pki.key)}
    assert ServerTls.resolve(environ=env).cert_file == str(pki.cert)  # type: ignore[union-attr]
    bad_env = {"SIRIUS_TLS_CERT_FILE": str(tmp_path / "missing.pem"), "SIRIUS_TLS_KEY_FILE": str(pki.key)}
    assert ServerTls.resolve(str(pki.cert), None, environ=bad_env).cert_file == str(pki.cert)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("cert", "key", "reason"),
    [
        ("cert", None, "the key (--tls-key or SIRIUS_TLS_KEY_FILE) is missing"),
        (None, "key", "the certificate (--tls-cert or SIRIUS_TLS_CERT_FILE) is missing"),
        ("missing", "key", "missing.pem: No such file or directory"),
        ("key", "key", "holds no PEM certificate"),
        ("cert", "cert", "holds no PEM private key"),
        ("cert", "encrypted_key", "is encrypted"),
        ("cert", "other_key", "does not match the certificate"),
    ],
)
def test_unusable_settings_are_refused_with_the_reason(
    pki: Pki, tmp_path: Path, cert: str | None, key: str | None, reason: str
) -> None:
    files = {name: str(getattr(pki, name)) for name in ("cert", "key", "encrypted_key", "other_key")}
    files["missing"] = str(tmp_path / "missing.pem")
    with pytest.raises(TlsConfigurationError) as refused:
        ServerTls.resolve(files.get(cert or ""), files.get(key or ""), environ={})
    assert reason in str(refused.value)


def test_plain_text_warning_only_for_a_non_loopback_bind_without_tls(pki: Pki) -> None:
    tls = ServerTls.load(pki.cert, pki.key)
    for host, server_tls in (("127.0.0.1", None), ("::1", None), ("localhost", None), ("0.0.0.0", tls)):
        out = io.StringIO()
        assert not warn_plaintext_bind("ingest", host, server_tls, stream=out)
        assert out.getvalue() == ""
    out = io.StringIO()
    assert warn_plaintext_bind("ingest", "0.0.0.0", None, stream=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("sirius ingest: warning: listening on every address without TLS")
    assert "--tls-cert" in lines[0]


def test_the_sink_refuses_an_unreadable_ca_bundle(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"cannot use the CA bundle .*missing\.pem"):
        SinkConfig(url="https://127.0.0.1:9000", ca_file=str(tmp_path / "missing.pem"))
    not_pem = tmp_path / "not-pem.txt"
    not_pem.write_text("hello")
    with pytest.raises(ValueError, match="cannot use the CA bundle"):
        SinkConfig(url="https://127.0.0.1:9000", ca_file=str(not_pem))
    assert SinkConfig(url="https://127.0.0.1:9000", ca_file=str(pki.ca)).ca_file == str(pki.ca)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MICROMEGAS_", "SIRIUS_"))}
    env["SIRIUS_SELF_TELEMETRY"] = "0"
    env.update(extra)
    return env


def test_sirius_ingest_refuses_a_mismatched_key_before_binding(pki: Pki, pg_dsn: str) -> None:
    args = [*SIRIUS, "ingest", "--host", "127.0.0.1", "--port", "0", "--sql-connection-string", pg_dsn]
    result = subprocess.run(
        [*args, "--tls-cert", str(pki.cert)],
        env=_env(SIRIUS_TLS_KEY_FILE=str(pki.other_key)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result
    assert result.stderr.strip().splitlines()[-1] == (
        f"sirius ingest: the TLS key {pki.other_key} does not match the certificate {pki.cert}"
    )


def _start_until_listening(args: list[str], env: dict[str, str], marker: str) -> tuple[str, str]:
    """Run a service until it prints the line starting with ``marker``, stop it, return (that line, stderr)."""
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        for line in process.stdout:  # blocks until the service prints; the test timeout bounds it
            if line.startswith(marker):
                break
        else:
            pytest.fail(f"the service exited before listening: {process.wait()} {process.stderr.read()}")  # type: ignore[union-attr]
        process.terminate()
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return line.strip(), err


@pytest.mark.parametrize("with_tls", [False, True])
def test_a_public_bind_warns_once_without_tls_and_not_with_it(
    pki: Pki, pg_dsn: str, tmp_path: Path, with_tls: bool
) -> None:
    args = [*SIRIUS, "ingest", "--host", "0.0.0.0", "--port", "0", "--disable-auth"]
    args += ["--sql-connection-string", pg_dsn, "--object-store-uri", (tmp_path / "objects").as_uri()]
    if with_tls:
        args += ["--tls-cert", str(pki.cert), "--tls-key", str(pki.key)]
    line, err = _start_until_listening(args, _env(), "ingestion")
    warnings = [text for text in err.splitlines() if "without TLS" in text]
    if with_tls:
        assert line.startswith("ingestion    https://0.0.0.0:")
        assert warnings == []
    else:
        assert line.startswith("ingestion    http://0.0.0.0:")
        assert len(warnings) == 1
        assert warnings[0].startswith("sirius ingest: warning: listening on every address without TLS")
