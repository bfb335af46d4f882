"""Plots of a continual benchmark (`edgecl report --bench ID`), from its SQLite rows.

- per task order: each task's accuracy (local-solved, and joint dashed) over the training
  steps, one colour per method, the task switches marked;
- per kind of response: the forgetting rate of each method on each task, as grouped bars
  (a task whose during-task accuracy is 0 has none: its bar is left out and labelled n/a).

Each PNG has a CSV of its series beside it, and index.html holds them all.
"""

from __future__ import annotations

from pathlib import Path

from edgecl.errors import EdgeclError
from edgecl.report import write_csv, write_page


def bench_report(store, bench: str, out: Path) -> list[Path]:
    """Write the plots, their CSVs and index.html of benchmark `bench` into `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points, rows = store.bench(bench)
    if not points:
        raise EdgeclError(f"no benchmark {bench!r} in the database (see edgecl bench continual)")
    out.mkdir(parents=True, exist_ok=True)
    methods = list(dict.fromkeys(p["method"] for p in points))
    figures = []
    for k, sequence in enumerate(dict.fromkeys(p["sequence"] for p in points)):
        tasks = sequence.split(",")
        mine = sorted((p for p in points if p["sequence"] == sequence),
                      key=lambda p: (p["method"], p["task"], p["step"]))  # fmt: skip
        fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4.2), dpi=100,
                                 sharey=True, squeeze=False)  # fmt: skip
        last = max(p["phase"] for p in mine)  # a switch follows the end of each earlier phase
        switches = [max(p["step"] for p in mine if p["phase"] == k) for k in range(1, last)]
        for ax, task in zip(axes[0], tasks):
            for m, method in enumerate(methods):
                series = [p for p in mine if p["method"] == method and p["task"] == task]
                steps = [p["step"] for p in series]
                ax.plot(steps, [p["local_acc"] for p in series], ".-", color=f"C{m}",
                        label=f"{method} local")  # fmt: skip
                ax.plot(steps, [p["joint_acc"] for p in series], "--", color=f"C{m}",
                        alpha=0.6, label=f"{method} joint")  # fmt: skip
            for s in switches:
                ax.axvline(s + 0.5, color="k", linestyle=":")
            ax.set(title=Path(task).name, xlabel="training step (dotted: task switch)",
                   ylim=(-0.02, 1.02))  # fmt: skip
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("accuracy")
        axes[0][-1].legend(loc="best", fontsize="x-small")
        title = f"Accuracy per task, order {' -> '.join(Path(t).name for t in tasks)}"
        fig.suptitle(f"{title} ({bench})")
        fig.tight_layout()
        png = out / f"accuracy_order{k + 1}.png"
        fig.savefig(png)
        plt.close(fig)
        keys = ("method", "task", "step", "phase", "local_acc", "joint_acc", "cloud_ratio")
        write_csv(png.with_suffix(".csv"), {key: [p[key] for p in mine] for key in keys})
        figures.append((png, title))
    for kind in ("local", "joint"):
        mine = [r for r in rows if r["responses"] == kind]
        tasks = list(dict.fromkeys(r["task"] for r in mine))
        fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(methods) + 2), 4.2), dpi=100)
        width = 0.8 / max(len(tasks), 1)
        for t, task in enumerate(tasks):
            for m, method in enumerate(methods):
                r = next((r for r in mine if (r["method"], r["task"]) == (method, task)), None)
                x = m + (t - (len(tasks) - 1) / 2) * width
                if r is None or r["forgetting"] is None:
                    ax.text(x, 0.01, "n/a", ha="center", va="bottom", fontsize="small")
                    continue
                ax.bar(x, r["forgetting"], width, color=f"C{t}",
                       label=Path(task).name if m == 0 else None)  # fmt: skip
        ax.axhline(0, color="k", linewidth=0.8)
        ax.set_xticks(range(len(methods)), methods)
        ax.set_xlim(-0.6, len(methods) - 0.4)
        name = "local-solved" if kind == "local" else "joint"
        title = f"Forgetting rate, {name} responses"
        ax.set(title=f"{title} ({bench})", ylabel="(during - post) / during, lower is better")
        ax.grid(alpha=0.3, axis="y")
        if ax.get_legend_handles_labels()[0]:  # no bars at all when every during-task acc is 0
            ax.legend(loc="best", fontsize="small")
        fig.tight_layout()
        png = out / f"forgetting_{kind}.png"
        fig.savefig(png)
        plt.close(fig)
        keys = ("method", "task", "during", "post", "forgetting")
        write_csv(png.with_suffix(".csv"), {key: [r[key] for r in mine] for key in keys})
        figures.append((png, title))
    write_page(out, f"edgecl benchmark {bench}", f"{len(methods)} methods.", figures)
    return [p for p, _ in figures]
