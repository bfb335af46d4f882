"""Plots of a training run: PNGs (matplotlib), a CSV of each plot's series beside it, and one
HTML page that holds them.

    edgecl report --run my-run                 # into DATA_DIR/reports/my-run/
    edgecl report --run my-run --out plots/

The plots, from the run's rows in the `steps` table:
- lambda over steps (the dual variable, eq. 3);
- the cloud ratio J_c per step and its running mean (edgecl.core.dual.RATIO_WINDOW steps)
  against tau, each tau regime shaded (as the paper's figures 4, 5 and 10);
- mean reward and accuracy over steps;
- accuracy per task over the sequence, the task switches marked.
"""

from __future__ import annotations

import csv
import html
from itertools import groupby
from pathlib import Path

from edgecl.core.dual import RATIO_WINDOW
from edgecl.errors import EdgeclError

SHADES = ("#dbe9f6", "#fbe3d6", "#e2f0d9", "#efe0f5")


def write_csv(path: Path, columns: dict[str, list]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(zip(*columns.values()))


def _regimes(steps: list[int], values: list) -> list[tuple[int, int, object]]:
    """(first step, last step, value) of each run of equal consecutive values."""
    out, k = [], 0
    for value, group in groupby(values):
        n = len(list(group))
        out.append((steps[k], steps[k + n - 1], value))
        k += n
    return out


def _shade(ax, steps: list[int], values: list, label: str) -> None:
    for i, (first, last, value) in enumerate(_regimes(steps, values)):
        ax.axvspan(first - 0.5, last + 0.5, color=SHADES[i % len(SHADES)], zorder=0,
                   label=f"{label} {value}")  # fmt: skip


def report(store, run: str, out: Path) -> list[Path]:
    """Write the plots, their CSVs and index.html for `run` into `out`; returns the PNGs."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    rows = store.steps(run)
    if store.get_run(run) is None:
        raise EdgeclError(f"no run named {run!r} (see edgecl runs list)")
    if not rows:
        raise EdgeclError(f"run {run!r} has no steps yet: report it after its first step")
    out.mkdir(parents=True, exist_ok=True)
    step = [r["step"] for r in rows]
    col = {k: [r[k] for r in rows] for k in ("lambda_after", "j_c", "j_c_mean", "tau", "task",
                                             "mean_reward", "accuracy")}  # fmt: skip
    plots = {
        "lambda": ("Dual variable lambda", "lambda", {"step": step, "lambda": col["lambda_after"]}),
        "cloud_ratio": (
            "Cloud ratio J_c against the budget tau",
            "cloud ratio",
            {
                "step": step,
                "j_c": col["j_c"],
                f"j_c_mean{RATIO_WINDOW}": col["j_c_mean"],
                "tau": col["tau"],
            },
        ),  # fmt: skip
        "reward_accuracy": (
            "Mean reward and accuracy",
            "per step",
            {"step": step, "mean_reward": col["mean_reward"], "accuracy": col["accuracy"]},
        ),
        "task_accuracy": (
            "Accuracy per task over the sequence",
            "accuracy",
            {"step": step, "task": col["task"], "accuracy": col["accuracy"]},
        ),
    }
    pngs = []
    for name, (title, ylabel, series) in plots.items():
        fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
        if name == "cloud_ratio":
            _shade(ax, step, series["tau"], "tau")
            ax.plot(step, series["j_c"], ".", color="0.55", label="J_c per step")
            ax.plot(step, series[f"j_c_mean{RATIO_WINDOW}"], "-", color="C0",
                    label=f"J_c, mean of {RATIO_WINDOW} steps")  # fmt: skip
            ax.step(step, series["tau"], "--", where="mid", color="C3", label="tau")
            ax.set_ylim(-0.02, 1.02)
        elif name == "task_accuracy":
            for first, last, task in _regimes(step, col["task"]):
                span = slice(step.index(first), step.index(last) + 1)
                ax.plot(step[span], col["accuracy"][span], ".-", label=Path(str(task)).name)
                if first != step[0]:
                    ax.axvline(first - 0.5, color="k", linestyle=":", label=f"switch at {first}")
            ax.set_ylim(-0.02, 1.02)
        else:
            for key, values in series.items():
                if key != "step":
                    ax.plot(step, values, ".-", label=key.replace("_", " "))
        ax.set(title=f"{title} ({run})", xlabel="training step", ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
        fig.tight_layout()
        png = out / f"{name}.png"
        fig.savefig(png)
        plt.close(fig)
        write_csv(out / f"{name}.csv", series)
        pngs.append(png)
    write_page(out, f"edgecl run {run}", f"{len(rows)} steps.",
               [(p, plots[p.stem][0]) for p in pngs])  # fmt: skip
    return pngs


def write_page(out: Path, title: str, intro: str, figures: list[tuple[Path, str]]) -> None:
    """index.html in `out`: the title, a line of text, and each PNG with its caption and a link
    to the CSV beside it."""
    body = "\n".join(
        f'<figure><img src="{p.name}" alt="{html.escape(caption)}">'
        f'<figcaption>{html.escape(caption)} (<a href="{p.stem}.csv">data</a>)'
        "</figcaption></figure>"
        for p, caption in figures
    )
    (out / "index.html").write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"</head><body><h1>{html.escape(title)}</h1><p>{html.escape(intro)}</p>\n{body}\n"
        "</body></html>\n"
    )
