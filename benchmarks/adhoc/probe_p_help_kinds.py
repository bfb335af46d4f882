"""Does P(help) rank the requests an adapter could solve itself? Per kind of a labelled JSONL.

    EDGECL_HOME=/work/evidence-home python benchmarks/adhoc/probe_p_help_kinds.py \
        --adapter /work/evidence-home/learners/default/versions/0002 --items 96

Greedy `evaluate()` (96 tokens, the reference cloud) on the first train items of
benchmarks/data/mixed_arithmetic_calibration.jsonl; for each request also the log-probability
of the answer the model gives when made to answer. Prints the help rate, how many requests the
model would solve, the AUROC against local failure of P(help) and of the answer's confidence,
and P(help) per kind (benchmarks/README.md, "The bound in general").
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from edgecl.cli.eval import _load_model
from edgecl.cloud import make_cloud
from edgecl.evaluate import auroc, evaluate
from edgecl.tasks.registry import get_task

TASK = Path(__file__).parents[1] / "data" / "mixed_arithmetic_calibration.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--adapter", type=Path, required=True)
    parser.add_argument("--items", type=int, default=96)
    args = parser.parse_args()
    task = get_task(str(TASK))
    model = _load_model(None, args.adapter)
    forced = []  # the made-to-answer samples evaluate() draws, in request order
    sample = model.sample

    def recording(*a, **k):
        out = sample(*a, **k)
        if k.get("stop") == ("</answer>",):
            forced.extend(out)
        return out

    model.sample = recording
    rows = evaluate(model, task, make_cloud("reference", task=task), args.items, 96, split="train")
    rows = rows["items"]
    requests = [r for r in rows if r["help"] and "<answer>" in r["response"]]
    fail = [r["would_fail"] for r in requests]
    confidence = [float(np.sum(o.logprobs)) for o in forced]
    print(f"help on {sum(r['help'] for r in rows)}/{len(rows)}; requests it would solve: "
          f"{sum(not f for f in fail)}/{len(requests)}")  # fmt: skip
    by_p_help = auroc([r["p_help"] for r in requests], fail)
    by_answer = auroc([-c for c in confidence], fail)
    print(f"AUROC against failure among requests: P(help) {by_p_help}, answer log-prob {by_answer}")
    kinds = defaultdict(list)
    for r in rows:
        kinds[r["level"]].append(r)
    for kind, group in kinds.items():
        p = np.mean([r["p_help"] for r in group])
        solved = np.mean([not r["would_fail"] for r in group])
        print(f"{kind}: {len(group)} items, mean P(help) {p:.3f}, would solve {solved:.2f}")


if __name__ == "__main__":
    main()
