"""edgecl's CPU kernels for MLX where they apply, else MLX's own ops (same math, tested equal).

MLX's CPU backend runs exp and the other elementwise ops one element at a time on one core;
the kernels (cpu_kernels/, built by `bash scripts/build_kernels.sh`, which install.sh runs)
split rows over the cores and vectorise exp: the loss's vocabulary softmax, SwiGLU and the
causal softmax of attention in training (benchmarks/README.md, "Levers measured"). They run
for float32 on the CPU device; float64 (tests), GPUs, and kernels missing or built for another
MLX take MLX's ops.
"""

from __future__ import annotations

from edgecl.backends.blas import preload_openblas

preload_openblas()  # must precede the first `import mlx.core` in the process

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402


def _load():
    try:
        from edgecl.backends import _cpu_kernels
    except ImportError:
        return None
    # Its primitives subclass MLX's C++ classes: another MLX version may lay them out otherwise.
    if _cpu_kernels.built_for_mlx != mx.__version__:
        return None
    try:  # and built with another nanobind, it would not take MLX's arrays
        _cpu_kernels.log_softmax(mx.zeros((1, 2)))
    except TypeError:
        return None
    return _cpu_kernels


KERNELS = _load()


def apply_to(x: mx.array) -> bool:
    return (
        KERNELS is not None
        and x.dtype == mx.float32
        and mx.default_device().type == mx.DeviceType.cpu
    )


def log_softmax(logits: mx.array) -> mx.array:
    """log pi over the last axis (the kernel's has no gradient: it is the anchor's, held
    constant)."""
    if apply_to(logits):
        return KERNELS.log_softmax(logits)
    return logits - mx.logsumexp(logits, axis=-1, keepdims=True)


def target_logprobs(
    logits: mx.array, targets: mx.array, anchor: mx.array | None = None
) -> tuple[mx.array, mx.array]:
    """(log pi(target), KL(pi_anchor || pi)) at each position, `anchor` the anchor's log-probs
    there (from log_softmax, held constant); the KL is 0 without one."""
    if apply_to(logits):
        return tuple(KERNELS.target_logprobs(logits, targets, anchor))
    logprobs = log_softmax(logits)
    lp = mx.take_along_axis(logprobs, targets[..., None], axis=-1)[..., 0]
    if anchor is None:
        return lp, mx.zeros_like(lp)
    return lp, (mx.exp(anchor) * (anchor - logprobs)).sum(axis=-1)


def swiglu(gate: mx.array, up: mx.array) -> mx.array:
    if apply_to(gate):
        return KERNELS.swiglu(gate, up)
    return nn.silu(gate) * up


def causal_softmax(scores: mx.array, queries: int) -> mx.array:
    """softmax over the last axis of scores [..., queries, keys]; query i sees keys
    j <= i + keys - queries (causal after a cached prefix)."""
    if apply_to(scores):
        return KERNELS.causal_softmax(scores, queries)
    if queries > 1:  # a single query sees every key: no mask (the sampler's decode step)
        keys = scores.shape[-1]
        seen = mx.arange(keys)[None] <= mx.arange(queries)[:, None] + keys - queries
        scores = mx.where(seen, scores, -mx.inf)
    return mx.softmax(scores, axis=-1, precise=True)
