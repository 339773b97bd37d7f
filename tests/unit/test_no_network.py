"""The test session blocks connections to non-local addresses (tests/conftest.py)."""

import os
import socket
import threading

import pytest

from dlcr.testing import netguard as conftest  # installed by tests/conftest.py

pytestmark = pytest.mark.skipif(
    os.environ.get("DLCR_TEST_ALLOW_NETWORK") == "1", reason="DLCR_TEST_ALLOW_NETWORK=1 lifts the block"
)


@pytest.fixture
def real_connects(monkeypatch):
    """Record what would reach the real ``connect``, so that a broken guard sends nothing anywhere."""
    calls = []

    def fake(sock, address):
        calls.append(address)
        raise ConnectionRefusedError("test stand-in for the real connect")

    monkeypatch.setattr(conftest, "_real_connect", fake)
    monkeypatch.setattr(conftest, "_real_connect_ex", lambda sock, address: calls.append(address) or 111)
    return calls


def test_guard_is_installed_for_the_whole_session():
    assert socket.socket.connect is conftest._guarded_connect
    assert socket.socket.connect_ex is conftest._guarded_connect_ex


@pytest.mark.parametrize(
    "family, address",
    [
        (socket.AF_INET, ("192.0.2.1", 80)),  # TEST-NET-1 (documentation range)
        (socket.AF_INET, ("10.1.2.3", 443)),  # private ranges are not local either
        (socket.AF_INET, ("example.org", 443)),  # a name other than localhost
        (socket.AF_INET6, ("2001:db8::1", 443, 0, 0)),
    ],
)
def test_non_local_connect_raises(real_connects, family, address):
    with socket.socket(family, socket.SOCK_STREAM) as s:
        with pytest.raises(conftest.NetworkBlockedError, match="network access is blocked") as info:
            s.connect(address)
        assert isinstance(info.value, OSError)  # code that handles "no network" still works
        with pytest.raises(conftest.NetworkBlockedError):
            s.connect_ex(address)
    assert real_connects == []


def test_create_connection_and_udp_are_blocked_too(real_connects):
    with pytest.raises(conftest.NetworkBlockedError):
        socket.create_connection(("192.0.2.1", 80), timeout=1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, pytest.raises(conftest.NetworkBlockedError):
        s.connect(("8.8.8.8", 53))  # the probe Ray uses to find its address; it falls back to 127.0.0.1
    assert real_connects == []


def test_loopback_and_unix_sockets_still_connect(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        accepted = []
        t = threading.Thread(target=lambda: accepted.append(server.accept()[0]))
        t.start()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            t.join(5)
            accepted[0].sendall(b"ok")
            assert c.recv(2) == b"ok"
        accepted[0].close()
    path = str(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(1)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.connect(path)


def test_is_local_host():
    local = ["127.0.0.1", "127.8.9.10", "::1", "localhost", "0.0.0.0", "::", "::ffff:127.0.0.1", b"127.0.0.1"]
    remote = ["192.0.2.1", "10.0.0.1", "172.16.0.1", "192.168.1.1", "8.8.8.8", "2001:db8::1", "pypi.org", None]
    assert all(conftest.is_local_host(h) for h in local)
    assert not any(conftest.is_local_host(h) for h in remote)
