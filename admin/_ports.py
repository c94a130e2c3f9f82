"""Port checks of ``sirius up``: a taken port is one clear line, not a traceback.

Every fixed port is probed before anything else starts (so a conflict costs no database start),
and a service whose start fails is probed again, because the port may have been taken between
the probe and the bind. The probe binds the address the way the services do (``SO_REUSEADDR``,
so a socket in ``TIME_WAIT`` is no conflict) and closes at once. It binds without
``SO_REUSEPORT``: gRPC servers set it, and two of them could otherwise share a port silently.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from ._exceptions import PortInUseError

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class PortClaim:
    """A service's port and the ``sirius up`` flag that changes it (port 0 = any free port)."""

    service: str
    port: int
    flag: str


def port_in_use(host: str, port: int) -> bool:
    """True when binding ``host:port`` fails because the address is taken."""
    if port == 0:
        return False
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return False  # the service's own bind reports an unusable host
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return True
    return False


def check_ports_free(host: str, claims: list[PortClaim]) -> None:
    """Raise for the first claimed port that is already in use.

    Raises:
        PortInUseError: names the service, the port and the flag to pick another.
    """
    for claim in claims:
        if port_in_use(host, claim.port):
            raise PortInUseError(claim.service, claim.port, claim.flag)


async def start_claimed(host: str, claims: list[PortClaim], start: Callable[[], Awaitable[_T]]) -> _T:
    """Start a service; a failure because one of its ports was taken meanwhile is a PortInUseError.

    Raises:
        PortInUseError: the start failed and a claimed port is now in use.
    """
    try:
        return await start()
    except Exception as exc:
        for claim in claims:
            if port_in_use(host, claim.port):
                raise PortInUseError(claim.service, claim.port, claim.flag) from exc
        raise
