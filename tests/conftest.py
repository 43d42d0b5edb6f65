"""Shared fixtures: a local HTTP server that stands in for the internet in the download tests, and
``device``, which runs a test on the CPU and on CUDA (marked ``cuda``; skipped where there is none)."""

import functools
import http.server
import os
import socket
import threading

import pytest
import torch

from magma_teach.data.download import MIRROR_ENV

# No progress lines or bars in tests, nor in the notebook kernels nbval starts (they inherit this
# environment), so no stored output depends on timings. A test that wants them sets the variable itself.
os.environ.setdefault("MAGMA_TEACH_PROGRESS", "0")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A folder served on 127.0.0.1 and set as ``MAGMA_TEACH_MIRROR``; put files in ``mirror`` (a Path).

    The cache goes to a fresh ``tmp_path/cache`` so downloads never touch the user's cache.
    """
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv(MIRROR_ENV, f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("MAGMA_TEACH_CACHE", str(tmp_path / "cache"))
    yield served
    server.shutdown()
    server.server_close()


@pytest.fixture
def no_network(tmp_path, monkeypatch):
    """``MAGMA_TEACH_MIRROR`` pointing at a closed port on 127.0.0.1: every download is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # free now, and nothing listens on it after the with-block
    monkeypatch.setenv(MIRROR_ENV, f"http://127.0.0.1:{port}")
    monkeypatch.setenv("MAGMA_TEACH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# ---------------------------------------------------------------- devices
def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: runs on a CUDA device, skipped without one (`pytest -m cuda` runs only these)")


CUDA = pytest.param("cuda", id="cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device")])


@pytest.fixture(scope="session", params=[pytest.param("cpu", id="cpu"), CUDA])
def device(request) -> torch.device:
    """The device a test runs on: every test that takes ``device`` runs once per device.

    On CUDA, float32 matrix products and convolutions keep full precision (no TF32), so a test's
    float32 tolerances mean on the GPU what they mean on the CPU.
    """
    if request.param == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return torch.device(request.param)
