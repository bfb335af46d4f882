"""`edgecl calibrate`: measure the learner's confidence in asking, for a budget knob at answer
time that needs no retraining (edgecl.calibration).

edgecl calibrate --task math                  # 300 train items, the current adapter version
edgecl eval --task math --budget 0.2          # then: the offload rate at tau 0.2, on eval
"""

from __future__ import annotations

import typer

from edgecl.errors import EdgeclError


def calibrate(
    task: str = typer.Option(..., "--task", help="Task name or a .jsonl file."),
    items: int = typer.Option(300, min=10, help="Calibration items (from the train split)."),
    learner: str = typer.Option("default", help="Whose current adapter to calibrate."),
    model: str = typer.Option(None, help="Model name or path (default: bundled)."),
    max_tokens: int = typer.Option(128, "--max-tokens", min=8, help="Response limit."),
) -> None:
    """Measure P(help) on calibration items and store it with the current adapter version."""
    from edgecl import learner as learners
    from edgecl.calibration import calibration_record, threshold_summary
    from edgecl.cli.eval import _load_model
    from edgecl.cloud import make_cloud
    from edgecl.evaluate import evaluate
    from edgecl.store import Store
    from edgecl.tasks.registry import get_task

    store = Store()
    try:
        me = learners.load(store, learner)
        if me is None or me.current is None:
            raise EdgeclError(f"learner {learner!r} has no adapter yet: run `edgecl learn` first")
        the_task = get_task(task)
        local = _load_model(model, learners.version_path(me))
        cloud = make_cloud("reference", task=the_task)
        report = evaluate(local, the_task, cloud, items, max_tokens, split="train")
        me.calibration = calibration_record(report, me.current, task)
        learners.save(store, me)
    finally:
        store.close()
    c = me.calibration
    asked = len(c["asked_scores"])
    typer.echo(f"learner {learner}, version {me.current}: asks on {asked}/{c['n_items']} "
               f"calibration items")  # fmt: skip
    for line in threshold_summary(c["asked_scores"], c["n_items"]):
        typer.echo(f"  {line}")
