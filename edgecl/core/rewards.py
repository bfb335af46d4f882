"""Reward (paper eq. 13) and cost (eq. 14) of one sample, and the baselines' hierarchical reward.

Literal reading of eq. 13 (the default, DESIGN.md 2.1): r = 1 if correct and well formatted,
r = -0.1 for any format violation, r = 0 if well formatted but wrong. The paper's prose says
the penalty applies only to correct answers ("prose" variant: a flag, not the default).

A help request is scored on the composed response. Its format is judged on the local part
only (eq. 12: "ignoring any cloud request"): well formatted -> c = 1 and r = 1 if the composed
response is well formatted and correct, else 0 (a cloud that answers wrong or unboxed costs the
local model nothing extra); broken -> r = -0.1, c = 0. A cloud call that failed after its
retries: r = 0, c = 1 (the sample still asked; a broken help request keeps r = -0.1, c = 0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edgecl.core.protocol import ParsedResponse, compose, parse_response
from edgecl.errors import EdgeclError

ALPHA_A = 1.0  # reward of a correct, well-formatted answer
ALPHA_F = 0.1  # format penalty
ALPHA_C = 1.0  # cost of a (well-formatted) help request

VARIANTS = ("literal", "prose")


@dataclass(frozen=True)
class SampleScore:
    """Reward and cost of one sample, the response they were computed on, and why."""

    help: bool  # the local response requested help (whatever its format)
    reward: float
    cost: float
    composed: str  # the response r was computed on (the local text if no cloud answer)
    violation: str | None  # local format problem, or "cloud: ..." for the cloud's part
    well_formatted: bool = False  # the local part is in the protocol (eq. 14's condition)
    correct: bool = False  # the composed response is well formatted and right (r = 1 in eq. 13)


def score_sample(
    local_text: str,
    kind: str,
    max_steps: int | None,
    truncated: bool,
    is_correct: Callable[[ParsedResponse], bool],
    cloud_text: str | None = None,
    cloud_failed: bool = False,
    variant: str = "literal",
) -> SampleScore:
    """r and c of one local sample (eqs. 13, 14); `is_correct` is the task's verifier.

    `is_correct` sees the parsed composed response and is called only when its verdict can
    change r (code execution is expensive). For a help request pass the group's shared
    `cloud_text`, or `cloud_failed=True` when the call failed after its retries.
    """
    if variant not in VARIANTS:
        raise EdgeclError(f"unknown reward variant {variant!r}: use 'literal' or 'prose'")
    local = parse_response(local_text, kind, max_steps, truncated=truncated)

    if not local.requests_help:
        if variant == "literal":
            if not local.well_formatted:
                reward = -ALPHA_F
            else:
                reward = ALPHA_A if is_correct(local) else 0.0
        else:  # prose: the format penalty replaces the reward of a correct answer only
            extractable = local.code if kind == "code" else local.boxed
            correct = extractable is not None and is_correct(local)
            reward = (ALPHA_A if local.well_formatted else -ALPHA_F) if correct else 0.0
        ok = local.well_formatted
        return SampleScore(False, reward, 0.0, local_text, local.violation, ok, ok and reward > 0)

    # A help request.
    cost = ALPHA_C if local.well_formatted else 0.0
    if cloud_failed:
        reward = 0.0 if local.well_formatted else -ALPHA_F
        if variant == "prose":
            reward = 0.0
        return SampleScore(True, reward, cost, local_text, local.violation, local.well_formatted)
    if cloud_text is None:
        raise ValueError("a help request needs cloud_text (or cloud_failed=True)")
    composed_text = compose(local_text, cloud_text)
    composed = parse_response(composed_text, kind, max_steps)
    cloud_violation = None if composed.violation is None else f"cloud: {composed.violation}"
    if local.well_formatted:
        answered = composed.well_formatted and not composed.requests_help
        reward = ALPHA_A if answered and is_correct(composed) else 0.0
        return SampleScore(True, reward, cost, composed_text, cloud_violation, True, reward > 0)
    if variant == "literal":
        reward = -ALPHA_F
    else:
        extractable = composed.code if kind == "code" else composed.boxed
        reward = -ALPHA_F if extractable is not None and is_correct(composed) else 0.0
    return SampleScore(True, reward, cost, composed_text, local.violation)


def hierarchical_reward(
    local_correct: bool,
    cloud_correct: bool,
    well_formatted: bool,
    assist_reward: float,
    local_reward: float = 1.0,
    format_reward: float = 0.0,
) -> float:
    """Fixed reward of the hierarchical baselines (GRPO-hier, GVPO, GAPG).

    local-correct (1) > cloud-correct (assist_reward, tuned per task: 0.2 math, 0.05 code,
    0.4 QA in the paper) > well formatted only (0) > format violation (-0.1).
    """
    if not format_reward < assist_reward < local_reward:
        raise EdgeclError(
            f"assist reward {assist_reward} must lie between the format reward {format_reward} "
            f"and the local reward {local_reward}, else the model learns to always ask for help"
        )
    if not well_formatted:
        return -ALPHA_F
    if local_correct:
        return local_reward
    if cloud_correct:
        return assist_reward
    return format_reward
