"""A learner across runs: versions published atomically, use/rollback, and a second run that
continues the first's adapter and lambda.

.venv/bin/python -m pytest tests/test_learner.py -q
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mlx.core as mx
import numpy as np
import pytest

from edgecl import learner as learners
from edgecl.backends.mlx_backend import MLXModel
from edgecl.config import Phase, TrainConfig
from edgecl.errors import EdgeclError
from edgecl.store import Store
from edgecl.train import Trainer
from tiny_model import make_tiny_adapter


def adapter(tmp_path, seed: int):
    return make_tiny_adapter(tmp_path / f"a{seed}", seed=seed)


def test_publish_use_and_rollback(tmp_path):
    store = Store()
    learner = learners.ensure(store, "me", "tiny")
    one = learners.publish(store, learner, adapter(tmp_path, 1), "run", "r1", 5)
    two = learners.publish(store, learner, adapter(tmp_path, 2), "run", "r2", 7)
    assert (one, two) == (1, 2) and learners.load(store, "me").current == 2
    path = learners.version_path(learners.load(store, "me"))
    assert sorted(p.name for p in path.iterdir()) == sorted(learners.FILES)
    assert [v["run"] for v in store.versions("me")] == ["r1", "r2"]
    learners.use(store, learner, 1)
    assert learners.load(store, "me").current == 1
    assert learners.rollback(store, learners.load(store, "me")) == 2
    with pytest.raises(EdgeclError, match="no version 9"):
        learners.use(store, learner, 9)
    with pytest.raises(EdgeclError, match="learns on tiny"):
        learners.ensure(store, "me", "other-model")


def test_a_writer_killed_mid_publish_leaves_the_previous_version(tmp_path):
    store = Store()
    learner = learners.ensure(store, "me", "tiny")
    learners.publish(store, learner, adapter(tmp_path, 1), "run", "r1", 5)
    before = (learners.version_path(learner) / "adapters.safetensors").read_bytes()
    code = (
        "import sys; from pathlib import Path; from edgecl import learner as L; "
        "from edgecl.store import Store; s = Store(); me = L.load(s, 'me'); "
        "L.publish(s, me, Path(sys.argv[1]), 'run', 'r2', 9)"
    )
    env = {**os.environ, "EDGECL_KILL_AT": "publish-before-rename"}
    result = subprocess.run([sys.executable, "-c", code, str(adapter(tmp_path, 2))], env=env)
    assert result.returncode == -9  # killed at the fault point
    now = learners.load(Store(), "me")
    assert now.current == 1 and len(Store().versions("me")) == 1
    assert (learners.version_path(now) / "adapters.safetensors").read_bytes() == before
    assert list(learners.versions_dir("me").glob(".tmp-*"))  # the half-written copy is aside
    learners.publish(store, now, adapter(tmp_path, 3), "run", "r3", 1)  # and cleaned up later
    assert not list(learners.versions_dir("me").glob(".tmp-*"))
    assert learners.load(store, "me").current == 2


def config(task_file, name, **overrides) -> TrainConfig:
    settings = dict(
        run_name=name, phases=[Phase(str(task_file), "0.2", 2)], batch_size=2, group_size=2,
        max_tokens=16, lr=5e-3, dual_lr=0.5, lambda_init=0.5, seed=3, lora_rank=4,
        lora_alpha=8, warmup_steps=0,
    )  # fmt: skip
    return TrainConfig(**{**settings, **overrides})


@pytest.fixture
def task_file(tmp_path):
    path = tmp_path / "sums.jsonl"
    rows = [{"prompt": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(12)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_second_run_continues_the_first_runs_adapter_and_lambda(tiny_mlx_dir, task_file):
    first = Trainer(config(task_file, "first"), MLXModel.load(tiny_mlx_dir, "tiny"))
    first.prepare()
    first.run()
    learner = learners.load(Store(), "default")
    assert learner.current == 1 and learner.lam == first.state.lam
    assert learner.taus == {str(task_file): "0.2"}
    published = {k: np.array(v) for k, v in first.model.trainable().items()}

    second = Trainer(
        config(task_file, "second", lambda_init=0.0), MLXModel.load(tiny_mlx_dir, "tiny")
    )
    second.prepare()
    assert second.state.lam == first.state.lam  # carried across runs, not --lambda-init
    assert second.state.start == str(learners.version_path(learner))
    for name, value in second.model.trainable().items():
        assert np.array_equal(np.array(value), published[name]), name
    second.run()
    assert learners.load(Store(), "default").current == 2

    fresh = Trainer(config(task_file, "third", fresh=True), MLXModel.load(tiny_mlx_dir, "tiny"))
    fresh.prepare()
    assert fresh.state.start is None and fresh.state.lam == 0.5
    b = [v for k, v in fresh.model.trainable().items() if k.endswith("lora_b")]
    assert all(float(mx.abs(x).max()) == 0 for x in b)  # a new LoRA: B starts at 0


def test_the_cli_learner_across_two_runs_status_adapters_and_eval(tiny_mlx_dir, task_file):
    from conftest import run_cli

    home = os.environ["EDGECL_HOME"]
    common = ["--task", str(task_file), "--model", str(tiny_mlx_dir), "--steps", "1",
              "--batch-size", "2", "--group-size", "2", "--max-tokens", "8",
              "--warmup-steps", "0"]  # fmt: skip

    def cli(*args):
        result = run_cli(*args, home=home)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "no learner 'default' yet" in cli("status")
    first = cli("learn", *common, "--run-name", "one")
    assert "published adapter version 1" in first
    second = cli("learn", *common, "--run-name", "two")
    assert "continuing from its adapter version 1" in second
    assert "published adapter version 2" in second
    status = json.loads(cli("status", "--json"))
    assert status["current_version"] == 2 and status["versions"] == 2
    assert status["current"]["run"] == "two" and status["lambda"] is not None
    listed = json.loads(cli("adapters", "list", "--json"))
    assert [(v["version"], v["current"]) for v in listed] == [(1, False), (2, True)]
    assert "learner default" in cli("adapters", "list")
    assert "version 1 is current" in cli("adapters", "use", "1")
    out = json.loads(cli("eval", "--task", str(task_file), "--model", str(tiny_mlx_dir),
                         "--limit", "1", "--json"))  # fmt: skip
    assert out["adapter"].endswith("versions/0001")  # the learner's current version
    assert "back to version 2" in cli("adapters", "rollback")
    base = json.loads(cli("eval", "--task", str(task_file), "--model", str(tiny_mlx_dir),
                          "--limit", "1", "--json", "--base"))  # fmt: skip
    assert base["adapter"] is None
    bad = run_cli("adapters", "use", "7", home=home)
    assert bad.returncode == 1 and "has no version 7" in bad.stderr
