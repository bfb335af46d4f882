"""Code tasks: HumanEval and the generated tier, splits, and verification in the sandbox."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import pytest

from edgecl.tasks.base import MAX_STEPS
from edgecl.tasks.code_tasks import CodeTask, unseen_easy_items
from edgecl.tasks.registry import get_task


def _code(gold: str) -> str:
    """The body of a ```python block."""
    assert gold.startswith("```python\n") and gold.endswith("\n```")
    return gold[len("```python\n") : -len("\n```")]


def test_humaneval_split_is_124_40_disjoint_and_covers_all_164():
    task = CodeTask("hard")
    train, eval_ = task.items("train"), task.items("eval")
    assert (len(train), len(eval_)) == (124, 40)
    ids = {i.id for i in train} | {i.id for i in eval_}
    assert ids == {f"code/humaneval/{n}" for n in range(164)}
    assert {i.difficulty for i in train + eval_} == {"hard"}
    assert [i.id for i in CodeTask("hard").items("eval")] == [i.id for i in eval_]
    assert {i.id for i in CodeTask("hard", seed=3).items("eval")} != {i.id for i in eval_}
    assert get_task("code-hard").name == get_task("code-humaneval").name == "code-humaneval"


def test_easy_tier_has_hundreds_of_distinct_items_in_fixed_disjoint_splits():
    task = CodeTask("easy")
    train, eval_ = task.items("train"), task.items("eval")
    assert len(train) + len(eval_) >= 300 and len(eval_) >= 60
    assert not {i.id for i in train} & {i.id for i in eval_}
    assert len({i.question for i in train + eval_}) == len(train) + len(eval_)
    levels = [i.difficulty for i in train + eval_]
    assert set(levels) == {"1-arith", "2-string", "3-list", "4-loop"}
    assert {i.difficulty for i in train + eval_ if i.entry_point == "factorial"} == {"4-loop"}
    assert {i.difficulty for i in train + eval_ if i.entry_point.startswith("add_")} == {"1-arith"}
    assert [i.id for i in CodeTask("easy").items("train")] == [i.id for i in train]


def test_unseen_easy_items_are_new_problems_of_the_same_templates():
    task = CodeTask("easy")
    known = task.items("train") + task.items("eval")
    unseen = unseen_easy_items()
    assert len(unseen) >= 300 and len({i.id for i in unseen}) == len(unseen)
    assert not {i.id for i in unseen} & {i.id for i in known}
    assert not {i.question for i in unseen} & {i.question for i in known}
    assert {i.entry_point for i in unseen} >= {"add_31", "add_120", "power_7", "scale_by_31"}
    assert {i.difficulty for i in unseen} == {"1-arith", "2-string", "3-list", "4-loop"}
    for item in unseen[::7]:  # their asserts hold for their reference solutions
        exec(_code(task.gold_answer(item)) + "\n" + item.tests, {})


def test_mix_is_the_union_of_both_tiers():
    mix = CodeTask("mix")
    for split in ("train", "eval"):
        expected = {i.id for i in CodeTask("easy").items(split)}
        expected |= {i.id for i in CodeTask("hard").items(split)}
        assert {i.id for i in mix.items(split)} == expected
    assert get_task("code").kind == "code"


def test_every_easy_reference_solution_passes_its_asserts():
    # in-process (our own trusted code) for all of them; the sandbox path is tested below
    task = CodeTask("easy")
    for item in task.items("train") + task.items("eval"):
        namespace: dict = {}
        exec(_code(task.gold_answer(item)) + "\n" + item.tests, namespace)
        assert item.entry_point in namespace
        assert item.tests.count("assert ") >= 3


def test_easy_items_verify_in_the_sandbox_right_and_wrong():
    task = CodeTask("easy")
    items = random.Random(0).sample(task.items("train") + task.items("eval"), 12)
    with ThreadPoolExecutor(2) as pool:
        right = list(pool.map(lambda i: task.verify(i, _code(task.gold_answer(i))), items))
        wrong = list(
            pool.map(
                lambda i: task.verify(i, f"def {i.entry_point}(*args):\n    return None\n"), items
            )
        )
    assert all(right) and not any(wrong)


def test_bad_answers_fail():
    task = CodeTask("easy")
    item = next(i for i in task.items("train") + task.items("eval") if i.entry_point == "add")
    assert task.verify(item, "def add(a, b):\n    return a + b\n")
    assert not task.verify(item, "def add(a, b):\n    return a - b\n")
    assert not task.verify(item, "def add(a, b) return a + b")
    assert not task.verify(item, "")
    # leaving before the asserts run is not a pass
    assert not task.verify(item, "import sys\nsys.exit(0)\ndef add(a, b):\n    return 0\n")


def test_humaneval_verification_uses_the_prompt_context_and_checks():
    task = CodeTask("hard")
    items = {i.id: i for i in task.items("train") + task.items("eval")}
    item = items["code/humaneval/10"]  # make_palindrome uses is_palindrome from the prompt
    assert item.entry_point == "make_palindrome"
    candidate = (
        "def make_palindrome(string: str) -> str:\n"
        "    if not string:\n"
        "        return ''\n"
        "    beginning_of_suffix = 0\n"
        "    while not is_palindrome(string[beginning_of_suffix:]):\n"
        "        beginning_of_suffix += 1\n"
        "    return string + string[:beginning_of_suffix][::-1]\n"
    )
    assert task.verify(item, candidate)
    assert not task.verify(item, "def make_palindrome(string: str) -> str:\n    return string\n")
    # the prompt alone (a docstring-only function) does not pass
    assert not task.verify(item, "pass")
    first = items["code/humaneval/0"]
    assert task.verify(first, _code(task.gold_answer(first)))
    assert "```python" in first.question and first.entry_point in first.question


def test_gold_steps_fit_the_code_step_limit():
    task = CodeTask("mix")
    for item in task.items("eval"):
        steps = task.gold_steps(item)
        assert 1 <= len(steps) <= MAX_STEPS["code"]
        assert item.entry_point in " ".join(steps)


@pytest.mark.parametrize("level", ["easy", "hard"])
def test_items_have_tests_and_entry_points(level):
    for item in CodeTask(level).items("eval"):
        assert (
            item.tests and item.entry_point and item.answer.startswith(("def ", "from", "import"))
        )
