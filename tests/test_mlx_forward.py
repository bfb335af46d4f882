"""edgecl's llama training forward (fast exp) against mlx-lm's: the same log-probs and gradients.

.venv/bin/python -m pytest tests/test_mlx_forward.py -q
"""

from __future__ import annotations

import edgecl.backends.blas

edgecl.backends.blas.preload_openblas()

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
import numpy as np  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

import edgecl.backends.mlx_loss as mlx_loss  # noqa: E402
from edgecl.backends.base import LoraConfig  # noqa: E402
from edgecl.backends.mlx_forward import exp_is_slow, fast_exp, plain_llama  # noqa: E402
from edgecl.backends.mlx_loss import pack, pg_loss, position_logprobs  # noqa: E402


def test_fast_exp_and_its_gradient():
    x = mx.array(np.linspace(-100, 80, 20001, dtype=np.float32))
    want = np.exp(np.array(x, dtype=np.float64))
    got = np.array(fast_exp(x), dtype=np.float64)
    inside = np.array(x) > -87
    np.testing.assert_allclose(got[inside], want[inside], rtol=1e-6)
    assert np.all(got[~inside] < 2e-38)  # far below: as good as 0 after a max shift
    grad = mx.grad(lambda v: fast_exp(v).sum())(x[:5000])
    np.testing.assert_allclose(np.array(grad), np.array(fast_exp(x[:5000])), rtol=1e-7)


def test_forward_and_gradient_match_mlx_lm(tiny_model, monkeypatch):
    model = tiny_model.model
    assert plain_llama(model) and exp_is_slow(model)  # the x86 CI box takes the fast path
    tiny_model.attach_lora(LoraConfig(rank=4), learning_rate=0.05)
    rng = np.random.default_rng(0)
    prompts = [[1, *rng.integers(3, 4000, size=9).tolist()]] * 3
    prompts[2] = prompts[2][:6] + [77, 78]  # a shorter prompt: the shared prefix is 6 tokens
    completions = [rng.integers(3, 4000, size=n).tolist() for n in (5, 8, 3)]
    tiny_model.policy_gradient_step(prompts, completions, [1.0, -0.5, 0.2], 9.0)  # LoRA B != 0
    batch = pack(prompts, completions)
    weights = mx.array([0.7, -1.0, 0.4])
    results = {}
    for fast in (True, False):
        monkeypatch.setattr(mlx_loss, "FAST_FORWARD", fast)
        lp = position_logprobs(model, *batch[:3])
        loss, grads = nn.value_and_grad(model, pg_loss)(model, *batch, weights, 9.0)
        flat = np.concatenate([np.array(v).ravel() for _, v in tree_flatten(grads)])
        results[fast] = (np.array(lp), loss.item(), flat)
    (lp_fast, loss_fast, g_fast), (lp_ref, loss_ref, g_ref) = results[True], results[False]
    mask = np.array(batch[4]) > 0
    np.testing.assert_allclose(lp_fast[mask], lp_ref[mask], rtol=2e-5, atol=2e-5)
    assert abs(loss_fast - loss_ref) < 1e-5 * max(1.0, abs(loss_ref))
    assert np.abs(g_ref).max() > 0
    np.testing.assert_allclose(g_fast, g_ref, rtol=1e-3, atol=1e-5 * np.abs(g_ref).max())
