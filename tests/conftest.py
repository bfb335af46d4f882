"""Shared fixtures: a private data dir per test, a tiny random llama model (MLX and GGUF) with
the real SmolLM2 tokenizer, and the real bundled model converted once per session."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from edgecl.backends.blas import preload_openblas

preload_openblas()  # before anything imports mlx

pytest_plugins = ["reliability"]  # writes docs/reliability.md when EDGECL_RELIABILITY_DOC is set


@pytest.fixture(autouse=True)
def edgecl_home(tmp_path, monkeypatch):
    """Every test writes into its own data dir, never the user's."""
    home = tmp_path / "edgecl-home"
    monkeypatch.setenv("EDGECL_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tiny_mlx_dir(tmp_path_factory):
    from tiny_model import make_tiny_mlx

    return make_tiny_mlx(tmp_path_factory.mktemp("tiny") / "mlx")


@pytest.fixture(scope="session")
def tiny_gguf(tiny_mlx_dir, tmp_path_factory):
    from tiny_model import make_tiny_gguf

    return make_tiny_gguf(tiny_mlx_dir, tmp_path_factory.mktemp("tiny-gguf") / "tiny.gguf")


@pytest.fixture
def tiny_model(tiny_mlx_dir):
    from edgecl.backends.mlx_backend import MLXModel

    return MLXModel.load(tiny_mlx_dir, "tiny-llama")


@pytest.fixture(scope="session")
def real_home(tmp_path_factory):
    """A data dir holding the bundled SmolLM2 converted to MLX (about 10 s, once)."""
    home = tmp_path_factory.mktemp("real-home")
    old = os.environ.get("EDGECL_HOME")
    os.environ["EDGECL_HOME"] = str(home)
    try:
        from edgecl.models.registry import resolve_model

        resolve_model()
    finally:
        if old is None:
            os.environ.pop("EDGECL_HOME", None)
        else:
            os.environ["EDGECL_HOME"] = old
    return home


@pytest.fixture
def real_model(real_home, monkeypatch):
    from edgecl.backends.mlx_backend import MLXModel
    from edgecl.models.registry import resolve_model

    monkeypatch.setenv("EDGECL_HOME", str(real_home))
    entry = resolve_model()
    return MLXModel.load(entry.mlx_dir, entry.name)


def run_cli(*args: str, home=None, env: dict | None = None, timeout: int = 600):
    """Run `edgecl ARGS` in a subprocess, as a user would; returns the CompletedProcess."""
    full_env = dict(os.environ, **(env or {}))
    if home is not None:
        full_env["EDGECL_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-c", "from edgecl.cli.main import run; run()", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


@pytest.fixture
def cpu_device():
    """Run MLX on the CPU for this test (float64 references; a no-op on Linux)."""
    import mlx.core as mx

    before = mx.default_device()
    mx.set_default_device(mx.cpu)
    yield
    mx.set_default_device(before)


# Modules whose tests run edgecl in child processes, train for several steps or restart it:
# seconds to a minute each on a 2-core CPU. Marked `slow` (CI runs them all; for a quick local
# pass: pytest -m "not slow").
SLOW_MODULES = {
    "test_crash.py", "test_cloud_faults.py", "test_storage.py", "test_adapt.py", "test_bench.py",
    "test_distributed.py", "test_daemon.py", "test_learn_cli.py", "test_train.py",
    "test_warmup.py", "test_sandbox.py",
}  # fmt: skip


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if item.path.name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
