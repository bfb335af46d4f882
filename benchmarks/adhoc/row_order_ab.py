"""A/B of the update's row order: rows by length (`row_order`, a lever measured and not kept)
against rows as given, on the shapes of a real run's steps, alternating in one process.

    EDGECL_HOME=/work/evidence-home python benchmarks/adhoc/row_order_ab.py --run calcode-tau0.5
    python benchmarks/adhoc/row_order_ab.py --run calcode-tau0.5 --steps $(seq 1 21) --rounds 0

For each of `--steps` steps of the run: its prompts (the items it drew, in their task's chat
prompt) and completions of its samples' token counts (random ids: the cost depends on the shapes
only), G per prompt as sampled. Times `MLXModel.policy_gradient` (micro-batch 8, LoRA rank 8 on
every layer) with each order, and prints the positions each order computes and the seconds.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1]))
from edgecl import paths  # noqa: E402
from edgecl.backends import mlx_backend  # noqa: E402  (OpenBLAS before MLX)
from edgecl.backends.base import LoraConfig  # noqa: E402
from edgecl.backends.mlx_loss import common_prefix_length  # noqa: E402
from edgecl.core.protocol import build_messages  # noqa: E402
from edgecl.models.registry import resolve_model  # noqa: E402
from edgecl.tasks.registry import get_task  # noqa: E402


def positions(prompts, completions, order, micro=8) -> int:
    """Positions the update computes: per micro-batch its common prefix once, then every row
    padded to its longest rest (edgecl.backends.mlx_loss.pack)."""
    total = 0
    for start in range(0, len(order), micro):
        rows = order[start : start + micro]
        shared = common_prefix_length([prompts[i] for i in rows])
        total += shared + len(rows) * (
            max(len(prompts[i]) + len(completions[i]) for i in rows) - shared
        )
    return total


def bucketed(prompts, completions, buckets: int, micro=8) -> int:
    """Positions if each micro-batch (as given) split its rows into `buckets` by length, all
    attending to one pass over the common prefix (not built: the next lever to try)."""
    total = 0
    for start in range(0, len(completions), micro):
        rows = range(start, min(start + micro, len(completions)))
        shared = common_prefix_length([prompts[i] for i in rows])
        rest = sorted(len(prompts[i]) + len(completions[i]) - shared for i in rows)
        size = -(-len(rest) // buckets)
        total += shared + sum(max(rest[k : k + size]) * len(rest[k : k + size])
                              for k in range(0, len(rest), size))  # fmt: skip
    return total


def row_order(prompts, completions, micro=8) -> list[int]:
    """Rows by length, when that computes fewer positions than the given order."""
    given = list(range(len(completions)))
    by_length = sorted(given, key=lambda i: len(prompts[i]) + len(completions[i]))
    cheaper = positions(prompts, completions, by_length, micro) < positions(
        prompts, completions, given, micro
    )
    return by_length if cheaper else given


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--task", default="code-easy")
    parser.add_argument("--steps", type=int, nargs="+", default=[5, 10, 15, 20])
    parser.add_argument("--rounds", type=int, default=3, help="0: the positions only")
    args = parser.parse_args()
    db = sqlite3.connect(paths.data_dir() / "edgecl.db")
    task = get_task(args.task)
    by_id = {i.id: i for split in ("train", "eval") for i in task.items(split)}
    entry = resolve_model(None)
    model = mlx_backend.MLXModel.load(entry.mlx_dir, entry.name)
    model.attach_lora(LoraConfig(rank=8, alpha=16, num_layers=-1))
    rng = np.random.default_rng(0)
    batches, totals = [], defaultdict(int)
    for step in args.steps:
        rows = db.execute(
            "SELECT prompt_index, item_id, n_tokens FROM samples WHERE run = ? AND step = ? "
            "ORDER BY prompt_index, sample_index",
            (args.run, step),
        ).fetchall()
        groups = defaultdict(list)
        for index, item_id, n in rows:
            groups[(index, item_id)].append(max(int(n), 1))
        prompts, completions = [], []
        for (_, item_id), lengths in sorted(groups.items()):
            item = by_id[item_id]
            ids = model.chat_ids(build_messages(task.kind, item.question, item.choices))
            prompts += [ids] * len(lengths)
            completions += [rng.integers(100, 40000, n).tolist() for n in lengths]
        weights = np.linspace(-1, 1, len(prompts))
        given = list(range(len(prompts)))
        counts = {
            "given": positions(prompts, completions, given),
            "row_order": positions(prompts, completions, row_order(prompts, completions)),
            "2 buckets": bucketed(prompts, completions, 2),
            "4 buckets": bucketed(prompts, completions, 4),
            "real tokens": bucketed(prompts, completions, 8),  # no padding at all
        }
        print(f"step {step}: {len(prompts)} rows, positions {counts}", flush=True)
        for name, n in counts.items():
            totals[name] += n
        batches.append((prompts, completions, weights))
    print(f"all {len(batches)} steps: positions {dict(totals)}", flush=True)
    if args.rounds < 1:
        return

    def update(order_fn) -> float:
        start = time.perf_counter()
        for prompts, completions, weights in batches:
            o = order_fn(prompts, completions)  # the loss is a sum over rows: same value
            model.policy_gradient([prompts[i] for i in o], [completions[i] for i in o],
                                  [weights[i] for i in o], 128.0, 8)  # fmt: skip
        return time.perf_counter() - start

    update(row_order)  # warm up
    times = defaultdict(list)
    for _ in range(args.rounds):
        for name, fn in (("given", lambda p, c: list(range(len(c)))), ("row_order", row_order)):
            times[name].append(update(fn))
            print(f"{name}: {times[name][-1]:.2f} s, load {os.getloadavg()[0]:.1f}", flush=True)
    for name, t in times.items():
        print(f"{name}: median {np.median(t):.2f} s over {len(t)} rounds of {len(batches)} steps")


if __name__ == "__main__":
    main()
