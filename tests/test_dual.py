"""The dual update (eq. 3), the budget schedule and the collapse detector."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecl.core.dual import CollapseDetector, TauSchedule, batch_cost_ratio, dual_update
from edgecl.errors import EdgeclError


def test_dual_update_by_hand():
    assert dual_update(0.5, 0.4, 0.3, 0.01) == pytest.approx(0.501)
    assert dual_update(0.5, 0.2, 0.3, 0.01) == pytest.approx(0.499)
    assert dual_update(0.5, 0.3, 0.3, 0.01) == 0.5
    assert dual_update(0.001, 0.0, 0.3, 0.01) == 0.0  # projected onto lambda >= 0


@given(st.floats(0, 100), st.floats(0, 1), st.floats(0, 1), st.floats(0, 10))
def test_dual_update_never_negative_and_moves_with_the_violation(lam, j_c, tau, eta):
    new = dual_update(lam, j_c, tau, eta)
    assert new >= 0.0
    if j_c > tau:
        assert new >= lam
    else:
        assert new <= lam


def test_batch_cost_ratio():
    assert batch_cost_ratio([0, 1, 1, 0, 0, 0, 0, 1]) == 0.375
    with pytest.raises(ValueError):
        batch_cost_ratio([])


def test_tau_schedule_piecewise_constant():
    sched = TauSchedule.parse("0.1@0,0.5@150,0.3@300")
    assert [sched.at(s) for s in (0, 149, 150, 299, 300, 10**6)] == [0.1, 0.1, 0.5, 0.5, 0.3, 0.3]
    assert str(sched) == "0.1@0,0.5@150,0.3@300"
    assert TauSchedule.parse(str(sched)) == sched


@pytest.mark.parametrize("spec", [0.3, "0.3", " 0.3 ", "0.3@0"])
def test_tau_schedule_constant(spec):
    sched = TauSchedule.parse(spec)
    assert sched.at(0) == sched.at(5000) == 0.3
    assert str(sched) == "0.3"


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "abc",
        "0.1@5",
        "0.1@0,0.2@0",
        "0.1@0,0.2@50,0.3@20",
        "1.5",
        "-0.1",
        "nan",
        "0.1@0,0.2",
        "0.1@-1",
        "0.1@x",
        "0.1@0,,0.2@5",
    ],
)
def test_tau_schedule_rejects_bad_specs_in_one_line(spec):
    with pytest.raises(EdgeclError) as err:
        TauSchedule.parse(spec)
    assert "\n" not in str(err.value) and str(err.value)


def test_collapse_detector_counts_consecutive_silent_steps():
    det = CollapseDetector(window=3)
    assert [det.update(0, 0.3, 0.0) for _ in range(3)] == [False, False, True]
    assert det.update(0, 0.3, 0.0) is True  # stays flagged while it lasts
    assert det.update(1, 0.3, 0.0) is False  # a help sample ends it
    assert det.streak == 0


@pytest.mark.parametrize("n_help, tau, lam", [(2, 0.3, 0.0), (0, 0.0, 0.0), (0, 0.3, 0.01)])
def test_collapse_detector_ignores_healthy_steps(n_help, tau, lam):
    det = CollapseDetector(window=2)
    assert not any(det.update(n_help, tau, lam) for _ in range(10))


def test_collapse_detector_resumes_exactly():
    det = CollapseDetector(window=4)
    for _ in range(3):
        det.update(0, 0.3, 0.0)
    restored = CollapseDetector.from_dict(det.to_dict())
    assert restored.to_dict() == {"window": 4, "streak": 3}
    assert restored.update(0, 0.3, 0.0) is True
    with pytest.raises(EdgeclError):
        CollapseDetector(window=0)


def test_initial_lambda_starts_at_the_cap_only_when_the_budget_binds():
    from edgecl.core.dual import LAMBDA_MAX, initial_lambda

    assert initial_lambda(0.1, 0.45) == LAMBDA_MAX  # the warmed-up model asks more than tau
    assert initial_lambda(0.5, 0.45) == 0.0  # it asks less: nothing to push down
    assert initial_lambda(0.3, None) == 0.5  # no measured help rate
