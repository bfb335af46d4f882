"""Evaluation on a task's fixed eval split: greedy decoding, one response per item.

    edgecl eval --task math --run my-run

The same rollout as training (edgecl.rollout.collect) with G=1 and temperature 0: an item whose
response asks for help gets one cloud call, composed and scored like a training sample.

Metrics (all over every evaluated item):
- local_acc: answered locally (no help request), well formatted and correct;
- joint_acc: reward 1 on the composed response (local answers plus cloud-composed ones);
- cloud_ratio: items whose response requested help (whatever its format);
- format_violation_rate: the local response is not in the protocol (a help request is judged
  on its local part, as in eq. 14);
- mean_tokens: local response tokens per item; n_cloud_calls: real cloud calls made.
"""

from __future__ import annotations

from typing import Any

from edgecl.core.protocol import parse_response
from edgecl.errors import EdgeclError
from edgecl.rollout import collect
from edgecl.store import Store
from edgecl.tasks.base import MAX_STEPS

# Report keys that have their own column in the `evals` table; every other key goes to `details`.
COLUMNS = ("n", "local_acc", "joint_acc", "cloud_ratio", "format_violation_rate", "mean_tokens")
BATCH_SIZE = 8  # prompts per sample() call: bounds the KV cache on small machines


def evaluate(
    model,
    task,
    cloud,
    limit: int | None = None,
    max_tokens: int = 128,
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
) -> dict[str, Any]:
    """Greedy responses to the first `limit` eval items of `task` (all when None); a report.

    The report holds the COLUMNS metrics plus n_cloud_calls, n_cloud_failed, cloud, simulated,
    max_tokens, seed and `items`: per item its id, help, correct, local_correct,
    well_formatted, violation, truncated, tokens and the local response text.
    """
    if limit is not None and limit < 1:
        raise EdgeclError(f"--limit {limit}: give at least 1 item")
    if batch_size < 1:
        raise EdgeclError(f"batch size {batch_size}: give at least 1")
    items = task.items("eval")[:limit]
    if not items:
        raise EdgeclError(f'task {task.name!r} has no eval items: add rows with "split": "eval"')
    rows: list[dict] = []
    calls: list[dict] = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        rollout = collect(model, task, chunk, cloud, 1, max_tokens, 0.0, seed=seed)
        calls.extend(rollout.cloud_calls)
        for item, completion, score, correct in zip(
            chunk, rollout.completions, rollout.scores, rollout.correct
        ):
            local = parse_response(
                completion.text, task.kind, MAX_STEPS[task.kind], truncated=completion.truncated
            )
            rows.append(
                {
                    "id": item.id,
                    "help": score.help,
                    "correct": correct,
                    "local_correct": correct and not score.help,
                    "well_formatted": local.well_formatted,
                    "violation": local.violation,
                    "truncated": completion.truncated,
                    "tokens": len(completion.token_ids),
                    "response": completion.text,
                }
            )
    n = len(rows)
    return {
        "n": n,
        "local_acc": sum(r["local_correct"] for r in rows) / n,
        "joint_acc": sum(r["correct"] for r in rows) / n,
        "cloud_ratio": sum(r["help"] for r in rows) / n,
        "format_violation_rate": sum(not r["well_formatted"] for r in rows) / n,
        "mean_tokens": sum(r["tokens"] for r in rows) / n,
        "n_cloud_calls": len(calls),
        "n_cloud_failed": sum(not c["ok"] for c in calls),
        "cloud": cloud.name,
        "simulated": bool(getattr(cloud, "simulated", False)),
        "max_tokens": max_tokens,
        "seed": seed,
        "items": rows,
        "cloud_calls": calls,  # every call, as training logs them in the cloud_calls table
    }


def record(
    store: Store,
    run: str | None,
    adapter: str | None,
    task_name: str,
    split: str,
    report: dict[str, Any],
) -> int:
    """Store `report` as one `evals` row (adapter: the directory measured, None for the base).

    Returns the row id; `report_from_row(store.evals()[-1])` gives the report back.
    """
    row = {"run": run, "adapter": adapter, "task": task_name, "split": split}
    row.update({k: report[k] for k in COLUMNS})
    row["details"] = {k: v for k, v in report.items() if k not in COLUMNS}
    return store.record_eval(row)


def report_from_row(row: dict) -> dict[str, Any]:
    """The report `record` stored in an `evals` row (its column metrics plus its details)."""
    return {**{k: row[k] for k in COLUMNS}, **(row["details"] or {})}
