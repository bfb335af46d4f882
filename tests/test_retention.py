"""General ability: degeneration, the base model's stored answers, and the retention measure.

.venv/bin/python -m pytest tests/test_retention.py -q
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from edgecl import retention
from edgecl.backends.base import LoraConfig
from edgecl.backends.mlx_backend import MLXModel


@pytest.mark.parametrize(
    "text, looped",
    [
        ("<br><br><br><br>", True),
        ("Red, blue and green.", False),
        ("ha ha ha ha ha", True),
        ("1. Red\n2. Blue\n3. Green", False),
        ("Paris is the capital of France. Paris is lovely.", False),
        ("the the the the", True),
    ],
)
def test_degenerate(text, looped):
    assert retention.degenerate(text) == looped


def test_the_prompts_are_general_and_many():
    prompts = retention.general_prompts()
    assert len(prompts) >= 50 and len(set(prompts)) == len(prompts)
    assert "Name three colours." in prompts
    distill, held_out = retention.general_prompts("distill"), retention.general_prompts("held_out")
    assert len(held_out) == 20 and not set(distill) & set(held_out)
    assert sorted(distill + held_out) == sorted(prompts)


def test_base_answers_ignore_the_adapter_and_are_stored(tiny_mlx_dir):
    model = MLXModel.load(tiny_mlx_dir)
    model.attach_lora(LoraConfig(4, 8, -1), seed=0)
    for name, p in model.trainable().items():  # a non-zero adapter: it changes the model
        if name.endswith("lora_b"):
            p[...] = mx.array(np.random.default_rng(0).normal(0, 0.5, p.shape), dtype=p.dtype)
    pairs = retention.base_answers(model, "held_out", max_tokens=8)
    assert len(pairs) == 20 and all(a for _, a in pairs)
    stored = next((retention.paths.data_dir() / "general").iterdir())
    base = MLXModel.load(tiny_mlx_dir)
    assert retention.base_answers(base, "held_out", max_tokens=8) == pairs  # read back, same
    greedy = base.sample([p for p, _ in pairs[:4]], 1, 8, temperature=0.0)
    assert [o.token_ids for o in greedy] == [a for _, a in pairs[:4]]
    assert stored.is_file()

    base_ll = retention.mean_loglik(base, pairs)
    with model.adapter_disabled():
        assert retention.mean_loglik(model, pairs) == pytest.approx(base_ll, abs=1e-6)
    kept = retention.retention(model, pairs, base_ll, max_tokens=8)
    assert kept["drop"] > 0.01  # the random adapter makes the base answers less likely
    assert kept["adapted_loglik"] < base_ll
    assert {"degenerate_plain", "degenerate_protocol"} <= kept.keys()
