"""`edgecl adapters`: a learner's published adapter versions, and which one is current.

edgecl adapters list [--learner NAME] [--json]
edgecl adapters use 3            # make version 3 current (chat, eval and learn use it)
edgecl adapters rollback         # back to the version that was current before
"""

from __future__ import annotations

import json

import typer

from edgecl.errors import EdgeclError

app = typer.Typer(help="List a learner's adapter versions and choose the current one.",
                  no_args_is_help=True)  # fmt: skip
LEARNER = typer.Option("default", "--learner", help="The learner (default: default).")


def _learner(store, name: str):
    from edgecl import learner as learners

    found = learners.load(store, name)
    if found is None:
        raise EdgeclError(f"no learner named {name!r} yet: `edgecl learn` creates it")
    return found


@app.command("list")
def list_(
    learner: str = LEARNER,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
) -> None:
    """Every version: number, kind (warmup or run), run, step, created; * marks the current."""
    from edgecl.store import Store

    store = Store()
    try:
        me = _learner(store, learner)
        rows = [{**v, "current": v["version"] == me.current} for v in store.versions(learner)]
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("", "version", "kind", "run", "step", "created", title=f"learner {learner}")
    for v in rows:
        table.add_row("*" if v["current"] else "", str(v["version"]), v["kind"], v["run"] or "-",
                      str(v["step"]), v["created"][:19])  # fmt: skip
    Console().print(table)


@app.command("use")
def use(version: int = typer.Argument(..., help="The version to make current."),
        learner: str = LEARNER) -> None:  # fmt: skip
    """Make a version current."""
    from edgecl import learner as learners
    from edgecl.store import Store

    store = Store()
    try:
        learners.use(store, _learner(store, learner), version)
    finally:
        store.close()
    typer.echo(f"learner {learner}: version {version} is current")


@app.command("rollback")
def rollback(learner: str = LEARNER) -> None:
    """Make the version that was current before the current one current again."""
    from edgecl import learner as learners
    from edgecl.store import Store

    store = Store()
    try:
        version = learners.rollback(store, _learner(store, learner))
    finally:
        store.close()
    typer.echo(f"learner {learner}: back to version {version}")
