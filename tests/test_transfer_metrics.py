"""Per-seed transfer metrics on hand-computed learning curves: transfer %, normalised area gain,
forward transfer and normalised return at fractions of the budget — undefined with a reason, never nan."""

from __future__ import annotations

import math

import pytest

from policyshare.transfer_metrics import (
    EXPERT_NOT_ABOVE_RANDOM,
    NO_STEP_0,
    SCRATCH_NEAR_RANDOM,
    SHORT_CURVE,
    Metric,
    forward_transfer,
    normalised_area,
    normalised_area_gain,
    normalised_return_at,
    transfer_percent,
)

STEPS = [0, 50, 100]
# random = 0, expert = 10. Areas by trapezoid over env steps:
METHOD = (STEPS, [0.0, 10.0, 10.0])  # 50·5 + 50·10 = 750
SCRATCH = (STEPS, [0.0, 4.0, 8.0])  # 50·2 + 50·6 = 400, mean return 4
ZERO = (STEPS, [0.0, 0.0, 0.0])  # scratch that learns nothing and sits exactly at 0
RANDOM, EXPERT = 0.0, 10.0


def test_transfer_percent_is_the_area_ratio_when_scratch_learns() -> None:
    assert transfer_percent(METHOD, SCRATCH, RANDOM, EXPERT) == Metric(100 * 750 / 400)


def test_transfer_percent_of_a_scratch_curve_exactly_zero_is_undefined_with_a_reason_not_nan() -> None:
    m = transfer_percent(METHOD, ZERO, RANDOM, EXPERT)
    assert m.value is None and not m.defined and m.why == SCRATCH_NEAR_RANDOM
    assert "scratch's mean return over the curve (0) is not above random" in str(m)
    assert str(m).startswith("undefined (")


def test_transfer_percent_needs_scratch_clearly_above_random_by_the_margin() -> None:
    barely = (STEPS, [0.5, 0.5, 0.5])  # mean 0.5: above random, below random + 0.1 · 10 = 1
    assert not transfer_percent(METHOD, barely, RANDOM, EXPERT).defined
    assert transfer_percent(METHOD, barely, RANDOM, EXPERT, margin=0.01) == Metric(100 * 750 / 50)


def test_transfer_percent_below_random_and_with_a_non_positive_area_is_undefined() -> None:
    below = (STEPS, [1.0, 1.0, 1.0])
    assert "not above random" in str(transfer_percent(METHOD, below, 2.0, EXPERT))
    # Negative returns: scratch is well above a random −10 yet its raw area is negative.
    negative = (STEPS, [-1.0, -1.0, -1.0])
    assert "area (-100) is not positive" in str(transfer_percent(METHOD, negative, -10.0, EXPERT))


def test_normalised_area_gain_by_hand() -> None:
    assert normalised_area_gain(METHOD, SCRATCH, RANDOM, EXPERT).value == pytest.approx((750 - 400) / (100 * 10))
    assert normalised_area_gain(METHOD, ZERO, RANDOM, EXPERT).value == pytest.approx(0.75)
    # Scratch below random (random = 2): (750 − 100) / (100 · 8); defined where transfer % is not.
    below = (STEPS, [1.0, 1.0, 1.0])
    assert normalised_area_gain(METHOD, below, 2.0, EXPERT).value == pytest.approx(650 / 800)
    assert normalised_area_gain(SCRATCH, SCRATCH, RANDOM, EXPERT) == Metric(0.0)


def test_normalised_area_is_the_mean_normalised_return_and_the_gain_is_a_difference_of_two() -> None:
    assert normalised_area(METHOD, RANDOM, EXPERT).value == pytest.approx(0.75)  # 750 / (100 · 10)
    assert normalised_area(SCRATCH, RANDOM, EXPERT).value == pytest.approx(0.4)
    assert normalised_area(ZERO, RANDOM, EXPERT) == Metric(0.0)
    assert normalised_area((STEPS, [1.0, 1.0, 1.0]), 2.0, EXPERT).value == pytest.approx(-0.125)  # below random
    assert normalised_area(METHOD, RANDOM, EXPERT, budget=50).value == pytest.approx(250 / 500)
    gain = normalised_area_gain(METHOD, SCRATCH, RANDOM, EXPERT).value
    assert gain == pytest.approx(0.75 - 0.4)
    assert normalised_area(([10, 100], [0.0, 1.0]), RANDOM, EXPERT).why == NO_STEP_0


def test_area_gain_reads_both_curves_on_the_budget_and_on_the_union_of_their_steps() -> None:
    # Budget T = 50: method area 250, scratch 100 → (250 − 100) / (50 · 10).
    assert normalised_area_gain(METHOD, SCRATCH, RANDOM, EXPERT, budget=50).value == pytest.approx(0.3)
    # Scratch evaluated elsewhere ([0, 25, 100]); read at 0, 25, 50, 100 by interpolation.
    other = ([0, 25, 100], [0.0, 5.0, 5.0])  # area 25·2.5 + 75·5 = 437.5
    assert normalised_area_gain(METHOD, other, RANDOM, EXPERT).value == pytest.approx((750 - 437.5) / 1000)
    # Without a budget, T is where the shorter curve ends.
    short = ([0, 50], [0.0, 4.0])  # area 100; the method's area to 50 is 250
    assert normalised_area_gain(METHOD, short, RANDOM, EXPERT).value == pytest.approx(150 / 500)


def test_a_curve_without_a_step_0_evaluation_or_short_of_the_budget_is_undefined() -> None:
    late = ([10, 50, 100], [0.0, 4.0, 8.0])
    m = normalised_area_gain(METHOD, late, RANDOM, EXPERT)
    assert m == Metric.undefined(NO_STEP_0, "scratch's first evaluation is at 10 env steps")
    m = forward_transfer(METHOD, SCRATCH, RANDOM, EXPERT, budget=200)
    assert m == Metric.undefined(SHORT_CURVE, "curve stops at 100 env steps, before the budget T = 200")
    assert str(m) == ("undefined (curve shorter than the budget: curve stops at 100 env steps, before the "
                      "budget T = 200)")


def test_forward_transfer_as_continual_world_by_hand() -> None:
    # Normalised areas / T: method 0.75, scratch 0.4 → (0.75 − 0.4) / (1 − 0.4).
    assert forward_transfer(METHOD, SCRATCH, RANDOM, EXPERT).value == pytest.approx(0.35 / 0.6)
    assert forward_transfer(METHOD, ZERO, RANDOM, EXPERT).value == pytest.approx(0.75)
    # Scratch below random (random = 2): method normalised [−0.25, 1, 1] → 0.6875; scratch −0.125.
    below = (STEPS, [1.0, 1.0, 1.0])
    assert forward_transfer(METHOD, below, 2.0, EXPERT).value == pytest.approx((0.6875 + 0.125) / 1.125)


def test_forward_transfer_is_undefined_when_the_baseline_is_already_at_the_expert() -> None:
    expert_from_start = (STEPS, [10.0, 10.0, 10.0])
    m = forward_transfer(METHOD, expert_from_start, RANDOM, EXPERT)
    assert m.value is None and "AUC_b = 1 >= 1" in str(m)


def test_normalised_return_at_fractions_of_the_budget_is_interpolated() -> None:
    got = normalised_return_at(METHOD, RANDOM, EXPERT)
    assert got == {0.1: Metric(0.2), 0.5: Metric(1.0), 1.0: Metric(1.0)}  # at 10 env steps: 10 · 10/50 = 2
    got = normalised_return_at(SCRATCH, 2.0, EXPERT, (0.25, 1.0), budget=100)
    assert got[0.25].value == pytest.approx((2.0 - 2.0) / 8) and got[1.0].value == pytest.approx(6 / 8)
    beyond = normalised_return_at(SCRATCH, RANDOM, EXPERT, (1.0,), budget=200)[1.0]
    assert "200 env steps lies outside the curve's evaluations (0 to 100)" in str(beyond)


def test_an_expert_no_better_than_random_makes_every_metric_undefined() -> None:
    for m in (transfer_percent(METHOD, SCRATCH, 5.0, 5.0), normalised_area_gain(METHOD, SCRATCH, 5.0, 5.0),
              forward_transfer(METHOD, SCRATCH, 5.0, 5.0), *normalised_return_at(METHOD, 5.0, 5.0).values()):
        assert m == Metric.undefined(EXPERT_NOT_ABOVE_RANDOM, "expert return 5 is not above random 5")


def test_a_metric_holds_a_finite_value_or_a_reason_never_nan() -> None:
    with pytest.raises(ValueError, match="finite"):
        Metric(math.nan)
    with pytest.raises(ValueError, match="either a value or a reason"):
        Metric(None)
    with pytest.raises(ValueError, match="either a value or a reason"):
        Metric(1.0, "why")
    with pytest.raises(ValueError, match="no detail"):
        Metric(1.0, None, "detail")
    assert str(Metric(0.123456)) == "0.1235" and str(Metric.undefined("x")) == "undefined (x)"
    assert Metric.undefined("x", "y").reason == "x: y" and Metric(1.0).reason is None


def test_malformed_curves_are_refused() -> None:
    with pytest.raises(ValueError, match="matching"):
        normalised_area_gain(([0, 1], [0.0]), SCRATCH, RANDOM, EXPERT)
    with pytest.raises(ValueError, match="strictly increasing"):
        normalised_area_gain(([0, 50, 50], [0.0, 1.0, 2.0]), SCRATCH, RANDOM, EXPERT)
    with pytest.raises(ValueError, match="non-finite"):
        normalised_area_gain((STEPS, [0.0, math.nan, 1.0]), SCRATCH, RANDOM, EXPERT)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        normalised_return_at(METHOD, RANDOM, EXPERT, (1.5,))
