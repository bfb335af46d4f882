"""The warm-up (phase 0) on the bundled model: the response protocol before and after.

    python benchmarks/warmup.py                 # 40 steps, batch 8, rank 8, lr 2e-4; ~27 min
    python benchmarks/warmup.py --steps 10 --n 16
    python benchmarks/warmup.py --lora-layers 16    # LoRA on the last 16 layers only

Probes at T=1.0 on `n` easy (math-easy: two-digit sums) and `n` hard (math-hard: multi-step
arithmetic far beyond a 135M model) train items, one sample each. Prints one JSON object.
Targets (issue 3): format >= 80%, easy correct >= 30%, trigger on <= 20% of easy items and on
>= 50% of hard ones.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from edgecl.backends.base import LoraConfig
from edgecl.backends.mlx_backend import MLXModel
from edgecl.models.registry import resolve_model
from edgecl.tasks.registry import get_task
from edgecl.warmup import probe, warmup


def summary(report: dict) -> dict:
    e, h = report["easy"], report["hard"]
    return {
        "format": round(report["format"], 3),
        "formatted": f"{e['format'] + h['format']}/{report['n']}",
        "easy_correct": f"{e['correct']}/{e['n']}",
        "help_on_easy": f"{e['help']}/{e['n']}",
        "help_on_hard": f"{h['help']}/{h['n']}",
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--lora-layers", type=int, default=-1, help="the last N layers (-1: all)")
    parser.add_argument("--n", type=int, default=48, help="probe items per difficulty")
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()

    entry = resolve_model()
    model = MLXModel.load(entry.mlx_dir, entry.name)
    probe_tasks = [get_task("math-easy"), get_task("math-hard")]
    before = probe(model, probe_tasks, 2 * args.n, args.max_tokens, seed=1)
    print(json.dumps({"before": summary(before)}), file=sys.stderr, flush=True)
    lora = LoraConfig(rank=args.rank, alpha=2 * args.rank, num_layers=args.lora_layers)
    model.attach_lora(lora, args.lr, seed=0)
    start = time.perf_counter()
    record = warmup(
        model,
        [get_task("math")],
        args.steps,
        args.batch_size,
        args.lr,
        seed=0,
        on_step=lambda k, loss: print(f"warm-up {k}: {loss:.3f}", file=sys.stderr, flush=True),
    )
    seconds = time.perf_counter() - start
    after = probe(model, probe_tasks, 2 * args.n, args.max_tokens, seed=2)
    print(
        json.dumps(
            {
                "steps": args.steps,
                "batch_size": args.batch_size,
                "lr": args.lr,
                "rank": args.rank,
                "lora_layers": args.lora_layers,
                "warmup_seconds": round(seconds, 1),
                "first_loss": round(record["first_loss"], 3),
                "last_loss": round(record["last_loss"], 3),
                "before": summary(before),
                "after": summary(after),
            }
        )
    )


if __name__ == "__main__":
    main()
