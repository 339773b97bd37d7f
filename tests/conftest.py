import errno
import ipaddress
import os
import socket

import pytest

os.environ.setdefault("DLCR_NO_PROGRESS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every model a test loads is built or shipped locally

try:  # keep tests polite on small CI machines
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
except ImportError:  # pragma: no cover
    pass


# --------------------------------------------------------------------------------------------
# No network: the whole test session runs with connections to non-local addresses blocked
# (loopback and Unix sockets stay open for Ray and torchrun). Subprocesses are not covered.
# Set DLCR_TEST_ALLOW_NETWORK=1 to lift the block.
# --------------------------------------------------------------------------------------------


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


def pytest_configure(config: pytest.Config) -> None:
    # installed at start-up rather than in a fixture, so that imports at collection time and
    # session-scoped fixtures are covered too; socket.create_connection resolves the name, then
    # calls socket.connect, so it is covered as well
    if os.environ.get("DLCR_TEST_ALLOW_NETWORK") == "1" or _saved:
        return
    for name, guard in (("connect", _guarded_connect), ("connect_ex", _guarded_connect_ex)):
        _saved.append((name, getattr(socket.socket, name)))
        setattr(socket.socket, name, guard)


def pytest_unconfigure(config: pytest.Config) -> None:
    while _saved:
        name, original = _saved.pop()
        setattr(socket.socket, name, original)
