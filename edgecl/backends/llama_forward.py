"""mlx-lm's llama forward pass for training, with edgecl's CPU kernels for SwiGLU and the
attention softmax (kernels.py); the same math as `model.model(inputs, cache)`, tested equal in
values and gradients (`mlp` also serves the sampler's decode step). Attention runs as grouped
matmuls, query head h reading key head h // (heads / kv_heads), so the scores are one batched
matmul per key head.

With a `Packing`, a batch's rows of different lengths run as one packed row of their real
tokens: every matmul, norm and kernel skips the padding, and only attention's scores see the
rows padded (a GRPO group's completions differ in length; the padding was a quarter of the
update's positions in benchmarks/step.py)."""

from __future__ import annotations

import numpy as np

from edgecl.backends.blas import preload_openblas
from edgecl.backends.kernels import causal_softmax, swiglu

preload_openblas()  # must precede the first `import mlx.core` in the process

import mlx.core as mx  # noqa: E402
from mlx_lm.models import llama  # noqa: E402


def is_plain_llama(model) -> bool:
    """A llama-family model without sliding-window layers (SmolLM2 and the tiny test model)."""
    return isinstance(model, llama.Model) and not any(
        layer.use_sliding for layer in model.model.layers
    )


class Packing:
    """Rows of `lengths` real tokens, right-padded to `width`, packed into one row of their
    real tokens in order, and the two index maps between the layouts."""

    def __init__(self, lengths: np.ndarray, width: int):
        self.rows, self.width = len(lengths), width
        self.starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int32)
        # A padding slot reads its row's last real token: only padding queries, whose outputs
        # are dropped, attend to it (causal), so its value and its gradient never count.
        slots = np.minimum(np.arange(width), np.asarray(lengths)[:, None] - 1)
        self.to_padded = mx.array((self.starts[:, None] + slots).reshape(-1))
        self.to_packed = mx.array(
            np.concatenate([i * width + np.arange(n) for i, n in enumerate(lengths)])
        )

    def pack(self, padded: mx.array) -> mx.array:
        """(rows, width, ...) -> (1, real tokens, ...)."""
        return padded.reshape(self.rows * self.width, *padded.shape[2:])[self.to_packed][None]

    def pad(self, packed: mx.array) -> mx.array:
        """(1, real tokens, ...) -> (rows, width, ...)."""
        return packed[0][self.to_padded].reshape(self.rows, self.width, *packed.shape[2:])


def body(model, inputs: mx.array, cache=None, packing: Packing | None = None) -> mx.array:
    """The final-normed hidden states, as `model.model(inputs, cache=cache)` gives them; with
    `packing`, `inputs` are packed and so are the states (plain llama only)."""
    if not is_plain_llama(model):
        assert packing is None, "packed rows need the plain llama forward"
        return model.model(inputs, cache=cache)
    m = model.model
    h = m.embed_tokens(inputs)
    for layer, c in zip(m.layers, cache or [None] * len(m.layers)):
        h = h + attention(layer.self_attn, layer.input_layernorm(h), c, packing)
        h = h + mlp(layer.mlp, layer.post_attention_layernorm(h))
    return m.norm(h)


def mlp(m, x: mx.array) -> mx.array:
    """llama's MLP, down(silu(gate(x)) * up(x)), with the SwiGLU kernel."""
    return m.down_proj(swiglu(m.gate_proj(x), m.up_proj(x)))


def attention(attn, x: mx.array, cache, packing: Packing | None = None) -> mx.array:
    heads, kv_heads, dim = attn.n_heads, attn.n_kv_heads, attn.head_dim
    offset = cache.offset if cache is not None else 0
    q, k, v = (proj(x) for proj in (attn.q_proj, attn.k_proj, attn.v_proj))
    if packing is not None:
        q, k, v = packing.pad(q), packing.pad(k), packing.pad(v)
    rows, length, _ = q.shape
    q = q.reshape(rows, length, heads, dim).transpose(0, 2, 1, 3)
    k = k.reshape(rows, length, kv_heads, dim).transpose(0, 2, 1, 3)
    v = v.reshape(rows, length, kv_heads, dim).transpose(0, 2, 1, 3)
    q, k = attn.rope(q, offset=offset), attn.rope(k, offset=offset)
    if cache is not None:
        k, v = cache.update_and_fetch(k, v)
    group, keys = heads // kv_heads, k.shape[2]
    scores = (q.reshape(rows, kv_heads, group * length, dim) * attn.scale) @ k.swapaxes(-1, -2)
    probs = causal_softmax(scores.reshape(rows, kv_heads, group, length, keys), length)
    out = probs.reshape(rows, kv_heads, group * length, keys) @ v
    out = out.reshape(rows, heads, length, dim).transpose(0, 2, 1, 3)
    out = out.reshape(rows, length, heads * dim)
    return attn.o_proj(out if packing is None else packing.pack(out))
