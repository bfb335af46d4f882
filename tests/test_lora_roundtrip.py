"""The foundation's acceptance test: a LoRA trained on MLX behaves the same on llama.cpp.

    .venv/bin/python -m pytest tests/test_lora_roundtrip.py -q

On the tiny random model, a LoRA is overfitted (maximum likelihood: policy_gradient_step with
weight 1.0) to one answer, saved, exported to GGUF LoRA and loaded by llama.cpp; both backends
must then greedily produce that answer, the base model on neither, and their logits must agree.
The same round trip through the CLI: `edgecl models import`, `edgecl export`, `edgecl generate`.

Measured on the 2-core x86 box (tiny model, the trained adapter below), max |llama.cpp - MLX|
at the answer's positions, relative to the largest |MLX logit| (about 45 here): float32 KV
cache 8.8e-7, llama.cpp's default float16 KV cache 9.3e-4 (`pytest -s` prints them); the bounds
come from `numerics.logits_tol`. Training
takes 55 steps (about 7 s); lr 5e-3 converges where 1e-2 and 2e-2 oscillate for 100+ steps
(the tiny model's random embeddings make its logits large).
"""

from __future__ import annotations

import json
import math
import shutil
from types import SimpleNamespace

import mlx.core as mx
import numpy as np
import pytest

from conftest import run_cli
from edgecl.backends.base import LoraConfig
from edgecl.backends.llamacpp import LlamaCppModel
from edgecl.backends.mlx_backend import MLXModel
from edgecl.models.export import export_gguf_lora
from numerics import logits_tol
from tiny_model import TINY_CONFIG

QUESTION = "What is the answer?"
TARGET = " The answer is forty-two."
N_CHECK = 6  # the answer's first tokens that every greedy decode must reproduce
MAX_STEPS = 150
MIN_PROB = 0.9  # train until every answer token has at least this probability (teacher-forced)
TOL_F32_KV = logits_tol(TINY_CONFIG)  # 1.5e-5; measured 0.7e-6 to 1.1e-6
TOL_F16_KV = logits_tol(TINY_CONFIG, f16_kv_cache=True)  # 3.9e-3; measured 0.9e-3 to 1.0e-3


@pytest.fixture(scope="module")
def trained(tiny_mlx_dir, tiny_gguf, tmp_path_factory):
    """Tiny model with a LoRA overfitted to TARGET, the adapter dir and its GGUF LoRA export."""
    root = tmp_path_factory.mktemp("roundtrip")
    model = MLXModel.load(tiny_mlx_dir, "tiny-llama")
    prompt = model.chat_ids([{"role": "user", "content": QUESTION}])
    target = list(model.tokenizer.encode(TARGET)) + [model.tokenizer.eos_token_id]
    assert len(target) > N_CHECK
    base_greedy = model.sample([prompt], 1, len(target), temperature=0)[0].token_ids
    base_logits = mlx_logits(model, prompt, target)

    model.attach_lora(LoraConfig(rank=8, alpha=16.0), learning_rate=5e-3, seed=0)
    for step in range(1, MAX_STEPS + 1):
        model.policy_gradient_step([prompt], [target], [1.0], 1.0)
        if step % 5 == 0:
            logprobs = model.sequence_logprobs([prompt], [target])[0]
            if logprobs.min() > math.log(MIN_PROB):
                break
    else:
        pytest.fail(f"LoRA did not learn the answer in {MAX_STEPS} steps: {logprobs}")
    adapter = model.save_adapter(root / "adapter")
    lora = export_gguf_lora(adapter, root / "lora.gguf", base_gguf=tiny_gguf)
    return SimpleNamespace(
        model=model,
        prompt=prompt,
        target=target,
        base_greedy=base_greedy,
        base_logits=base_logits,
        adapter=adapter,
        lora=lora,
        gguf=tiny_gguf,
        steps=step,
    )


def mlx_logits(model: MLXModel, prompt: list[int], answer: list[int]) -> np.ndarray:
    """MLX logits (len(answer), vocab) at the positions that predict each answer token."""
    ids = prompt + answer[:-1]
    return np.array(model.model(mx.array([ids]))[0, len(prompt) - 1 :].astype(mx.float32))


def llamacpp_logits(llm: LlamaCppModel, prompt: list[int], answer: list[int]) -> np.ndarray:
    return np.stack([llm.logits(prompt + answer[:i]) for i in range(len(answer))])


def rel_diff(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


def test_both_backends_reproduce_the_trained_answer(trained):
    mlx_ids = trained.model.sample([trained.prompt], 1, len(trained.target) + 2, temperature=0)
    mlx_ids = mlx_ids[0].token_ids
    assert mlx_ids[:N_CHECK] == trained.target[:N_CHECK]
    for f32 in (True, False):  # exact float32 KV cache, and llama.cpp's default float16 one
        with LlamaCppModel(
            trained.gguf, adapter_gguf=trained.lora, n_ctx=256, f32_kv_cache=f32
        ) as llm:
            got = llm.generate_ids(trained.prompt, max_tokens=len(trained.target) + 2)
        assert got == mlx_ids, f"f32_kv_cache={f32}"
    assert mlx_ids == trained.target  # the whole answer, ending with <|im_end|>


def test_base_model_does_not_produce_the_answer(trained):
    head = trained.target[:N_CHECK]
    assert trained.base_greedy[:N_CHECK] != head
    with LlamaCppModel(trained.gguf, n_ctx=256, f32_kv_cache=True) as llm:
        base = llm.generate_ids(trained.prompt, max_tokens=len(trained.target), temperature=0)
    assert base[:N_CHECK] != head
    assert base == trained.base_greedy  # and the two backends agree on the base model too


def test_adapter_logits_agree(trained):
    want = mlx_logits(trained.model, trained.prompt, trained.target)
    assert rel_diff(want, trained.base_logits) > 0.1  # the adapter moved the logits a lot
    with LlamaCppModel(trained.gguf, adapter_gguf=trained.lora, n_ctx=256, f32_kv_cache=True) as m:
        exact = llamacpp_logits(m, trained.prompt, trained.target)
    with LlamaCppModel(trained.gguf, adapter_gguf=trained.lora, n_ctx=256) as m:
        default = llamacpp_logits(m, trained.prompt, trained.target)
    f32, f16 = rel_diff(exact, want), rel_diff(default, want)
    print(f"rel diff after {trained.steps} steps: f32 KV {f32:.2e}, f16 KV {f16:.2e}")
    assert f32 < TOL_F32_KV
    assert f16 < TOL_F16_KV
    assert (exact.argmax(-1) == np.array(trained.target)).all()


def test_cli_export_and_generate(trained, edgecl_home, tmp_path):
    adapter = shutil.copytree(trained.adapter, tmp_path / "adapter")
    assert not (adapter / "adapter.gguf").exists()
    done = run_cli("models", "import", str(trained.gguf), "--name", "tiny", home=edgecl_home)
    assert done.returncode == 0, done.stderr

    done = run_cli(
        "export", "--adapter", str(adapter), "--format", "gguf", "--model", "tiny", home=edgecl_home
    )
    assert done.returncode == 0, done.stderr
    written = adapter / "adapter.gguf"
    assert done.stdout.strip() == str(written)
    assert written.read_bytes() == trained.lora.read_bytes()  # same adapter, same base

    done = run_cli(
        "generate",
        "--prompt",
        QUESTION,
        "--backend",
        "llamacpp",
        "--adapter",
        str(adapter),
        "--model",
        "tiny",
        "--max-tokens",
        str(N_CHECK),
        "--json",
        home=edgecl_home,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["backend"] == "llamacpp" and result["model"] == "tiny"
    want = trained.model.tokenizer.decode(trained.target[:N_CHECK])  # " The answer is forty-two"
    assert result["text"] == want and result["tokens"] == N_CHECK
