"""LlamaCppModel: same numbers as MLX (base and LoRA), loud adapter failures, the real model chats.

    .venv/bin/python -m pytest tests/test_llamacpp.py -q

Tolerances are relative to the largest |logit| of the MLX reference (about 34 here) and come from
`numerics.logits_tol`. Measured on the 2-core x86 box: float32 KV cache 1.1e-6 (base) and 0.7e-6
(LoRA); float16 KV cache (llama.cpp's default) 0.9e-3 and 1.0e-3; a GGUF without the q/k row
permutation is off by 1.5, so these bounds do test the permutation.
"""

from __future__ import annotations

import re

import edgecl.backends.blas

edgecl.backends.blas.preload_openblas()

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import edgecl.backends.llamacpp as llamacpp  # noqa: E402
import edgecl.models.gguf  # noqa: E402
from edgecl.backends.llamacpp import LlamaCppModel  # noqa: E402
from edgecl.backends.llamacpp_batch import BatchedLlamaCpp  # noqa: E402
from edgecl.errors import EdgeclError  # noqa: E402
from edgecl.models.export import export_gguf_lora  # noqa: E402
from numerics import logits_tol  # noqa: E402
from tiny_model import (  # noqa: E402
    TINY_CONFIG,
    bundled_gguf,
    make_tiny_adapter,
    make_tiny_gguf,
    make_tiny_mlx,
    mlx_with_adapter,
)

TOL_F32_KV = logits_tol(TINY_CONFIG)  # 1.5e-5; measured 0.7e-6 to 1.1e-6
TOL_F16_KV = logits_tol(TINY_CONFIG, f16_kv_cache=True)  # 3.9e-3; measured 0.9e-3 to 1.0e-3
EOS = 2  # <|im_end|> in the SmolLM2 vocabulary
PROMPT = "The quick brown fox jumps over the lazy dog. 12345 <|im_end|>"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny MLX model + its GGUF, a random non-zero LoRA and its GGUF export, prompt ids."""
    root = tmp_path_factory.mktemp("tiny")
    mlx_dir = make_tiny_mlx(root / "mlx")
    model_gguf = make_tiny_gguf(mlx_dir, root / "tiny.gguf")
    adapter_dir = make_tiny_adapter(root / "adapter", rank=4, scale=2.0)
    adapter_gguf = export_gguf_lora(adapter_dir, base_gguf=model_gguf)
    base, tokenizer = mlx_with_adapter(mlx_dir)
    tuned, _ = mlx_with_adapter(mlx_dir, adapter_dir)
    ids = tokenizer.encode(PROMPT)
    return {
        "mlx_dir": mlx_dir,
        "gguf": model_gguf,
        "adapter_gguf": adapter_gguf,
        "base": base,
        "tuned": tuned,
        "ids": ids,
    }


def mlx_logits(model, ids) -> np.ndarray:
    return np.array(model(mx.array([ids]))[0, -1])


def rel_diff(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


def test_tokenizers_agree(tiny):
    with LlamaCppModel(tiny["gguf"], n_ctx=256) as m:
        assert m.tokenize(PROMPT) == tiny["ids"]
        assert tiny["ids"][-1] == EOS  # <|im_end|> parsed as the special token


def test_base_logits_match_mlx(tiny):
    want = mlx_logits(tiny["base"], tiny["ids"])
    with LlamaCppModel(tiny["gguf"], n_ctx=256, f32_kv_cache=True) as m:
        assert rel_diff(m.logits(tiny["ids"]), want) < TOL_F32_KV
    with LlamaCppModel(tiny["gguf"], n_ctx=256) as m:
        assert rel_diff(m.logits(tiny["ids"]), want) < TOL_F16_KV


def test_logit_check_catches_a_missing_qk_permutation(tiny, tmp_path, monkeypatch):
    """Without llama.cpp's q/k row layout the logits are far outside the tolerance."""
    monkeypatch.setattr(edgecl.models.gguf, "permute_rows", lambda w, n_head: w)
    unpermuted = make_tiny_gguf(tiny["mlx_dir"], tmp_path / "unpermuted.gguf")
    want = mlx_logits(tiny["base"], tiny["ids"])
    with LlamaCppModel(unpermuted, n_ctx=256, f32_kv_cache=True) as m:
        assert rel_diff(m.logits(tiny["ids"]), want) > 100 * TOL_F16_KV


def test_adapter_logits_match_mlx(tiny):
    want = mlx_logits(tiny["tuned"], tiny["ids"])
    base = mlx_logits(tiny["base"], tiny["ids"])
    assert rel_diff(want, base) > 0.1  # the adapter matters
    with LlamaCppModel(
        tiny["gguf"], adapter_gguf=tiny["adapter_gguf"], n_ctx=256, f32_kv_cache=True
    ) as m:
        got = m.logits(tiny["ids"])
    assert rel_diff(got, want) < TOL_F32_KV
    assert rel_diff(got, base) > 0.1


def test_greedy_ids_match_mlx_with_adapter(tiny):
    ids = list(tiny["ids"][:-1])  # without the final <|im_end|>, after which EOS comes at once
    want = []
    for _ in range(8):  # plain greedy decoding on MLX, no cache: 8 steps of a tiny model
        token = int(np.argmax(mlx_logits(tiny["tuned"], ids + want)))
        want.append(token)
        if token == EOS:
            break
    assert len(set(want)) >= 4, want  # varied enough for the comparison to mean something
    with LlamaCppModel(
        tiny["gguf"], adapter_gguf=tiny["adapter_gguf"], n_ctx=256, f32_kv_cache=True
    ) as m:
        got = m.generate_ids(ids, max_tokens=8, temperature=0)
        assert m.generate_ids(ids, max_tokens=8, temperature=0) == got  # repeatable
        sampled = m.generate_ids(ids, max_tokens=8, temperature=1.0, seed=3)
        assert m.generate_ids(ids, max_tokens=8, temperature=1.0, seed=3) == sampled
    assert got == want


def test_adapter_for_other_dims_is_rejected(tiny, tmp_path):
    other = dict(TINY_CONFIG, hidden_size=32, intermediate_size=96)
    adapter = make_tiny_adapter(tmp_path / "ad", config=other, keys=("self_attn.v_proj",))
    adapter_gguf = export_gguf_lora(adapter)  # no base given: nothing to compare with yet
    with pytest.raises(EdgeclError, match=r"made for another model.*attn_v.weight is 32x64"):
        LlamaCppModel(tiny["gguf"], adapter_gguf=adapter_gguf, n_ctx=256)


def test_llama_cpp_rejection_is_not_silent(tiny, tmp_path, monkeypatch):
    """Skip our pre-check: llama.cpp's own refusal (a NULL handle) must still raise."""
    monkeypatch.setattr(llamacpp, "check_gguf_lora", lambda adapter, model: 1.0)
    other = dict(TINY_CONFIG, hidden_size=32, intermediate_size=96)
    adapter = make_tiny_adapter(tmp_path / "ad", config=other, keys=("mlp.down_proj",))
    bad = export_gguf_lora(adapter)
    with pytest.raises(EdgeclError, match=r"llama.cpp rejected the LoRA adapter .*ffn_down.*shape"):
        LlamaCppModel(tiny["gguf"], adapter_gguf=bad, n_ctx=256)
    engine = BatchedLlamaCpp(tiny["gguf"], n_threads=1)  # the rollout engine says why too
    try:
        with pytest.raises(EdgeclError, match=r"rejected the LoRA adapter .*\(.*ffn_down.*shape"):
            engine.set_adapter(bad)
    finally:
        engine.close()


def test_adapter_without_effect_is_caught(tiny, tmp_path, monkeypatch):
    """A zero-B adapter is a valid no-op; one that claims non-zero B but changes nothing fails."""
    adapter = make_tiny_adapter(tmp_path / "ad", b_std=0.0)
    zero_gguf = export_gguf_lora(adapter, base_gguf=tiny["gguf"])
    with LlamaCppModel(tiny["gguf"], n_ctx=256) as plain:
        base = plain.logits(tiny["ids"])
    with LlamaCppModel(tiny["gguf"], adapter_gguf=zero_gguf, n_ctx=256) as m:
        np.testing.assert_array_equal(m.logits(tiny["ids"]), base)
    monkeypatch.setattr(llamacpp, "check_gguf_lora", lambda adapter, model: 1.0)
    with pytest.raises(EdgeclError, match="has no effect"):
        LlamaCppModel(tiny["gguf"], adapter_gguf=zero_gguf, n_ctx=256)


def test_bad_paths_are_one_line_errors(tiny, tmp_path):
    with pytest.raises(EdgeclError, match="no such file"):
        LlamaCppModel(tmp_path / "missing.gguf")
    (tmp_path / "x.gguf").write_text("hello")
    with pytest.raises(EdgeclError, match="not a GGUF file"):
        LlamaCppModel(tmp_path / "x.gguf")
    with pytest.raises(EdgeclError, match="is a GGUF adapter, not a model"):
        LlamaCppModel(tiny["adapter_gguf"])
    with pytest.raises(EdgeclError, match="no such file"):
        LlamaCppModel(tiny["gguf"], adapter_gguf=tmp_path / "missing.gguf")
    with LlamaCppModel(tiny["gguf"], n_ctx=256) as m:
        with pytest.raises(EdgeclError, match="does not fit the context of 256"):
            m.logits(list(range(257)))
        with pytest.raises(EdgeclError, match="empty prompt"):
            m.generate_ids([])


@pytest.mark.slow
def test_real_model_names_colours():
    """The bundled SmolLM2-135M-Instruct answers through its own chat template (~3 s)."""
    messages = [{"role": "user", "content": "Name three colours."}]
    with LlamaCppModel(bundled_gguf(), n_ctx=512) as m:
        text = m.chat(messages, max_tokens=32, temperature=0)
        pieces = list(m.chat(messages, max_tokens=32, temperature=0, stream=True))
    colours = {"red", "blue", "green", "yellow", "orange", "purple", "black", "white", "pink"}
    assert colours & set(re.findall(r"[a-z]+", text.lower())), text
    assert len(pieces) > 1 and "".join(pieces) == text
