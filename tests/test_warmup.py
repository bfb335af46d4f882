"""The capability-based warm-up: help is taught where the model's measured ability is low.

.venv/bin/python -m pytest tests/test_warmup.py -q
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgecl import warmup
from edgecl.backends.mlx_backend import MLXModel
from edgecl.config import Phase, TrainConfig
from edgecl.core.protocol import STOP_STRINGS, build_messages, parse_response
from edgecl.tasks.registry import get_task


@pytest.fixture(scope="module")
def mixed_task_file(tmp_path_factory):
    """A user's JSONL task with no difficulty field: easy sums and hard divisions, mixed."""
    rows = []
    for i in range(24):
        a, b = i % 7 + 1, i % 5 + 2
        rows.append({"prompt": f"Add {a} and {b}.", "answer": str(a + b), "split": "train"})
        rows.append(
            {
                "prompt": f"Divide {a * 97} by {b}, to four decimals.",
                "answer": f"{a * 97 / b:.4f}",
                "split": "train",
            }
        )
    path = tmp_path_factory.mktemp("mixed") / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def protocol_dir(tiny_mlx_dir, mixed_task_file, tmp_path_factory):
    """The tiny model taught the answer format (solutions only: it never saw a help request)."""
    from tiny_model import make_protocol_tiny

    task = get_task(str(mixed_task_file))
    return make_protocol_tiny(tiny_mlx_dir, tmp_path_factory.mktemp("p") / "mlx", task)


def help_rate(model, task, prefix: str) -> float:
    items = [it for it in task.items("train") if it.question.startswith(prefix)][:8]
    prompts = [model.chat_ids(build_messages(task.kind, it.question)) for it in items]
    outs = model.sample(prompts, 4, 40, 1.0, stop=STOP_STRINGS, seed=1)
    return float(np.mean([parse_response(o.text, task.kind).requests_help for o in outs]))


def test_help_goes_where_the_measured_ability_is_low(protocol_dir, mixed_task_file, monkeypatch):
    """The capability signal is injected (the tiny model can compute neither kind): the ability
    phase reports the sums solved and the divisions failed. Nothing labels them; after the
    warm-up the model asks on the divisions and not on the sums."""
    from edgecl.backends.base import LoraConfig

    task = get_task(str(mixed_task_file))
    assert {it.difficulty for it in task.items("train")} == {""}

    def measured(model, tasks, n_items, k, max_tokens, seed=0):
        rates = [
            (t, it, float(it.question.startswith("Add"))) for t in tasks for it in t.items("train")
        ]
        return {
            "items": rates,
            "levels": {"injected": {"n": len(rates), "success": 0.5, "mixed": 0}},
        }

    monkeypatch.setattr(warmup, "ability", measured)
    model = MLXModel.load(protocol_dir, "tiny-protocol")
    model.attach_lora(LoraConfig(8, 16, -1), seed=0)
    before = (help_rate(model, task, "Add"), help_rate(model, task, "Divide"))
    config = TrainConfig(
        run_name="w", phases=[Phase(str(mixed_task_file), "0.3", 1)], warmup_steps=30,
        help_steps=40, warmup_lr=1e-3, general_rows=0, probe_size=4, max_tokens=40,
        format_threshold=0.0,  # the format phase is skipped: the model already has the format
    )  # fmt: skip
    events = []
    record = warmup.phase0(model, [task], config, lambda kind, data: events.append(kind))
    assert "format" not in record and record["help"]["steps"] == 40
    assert record["ability"] == {"injected": {"n": 48, "success": 0.5, "mixed": 0}}
    sums, divisions = help_rate(model, task, "Add"), help_rate(model, task, "Divide")
    assert before == (0.0, 0.0)
    assert divisions >= sums + 0.25 and sums <= 0.1, (sums, divisions)


def test_help_is_taught_in_proportion_to_failure_and_never_always():
    """An item solved half the time is demonstrated as help 0.8 x 0.5 of the time; one never
    solved 0.8 of the time, so its groups of samples still mix asking and answering."""
    task = get_task("math-easy")
    item = task.items("train")[0]
    rng = np.random.default_rng(0)
    for p, want in ((0.5, 0.4), (0.0, warmup.HELP_CEILING), (1.0, 0.0)):
        targets = [warmup._by_ability([(task, item, p)], rng)[2] for _ in range(400)]
        share = np.mean([t == warmup.help_request(task, item) for t in targets])
        assert abs(share - want) < 0.07, (p, share)
    assert warmup.HELP_CEILING < 1
