"""One comparison and one vocabulary: run folders → curves → transfer % per seed → intervals, a
table and a plot, owned by ``policyshare.comparison``; method names defined once in
``policyshare.methods``; test helpers shared through ``conftest.py`` only."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

from policyshare import comparison, methods
from policyshare.errors import CheckpointError
from policyshare.metrics import iqm_intervals


def write_run(folder: Path, steps: list[int], mean: list[float], final: float, finished: bool = True) -> Path:
    """A run folder as ``policyshare train`` leaves it, reduced to what a comparison reads."""
    folder.mkdir(parents=True)
    (folder / "evaluations.json").write_text(json.dumps({"timesteps": steps, "mean": mean, "std": [0.0] * len(mean)}))
    if finished:
        (folder / "metrics.json").write_text(json.dumps({"eval_mean_return": final, "timesteps": steps[-1]}))
    return folder


def test_runs_are_read_back_with_their_curves_and_final_returns(tmp_path: Path) -> None:
    scratch = write_run(tmp_path / "scratch__s0", [0, 10, 20], [0.0, 1.0, 2.0], 2.0)
    finetune = write_run(tmp_path / "finetune__s0", [0, 10, 20], [1.0, 2.0, 3.0], 3.5)
    unfinished = write_run(tmp_path / "finetune__s1", [0, 10], [1.0, 2.0], 0.0, finished=False)
    student = write_run(tmp_path / "student__s0", [0, 10], [0.0, 0.0], 0.0, finished=False)
    folders = {"scratch": {0: scratch}, "finetune": {0: finetune, 1: unfinished}, "student": {0: student}}
    runs = comparison.read_runs(folders, finished_only=True)
    assert list(runs.curves) == ["scratch", "finetune"]  # a method with no finished run is left out
    assert runs.curves["finetune"] == {0: ([0.0, 10.0, 20.0], [1.0, 2.0, 3.0])}
    assert runs.finals() == {"scratch": {"0": 2.0}, "finetune": {"0": 3.5}}
    assert runs.column("timesteps") == {"scratch": {"0": 20}, "finetune": {"0": 20}}
    assert runs.seeds() == [0] and runs.dirs["finetune"][0] == finetune
    with pytest.raises(CheckpointError, match="metrics.json"):  # every run is required otherwise
        comparison.read_runs(folders)


def test_transfer_percent_per_seed_is_the_ratio_of_areas_and_its_iqm_goes_through_rliable() -> None:
    # Areas over [0, 20]: scratch 20 (0 → 2), finetune 40 (1 → 3) on seed 0; 30 and 30 on seed 1.
    curves = {"scratch": {0: ([0.0, 10.0, 20.0], [0.0, 1.0, 2.0]), 1: ([0.0, 20.0], [1.0, 2.0])},
              "finetune": {0: ([0.0, 10.0, 20.0], [1.0, 2.0, 3.0]), 1: ([0.0, 20.0], [1.0, 2.0])}}
    per_seed = comparison.transfer_by_seed(curves, methods.SCRATCH)
    assert per_seed == {"scratch": {0: 100.0, 1: 100.0}, "finetune": {0: pytest.approx(200.0), 1: 100.0}}
    summary = comparison.transfer_summary(curves, methods.SCRATCH, reps=200)
    expected = iqm_intervals({"finetune": np.array([200.0, 100.0])}, reps=200)["finetune"]
    assert summary["finetune"]["per_seed"] == {"0": pytest.approx(200.0), "1": 100.0}
    assert (summary["finetune"]["iqm"], summary["finetune"]["low"], summary["finetune"]["high"]) == pytest.approx(
        (expected.point, expected.low, expected.high))
    one = comparison.transfer_summary({m: {0: c[0]} for m, c in curves.items()}, methods.SCRATCH)
    assert np.isnan(one["finetune"]["low"]) and np.isnan(one["finetune"]["high"])  # one seed: no interval


def test_the_aggregate_over_tasks_stacks_seeds_by_tasks_and_leaves_the_baseline_out() -> None:
    a = {"scratch": {"per_seed": {"0": 100.0, "1": 100.0}}, "finetune": {"per_seed": {"0": 120.0, "1": 140.0}}}
    b = {"scratch": {"per_seed": {"0": 100.0, "1": 100.0}}, "finetune": {"per_seed": {"0": 90.0, "1": 110.0}}}
    agg = comparison.aggregate_over_tasks([a, b], [0, 1], methods.SCRATCH, reps=200)
    expected = iqm_intervals({"finetune": np.array([[120.0, 90.0], [140.0, 110.0]])}, reps=200)["finetune"]
    assert list(agg) == ["finetune"] and agg["finetune"] == pytest.approx(expected.as_dict())


def test_markdown_table_and_interval_plot(tmp_path: Path) -> None:
    assert comparison.markdown_table(["method", "IQM"], [["finetune", "120.0"]]) == [
        "| method | IQM |", "|---|---:|", "| finetune | 120.0 |"]
    assert comparison.markdown_table(["a", "b"], [], align=["---:"] * 2)[1] == "|---:|---:|"
    rows = comparison.interval_rows({"scratch": {"iqm": 100.0, "low": 90.0, "high": 110.0},
                                     "finetune": {"iqm": 120.0, "low": float("nan"), "high": float("nan")}},
                                    leave_out=[methods.SCRATCH])
    assert list(rows) == ["finetune"] and rows["finetune"]["point"] == 120.0
    png = comparison.plot_intervals(rows, tmp_path / "t.png", "transfer %", "transfer %", 100.0)
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_method_names_are_defined_once_and_described() -> None:
    from policyshare.experiment.config import METHODS
    from policyshare.progressive.config import CONTROLS
    from policyshare.progressive.report import METHOD_LABELS

    assert METHODS is methods.EXPERIMENT_METHODS and CONTROLS is methods.PROGRESSIVE_CONTROLS
    named = {*methods.EXPERIMENT_METHODS, *methods.PROGRESSIVE_CONTROLS, *methods.TRANSFER_METHODS,
             methods.PROGRESSIVE, methods.SCRATCH}
    assert named == set(methods.DESCRIPTIONS) and set(METHOD_LABELS) <= named
    assert all(methods.describe(m) for m in named)


def _defined_functions(path: Path) -> set[str]:
    return {n.name for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef)}


def test_only_the_comparison_module_defines_the_comparison() -> None:
    owned = {"load_curve", "read_runs", "transfer_by_seed", "transfer_summary", "plot_curves", "save_figure",
             "markdown_table", "interval_figure", "plot_intervals", "aggregate_over_tasks", "compare_methods",
             "plot_profiles", "per_seed_metrics"}
    package = ROOT / "policyshare" / "comparison"
    elsewhere = {str(p.relative_to(ROOT)): sorted(owned & _defined_functions(p))
                 for p in (ROOT / "policyshare").rglob("*.py") if package not in p.parents}
    # vision's thesis table (probe and guidance figures, not learning curves) shares only the name
    elsewhere["policyshare/vision/compare_report.py"].remove("markdown_table")
    assert {k: v for k, v in elsewhere.items() if v} == {}
    assert not (ROOT / "policyshare" / "curves.py").exists() and not (ROOT / "policyshare" / "statistics.py").exists()
    assert not (ROOT / "policyshare" / "comparison.py").exists()


def test_test_modules_share_helpers_through_conftest_only() -> None:
    tests = sorted((ROOT / "tests").glob("test_*.py"))
    offenders = []
    for path in tests:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[-1].startswith("test_")
                          or n.startswith("tests")]
    assert tests and offenders == []


# --------------------------------------------------------------------------------------------
# compare_methods: the one comparison API, on hand-computed curves

STEPS = [0, 50, 100]
# random 0, expert 10. Areas over [0, 100] by the trapezoid rule:
FULL = (STEPS, [0.0, 10.0, 10.0])  # 750: normalised area 0.75
LEARNS = (STEPS, [0.0, 4.0, 8.0])  # 400: normalised area 0.4, mean return 4 (clearly above random)
ZERO = (STEPS, [0.0, 0.0, 0.0])  # exactly 0
BELOW = (STEPS, [-1.0, -1.0, -1.0])  # below random
REPS = 200


def _table(c: comparison.Comparison) -> dict[str, dict[str, str]]:
    return {row[0]: dict(zip(c.table_head(), row)) for row in c.table_rows()}


def test_every_metric_per_seed_by_hand() -> None:
    curves = {"scratch": {0: LEARNS}, "finetune": {0: FULL}}
    c = comparison.compare_methods(curves, random=0.0, expert=10.0, reps=REPS)
    got = {k: v[0].value for k, v in c.methods["finetune"].per_seed.items()}
    assert got == pytest.approx({
        "transfer_percent": 100 * 750 / 400,
        "normalised_area_gain": (750 - 400) / (100 * 10),
        "forward_transfer": (0.75 - 0.4) / (1 - 0.4),
        "normalised_return_at_10": 0.2,  # 10 env steps: return 2
        "normalised_return_at_50": 1.0,
        "normalised_return_at_100": 1.0,
        "normalised_area": 0.75,
    })
    assert list(c.metrics) == list(got) and c.budget == 100
    assert c.methods["scratch"].poi is None and c.methods["finetune"].poi.point == 1.0  # rliable's P(X > Y)
    # Budget T = 50 and other fractions.
    half = comparison.compare_methods(curves, random=0.0, expert=10.0, budget=50, fractions=(0.5,), reps=REPS)
    assert half.methods["finetune"].per_seed["normalised_area_gain"][0].value == pytest.approx((250 - 100) / 500)
    assert half.methods["finetune"].per_seed["normalised_return_at_50"][0].value == pytest.approx(0.5)


def test_a_scratch_curve_at_zero_and_one_below_random_keep_every_method_and_no_nan() -> None:
    curves = {"scratch": {0: LEARNS, 1: ZERO, 2: BELOW},
              "finetune": {0: FULL, 1: FULL, 2: FULL},
              "frozen": {0: ZERO, 1: FULL, 2: FULL}}
    c = comparison.compare_methods(curves, random=0.0, expert=10.0, reps=REPS)
    data = c.to_json()
    json.dumps(data, allow_nan=False)  # no nan anywhere, aggregates included
    rows = _table(c)
    assert list(rows) == ["scratch", "finetune", "frozen"]  # no method disappears
    ft = rows["finetune"]
    assert ft["transfer %"] == "187.5 (one seed); undefined: scratch not clearly above random on seeds 1, 2"
    assert ft["normalised area gain"] == "0.65 (range 0.35 to 0.85, 3 seeds)"  # 0.35, 0.75, 0.85
    assert rows["frozen"]["transfer %"].startswith("0 (one seed); undefined: scratch not clearly above random")
    assert rows["scratch"]["transfer %"] == "— (baseline)"
    undefined = data["methods"]["finetune"]["undefined"]["transfer_percent"]
    assert set(undefined) == {"1", "2"} and "(0) is not above random" in undefined["1"]
    assert data["methods"]["finetune"]["per_seed"]["transfer_percent"] == {"0": 187.5, "1": None, "2": None}
    agg = data["methods"]["finetune"]["aggregate"]["transfer_percent"]
    assert (agg["point"], agg["n_defined"], agg["undefined_seeds"]) == (
        187.5, 1, {"scratch not clearly above random": ["1", "2"]})
    # Undefined on every seed: the row stays, with the reason and the seeds.
    alone = comparison.compare_methods({"scratch": {1: ZERO, 2: BELOW}, "finetune": {1: FULL, 2: FULL}},
                                       random=0.0, expert=10.0, reps=REPS)
    assert _table(alone)["finetune"]["transfer %"] == "undefined: scratch not clearly above random on seeds 1, 2"
    # No expert return: every metric undefined, the method still there.
    none = comparison.compare_methods(curves, random=0.0, expert=None, references="the zoo has no expert for X")
    assert _table(none)["finetune"]["FT"] == "undefined: no expert return for the target on seeds 0, 1, 2"
    assert none.methods["finetune"].per_seed["forward_transfer"][0].reason == (
        "no expert return for the target: the zoo has no expert for X")


def test_two_seeds_give_a_range_not_a_confidence_interval_and_no_verdict() -> None:
    curves = {"scratch": {0: LEARNS, 1: (STEPS, [0.0, 2.0, 6.0])},
              "finetune": {0: FULL, 1: (STEPS, [0.0, 9.0, 10.0])}}
    c = comparison.compare_methods(curves, random=0.0, expert=10.0, reps=REPS)
    text = "\n".join(c.markdown())
    assert "range" in _table(c)["finetune"]["normalised area gain"] and "[" not in _table(c)["finetune"]["FT"]
    assert "a range, not a confidence interval" in text and "Curve: **greedy evaluation**" in text
    assert _table(c)["finetune"]["P(> scratch), normalised area"] == "1.00 (2 seeds, no interval)"
    v = c.verdict("finetune")
    assert v.outcome == "no verdict" and v.seeds == (2, 2) and v.env_steps == 100
    assert "a range, not a confidence interval" in str(v) and v.seeds_needed is not None and v.seeds_needed >= 5


def test_enough_seeds_give_rliable_intervals_and_a_verdict() -> None:
    rng = np.random.default_rng(0)
    curves: dict[str, dict[int, comparison.Curve]] = {"scratch": {}, "finetune": {}}
    for s in range(8):
        base = float(rng.uniform(2, 4))
        curves["scratch"][s] = (STEPS, [0.0, base, 2 * base])
        curves["finetune"][s] = (STEPS, [0.0, base + 4, 2 * base + 2])
    c = comparison.compare_methods(curves, random=0.0, expert=10.0, reps=REPS)
    gain = c.methods["finetune"].summary["normalised_area_gain"].estimate
    from policyshare.stats import aggregate

    expected = aggregate([c.methods["finetune"].per_seed["normalised_area_gain"][s].value for s in range(8)],
                         reps=REPS)
    assert gain.is_confidence_interval and (gain.point, gain.low, gain.high) == pytest.approx(
        (expected.point, expected.low, expected.high))  # rliable's stratified bootstrap of the IQM
    v = c.verdict("finetune", "scratch", claim="fine-tuning helps")
    assert v.outcome == "supported" and str(v).startswith("fine-tuning helps: supported")
    assert c.verdict("scratch", "finetune").outcome == "refuted"
    profiles = c.profiles()
    assert set(profiles) == {"scratch", "finetune"} and profiles["finetune"].fraction[0] == 1.0
    assert json.loads(json.dumps(c.to_json()))["profiles"]["score"] == "normalised_area"


def _hierarchical_curves(rng: np.random.Generator, n_up: int = 6, n_tgt: int = 5) -> dict[str, dict]:
    """Scratch on target seeds; a student whose upstream seed moves all its runs together."""
    curves: dict[str, dict] = {"scratch": {}, "student": {}}
    for s in range(n_tgt):
        curves["scratch"][s] = (STEPS, [0.0, 2.0, 4.0 + float(rng.normal(0, 0.2))])
    for u in range(n_up):
        up = float(rng.normal(0, 2.0))  # most variance between upstream seeds
        for s in range(n_tgt):
            curves["student"][(u, s)] = (STEPS, [0.0, 5.0 + up, 6.0 + up + float(rng.normal(0, 0.2))])
    return curves


def test_hierarchical_seeds_are_bootstrapped_over_upstream_then_target_seeds() -> None:
    c = comparison.compare_methods(_hierarchical_curves(np.random.default_rng(1)), random=0.0, expert=10.0,
                                   reps=REPS)
    student = c.methods["student"]
    assert student.hierarchical and not c.methods["scratch"].hierarchical
    est = student.summary["normalised_area"].estimate
    assert est.is_confidence_interval and "hierarchical bootstrap CI over 6 upstream × 5 target seeds" in est.note
    from policyshare.stats import aggregate

    flat = aggregate(list(student.scores("normalised_area").values()), reps=REPS)  # runs as independent
    assert est.point == pytest.approx(flat.point) and (est.high - est.low) > 1.5 * (flat.high - flat.low)
    # Relative metrics pair (u, s) with scratch's run on target seed s.
    gain = student.per_seed["normalised_area_gain"][(2, 3)].value
    area = student.per_seed["normalised_area"][(2, 3)].value - c.methods["scratch"].per_seed["normalised_area"][3].value
    assert gain == pytest.approx(area)
    assert "u2-s3" in c.to_json()["methods"]["student"]["seeds"]
    v = c.verdict("student")
    assert "hierarchical bootstrap" in v.difference.note and v.seeds == (30, 5)
    assert "hierarchical bootstrap" in student.poi.note
    # Two upstream seeds: a range, and no verdict.
    few = comparison.compare_methods(_hierarchical_curves(np.random.default_rng(2), n_up=2), random=0.0,
                                     expert=10.0, reps=REPS)
    assert few.methods["student"].summary["normalised_area"].estimate.kind == "range"
    assert few.verdict("student").outcome == "no verdict"


def test_training_episode_curves_are_read_beside_greedy_ones(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "evaluations.json").write_text(json.dumps({
        "timesteps": [0, 10, 20, 30], "mean": [0.0, 1.0, 2.0, 3.0], "std": [0.0] * 4,
        "train_mean": [None, 0.5, None, 1.5], "train_episodes": [0, 4, 0, 3],
        "train_mean_why": "no training episode finished since the previous evaluation (null at 0, 2)"}))
    (run / "metrics.json").write_text(json.dumps({"eval_mean_return": 3.0, "timesteps": 30,
                                                  "random_mean_return": 0.25}))
    assert comparison.load_curve(run) == ([0.0, 10.0, 20.0, 30.0], [0.0, 1.0, 2.0, 3.0])
    # Step 0 takes the first window's mean (no episode has finished at 0); empty windows are skipped.
    assert comparison.load_curve(run, "training") == ([0.0, 10.0, 30.0], [0.5, 0.5, 1.5])
    old = write_run(tmp_path / "old", [0, 10], [0.0, 1.0], 1.0)  # written before training returns were kept
    assert comparison.load_curve(old, "training") == comparison.NO_TRAINING_CURVE
    runs = comparison.read_runs({"scratch": {0: old}, "finetune": {0: run}})
    assert runs.curves_of("training")["finetune"][0] == ([0.0, 10.0, 30.0], [0.5, 0.5, 1.5])
    assert runs.random_return() == 0.25 and runs.budget() == 10
    c = comparison.compare_methods(runs.curves_of("training"), random=0.0, expert=2.0, budget=10,
                                   curve=comparison.CURVE_LABELS["training"])
    assert "Curve: **training episodes**" in c.markdown()[0]
    assert _table(c)["scratch"]["return at 100 % of T (norm.)"] == (
        "undefined: no training-episode returns recorded on seed 0")
    assert c.methods["finetune"].per_seed["normalised_area_gain"][0].why == "no training-episode returns recorded"
    assert c.methods["finetune"].per_seed["normalised_area"][0].value == pytest.approx(0.25)


def test_expert_return_of_the_zoo_and_a_missing_one() -> None:
    expert, source = comparison.zoo_expert_return("MinAtar/Breakout-v1")
    assert expert is not None and expert > 0 and source.startswith("zoo expert MinAtar-Breakout-v1__s0.zip")
    assert comparison.zoo_expert_return("CartPole-v1") == (None, "the zoo has no expert for CartPole-v1")
