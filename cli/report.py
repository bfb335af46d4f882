"""`edgecl report`: plots of a training run, as PNGs with their CSVs and one HTML page.

edgecl report --run my-run                  # DATA_DIR/reports/my-run/index.html
edgecl report --run my-run --out plots/
"""

from __future__ import annotations

from pathlib import Path

import typer


def report(
    run: str = typer.Option(..., "--run", help="The run to plot (edgecl runs list)."),
    out: Path = typer.Option(None, "--out", help="Folder to write (default: the data dir's)."),
) -> None:
    """Plot lambda, the cloud ratio against tau, reward and accuracy of a run."""
    from edgecl import paths
    from edgecl.report import report as write_report
    from edgecl.store import Store

    store = Store()
    try:
        folder = out or paths.data_dir() / "reports" / run
        pngs = write_report(store, run, folder)
    finally:
        store.close()
    typer.echo(f"wrote {len(pngs)} plots, their CSVs and {folder / 'index.html'}")
