"""mlx-lm's llama forward pass for training, with edgecl's CPU kernels for SwiGLU and the
attention softmax (kernels.py); the same math as `model.model(inputs, cache)`, tested equal in
values and gradients. Attention runs as grouped matmuls, query head h reading key head
h // (heads / kv_heads), so the scores are one batched matmul per key head."""

from __future__ import annotations

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


def body(model, inputs: mx.array, cache=None) -> mx.array:
    """The final-normed hidden states, as `model.model(inputs, cache=cache)` gives them."""
    if not is_plain_llama(model):
        return model.model(inputs, cache=cache)
    m = model.model
    h = m.embed_tokens(inputs)
    for layer, c in zip(m.layers, cache or [None] * len(m.layers)):
        h = h + attention(layer.self_attn, layer.input_layernorm(h), c)
        x = layer.post_attention_layernorm(h)
        h = h + layer.mlp.down_proj(swiglu(layer.mlp.gate_proj(x), layer.mlp.up_proj(x)))
    return m.norm(h)


def attention(attn, x: mx.array, cache) -> mx.array:
    rows, length, _ = x.shape
    heads, kv_heads, dim = attn.n_heads, attn.n_kv_heads, attn.head_dim
    offset = cache.offset if cache is not None else 0
    q = attn.q_proj(x).reshape(rows, length, heads, dim).transpose(0, 2, 1, 3)
    k = attn.k_proj(x).reshape(rows, length, kv_heads, dim).transpose(0, 2, 1, 3)
    v = attn.v_proj(x).reshape(rows, length, kv_heads, dim).transpose(0, 2, 1, 3)
    q, k = attn.rope(q, offset=offset), attn.rope(k, offset=offset)
    if cache is not None:
        k, v = cache.update_and_fetch(k, v)
    group, keys = heads // kv_heads, k.shape[2]
    scores = (q.reshape(rows, kv_heads, group * length, dim) * attn.scale) @ k.swapaxes(-1, -2)
    probs = causal_softmax(scores.reshape(rows, kv_heads, group, length, keys), length)
    out = probs.reshape(rows, kv_heads, group * length, keys) @ v
    out = out.reshape(rows, heads, length, dim).transpose(0, 2, 1, 3)
    return attn.o_proj(out.reshape(rows, length, heads * dim))
