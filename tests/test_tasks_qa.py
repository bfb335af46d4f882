"""QA: the shipped QuaRTz data, its split, and the letter verifier."""

from __future__ import annotations

import pytest

from edgecl.tasks.base import MAX_STEPS
from edgecl.tasks.qa import QATask, verify_choice
from edgecl.tasks.registry import get_task


@pytest.fixture(scope="module")
def task() -> QATask:
    return QATask()


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
