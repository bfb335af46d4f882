"""The routing baselines (edgecl.core.routing, edgecl.routing): naive-router, router and
cloud-only, by hand and through `edgecl eval --router` on the tiny model.

.venv/bin/python -m pytest tests/test_routing.py -q
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from test_eval import QUESTIONS, ScriptedModel

from conftest import run_cli
from edgecl.cloud import make_cloud
from edgecl.core.protocol import format_help_request, format_response
from edgecl.core.routing import (
    LogisticRouter,
    fit_router,
    naive_offload,
    rate_threshold,
    routed_metrics,
)
from edgecl.evaluate import auroc
from edgecl.routing import _prompts, evaluate_routed, prompt_features
from edgecl.tasks.registry import get_task


def test_naive_offload_sends_exactly_a_tau_fraction_at_random():
    masks = [naive_offload(10, 0.3, seed) for seed in range(20)]
    assert all(m.sum() == 3 for m in masks)
    assert len({tuple(m) for m in masks}) > 10  # random, not the first three
    assert naive_offload(10, 0.3, 4).tolist() == naive_offload(10, 0.3, 4).tolist()  # seeded
    assert naive_offload(5, 0.0).sum() == 0 and naive_offload(5, 1.0).all()


def test_rate_threshold_and_metrics_by_hand():
    scores = np.array([0.9, 0.1, 0.6, 0.4, 0.8])
    assert rate_threshold(scores, 0.4) == 0.8  # the 2 highest of 5
    assert rate_threshold(scores, 0.0) == np.inf
    local_ok = [True, True, False, False, True]
    cloud_ok = [True, False, True, True, False]
    offload = [False, False, True, False, True]
    # kept: items 0, 1, 3 -> local right 2; offloaded: 2 (cloud right), 4 (cloud wrong).
    assert routed_metrics(local_ok, cloud_ok, offload) == {
        "n": 5, "local_acc": 2 / 5, "local_subset_acc": 2 / 3, "joint_acc": 3 / 5,
        "cloud_ratio": 2 / 5,
    }  # fmt: skip
    assert routed_metrics([True], [True], [True])["local_subset_acc"] is None


def test_the_classifier_learns_a_separable_signal_and_calibrates_to_tau():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    fails = x[:, 2] + 0.5 * x[:, 4] > 0.3  # the label depends on two features
    router = fit_router(x[:150], fails[:150])
    assert auroc(router.scores(x[150:]).tolist(), fails[150:].tolist()) > 0.95
    router.calibrate(x[150:], 0.2)
    assert router.offload(x[150:]).sum() == 10  # 0.2 x 50
    again = LogisticRouter.from_dict(json.loads(json.dumps(router.to_dict())))
    assert again.offload(x).tolist() == router.offload(x).tolist()


@pytest.fixture
def task_file(tmp_path):
    path = tmp_path / "sums.jsonl"
    rows = [{"prompt": q, "answer": a, "split": "eval"} for q, a in QUESTIONS]
    rows += [{"prompt": f"How much is {i} plus {i + 1}?", "answer": str(2 * i + 1),
              "split": "train"} for i in range(12)]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_routed_eval_with_known_local_answers(task_file, edgecl_home):
    """Right local answers on 3 of the 6 questions (0, 2, 4); the reference cloud is always
    right; one local answer is a help request, counted as its forced answer (wrong here)."""
    answers = {}
    for k, (q, a) in enumerate(QUESTIONS):
        right = k % 2 == 0
        text = format_response(["add"], f"\\boxed{{{a if right else 99}}}")
        answers[q] = (format_help_request(["hmm"]) if k == 5 else text, False)
    task = get_task(str(task_file))
    cloud = make_cloud("reference", task=task)
    only = evaluate_routed(ScriptedModel(answers), task, cloud, "cloud-only", 1.0)
    assert (only["cloud_ratio"], only["joint_acc"], only["local_acc"]) == (1.0, 1.0, 0.0)
    assert only["n_cloud_calls"] == 6
    naive = evaluate_routed(ScriptedModel(answers), task, cloud, "naive-router", 0.5, seed=1)
    offload = np.array([r["offload"] for r in naive["items"]])
    local_ok = np.array([r["local_ok"] for r in naive["items"]])
    assert local_ok.tolist() == [True, False, True, False, True, False]
    assert offload.sum() == 3 and naive["n_cloud_calls"] == 3
    assert naive["joint_acc"] == pytest.approx((3 + (local_ok & ~offload).sum()) / 6)
    assert naive["local_acc"] == pytest.approx((local_ok & ~offload).sum() / 6)


def test_cli_router_with_nothing_to_learn_says_so(tiny_mlx_dir, task_file, edgecl_home):
    args = ("eval", "--task", str(task_file), "--model", str(tiny_mlx_dir), "--max-tokens", "8")
    result = run_cli(*args, "--router", "router", "--budget", "0.5", home=edgecl_home)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "fails all 12 train items: a router has nothing to learn" in result.stderr
    shown = run_cli(*args, "--router", "naive-router", "--budget", "0.5", home=edgecl_home)
    assert shown.returncode == 0 and "accuracy on the items kept local" in shown.stdout
    missing = run_cli(*args, "--router", "naive-router", home=edgecl_home)
    assert missing.returncode == 1
    assert "--router naive-router offloads a tau fraction: give --budget" in missing.stderr


def test_router_is_fitted_on_real_features_once_and_decides(
    tiny_mlx_dir, task_file, edgecl_home, monkeypatch
):
    """The random tiny model fails everything, so a capability signal is injected: it
    'fails' the items whose first number is odd. The classifier is fitted on the model's
    real hidden states, calibrated, stored, reused, and decides the eval items."""
    import edgecl.routing as routing
    from edgecl.backends.mlx_backend import MLXModel

    real = routing.evaluate

    def with_signal(model, task, cloud, limit, *args, **kwargs):
        report = real(model, task, cloud, limit, *args, **kwargs)
        for row, item in zip(report["items"], task.items(kwargs["split"])):
            row["would_fail"] = int(re.search(r"\d+", item.question)[0]) % 2 == 1
        return report

    monkeypatch.setattr(routing, "evaluate", with_signal)
    model, task = MLXModel.load(tiny_mlx_dir), get_task(str(task_file))
    cloud = make_cloud("reference", task=task)
    out = evaluate_routed(model, task, cloud, "router", 0.5, max_tokens=8)
    (stored,) = list((edgecl_home / "routers").glob("*.json"))
    router = LogisticRouter.from_dict(json.loads(stored.read_text()))
    calibration = prompt_features(model, _prompts(model, task, task.items("train")[8:]))
    assert router.offload(calibration).sum() == 2  # 0.5 of the 4 calibration items
    features = prompt_features(model, _prompts(model, task, task.items("eval")))
    assert [r["offload"] for r in out["items"]] == router.offload(features).tolist()
    assert out["n_cloud_calls"] == sum(r["offload"] for r in out["items"])
    again = evaluate_routed(model, task, cloud, "router", 0.5, max_tokens=8)
    assert again["items"] == out["items"] and list(stored.parent.iterdir()) == [stored]


def test_features_pool_only_what_follows_the_shared_prefix(tiny_mlx_dir):
    from edgecl.backends.mlx_backend import MLXModel

    model = MLXModel.load(tiny_mlx_dir)
    a, b = [5, 6, 7, 8, 9], [5, 6, 7, 8, 10, 11]
    both = prompt_features(model, [a, b])
    assert both.shape == (2, model.config["hidden_size"])
    # Only the tails [9] and [10, 11] are pooled, each in its full context.
    full = model.model.model(__import__("mlx.core").core.array([b]))[0]
    assert np.allclose(both[1], np.array(full[4:]).mean(axis=0), atol=1e-5)
