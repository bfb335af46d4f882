"""The evidence of benchmarks/budget.py: training ratios, mixed groups, evals and retention.

    python benchmarks/budget.py report

Evals (greedy, 96 tokens, the reference cloud) of the warm-up adapter ("before") and each run's
final adapter ("after"), on the math eval split and on the same problems in unseen phrasings,
are stored in the `evals` table and cached beside the runs, so a second report is quick.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from edgecl import paths
from edgecl.backends.mlx_backend import MLXModel
from edgecl.cloud import make_cloud
from edgecl.config import TrainConfig
from edgecl.evaluate import evaluate, record
from edgecl.models.registry import resolve_model
from edgecl.retention import base_answers, mean_loglik, retention
from edgecl.store import Store
from edgecl.tasks.registry import get_task
from edgecl.train import run_dir
from edgecl.warmup import stored_warmup

TAIL = 30  # steps over which the training cloud ratio is averaged
BARS = " .:-=+*#%@"


def sparkline(values: list[float], top: float = 1.0) -> str:
    """One character per value, from ' ' (0) to '@' (top or more)."""
    scale = len(BARS) - 1
    return "".join(BARS[min(scale, max(0, round(v / top * scale)))] for v in values)


def training(store: Store, name: str, group: int) -> dict:
    steps = store.steps(name)
    j_c = [s["j_c"] for s in steps]
    lam = [s["lambda_after"] for s in steps]
    groups = defaultdict(list)
    for s in store.samples(name):
        groups[(s["step"], s["prompt_index"])].append((s["item_id"], s["help"]))
    mixed = defaultdict(lambda: [0, 0])  # level -> [mixed groups, groups]
    for (step, _), rows in groups.items():
        if step <= len(steps) - TAIL:
            continue
        level = rows[0][0].split("/")[1]
        mixed[level][0] += 0 < sum(h for _, h in rows) < group
        mixed[level][1] += 1
    return {
        "steps": len(steps),
        "tau": steps[-1]["tau"] if steps else None,
        "j_c_last": float(np.mean(j_c[-TAIL:])) if steps else None,
        "lambda_every_10": [round(x, 3) for x in lam[9::10]],
        "ratio_every_5": [round(float(np.mean(j_c[k : k + 5])), 3) for k in range(0, len(j_c), 5)],
        "mixed_last": {k: f"{m}/{n}" for k, (m, n) in sorted(mixed.items())},
        "seconds_per_step": float(np.median([s["seconds"] for s in steps])) if steps else None,
    }


def evals(adapter: Path, config: TrainConfig, label: str) -> dict:
    """Eval and unseen splits, plus retention, of one adapter (cached in a file per label, so
    reports of several runs can run at once)."""
    cached = paths.data_dir() / "budget-report" / f"{label}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    entry = resolve_model(config.model)
    model = MLXModel.load(entry.mlx_dir, entry.name)
    pairs = base_answers(model, "held_out")
    base_ll = mean_loglik(model, pairs)
    model.load_adapter(adapter)
    task = get_task("math", config.verifier, config.seed)
    cloud = make_cloud("reference", task=task, seed=config.seed)
    out = {"adapter": str(adapter)}
    store = Store()
    for split in ("eval", "unseen"):
        report = evaluate(
            model, task, cloud, None, config.max_tokens, seed=config.seed, split=split
        )
        record(store, label, str(adapter), "math", split, report)
        out[split] = {
            k: report[k]
            for k in ("local_acc", "joint_acc", "cloud_ratio", "format_violation_rate", "levels")
        }
        out[split]["help_auroc"] = report["help_auroc"]
        out[split]["help_auroc_greedy"] = report["help_auroc_greedy"]
    store.close()
    kept = retention(model, pairs, base_ll)
    out["retention"] = {k: v for k, v in kept.items() if not k.startswith("examples")}
    out["retention"]["examples"] = kept["examples_plain"] + kept["examples_protocol"]
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(out))
    tmp.replace(cached)
    return out


def by_rank(store: Store, label: str) -> dict:
    """Per split of the stored evals of `label`: the largest P(help) (greedy asks only above
    about 0.5) and, for the items with the top tau share of P(help), the share the model
    fails: what offloading by a P(help) threshold at answer time would send."""
    out = {}
    for row in store.evals(label):
        items = (row["details"] or {}).get("items") or []
        if not items:
            continue
        p = np.array([r["p_help"] for r in items])
        fail = np.array([r["would_fail"] for r in items], dtype=float)
        order = np.argsort(-p)
        out[row["split"]] = {
            "p_help_max": round(float(p.max()), 3),
            "fails": round(float(fail.mean()), 3),
            "top_fail": {tau: round(float(fail[order[: int(tau * len(p))]].mean()), 3)
                         for tau in (0.1, 0.2, 0.3)},
        }  # fmt: skip
    return out


def report(taus, lambda_init=None, lr=None, kl=None, rollouts="mlx") -> dict:
    from budget import run_name

    store = Store()
    results = {}
    for tau in taus:
        name = run_name(tau, lambda_init, lr, kl, rollouts)
        row = store.get_run(name)
        if row is None:
            results[name] = "not trained yet: python benchmarks/budget.py train"
            continue
        config = TrainConfig.from_dict(row["config"])
        entry = resolve_model(config.model)
        fingerprint = MLXModel.load(entry.mlx_dir, entry.name).fingerprint
        warm = stored_warmup(fingerprint, config)
        results[name] = {
            "status": row["status"],
            "warmup": {k: row["warmup"].get(k) for k in ("ability", "probe_after")},
            "training": training(store, name, config.group_size),
            "before": evals(warm, config, "warmup"),
            "before_by_rank": by_rank(store, "warmup"),
        }
        checkpoint = run_dir(name) / "adapter"
        if checkpoint.is_dir():  # the run's last checkpoint, finished or not
            label = f"{name}@{results[name]['training']['steps']}"
            results[name]["after"] = evals(checkpoint, config, label)
            results[name]["after_by_rank"] = by_rank(store, label)
        t = results[name]["training"]
        print(f"{name}: ratio |{sparkline(t['ratio_every_5'])}| tau {tau}", flush=True)
    store.close()
    return results
