"""Where a decode step and an update spend their time, against this box's GEMM rate (one run).

    python benchmarks/profile_step.py                 # batch 32, context 300, micro-batch 8 x 64
    python benchmarks/profile_step.py --batch 8 --lora  # a rank-8 LoRA attached, as in training

Decode: a whole step (forward, token choice, the token back to Python) through mlx-lm's forward
with sampling in MLX, and through edgecl's sampler; then each module call of mlx-lm's forward
(projections, norms, RoPE, attention, KV-cache update, the vocabulary projection) is evaluated
on its own and timed, the rest being the forward's time minus their sum. The same matmuls run
back to back in one graph give the floor the step could reach if only the GEMMs cost anything.
Update: forward alone and forward + backward of the policy-gradient loss on one micro-batch,
as GFLOP/s (2 x parameters per token forward, twice that with the backward through frozen
weights) and as a fraction of the GEMM rate. Ops: MLX's exp-based functions against numpy's
exp, a compiled polynomial exp, and decode attention two ways. One JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict

from edgecl.backends.blas import preload_openblas

preload_openblas()

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
import numpy as np  # noqa: E402
from mlx_lm.models import llama  # noqa: E402
from mlx_lm.models.cache import BatchKVCache  # noqa: E402
from mlx_lm.tuner.lora import LoRALinear  # noqa: E402

from edgecl.backends.base import LoraConfig  # noqa: E402
from edgecl.backends.mlx_backend import MLXModel  # noqa: E402
from edgecl.backends.mlx_loss import SharedPrefixCache, pack, pg_loss  # noqa: E402
from edgecl.backends.sampling import next_tokens  # noqa: E402
from edgecl.models.registry import resolve_model  # noqa: E402
from gemm import gemm_gflops  # noqa: E402


def emit(kind: str, **data) -> None:
    print(json.dumps({"kind": kind, "load": os.getloadavg()[0], **data}), flush=True)


def timed(fn, repeats: int = 5) -> float:
    """Median seconds of fn() with its result evaluated."""
    mx.eval(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        mx.eval(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


class OpTimer:
    """Evaluates and times every call of the patched callables, by label."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, label: str, fn):
        def timed_call(*args, **kwargs):
            mx.eval([a for a in args if isinstance(a, mx.array)])
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            mx.eval(out)
            self.seconds[label] += time.perf_counter() - start
            self.calls[label] += 1
            return out

        return timed_call


def emit_parts(kind: str, run, repeats: int) -> None:
    """Run `run` with every module call evaluated and timed on its own; one line per part."""
    timer = OpTimer()
    patched = []

    def patch(owner, name, label):
        original = getattr(owner, name)
        patched.append((owner, name, original))
        setattr(owner, name, timer.wrap(label, original))

    patch(nn.Linear, "__call__", "linear (q,k,v,o,gate,up,down)")
    patch(nn.RMSNorm, "__call__", "rms_norm")
    patch(nn.RoPE, "__call__", "rope")
    patch(BatchKVCache, "update_and_fetch", "kv cache update")
    patch(SharedPrefixCache, "update_and_fetch", "kv cache update")
    patch(llama, "scaled_dot_product_attention", "attention")
    patch(llama, "swiglu", "swiglu")
    patch(nn.Embedding, "__call__", "embedding")
    patch(nn.Embedding, "as_linear", "vocabulary projection")
    patch(LoRALinear, "__call__", "lora linear (incl. its base)")
    start = time.perf_counter()
    try:
        run()
    finally:
        for owner, name, original in reversed(patched):
            setattr(owner, name, original)
    total = (time.perf_counter() - start) / repeats
    parts = {k: v / repeats for k, v in timer.seconds.items()}
    if "lora linear (incl. its base)" in parts:  # LoRALinear calls its base nn.Linear inside
        parts["lora linear (incl. its base)"] -= parts.get("linear (q,k,v,o,gate,up,down)", 0)
    parts["other (elementwise, reshapes, losses, eval overhead)"] = total - sum(parts.values())
    for label, seconds in sorted(parts.items(), key=lambda kv: -kv[1]):
        calls = timer.calls.get(label, 0) // repeats
        emit(
            kind,
            part=label,
            seconds=round(seconds, 5),
            share=round(seconds / total, 3),
            calls=calls,
        )


def decode_cache(model: MLXModel, batch: int, context: int):
    prompt = mx.array(np.random.default_rng(0).integers(100, 40000, size=(batch, context)))
    cache = [BatchKVCache([0] * batch) for _ in model.model.layers]
    logits = model.model(prompt, cache=cache)[:, -1, :]
    mx.eval(logits, [(c.keys, c.values) for c in cache])
    return cache


def profile_decode(model: MLXModel, batch: int, context: int, steps: int, gemm: float) -> None:
    cfg = model.config
    params = sum(v.size for _, v in _flat(model.model.parameters()))
    token = mx.zeros((batch, 1), dtype=mx.int32)

    # A whole decode step, two ways: mlx-lm's forward with sampling in MLX (the sampler until
    # 2026-11-30), and edgecl's sampler today (`MLXModel._decode`, numpy `next_tokens`).
    def mlx_lm_step(token, cache, rng):
        logits = model.model(token, cache=cache)[:, -1, :]
        logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        return mx.random.categorical(logprobs)[:, None].astype(mx.int32)

    def edgecl_step(token, cache, rng):
        logits = np.array(model._decode(token, cache))
        tokens, _ = next_tokens(logits, 1.0, 1.0, rng.random(len(logits)))
        return mx.array(tokens)[:, None]

    flops = 2 * params * batch
    for label, step_fn in (("mlx-lm forward, MLX sampling", mlx_lm_step), ("edgecl", edgecl_step)):
        cache = decode_cache(model, batch, context)
        rng = np.random.default_rng(0)
        start = time.perf_counter()
        for _ in range(steps):
            token = step_fn(token, cache, rng)
            token.tolist()
        step = (time.perf_counter() - start) / steps
        emit(
            "decode_step",
            path=label,
            batch=batch,
            context=context,
            seconds=round(step, 4),
            tok_s=round(batch / step, 1),
            gflop_s=round(flops / step / 1e9, 1),
            fraction_of_gemm=round(flops / step / 1e9 / gemm, 3),
        )

    # Each module evaluated on its own (the cache is filled before the timer goes in).
    cache = decode_cache(model, batch, context)

    def forward():
        for _ in range(steps):
            mx.eval(model.model(token, cache=cache)[:, -1, :])

    emit_parts("decode_part", forward, steps)

    # Floor: the decode's GEMMs alone, one graph.
    h, f, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = cfg.get("head_dim", h // cfg["num_attention_heads"])
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    x = mx.random.normal((batch, h))
    xf = mx.random.normal((batch, f))
    ws = [mx.random.normal((o, i)) * 0.02 for o, i in ((q, h), (kv, h), (kv, h), (h, q))]
    ws += [mx.random.normal((f, h)) * 0.02, mx.random.normal((f, h)) * 0.02]
    down = mx.random.normal((h, f)) * 0.02
    head = mx.random.normal((v, h)) * 0.02

    def gemms():
        outs = [x @ w.T for w in ws for _ in range(cfg["num_hidden_layers"])]
        outs += [xf @ down.T for _ in range(cfg["num_hidden_layers"])]
        return outs + [x @ head.T]

    floor = timed(gemms)
    emit(
        "decode_gemm_floor",
        seconds=round(floor, 4),
        gflop_s=round(flops / floor / 1e9, 1),
        fraction_of_gemm=round(flops / floor / 1e9 / gemm, 3),
    )
    for label, (m, k, n) in {
        "x @ W_q (576x576)": (batch, h, q),
        "x @ W_up (576x1536)": (batch, h, f),
        "x @ W_vocab (576x49152)": (batch, h, v),
    }.items():
        a, w = mx.random.normal((m, k)), mx.random.normal((n, k))
        s = timed(lambda a=a, w=w: a @ w.T, repeats=20)
        emit("gemm_shape", shape=label, batch=m, gflop_s=round(2 * m * k * n / s / 1e9, 1))


def profile_update(model: MLXModel, rows: int, prompt_len: int, completion_len: int, gemm: float):
    rng = np.random.default_rng(0)
    prompt = rng.integers(100, 40000, size=prompt_len).tolist()
    prompts = [prompt] * rows  # one GRPO group: the whole prompt is shared
    completions = [rng.integers(100, 40000, size=completion_len).tolist() for _ in range(rows)]
    batch = pack(prompts, completions)
    weights = mx.array(np.linspace(-1, 1, rows).astype(np.float32))
    params = sum(v.size for _, v in _flat(model.model.parameters()))
    tokens = prompt_len + rows * completion_len  # the prefix runs once
    forward = timed(lambda: pg_loss(model.model, *batch, weights, 128.0), repeats=3)
    emit_parts(
        "update_forward_part", lambda: mx.eval(pg_loss(model.model, *batch, weights, 1.0)), 1
    )
    model.model.train()
    both = timed(
        lambda: nn.value_and_grad(model.model, pg_loss)(model.model, *batch, weights, 128.0),
        repeats=3,
    )
    model.model.eval()
    for label, seconds, mult in (("forward", forward, 2), ("forward+backward", both, 4)):
        rate = mult * params * tokens / seconds / 1e9
        emit(
            "update",
            part=label,
            rows=rows,
            prompt=prompt_len,
            completion=completion_len,
            seconds=round(seconds, 3),
            gflop_s=round(rate, 1),
            fraction_of_gemm=round(rate / gemm, 3),
        )


def _flat(tree):
    from mlx.utils import tree_flatten

    return tree_flatten(tree)


def profile_ops(batch: int, context: int) -> None:
    """The single ops behind the profile's conclusions, each timed on its own (median ms)."""
    x = mx.random.normal((32, 49152)) * 3
    xn = np.array(x)
    for label, fn in {
        "x * 1.5": lambda: x * 1.5,
        "mx.exp": lambda: mx.exp(x),
        "mx.sigmoid": lambda: mx.sigmoid(x),
        "mx.tanh": lambda: mx.tanh(x),
        "mx.logsumexp": lambda: mx.logsumexp(x, axis=-1),
        "mx.random.categorical": lambda: mx.random.categorical(x),
        "polynomial exp, mx.compile per shape": lambda: poly_exp(x),
        "polynomial exp, mx.compile shapeless": lambda: poly_exp_shapeless(x),
    }.items():
        emit("op", op=label, shape="32x49152", ms=round(1e3 * timed(fn, repeats=10), 2))
    emit("op", op="numpy exp", shape="32x49152", ms=round(1e3 * timed_numpy(np.exp, xn), 2))
    rng = np.random.default_rng(0)
    ms = 1e3 * timed_numpy(lambda a: next_tokens(a, 1.0, 1.0, rng.random(len(a))), xn)
    emit("op", op="next_tokens (numpy)", shape="32x49152", ms=round(ms, 2))

    # Decode attention, SmolLM2's shapes: 9 query heads on 3 key heads of 64, cache of `context`.
    heads, kv_heads, dim = 9, 3, 64
    q = mx.random.normal((batch, heads, 1, dim))
    keys, values = (mx.random.normal((batch, kv_heads, context, dim)) for _ in range(2))

    def grouped():
        s = (q.reshape(batch, kv_heads, heads // kv_heads, dim) * 0.125) @ keys.swapaxes(-1, -2)
        return mx.softmax(s, axis=-1, precise=True) @ values

    for label, fn in {
        "mx.fast.scaled_dot_product_attention": lambda: mx.fast.scaled_dot_product_attention(
            q, keys, values, scale=0.125
        ),
        "grouped matmuls (decode_attention)": grouped,
    }.items():
        shape = f"{batch} rows x {context} keys"
        emit("op", op=label, shape=shape, ms=round(1e3 * timed(fn, repeats=20), 2))


def timed_numpy(fn, a, repeats: int = 10) -> float:
    fn(a)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(a)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _poly_exp(x):
    """exp(x) = 2^n * p(r), r = x - n ln 2 in [-ln2/2, ln2/2], p a degree-6 Taylor polynomial;
    2^n by writing n + 127 into a float32's exponent bits (relative error 2.5e-7)."""
    x = mx.clip(x, -87.0, 88.0)
    n = mx.floor(x * 1.4426950408889634 + 0.5)
    r = x - n * 0.693145751953125 - n * 1.428606765330187e-06
    p = 1 + r * (1 + r * (1 / 2 + r * (1 / 6 + r * (1 / 24 + r * (1 / 120 + r / 720)))))
    return p, (n.astype(mx.int32) + 127) << 23


def _poly_full(x):
    p, bits = _poly_exp(x)
    return p * bits.view(mx.float32)


poly_exp = mx.compile(_poly_full)  # compiled for each new shape
_poly_shapeless = mx.compile(_poly_exp, shapeless=True)  # a bit cast cannot compile shapeless


def poly_exp_shapeless(x):
    p, bits = _poly_shapeless(x)
    return p * bits.view(mx.float32)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--context", type=int, default=300)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--lora", action="store_true", help="attach a rank-8 LoRA to all layers")
    parser.add_argument("--update-rows", type=int, default=8)
    parser.add_argument("--skip-update", action="store_true")
    parser.add_argument("--skip-ops", action="store_true")
    args = parser.parse_args()

    entry = resolve_model(args.model)
    model = MLXModel.load(entry.mlx_dir, entry.name)
    if args.lora:
        model.attach_lora(LoraConfig(rank=8, alpha=16))
    gemm = gemm_gflops()
    emit("gemm", n=2048, gflop_s=round(gemm, 1))
    profile_decode(model, args.batch, args.context, args.steps, gemm)
    if not args.skip_ops:
        profile_ops(args.batch, args.context)
    if not args.skip_update:
        if model.lora is None:
            model.attach_lora(LoraConfig(rank=8, alpha=16))
        profile_update(model, args.update_rows, 270, 64, gemm)
    emit("gemm_after", n=2048, gflop_s=round(gemm_gflops(), 1))


if __name__ == "__main__":
    main()
