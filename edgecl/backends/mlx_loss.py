"""Teacher-forced log-probs and the policy-gradient loss on MLX, for any mlx-lm model.

    from edgecl.backends.mlx_loss import pack, pg_loss
    loss, grads = nn.value_and_grad(model, pg_loss)(model, *pack(prompts, ids), weights, n)

The prefix common to a batch's prompts goes through the model once and every row attends to
its keys and values: a GRPO group's G completions share their whole prompt, and all prompts
share the system prompt (the update twice as fast here; benchmarks/README.md).
"""

from __future__ import annotations

import numpy as np

from edgecl.backends.blas import preload_openblas

preload_openblas()  # must precede the first `import mlx.core` in the process

import mlx.core as mx  # noqa: E402
from mlx_lm.models.cache import create_attention_mask  # noqa: E402

from edgecl.backends.kernels import log_softmax, target_logprobs  # noqa: E402
from edgecl.backends.llama_forward import Packing, body, is_plain_llama  # noqa: E402


def pack(prompts, completions):
    """Teacher-forcing inputs for each completion given its prompt.

    The longest prefix common to all prompts (the system prompt; the whole prompt for a group of
    G completions) is `prefix`, run through the model once; each row of `inputs` holds the rest
    of its prompt and its completion, right-padded. `positions` are the row positions whose next
    token is a completion token, `targets` those tokens, and `mask` marks real targets."""
    shared = common_prefix_length(prompts)
    rests = [list(p[shared:]) + list(c) for p, c in zip(prompts, completions)]
    width = max(len(r) for r in rests) - 1
    span = max(len(c) for c in completions)
    inputs = np.zeros((len(rests), width), dtype=np.int32)
    positions = np.zeros((len(rests), span), dtype=np.int32)
    targets = np.zeros((len(rests), span), dtype=np.int32)
    mask = np.zeros((len(rests), span), dtype=np.float32)
    for i, (p, c, r) in enumerate(zip(prompts, completions, rests)):
        inputs[i, : len(r) - 1] = r[:-1]
        first = len(p) - shared - 1  # the last prompt token predicts the first completion token
        positions[i, : len(c)] = np.arange(first, first + len(c))
        targets[i, : len(c)] = c
        mask[i, : len(c)] = 1.0
    prefix = mx.array([list(prompts[0][:shared])], dtype=mx.int32)
    return prefix, mx.array(inputs), mx.array(positions), mx.array(targets), mx.array(mask)


def common_prefix_length(prompts) -> int:
    """Length of the prefix all prompts share, leaving each at least one token of its own."""
    shortest = min(len(p) for p in prompts)
    first = prompts[0]
    for k in range(shortest - 1):
        if any(p[k] != first[k] for p in prompts):
            return k
    return max(shortest - 1, 0)


class SharedPrefixCache:
    """A differentiable KV cache for training. The first call keeps the prefix's keys and values
    (batch 1); the second lets every row of its batch attend to them, so gradients from all
    rows flow back into the one prefix computation."""

    def __init__(self):
        self.offset = 0
        self.keys = self.values = None

    def update_and_fetch(self, keys: mx.array, values: mx.array):
        if self.keys is None:
            self.keys, self.values, self.offset = keys, values, keys.shape[2]
            return keys, values
        rows = keys.shape[0]
        keys = mx.concatenate([mx.broadcast_to(self.keys, (rows, *self.keys.shape[1:])), keys], 2)
        values = mx.concatenate(
            [mx.broadcast_to(self.values, (rows, *self.values.shape[1:])), values], 2
        )
        return keys, values

    def make_mask(self, n: int, return_array: bool = False, window_size: int | None = None):
        return create_attention_mask(n, self.offset, return_array, window_size)


def token_logprobs(model, prefix, inputs, positions, targets):
    """log pi(target | prefix) at the given positions."""
    return target_logprobs(position_logits(model, prefix, inputs, positions), targets)[0]


def position_logprobs(model, prefix, inputs, positions):
    """log pi(. | prefix) over the vocabulary at the given positions."""
    return log_softmax(position_logits(model, prefix, inputs, positions))


def position_logits(model, prefix, inputs, positions):
    """The logits at the given positions; only those positions go through the vocabulary
    projection (the prompt's logits are never needed, and they dominate memory). On llama
    models the rows run packed, without their padding (llama_forward.Packing)."""
    cache = None
    if prefix.shape[1]:
        cache = [SharedPrefixCache() for _ in model.layers]
        body(model, prefix, cache)  # only its keys and values are used
    if not is_plain_llama(model):
        hidden = mx.take_along_axis(body(model, inputs, cache), positions[..., None], axis=1)
        return at_least_float32(lm_head(model)(hidden))
    # A row's last real input is the one predicting its last completion token.
    packing = Packing(np.array(positions).max(axis=1) + 1, inputs.shape[1])
    hidden = body(model, packing.pack(inputs), cache, packing)[0]
    return at_least_float32(lm_head(model)(hidden[mx.array(packing.starts)[:, None] + positions]))


def lm_head(model):
    """The vocabulary projection: lm_head, or the tied embedding."""
    return getattr(model, "lm_head", None) or model.model.embed_tokens.as_linear


def at_least_float32(x: mx.array) -> mx.array:
    """Half-precision logits go up to float32 for the softmax; float64 ones (tests) stay."""
    return x.astype(mx.float32) if x.dtype in (mx.float16, mx.bfloat16) else x


IMPORTANCE_CAP = 2.0  # C of truncated importance sampling (Yao et al. 2025 use 2)


def importance_weighted(lp: mx.array, behaviour: mx.array | None) -> mx.array:
    """lp times min(pi / mu, C) per token, for samples drawn from a slightly different sampler
    mu (llama.cpp rollouts: `learn --rollouts llamacpp`); the weight is held constant in the
    gradient. `behaviour` is log mu, NaN on rows drawn from pi itself (weight 1)."""
    if behaviour is None:
        return lp
    rho = mx.minimum(mx.exp(mx.stop_gradient(lp) - behaviour), IMPORTANCE_CAP)
    return mx.where(mx.isnan(behaviour), 1.0, rho) * lp


def pg_loss(model, prefix, inputs, positions, targets, mask, weights, normalizer, behaviour=None):
    lp = token_logprobs(model, prefix, inputs, positions, targets)
    sequence_lp = (importance_weighted(lp, behaviour) * mask).sum(axis=1)
    return -(weights * sequence_lp).sum() / normalizer


def anchored_pg_loss(
    model, prefix, inputs, positions, targets, mask, weights, normalizer, anchor, kl_weights,
    behaviour=None,
):  # fmt: skip
    """pg_loss plus sum_i k_i KL_i / normalizer, with KL_i the sum over row i's positions of
    KL(pi_anchor || pi) over the whole vocabulary, `anchor` the anchor's log-probs there
    (position_logprobs). Unlike a KL estimated on the sampled tokens, its pull toward a token the
    anchor likes does not vanish as pi's probability of it goes to 0. Returns (loss, the summed
    KL of the rows with k_i > 0)."""
    lp, kl = target_logprobs(position_logits(model, prefix, inputs, positions), targets, anchor)
    kl = (kl * mask).sum(axis=1)
    sequence_lp = (importance_weighted(lp, behaviour) * mask).sum(axis=1)
    loss = -(weights * sequence_lp).sum() + (kl_weights * kl).sum()
    return loss / normalizer, (kl * (kl_weights > 0)).sum()
