"""Model import and the registry, on the tiny model; errors are one line and exit non-zero."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import run_cli
from edgecl.errors import EdgeclError
from edgecl.models.registry import get_model, import_model, list_models


def test_import_gguf_converts_and_registers(tiny_gguf, tiny_mlx_dir):
    from edgecl.backends.mlx_backend import MLXModel

    entry = import_model(str(tiny_gguf), "tiny")
    assert get_model("tiny") == entry and [e.name for e in list_models()] == ["tiny"]
    converted = MLXModel.load(entry.mlx_dir)
    original = MLXModel.load(tiny_mlx_dir)
    ids = original.chat_ids([{"role": "user", "content": "Hello 123"}])
    assert converted.chat_ids([{"role": "user", "content": "Hello 123"}]) == ids
    # GGUF -> MLX undoes the q/k permutation that MLX -> GGUF applied: the same float32 weights,
    # so the same computation gives the same bits.
    a = converted.sequence_logprobs([ids[:5]], [ids[5:]])[0]
    b = original.sequence_logprobs([ids[:5]], [ids[5:]])[0]
    assert a.tobytes() == b.tobytes()


def test_two_processes_importing_at_once_wait_and_share_one_model(tiny_gguf, edgecl_home):
    """Bench jobs or ranks on a fresh data dir import the default model at the same moment: one
    converts while the other waits (here both wait on the lock the test holds), then the
    second takes the registered model instead of deleting it mid-use."""
    import fcntl
    import subprocess
    import sys
    import time

    code = f"from edgecl.models.registry import import_model; import_model({str(tiny_gguf)!r}, "
    code += "'tiny', reuse=True)"
    home = edgecl_home / "models" / "tiny"
    home.mkdir(parents=True)
    with open(home / ".import.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        procs = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]  # fmt: skip
        time.sleep(3)
        assert [p.poll() for p in procs] == [None, None]  # waiting for the lock
    assert [p.wait(timeout=120) for p in procs] == [0, 0], [p.stderr.read() for p in procs]
    entry = get_model("tiny")
    assert entry is not None and (Path(entry.mlx_dir) / "config.json").is_file()
    assert not (home / "mlx.tmp").exists()


def test_import_local_mlx_directory(tiny_mlx_dir):
    entry = import_model(str(tiny_mlx_dir), "tiny-dir")
    assert entry.mlx_dir == str(tiny_mlx_dir) and entry.architecture == "llama"
    assert entry.gguf is None


def test_import_hub_id_from_offline_cache(tiny_mlx_dir, tmp_path, monkeypatch):
    """A Hugging Face cache (as `huggingface-cli download` leaves it) imports with no network."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--tiny-llama"
    shutil.copytree(tiny_mlx_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    entry = import_model("someone/tiny-llama")
    assert entry.name == "tiny-llama" and entry.source == "someone/tiny-llama"
    assert entry.mlx_dir.endswith(commit)
    with pytest.raises(EdgeclError, match="cannot get someone/absent"):
        import_model("someone/absent")


def test_cli_models_import_and_list(tiny_gguf, edgecl_home):
    result = run_cli("models", "import", str(tiny_gguf), "--name", "tiny", home=edgecl_home)
    assert result.returncode == 0, result.stderr
    listed = run_cli("models", "list", "--json", home=edgecl_home)
    assert [e["name"] for e in json.loads(listed.stdout)] == ["tiny"]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing.gguf", "no such model path"),
        (lambda p: (p / "x.gguf").write_text("not a model") and p / "x.gguf", "is not a GGUF"),
        (lambda p: _hf_dir(p, "mamba_unknown"), "architecture 'mamba_unknown' is not supported"),
        (lambda p: _gguf_with_arch(p, "gpt2"), "architecture 'gpt2' is not supported"),
    ],
    ids=["missing", "not-gguf", "unsupported-dir", "unsupported-gguf"],
)
def test_bad_model_input_is_one_line(make, message, tmp_path, edgecl_home):
    result = run_cli("models", "import", str(make(tmp_path)), home=edgecl_home)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def _hf_dir(path, model_type):
    d = path / "weird"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": model_type}))
    return d


def _gguf_with_arch(path, arch):
    import gguf
    import numpy as np

    out = path / f"{arch}.gguf"
    writer = gguf.GGUFWriter(str(out), arch)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def test_dequantize_is_plain_float32_arithmetic():
    """4- and 8-bit groups: q * scale + bias in float32 numpy, one rounding per operation (the
    same bits on every machine; MLX's own dequantize rounds a float16 scale's product in float16
    and differs between CPU and GPU), which is what llama.cpp computes for Q4_1 / Q8_0."""
    import mlx.core as mx
    import numpy as np

    from edgecl.models.gguf import _dequantize

    rng = np.random.default_rng(0)
    for bits in (4, 8):
        q = rng.integers(0, 2**bits, size=(3, 64))
        scales = rng.normal(0, 0.1, (3, 2)).astype(np.float16)
        biases = rng.normal(0, 0.1, (3, 2)).astype(np.float16)
        packed = np.zeros((3, 64 * bits // 32), dtype=np.uint32)
        per_word = 32 // bits
        for k in range(64):  # the low bits of a word hold the first value
            packed[:, k // per_word] |= q[:, k].astype(np.uint32) << (bits * (k % per_word))
        tensors = {"t.weight": mx.array(packed), "t.scales": mx.array(scales),
                   "t.biases": mx.array(biases)}  # fmt: skip
        got = _dequantize(tensors, "t", 64)
        want = q.reshape(3, 2, 32).astype(np.float32) * scales.astype(np.float32)[..., None]
        want = (want + biases.astype(np.float32)[..., None]).reshape(3, 64)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)
