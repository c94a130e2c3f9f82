"""TLS of the listeners: the certificate and key a process serves, resolved once; the plain-text warning.

Every listener of a process (native ingestion, OTLP/gRPC and OTLP/HTTP, FlightSQL, the gateway
and Explore) serves the same certificate. :meth:`ServerTls.resolve` takes the ``--tls-cert`` /
``--tls-key`` flags, else ``SIRIUS_TLS_CERT_FILE`` / ``SIRIUS_TLS_KEY_FILE``, reads both files and
checks them once, before anything listens: a missing or unreadable file, something that is not
PEM, an encrypted key (gRPC cannot ask for a passphrase) or a key that does not match the
certificate is refused with the reason. Listeners take what they need from the frozen result: an
``ssl.SSLContext`` for aiohttp, the PEM bytes for gRPC and Arrow Flight.

A listener reachable from other machines without TLS is allowed (a proxy may terminate TLS in
front of it) but warned about: :func:`warn_plaintext_bind` writes one line on stderr per service
start.
"""

from __future__ import annotations

import os
import ssl
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TextIO

from ._auth import is_loopback
from ._environment_variables import SIRIUS_TLS_CERT_FILE, SIRIUS_TLS_KEY_FILE
from ._exceptions import TlsConfigurationError

__all__ = ["ServerTls", "warn_plaintext_bind"]

_PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
_PEM_PRIVATE_KEY = b"PRIVATE KEY-----"
_WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def _no_passphrase() -> bytes:
    # Called by OpenSSL only for an encrypted key: fail instead of prompting on the terminal.
    msg = "the key is encrypted"
    raise TlsConfigurationError(msg)


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        msg = f"cannot read the TLS {what} {path}: {exc.strerror or exc}"
        raise TlsConfigurationError(msg) from None


@dataclass(frozen=True, slots=True)
class ServerTls:
    """The certificate chain and key every listener of this process serves.

    Build it with :meth:`load` or :meth:`resolve` (they check the files); the fields are what
    the servers need.

    Attributes:
        cert_file: path of the PEM certificate chain (server certificate first).
        key_file: path of its PEM private key.
        certificate_chain: the chain's PEM bytes (gRPC and Arrow Flight take bytes).
        private_key: the key's PEM bytes.
    """

    cert_file: str
    key_file: str
    certificate_chain: bytes = field(repr=False)
    private_key: bytes = field(repr=False)

    @classmethod
    def load(cls, cert_file: str | os.PathLike[str], key_file: str | os.PathLike[str]) -> ServerTls:
        """Read and check a certificate chain and its key.

        Raises:
            TlsConfigurationError: a file is missing or unreadable, not PEM, the key is encrypted,
                or the key does not match the certificate.
        """
        cert_path, key_path = os.fspath(cert_file), os.fspath(key_file)
        chain = _read(cert_path, "certificate")
        key = _read(key_path, "key")
        if _PEM_CERTIFICATE not in chain:
            msg = f"the TLS certificate {cert_path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
            raise TlsConfigurationError(msg)
        if _PEM_PRIVATE_KEY not in key:
            msg = f"the TLS key {key_path} holds no PEM private key (-----BEGIN ... PRIVATE KEY-----)"
            raise TlsConfigurationError(msg)
        if b"ENCRYPTED" in key:
            msg = f"the TLS key {key_path} is encrypted: give the key without a passphrase"
            raise TlsConfigurationError(msg)
        tls = cls(cert_path, key_path, chain, key)
        tls.ssl_context()  # OpenSSL's own checks: parseable, and the key matches the certificate
        return tls

    @classmethod
    def resolve(
        cls,
        cert_file: str | None = None,
        key_file: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> ServerTls | None:
        """The flags' files, else ``SIRIUS_TLS_CERT_FILE`` / ``SIRIUS_TLS_KEY_FILE``; None when neither is set.

        Raises:
            TlsConfigurationError: only one of certificate and key is given, or :meth:`load` refuses them.
        """
        environ = os.environ if environ is None else environ
        cert = cert_file or environ.get(SIRIUS_TLS_CERT_FILE, "").strip() or None
        key = key_file or environ.get(SIRIUS_TLS_KEY_FILE, "").strip() or None
        if cert is None and key is None:
            return None
        if cert is None or key is None:
            missing = "certificate (--tls-cert or " + SIRIUS_TLS_CERT_FILE + ")"
            if key is None:
                missing = "key (--tls-key or " + SIRIUS_TLS_KEY_FILE + ")"
            msg = f"TLS needs a certificate and its key: the {missing} is missing"
            raise TlsConfigurationError(msg)
        return cls.load(cert, key)

    def ssl_context(self) -> ssl.SSLContext:
        """A server context serving this certificate (TLS 1.2 or later), for aiohttp.

        Raises:
            TlsConfigurationError: OpenSSL refuses the certificate or the key.
        """
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.cert_file, self.key_file, password=_no_passphrase)
        except ssl.SSLError as exc:
            reason = exc.reason or str(exc)
            if reason == "KEY_VALUES_MISMATCH":
                msg = f"the TLS key {self.key_file} does not match the certificate {self.cert_file}"
            else:
                msg = f"cannot use the TLS certificate {self.cert_file} with the key {self.key_file}: {reason}"
            raise TlsConfigurationError(msg) from None
        except OSError as exc:
            msg = f"cannot read the TLS certificate {self.cert_file} or key {self.key_file}: {exc.strerror or exc}"
            raise TlsConfigurationError(msg) from None
        return context


def warn_plaintext_bind(service: str, host: str, tls: ServerTls | None, *, stream: TextIO | None = None) -> bool:
    """Warn, in one line on stderr, that ``service`` listens on a non-loopback ``host`` without TLS.

    Called once per service start (``sirius up`` once for all its listeners). Returns whether it
    warned.
    """
    if tls is not None or is_loopback(host):
        return False
    where = "every address" if host in _WILDCARD_HOSTS else host
    out = stream if stream is not None else sys.stderr
    out.write(
        f"sirius {service}: warning: listening on {where} without TLS: keys and data travel in clear text "
        f"(pass --tls-cert/--tls-key or set {SIRIUS_TLS_CERT_FILE}/{SIRIUS_TLS_KEY_FILE}, "
        "or terminate TLS in front)\n"
    )
    out.flush()
    return True
