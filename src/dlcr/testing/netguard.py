"""Test-session network guard: connections to non-local addresses raise (loopback and Unix sockets
stay open for Ray and torchrun). Installed by ``tests/conftest.py`` at pytest start-up; a module of its
own so tests can import it by a unique name (every ``conftest`` is a module named ``conftest``).
Subprocesses are not covered. ``DLCR_TEST_ALLOW_NETWORK=1`` lifts the block.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket


class NetworkBlockedError(OSError):
    """A test tried to open a connection to a non-local address.

    An OSError with errno ENETUNREACH, so code that handles "no network" (e.g. Ray's probe of its
    own address, which then falls back to 127.0.0.1) behaves as on a machine without a network.
    """


def is_local_host(host: object) -> bool:
    """True for loopback / unspecified IP literals and ``localhost``; any other name needs DNS: False."""
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    host = host.split("%", 1)[0].strip("[]")  # IPv6 scope id, bracketed literals
    if host in ("", "localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or ip.is_unspecified or (mapped is not None and mapped.is_loopback)


def _check_address(sock: socket.socket, address: object) -> None:
    family = getattr(sock, "family", None)
    if family not in (socket.AF_INET, socket.AF_INET6):
        return  # AF_UNIX and other local families
    host = address[0] if isinstance(address, tuple) and address else address
    if not is_local_host(host):
        raise NetworkBlockedError(
            errno.ENETUNREACH, f"network access is blocked in tests (connect to {address!r})"
        )


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _guarded_connect(self: socket.socket, address: object) -> None:
    _check_address(self, address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    _check_address(self, address)
    return _real_connect_ex(self, address)


_saved: list[tuple[str, object]] = []


def install() -> None:
    """Replace ``socket.socket.connect`` / ``connect_ex`` by the guarded versions (idempotent)."""
    if os.environ.get("DLCR_TEST_ALLOW_NETWORK") == "1" or _saved:
        return
    for name, guard in (("connect", _guarded_connect), ("connect_ex", _guarded_connect_ex)):
        _saved.append((name, getattr(socket.socket, name)))
        setattr(socket.socket, name, guard)


def uninstall() -> None:
    while _saved:
        name, original = _saved.pop()
        setattr(socket.socket, name, original)
