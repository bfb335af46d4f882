"""The training forward pass of mlx-lm's llama, with exp computed by a polynomial: MLX's CPU exp
is scalar on x86 (27x slower than numpy's; benchmarks/profile_step.py), and attention's softmax,
SwiGLU's sigmoid and the loss's log-softmax are all exp.

    from edgecl.backends.mlx_forward import hidden_states, plain_llama
    h = hidden_states(model, tokens, cache)    # == model.model(tokens, cache=cache) for llama

Values and gradients equal mlx-lm's to float32 rounding (tests/test_mlx_forward.py).
"""

from __future__ import annotations

import platform

from edgecl.backends.blas import preload_openblas

preload_openblas()  # must precede the first `import mlx.core` in the process

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402

X86 = platform.machine().lower() in ("x86_64", "amd64")


def plain_llama(model: nn.Module) -> bool:
    """mlx-lm's llama without sliding-window layers: the layout this module computes."""
    return type(model).__module__ == "mlx_lm.models.llama" and not any(
        getattr(layer, "use_sliding", False) for layer in model.model.layers
    )


def exp_is_slow(model: nn.Module) -> bool:
    """Where the polynomial pays: float32 weights on an x86 CPU. Metal's and ARM's exp are
    vectorised, and float64 (the tests' references) needs more than its 2.5e-7."""
    weights = model.model.embed_tokens.weight
    return X86 and mx.default_device() == mx.cpu and weights.dtype == mx.float32


def _exp_parts(x):
    """exp(x) = 2^n p(r), r = x - n ln 2 in [-ln2/2, ln2/2], p of degree 6 (relative error
    2.5e-7; MLX's own is 3.4e-6); 2^n as the bits of a float32 exponent, cast outside."""
    x = mx.clip(x, -87.0, 88.0)
    n = mx.floor(x * 1.4426950408889634 + 0.5)
    r = x - n * 0.693145751953125 - n * 1.428606765330187e-06
    p = 1 + r * (1 + r * (1 / 2 + r * (1 / 6 + r * (1 / 24 + r * (1 / 120 + r / 720)))))
    return p, (n.astype(mx.int32) + 127) << 23


_exp_compiled = mx.compile(_exp_parts, shapeless=True)  # a bit cast cannot compile shapeless


@mx.custom_function
def fast_exp(x: mx.array) -> mx.array:
    p, bits = _exp_compiled(x)
    return p * bits.view(mx.float32)


@fast_exp.vjp
def _fast_exp_vjp(primals, cotangent, output):
    return cotangent * output


# The three below have hand-written gradients that need only their output (or inputs), so the
# backward pass keeps one array per call instead of every intermediate (less memory).


@mx.custom_function
def log_softmax(x: mx.array) -> mx.array:
    shift = x.max(axis=-1, keepdims=True)
    return x - shift - mx.log(fast_exp(x - shift).sum(axis=-1, keepdims=True))


@log_softmax.vjp
def _log_softmax_vjp(primals, cotangent, output):
    return cotangent - fast_exp(output) * cotangent.sum(axis=-1, keepdims=True)


@mx.custom_function
def softmax(x: mx.array) -> mx.array:
    e = fast_exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@softmax.vjp
def _softmax_vjp(primals, cotangent, output):
    return output * (cotangent - (cotangent * output).sum(axis=-1, keepdims=True))


@mx.custom_function
def swiglu(gate: mx.array, up: mx.array) -> mx.array:
    """silu(gate) * up."""
    return gate / (1 + fast_exp(-gate)) * up


@swiglu.vjp
def _swiglu_vjp(primals, cotangent, output):
    gate, up = primals
    sig = 1 / (1 + fast_exp(-gate))
    return cotangent * up * sig * (1 + gate * (1 - sig)), cotangent * gate * sig


def attention(attn: nn.Module, x: mx.array, mask: mx.array, cache) -> mx.array:
    """mlx-lm's llama attention over a sequence (causal, after the cache's keys), as grouped
    matmuls: query head h reads key head h // (n_heads / n_kv)."""
    rows, length, _ = x.shape
    heads, kv, dim = attn.n_heads, attn.n_kv_heads, attn.head_dim
    q = attn.q_proj(x).reshape(rows, length, heads, dim).transpose(0, 2, 1, 3)
    k = attn.k_proj(x).reshape(rows, length, kv, dim).transpose(0, 2, 1, 3)
    v = attn.v_proj(x).reshape(rows, length, kv, dim).transpose(0, 2, 1, 3)
    q, k = attn.rope(q, offset=cache.offset), attn.rope(k, offset=cache.offset)
    keys, values = cache.update_and_fetch(k, v)
    q = (q * attn.scale).reshape(rows, kv, heads // kv, length, dim)
    scores = mx.where(mask, q @ keys[:, :, None].swapaxes(-1, -2), -1e30)
    out = (softmax(scores) @ values[:, :, None]).reshape(rows, heads, length, dim)
    return attn.o_proj(out.transpose(0, 2, 1, 3).reshape(rows, length, heads * dim))


def mlp(block: nn.Module, x: mx.array) -> mx.array:
    return block.down_proj(swiglu(block.gate_proj(x), block.up_proj(x)))


def hidden_states(model: nn.Module, tokens: mx.array, cache: list) -> mx.array:
    """The final hidden states of `tokens` after what the caches hold (mlx_loss's
    SharedPrefixCache: offset 0 before the prefix, its length after)."""
    inner = model.model
    offset, length = cache[0].offset, tokens.shape[1]
    query, key = mx.arange(length)[:, None], mx.arange(offset + length)[None]
    mask = key <= query + offset  # causal; the cached prefix precedes every query
    h = inner.embed_tokens(tokens)
    for layer, c in zip(inner.layers, cache):
        h = h + attention(layer.self_attn, layer.input_layernorm(h), mask, c)
        h = h + mlp(layer.mlp, layer.post_attention_layernorm(h))
    return inner.norm(h)
