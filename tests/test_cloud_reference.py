"""The reference cloud: gold answers in the protocol format, wrong at a seeded, exact rate."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from edgecl.cloud import OpenAICloud, ReferenceCloud, make_cloud
from edgecl.errors import EdgeclError

MESSAGES = [{"role": "user", "content": "What is 40 + 2?"}]


def math_task() -> SimpleNamespace:
    return SimpleNamespace(
        kind="math",
        gold_answer=lambda item: "\\boxed{" + str(item.answer) + "}",
        gold_steps=lambda item: [f"Add the numbers to get {item.answer}."],
    )


def qa_task() -> SimpleNamespace:
    return SimpleNamespace(
        kind="qa",
        gold_answer=lambda item: "\\boxed{" + item.answer + "}",
        gold_steps=lambda item: ["Compare the options.", f"Option {item.answer} fits."],
    )


def code_task() -> SimpleNamespace:
    return SimpleNamespace(
        kind="code",
        gold_answer=lambda item: "```python\ndef add(a, b):\n    return a + b\n```",
        gold_steps=lambda item: ["Return the sum."],
    )


def items(n: int, answer=42, choices=None) -> list[SimpleNamespace]:
    return [SimpleNamespace(id=f"i{k}", answer=answer, choices=choices) for k in range(n)]


def body(text: str) -> str:
    match = re.fullmatch(r"<think>\n(Step \d+: .+\n)+</think>\n<answer>(.*)</answer>", text, re.S)
    assert match, f"not in the protocol format: {text!r}"
    return match.group(2)


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECL_HOME", str(tmp_path))


def test_accuracy_one_returns_gold_in_protocol_format():
    task, cloud = math_task(), ReferenceCloud(math_task(), accuracy=1.0)
    for item in items(20):
        reply = cloud.complete(MESSAGES, item=item)
        assert reply.ok and reply.status == "ok" and reply.simulated and reply.attempts == 1
        assert reply.text == (
            "<think>\nStep 1: Add the numbers to get 42.\n</think>\n<answer>\\boxed{42}</answer>"
        )
        assert body(reply.text) == task.gold_answer(item)
        assert reply.prompt_tokens > 0 and reply.completion_tokens > 0
    assert "simulated" in cloud.name and "reference" in cloud.name


@pytest.mark.parametrize(
    "task, answer, choices",
    [
        (math_task(), 42, None),
        (math_task(), "-3/4", None),
        (math_task(), "2.50", None),
        (math_task(), "x + 1", None),
        (qa_task(), "B", ["red", "green", "blue", "pink"]),
        (code_task(), None, None),
    ],
)
def test_accuracy_zero_is_always_wrong_but_well_formatted(task, answer, choices):
    cloud = ReferenceCloud(task, accuracy=0.0, seed=3)
    for item in items(50, answer=answer, choices=choices):
        wrong = body(cloud.complete(MESSAGES, item=item).text)
        assert wrong != task.gold_answer(item)
        if task.kind == "qa":
            assert re.fullmatch(r"\\boxed\{[ACD]\}", wrong)
        elif task.kind == "code":
            assert wrong.startswith("```python\n") and wrong.endswith("\n```")
            with pytest.raises(AssertionError):
                exec(wrong.removeprefix("```python\n").removesuffix("```"), {})
        else:
            assert re.fullmatch(r"\\boxed\{.+\}", wrong)


def test_accuracy_is_met_over_many_items():
    task = math_task()
    cloud = ReferenceCloud(task, accuracy=0.7, seed=0)
    right = [body(cloud.complete(MESSAGES, item=i).text) == task.gold_answer(i) for i in items(500)]
    assert 0.63 < sum(right) / 500 < 0.77


def test_deterministic_per_seed_and_resumable():
    task = math_task()
    pool = items(40)

    def run(cloud: ReferenceCloud, rounds: int) -> list[str]:
        return [cloud.complete(MESSAGES, item=i).text for _ in range(rounds) for i in pool]

    first = run(ReferenceCloud(task, accuracy=0.5, seed=7), 2)
    assert first == run(ReferenceCloud(task, accuracy=0.5, seed=7), 2)
    assert first != run(ReferenceCloud(task, accuracy=0.5, seed=8), 2)
    # a repeated question may get a different answer (the call counter is part of the draw) ...
    assert first[:40] != first[40:]
    # ... and a resumed cloud that restores the counters continues exactly
    crashed = ReferenceCloud(task, accuracy=0.5, seed=7)
    run(crashed, 1)
    resumed = ReferenceCloud(task, accuracy=0.5, seed=7)
    resumed.load_state_dict(crashed.state_dict())
    assert run(resumed, 1) == first[40:]


def test_needs_the_item():
    with pytest.raises(EdgeclError, match="item"):
        ReferenceCloud(math_task()).complete(MESSAGES)


def test_make_cloud_specs():
    cloud = make_cloud("reference", task=math_task())
    assert isinstance(cloud, ReferenceCloud) and cloud.accuracy == 1.0
    cloud = make_cloud("reference:0.8", task=math_task(), seed=5)
    assert (cloud.accuracy, cloud.seed) == (0.8, 5)
    cloud = make_cloud("openai", base_url="http://127.0.0.1:9/v1", model="m", timeout_s=None)
    assert isinstance(cloud, OpenAICloud) and cloud.timeout_s == 60
    assert make_cloud("openai:m2", base_url="http://127.0.0.1:9/v1").model == "m2"
    for bad in ["reference:high", "reference:1.5", "openai", "gemini"]:
        with pytest.raises(EdgeclError):
            make_cloud(bad, task=math_task(), base_url="http://127.0.0.1:9/v1")
    with pytest.raises(EdgeclError, match="--task"):
        make_cloud("reference")


def test_unknown_kind_and_bad_accuracy_are_clear_errors():
    with pytest.raises(EdgeclError, match="math, code and qa"):
        ReferenceCloud(SimpleNamespace(kind="chess"))
    with pytest.raises(EdgeclError, match=r"\[0, 1\]"):
        ReferenceCloud(math_task(), accuracy=-0.1)
