"""Azurite, the Azure Blob Storage emulator, for the ``az://`` tests: install, start, make containers.

Azurite is pinned in ``tests/azurite/package-lock.json`` and installed once from the npm registry
(``npm ci``) into a cache folder outside the work tree keyed by the lock file's hash, as the OTel
JS peer is. It runs in memory on a free loopback port. Containers are created with one REST call
signed with the emulator's well-known development account key (Shared Key), since the store under
test creates nothing.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from npm_packages import installed_node_modules
from waiting import wait_for_server

ACCOUNT = "devstoreaccount1"
# Azurite's documented development key: public, the same in every installation.
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
NPM_DIR = Path(__file__).resolve().parent / "azurite"


def _installed() -> Path:
    modules = installed_node_modules(NPM_DIR, "azurite", "the Azurite emulator")
    return modules / ".bin" / "azurite-blob"


@contextmanager
def running_azurite(workdir: Path) -> Iterator[str]:
    """Start Azurite's blob service in memory on loopback (run from ``workdir``); yield its URL."""
    binary = _installed()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = [str(binary), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence"]
    args += ["--skipApiVersionCheck", "--disableTelemetry", "--silent"]
    server = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_server(
            server,
            lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close(),
            f"Azurite on {url}",
            timeout=60,
        )
        yield url
    finally:
        server.terminate()
        server.wait(10)


def create_container(url: str, name: str) -> None:
    """Create a blob container, signed with the development account's Shared Key."""
    headers = {"x-ms-date": email.utils.formatdate(usegmt=True), "x-ms-version": "2021-08-06", "Content-Length": "0"}
    canonical_headers = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()) if k.startswith("x-ms-"))
    # VERB, then 11 empty standard headers (Content-Length is empty when zero), then ours.
    to_sign = "PUT\n" + "\n" * 11 + canonical_headers + f"/{ACCOUNT}/{ACCOUNT}/{name}\nrestype:container"
    digest = hmac.new(base64.b64decode(ACCOUNT_KEY), to_sign.encode(), hashlib.sha256).digest()
    headers["Authorization"] = f"SharedKey {ACCOUNT}:{base64.b64encode(digest).decode()}"
    request = urllib.request.Request(f"{url}/{ACCOUNT}/{name}?restype=container", method="PUT", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201, response.status
