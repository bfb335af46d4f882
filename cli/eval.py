"""`edgecl eval`: greedy accuracy of the local model on a task's eval split, with cloud help.

edgecl eval --task math                          # the learner's current adapter, else the base
edgecl eval --task math --base                   # the base model
edgecl eval --task math --run my-run             # a run's latest checkpoint (and its model)
edgecl eval --task math-easy --adapter ./adapter --limit 50 --json
edgecl eval --task math --run my-run --split unseen      # eval problems in unseen phrasings
edgecl eval --task math --run edge --router naive-router --budget 0.3   # a routing baseline
edgecl eval --task math --run my-run --cloud openai --cloud-model NAME \
    --cloud-url http://127.0.0.1:8080/v1 --cloud-key-env OPENAI_API_KEY

Prints local-solved-only accuracy, joint accuracy, cloud ratio, format violations, mean
response tokens, cloud calls, the help AUROC and the same per level, and stores the result in
the `evals` table.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from edgecl.errors import EdgeclError


def eval_(
    task: str = typer.Option(..., "--task", help="Task name (math, code, qa, ...) or a .jsonl."),
    run: str = typer.Option(None, "--run", help="Evaluate this run's checkpoint adapter."),
    adapter: Path = typer.Option(None, "--adapter", help="Evaluate this LoRA adapter directory."),
    learner: str = typer.Option("default", help="Whose current adapter to evaluate by default."),
    base: bool = typer.Option(False, "--base", help="Evaluate the base model, no adapter."),
    budget: float = typer.Option(
        None,
        min=0,
        max=1,
        help="Also: offloads at this tau with the "
        "learner's calibrated threshold (edgecl calibrate).",
    ),
    model: str = typer.Option(None, help="Model name or path (default: the run's, or bundled)."),
    limit: int = typer.Option(None, min=1, help="Only the first N eval items."),
    split: str = typer.Option("eval", help="eval, or unseen (math: unseen phrasings)."),
    max_tokens: int = typer.Option(
        None, "--max-tokens", min=8, help="Response limit (default: the run's, else 128)."
    ),
    cloud: str = typer.Option(
        None, help="reference, reference:ACC or openai:MODEL (default: the run's, else reference)."
    ),
    cloud_url: str = typer.Option(None, help="OpenAI-compatible base URL, e.g. .../v1."),
    cloud_model: str = typer.Option(None, help="Model name at the cloud endpoint."),
    cloud_key_env: str = typer.Option(None, help="Env var holding the API key (never stored)."),
    seed: int = typer.Option(None, help="Task seed (default: the run's, else 0)."),
    router: str = typer.Option(
        None, help="A routing baseline instead: naive-router, router or cloud-only (--budget)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Evaluate the learner's current adapter, a run's checkpoint, an adapter or the base model."""
    from edgecl import learner as learners
    from edgecl.cloud import make_cloud
    from edgecl.store import Store
    from edgecl.tasks.registry import get_task

    if (run is not None) + (adapter is not None) + base > 1:
        raise EdgeclError("give one of --run, --adapter and --base")
    store = Store()
    try:
        config = {}
        if run is not None:
            row = store.get_run(run)
            if row is None:
                raise EdgeclError(f"no run named {run!r}: see `edgecl runs list`")
            config = row["config"] or {}
            adapter = _checkpoint(run)
        elif adapter is not None and not adapter.is_dir():
            raise EdgeclError(f"no such adapter directory: {adapter}")
        elif adapter is None and not base:
            me = learners.load(store, learner)
            adapter = learners.version_path(me) if me else None
        thr = None
        if router is not None and router != "cloud-only" and budget is None:
            raise EdgeclError(f"--router {router} offloads a tau fraction: give --budget TAU")
        if budget is not None and router is None:
            thr = learners.calibrated_threshold(learners.load(store, learner), budget)
            if thr is None or run is not None or base:
                raise EdgeclError(
                    f"--budget needs learner {learner!r}'s current version, calibrated: "
                    "run `edgecl calibrate --task T` first"
                )
        seed = seed if seed is not None else config.get("seed", 0)
        max_tokens = max_tokens or config.get("max_tokens", 128)
        the_task = get_task(task, config.get("verifier"), seed)
        options = {"base_url": cloud_url, "model": cloud_model, "api_key_env": cloud_key_env}
        if cloud is None:  # the run's cloud, with any option given here taking precedence
            cloud = config.get("cloud") or "reference"
            given = {k: v for k, v in options.items() if v is not None}
            options = {**(config.get("cloud_options") or {}), **given}
        the_cloud = make_cloud(cloud, task=the_task, seed=seed, **options)
        adapter_path = str(adapter.resolve()) if adapter is not None else None
        local = _load_model(model or config.get("model"), adapter)

        from edgecl.evaluate import evaluate, record

        if router is not None:
            from edgecl.routing import evaluate_routed

            report = evaluate_routed(local, the_task, the_cloud, router, budget or 1.0, limit,
                                     max_tokens, seed, split, adapter_path)  # fmt: skip
        else:
            report = evaluate(local, the_task, the_cloud, limit, max_tokens, seed, split=split)
        if thr is not None:
            from edgecl.calibration import offload_metrics

            report["calibrated"] = {"tau": budget, **offload_metrics(report["items"], thr)}
        eval_id = record(store, run, adapter_path, task, split, report)
    finally:
        store.close()
    if as_json:
        head = {"id": eval_id, "run": run, "adapter": adapter_path, "model": local.name}
        typer.echo(json.dumps({**head, "task": task, "split": split, **report}))
        return
    _print(report, task, run, adapter_path, local.name)


def _checkpoint(run: str) -> Path:
    from edgecl.backends.adapter_files import saved_adapter
    from edgecl.train import run_dir

    path = saved_adapter(run_dir(run) / "adapter")
    if path is None:
        raise EdgeclError(
            f"run {run!r} has no checkpoint at {run_dir(run) / 'adapter'} yet: let it finish a "
            "step, or evaluate the base model without --run"
        )
    return path


def _load_model(name: str | None, adapter: Path | None):
    from edgecl.backends.mlx_backend import MLXModel
    from edgecl.models.registry import resolve_model

    entry = resolve_model(name)
    local = MLXModel.load(entry.mlx_dir, entry.name)
    if adapter is not None:
        local.load_adapter(adapter)
    return local


def _print(report: dict, task: str, run: str | None, adapter: str | None, model: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    what = f"run {run}" if run else (f"adapter {adapter}" if adapter else "base model")
    n = report["n"]
    table = Table("metric", "value", title=escape(f"{task} eval, {model} ({what}), {n} items"))
    table.add_row("local-solved-only accuracy", f"{report['local_acc']:.3f}")
    table.add_row("joint accuracy (local + cloud)", f"{report['joint_acc']:.3f}")
    table.add_row("cloud ratio", f"{report['cloud_ratio']:.3f}")
    table.add_row("format violations", f"{report['format_violation_rate']:.3f}")
    table.add_row("mean response tokens", f"{report['mean_tokens']:.1f}")
    failed = f", {report['n_cloud_failed']} failed" if report["n_cloud_failed"] else ""
    table.add_row("cloud calls", escape(f"{report['n_cloud_calls']}{failed} ({report['cloud']})"))
    if "router" in report:  # a routing baseline: the model's own help requests play no part
        kept = report["local_subset_acc"]
        table.add_row("accuracy on the items kept local", "n/a" if kept is None else f"{kept:.3f}")
        table.add_row("router", escape(f"{report['router']} at tau {report['tau']:g}"))
        Console().print(table)
        return
    auroc = report["help_auroc"]
    table.add_row("help AUROC vs local failure", "n/a" if auroc is None else f"{auroc:.3f}")
    if "calibrated" in report:
        c = report["calibrated"]
        table.add_row(
            escape(f"at tau {c['tau']:g} (calibrated)"),
            f"offload {c['offload_rate']:.3f}, joint {c['joint_acc']:.3f} "
            f"(random suppression: {c['random_joint_acc']:.3f})",
        )
    Console().print(table)
    levels = Table("level", "items", "local acc", "help", "format", title="per level")
    for name, r in report["levels"].items():
        levels.add_row(
            escape(name), str(r["n"]), f"{r['local_acc']:.2f}", f"{r['help']:.2f}",
            f"{r['format']:.2f}",
        )  # fmt: skip
    Console().print(levels)
