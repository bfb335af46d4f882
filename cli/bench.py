"""`edgecl bench`: the continual-learning benchmark of the paper's Table 1.

edgecl bench continual --sequence math,code --methods da-grpo,grpo-hier,gapg,edge-only
edgecl bench continual --id b1 --executor ray [--ray-address HOST:6379]
edgecl bench show b1                       # the table again, from SQLite
edgecl bench assist-grid --task math --budget 0.3  # the baselines' assist reward toward tau
edgecl bench continual ... --parallel 2    # two jobs at once, each on its share of the cores
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from edgecl.errors import EdgeclError

app = typer.Typer(help="Benchmarks: the paper's task-switch table.", no_args_is_help=True)
# Options both benchmarks take: the step's size and warm-up, and where the jobs run.
BATCH_SIZE, GROUP_SIZE, MAX_TOKENS = typer.Option(4), typer.Option(4), typer.Option(96)
MODEL = typer.Option(None, help="Model name or path (default: bundled SmolLM2).")
WARMUP_STEPS = typer.Option(None, help="Warm-up format steps (default: learn's).")
HELP_STEPS = typer.Option(None, help="Warm-up help steps (default: learn's).")
EXECUTOR = typer.Option("local", help="local (child processes) or ray.")
PARALLEL = typer.Option(1, help="Local jobs at once, each pinned to its share of the cores.")
RAY_ADDRESS = typer.Option(None, help="A running Ray cluster (default: start one).")


@app.command("continual")
def continual(
    sequence: str = typer.Option("math,code", help="Tasks in order, comma-separated."),
    methods: str = typer.Option("da-grpo,grpo-hier,gapg,edge-only", help="Methods to compare."),
    budget: str = typer.Option(None, help="tau per task, e.g. math:0.3,code:0.5 (the paper's)."),
    assist: str = typer.Option(None, help="Baselines' assist reward per task (Table 3's)."),
    steps_per_task: int = typer.Option(30, help="DA-GRPO steps on each task."),
    eval_items: int = typer.Option(40, help="Eval items per task at each eval point."),
    every: int = typer.Option(10, help="Evaluate every K steps (and at each task's end)."),
    seeds: str = typer.Option("0", help="Seeds, comma-separated."),
    batch_size: int = BATCH_SIZE,
    group_size: int = GROUP_SIZE,
    max_tokens: int = MAX_TOKENS,
    model: str = MODEL,
    warmup_steps: int = WARMUP_STEPS,
    help_steps: int = HELP_STEPS,
    bench_id: str = typer.Option(None, "--id", help="Name of the benchmark (to resume it)."),
    executor: str = EXECUTOR,
    parallel: int = PARALLEL,
    ray_address: str = RAY_ADDRESS,
    out: Path = typer.Option(None, help="Folder for table.md and .csv (the data dir's)."),
) -> None:
    """Train each method through the task sequence in both orders; print the Table 1 layout."""
    import time

    from edgecl import paths
    from edgecl.bench.continual import Plan, jobs

    plan = Plan(
        _names(sequence), _names(methods), _per_task(budget, "--budget"), steps_per_task,
        eval_items, every, _numbers(seeds, int), batch_size, group_size, max_tokens, model,
        warmup_steps, help_steps, _per_task(assist, "--assist"),
    )  # fmt: skip
    bench_id = bench_id or f"continual-{time.strftime('%Y%m%d-%H%M%S')}"
    folder = out or paths.data_dir() / "bench" / bench_id
    specs = jobs(bench_id, plan)
    typer.echo(f"bench {bench_id}: {len(specs)} jobs; plan {json.dumps(specs[0]['plan'])}")
    results = _execute(specs, bench_id, executor, ray_address, parallel)
    _finish(bench_id, plan, results, folder)


@app.command("assist-grid")
def assist_grid(
    task: str = typer.Option(..., help="The task (math, code, qa or a .jsonl)."),
    budget: float = typer.Option(..., min=0, max=1, help="The cloud ratio tau to aim at."),
    values: str = typer.Option("0.05,0.1,0.2,0.4,0.6", help="Assist rewards to try."),
    method: str = typer.Option("grpo-hier", help="A hierarchical method: grpo-hier, gapg, gvpo."),
    steps: int = typer.Option(20, help="Training steps per value."),
    seed: int = typer.Option(0),
    batch_size: int = BATCH_SIZE,
    group_size: int = GROUP_SIZE,
    max_tokens: int = MAX_TOKENS,
    model: str = MODEL,
    warmup_steps: int = WARMUP_STEPS,
    help_steps: int = HELP_STEPS,
    warmup_tasks: str = typer.Option(
        None, help="Warm up on these tasks, e.g. the bench's math,code (default: the task)."
    ),
    bench_id: str = typer.Option(None, "--id", help="Name of the grid (to resume it)."),
    executor: str = EXECUTOR,
    parallel: int = PARALLEL,
    ray_address: str = RAY_ADDRESS,
) -> None:
    """Choose the hierarchical baselines' assist reward for a task: the value whose training
    cloud ratio comes nearest tau."""
    import csv
    import time

    from edgecl import paths
    from edgecl.bench.grid import choose, grid_jobs, markdown

    fixed = dict(model=model, batch_size=batch_size, group_size=group_size, max_tokens=max_tokens,
                 warmup_steps=warmup_steps, help_steps=help_steps,
                 warmup_tasks=_names(warmup_tasks) or None)  # fmt: skip
    bench_id = bench_id or f"grid-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        specs = grid_jobs(bench_id, task, budget, _numbers(values, float), method, steps, seed,
                          fixed)  # fmt: skip
    except ValueError as e:
        raise EdgeclError(str(e)) from None
    results = _execute(specs, bench_id, executor, ray_address, parallel)
    folder = paths.data_dir() / "bench" / bench_id
    text = markdown(results, task, method)
    (folder / "grid.md").write_text(text)
    with (folder / "grid.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(results[0]))
        writer.writeheader()
        writer.writerows(results)
    best = choose(results)
    typer.echo(text + f"chosen: --assist {task}:{best['assist']:g} (wrote {folder / 'grid.md'})")


def _execute(specs: list[dict], bench_id: str, executor: str, address: str | None,
             parallel: int) -> list[dict]:  # fmt: skip
    from edgecl import paths
    from edgecl.bench.executors import EXECUTORS, run_local, run_ray

    if executor not in EXECUTORS:
        raise EdgeclError(f"unknown --executor {executor!r}: use local or ray")
    if executor == "ray":
        return run_ray(specs, address, typer.echo)
    return run_local(specs, paths.data_dir() / "bench" / bench_id / "logs", typer.echo, parallel)


def _names(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _numbers(text: str, kind) -> list:
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise EdgeclError(f"expected comma-separated numbers, got {text!r}") from None


def _per_task(text: str | None, option: str) -> dict[str, float]:
    """'math:0.3,code:0.5' -> {"math": 0.3, "code": 0.5}."""
    try:
        return {t: float(v) for t, v in (p.rsplit(":", 1) for p in text.split(","))} if text else {}
    except ValueError:
        raise EdgeclError(f"{option} is task:value,... (e.g. math:0.3,code:0.5)") from None


@app.command("job", hidden=True)
def job(spec: str) -> None:
    """Run one benchmark job (what the executors start); the last line is its result."""
    from edgecl.bench.continual import run_job
    from edgecl.bench.grid import run_grid_job

    the_spec = json.loads(spec)
    run = run_grid_job if the_spec.get("kind") == "grid" else run_job
    result = run(the_spec, on_line=lambda line: typer.echo(line, err=True))
    typer.echo(json.dumps(result))


@app.command("show")
def show(bench_id: str) -> None:
    """Print a benchmark's table from SQLite."""
    from edgecl.bench.continual import Plan, markdown
    from edgecl.store import Store

    points, rows = Store().bench(bench_id)
    if not rows:
        raise EdgeclError(f"no benchmark {bench_id!r} in the database")
    plan = Plan(list(dict.fromkeys(r["task"] for r in rows)),
                list(dict.fromkeys(r["method"] for r in rows)))  # fmt: skip
    typer.echo(markdown(rows, plan), nl=False)


def _finish(bench_id: str, plan, results: list[dict], folder: Path) -> None:
    """Table 1 as Markdown and CSV in `folder`, and points and table into SQLite."""
    import csv

    from edgecl.bench.continual import markdown, table
    from edgecl.store import Store

    rows = table(results, plan)
    points = [{"job": r["name"], "method": r["method"], "sequence": ",".join(r["order"]),
               "seed": r["seed"], **p} for r in results for p in r["points"]]  # fmt: skip
    Store().save_bench(bench_id, points, rows)
    folder.mkdir(parents=True, exist_ok=True)
    text = markdown(rows, plan)
    (folder / "table.md").write_text(text)
    with (folder / "table.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    typer.echo(text + f"wrote {folder / 'table.md'} and {folder / 'table.csv'}", nl=False)
