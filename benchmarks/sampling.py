"""Batched sampling throughput: edgecl's MLX sampler vs mlx-lm's `batch_generate`, one run.

    python benchmarks/sampling.py            # G=8 completions x 128 tokens x 4 prompts, 3 runs
    python benchmarks/sampling.py --runs 1 --max-tokens 32
    python benchmarks/sampling.py --system        # with the protocol's system prompt
    python benchmarks/sampling.py --adapter ~/.local/share/edgecl/runs/NAME/adapter

Both get the same model, prompts and length; every completion runs to max_tokens (EOS is
ignored by both) so the token counts are equal. Prints a JSON line with the median tokens/s
of each, their ratio, and edgecl's decode as a fraction of the float32 GEMM rate measured in
the same run (2 x parameters FLOPs per token; the table in benchmarks/README.md records runs),
and the same for `learn --rollouts llamacpp`'s sampler (edgecl.backends.llamacpp_batch).
With --adapter (a warmed-up one), the step users run: math train prompts with the system
prompt, real end-of-sequence and the protocol's stop strings; mlx-lm is not run (it has no
stop strings), and tok/s counts the tokens really sampled.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from edgecl.backends.mlx_backend import MLXModel
from edgecl.core.protocol import STOP_STRINGS, SYSTEM_PROMPT, build_messages
from edgecl.models.registry import resolve_model
from edgecl.tasks.registry import get_task
from gemm import gemm_gflops

PROMPTS = [
    "What is 17 + 25? Let's think step by step.",
    "Write a Python function that reverses a string.",
    "Which planet is known as the red planet? Possible answers: A. Mars B. Venus",
    "Name three colours and explain why the sky is blue.",
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--system", action="store_true", help="the protocol's system prompt")
    parser.add_argument("--adapter", default=None, help="a warmed-up adapter: real stops")
    args = parser.parse_args()
    if args.adapter:
        return real_stops(args)

    from mlx.utils import tree_flatten
    from mlx_lm.generate import batch_generate
    from mlx_lm.sample_utils import make_sampler

    entry = resolve_model(args.model)
    model = MLXModel.load(entry.mlx_dir, entry.name)
    model.eos_ids = set()  # run every completion to max_tokens, like the baseline below
    system = [{"role": "system", "content": SYSTEM_PROMPT}] if args.system else []
    prompts = [model.chat_ids([*system, {"role": "user", "content": p}]) for p in PROMPTS]
    n_tokens = len(prompts) * args.group_size * args.max_tokens
    ours, theirs, engine = [], [], []
    for run in range(args.runs):
        start = time.perf_counter()
        out = model.sample(prompts, args.group_size, args.max_tokens, temperature=1.0, seed=run)
        ours.append(sum(len(c.token_ids) for c in out) / (time.perf_counter() - start))

        batch = [p for p in prompts for _ in range(args.group_size)]
        start = time.perf_counter()
        model.tokenizer._eos_token_ids = set()
        result = batch_generate(
            model.model,
            model.tokenizer,
            batch,
            max_tokens=args.max_tokens,
            sampler=make_sampler(temp=1.0),
            return_token_ids=True,
        )
        generated = (
            sum(len(t) for t in result.token_ids) if hasattr(result, "token_ids") else n_tokens
        )
        theirs.append(generated / (time.perf_counter() - start))
        engine.append(llamacpp_rate(model, prompts, args, entry, seed=run))
    flops = 2 * sum(v.size for _, v in tree_flatten(model.model.parameters()))
    gemm = gemm_gflops()
    row = {
        "group_size": args.group_size,
        "prompt_tokens": [len(p) for p in prompts],
        "prompts": len(prompts),
        "max_tokens": args.max_tokens,
        "runs": args.runs,
        "edgecl_tok_s": round(statistics.median(ours), 1),
        "mlx_lm_batch_generate_tok_s": round(statistics.median(theirs), 1),
    }
    row["ratio"] = round(row["edgecl_tok_s"] / row["mlx_lm_batch_generate_tok_s"], 3)
    row["gemm_gflop_s"] = round(gemm, 1)
    row["fraction_of_gemm"] = round(row["edgecl_tok_s"] * flops / 1e9 / gemm, 3)
    row["llamacpp_tok_s"] = round(statistics.median(engine), 1)
    row["llamacpp_fraction_of_gemm"] = round(row["llamacpp_tok_s"] * flops / 1e9 / gemm, 3)
    row["load"] = os.getloadavg()[0]
    print(json.dumps(row))


def real_stops(args) -> None:
    from mlx.utils import tree_flatten

    entry = resolve_model(args.model)
    model = MLXModel.load(entry.mlx_dir, entry.name)
    model.load_adapter(args.adapter)
    task = get_task("math")
    items = task.items("train")[: len(PROMPTS)]
    prompts = [model.chat_ids(build_messages(task.kind, i.question, i.choices)) for i in items]
    rates, lengths, engine = [], [], []
    for run in range(args.runs):
        start = time.perf_counter()
        out = model.sample(
            prompts, args.group_size, args.max_tokens, 1.0, stop=STOP_STRINGS, seed=run
        )
        tokens = sum(len(c.token_ids) for c in out)
        rates.append(tokens / (time.perf_counter() - start))
        lengths += [len(c.token_ids) for c in out]
        engine.append(llamacpp_rate(model, prompts, args, entry, seed=run, stop=STOP_STRINGS))
    flops = 2 * sum(v.size for _, v in tree_flatten(model.model.parameters()))
    gemm = gemm_gflops()
    rate = statistics.median(rates)
    row = {
        "adapter": args.adapter,
        "group_size": args.group_size,
        "prompt_tokens": [len(p) for p in prompts],
        "max_tokens": args.max_tokens,
        "runs": args.runs,
        "mean_completion_tokens": round(statistics.mean(lengths), 1),
        "edgecl_tok_s": round(rate, 1),
        "gemm_gflop_s": round(gemm, 1),
        "fraction_of_gemm": round(rate * flops / 1e9 / gemm, 3),
        "llamacpp_tok_s": round(statistics.median(engine), 1),
        "llamacpp_fraction_of_gemm": round(statistics.median(engine) * flops / 1e9 / gemm, 3),
        "load": os.getloadavg()[0],
    }
    print(json.dumps(row))


def llamacpp_rate(model, prompts, args, entry, seed: int, stop=()) -> float:
    """tok/s of `learn --rollouts llamacpp`'s sampler on the same prompts (the model's GGUF, the
    policy's adapter synced first, not timed), with the policy's end-of-sequence ids."""
    from edgecl.backends.llamacpp_batch import LlamaCppRollouts
    from edgecl.models.registry import ensure_gguf

    sampler = LlamaCppRollouts(model, ensure_gguf(entry))
    try:
        sampler.sync()
        start = time.perf_counter()
        out = sampler.engine.sample(
            prompts,
            args.group_size,
            args.max_tokens,
            1.0,
            stop=stop,
            seed=seed,
            eos_ids=model.eos_ids,
            decode=model.decode,
        )
        return sum(len(c.token_ids) for c in out) / (time.perf_counter() - start)
    finally:
        sampler.close()


if __name__ == "__main__":
    main()
