"""A budget knob at answer time that needs no retraining (the paper leaves it as future work).

    edgecl calibrate --task math                 # measure on train items, store per version
    edgecl eval --task math --budget 0.2         # offloads at tau 0.2 on the eval split
    edgecl chat --budget 0.2                     # chat applies the same threshold

Calibration measures, on a calibration split, each item's P(help): the largest probability,
over the ends of its own think steps, that the model stops thinking and asks for help there
(edgecl.evaluate.help_probabilities; SCORE names that measure). For a tau, the
threshold lets through the tau x N most confident help requests of N items; a request below
it is answered locally instead. The threshold only ever suppresses: a query the model did not
ask to send never goes to the cloud. It is stored with the adapter version it was measured on.
"""

from __future__ import annotations

import math

import numpy as np

# The P(help) a calibration was measured with; a stored one with another score is not used. The
# first score, P(trigger) at `<answer>`, was near 1 on every request (a request stops thinking
# before `<answer>`), so it could not rank them.
SCORE = "step-end"


def threshold(asked_scores: list[float], n_items: int, tau: float) -> float:
    """The P(help) a request needs so that about tau x n_items of the requests pass."""
    k = int(math.floor(tau * n_items + 1e-9))
    ranked = sorted(asked_scores, reverse=True)
    if k >= len(ranked):
        return 0.0  # every request passes: the model asks less than tau by itself
    if k == 0:
        return math.inf
    return (ranked[k - 1] + ranked[k]) / 2


def threshold_summary(asked_scores: list[float], n_items: int) -> list[str]:
    """What `edgecl calibrate` tells the user: each tau's threshold, or why there is none."""
    if not asked_scores:
        return ["it never asks for help here, so chat and eval answer every query locally at "
                "any budget (the threshold only holds requests back)"]  # fmt: skip
    lines = []
    for tau in (0.1, 0.2, 0.3, 0.4, 0.5):
        thr = threshold(asked_scores, n_items, tau)
        if math.isinf(thr):
            lines.append(f"tau {tau:.1f}: no help request goes out ({n_items} items are too few)")
        elif tau * n_items + 1e-9 >= len(asked_scores):
            rate = len(asked_scores) / n_items
            lines.append(f"tau {tau:.1f}: every help request goes out (it asks on {rate:.2f})")
        else:
            lines.append(f"tau {tau:.1f}: a help request goes out at P(help) >= {thr:.3f}")
    return lines


def calibration_record(report: dict, version: int | None, task: str) -> dict:
    """What `edgecl calibrate` stores from an evaluate() report on the calibration split."""
    return {
        "version": version,
        "score": SCORE,
        "task": task,
        "n_items": report["n"],
        "asked_scores": [r["p_help"] for r in report["items"] if r["help"]],
    }


def offload_metrics(items: list[dict], thr: float, seed: int = 0) -> dict:
    """Offload rate and joint accuracy of evaluate() items when requests below `thr` are
    answered locally; and the same for suppressing a random subset of requests to the same
    offload rate (the expectation, computed exactly), paired on the same items.

    An item's joint outcome: offloaded -> its composed answer's correctness; not offloaded ->
    its local answer's (for a request: the answer it gives when made to answer). The oracle
    keeps the same number of requests, chosen knowing each item's outcomes: the upper bound of
    any score's gain over random suppression.
    """
    local_ok = np.array([not r["would_fail"] for r in items], dtype=float)
    cloud_ok = np.array([r["correct"] for r in items], dtype=float)
    asked = np.array([r["help"] for r in items], dtype=bool)
    passed = asked & (np.array([r["p_help"] for r in items]) >= thr)
    n = len(items)
    joint = np.where(passed, cloud_ok, local_ok).mean()
    # Random suppression keeping the same number of requests: each request passes with
    # probability k / n_asked, so the expected joint accuracy is a weighted mean.
    k, n_asked = int(passed.sum()), int(asked.sum())
    keep = k / n_asked if n_asked else 0.0
    by_random = (
        np.where(asked, keep * cloud_ok + (1 - keep) * local_ok, local_ok).mean() if n else 0.0
    )
    # The best any ranking of the requests can do with k passing: the k that gain most.
    gains = np.sort((cloud_ok - local_ok)[asked])[::-1]
    best = (local_ok.sum() + gains[:k].sum()) / n if n else 0.0
    return {
        "threshold": thr,
        "offload_rate": float(passed.mean()) if n else 0.0,
        "joint_acc": float(joint) if n else 0.0,
        "random_joint_acc": float(by_random),
        "oracle_joint_acc": float(best),
        "asked_rate": float(asked.mean()) if n else 0.0,
    }
