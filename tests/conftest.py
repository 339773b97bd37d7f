import os

import pytest

os.environ.setdefault("DLCR_NO_PROGRESS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every model a test loads is built or shipped locally

try:  # keep tests polite on small CI machines
    import torch

    # one thread per xdist worker (the workers already share the cores), else at most two
    torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, torch.get_num_threads()))
except ImportError:  # pragma: no cover
    pass


# --------------------------------------------------------------------------------------------
# No network: the whole test session runs with connections to non-local addresses blocked
# (loopback and Unix sockets stay open for Ray and torchrun). Subprocesses are not covered.
# Set DLCR_TEST_ALLOW_NETWORK=1 to lift the block.
# --------------------------------------------------------------------------------------------


from dlcr.testing import netguard  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    # installed at start-up rather than in a fixture, so that imports at collection time and
    # session-scoped fixtures are covered too; socket.create_connection resolves the name, then
    # calls socket.connect, so it is covered as well
    netguard.install()


def pytest_unconfigure(config: pytest.Config) -> None:
    netguard.uninstall()


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of many small ops (several times faster than two on a shared
    2-core machine); the previous count is restored afterwards. Use with
    ``pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
