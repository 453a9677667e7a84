"""Aggregates over seeds with rliable, the hierarchical bootstrap on synthetic data with a known
answer, honest small samples, verdicts on "A beats B", and tables that keep every method."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from policyshare.metrics import iqm_intervals
from policyshare.stats import (
    MIN_SEEDS,
    aggregate,
    grouped_bootstrap,
    grouped_improvement,
    hierarchical_bootstrap,
    hierarchical_difference,
    performance_profiles,
    probability_of_improvement,
    seeds_to_decide,
    summarise_metrics,
    verdict,
)
from policyshare.transfer_metrics import Metric, forward_transfer, normalised_area_gain, transfer_percent

REPS = 200


def test_iqm_is_the_mean_of_the_middle_half_with_rliables_stratified_bootstrap() -> None:
    scores = np.arange(1.0, 9.0)  # 8 seeds: middle half 3, 4, 5, 6
    est = aggregate(scores, reps=REPS, seed=3)
    assert est.point == pytest.approx(4.5) and est.is_confidence_interval and est.n == 8
    assert est.low <= 4.5 <= est.high and est.low < est.high
    same = iqm_intervals({"m": scores}, reps=REPS, seed=3)["m"]  # the same rliable call, the same seed
    assert (est.low, est.high) == pytest.approx((same.low, same.high))
    assert "95% stratified bootstrap CI over 8 seeds" in str(est)
    assert aggregate(scores, "mean", reps=REPS).point == pytest.approx(4.5)


def test_bootstrap_intervals_are_reproducible_by_seed_and_leave_numpys_global_state_alone() -> None:
    """rliable draws from np.random's global state and ignores its random_state argument."""
    scores = np.random.default_rng(7).normal(size=(10, 2))
    np.random.seed(1)
    expected_next = np.random.rand()
    np.random.seed(1)
    first = iqm_intervals({"m": scores}, reps=REPS, seed=0)["m"]
    assert np.random.rand() == expected_next  # the caller's global stream is untouched
    np.random.seed(2)
    second = iqm_intervals({"m": scores}, reps=REPS, seed=0)["m"]  # other global state, same seed
    assert (first.low, first.high) == (second.low, second.high)
    np.random.seed(1)
    aggregate(scores, reps=REPS, seed=0)
    assert np.random.rand() == expected_next
    a, b = aggregate(scores, reps=REPS, seed=5), aggregate(scores, reps=REPS, seed=5)
    assert (a.low, a.high) == (b.low, b.high)


def test_one_seed_has_no_interval_and_few_seeds_give_a_labelled_range() -> None:
    one = aggregate([0.7])
    assert (one.point, one.low, one.high, one.kind) == (0.7, None, None, "none")
    assert str(one) == "0.7 (one seed: no interval)"
    few = aggregate([[0.1, 0.3], [0.5, 0.9], [0.2, 0.2]], "mean")  # 3 seeds × 2 tasks
    assert few.kind == "range" and not few.is_confidence_interval
    assert (few.low, few.high) == pytest.approx((0.2, 0.7))  # the seeds' own means over tasks
    assert "3 seeds: a range, not a confidence interval (fewer than 5)" in str(few)
    assert aggregate([]).point is None and str(aggregate([])) == "no value (no seeds)"
    assert json.dumps(few.as_dict())  # no nan anywhere: plain JSON


def test_aggregates_refuse_nan_instead_of_dropping_it_silently() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        aggregate([1.0, math.nan, 2.0])


def test_probability_of_improvement_is_the_mann_whitney_share_of_wins() -> None:
    x, y = [1.0, 3.0, 4.0, 5.0, 6.0], [2.0] * 5  # 20 of 25 pairs won
    est = probability_of_improvement(x, y, reps=REPS)
    assert est.point == pytest.approx(0.8) and est.is_confidence_interval
    assert est.low <= 0.8 <= est.high <= 1.0
    always = probability_of_improvement([5.0] * 6, [1.0, 2.0, 3.0, 1.0, 2.0, 3.0], reps=REPS)
    assert (always.point, always.low, always.high) == (1.0, 1.0, 1.0)
    small = probability_of_improvement([1.0, 3.0], [2.0, 2.0])
    assert small.point == pytest.approx(0.5) and small.low is None and "fewer than 5: no interval" in small.note


def test_performance_profiles_are_the_fraction_of_runs_above_each_threshold() -> None:
    scores = {"transfer": [[0.0], [0.5], [1.0], [1.5], [2.0]], "scratch": [0.1]}
    got = performance_profiles(scores, [0.25, 1.0], reps=REPS, seed=1)
    assert list(got) == ["transfer", "scratch"]
    assert got["transfer"].fraction == pytest.approx([0.8, 0.4])
    assert (got["transfer"].low <= got["transfer"].fraction).all()
    assert (got["transfer"].fraction <= got["transfer"].high).all()
    again = performance_profiles(scores, [0.25, 1.0], reps=REPS, seed=1)["transfer"]
    assert np.array_equal(again.low, got["transfer"].low)  # reproducible bands
    assert got["scratch"].fraction == pytest.approx([0.0, 0.0])  # one run: kept, no band
    assert np.array_equal(got["scratch"].low, got["scratch"].high)


def _two_level(rng: np.random.Generator, n_up: int = 8, n_tgt: int = 5, sd_up: float = 1.0,
               sd_tgt: float = 0.3) -> np.ndarray:
    """Scores with true mean 0: an upstream-seed effect shared by its target seeds, plus noise."""
    return rng.normal(0, sd_up, size=(n_up, 1)) + rng.normal(0, sd_tgt, size=(n_up, n_tgt))


def test_hierarchical_bootstrap_covers_the_true_mean_where_a_flat_bootstrap_does_not() -> None:
    """200 synthetic studies with a known mean of 0 and most variance between upstream seeds."""
    rng = np.random.default_rng(1)
    hier = flat = 0
    for i in range(200):
        d = _two_level(rng)
        h = hierarchical_bootstrap(d, "mean", reps=REPS, seed=i)
        # The flat bootstrap: every run its own group (40 upstream seeds × 1 target seed).
        f = hierarchical_bootstrap(d.reshape(-1, 1), "mean", reps=REPS, seed=i, min_target_seeds=1)
        hier += h.low <= 0 <= h.high
        flat += f.low <= 0 <= f.high
    assert hier / 200 >= 0.8  # near the nominal 95 % (percentile intervals over 8 upstream seeds run a bit short)
    assert flat / 200 <= 0.7  # treating 40 dependent runs as independent badly under-covers


def test_upstream_variance_widens_the_interval_against_rliables_flat_bootstrap() -> None:
    rng = np.random.default_rng(0)
    d = _two_level(rng)
    h = hierarchical_bootstrap(d, reps=REPS)
    f = aggregate(d.reshape(-1), reps=REPS)  # rliable's stratified bootstrap over the 40 runs
    assert h.point == pytest.approx(f.point)  # the same IQM of all runs
    assert (h.high - h.low) > 1.5 * (f.high - f.low)
    # Without upstream variance the two agree roughly.
    iid = rng.normal(0, 1, size=(8, 5))
    h0, f0 = hierarchical_bootstrap(iid, reps=REPS), aggregate(iid.reshape(-1), reps=REPS)
    assert 0.6 < (h0.high - h0.low) / (f0.high - f0.low) < 1.6


def test_hierarchical_small_samples_are_ranges_and_one_run_has_no_interval() -> None:
    est = hierarchical_bootstrap(np.arange(6.0).reshape(3, 2), "mean")  # 3 upstream × 2 target seeds
    assert est.kind == "range" and (est.low, est.high) == (0.0, 5.0) and est.point == pytest.approx(2.5)
    assert "3 upstream × 2 target seeds: a range, not a confidence interval" in est.note
    assert hierarchical_bootstrap([[4.0]]).note == "one seed: no interval"


def test_hierarchical_paired_difference_against_scratch_on_the_same_target_seeds() -> None:
    rng = np.random.default_rng(2)
    scratch = rng.normal(size=5)  # (target seeds,): no upstream seeds
    student_effect = rng.normal(1.0, 0.5, size=(6, 1))  # each student seed transfers differently
    transfer = scratch + student_effect + rng.normal(0, 0.1, size=(6, 5))
    est = hierarchical_difference(transfer, scratch, reps=REPS)
    assert est.point == pytest.approx(float((transfer - scratch).mean()))
    assert est.is_confidence_interval and est.low > 0
    exact = hierarchical_difference(scratch + np.ones((6, 5)), scratch, reps=REPS)
    assert (exact.point, exact.low, exact.high) == pytest.approx((1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="same shape"):
        hierarchical_difference(transfer, scratch[:3])


def test_seeds_to_decide_follows_the_normal_approximation() -> None:
    # ((1.96 + 0.8416) · 1 / 0.5)² = 31.4 → 32 paired; twice that, 62.8 → 63, per group unpaired.
    assert seeds_to_decide(0.5, 1.0, paired=True) == 32
    assert seeds_to_decide(0.5, 1.0, paired=False) == 63
    assert seeds_to_decide(-0.5, 1.0, paired=True) == 32
    # A difference that is a rounding error of 0 (an identical pair of methods) needs no count of seeds.
    assert seeds_to_decide(1e-17, 0.1, paired=True) is None
    assert seeds_to_decide(0.01, 1.0, paired=True) is None  # about 78,000: beyond any budget
    assert seeds_to_decide(0.0, 1.0, paired=True) is None


def test_verdict_supported_refuted_and_undecided() -> None:
    rng = np.random.default_rng(0)
    scratch = rng.normal(0, 0.1, size=8)
    better = scratch + 1.0 + rng.normal(0, 0.1, size=8)
    v = verdict(better, scratch, env_steps=20_000, claim="transfer beats scratch", reps=REPS)
    assert v.outcome == "supported" and v.seeds == (8, 8) and v.env_steps == 20_000
    assert v.difference.low > 0 and v.poi.low > 0.5 and v.seeds_needed is None
    assert str(v).startswith("transfer beats scratch: supported") and "20,000 env steps" in str(v)
    assert verdict(scratch, better, env_steps=20_000, reps=REPS).outcome == "refuted"

    noisy = scratch + 0.2 + rng.normal(0, 1.0, size=8)
    v = verdict(noisy, scratch, env_steps=20_000, reps=REPS)
    assert v.outcome == "undecided at this budget"
    effect = float(noisy.mean() - scratch.mean())
    sd_pooled = math.sqrt((noisy.var(ddof=1) + scratch.var(ddof=1)) / 2)
    sd_diff = float((noisy - scratch).std(ddof=1))
    assert v.seeds_needed == max(seeds_to_decide(effect, sd_pooled, paired=False),
                                 seeds_to_decide(effect, sd_diff, paired=True))
    assert v.seeds_needed > 8 and f"about {v.seeds_needed} seeds per method would decide it" in str(v)


def test_a_decisive_paired_difference_is_not_enough_without_the_probability_of_improvement() -> None:
    scratch = np.arange(8.0)
    plus_one = scratch + 1.0  # every seed gains exactly 1, but the runs overlap a lot
    v = verdict(plus_one, scratch, env_steps=1000, reps=REPS)
    assert (v.difference.low, v.difference.high) == pytest.approx((1.0, 1.0))
    assert v.poi.low < 0.5 and v.outcome == "undecided at this budget"


def test_too_few_seeds_give_no_verdict_whatever_the_range() -> None:
    v = verdict([10.0, 11.0, 12.0], [0.0, 1.0, 2.0], env_steps=5000)
    assert v.outcome == "no verdict" and v.difference.kind == "range"
    assert "a range, not a confidence interval" in v.why and v.seeds == (3, 3)
    assert verdict([1.0], [0.0], env_steps=5000).difference.note == "one seed: no interval"
    assert MIN_SEEDS == 5


def test_a_hierarchical_difference_can_stand_behind_a_verdict() -> None:
    rng = np.random.default_rng(4)
    scratch = rng.normal(0, 0.1, size=6)
    transfer = scratch + rng.normal(1.0, 0.05, size=(6, 1)) + rng.normal(0, 0.05, size=(6, 6))
    diff = hierarchical_difference(transfer, scratch, reps=REPS)
    v = verdict(transfer.mean(axis=0), scratch, env_steps=1000, difference=diff, reps=REPS)
    assert v.difference is diff and v.outcome == "supported"


def test_a_table_of_per_seed_metrics_keeps_every_method_and_says_why_values_are_missing() -> None:
    """Hand-computed curves, random 0 and expert 10; scratch exactly 0 on one seed, below random on another."""
    steps = [0, 50, 100]
    method = (steps, [0.0, 10.0, 10.0])
    scratch_by_seed = {0: (steps, [0.0, 4.0, 8.0]), 1: (steps, [0.0, 0.0, 0.0]), 2: (steps, [-1.0, -1.0, -1.0])}
    table = {
        "finetune": {s: transfer_percent(method, c, 0.0, 10.0) for s, c in scratch_by_seed.items()},
        "scratch": {s: transfer_percent(c, c, 0.0, 10.0) for s, c in scratch_by_seed.items()},
        "frozen": {s: transfer_percent(method, c, 0.0, 10.0) for s, c in scratch_by_seed.items() if s > 0},
        "gain": {s: normalised_area_gain(method, c, 0.0, 10.0) for s, c in scratch_by_seed.items()},
        "ft": {s: forward_transfer(method, c, 0.0, 10.0) for s, c in scratch_by_seed.items()},
    }
    rows = summarise_metrics(table, reps=REPS)
    assert list(rows) == list(table)  # no method disappears
    assert rows["finetune"].estimate.point == pytest.approx(187.5)  # only seed 0 is defined
    assert rows["finetune"].n_defined == 1 and rows["finetune"].n_total == 3
    # Undefined seeds are named, grouped by the short reason (the figures of each are in its Metric).
    assert str(rows["finetune"]) == ("188 (one seed: no interval); undefined: scratch not clearly above random "
                                     "on seeds 1, 2")
    assert str(rows["frozen"]) == "undefined: scratch not clearly above random on seeds 1, 2"
    assert rows["frozen"].estimate.point is None
    # The gain is defined on every seed: 0.35, 0.75, 0.85 — a range over 3 seeds, not an interval.
    assert rows["gain"].estimate.kind == "range" and rows["gain"].n_defined == 3
    assert (rows["gain"].estimate.low, rows["gain"].estimate.high) == pytest.approx((0.35, 0.85))
    assert rows["ft"].estimate.high == pytest.approx((0.75 + 0.1) / 1.1)
    for row in rows.values():  # nothing is nan
        assert json.dumps(row.as_dict(), allow_nan=False)
    assert rows["frozen"].as_dict()["undefined"] == {"scratch not clearly above random": 2}
    assert rows["frozen"].as_dict()["undefined_seeds"] == {"scratch not clearly above random": ["1", "2"]}
    assert "(-1) is not above random" in str(table["frozen"][2])  # seed 2's own figures


def test_summaries_accept_a_sequence_and_aggregate_many_seeds_with_an_interval() -> None:
    values = [Metric(float(v)) for v in range(1, 9)] + [Metric.undefined("AUC_b >= 1")]
    row = summarise_metrics({"m": values}, reps=REPS)["m"]
    assert row.estimate.point == pytest.approx(4.5) and row.estimate.is_confidence_interval
    assert row.undefined == {"AUC_b >= 1": 1} and str(row).endswith("; undefined: AUC_b >= 1 on seed 8")


def test_grouped_bootstrap_of_ragged_groups_covers_the_true_mean_where_a_flat_one_does_not() -> None:
    """The hierarchical bootstrap over groups of different sizes (some target seeds undefined)."""
    rng = np.random.default_rng(5)
    hier = flat = 0
    for i in range(100):
        d = _two_level(rng)
        groups = [row[: 5 - (u % 2)] for u, row in enumerate(d)]  # 5 or 4 target seeds per upstream seed
        h = grouped_bootstrap(groups, "mean", reps=REPS, seed=i)
        f = aggregate(np.concatenate(groups), "mean", reps=REPS, seed=i)  # rliable over the runs as independent
        hier += h.low <= 0 <= h.high
        flat += f.low <= 0 <= f.high
    assert hier / 100 >= 0.8 and flat / 100 <= 0.7
    assert "95% hierarchical bootstrap CI over 8 upstream × 4–5 target seeds" in h.note


def test_grouped_bootstrap_agrees_with_the_rectangular_one_and_labels_small_samples() -> None:
    d = _two_level(np.random.default_rng(6))
    g = grouped_bootstrap(list(d), "iqm", reps=REPS, seed=0)
    h = hierarchical_bootstrap(d, "iqm", reps=REPS, seed=0)
    assert g.point == pytest.approx(h.point) and g.n == h.n == 8
    assert (g.high - g.low) == pytest.approx(h.high - h.low, rel=0.35)  # other draws, the same spread
    few = grouped_bootstrap([[1.0, 2.0], [3.0, 4.0]], "mean")  # 2 upstream seeds: a range
    assert (few.kind, few.low, few.high, few.point) == ("range", 1.0, 4.0, 2.5)
    assert few.note == ("2 upstream × 2 target seeds: fewer than 3 upstream seeds or 5 runs: a range, not a "
                        "confidence interval")
    assert grouped_bootstrap([[1.0], [2.0], [3.0], [4.0]]).kind == "range"  # 4 runs < 5
    assert grouped_bootstrap([[7.0], []]).note == "one seed: no interval"
    assert grouped_bootstrap([[], []]).point is None
    with pytest.raises(ValueError, match="non-finite"):
        grouped_bootstrap([[1.0, math.nan]])


def test_grouped_probability_of_improvement_resamples_both_levels() -> None:
    rng = np.random.default_rng(7)
    scratch = rng.normal(0, 1, size=6)
    better = [rng.normal(1.0, 0.3) + rng.normal(2.0, 1.0, size=5) for _ in range(6)]
    est = grouped_improvement(better, [[v] for v in scratch], reps=REPS)
    from rliable import metrics as rmetrics

    point = rmetrics.probability_of_improvement(np.concatenate(better)[:, None], scratch[:, None])
    assert est.point == pytest.approx(point) and est.is_confidence_interval and est.low > 0.5
    assert "over 6 upstream × 5 target seeds and 6 seeds" in est.note
    few = grouped_improvement(better[:2], [[v] for v in scratch])
    assert few.kind == "none" and few.low is None and "no interval" in few.note


def test_hierarchical_keys_are_summarised_with_the_grouped_bootstrap_and_named_in_reasons() -> None:
    rng = np.random.default_rng(8)
    per_seed = {(u, s): Metric(float(v)) for u in range(4) for s, v in enumerate(rng.normal(u, 0.2, size=5))}
    per_seed[(1, 0)] = Metric.undefined("scratch not clearly above random", "figures")
    row = summarise_metrics({"student": per_seed}, "mean", reps=REPS)["student"]
    assert row.estimate.is_confidence_interval and "4 upstream × 4–5 target seeds" in row.estimate.note
    assert row.n_total == 20 and row.n_defined == 19
    assert str(row).endswith("; undefined: scratch not clearly above random on seed u1-s0")
    values = [m.value for m in per_seed.values() if m.value is not None]
    assert row.estimate.point == pytest.approx(np.mean(values))


def test_a_verdict_can_take_a_grouped_difference_and_probability_and_report_the_real_seeds() -> None:
    rng = np.random.default_rng(9)
    scratch = rng.normal(0, 0.1, size=5)
    student = scratch + rng.normal(1.0, 0.05, size=(4, 1)) + rng.normal(0, 0.05, size=(4, 5))
    diff = grouped_bootstrap(list(student - scratch), "mean", reps=REPS)
    poi = grouped_improvement(list(student), [[v] for v in scratch], reps=REPS)
    v = verdict(student.ravel(), np.tile(scratch, 4), env_steps=1000, difference=diff, poi=poi, seeds=(20, 5),
                reps=REPS)
    assert v.outcome == "supported" and v.difference is diff and v.poi is poi and v.seeds == (20, 5)
    assert v.as_dict()["text"] == str(v) and json.dumps(v.as_dict(), allow_nan=False)
