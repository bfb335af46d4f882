"""`edgecl bench continual` (edgecl.bench): the Table 1 arithmetic on injected accuracies, the
plumbing on the tiny model (2 methods x 2 tasks x 1 step, both orders), and the Ray executor.

.venv/bin/python -m pytest tests/test_bench.py -q
"""

from __future__ import annotations

import csv
import json

import pytest

from conftest import run_cli
from edgecl.bench.continual import Plan, forgetting_rate, jobs, markdown, table
from edgecl.errors import EdgeclError
from edgecl.store import Store


def test_forgetting_rate():
    assert forgetting_rate(0.5, 0.4) == pytest.approx(0.2)
    assert forgetting_rate(0.4, 0.5) == pytest.approx(-0.25)  # it got better: negative
    assert forgetting_rate(0.0, 0.3) is None and forgetting_rate(None, 0.3) is None


def _result(method, order, points, phase_cloud=(0.3, 0.5), seed=0):
    return {"method": method, "order": order, "seed": seed, "phase_cloud": list(phase_cloud),
            "points": [{"step": s, "task": t, "local_acc": lo, "joint_acc": jo}
                       for s, t, lo, jo in points]}  # fmt: skip


def test_table_from_injected_accuracies():
    plan = Plan(["math", "code"], ["da-grpo", "edge-only"], steps_per_task=10)
    assert plan.eval_steps() == [0, 10, 20]
    assert plan.orders() == [["math", "code"], ["code", "math"]]
    results = [
        # math first: during (step 10) 0.5 local / 0.8 joint, post (step 20) 0.4 / 0.6
        _result("da-grpo", ["math", "code"], [(10, "math", 0.5, 0.8), (20, "math", 0.4, 0.6)]),
        _result(
            "da-grpo",
            ["code", "math"],
            [(10, "code", 0.0, 0.5), (20, "code", 0.1, 0.25)],
            phase_cloud=(0.5, 0.2),
        ),  # fmt: skip
        # two seeds of edge-only on math: the accuracies are averaged
        _result("edge-only", ["math", "code"], [(10, "math", 0.4, 0.4), (20, "math", 0.2, 0.2)]),
        _result(
            "edge-only", ["math", "code"], [(10, "math", 0.6, 0.6), (20, "math", 0.3, 0.3)], seed=1
        ),  # fmt: skip
    ]
    rows = {(r["method"], r["task"], r["responses"]): r for r in table(results, plan)}
    assert len(rows) == 6  # edge-only never ran code first
    math_local = rows["da-grpo", "math", "local"]
    assert (math_local["during"], math_local["post"]) == (0.5, 0.4)
    assert math_local["forgetting"] == pytest.approx(0.2)
    assert rows["da-grpo", "math", "joint"]["forgetting"] == pytest.approx(0.25)
    code_local = rows["da-grpo", "code", "local"]
    assert code_local["forgetting"] is None  # during-task 0: n/a
    assert (code_local["cloud_during"], code_local["cloud_after"]) == (0.5, 0.2)
    edge = rows["edge-only", "math", "local"]
    assert (edge["during"], edge["post"]) == (0.5, 0.25) and edge["forgetting"] == 0.5
    text = markdown(list(rows.values()), plan)
    row = "| local-solved | da-grpo | 50.0 | 40.0 | 20.0 | 0.30 / 0.50 | 0.0 | 10.0 | n/a |"
    assert row in text
    assert "| local-solved | edge-only | 50.0 | 25.0 | 50.0 |" in text and "| - | - |" in text


def test_plan_and_jobs_check_their_input():
    with pytest.raises(EdgeclError, match="two tasks or more"):
        Plan(["math"], ["da-grpo"])
    with pytest.raises(EdgeclError, match="unknown method 'ppo'"):
        jobs("b", Plan(["math", "code"], ["ppo"]))
    specs = jobs("b", Plan(["math", "code"], ["da-grpo", "gapg"], seeds=[0, 1]))
    assert len(specs) == 8 and len({s["name"] for s in specs}) == 8
    assert specs[0]["plan"]["budgets"] == {"math": 0.3, "code": 0.5}  # the paper's


@pytest.fixture
def two_tasks(tmp_path):
    paths = []
    for name, op in (("sums", "+"), ("products", "*")):
        rows = [{"prompt": f"What is {a} {op} {a + 1}?", "answer": str(eval(f"{a}{op}{a + 1}")),
                 "split": "eval" if a % 4 == 0 else "train"} for a in range(1, 17)]  # fmt: skip
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        paths.append(str(path))
    return paths


def test_bench_plumbing_on_the_tiny_model(tiny_mlx_dir, two_tasks, edgecl_home, tmp_path):
    args = ("bench", "continual", "--sequence", ",".join(two_tasks), "--methods",
            "da-grpo,grpo-hier", "--steps-per-task", "1", "--eval-items", "2", "--every", "1",
            "--batch-size", "1", "--group-size", "2", "--max-tokens", "8", "--model",
            str(tiny_mlx_dir), "--warmup-steps", "1", "--help-steps", "1", "--id", "b1",
            "--out", str(tmp_path / "out"), "--assist", f"{two_tasks[0]}:0.3",
            "--parallel", "2")  # fmt: skip
    first = run_cli(*args, home=edgecl_home)
    assert first.returncode == 0, first.stderr
    assert "job 4/4" in first.stdout
    with (tmp_path / "out" / "table.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8  # 2 methods x 2 tasks x local/joint
    store = Store(edgecl_home / "edgecl.db")
    points, stored = store.bench("b1")
    assert len(stored) == 8 and len(points) == 4 * 3 * 2  # 4 jobs x steps 0,1,2 x 2 tasks
    assert {p["sequence"] for p in points} == {",".join(two_tasks), ",".join(two_tasks[::-1])}
    # Two jobs at a time, and one warm-up for all four (both orders, both methods): the first
    # job makes it, the others wait for it and load it.
    assert len([d for d in (edgecl_home / "warmups").iterdir() if d.is_dir()]) == 1
    warmups = [store.get_run(job)["warmup"] for job in {p["job"] for p in points}]
    assert sorted("reused" in w for w in warmups) == [False, True, True, True]
    # ... and one step-0 eval per task: the same weights give the same greedy eval.
    assert len(list((edgecl_home / "bench" / "b1" / "evals").glob("*.json"))) <= 24 - 6
    for r in stored:
        during, post = r["during"], r["post"]
        assert r["forgetting"] == (pytest.approx((during - post) / during) if during else None)
    for job in {p["job"] for p in points}:
        assert [s["step"] for s in store.steps(job)] == [1, 2]  # both phases trained
        assert store.get_run(job)["config"]["assist_reward"] == {two_tasks[0]: 0.3}
        log = (edgecl_home / "bench" / "b1" / "logs" / f"{job}.log").read_text()
        assert f"{job} step 2 " in log and f"{job} step 2 eval" in log  # its progress lines
    table_md = (tmp_path / "out" / "table.md").read_text()
    assert table_md.count("| local-solved |") == 2 and table_md.count("| joint |") == 2
    # Done jobs are not trained again: the same command prints the same table.
    again = run_cli(*args, home=edgecl_home)
    assert again.returncode == 0 and (tmp_path / "out" / "table.md").read_text() == table_md
    assert [s["step"] for s in store.steps(job)] == [1, 2]
    shown = run_cli("bench", "show", "b1", home=edgecl_home)
    assert shown.stdout == table_md
    # edgecl report --bench: valid PNGs, and the CSVs beside them are the stored values.
    plots = tmp_path / "plots"
    report = run_cli("report", "--bench", "b1", "--out", str(plots), home=edgecl_home)
    assert report.returncode == 0, report.stderr
    names = ["accuracy_order1", "accuracy_order2", "forgetting_local", "forgetting_joint"]
    page = (plots / "index.html").read_text()
    for name in names:
        assert (plots / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'src="{name}.png"' in page
    first = [p for p in points if p["sequence"] == ",".join(two_tasks)]
    with (plots / "accuracy_order1.csv").open() as f:
        series = list(csv.DictReader(f))
    key = lambda p: (p["method"], p["task"], int(p["step"]))  # noqa: E731
    assert sorted((key(r), float(r["local_acc"])) for r in series) == sorted(
        (key(p), p["local_acc"]) for p in first
    )


def test_ray_executor_runs_two_jobs_on_a_local_instance(tiny_mlx_dir, two_tasks, edgecl_home):
    """`--executor ray` on this machine (`ray.init()` starts a local instance): one method, so
    two jobs (the two orders), each a task on the local Ray node, results as from local."""
    args = ("bench", "continual", "--sequence", ",".join(two_tasks), "--methods", "gapg",
            "--steps-per-task", "1", "--eval-items", "2", "--batch-size", "1", "--group-size",
            "2", "--max-tokens", "8", "--model", str(tiny_mlx_dir), "--warmup-steps", "1",
            "--help-steps", "1", "--id", "r1", "--executor", "ray")  # fmt: skip
    result = run_cli(*args, home=edgecl_home, env={"RAY_USAGE_STATS_ENABLED": "0"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("done: r1-gapg-") == 2
    points, rows = Store(edgecl_home / "edgecl.db").bench("r1")
    assert len(rows) == 4 and len(points) == 2 * 3 * 2  # 2 jobs x steps 0,1,2 x 2 tasks
    assert len({p["job"] for p in points}) == 2


def test_assist_grid_chooses_the_value_nearest_tau(tiny_mlx_dir, two_tasks, edgecl_home):
    from edgecl.backends.mlx_backend import MLXModel
    from edgecl.bench.continual import sizes
    from edgecl.bench.grid import choose, markdown
    from edgecl.config import Phase, TrainConfig
    from edgecl.warmup import stored_warmup

    results = [{"assist": a, "tau": 0.3, "j_c": j, "accuracy": 0.5, "name": str(a), "steps": 4}
               for a, j in ((0.1, 0.05), (0.2, 0.25), (0.4, 0.35), (0.6, 0.9))]  # fmt: skip
    assert choose(results)["assist"] == 0.2  # |0.25 - 0.3| = |0.35 - 0.3|: the smaller value
    assert "| 0.2 | 0.250 | 0.050 | 0.500 | yes |" in markdown(results, "math", "grpo-hier")
    args = ("bench", "assist-grid", "--task", two_tasks[0], "--budget", "0.3", "--values",
            "0.1,0.5", "--steps", "2", "--batch-size", "1", "--group-size", "2", "--max-tokens",
            "8", "--model", str(tiny_mlx_dir), "--warmup-steps", "1", "--help-steps", "1",
            "--warmup-tasks", ",".join(two_tasks[::-1]), "--id", "g1")  # fmt: skip
    result = run_cli(*args, home=edgecl_home)
    assert result.returncode == 0, result.stderr
    # Its runs warm up on both tasks, so they start from the warm-up a bench over the two tasks
    # (in either order) uses.
    bench_job = TrainConfig(run_name="j", phases=[Phase(t, "0.3", 1) for t in two_tasks],
                            **sizes({"batch_size": 1, "group_size": 2, "max_tokens": 8,
                                     "warmup_steps": 1, "help_steps": 1}))  # fmt: skip
    fingerprint = MLXModel.load(tiny_mlx_dir, "tiny").fingerprint
    assert [d for d in (edgecl_home / "warmups").iterdir() if d.is_dir()] == [
        stored_warmup(fingerprint, bench_job)
    ]
    with (edgecl_home / "bench" / "g1" / "grid.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [float(r["assist"]) for r in rows] == [0.1, 0.5]
    store = Store(edgecl_home / "edgecl.db")
    for r in rows:
        steps = store.steps(r["name"])
        assert len(steps) == 2 and float(r["j_c"]) == pytest.approx(steps[1]["j_c"])
        assert store.get_run(r["name"])["config"]["assist_reward"] == float(r["assist"])
    assert "chosen: --assist " in result.stdout
    wrong = run_cli(*args[:-2], "--method", "da-grpo", "--id", "g2", home=edgecl_home)
    assert wrong.returncode == 1 and "da-grpo has no assistance reward" in wrong.stderr
