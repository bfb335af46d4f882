"""`edgecl runs list` and `edgecl runs show`: runs and their step history, from the store.

.venv/bin/python -m pytest tests/test_runs_cli.py -q
"""

from __future__ import annotations

import json

from conftest import run_cli
from edgecl.core.dual import dual_update
from edgecl.store import Store

TAU, DUAL_LR = 0.3, 0.01
CONFIG = {"run_name": "r1", "dual_lr": DUAL_LR, "lambda_init": 0.5, "seed": 3,
          "phases": [{"task": "math", "budget": str(TAU), "steps": 3}]}  # fmt: skip


def _make_runs(store: Store) -> list[dict]:
    """Run r1 with three steps (the dual update applied), cloud calls (one failed), one eval;
    run r2 with nothing recorded yet."""
    store.create_run("r1", CONFIG, "math", adapter_dir="/x/runs/r1/adapter")
    lam, rows = 0.5, []
    for step, (j_c, calls) in enumerate([(0.75, [1, 1]), (0.5, [1, 0]), (0.0, [])], start=1):
        new_lam = dual_update(lam, j_c, TAU, DUAL_LR)
        row = {"step": step, "phase": "1", "task": "math", "tau": TAU, "lambda_before": lam,
               "lambda_after": new_lam, "j_c": j_c, "cloud_ratio": j_c, "mean_reward": 0.25,
               "accuracy": 0.5, "loss": -0.01 * step, "n_help": int(8 * j_c),
               "n_cloud_calls": len(calls), "seconds": 2.0, "tokens": 512,
               "tokens_per_s": 256.0, "collapsed": 0}  # fmt: skip
        cloud_rows = [
            {"item_id": f"q{step}-{i}", "cloud": "reference", "simulated": 1,
             "status": "ok" if ok else "timeout", "ok": ok, "latency_s": 0.01, "attempts": 1}
            for i, ok in enumerate(calls)
        ]  # fmt: skip
        store.record_step("r1", row, [], cloud_rows)
        rows.append(row)
        lam = new_lam
    store.record_eval({"run": "r1", "adapter": "/x", "task": "math", "split": "eval", "n": 4,
                       "local_acc": 0.25, "joint_acc": 0.5, "details": {"items": []}})  # fmt: skip
    store.create_run("r2", {**CONFIG, "run_name": "r2"}, "code")
    return rows


def test_runs_list_json_gives_steps_done_and_last_lambda(edgecl_home):
    rows = _make_runs(Store())
    result = run_cli("runs", "list", "--json", home=edgecl_home)
    assert result.returncode == 0, result.stderr
    runs = {r["name"]: r for r in json.loads(result.stdout)}
    assert set(runs) == {"r1", "r2"}
    assert runs["r1"]["steps"] == 3 and runs["r1"]["lambda"] == rows[-1]["lambda_after"]
    assert runs["r1"]["task"] == "math" and runs["r1"]["status"] == "running"
    assert runs["r2"]["steps"] == 0 and runs["r2"]["lambda"] is None
    table = run_cli("runs", "list", home=edgecl_home)
    assert table.returncode == 0 and "r1" in table.stdout and "r2" in table.stdout


def test_runs_show_json_reproduces_lambda_and_cloud_calls(edgecl_home):
    _make_runs(Store())
    result = run_cli("runs", "show", "r1", "--json", home=edgecl_home)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["config"] == CONFIG and out["run"]["name"] == "r1"
    steps = out["steps"]
    assert [s["step"] for s in steps] == [1, 2, 3]
    lam = out["config"]["lambda_init"]
    for s in steps:  # the dual update, recomputed from the stored J_c and tau
        assert s["lambda_before"] == lam
        lam = dual_update(lam, s["j_c"], s["tau"], out["config"]["dual_lr"])
        assert s["lambda_after"] == lam
    # lambda rises while J_c is over tau and falls once it is under
    assert steps[0]["lambda_after"] > steps[0]["lambda_before"]
    assert steps[2]["lambda_after"] < steps[2]["lambda_before"]
    calls = out["cloud_calls"]
    assert [c["step"] for c in calls] == [1, 1, 2, 2]
    assert [sum(c["step"] == s["step"] for c in calls) for s in steps] == [
        s["n_cloud_calls"] for s in steps
    ]
    assert out["counts"] == {"cloud_calls_ok": 3, "cloud_calls_failed": 1, "evals": 1}
    assert [c["charged"] for c in calls] == [1, 1, 1, 0]  # a failed call is not charged
    assert len(out["evals"]) == 1 and "details" not in out["evals"][0]


def test_runs_show_table_and_empty_list(edgecl_home):
    empty = run_cli("runs", "list", home=edgecl_home)
    assert empty.returncode == 0 and "no runs yet" in empty.stdout
    rows = _make_runs(Store())
    result = run_cli("runs", "show", "r1", home=edgecl_home)
    assert result.returncode == 0, result.stderr
    assert max(len(line) for line in result.stdout.splitlines()) <= 80  # fits a terminal
    lines = [line.split() for line in result.stdout.splitlines()]
    step_lines = [w for w in lines if w and w[0] in ("1", "2", "3") and "math" in w]
    assert [w[4] for w in step_lines] == [f"{r['lambda_after']:.4f}" for r in rows]
    assert "3 ok, 1 failed" in result.stdout and "evals: 1" in result.stdout
    fresh = run_cli("runs", "show", "r2", home=edgecl_home)
    assert fresh.returncode == 0 and "no steps recorded yet" in fresh.stdout


def test_runs_show_unknown_run_is_one_line(edgecl_home):
    result = run_cli("runs", "show", "nope", home=edgecl_home)
    assert result.returncode == 1
    assert result.stderr == "error: no run named 'nope': see `edgecl runs list`\n"
