"""The answer-time budget knob: thresholds from calibration scores, offload metrics against
random suppression, and calibrate -> eval --budget -> chat on the tiny model.

.venv/bin/python -m pytest tests/test_calibration.py -q
"""

from __future__ import annotations

import json
import math
import os

import pytest

from conftest import run_cli
from edgecl import learner as learners
from edgecl.calibration import offload_metrics, threshold, threshold_summary
from edgecl.store import Store


def test_threshold_lets_through_tau_of_the_items():
    scores = [0.9, 0.8, 0.3, 0.2]  # the requests among 10 items
    assert threshold(scores, 10, 0.2) == pytest.approx(0.55)  # the 2 surest pass
    assert threshold(scores, 10, 0.0) == math.inf  # none
    assert threshold(scores, 10, 0.5) == 0.0  # the model asks less than tau: all pass
    assert sum(s >= threshold(scores, 10, 0.3) for s in scores) == 3


def test_offload_metrics_by_hand():
    items = [  # help, P(help), composed correct, local would fail
        {"help": True, "p_help": 0.9, "correct": True, "would_fail": True},
        {"help": True, "p_help": 0.2, "correct": True, "would_fail": False},
        {"help": False, "p_help": 0.01, "correct": True, "would_fail": False},
        {"help": False, "p_help": 0.05, "correct": False, "would_fail": True},
    ]
    m = offload_metrics(items, 0.5)
    assert m["offload_rate"] == 0.25 and m["asked_rate"] == 0.5
    assert m["joint_acc"] == 0.75  # 1 (cloud) + 1 (local after suppression) + 1 + 0
    # random: half the requests pass: item 1 -> 0.5*1 + 0.5*0, item 2 -> 1
    assert m["random_joint_acc"] == pytest.approx((0.5 + 1 + 1 + 0) / 4)
    assert m["oracle_joint_acc"] == 0.75  # keeping item 1 (it gains 1; item 2 gains 0)
    low = offload_metrics(items, 0.1)  # both pass: the oracle keeps both too
    assert low["joint_acc"] == low["oracle_joint_acc"] == 0.75
    assert offload_metrics(items, 0.95)["oracle_joint_acc"] == 0.5  # none passes


@pytest.fixture
def asking_learner(tiny_mlx_dir, tmp_path):
    """A learner whose current version is a no-op adapter on the tiny model that always asks."""
    from edgecl.backends.base import LoraConfig
    from edgecl.backends.mlx_backend import MLXModel
    from edgecl.tasks.registry import get_task
    from tiny_model import make_protocol_tiny

    rows = [{"prompt": f"What is {i} + {i + 1}?", "answer": str(2 * i + 1), "difficulty": "hard"}
            for i in range(80)]  # fmt: skip
    task_file = tmp_path / "sums.jsonl"
    task_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    model_dir = make_protocol_tiny(
        tiny_mlx_dir, tmp_path / "ask", get_task(str(task_file)), steps=40
    )
    model = MLXModel.load(model_dir, "asking")
    model.attach_lora(LoraConfig(4, 8, -1))
    model.save_adapter(tmp_path / "noop")
    store = Store()
    me = learners.ensure(store, "default", "asking")
    learners.publish(store, me, tmp_path / "noop", "run", "r", 1)
    return model_dir, task_file


def test_calibrate_then_eval_at_a_budget(asking_learner):
    model_dir, task_file = asking_learner
    home = os.environ["EDGECL_HOME"]
    common = ["--task", str(task_file), "--model", str(model_dir), "--max-tokens", "40"]
    result = run_cli("calibrate", *common, "--items", "20", home=home)
    assert result.returncode == 0, result.stderr
    assert "tau 0.2: a help request goes out at P(help) >=" in result.stdout
    me = learners.load(Store(), "default")
    assert me.calibration["version"] == me.current and me.calibration["n_items"] == 20
    result = run_cli("eval", *common, "--budget", "0.2", "--json", home=home)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    c = out["calibrated"]
    assert out["n"] >= 10 and out["cloud_ratio"] >= 0.3  # the model asks often by itself
    assert c["offload_rate"] < out["cloud_ratio"]  # the threshold suppressed some
    assert c["tau"] == 0.2 and 0 <= c["random_joint_acc"] <= 1
    stale = run_cli("eval", *common, "--budget", "0.2", "--base", home=home)
    assert stale.returncode == 1 and "edgecl calibrate" in stale.stderr


def test_calibrate_says_when_a_budget_cannot_be_reached():
    lines = threshold_summary([0.9, 0.7, 0.6], 10)  # asks on 0.3 of the items
    assert lines[0] == "tau 0.1: a help request goes out at P(help) >= 0.800"
    assert lines[3] == "tau 0.4: every help request goes out (it asks on 0.30)"
    assert "never asks" in threshold_summary([], 10)[0]
    assert (
        threshold_summary([0.9], 5)[0] == "tau 0.1: no help request goes out (5 items are too few)"
    )
