"""edgecl's CPU kernel for the vocabulary softmax (kernels) against MLX's own ops: the same
values and gradients to float32 roundoff, with and without the KL anchor."""

from __future__ import annotations

import numpy as np
import pytest

from edgecl.backends import kernels


def _inputs(vocab: int = 300):
    import mlx.core as mx

    rng = np.random.default_rng(0)
    logits = mx.array(rng.normal(0, 4, (3, 5, vocab)).astype(np.float32))
    targets = mx.array(rng.integers(0, vocab, (3, 5)).astype(np.int32))
    anchor = mx.array(rng.normal(0, 4, (3, 5, vocab)).astype(np.float32))
    anchor = anchor - mx.logsumexp(anchor, axis=-1, keepdims=True)
    return logits, targets, anchor


def _mlx_ops(logits, targets, anchor=None):
    import mlx.core as mx

    logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    lp = mx.take_along_axis(logprobs, targets[..., None], axis=-1)[..., 0]
    if anchor is None:
        return lp, mx.zeros_like(lp)
    return lp, (mx.exp(anchor) * (anchor - logprobs)).sum(axis=-1)


def test_the_kernel_is_built_and_used_for_float32_on_the_cpu(cpu_device):
    """scripts/install.sh builds it; without it training runs, slower (a warning at build)."""
    import mlx.core as mx

    assert kernels.KERNELS is not None, "run: bash scripts/build_kernels.sh"
    logits, _, _ = _inputs()
    assert kernels.apply_to(logits)
    assert not kernels.apply_to(logits.astype(mx.float64))


@pytest.mark.parametrize("with_anchor", [False, True])
def test_kernel_values_and_gradients_equal_mlx_ops(cpu_device, with_anchor):
    import mlx.core as mx

    logits, targets, anchor = _inputs()
    anchor = anchor if with_anchor else None
    rng = np.random.default_rng(1)
    w_lp, w_kl = (mx.array(rng.normal(size=targets.shape).astype(np.float32)) for _ in range(2))

    def loss(fn):
        def f(x):
            lp, kl = fn(x, targets, anchor)
            return (lp * w_lp).sum() + (kl * w_kl).sum(), (lp, kl)

        (value, (lp, kl)), grad = mx.value_and_grad(f)(logits)
        return lp, kl, grad

    for got, want in zip(loss(kernels.target_logprobs), loss(_mlx_ops)):
        np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-5, atol=2e-6)


def test_the_kl_at_the_anchor_is_exactly_zero_and_nan_propagates(cpu_device):
    import mlx.core as mx

    logits, targets, _ = _inputs()
    ref = kernels.log_softmax(logits)
    want = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    np.testing.assert_allclose(np.array(ref), np.array(want), atol=2e-6)
    _, kl = kernels.target_logprobs(logits, targets, ref)
    assert float(mx.abs(kl).max()) == 0.0
    broken = mx.where(mx.arange(logits.shape[-1]) == 7, mx.nan, logits)
    lp, _ = kernels.target_logprobs(broken, targets)
    assert np.isnan(np.array(lp)).all()


def test_swiglu_and_causal_softmax_kernels_equal_mlx_ops(cpu_device):
    """The layer kernels of llama_forward.body; the whole body against mlx-lm's forward is
    tests/test_mlx_backend.py::test_shared_prefix_logprobs_and_gradient_equal_plain_forward."""
    import mlx.core as mx
    import mlx.nn as nn

    rng = np.random.default_rng(3)
    gate, up, w = (mx.array(rng.normal(0, 3, (2, 7, 9000)).astype(np.float32)) for _ in range(3))
    queries, keys = 4, 11  # 7 keys of cached prefix, then the 4 queries' own
    scores = mx.array(rng.normal(0, 3, (2, 3, 2, queries, keys)).astype(np.float32))
    v = mx.array(rng.normal(size=scores.shape).astype(np.float32))
    seen = mx.arange(keys)[None] <= mx.arange(queries)[:, None] + keys - queries

    pairs = [
        (lambda g, u: (kernels.swiglu(g, u) * w).sum(), lambda g, u: (nn.silu(g) * u * w).sum()),
        (
            lambda s, _: (kernels.causal_softmax(s, queries) * v).sum(),
            lambda s, _: (mx.softmax(mx.where(seen, s, -mx.inf), axis=-1) * v).sum(),
        ),
    ]
    for (kernel, ops), args in zip(pairs, [(gate, up), (scores, scores)]):
        assert kernels.apply_to(args[0])
        got = mx.value_and_grad(kernel, argnums=(0, 1))(*args)
        want = mx.value_and_grad(ops, argnums=(0, 1))(*args)
        np.testing.assert_allclose(float(got[0]), float(want[0]), rtol=1e-5)
        for g_got, g_want in zip(got[1], want[1]):
            np.testing.assert_allclose(np.array(g_got), np.array(g_want), rtol=1e-5, atol=1e-5)
    probs = np.array(kernels.causal_softmax(scores, queries))
    assert (probs[..., 0, keys - queries + 1 :] == 0).all()  # the first query sees the prefix + 1
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)


def test_one_query_with_masked_keys_as_the_sampler_decodes(cpu_device):
    """decode_attention: one query per row, a row's left padding masked as -inf. The kernel
    and MLX's fallback (float64) give the softmax, with exactly 0 on the masked keys."""
    import mlx.core as mx

    rng = np.random.default_rng(4)
    scores = rng.normal(0, 3, (3, 2, 4, 9))
    scores[0, ..., :5] = -np.inf  # row 0: 5 keys of padding
    want = np.exp(scores - scores.max(-1, keepdims=True))
    want /= want.sum(-1, keepdims=True)
    for dtype in (mx.float32, mx.float64):  # float64 takes MLX's ops
        x = mx.array(scores).astype(dtype)
        probs = np.array(kernels.causal_softmax(x, 1))
        assert kernels.apply_to(x) == (dtype == mx.float32)
        assert (probs[0, ..., :5] == 0).all()
        np.testing.assert_allclose(probs, want, rtol=1e-5, atol=1e-7)
