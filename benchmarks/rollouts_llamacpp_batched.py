"""GRPO rollouts on llama.cpp with one sequence per completion, decoded together in one
`llama_batch` (edgecl.backends.llamacpp_batch, `learn --rollouts llamacpp`), against MLX's
batched sampler, in one run.

    python benchmarks/rollouts_llamacpp_batched.py                 # 4 prompts x G=8 x 128 tokens
    python benchmarks/rollouts_llamacpp_batched.py --group-size 2 --max-tokens 8   # smoke run

Issue 7's item 4 (`benchmarks/rollouts_llamacpp.py` measured llama.cpp one completion after
another). Both engines carry a rank-8 LoRA on all 7 projections of all 30 layers, made non-zero
by one policy-gradient step and exported to GGUF LoRA for llama.cpp, which runs the bundled
Q4_1 GGUF. Every completion runs to max_tokens (EOS ignored), T=1, the prompts of
benchmarks/sampling.py.

One JSON line per measurement (with the 1-minute load average):
  gemm         this box's float32 GEMM rate (the yardstick of benchmarks/README.md)
  mlx_sample   MLX `sample`: aggregate tok/s and its fraction of the GEMM rate
  llamacpp     the batched llama.cpp sampler, per thread count and flash attention on/off:
               tok/s, fraction of GEMM, ratio to MLX, and how off-policy its samples are:
               the mean over sampled tokens of log mu - log pi (a KL(mu || pi) estimate, mu the
               sampler, pi MLX's teacher-forced policy) and the share of tokens whose importance
               weight pi / mu is capped (edgecl.backends.mlx_loss.IMPORTANCE_CAP)
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from sampling import PROMPTS

from gemm import gemm_gflops


def emit(name: str, **fields) -> dict:
    row = {"measurement": name, **fields, "load": round(os.getloadavg()[0], 2)}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()

    from mlx.utils import tree_flatten

    from edgecl.backends.base import LoraConfig
    from edgecl.backends.llamacpp_batch import LlamaCppRollouts
    from edgecl.backends.mlx_backend import MLXModel
    from edgecl.backends.mlx_loss import IMPORTANCE_CAP
    from edgecl.models.registry import ensure_gguf, resolve_model

    entry = resolve_model(args.model)
    model = MLXModel.load(entry.mlx_dir, entry.name)
    model.attach_lora(LoraConfig(rank=8, alpha=16.0), learning_rate=1e-4)
    model.eos_ids = set()  # every completion runs to max_tokens
    prompts = [model.chat_ids([{"role": "user", "content": p}]) for p in PROMPTS]
    G, T = args.group_size, args.max_tokens
    flops = 2 * sum(v.size for _, v in tree_flatten(model.model.parameters()))
    gemm = emit("gemm", gflop_s=round(gemm_gflops(), 1))["gflop_s"]

    def fraction(tok_s: float) -> float:
        return round(tok_s * flops / 1e9 / gemm, 3)

    start = time.perf_counter()
    outs = model.sample(prompts, G, T, temperature=1.0, seed=0)
    seconds = time.perf_counter() - start
    n = sum(len(o.token_ids) for o in outs)
    mlx = emit("mlx_sample", tokens=n, seconds=round(seconds, 2), tok_s=round(n / seconds, 1),
               of_gemm=fraction(n / seconds))  # fmt: skip
    # one update on those samples, so the adapter the engines carry is not a no-op
    weights = np.random.default_rng(0).standard_normal(len(outs)).tolist()
    model.policy_gradient_step([prompts[o.prompt_index] for o in outs],
                               [o.token_ids for o in outs], weights, float(n))  # fmt: skip
    gguf = ensure_gguf(entry)
    best = None
    for flash_attn in (False, True):
        for threads in (1, 2):
            sampler = LlamaCppRollouts(model, gguf, threads, flash_attn=flash_attn)
            start = time.perf_counter()
            sampler.sync()
            sync = time.perf_counter() - start
            start = time.perf_counter()
            outs = sampler.engine.sample(prompts, G, T, 1.0, seed=0, decode=model.decode)
            seconds = time.perf_counter() - start
            sampler.close()
            policy = model.sequence_logprobs([prompts[o.prompt_index] for o in outs],
                                             [o.token_ids for o in outs])  # fmt: skip
            gap = np.concatenate([np.array(o.logprobs) - p for o, p in zip(outs, policy)])
            n = sum(len(o.token_ids) for o in outs)
            row = emit(
                "llamacpp", threads=threads, flash_attn=flash_attn, tokens=n,
                seconds=round(seconds, 2), sync_s=round(sync, 2), tok_s=round(n / seconds, 1),
                of_gemm=fraction(n / seconds), vs_mlx=round(n / seconds / mlx["tok_s"], 3),
                kl_mu_pi=round(float(gap.mean()), 4),
                capped=round(float((-gap > np.log(IMPORTANCE_CAP)).mean()), 4),
                first_completion=outs[0].text[:120],
            )  # fmt: skip
            best = row if best is None or row["tok_s"] > best["tok_s"] else best
    keys = ("threads", "flash_attn", "tok_s", "vs_mlx")
    emit("summary", mlx_tok_s=mlx["tok_s"], best_llamacpp={k: best[k] for k in keys})


if __name__ == "__main__":
    main()
