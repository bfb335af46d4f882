"""The paper's training methods (edgecl.core.methods) on a fixed rollout, with the weights
worked by hand; then each method for one real step of the trainer on the tiny model."""

from __future__ import annotations

import numpy as np
import pytest

from edgecl.core.methods import gapg_keep, get_method, method_weights, rewards_and_costs
from edgecl.core.rewards import SampleScore
from edgecl.errors import EdgeclError

# (help, eq. 13 reward, cost, well formatted, correct) per sample, G = 4.
RIGHT = (False, 1.0, 0.0, True, True)  # local, right
WRONG = (False, 0.0, 0.0, True, False)  # local, well formatted, wrong
BROKEN = (False, -0.1, 0.0, False, False)  # local, format violation
CLOUD_RIGHT = (True, 1.0, 1.0, True, True)  # asked; the composed answer is right

# Prompt A: one right local answer, a wrong one, a help request the cloud answered right, a
# broken one. Prompt B: two help requests answered right and two wrong local answers.
A = [RIGHT, WRONG, CLOUD_RIGHT, BROKEN]
B = [CLOUD_RIGHT, CLOUD_RIGHT, WRONG, WRONG]


def scores(*groups) -> list[SampleScore]:
    return [SampleScore(h, r, c, "", None, f, ok) for g in groups for h, r, c, f, ok in g]


def weights(name, groups, lam=0.5, log_ratio=None):
    return method_weights(get_method(name), scores(*groups), lam, 4, 0.2, "none", log_ratio)


def test_da_grpo_is_eq_8_on_the_shaped_reward():
    # A: r - 0.5 c = [1, 0, 0.5, -0.1], mean 0.35 -> [0.65, -0.35, 0.15, -0.45]; x 4/3, / 2.
    # B: [0.5, 0.5, 0, 0], mean 0.25 -> [0.25, 0.25, -0.25, -0.25]; x 4/3, / 2.
    expected = [0.433333, -0.233333, 0.1, -0.3, 1 / 6, 1 / 6, -1 / 6, -1 / 6]
    assert weights("da-grpo", [A, B]) == pytest.approx(expected, abs=1e-6)


def test_the_hierarchical_reward_and_costs():
    r, c = rewards_and_costs(get_method("grpo-hier"), scores(A, B), 0.2)
    assert r.tolist() == [1.0, 0.0, 0.2, -0.1, 0.2, 0.2, 0.0, 0.0]
    assert c.tolist() == [0, 0, 1, 0, 1, 1, 0, 0]  # still counted for J_c
    with pytest.raises(EdgeclError, match="assist reward"):
        rewards_and_costs(get_method("gapg"), scores(A), 1.5)  # not below the local reward


def test_grpo_hier_is_standard_grpo_and_ignores_lambda():
    # A: r = [1, 0, 0.2, -0.1], mean 0.275, centred [0.725, -0.275, -0.075, -0.375],
    # sample std sqrt(0.7475 / 3) = 0.499166. B: centred +-0.1, std 0.115470.
    a = np.array([0.725, -0.275, -0.075, -0.375]) / (0.499166 + 1e-4) / 2
    b = np.array([0.1, 0.1, -0.1, -0.1]) / (0.115470 + 1e-4) / 2
    assert weights("grpo-hier", [A, B], lam=3.0) == pytest.approx([*a, *b], abs=1e-5)


def test_gapg_scales_by_g_minus_1_and_filters_prompts():
    # Both kept (A has a right local answer; B's cloud was right and the cap is 1 x 1):
    # centred hierarchical rewards / (G - 1) / 2 prompts.
    a = [0.725 / 6, -0.275 / 6, -0.075 / 6, -0.375 / 6]
    assert weights("gapg", [A, B]) == pytest.approx([*a, 0.1 / 6, 0.1 / 6, -0.1 / 6, -0.1 / 6])
    # A third prompt like B goes beyond the cap: weight 0, the others averaged over 2 prompts.
    assert gapg_keep(scores(A, B, B), 4).tolist() == [True, True, False]
    w = weights("gapg", [A, B, B])
    assert w[8:].tolist() == [0.0] * 4 and w[:8] == pytest.approx(weights("gapg", [A, B]))
    # A group with nothing right anywhere is dropped.
    assert gapg_keep(scores(A, [WRONG, WRONG, BROKEN, WRONG]), 4).tolist() == [True, False]


def test_gvpo_subtracts_the_centred_log_ratio():
    # A: log-ratios [0.5, -0.5, 1, 0], mean 0.25 -> centred [0.25, -0.75, 0.75, -0.25];
    # centred r - 0.1 x that = [0.7, -0.2, -0.15, -0.35]; x beta 0.1 / (G - 1) / 1 prompt.
    w = weights("gvpo", [A], log_ratio=np.array([0.5, -0.5, 1.0, 0.0]))
    assert w == pytest.approx([0.7 / 30, -0.2 / 30, -0.15 / 30, -0.35 / 30])
    with pytest.raises(ValueError, match="log-ratio"):
        weights("gvpo", [A])


def test_edge_only_never_pays_for_help():
    # Without a cloud a help request scores as a failed call (r = 0, c = 1 in eq. 14); the
    # method counts no cost, and trains std-normalised GRPO on the task reward.
    failed = (True, 0.0, 1.0, True, False)
    r, c = rewards_and_costs(get_method("edge-only"), scores([RIGHT, failed, WRONG, BROKEN]), 0.2)
    assert r.tolist() == [1.0, 0.0, 0.0, -0.1] and c.tolist() == [0.0] * 4
    assert not get_method("edge-only").help_allowed and not get_method("edge-only").dual


def test_unknown_method():
    with pytest.raises(EdgeclError, match="unknown method 'ppo': use one of da-grpo"):
        get_method("ppo")
