"""Does the answer-time budget knob hold? Calibrate on one split, measure on a disjoint one.

    python benchmarks/calibration.py                       # the learner's warm-up version
    python benchmarks/calibration.py --adapter PATH --items 300
    python benchmarks/calibration.py --task math-easy --adapter PATH
    python benchmarks/calibration.py --task code-easy --adapter PATH
    python benchmarks/calibration.py --task benchmarks/data/mixed_arithmetic_calibration.jsonl \
        --adapter PATH

One greedy pass (the reference cloud, `--max-tokens`) over two splits, in chunks cached under
the data dir (so it resumes):
- calibration: the first `--items` train items of the task, as `edgecl calibrate` takes them
  (edgecl.calibration.threshold per tau);
- measurement, problems that neither training nor the calibration saw: the train and eval
  items of the task with seed 1, minus every problem that seed 0's train or eval split holds
  (the same numbers, whatever the phrasing): about 380 for math, 344 for math-easy.
code-easy has too few items for that (340), so both splits come from the 732 siblings of its
numeric templates with parameters beyond the task's (edgecl.tasks.code_tasks.unseen_easy_items:
add_31 ... add_120), shuffled: the first `--items` calibrate, the rest measure. (Its train items
would calibrate on another mix of levels than the measurement's.)
A JSONL task (a path): its rows in file order, both splits; the first `--items` calibrate, the
rest measure. benchmarks/data/mixed_arithmetic_calibration.jsonl (800 rows, four kinds of
arithmetic, shuffled) shares no problem with mixed_arithmetic.jsonl, the task to train on.
On the measurement split, per tau: the realised offload rate, the joint accuracy, and the joint
accuracy of suppressing random requests to the same offload rate, paired on the same items
(edgecl.calibration.offload_metrics).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
from pathlib import Path

import numpy as np

from edgecl import learner as learners
from edgecl import paths
from edgecl.calibration import SCORE, calibration_record, offload_metrics, threshold
from edgecl.cli.eval import _load_model
from edgecl.cloud import make_cloud
from edgecl.evaluate import auroc, evaluate
from edgecl.store import Store
from edgecl.tasks.code_tasks import unseen_easy_items
from edgecl.tasks.registry import get_task

CHUNK = 50
TAUS = (0.1, 0.2, 0.3)


class Items:
    """A task whose train split is the given items: evaluate() over any list, in chunks."""

    def __init__(self, task, items: list) -> None:
        self.task, self.chosen = task, items

    def items(self, split: str) -> list:
        return list(self.chosen)

    def __getattr__(self, name: str):
        return getattr(self.task, name)


def warmup_version(learner: str) -> Path:
    store = Store()
    try:
        me = learners.load(store, learner)
        rows = [v for v in store.versions(learner) if v["kind"] == "warmup"]
    finally:
        store.close()
    if me is None or not rows:
        raise SystemExit(f"learner {learner!r} has no warm-up version: run `edgecl learn` first")
    return learners.version_path(me, rows[-1]["version"])


def _numbers(item) -> str:
    return re.sub(r"[^0-9+*/=x-]", "", item.question)


def splits(task: str, n_calibration: int) -> tuple[list, list]:
    """(calibration items, measurement items): see the module docstring."""
    if task.endswith(".jsonl"):
        lines = Path(task).read_text().splitlines()
        order = {json.loads(line)["prompt"]: k for k, line in enumerate(lines) if line}
        items = [i for s in ("train", "eval") for i in get_task(task).items(s)]
        items.sort(key=lambda i: order[i.question])
        return items[:n_calibration], items[n_calibration:]
    if task == "code-easy":
        unseen = unseen_easy_items()
        random.Random("calibration-bench").shuffle(unseen)
        return unseen[:n_calibration], unseen[n_calibration:]
    known = get_task(task)  # math or math-easy
    fresh = get_task(task, None, 1)
    seen = {_numbers(i) for split in ("train", "eval") for i in known.items(split)}
    measure = [i for s in ("train", "eval") for i in fresh.items(s) if _numbers(i) not in seen]
    return known.items("train")[:n_calibration], measure


def measured(adapter: Path, task_name: str, items: list, max_tokens: int, label: str) -> list[dict]:
    name = f"{adapter.resolve()}:{max_tokens}:{Path(task_name).name}:{SCORE}"
    key = hashlib.sha256(name.encode()).hexdigest()[:12]
    cache = paths.data_dir() / "calibration-bench" / key
    cache.mkdir(parents=True, exist_ok=True)
    task = get_task(task_name)
    engine = None
    rows: list[dict] = []
    for start in range(0, len(items), CHUNK):
        path = cache / f"{label}{start:05d}.json"
        if not path.is_file():
            if engine is None:
                engine = _load_model(None, adapter)
            cloud = make_cloud("reference", task=task)
            chunk = Items(task, items[start : start + CHUNK])
            report = evaluate(engine, chunk, cloud, None, max_tokens, split="train")
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(report["items"]))
            tmp.replace(path)
            print(f"{label or 'calibration '}items {start}-{start + CHUNK}: measured", flush=True)
        rows += json.loads(path.read_text())
    return rows


def by_all_scores(calib: list[dict], measure: list[dict], tau: float) -> dict:
    """What issue 12 rules out, measured for the next plan: offload the items whose P(help) is
    in the calibration split's top tau share, asked or not (a request the greedy text did not
    make would send its steps and the trigger). The reference cloud (accuracy 1) answers every
    request right, so an offloaded item counts as right. Against offloading random items at the
    same rate (in expectation, on the same items); and the oracle (as many offloads, local
    failures first)."""
    thr = threshold([r["p_help"] for r in calib], len(calib), tau)
    local = np.array([not r["would_fail"] for r in measure], dtype=float)
    sent = np.array([r["p_help"] >= thr for r in measure])
    rate = float(sent.mean())
    fails = int((1 - local).sum())
    return {
        "threshold": thr,
        "offload_rate": rate,
        "joint_acc": float(np.where(sent, 1.0, local).mean()),
        "random_joint_acc": float((rate + (1 - rate) * local).mean()),
        "oracle_joint_acc": float((local.sum() + min(int(sent.sum()), fails)) / len(measure)),
    }


def requests_by_kind(rows: list[dict], scores: bool = False) -> list[str]:
    """The requests among evaluate() items, how many the model would solve, how P(help) ranks
    them, and a table per kind (with `scores`, every item's P(help), * where it would fail)."""
    requests = [r for r in rows if r["help"]]
    solvable = sum(not r["would_fail"] for r in requests)
    fail_auroc = auroc([r["p_help"] for r in requests], [r["would_fail"] for r in requests])
    out = [f"requests: {len(requests)} of {len(rows)} items, {solvable} of them locally "
           f"solvable; AUROC of P(help) against local failure among them: {fail_auroc}",
           "| kind | items | greedy asks | would fail | mean P(help) |",
           "|---|---|---|---|---|"]  # fmt: skip
    for level in sorted({r["level"] or "all" for r in rows}):
        group = [r for r in rows if (r["level"] or "all") == level]
        line = (f"| {level} | {len(group)} | {sum(r['help'] for r in group)} | "
                f"{sum(r['would_fail'] for r in group)} | "
                f"{np.mean([r['p_help'] for r in group]):.3f} |")  # fmt: skip
        if scores:
            line += " " + " ".join(f"{r['p_help']:.2f}{'*' * r['would_fail']}" for r in group)
        out.append(line)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", type=Path, help="default: the learner's warm-up version")
    parser.add_argument("--learner", default="default")
    parser.add_argument("--task", default="math", help="math, math-easy, code-easy, FILE.jsonl")
    parser.add_argument("--items", type=int, default=300, help="calibration items")
    parser.add_argument("--max-tokens", type=int, default=96)
    args = parser.parse_args()
    adapter = args.adapter or warmup_version(args.learner)
    calib_items, measure_items = splits(args.task, args.items)
    calib = measured(adapter, args.task, calib_items, args.max_tokens, "")
    measure = measured(adapter, args.task, measure_items, args.max_tokens, "measure-")
    record = calibration_record({"n": len(calib), "items": calib}, None, args.task)
    asked = sum(r["help"] for r in measure) / len(measure)
    print(f"adapter {adapter}: asks on {len(record['asked_scores'])}/{len(calib)} calibration "
          f"items, {asked:.2f} of {len(measure)} measurement items")  # fmt: skip
    print("\n".join(requests_by_kind(measure)))
    print("| tau | threshold | offload rate | joint acc | random suppr. | gain | oracle gain |")
    print("|---|---|---|---|---|---|---|")
    for tau in TAUS:
        thr = threshold(record["asked_scores"], record["n_items"], tau)
        m = offload_metrics(measure, thr)
        gain = m["joint_acc"] - m["random_joint_acc"]
        best = m["oracle_joint_acc"] - m["random_joint_acc"]
        print(f"| {tau} | {thr:.3f} | {m['offload_rate']:.3f} | {m['joint_acc']:.3f} | "
              f"{m['random_joint_acc']:.3f} | {gain:+.3f} | {best:+.3f} |")  # fmt: skip
    print("\nOffloading by P(help) over all items, asked or not (issue 12 rules this out):")
    print("| tau | threshold | offload rate | joint acc | random offloading | gain | oracle gain |")
    print("|---|---|---|---|---|---|---|")
    for tau in TAUS:
        m = by_all_scores(calib, measure, tau)
        gain = m["joint_acc"] - m["random_joint_acc"]
        best = m["oracle_joint_acc"] - m["random_joint_acc"]
        print(f"| {tau} | {m['threshold']:.3f} | {m['offload_rate']:.3f} | {m['joint_acc']:.3f} | "
              f"{m['random_joint_acc']:.3f} | {gain:+.3f} | {best:+.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
