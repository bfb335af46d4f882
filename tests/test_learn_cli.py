"""`edgecl learn` as a user runs it: bad input is one line; Ctrl-C saves; --resume finishes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest

from conftest import run_cli
from edgecl.store import Store


@pytest.mark.parametrize(
    "args, message",
    [
        (["--task", "math", "--budget", "1.5"], "budget tau=1.5 is outside [0, 1]"),
        (["--task", "math", "--budget", "abc"], "bad tau schedule 'abc'"),
        (["--task", "chemistry"], "unknown task 'chemistry'"),
        (["--curriculum", "math:0.3,code"], "bad curriculum entry 'code'"),
        (["--task", "math", "--group-size", "1"], "GRPO needs G >= 2"),
        (["--run-name", "nope", "--resume"], "no run named 'nope'"),
        ([], "give either --task"),
    ],
)
def test_bad_input_is_one_line(args, message, edgecl_home):
    result = run_cli("learn", *args, home=edgecl_home)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1


def test_malformed_jsonl_names_the_lines(tmp_path, edgecl_home):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"prompt": "1+1?", "answer": "2"}\n{"prompt": "no answer"}\nnot json\n')
    result = run_cli("learn", "--task", str(path), home=edgecl_home)
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "line 2" in result.stderr and "line 3" in result.stderr


def sums_task(directory, n: int):
    """A JSONL task of n one-line sums, no difficulty field."""
    task = directory / "sums.jsonl"
    task.write_text(
        "\n".join(json.dumps({"prompt": f"{i} + 1?", "answer": str(i + 1)}) for i in range(n))
    )
    return task


def test_ctrl_c_saves_and_resume_finishes(tmp_path, edgecl_home, tiny_mlx_dir):
    """SIGINT after the first step: exit 130 with the checkpoint saved; --resume completes."""
    model, task = tiny_mlx_dir, sums_task(tmp_path, 20)
    options = "--budget 0.3 --steps 40 --batch-size 2 --group-size 2 --max-tokens 8"
    options += " --warmup-steps 0 --run-name stopme"
    args = ["learn", "--task", str(task), "--model", str(model), *options.split()]
    env = dict(os.environ, EDGECL_HOME=str(edgecl_home), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from edgecl.cli.main import run; run()", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("step    2/"):
            proc.send_signal(signal.SIGINT)
            break
    out = proc.stdout.read()
    assert "40 steps to go; ETA after the first step" in "".join(seen)  # nothing measured yet
    assert proc.wait(timeout=120) == 130, out
    assert "edgecl learn --run-name stopme --resume" in out
    done = len(Store().steps("stopme"))
    assert 2 <= done < 40 and Store().get_run("stopme")["status"] == "interrupted"

    result = run_cli("learn", "--run-name", "stopme", "--resume", home=edgecl_home)
    assert result.returncode == 0, result.stderr
    assert re.search(rf"s/step, the median of {done} steps measured here", result.stdout)
    steps = Store().steps("stopme")
    assert [s["step"] for s in steps] == list(range(1, 41))
    assert Store().get_run("stopme")["status"] == "done"


def test_second_run_reuses_the_warmup_and_rewarm_redoes_it(tmp_path, edgecl_home, tiny_mlx_dir):
    model, task = tiny_mlx_dir, sums_task(tmp_path, 9)
    options = "--budget 0.3 --steps 1 --batch-size 2 --group-size 2 --max-tokens 8 --warmup-steps 2"
    options += " --help-steps 2 --fresh"  # each run from the base model: the warm-up is reused

    def learn(name, *extra):
        args = ["learn", "--task", str(task), "--model", str(model), *options.split()]
        result = run_cli(*args, "--run-name", name, *extra, home=edgecl_home)
        assert result.returncode == 0, result.stderr
        return result.stdout

    first = learn("one")
    assert "warm-up format 2/2" in first and "reusing" not in first
    second = learn("two")
    assert "warm-up: reusing the one made" in second and "--rewarm redoes it" in second
    assert "warm-up format" not in second and "probe:" not in second
    third = learn("three", "--rewarm")
    assert "warm-up format 2/2" in third and "reusing" not in third


@pytest.mark.parametrize("mode", ["gapg", "da-grpo"])
def test_runs_stored_with_the_removed_mode_option(mode, edgecl_home):
    """`--mode grpo|gapg` is gone: such a run cannot resume (one line), a da-grpo one loads."""
    from edgecl.config import Phase, TrainConfig

    config = TrainConfig(run_name="old", phases=[Phase("math", "0.3", 1)]).to_dict()
    Store().create_run("old", {**config, "mode": mode}, "math")
    assert TrainConfig.from_dict({**config, "mode": "da-grpo"}).run_name == "old"
    result = run_cli("learn", "--run-name", "old", "--resume", "--help", home=edgecl_home)
    assert result.returncode == 0 and not re.search(r"--mode\b", result.stdout)
    if mode != "da-grpo":
        result = run_cli("learn", "--run-name", "old", "--resume", home=edgecl_home)
        assert result.returncode == 1 and result.stderr.count("\n") == 1
        assert "used an advantage mode edgecl no longer offers" in result.stderr


def test_step_eta_leaves_out_the_first_steps_compile(monkeypatch, capsys):
    """The first step of a process (here 70 s) pays for compiling; the ETA after the second
    step comes from the time since the first (10 s), not from the mean (40 s)."""
    from edgecl.cli import learn

    clock = iter([100.0, 110.0])
    monkeypatch.setattr(learn.time, "perf_counter", lambda: next(clock))
    display = learn._Display.__new__(learn._Display)
    display.first_step, display.total = None, 30
    row = {"task": "math", "lambda_after": 0.1, "cloud_ratio": 0.5, "j_c_mean": 0.5, "tau": 0.3,
           "n_cloud_calls": 2, "mean_reward": 0.5, "accuracy": 0.5, "tokens_per_s": 50,
           "collapsed": False}  # fmt: skip
    display._step(dict(row, step=21, seconds=70.0))
    display._step(dict(row, step=22, seconds=10.0))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("ETA 10m30s"), lines[0]  # 9 steps left at 70 s
    assert lines[1].endswith("ETA 1m20s"), lines[1]  # 8 steps left at 10 s
