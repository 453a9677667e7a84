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
             "markdown_table", "interval_figure", "plot_intervals", "aggregate_over_tasks"}
    elsewhere = {str(p.relative_to(ROOT)): sorted(owned & _defined_functions(p))
                 for p in (ROOT / "policyshare").rglob("*.py") if p.name != "comparison.py"}
    # vision's thesis table (probe and guidance figures, not learning curves) shares only the name
    elsewhere["policyshare/vision/compare_report.py"].remove("markdown_table")
    assert {k: v for k, v in elsewhere.items() if v} == {}
    assert not (ROOT / "policyshare" / "curves.py").exists() and not (ROOT / "policyshare" / "statistics.py").exists()


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
