"""Reward and cost (eqs. 13, 14): literal default, prose flag, and the hierarchical baseline."""

from __future__ import annotations

import pytest

from edgecl.core.protocol import ParsedResponse, format_help_request, format_response
from edgecl.core.rewards import (
    ALPHA_A,
    ALPHA_C,
    ALPHA_F,
    SampleScore,
    hierarchical_reward,
    score_sample,
)
from edgecl.errors import EdgeclError


def boxed_is(gold: str):
    return lambda parsed: parsed.boxed == gold


def never_called(parsed: ParsedResponse) -> bool:
    raise AssertionError("the verifier must not run when its verdict cannot change r")


RIGHT = format_response(["6*7"], "\\boxed{42}")
WRONG = format_response(["6*7"], "\\boxed{41}")
TOO_LONG_RIGHT = format_response(list("abcde"), "\\boxed{42}")
UNBOXED = format_response(["6*7"], "42")
HELP = format_help_request(["hard"])
CLOUD_RIGHT = format_response(["c"], "\\boxed{42}")
CLOUD_WRONG = format_response(["c"], "\\boxed{41}")


def test_constants():
    assert (ALPHA_A, ALPHA_F, ALPHA_C) == (1.0, 0.1, 1.0)


def test_literal_rules():
    assert score_sample(RIGHT, "math", 4, False, boxed_is("42")) == SampleScore(
        False, 1.0, 0.0, RIGHT, None, well_formatted=True, correct=True
    )
    assert score_sample(WRONG, "math", 4, False, boxed_is("42")).reward == 0.0
    # Any format violation: -0.1, correct or not, and the verifier is not even asked.
    assert score_sample(TOO_LONG_RIGHT, "math", 4, False, never_called).reward == -0.1
    assert score_sample(UNBOXED, "math", 4, False, never_called).reward == -0.1
    assert score_sample(RIGHT, "math", 4, True, never_called).reward == -0.1
    assert score_sample(RIGHT, "math", 4, True, never_called).violation == "truncated"


def test_max_steps_is_the_callers():
    assert score_sample(TOO_LONG_RIGHT, "math", 5, False, boxed_is("42")).reward == 1.0
    assert score_sample(TOO_LONG_RIGHT, "math", None, False, never_called).reward == -0.1


def test_prose_variant_penalises_only_correct_answers():
    prose = {"variant": "prose"}
    assert score_sample(RIGHT, "math", 4, False, boxed_is("42"), **prose).reward == 1.0
    assert score_sample(TOO_LONG_RIGHT, "math", 4, False, boxed_is("42"), **prose).reward == -0.1
    too_long_wrong = format_response(list("abcde"), "\\boxed{41}")
    assert score_sample(too_long_wrong, "math", 4, False, boxed_is("42"), **prose).reward == 0.0
    assert score_sample(UNBOXED, "math", 4, False, never_called, **prose).reward == 0.0
    # Broken help request: c = 0; -0.1 only if the composed answer is right.
    broken = "<think>\nStep 1: " + "I need external assistance."
    right = score_sample(broken, "math", 4, False, boxed_is("42"), CLOUD_RIGHT, **prose)
    wrong = score_sample(broken, "math", 4, False, boxed_is("42"), CLOUD_WRONG, **prose)
    assert (right.reward, right.cost, wrong.reward, wrong.cost) == (-0.1, 0.0, 0.0, 0.0)


def test_help_is_scored_on_the_composed_response():
    score = score_sample(HELP, "math", 4, False, boxed_is("42"), CLOUD_RIGHT)
    assert score.help and (score.reward, score.cost) == (1.0, 1.0)
    assert score.composed == "<think>\nStep 1: hard\n</think>\n<answer>\\boxed{42}</answer>"
    wrong = score_sample(HELP, "math", 4, False, boxed_is("42"), CLOUD_WRONG)
    assert (wrong.reward, wrong.cost) == (0.0, 1.0)


def test_cloud_format_problem_is_wrong_not_a_penalty():
    score = score_sample(HELP, "math", 4, False, never_called, "<answer>42</answer>")
    assert (score.reward, score.cost, score.violation) == (0.0, 1.0, "cloud: nothing boxed")


def test_a_cloud_that_asks_for_help_itself_is_wrong():
    score = score_sample(HELP, "math", 4, False, never_called, HELP)
    assert (score.help, score.reward, score.cost) == (True, 0.0, 1.0)


def test_cloud_failed():
    score = score_sample(HELP, "math", 4, False, never_called, cloud_failed=True)
    assert (score.help, score.reward, score.cost, score.composed) == (True, 0.0, 1.0, HELP)
    broken = "<answer>I need external assistance."
    score = score_sample(broken, "math", 4, False, never_called, cloud_failed=True)
    assert (score.reward, score.cost, score.violation) == (-0.1, 0.0, "missing think")


def test_help_without_cloud_text_is_a_caller_bug():
    with pytest.raises(ValueError):
        score_sample(HELP, "math", 4, False, never_called)


def test_unknown_variant():
    with pytest.raises(EdgeclError, match="literal"):
        score_sample(RIGHT, "math", 4, False, boxed_is("42"), variant="strict")


@pytest.mark.parametrize(
    "local, cloud, fmt, expected",
    [
        (True, False, True, 1.0),
        (False, True, True, 0.2),
        (False, False, True, 0.0),
        (True, False, False, -0.1),
        (False, True, False, -0.1),
    ],
)
def test_hierarchical_reward(local, cloud, fmt, expected):
    assert hierarchical_reward(local, cloud, fmt, assist_reward=0.2) == expected


def test_hierarchical_reward_gapg_values_and_ordering_check():
    assert hierarchical_reward(True, False, True, 0.5, local_reward=2.0, format_reward=0.2) == 2.0
    assert hierarchical_reward(False, False, True, 0.5, local_reward=2.0, format_reward=0.2) == 0.2
    with pytest.raises(EdgeclError, match="always ask"):
        hierarchical_reward(False, True, True, assist_reward=1.0)
