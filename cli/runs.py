"""`edgecl runs`: the training runs in the data dir and their per-step history.

edgecl runs list
edgecl runs show my-run --json
"""

from __future__ import annotations

import json

import typer

from edgecl.errors import EdgeclError

app = typer.Typer(help="List training runs and show one run's history.", no_args_is_help=True)

# The step table (`runs show` without --json): short headers, compact numbers, and lambda after
# the step's dual update only (lambda before a step is the row above; --json has both, and
# the loss).
TABLE = (("step", "step"), ("phase", "ph"), ("task", "task"), ("tau", "tau"),
         ("lambda_after", "λ"), ("j_c", "J_c"), ("j_c_mean", "J_c10"), ("mean_reward", "reward"),
         ("accuracy", "acc"), ("kl", "KL"), ("n_help", "help"),
         ("n_cloud_calls", "calls"), ("seconds", "s"), ("tokens_per_s", "tok/s"),
         ("collapsed", "coll"))  # fmt: skip
FORMATS = {"tau": ".2f", "lambda_after": ".4f", "j_c": ".2f", "j_c_mean": ".2f",
           "cloud_ratio": ".2f", "mean_reward": ".2f", "accuracy": ".2f", "loss": ".3g",
           "kl": ".3g", "seconds": ".0f", "tokens_per_s": ".0f"}  # fmt: skip


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Print a JSON list.")) -> None:
    """Every run: name, status, task, steps done, last lambda, created."""
    from edgecl.store import Store

    store = Store()
    try:
        rows = []
        for run in store.list_runs():
            steps = store.steps(run["name"])
            rows.append(
                {
                    "name": run["name"],
                    "status": run["status"],
                    "task": run["task"],
                    "steps": len(steps),
                    "lambda": steps[-1]["lambda_after"] if steps else None,
                    "created": run["created"],
                }
            )
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no runs yet: start one with `edgecl learn --task math --budget 0.3`")
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table("name", "status", "task", "steps", "lambda", "created")
    for r in rows:
        lam = "-" if r["lambda"] is None else f"{r['lambda']:.4f}"
        cells = (r["name"], r["status"], r["task"], str(r["steps"]), lam, r["created"])
        table.add_row(*(escape(str(c)) for c in cells))
    Console().print(table)


@app.command("show")
def show(
    name: str = typer.Argument(..., help="The run's name (see `edgecl runs list`)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """A run's config, its per-step history, its cloud calls (ok / failed) and its evals."""
    from edgecl.store import Store

    store = Store()
    try:
        run = store.get_run(name)
        if run is None:
            raise EdgeclError(f"no run named {name!r}: see `edgecl runs list`")
        steps = store.steps(name)
        calls = store.cloud_calls(name)
        evals = [{k: v for k, v in e.items() if k != "details"} for e in store.evals(run=name)]
    finally:
        store.close()
    ok = sum(1 for c in calls if c["ok"])
    counts = {"cloud_calls_ok": ok, "cloud_calls_failed": len(calls) - ok, "evals": len(evals)}
    if as_json:
        out = {"run": {k: v for k, v in run.items() if k != "config"}, "config": run["config"]}
        out.update(steps=steps, cloud_calls=calls, evals=evals, counts=counts)
        typer.echo(json.dumps(out, indent=2))
        return
    _print(run, steps, counts)


def _print(run: dict, steps: list[dict], counts: dict) -> None:
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    head = f"{run['name']}  {run['status']}  task {run['task']}  created {run['created']}"
    console.print(escape(f"{head}  adapter {run['adapter_dir'] or '-'}"))
    config = Table("setting", "value", title="config")
    for key, value in (run["config"] or {}).items():
        text = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
        config.add_row(key, escape(text))
    console.print(config)
    if steps:
        table = Table(title="steps", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 0))
        for _, header in TABLE:
            table.add_column(header, justify="left" if header == "task" else "right")
        for s in steps:
            table.add_row(*(escape(_cell(key, s.get(key))) for key, _ in TABLE))
        console.print(table)
    else:
        console.print("no steps recorded yet")
    console.print(
        f"cloud calls: {counts['cloud_calls_ok']} ok, {counts['cloud_calls_failed']} failed; "
        f"evals: {counts['evals']}"
    )


def _cell(key: str, value) -> str:
    if value is None:
        return "-"
    if key == "collapsed":
        return "yes" if value else ""
    return format(value, FORMATS[key]) if key in FORMATS else str(value)
