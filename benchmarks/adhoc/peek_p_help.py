"""Greedy help requests, local failures and P(help) per kind on the last N calibration items of
benchmarks/calibration.py's split: a quick look at an adapter before the whole benchmark.

    EDGECL_HOME=/work/evidence-home python benchmarks/adhoc/peek_p_help.py math-easy ADAPTER 40
    python benchmarks/adhoc/peek_p_help.py benchmarks/data/mixed_arithmetic_calibration.jsonl \
        ADAPTER 40

P(help) is edgecl.evaluate's; run it at a commit before 9ccafa5 for the score at `<answer>`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent.parent))
from calibration import Items, splits  # noqa: E402

from edgecl.cli.eval import _load_model  # noqa: E402
from edgecl.cloud import make_cloud  # noqa: E402
from edgecl.evaluate import auroc, evaluate  # noqa: E402
from edgecl.tasks.registry import get_task  # noqa: E402


def main() -> None:
    task_name, adapter, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    items = splits(task_name, 300)[0][-n:]
    task = get_task(task_name)
    cloud = make_cloud("reference", task=task)
    rows = evaluate(_load_model(None, adapter), Items(task, items), cloud, None, 96, split="train")
    for level in sorted({r["level"] for r in rows["items"]}):
        g = [r for r in rows["items"] if r["level"] == level]
        scores = " ".join(f"{r['p_help']:.2f}{'*' if r['would_fail'] else ''}" for r in g)
        print(f"{level}: {len(g)} items, {sum(r['help'] for r in g)} ask, "
              f"{sum(r['would_fail'] for r in g)} would fail (*), "
              f"mean P(help) {np.mean([r['p_help'] for r in g]):.3f}: {scores}")  # fmt: skip
    asked = [r for r in rows["items"] if r["help"]]
    print(f"asked {len(asked)}/{len(rows['items'])}, {sum(not r['would_fail'] for r in asked)} "
          f"solvable; AUROC of P(help) against failure among them "
          f"{auroc([r['p_help'] for r in asked], [r['would_fail'] for r in asked])}")  # fmt: skip


if __name__ == "__main__":
    main()
