"""The `edgecl` command: a thin layer over the library, one module per command.

edgecl --help
"""

from __future__ import annotations

import sys

import typer

from edgecl.cli import (
    adapters,
    calibrate,
    chat,
    daemon,
    eval,
    export,
    generate,
    learn,
    log,
    models,
    runs,
    status,
)
from edgecl.errors import EdgeclError

app = typer.Typer(
    help="On-device continual learning with budgeted cloud help (DA-GRPO).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("generate")(generate.generate)
app.command("export")(export.export)
app.command("learn")(learn.learn)
app.add_typer(models.app, name="models")
app.command("eval")(eval.eval_)
app.add_typer(runs.app, name="runs")
app.add_typer(adapters.app, name="adapters")
app.command("status")(status.status)
app.command("chat")(chat.chat)
app.command("calibrate")(calibrate.calibrate)
app.add_typer(log.app, name="log")
app.add_typer(daemon.app, name="daemon")


def run() -> None:
    """Console entry point: user errors become one line on stderr and exit status 1."""
    try:
        app()
    except EdgeclError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    run()
