"""The policy-gradient update at several micro-batch sizes, on one step's worth of sequences.

    python benchmarks/update.py                   # 4 prompts x G=8, 64-token completions
    python benchmarks/update.py --micro-batches 8 16 --completion 128
    python benchmarks/update.py --micro-batches 8 --ranks 2   # data parallel, a core each

The prompts are the `math` task's (system prompt + question, ~270 tokens), completions random
ids; LoRA rank 8 on every layer, as `edgecl learn` trains. One JSON line per micro-batch size:
seconds for the whole update (gradient accumulated over the micro-batches, Adam step), peak
memory, and GFLOP/s against the float32 GEMM rate measured in the same run (4 x parameters per
token: forward, and the backward through frozen weights).

With `--ranks N` (as `edgecl learn --ranks N`) or under `mlx.launch`, each rank takes its share
of the groups and the gradients are summed, as `edgecl learn` does; the GEMM yardstick is then
the sum of the ranks' rates, measured at once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from edgecl.backends.base import LoraConfig
from edgecl.backends.distributed import World, launch_local, launched
from edgecl.backends.mlx_backend import MLXModel
from edgecl.core.protocol import build_messages
from edgecl.models.registry import resolve_model
from edgecl.tasks.registry import get_task
from gemm import gemm_gflops


def main() -> None:
    import mlx.core as mx
    from mlx.utils import tree_flatten

    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--completion", type=int, default=64)
    parser.add_argument("--micro-batches", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--lora-layers", type=int, default=-1, help="the last N layers (-1: all)")
    parser.add_argument("--ranks", type=int, default=1, help="data-parallel processes here")
    args = parser.parse_args()
    if args.ranks > 1 and not launched():
        raise SystemExit(launch_local([sys.executable, *sys.argv], args.ranks))

    world = World.init()
    entry = resolve_model(None)
    model = MLXModel.load(entry.mlx_dir, entry.name)
    model.attach_lora(LoraConfig(rank=8, alpha=16, num_layers=args.lora_layers))
    task = get_task("math", None, 0)
    items = task.items("train")[: args.prompts]
    prompt_ids = [model.chat_ids(build_messages(task.kind, i.question, i.choices)) for i in items]
    rng = np.random.default_rng(0)
    prompts = [p for p in prompt_ids for _ in range(args.group_size)]
    completions = [rng.integers(100, 40000, args.completion).tolist() for _ in prompts]
    weights = np.linspace(-1, 1, len(prompts))
    params = sum(v.size for _, v in tree_flatten(model.model.parameters()))
    tokens = sum(len(p) for p in prompt_ids) + len(prompts) * args.completion
    sequences = len(prompts)
    g = args.group_size  # each rank: the sequences of its share of the groups
    mine = [i for k in world.share(args.prompts) for i in range(k * g, (k + 1) * g)]
    prompts, completions = [prompts[i] for i in mine], [completions[i] for i in mine]
    weights = weights[mine]
    for micro in args.micro_batches:
        gemm = float(world.sum(np.array([gemm_gflops()]))[0])
        model.policy_gradient_step(prompts, completions, weights, 128, micro, world)
        mx.reset_peak_memory()
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            model.policy_gradient_step(prompts, completions, weights, 128, micro, world)
            times.append(time.perf_counter() - start)
        seconds = float(world.sum(np.array([np.median(times)]))[0]) / world.size
        rate = 4 * params * tokens / seconds / 1e9  # prompts counted once: the ideal sharing
        row = {
            "ranks": world.size,
            "micro_batch": micro,
            "lora_layers": args.lora_layers,
            "sequences": sequences,
            "completion": args.completion,
            "seconds": round(seconds, 2),
            "peak_gb_per_rank": round(mx.get_peak_memory() / 1e9, 2),
            "gflop_s": round(rate, 1),
            "gemm_gflop_s": round(gemm, 1),
            "fraction_of_gemm": round(rate / gemm, 3),
            "load": os.getloadavg()[0],
        }
        if world.is_main:
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
