"""The warm-up (phase 0) on the bundled model: protocol, ability and help, per level.

    python benchmarks/warmup.py                      # the defaults of `edgecl learn`
    python benchmarks/warmup.py --format-steps 20 --help-steps 20 --n 16
    python benchmarks/warmup.py --lora-layers 16     # LoRA on the last 16 layers only
    python benchmarks/warmup.py --task benchmarks/data/mixed_arithmetic.jsonl

Runs edgecl.warmup.phase0 on a task (default `math`, all six levels) with a fresh LoRA, as
`edgecl learn` does, then probes `n` train items with G=4 samples each at T=1 and evaluates the
eval split greedily (edgecl.evaluate: each item's help decision against whether it would fail
locally). Prints one JSON object: the probe before, the measured ability per level, the probe
after (format, per level correct and help, mixed groups), the help rate on the eval items the
model would fail and on those it would solve, the help AUROC, and the time of the warm-up.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from edgecl.backends.base import LoraConfig
from edgecl.backends.mlx_backend import MLXModel
from edgecl.cloud import make_cloud
from edgecl.config import Phase, TrainConfig
from edgecl.core.protocol import STOP_STRINGS, build_messages, parse_response
from edgecl.evaluate import auroc, evaluate
from edgecl.models.registry import resolve_model
from edgecl.tasks.registry import get_task
from edgecl.warmup import phase0, probe


def sampled_help(model, task, rows: list[dict], k: int, max_tokens: int) -> dict:
    """How often k samples at T=1 ask for help on each eval item, on the items the greedy model
    would fail locally and on those it would solve; and the AUROC of that rate for failing."""
    by_id = {item.id: item for item in task.items("eval")}
    items = [by_id[r["id"]] for r in rows]
    prompts = [model.chat_ids(build_messages(task.kind, it.question, it.choices)) for it in items]
    outs = model.sample(prompts, k, max_tokens, 1.0, stop=STOP_STRINGS, seed=3)
    asks = [parse_response(o.text, task.kind, truncated=o.truncated).requests_help for o in outs]
    rates = [float(np.mean(asks[i * k : (i + 1) * k])) for i in range(len(items))]
    fail = [r["would_fail"] for r in rows]
    on = {f: [x for x, y in zip(rates, fail) if y == f] for f in (True, False)}
    return {
        "k": k,
        "help_on_would_fail": float(np.mean(on[True])) if on[True] else None,
        "help_on_would_solve": float(np.mean(on[False])) if on[False] else None,
        "n_fail": len(on[True]),
        "n_solve": len(on[False]),
        "auroc": auroc(rates, fail),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    defaults = TrainConfig(run_name="bench", phases=[Phase("math", "0.3", 1)])
    parser.add_argument("--format-steps", type=int, default=defaults.warmup_steps)
    parser.add_argument("--help-steps", type=int, default=defaults.help_steps)
    parser.add_argument("--lora-layers", type=int, default=-1, help="the last N layers (-1: all)")
    parser.add_argument("--n", type=int, default=48, help="probe items after the warm-up")
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--task", default="math")
    parser.add_argument("--k", type=int, default=8, help="samples per eval item at T=1")
    args = parser.parse_args()

    config = TrainConfig(
        run_name="bench",
        phases=[Phase(args.task, "0.3", 1)],
        warmup_steps=args.format_steps,
        help_steps=args.help_steps,
        lora_layers=args.lora_layers,
        max_tokens=args.max_tokens,
    )
    entry = resolve_model()
    model = MLXModel.load(entry.mlx_dir, entry.name)
    model.attach_lora(LoraConfig(config.lora_rank, config.lora_alpha, config.lora_layers))
    tasks = [get_task(args.task)]
    start = time.perf_counter()

    def log(kind: str, data: dict) -> None:
        print(kind, json.dumps(data), file=sys.stderr, flush=True)

    record = phase0(model, tasks, config, log)
    seconds = time.perf_counter() - start
    after = probe(model, tasks, args.n, args.max_tokens, seed=2, group=4)
    cloud = make_cloud("reference", task=tasks[0])
    report = evaluate(model, tasks[0], cloud, max_tokens=args.max_tokens)
    fails = [r for r in report["items"] if r["would_fail"]]
    solves = [r for r in report["items"] if not r["would_fail"]]
    sampled = sampled_help(model, tasks[0], report["items"], args.k, args.max_tokens)
    print(
        json.dumps(
            {
                "format_steps": args.format_steps,
                "help_steps": args.help_steps,
                "lora_layers": args.lora_layers,
                "warmup_seconds": round(seconds, 1),
                "format_phase": record.get("format"),
                "help_phase": record.get("help"),
                "ability": record.get("ability"),
                "before": record.get("probe_before"),
                "after": after,
                "eval_help_on_would_fail": f"{sum(r['help'] for r in fails)}/{len(fails)}",
                "eval_help_on_would_solve": f"{sum(r['help'] for r in solves)}/{len(solves)}",
                "eval_help_auroc": report["help_auroc"],
                "eval_help_auroc_greedy": report["help_auroc_greedy"],
                "eval_sampled_help": sampled,
                "eval_levels": report["levels"],
            }
        )
    )


if __name__ == "__main__":
    main()
