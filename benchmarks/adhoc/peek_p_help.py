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

sys.path.insert(0, str(Path(__file__).parent.parent))
from calibration import Items, requests_by_kind, splits  # noqa: E402

from edgecl.cli.eval import _load_model  # noqa: E402
from edgecl.cloud import make_cloud  # noqa: E402
from edgecl.evaluate import evaluate  # noqa: E402
from edgecl.tasks.registry import get_task  # noqa: E402


def main() -> None:
    task_name, adapter, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    items = splits(task_name, 300)[0][-n:]
    task = get_task(task_name)
    cloud = make_cloud("reference", task=task)
    model = _load_model(None, adapter)
    report = evaluate(model, Items(task, items), cloud, None, 96, split="train")
    print("\n".join(requests_by_kind(report["items"], scores=True)))


if __name__ == "__main__":
    main()
