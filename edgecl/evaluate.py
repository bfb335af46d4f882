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
- mean_tokens: local response tokens per item; n_cloud_calls: real cloud calls made;
- levels: the same per item level (`Item.difficulty`), plus help and local accuracy;
- help_auroc: how well asking predicts local failure. Each item's local outcome is its own
  answer, or, where it asked, the answer it gives when made to answer (its response up to
  `<answer>`, then the answer's opening, decoded greedily). The score is P(help): the largest
  probability, over the ends of the item's own think steps, that the model stops thinking there
  and gives the trigger as its answer (help_branches). help_auroc_greedy scores
  the greedy decision itself (0 or 1). 0.5 is chance, 1 a perfect split; None with one class.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from edgecl.core.protocol import TRIGGER, parse_response
from edgecl.errors import EdgeclError
from edgecl.rollout import answer_of, collect
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
    split: str = "eval",
) -> dict[str, Any]:
    """Greedy responses to the first `limit` items of `task`'s `split` (all when None).

    The report holds the COLUMNS metrics plus n_cloud_calls, n_cloud_failed, cloud, simulated,
    max_tokens, seed and `items`: per item its id, help, correct, local_correct,
    well_formatted, violation, truncated, tokens and the local response text.
    """
    if limit is not None and limit < 1:
        raise EdgeclError(f"--limit {limit}: give at least 1 item")
    if batch_size < 1:
        raise EdgeclError(f"batch size {batch_size}: give at least 1")
    splits = getattr(task, "splits", ("train", "eval"))
    if split not in splits:
        raise EdgeclError(f"task {task.name!r} has no split {split!r}: use {', '.join(splits)}")
    items = task.items(split)[:limit]
    if not items:
        raise EdgeclError(f'task {task.name!r} has no eval items: add rows with "split": "eval"')
    rows: list[dict] = []
    calls: list[dict] = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        rollout = collect(model, task, chunk, cloud, 1, max_tokens, 0.0, seed=seed)
        calls.extend(rollout.cloud_calls)
        p_help = help_probabilities(model, rollout.prompt_ids, rollout.completions)
        forced = forced_local(model, task, chunk, rollout, max_tokens)
        for k, (item, completion, score, correct) in enumerate(
            zip(chunk, rollout.completions, rollout.scores, rollout.correct)
        ):
            local = parse_response(
                completion.text, task.kind, MAX_STEPS[task.kind], truncated=completion.truncated
            )
            rows.append(
                {
                    "id": item.id,
                    "help": score.help,
                    "correct": correct,
                    "level": item.difficulty,
                    "local_correct": correct and not score.help,
                    "p_help": p_help[k],
                    "would_fail": not (forced[k] if score.help else correct),
                    "well_formatted": local.well_formatted,
                    "violation": local.violation,
                    "truncated": completion.truncated,
                    "tokens": len(completion.token_ids),
                    "response": completion.text,
                }
            )
    n = len(rows)
    fail = [r["would_fail"] for r in rows]
    return {
        "levels": _levels(rows),
        "help_auroc": auroc([r["p_help"] for r in rows], fail),
        "help_auroc_greedy": auroc([float(r["help"]) for r in rows], fail),
        "n": n,
        "local_acc": sum(r["local_correct"] for r in rows) / n,
        "joint_acc": sum(r["correct"] for r in rows) / n,
        "cloud_ratio": sum(r["help"] for r in rows) / n,
        "format_violation_rate": sum(not r["well_formatted"] for r in rows) / n,
        "mean_tokens": sum(r["tokens"] for r in rows) / n,
        "n_cloud_calls": len(calls),
        "n_cloud_failed": sum(not c["ok"] for c in calls),
        "cloud": getattr(cloud, "name", None),  # None: no cloud (the routing baselines)
        "simulated": bool(getattr(cloud, "simulated", False)),
        "max_tokens": max_tokens,
        "seed": seed,
        "items": rows,
        "cloud_calls": calls,  # every call, as training logs them in the cloud_calls table
    }


def _levels(rows: list[dict]) -> dict[str, dict]:
    groups = defaultdict(list)
    for r in rows:
        groups[r["level"] or "all"].append(r)
    return {
        level: {
            "n": len(g),
            "local_acc": sum(r["local_correct"] for r in g) / len(g),
            "help": sum(r["help"] for r in g) / len(g),
            "format": sum(r["well_formatted"] for r in g) / len(g),
            "would_fail": sum(r["would_fail"] for r in g) / len(g),
        }
        for level, g in groups.items()
    }


def auroc(scores: list[float], positives: list[bool]) -> float | None:
    """P(score of a positive > score of a negative), ties counting half (Mann-Whitney U)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(positives, dtype=bool)
    pos, neg = s[y], s[~y]
    if not len(pos) or not len(neg):
        return None
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def _answer_prefix(text: str) -> str | None:
    """The response up to and including its first `<answer>`; None if it has none."""
    at = text.find("<answer>")
    return None if at < 0 else text[: at + len("<answer>")]


HELP_BRANCH = "</think>\n<answer>" + TRIGGER  # a help request from the end of a step on


def help_branches(encode, response: str) -> list[tuple[list[int], list[int]]]:
    """Where the response could have turned into a help request, as (head, branch) ids: the
    response up to the end of each of its think steps, and the ids from there that close the
    thinking and give the trigger as the answer. The warm-up teaches a help request as a step
    then the trigger, so this is where a model decides to ask: measured at `<answer>` instead,
    P(help) is near 1 on every request that has already stopped thinking. Empty when the
    response has no step before `</think>`."""
    end = response.find("</think>")
    think = response[: end if end >= 0 else len(response)]
    out, at = [], 0
    for line in think.splitlines(keepends=True):
        at += len(line)
        if not (line.startswith("Step") and line.endswith("\n")):
            continue
        head, full = encode(response[:at]), encode(response[:at] + HELP_BRANCH)
        if full[: len(head)] != head:  # the tokenizer merged across the boundary: one token back
            head = head[:-1]
            if full[: len(head)] != head:
                continue
        out.append((head, full[len(head) :]))
    return out


def help_probabilities(model, prompt_ids: list, completions: list) -> list[float]:
    """P(help) per completion: the largest probability, over its step ends (help_branches),
    that the model stops there and asks. A response with no step scores 1 if it asked for
    help (it did, by the parser) else 0."""
    out = [float("nan")] * len(completions)
    encode = lambda text: model.tokenizer.encode(text, add_special_tokens=False)  # noqa: E731
    contexts, branches, where = [], [], []
    for k, c in enumerate(completions):
        splits = help_branches(encode, c.text)
        if not splits:
            out[k] = float(c.text.rstrip().endswith(TRIGGER))
        for head, branch in splits:
            contexts.append(list(prompt_ids[c.prompt_index]) + head)
            branches.append(branch)
            where.append(k)
    for k, lp in zip(where, model.sequence_logprobs(contexts, branches) if contexts else []):
        p = math.exp(float(lp.sum()))  # in float64: float32 underflows to 0 near 1e-38
        out[k] = p if math.isnan(out[k]) else max(out[k], p)
    return out


def forced_local(model, task, items: list, rollout, max_tokens: int) -> list[bool]:
    """Per item of a G=1 rollout: whether the local answer it gives when made to answer (its
    own response up to `<answer>`, then the answer's opening) is right. Only items that asked
    are decoded; the others are False here (their own answer counts)."""
    opening = "```python\n" if task.kind == "code" else "\\boxed{"
    out = [False] * len(items)
    asked = [
        k
        for k, s in enumerate(rollout.scores)
        if s.help and _answer_prefix(rollout.completions[k].text)
    ]
    if not asked:
        return out
    prefixes = [_answer_prefix(rollout.completions[k].text) + opening for k in asked]
    contexts = [
        list(rollout.prompt_ids[k]) + model.tokenizer.encode(p, add_special_tokens=False)
        for k, p in zip(asked, prefixes)
    ]
    outs = model.sample(contexts, 1, max_tokens // 2, 0.0, stop=("</answer>",))
    for k, prefix, o in zip(asked, prefixes, outs):
        parsed = parse_response(prefix + o.text, task.kind, MAX_STEPS[task.kind])
        answer = answer_of(parsed, task.kind)
        out[k] = answer is not None and task.verify(items[k], answer)
    return out


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
