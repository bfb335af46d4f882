"""`edgecl bench`: the continual-learning benchmark of the paper's Table 1.

edgecl bench continual --sequence math,code --methods da-grpo,grpo-hier,gapg,edge-only
edgecl bench continual --id b1 --executor ray [--ray-address HOST:6379]
edgecl bench show b1                       # the table again, from SQLite
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from edgecl.errors import EdgeclError

app = typer.Typer(help="Benchmarks: the paper's task-switch table.", no_args_is_help=True)


@app.command("continual")
def continual(
    sequence: str = typer.Option("math,code", help="Tasks in order, comma-separated."),
    methods: str = typer.Option("da-grpo,grpo-hier,gapg,edge-only", help="Methods to compare."),
    budget: str = typer.Option(None, help="Per task, e.g. math:0.3,code:0.5 [the paper's]."),
    steps_per_task: int = typer.Option(30, help="DA-GRPO steps on each task."),
    eval_items: int = typer.Option(40, help="Eval items per task at each eval point."),
    every: int = typer.Option(10, help="Evaluate every K steps (and at each task's end)."),
    seeds: str = typer.Option("0", help="Seeds, comma-separated."),
    batch_size: int = typer.Option(4),
    group_size: int = typer.Option(4),
    max_tokens: int = typer.Option(96),
    model: str = typer.Option(None, help="Model name or path (default: bundled SmolLM2)."),
    warmup_steps: int = typer.Option(None, help="Warm-up format steps [learn's default]."),
    help_steps: int = typer.Option(None, help="Warm-up help steps [learn's default]."),
    bench_id: str = typer.Option(None, "--id", help="Name of the benchmark (to resume it)."),
    executor: str = typer.Option("local", help="local (child processes) or ray."),
    ray_address: str = typer.Option(None, help="A running Ray cluster (default: start one)."),
    out: Path = typer.Option(None, help="Folder for table.md and table.csv [data dir]."),
) -> None:
    """Train each method through the task sequence in both orders; print the Table 1 layout."""
    import time

    from edgecl import paths
    from edgecl.bench.continual import Plan, jobs
    from edgecl.bench.executors import EXECUTORS, run_local, run_ray

    if executor not in EXECUTORS:
        raise EdgeclError(f"unknown --executor {executor!r}: use local or ray")
    try:
        pairs = (p.split(":") for p in budget.split(",")) if budget else ()
        budgets = {t: float(v) for t, v in pairs}
        seed_list = [int(s) for s in seeds.split(",")]
    except ValueError:
        raise EdgeclError("--budget is task:tau,... (e.g. math:0.3) and --seeds 0,1,...") from None
    plan = Plan(
        [t.strip() for t in sequence.split(",") if t.strip()],
        [m.strip() for m in methods.split(",") if m.strip()],
        budgets, steps_per_task, eval_items, every, seed_list, batch_size, group_size,
        max_tokens, model, warmup_steps, help_steps,
    )  # fmt: skip
    bench_id = bench_id or f"continual-{time.strftime('%Y%m%d-%H%M%S')}"
    folder = out or paths.data_dir() / "bench" / bench_id
    specs = jobs(bench_id, plan)
    typer.echo(f"bench {bench_id}: {len(specs)} jobs; plan {json.dumps(specs[0]['plan'])}")
    if executor == "ray":
        results = run_ray(specs, ray_address, typer.echo)
    else:
        results = run_local(specs, paths.data_dir() / "bench" / bench_id / "logs", typer.echo)
    _finish(bench_id, plan, results, folder)


@app.command("job", hidden=True)
def job(spec: str) -> None:
    """Run one benchmark job (what the executors start); the last line is its result."""
    from edgecl.bench.continual import run_job

    result = run_job(json.loads(spec), on_line=lambda line: typer.echo(line, err=True))
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
