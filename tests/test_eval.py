"""`edgecl eval` and edgecl.evaluate: greedy eval-split metrics, stored in the `evals` table.

.venv/bin/python -m pytest tests/test_eval.py -q
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from edgecl.backends.base import Completion, LoraConfig
from edgecl.cloud import make_cloud
from edgecl.core.protocol import build_messages, format_help_request, format_response
from edgecl.evaluate import (
    COLUMNS,
    HELP_BRANCH,
    auroc,
    evaluate,
    help_branches,
    help_probabilities,
    record,
    report_from_row,
)
from edgecl.store import Store
from edgecl.tasks.registry import get_task

QUESTIONS = [
    ("What is 2+3?", "5"),
    ("What is 7-4?", "3"),
    ("What is 12+30?", "42"),
    ("What is 9-9?", "0"),
    ("What is 6+7?", "13"),
    ("What is 25+17?", "42"),
]


@pytest.fixture
def task_file(tmp_path) -> Path:
    path = tmp_path / "sums.jsonl"
    rows = [{"prompt": q, "answer": a, "split": "eval"} for q, a in QUESTIONS]
    rows.append({"prompt": "What is 1+1?", "answer": "2", "split": "train"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


class ScriptedModel:
    """A sampler that answers each question with a fixed text: known metrics, no weights."""

    name = "scripted"

    def __init__(self, answers: dict[str, tuple[str, bool]]):
        self.answers = answers  # question -> (response text, truncated)
        self.prompts: list[str] = []
        self.calls: list[dict] = []

    def chat_ids(self, messages: list[dict]) -> list[int]:
        self.prompts.append(messages[-1]["content"])
        return [len(self.prompts) - 1]

    class tokenizer:  # one id per word: enough for the help score's bookkeeping
        @staticmethod
        def encode(text: str, add_special_tokens: bool = False) -> list[int]:
            return [7] * len(text.split())

    def sequence_logprobs(self, prompts, completions):
        return [np.full(len(c), -0.5) for c in completions]  # P(trigger) the same everywhere

    def sample(self, prompts, group_size, max_tokens, temperature, top_p=1.0, stop=(), seed=None):
        self.calls.append({"n": len(prompts), "group_size": group_size, "t": temperature})
        out = []
        for p, ids in enumerate(prompts):
            question = next(q for q in self.answers if self.prompts[ids[0]].startswith(q))
            text, truncated = self.answers[question]
            tokens = list(range(max_tokens if truncated else len(text.split())))
            out.append(Completion(p, tokens, [0.0] * len(tokens), text, *_finish(truncated)))
        return out


def _finish(truncated: bool) -> tuple[str, str | None]:
    return ("length", None) if truncated else ("stop", "</answer>")


def test_metrics_follow_their_definitions(task_file):
    task = get_task(str(task_file))
    steps = ["Add the numbers."]
    answers = {
        "What is 2+3?": (format_response(steps, "\\boxed{5}"), False),  # local, right
        "What is 7-4?": (format_response(steps, "\\boxed{4}"), False),  # local, wrong
        "What is 12+30?": (format_help_request(steps), False),  # asks; the cloud is right
        "What is 9-9?": ("The answer is \\boxed{0}", False),  # right but unformatted
        "What is 6+7?": ("<think>\nStep 1: 6+7", True),  # truncated
        "What is 25+17?": ("I need external assistance.", False),  # asks, no steps
    }
    model = ScriptedModel(answers)
    report = evaluate(model, task, make_cloud("reference", task=task), max_tokens=16, batch_size=4)
    assert [c["n"] for c in model.calls] == [4, 1, 2]  # batches of <= 4; 1 made to answer
    assert all(c["group_size"] == 1 and c["t"] == 0.0 for c in model.calls)  # greedy, G=1
    assert report["n"] == 6 and [r["id"] for r in report["items"]] == [
        i.id for i in task.items("eval")
    ]
    assert report["local_acc"] == pytest.approx(1 / 6)
    assert report["joint_acc"] == pytest.approx(2 / 6)  # + the composed, well-formatted help
    assert report["cloud_ratio"] == pytest.approx(2 / 6)
    assert report["format_violation_rate"] == pytest.approx(3 / 6)
    assert report["n_cloud_calls"] == 2 and report["n_cloud_failed"] == 0
    asked = {r["id"] for r in report["items"] if r["help"]}
    assert {c["item_id"] for c in report["cloud_calls"]} == asked and len(asked) == 2
    by_question = dict(zip([q for q, _ in QUESTIONS], report["items"]))
    assert by_question["What is 12+30?"]["correct"] and by_question["What is 12+30?"]["help"]
    assert not by_question["What is 12+30?"]["local_correct"]
    assert by_question["What is 6+7?"]["violation"] == "truncated"
    assert by_question["What is 6+7?"]["tokens"] == 16
    assert report["mean_tokens"] == pytest.approx(sum(r["tokens"] for r in report["items"]) / 6)
    # Made to answer, 12+30's scripted text is no answer, so it would fail; only 2+3 succeeds.
    assert [r["would_fail"] for r in report["items"]] == [False, True, True, True, True, True]
    # P(help): stopping after a step to ask (here the same 0.08 for every response with a whole
    # step line), 1 for a trigger without steps, 0 for no step and no trigger.
    assert report["help_auroc"] == pytest.approx((1 + 0.5 * 2) / 5)
    assert report["levels"]["all"]["n"] == 6
    assert report["levels"]["all"]["help"] == pytest.approx(2 / 6)


def test_p_help_is_the_likeliest_help_request_at_a_step_end(tiny_mlx_dir):
    """A help request is a step then the trigger, so P(help) is scored where one could start:
    at the end of each think step (not at `<answer>`, where a request has already stopped
    thinking); the largest of those probabilities."""
    from edgecl.backends.mlx_backend import MLXModel

    model = MLXModel.load(tiny_mlx_dir, "tiny")
    encode = lambda t: model.tokenizer.encode(t, add_special_tokens=False)  # noqa: E731
    response = format_response(["Read it.", "The answer is 5."], "\\boxed{5}")
    splits = help_branches(encode, response)
    assert len(splits) == 2
    for (head, branch), step in zip(splits, ("Step 1: Read it.\n", "Step 2: The answer is 5.\n")):
        end = response.index(step) + len(step)
        assert model.tokenizer.decode(head + branch) == response[:end] + HELP_BRANCH
    assert help_branches(encode, "Five.") == [] and help_branches(encode, "<think>\nStep 1") == []
    prompt = model.chat_ids(build_messages("math", "What is 2+3?"))
    p = help_probabilities(model, [prompt], [Completion(0, [], [], response, "stop")])[0]
    heads, branches = [prompt + h for h, _ in splits], [b for _, b in splits]
    each = [math.exp(float(lp.sum())) for lp in model.sequence_logprobs(heads, branches)]
    assert p == pytest.approx(max(each), rel=1e-5, abs=0) and each[0] != each[1]


def test_auroc_by_hand():
    assert auroc([0.9, 0.8, 0.1], [True, True, False]) == 1.0
    assert auroc([0.1, 0.8, 0.9], [True, False, False]) == 0.0
    assert auroc([0.5, 0.5, 0.2, 0.7], [True, False, True, False]) == pytest.approx(0.125)
    assert auroc([0.3, 0.4], [True, True]) is None


def test_tiny_model_report_is_consistent_and_stored(tiny_model, task_file):
    task = get_task(str(task_file))
    cloud = make_cloud("reference", task=task)
    report = evaluate(tiny_model, task, cloud, limit=5, max_tokens=16, batch_size=2)
    items = report["items"]
    assert report["n"] == len(items) == 5
    assert [r["id"] for r in items] == [i.id for i in task.items("eval")[:5]]
    assert all(0 < r["tokens"] <= 16 for r in items)
    for key in ("local_acc", "joint_acc", "cloud_ratio", "format_violation_rate"):
        assert 0.0 <= report[key] <= 1.0, key
    assert report["joint_acc"] >= report["local_acc"]
    assert report["local_acc"] * 5 == sum(r["local_correct"] for r in items)
    assert all(r["correct"] for r in items if r["local_correct"])
    assert report["cloud_ratio"] * 5 == sum(r["help"] for r in items)
    assert report["n_cloud_calls"] == sum(r["help"] for r in items)  # G=1: one call per ask
    assert report["mean_tokens"] == pytest.approx(np.mean([r["tokens"] for r in items]))
    assert report["simulated"] and report["cloud"].startswith("reference")

    # Greedy decoding: the batch size changes nothing.
    again = evaluate(tiny_model, task, cloud, limit=5, max_tokens=16, batch_size=8)
    assert again["items"] == items

    store = Store()
    row_id = record(store, None, None, str(task_file), "eval", report)
    (row,) = store.evals()
    assert row["id"] == row_id and row["run"] is None and row["adapter"] is None
    assert row["task"] == str(task_file) and row["split"] == "eval"
    assert {k: row[k] for k in COLUMNS} == {k: report[k] for k in COLUMNS}
    assert report_from_row(row) == report


def test_fresh_adapter_leaves_greedy_answers_unchanged(tiny_mlx_dir, task_file, tmp_path):
    from edgecl.backends.mlx_backend import MLXModel

    task = get_task(str(task_file))
    cloud = make_cloud("reference", task=task)
    base = MLXModel.load(tiny_mlx_dir, "tiny-llama")
    with_lora = MLXModel.load(tiny_mlx_dir, "tiny-llama")
    with_lora.attach_lora(LoraConfig(rank=4, alpha=8))  # lora_b starts at zero
    with_lora.save_adapter(tmp_path / "zero")
    loaded = MLXModel.load(tiny_mlx_dir, "tiny-llama")
    loaded.load_adapter(tmp_path / "zero")
    a = evaluate(base, task, cloud, limit=3, max_tokens=16)
    b = evaluate(loaded, task, cloud, limit=3, max_tokens=16)
    assert a["items"] == b["items"]


def _random_adapter(tiny_mlx_dir, directory: Path) -> Path:
    """An edgecl adapter for the tiny model whose B matrices are not zero: it changes outputs."""
    import mlx.core as mx

    from edgecl.backends.mlx_backend import MLXModel

    model = MLXModel.load(tiny_mlx_dir, "tiny-llama")
    model.attach_lora(LoraConfig(rank=4, alpha=8), seed=0)
    rng = np.random.default_rng(0)
    weights = [
        (k, mx.array(rng.standard_normal(v.shape).astype(np.float32) * 0.5))
        for k, v in model.trainable().items()
        if k.endswith("lora_b")
    ]
    model.model.load_weights(weights, strict=False)
    return model.save_adapter(directory)


def test_cli_eval_base_vs_adapter_stores_the_adapter(tiny_mlx_dir, task_file, tmp_path):
    home = tmp_path / "home"
    adapter = _random_adapter(tiny_mlx_dir, tmp_path / "adapter")
    common = ("eval", "--task", str(task_file), "--model", str(tiny_mlx_dir), "--limit", "3")
    base = run_cli(*common, "--max-tokens", "16", "--json", home=home)
    assert base.returncode == 0, base.stderr
    tuned = run_cli(*common, "--max-tokens", "16", "--adapter", str(adapter), "--json", home=home)
    assert tuned.returncode == 0, tuned.stderr
    out_base, out_tuned = json.loads(base.stdout), json.loads(tuned.stdout)
    assert out_base["adapter"] is None and out_tuned["adapter"] == str(adapter.resolve())
    assert out_base["n"] == out_tuned["n"] == 3 and out_base["max_tokens"] == 16
    # The adapter was applied: its greedy responses differ from the base model's.
    responses = [[r["response"] for r in o["items"]] for o in (out_base, out_tuned)]
    assert responses[0] != responses[1]

    store = Store(home / "edgecl.db")
    rows = store.evals()
    assert [r["adapter"] for r in rows] == [None, str(adapter.resolve())]
    assert [r["id"] for r in rows] == [out_base["id"], out_tuned["id"]]
    for row, out in zip(rows, (out_base, out_tuned)):
        report = report_from_row(row)
        assert report == {k: out[k] for k in report}


def test_cli_eval_of_a_run_uses_its_checkpoint_and_settings(tiny_mlx_dir, task_file, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    config = {"run_name": "r1", "model": str(tiny_mlx_dir), "max_tokens": 12, "seed": 0,
              "phases": [{"task": str(task_file), "budget": "0.3", "steps": 1}]}  # fmt: skip
    Store(home / "edgecl.db").create_run("r1", config, str(task_file))
    checkpoint = _random_adapter(tiny_mlx_dir, home / "runs" / "r1" / "adapter")
    result = run_cli("eval", "--task", str(task_file), "--run", "r1", "--limit", "2", home=home)
    assert result.returncode == 0, result.stderr
    assert "joint accuracy" in result.stdout and "local-solved-only accuracy" in result.stdout
    (row,) = Store(home / "edgecl.db").evals(run="r1")
    assert row["adapter"] == str(checkpoint.resolve()) and row["n"] == 2
    assert row["details"]["max_tokens"] == 12  # the run's response limit
    assert all(r["tokens"] <= 12 for r in row["details"]["items"])


@pytest.mark.parametrize(
    "args, message",
    [
        (("--run", "nope"), "no run named 'nope'"),
        (("--adapter", "/no/such/adapter"), "no such adapter directory"),
        (("--run", "x", "--adapter", "/tmp"), "give one of --run, --adapter and --base"),
        (("--run", "x", "--base"), "give one of --run, --adapter and --base"),
    ],
)
def test_cli_eval_bad_input_is_one_line(args, message, task_file, edgecl_home):
    result = run_cli("eval", "--task", str(task_file), *args, home=edgecl_home)
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_cli_eval_unknown_task_and_missing_checkpoint_are_one_line(edgecl_home):
    result = run_cli("eval", "--task", "no-such-task", home=edgecl_home)
    assert result.returncode == 1 and "unknown task 'no-such-task'" in result.stderr
    assert result.stderr.count("\n") == 1
    Store().create_run("fresh", {"seed": 0}, "math")
    result = run_cli("eval", "--task", "math", "--run", "fresh", home=edgecl_home)
    assert result.returncode == 1 and "has no checkpoint" in result.stderr
    assert result.stderr.count("\n") == 1


def test_cli_eval_takes_the_cloud_endpoint_options(tiny_mlx_dir, task_file, edgecl_home):
    common = ("eval", "--task", str(task_file), "--model", str(tiny_mlx_dir), "--limit", "1")
    endpoint = ("--cloud", "openai", "--cloud-model", "helper", "--max-tokens", "8")
    local = run_cli(*common, *endpoint, "--cloud-url", "http://127.0.0.1:9/v1", "--json")
    assert local.returncode == 0, local.stderr
    assert json.loads(local.stdout)["cloud"] == "openai:helper@127.0.0.1"
    remote = ("--cloud-url", "https://api.example.com/v1", "--cloud-key-env", "EDGECL_NO_KEY")
    missing = run_cli(*common, *endpoint, *remote, home=edgecl_home)
    assert missing.returncode == 1 and "set EDGECL_NO_KEY" in missing.stderr, missing.stderr
    assert missing.stderr.count("\n") == 1
