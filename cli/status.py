"""`edgecl status`: the learner at a glance.

edgecl status [--learner NAME] [--json]
"""

from __future__ import annotations

import json

import typer


def status(
    learner: str = typer.Option("default", "--learner", help="The learner (default: default)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Base model, current adapter version, lambda, budgets per task, and the latest run."""
    from edgecl import daemon
    from edgecl import learner as learners
    from edgecl.store import Store

    store = Store()
    try:
        me = learners.load(store, learner)
        versions = store.versions(learner) if me else []
        runs = store.list_runs()
    finally:
        store.close()
    current = next((v for v in versions if v["version"] == (me and me.current)), None)
    out = {
        "learner": learner,
        "exists": me is not None,
        "base_model": me.base_model if me else None,
        "current_version": me.current if me else None,
        "current": current,
        "versions": len(versions),
        "lambda": me.lam if me else None,
        "budgets": me.taus if me else {},
        "latest_run": {k: runs[-1][k] for k in ("name", "status", "task")} if runs else None,
        "daemon": daemon.state(),
    }
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    if me is None:
        lines = [f"no learner {learner!r} yet: start with `edgecl learn --task math --budget 0.3`"]
    else:
        lines = [f"learner {learner} on {me.base_model}"]
        if current:
            made = f"run {current['run']}, step {current['step']}, {current['created'][:19]}"
            lines.append(
                f"adapter: version {me.current} of {len(versions)} ({current['kind']}, {made})"
            )
        else:
            lines.append("adapter: none yet (the base model)")
        lam = "-" if me.lam is None else f"{me.lam:.3f}"
        budgets = ", ".join(f"{t} {b}" for t, b in me.taus.items()) or "-"
        lines.append(f"lambda {lam}; budgets: {budgets}")
    if runs:
        r = runs[-1]
        lines.append(f"latest run: {r['name']} ({r['status']}, {r['task']})")
    if (running := out["daemon"]) is None:
        lines.append("daemon: not running")
    else:
        lines.append(f"daemon: http://127.0.0.1:{running['port']}/v1 (pid {running['pid']})")
    typer.echo("\n".join(lines))
