"""The certificate authorities a FlightSQL client of Sirius trusts, and what a TLS failure means.

``sirius query``, the Explore terminal commands and the gateway connect to ``grpc+tls://``
services. They trust the PEM bundle given by ``--tls-ca`` (or ``SIRIUS_TLS_CA_FILE``) and
otherwise gRPC's default roots (the system's trust store). The bundle is read once, when the
client is built, so a missing or malformed file is reported before any query. gRPC's own words
for TLS failures are long and low-level: :func:`tls_failure_hint` turns the common ones into a
sentence saying what to change.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ..collector import TlsConfigurationError
from ._environment_variables import SIRIUS_TLS_CA_FILE

__all__ = ["read_ca_bundle", "tls_failure_hint"]

_PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"


def read_ca_bundle(ca_file: str | None = None, environ: Mapping[str, str] | None = None) -> bytes | None:
    """The PEM bundle of ``ca_file``, else of ``SIRIUS_TLS_CA_FILE``; None when neither is set.

    Raises:
        TlsConfigurationError: the file cannot be read or holds no PEM certificate.
    """
    environ = os.environ if environ is None else environ
    path = ca_file or environ.get(SIRIUS_TLS_CA_FILE, "").strip() or None
    if path is None:
        return None
    try:
        with open(path, "rb") as file:
            bundle = file.read()
    except OSError as exc:
        msg = f"cannot read the CA bundle {path}: {exc.strerror or exc}"
        raise TlsConfigurationError(msg) from None
    if _PEM_CERTIFICATE not in bundle:
        msg = f"the CA bundle {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        raise TlsConfigurationError(msg)
    return bundle


def tls_failure_hint(text: str) -> str | None:
    """A plain statement of a TLS failure in gRPC's error ``text``, or None when it is not one."""
    upper = text.upper()
    if "CERTIFICATE_VERIFY_FAILED" in upper or "CERTIFICATE VERIFY FAILED" in upper:
        return (
            "the FlightSQL service's TLS certificate is not trusted: give the CA that signed it "
            f"with --tls-ca or {SIRIUS_TLS_CA_FILE}"
        )
    if "WRONG_VERSION_NUMBER" in upper or "SSL HANDSHAKE FAILED" in upper or "SSL_ERROR" in upper:
        return "TLS handshake failed: the FlightSQL service may not serve TLS (use grpc:// for a plain-text one)"
    return None
