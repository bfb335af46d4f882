"""Drawing the next token from logits, in numpy: the sampler's per-token hot path.

In numpy because MLX's CPU exp is scalar, 27x slower than numpy's on x86
(benchmarks/profile_step.py), and this runs on 32 x 49152 logits per decoded token.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def next_tokens(
    logits: np.ndarray, temperature: float, top_p: float, uniform: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One token per row of (rows, vocab) logits, drawn with the row's number in [0, 1) from
    `uniform`, and its log-probability at temperature 1. temperature 0 is greedy; top_p keeps
    the most likely tokens whose preceding probability mass is at most top_p (at temperature 1).
    """
    shifted = logits - logits.max(axis=-1, keepdims=True)
    weights = np.exp(shifted)
    rows = np.arange(len(logits))
    log_total = np.log(weights.sum(axis=-1, dtype=np.float64))
    if temperature <= 0:
        tokens = shifted.argmax(axis=-1)
    else:
        if temperature != 1.0:
            weights = np.exp(shifted / temperature)
        if top_p < 1.0:
            order = np.argsort(-shifted, axis=-1)
            mass = np.take_along_axis(np.exp(shifted - log_total[:, None]), order, axis=-1)
            keep = np.empty(weights.shape, dtype=bool)
            np.put_along_axis(keep, order, np.cumsum(mass, axis=-1) - mass <= top_p, axis=-1)
            weights = np.where(keep, weights, 0.0)
        tokens = inverse_cdf(weights, uniform)
    return tokens, shifted[rows, tokens] - log_total


def inverse_cdf(weights: np.ndarray, u: np.ndarray, block: int = 256) -> np.ndarray:
    """Index i of each row with cumulative weight just above u * total: an exact draw from the
    row's weights. Two levels (blocks of `block`, then within one) instead of a cumsum over the
    whole vocabulary, which costs more here than everything else in sampling."""
    n_rows, width = weights.shape
    weights = np.pad(weights, ((0, 0), (0, -width % block)))
    blocks = weights.reshape(n_rows, -1, block)
    block_cdf = np.cumsum(blocks.sum(axis=-1, dtype=np.float64), axis=-1)
    target = u * block_cdf[:, -1]
    b = np.minimum((block_cdf <= target[:, None]).sum(axis=-1), blocks.shape[1] - 1)
    rows = np.arange(n_rows)
    target -= np.where(b > 0, block_cdf[rows, b - 1], 0.0)
    inside = blocks[rows, b]
    k = (np.cumsum(inside, axis=-1, dtype=np.float64) <= target[:, None]).sum(axis=-1)
    last_positive = block - 1 - np.argmax(inside[:, ::-1] > 0, axis=-1)  # float rounding
    return b * block + np.minimum(k, last_positive)


def random_streams(seed, n_prompts: int, group_size: int) -> list[np.random.Generator]:
    """One random stream per completion, prompt-major, fixed by (the prompt's seed, its index
    in the group): `seed` is one per prompt, or one for all (then prompt p's is (seed, p)), or
    None. So a prompt's completions do not depend on which other prompts share the batch."""
    if seed is None or isinstance(seed, int):
        seed = [[seed, p] if seed is not None else None for p in range(n_prompts)]
    return [
        np.random.default_rng(None if s is None else [*np.atleast_1d(s).tolist(), k])
        for s in seed
        for k in range(group_size)
    ]


def finish_reason(ids: list[int], eos_ids, stop: Sequence[str], decode) -> tuple | None:
    """("eos", None) or ("stop", the stop string) if the completion `ids` has just ended, else
    None. Only the last few tokens are decoded: enough to hold any stop string."""
    if ids[-1] in eos_ids:
        return ("eos", None)
    if stop:
        text = decode(ids[-(max(len(s) for s in stop) + 2) :])
        hit = next((s for s in stop if s in text), None)
        if hit is not None:
            return ("stop", hit)
    return None
