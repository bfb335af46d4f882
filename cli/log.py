"""`edgecl log`: the chat log (every exchange of chat and, later, the daemon).

edgecl log purge                      # delete every logged exchange
edgecl log purge --older-than 30      # only those older than 30 days
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import typer

app = typer.Typer(help="Manage the log of chat exchanges.", no_args_is_help=True)


@app.command("purge")
def purge(
    older_than: int = typer.Option(None, "--older-than", min=0, help="Only exchanges older "
                                   "than this many days."),
) -> None:  # fmt: skip
    """Delete logged exchanges."""
    from edgecl.store import Store

    before = None
    if older_than is not None:
        cutoff = datetime.now(timezone.utc) - timedelta(days=older_than)
        before = cutoff.isoformat(timespec="seconds")
    store = Store()
    try:
        n = store.purge_exchanges(before)
    finally:
        store.close()
    typer.echo(f"deleted {n} logged exchange{'s' if n != 1 else ''}")
