"""Evaluate the routing baselines (edgecl.core.routing) with the local model and a cloud.

    edgecl eval --task math --run my-edge-run --router naive-router --budget 0.3
    edgecl eval --task math --run my-edge-run --router router --budget 0.3
    edgecl eval --task math --router cloud-only

The local model answers every item with the help trigger out of play: where it asks anyway,
its answer is the one it gives when made to answer (edgecl.evaluate.forced_local). The router
picks the items that go to the cloud instead, and the cloud answers those from the prompt
alone. The trained router's classifier sees the mean hidden state of the question's tokens
(after the prompt prefix all items share), is fitted on `FIT` train items labelled by whether
the local model fails them, and calibrated to tau on the next `CALIBRATE` train items (a task
with fewer splits what it has 2:1); it is
stored per model, adapter, task and tau, so a later eval reuses it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from edgecl import paths
from edgecl.core.protocol import build_messages, parse_response
from edgecl.core.routing import (
    ROUTERS,
    LogisticRouter,
    fit_router,
    naive_offload,
    routed_metrics,
)
from edgecl.errors import EdgeclError
from edgecl.evaluate import evaluate
from edgecl.rollout import answer_of
from edgecl.tasks.base import MAX_STEPS, stable_hash

FIT, CALIBRATE = 96, 48
MIN_ITEMS = 12


def prompt_features(model, prompts: list[list[int]]) -> np.ndarray:
    """Per prompt: the mean final hidden state over its tokens after the common prefix."""
    import mlx.core as mx

    shared = 0
    while all(len(p) > shared + 1 for p in prompts) and len({p[shared] for p in prompts}) == 1:
        shared += 1
    rows = []
    for ids in prompts:  # one at a time: no padding to mask
        hidden = model.model.model(mx.array([ids]))[0, shared:]
        rows.append(np.array(hidden.astype(mx.float32).mean(axis=0)))
    return np.stack(rows)


def _prompts(model, task, items) -> list[list[int]]:
    return [model.chat_ids(build_messages(task.kind, it.question, it.choices)) for it in items]


def trained_router(model, task, adapter: str | None, tau: float, max_tokens: int, seed: int = 0):
    """The router for this model, adapter, task and tau: stored, or fitted and calibrated."""
    weights = Path(adapter, "adapters.safetensors") if adapter else None  # None: the base model
    adapter_hash = hashlib.sha256(weights.read_bytes()).hexdigest() if weights else ""
    key = [model.fingerprint, adapter_hash,
           task.name, tau, max_tokens, seed, FIT, CALIBRATE]  # fmt: skip
    path = paths.data_dir() / "routers" / f"{stable_hash(json.dumps(key))[:16]}.json"
    if path.is_file():
        return LogisticRouter.from_dict(json.loads(path.read_text()))
    items = task.items("train")[: FIT + CALIBRATE]
    if len(items) < MIN_ITEMS:
        raise EdgeclError(f"the router needs {MIN_ITEMS} train items; {task.name} has "
                          f"{len(items)}: use --router naive-router")  # fmt: skip
    report = evaluate(model, task, None, len(items), max_tokens, seed=seed, split="train")
    fails = np.array([r["would_fail"] for r in report["items"]])
    if fails.all() or not fails.any():
        raise EdgeclError(f"the local model {'fails' if fails.all() else 'solves'} all "
                          f"{len(fails)} train items: a router has nothing to learn; use "
                          "--router naive-router")  # fmt: skip
    x = prompt_features(model, _prompts(model, task, items))
    fit = len(items) * FIT // (FIT + CALIBRATE)  # a small task: the same 2:1 split
    router = fit_router(x[:fit], fails[:fit])
    router.calibrate(x[fit:], tau)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(router.to_dict()))
    return router


def evaluate_routed(
    model,
    task,
    cloud,
    router: str,
    tau: float,
    limit: int | None = None,
    max_tokens: int = 128,
    seed: int = 0,
    split: str = "eval",
    adapter: str | None = None,
) -> dict:
    """The routed report: edgecl.core.routing.routed_metrics plus the local model's format and
    length figures, the cloud calls and per item its id, offload, local and cloud outcome."""
    if router not in ROUTERS:
        raise EdgeclError(f"unknown router {router!r}: use one of {', '.join(ROUTERS)}")
    local = evaluate(model, task, None, limit, max_tokens, seed=seed, split=split)
    items = task.items(split)[: local["n"]]
    local_ok = np.array([not r["would_fail"] for r in local["items"]])
    if router == "cloud-only":
        offload = np.ones(len(items), dtype=bool)
    elif router == "naive-router":
        offload = naive_offload(len(items), tau, seed)
    else:
        chooser = trained_router(model, task, adapter, tau, max_tokens, seed)
        offload = chooser.offload(prompt_features(model, _prompts(model, task, items)))
    cloud_ok = np.zeros(len(items), dtype=bool)
    calls = []
    for k in np.flatnonzero(offload):
        item = items[k]
        reply = cloud.complete(build_messages(task.kind, item.question, item.choices), item)
        calls.append({"item_id": item.id, "cloud": cloud.name, **reply.log_fields()})
        if reply.ok:
            parsed = parse_response(reply.text, task.kind, MAX_STEPS[task.kind])
            answer = answer_of(parsed, task.kind)
            cloud_ok[k] = answer is not None and task.verify(item, answer)
    report = routed_metrics(local_ok, cloud_ok, offload)
    report.update(
        router=router, tau=tau, cloud=cloud.name, n_cloud_calls=len(calls),
        format_violation_rate=local["format_violation_rate"], mean_tokens=local["mean_tokens"],
        max_tokens=max_tokens, seed=seed, cloud_calls=calls,
        n_cloud_failed=sum(not c["ok"] for c in calls),
        items=[{"id": it.id, "offload": bool(o), "local_ok": bool(lo), "cloud_ok": bool(co)}
               for it, o, lo, co in zip(items, offload, local_ok, cloud_ok)],
    )  # fmt: skip
    return report
