"""kill -9 of `edgecl learn` at 21 moments (edgecl.faults points): each stage of writing a
checkpoint, of a step, and of starting and ending a run. What is left on disk is always a
complete adapter, `--resume` ends byte for byte where an uninterrupted run ends (adapter and
lambdas), the database is intact, and the run's adapter is published once.

.venv/bin/python -m pytest tests/test_crash.py -q
"""

from __future__ import annotations

import os
import sqlite3

import pytest
from test_train import model_dir, task_file  # noqa: F401

from conftest import run_cli
from edgecl.backends.adapter_files import read_adapter_config, saved_adapter
from edgecl.store import Store
from edgecl.train import run_dir


def learn(model_dir, task_file, home, env: dict | None = None):  # noqa: F811
    args = ["learn", "--task", str(task_file), "--model", str(model_dir), "--budget", "0.2",
            "--steps", "2", "--batch-size", "2", "--group-size", "4", "--max-tokens", "24",
            "--warmup-steps", "0", "--seed", "3", "--run-name", "crash"]  # fmt: skip
    return run_cli(*args, home=home, env=env)


@pytest.fixture(scope="module")
def reference(model_dir, task_file, tmp_path_factory):  # noqa: F811
    """An uninterrupted run's final adapter weights and lambdas (its own data dir)."""
    home = tmp_path_factory.mktemp("reference")
    done = learn(model_dir, task_file, home)
    assert done.returncode == 0, done.stderr
    weights = (home / "runs" / "crash" / "adapter" / "adapters.safetensors").read_bytes()
    lambdas = [s["lambda_after"] for s in Store(home / "edgecl.db").steps("crash")]
    return weights, lambdas


# 21 moments: each stage of writing a checkpoint (backends/adapter_files.write_adapter), at its
# first saves (the start's checkpoint, the KL anchor, step 1's; `adapter-old-moved` is reached
# only when an older checkpoint exists); each stage of a step (sampled, updated, its rows
# written); and the run's start and end (created, marked done, published).
WHERE = [
    f"adapter-{stage}@{n}"
    for stage in ("weights-written", "optimizer-written", "config-written", "swapped")
    for n in (1, 2, 3)
]
WHERE += ["adapter-old-moved@1", "adapter-old-moved@2"]
WHERE += [f"step-{stage}@{n}" for stage in ("sampled", "updated", "rows-written") for n in (1, 2)]
WHERE += ["run-created", "run-done", "run-published"]


@pytest.mark.parametrize("where", WHERE)
def test_a_kill_while_checkpointing_resumes_exactly(model_dir, task_file, reference, where):  # noqa: F811
    killed = learn(model_dir, task_file, os.environ["EDGECL_HOME"], {"EDGECL_KILL_AT": where})
    assert killed.returncode == -9, killed.stderr

    left = saved_adapter(run_dir("crash") / "adapter")  # what a resume or a reader would load
    if left is not None:  # none yet when killed before the first checkpoint
        config = read_adapter_config(left)  # complete: config and weights both there
        assert config["trainer_state"]["step"] in (0, 1, 2)

    resumed = run_cli("learn", "--run-name", "crash", "--resume",
                      home=os.environ["EDGECL_HOME"])  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    weights, lambdas = reference
    assert (run_dir("crash") / "adapter" / "adapters.safetensors").read_bytes() == weights
    assert [s["lambda_after"] for s in Store().steps("crash")] == lambdas
    db = sqlite3.connect(Store().path)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    published = [v for v in Store().versions("default") if v["run"] == "crash"]
    assert [v["step"] for v in published] == [2]  # published once, even when resumed after it
