"""`edgecl report`: plots of a training run, as PNGs with their CSVs and one HTML page.

edgecl report --run my-run                  # DATA_DIR/reports/my-run/index.html
edgecl report --run my-run --out plots/
edgecl report --bench b1                    # a continual benchmark: accuracy and forgetting
"""

from __future__ import annotations

from pathlib import Path

import typer


def report(
    run: str = typer.Option(None, "--run", help="The run to plot (edgecl runs list)."),
    bench: str = typer.Option(None, "--bench", help="A benchmark to plot (edgecl bench)."),
    out: Path = typer.Option(None, "--out", help="Folder to write (default: the data dir's)."),
) -> None:
    """Plot a run (lambda, cloud ratio against tau, reward, accuracy) or a benchmark."""
    from edgecl import paths
    from edgecl.errors import EdgeclError
    from edgecl.store import Store

    if (run is None) == (bench is None):
        raise EdgeclError("give one of --run NAME and --bench ID")
    store = Store()
    try:
        folder = out or paths.data_dir() / "reports" / (run or bench)
        if run is not None:
            from edgecl.report import report as write_report

            pngs = write_report(store, run, folder)
        else:
            from edgecl.bench.plots import bench_report

            pngs = bench_report(store, bench, folder)
    finally:
        store.close()
    typer.echo(f"wrote {len(pngs)} plots, their CSVs and {folder / 'index.html'}")
