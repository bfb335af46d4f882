"""Attention for one decode step of a batch, on MLX (the sampler's inner loop)."""

from __future__ import annotations

from edgecl.backends.blas import preload_openblas

preload_openblas()  # must precede the first `import mlx.core` in the process

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402

from edgecl.backends.kernels import causal_softmax  # noqa: E402


def decode_attention(attn: nn.Module, x: mx.array, cache, mask: mx.array) -> mx.array:
    """mlx-lm's llama attention for one query per row, as grouped matmuls over the cache: on the
    CPU, MLX's `scaled_dot_product_attention` takes 3.3 ms a layer at 32 rows x 300 keys here,
    these 2.2 ms (`python benchmarks/profile_step.py`, its `op` lines)."""
    rows, n_heads, n_kv, dim = x.shape[0], attn.n_heads, attn.n_kv_heads, attn.head_dim
    q = attn.rope(attn.q_proj(x).reshape(rows, 1, n_heads, dim).swapaxes(1, 2), offset=cache.offset)
    k = attn.rope(attn.k_proj(x).reshape(rows, 1, n_kv, dim).swapaxes(1, 2), offset=cache.offset)
    v = attn.v_proj(x).reshape(rows, 1, n_kv, dim).swapaxes(1, 2)
    keys, values = cache.update_and_fetch(k, v)
    # Query head h reads key head h // (n_heads / n_kv), as in grouped-query attention.
    scores = (q.reshape(rows, n_kv, n_heads // n_kv, dim) * attn.scale) @ keys.swapaxes(-1, -2)
    out = causal_softmax(mx.where(mask, scores, -mx.inf), 1) @ values  # one query sees all keys
    return attn.o_proj(out.reshape(rows, 1, n_heads * dim))
