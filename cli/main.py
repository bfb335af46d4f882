"""The `edgecl` command: a thin layer over the library, one module per command.

edgecl --help
"""

from __future__ import annotations

import errno
import os
import sqlite3
import sys
import tempfile

import typer

from edgecl.cli import (
    adapters,
    bench,
    calibrate,
    chat,
    daemon,
    eval,
    export,
    generate,
    learn,
    log,
    models,
    report,
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
app.command("report")(report.report)
app.add_typer(bench.app, name="bench")


def storage_error(e: BaseException) -> str | None:
    """One line for a full disk or a read-only data dir (what was written before stays
    consistent: SQLite rolls back, adapters are written aside and renamed); None otherwise."""
    from edgecl.paths import data_dir_path

    home = str(data_dir_path())  # not data_dir(): that would try to create it
    code = getattr(e, "errno", None)
    if code is None and isinstance(e, sqlite3.Error):  # SQLite says "disk I/O error": ask the disk
        code = _write_errno(home)
    if code == errno.ENOSPC or "disk is full" in str(e):
        return (f"no space left on the disk of {home}: free some, then run again "
                "(`edgecl learn --run-name NAME --resume` continues a run)")  # fmt: skip
    if code == errno.EROFS or "readonly database" in str(e):
        return f"{home} is read-only: make it writable, or set EDGECL_HOME to a writable dir"
    return None


def _write_errno(directory: str) -> int | None:
    """The errno of writing 64 KiB into `directory` (None: that works)."""
    try:
        with tempfile.TemporaryFile(dir=directory) as f:
            f.write(b"\0" * 65536)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        return e.errno
    return None


def run() -> None:
    """Console entry point: user errors become one line on stderr and exit status 1."""
    try:
        app()
    except EdgeclError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except (OSError, sqlite3.Error) as e:
        message = storage_error(e)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    run()
