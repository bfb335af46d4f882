"""Group-relative advantages and per-sample weights (eqs. 2, 6-8), with hand-computed numbers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecl.core.advantages import MODES, dual_weighted, group_advantages, sample_weights
from edgecl.errors import EdgeclError

R = [1.0, 0.0, 0.0, -0.1]
C = [0.0, 1.0, 1.0, 0.0]


def test_group_advantages_by_hand():
    a_r, a_c = group_advantages(np.array(R), np.array(C))
    np.testing.assert_allclose(a_r, [0.775, -0.225, -0.225, -0.325])
    np.testing.assert_allclose(a_c, [-0.5, 0.5, 0.5, -0.5])
    np.testing.assert_allclose(dual_weighted(a_r, a_c, 0.5), [1.025, -0.475, -0.475, -0.075])


def test_group_advantages_rows_are_groups():
    a_r, _ = group_advantages(np.array([[1.0, 0.0], [3.0, 3.0]]), np.zeros((2, 2)))
    np.testing.assert_allclose(a_r, [[0.5, -0.5], [0.0, 0.0]])


def test_da_grpo_weights_by_hand():
    # Two prompts: the second group is uniform, so it carries no signal.
    w = sample_weights(R + [1, 1, 1, 1], C + [1, 1, 1, 1], lam=0.5, group_size=4)
    expected = np.array([1.025, -0.475, -0.475, -0.075]) * (4 / 3) / 2
    np.testing.assert_allclose(w, np.concatenate([expected, np.zeros(4)]))


def test_grpo_weights_by_hand():
    # r = [1,0,0,0]: mean 0.25, std (ddof=1) 0.5.
    w = sample_weights([1, 0, 0, 0], [0, 0, 0, 0], lam=0.0, group_size=4, mode="grpo")
    np.testing.assert_allclose(w, np.array([0.75, -0.25, -0.25, -0.25]) / 0.5001)


def test_gapg_weights_by_hand():
    w = sample_weights([1, 0, 0, 0], [0, 0, 0, 0], lam=0.0, group_size=4, mode="gapg")
    np.testing.assert_allclose(w, np.array([0.75, -0.25, -0.25, -0.25]) / 3)


def test_da_grpo_group_scaling():
    w = sample_weights(R, C, lam=0.5, group_size=4, scale_rewards="group")
    adv = np.array([1.025, -0.475, -0.475, -0.075])
    np.testing.assert_allclose(w, adv / (adv.std(ddof=1) + 1e-4) * 4 / 3)


def test_lambda_weighs_cost_in_da_grpo():
    # Same rewards; the sample that asked costs 1: a larger lambda lowers its weight.
    r, c = [1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]
    w0 = sample_weights(r, c, lam=0.0, group_size=4)
    w1 = sample_weights(r, c, lam=1.0, group_size=4)
    assert w1[0] < w0[0] and w1[1] > w0[1]


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"mode": "ppo"}, EdgeclError),
        ({"scale_rewards": "batch"}, EdgeclError),
        ({"mode": "grpo", "scale_rewards": "group"}, EdgeclError),
        ({"group_size": 1}, EdgeclError),
        ({"group_size": 3}, ValueError),  # 4 samples are not whole groups of 3
        ({"lam": -0.1}, ValueError),
    ],
)
def test_bad_arguments(kwargs, error):
    args = {"rewards": R, "costs": C, "lam": 0.5, "group_size": 4, **kwargs}
    with pytest.raises(error):
        sample_weights(**args)


def _exact_expected_gradient(mode: str, g: int) -> tuple[float, float]:
    """E[sum_i w_i * dlogpi(d_i)/dtheta] for a Bernoulli help policy, by enumeration."""
    p, lam = 0.3, 0.2
    r_help, r_local = 0.9, 0.4  # deterministic rewards, so the estimator's mean is exact
    total = 0.0
    for decisions in itertools.product([0, 1], repeat=g):
        d = np.array(decisions, dtype=float)
        prob = np.prod(np.where(d == 1, p, 1 - p))
        w = sample_weights(np.where(d == 1, r_help, r_local), d, lam, g, mode=mode)
        total += prob * float(np.sum(w * (d - p)))
    true_gradient = p * (1 - p) * ((r_help - lam) - r_local)  # d/dtheta E[r - lam*c]
    return total, true_gradient


@pytest.mark.parametrize("g", [2, 3, 5])
def test_gapg_is_unbiased_and_eq8_is_g_times_it(g):
    gapg, truth = _exact_expected_gradient("gapg", g)
    da_grpo, _ = _exact_expected_gradient("da-grpo", g)
    assert gapg == pytest.approx(truth)
    assert da_grpo == pytest.approx(g * truth)


groups = st.integers(2, 8).flatmap(
    lambda g: st.tuples(
        st.just(g),
        st.lists(st.sampled_from([1.0, 0.0, -0.1]), min_size=g, max_size=4 * g).map(
            lambda xs: xs[: len(xs) // g * g]
        ),
    )
)


@given(groups, st.floats(0, 5), st.sampled_from(["da-grpo", "grpo", "gapg"]), st.data())
def test_weights_sum_to_zero_per_group(group, lam, mode, data):
    g, rewards = group
    costs = data.draw(
        st.lists(st.sampled_from([0.0, 1.0]), min_size=len(rewards), max_size=len(rewards))
    )
    w = sample_weights(rewards, costs, lam, g, mode=mode)
    assert w.shape == (len(rewards),)
    np.testing.assert_allclose(w.reshape(-1, g).sum(axis=1), 0.0, atol=1e-9)


@given(
    st.lists(st.floats(-1, 1), min_size=8, max_size=8),
    st.lists(st.sampled_from([0.0, 1.0]), min_size=8, max_size=8),
    st.floats(0, 10),
)
def test_dual_weighted_is_the_advantage_of_the_shaped_reward(rewards, costs, lam):
    """Prop. B.1: A_r - lam * A_c == (r - lam*c) - mean(r - lam*c)."""
    r, c = np.array(rewards), np.array(costs)
    a_r, a_c = group_advantages(r, c)
    shaped = r - lam * c
    np.testing.assert_allclose(dual_weighted(a_r, a_c, lam), shaped - shaped.mean(), atol=1e-9)
    w = sample_weights(r, c, lam, 8)
    w_shaped = sample_weights(shaped, np.zeros(8), 0.0, 8)
    np.testing.assert_allclose(w, w_shaped, atol=1e-9)


@pytest.mark.parametrize("g", range(2, 9))
@pytest.mark.parametrize("value", [-0.1, 0.0, 0.3, 1.0])
def test_a_group_of_equal_rewards_and_costs_carries_no_signal(g, value):
    """Exactly zero weights, so the trainer skips the update (at G=3, -0.1 - mean(-0.1 x 3)
    is 1.4e-17 in floating point, and Adam would take a full-size step on it)."""
    for mode in MODES:
        w = sample_weights([value] * g, [1.0] * g, 0.7, g, mode)
        assert (w == 0).all(), (mode, w)
    w = sample_weights([value] * g + [1.0] + [0.0] * (g - 1), [0.0] * 2 * g, 0.7, g)
    assert (w[:g] == 0).all() and (w[g:] != 0).all()
