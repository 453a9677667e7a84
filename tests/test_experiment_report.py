"""The experiment report from run folders written by hand: every row kept, nothing ``nan``, seeds keyed
by upstream seed where a run has one, verdicts on the four claims, and the capacity hook of claim (d)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import run_cli

from policyshare.config import to_dict
from policyshare.experiment import load_experiment_config
from policyshare.experiment.design import arms, upstream_for, upstreams
from policyshare.experiment.layout import transfer_dir, upstream_dir
from policyshare.experiment.report import build_report, render
from policyshare.experiment.report_claims import NO_CAPACITY

BREAKOUT, SEAQUEST = "MinAtar/Breakout-v1", "MinAtar/Seaquest-v1"
OUTCOMES = {"supported", "refuted", "undecided at this budget", "no verdict"}
STEPS = [0, 50_000, 100_000]


def _curve(method: str, target: str, seed: int, up: int | None) -> list[float]:
    """Hand-made greedy curves: scratch exactly 0 on Breakout; the student clearly better everywhere;
    progressive and its random-column control alike."""
    if method == "scratch":
        return [0.0, 0.0, 0.0] if target == BREAKOUT else [0.0, 1.0 + 0.1 * seed, 2.0 + 0.2 * seed]
    if method == "student":
        return [0.0, 7.0 + 0.2 * seed + 0.3 * (up or 0), 9.0 + 0.1 * seed]
    wobble = 0.1 * ((seed * 7 + len(method)) % 5)
    return [0.0, 1.0 + wobble, 1.5 + wobble]


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data) if path.suffix == ".yaml" else json.dumps(data))


def _upstream_metrics(root: Path, cfg) -> None:
    for kind, ups in upstreams(cfg).items():
        for up in ups:
            folder = upstream_dir(root, up)
            if kind == "expert":
                _write(folder / "metrics.json", {"env_id": up.games[0], "timesteps": 1000, "eval_mean_return": 10.0,
                                                 "eval_std_return": 1.0, "random_mean_return": 0.0,
                                                 "n_parameters": 100})
            else:
                per_task = {g: {"student_return": 5.0, "teacher_return": 10.0, "random_return": 0.0,
                                "expert_normalised": 0.5, "agreement": 0.9} for g in up.games}
                _write(folder / "metrics.json", {
                    "tasks": list(up.games), "env_steps_per_task": 500, "per_task": per_task,
                    "expert_normalised_iqm": {"point": 0.5, "low": 0.5, "high": 0.5}, "student_parameters": 90,
                    "teacher_parameters": 200, "student_to_teachers_ratio": 0.45, "feature_map_parameters": 10})


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two held-out targets (leave-one-game-out over three games), six target seeds, three upstream
    seeds; every run folder written by hand with the real layout."""
    tmp = tmp_path_factory.mktemp("synthetic")
    config = tmp / "synthetic.yaml"
    config.write_text(yaml.safe_dump({
        "name": "synthetic", "targets": [BREAKOUT, SEAQUEST], "sources": "others",
        "games": [BREAKOUT, SEAQUEST, "MinAtar/Asterix-v1"], "seeds": [0, 1, 2, 3, 4, 5],
        "experts": {"source": "train", "seeds": [0, 1, 2], "timesteps": 1000}, "distill": {"steps": 5000},
        "transfer": {"timesteps": 100_000, "methods": ["scratch", "finetune", "student", "progressive",
                                                        "random_column"]},
        "vision": {"enabled": False}, "report": {"bootstrap_reps": 200}}))
    cfg = load_experiment_config(config)
    root = tmp / "exp"
    _write(root / "config.yaml", to_dict(cfg))
    _upstream_metrics(root, cfg)
    for target in cfg.target_games:
        for arm in arms(cfg, target):
            for seed in cfg.seeds:
                up = upstream_for(cfg, target, arm, seed)
                folder = transfer_dir(root, target, arm.label, seed)
                mean = _curve(arm.method, target, seed, None if up is None else up.seed)
                _write(folder / "config.yaml", {"upstream": None if up is None else up.describe()})
                _write(folder / "evaluations.json", {"timesteps": STEPS, "mean": mean, "std": [0.0] * 3,
                                                     "train_mean": [None, mean[1] / 2, mean[2] / 2],
                                                     "train_episodes": [0, 10, 10]})
                _write(folder / "metrics.json", {"eval_mean_return": mean[-1], "timesteps": STEPS[-1],
                                                 "random_mean_return": 0.0 if target == BREAKOUT else 0.5,
                                                 "n_parameters": 100, "trunk_parameters": 50})
    build_report(root)
    return root


def _strict(path: Path) -> dict:
    def refuse(name: str) -> None:
        raise ValueError(f"{path}: {name} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_every_row_stays_and_nothing_is_nan_where_scratch_is_exactly_zero(synthetic: Path) -> None:
    summary = _strict(synthetic / "summary.json")
    report = (synthetic / "report.md").read_text()
    assert "nan" not in report.lower()
    for target in (BREAKOUT, SEAQUEST):
        t = summary["transfer"]["targets"][target]
        source = "Seaquest-v1" if target == BREAKOUT else "Breakout-v1"
        expected = {"scratch", "finetune__Asterix-v1__pad", f"finetune__{source}__pad", "student__pad",
                    f"progressive__{source}__pad", "random_column__pad", "finetune__mean-over-sources__pad",
                    "finetune__best-source__pad"}
        for curve in ("greedy evaluation", "training episodes"):
            assert set(t["comparison"][curve]["methods"]) == expected, (target, curve)
        assert set(t["rows"]) == expected
        for label in expected:
            assert f"| {label} |" in report
    breakout = summary["transfer"]["targets"][BREAKOUT]
    # scratch's area is exactly 0: transfer % undefined with its reason, every other metric a number.
    student = breakout["comparison"]["greedy evaluation"]["methods"]["student__pad"]
    assert set(student["per_seed"]["transfer_percent"].values()) == {None}
    assert all("scratch not clearly above random" in why for why in student["undefined"]["transfer_percent"].values())
    for metric in ("normalised_area_gain", "forward_transfer", "normalised_area"):
        assert isinstance(student["aggregate"][metric]["point"], float), metric
    assert breakout["comparison"]["greedy evaluation"]["methods"]["scratch"]["aggregate"]["normalised_area"][
        "point"] == 0.0


def test_runs_with_an_upstream_are_keyed_by_upstream_seed_and_bootstrapped_hierarchically(synthetic: Path) -> None:
    summary = _strict(synthetic / "summary.json")
    methods = summary["transfer"]["targets"][SEAQUEST]["comparison"]["greedy evaluation"]["methods"]
    assert methods["student__pad"]["seeds"] == ["u0-s0", "u1-s1", "u2-s2", "u0-s3", "u1-s4", "u2-s5"]
    assert methods["student__pad"]["hierarchical"] and not methods["scratch"]["hierarchical"]
    assert methods["scratch"]["seeds"] == ["0", "1", "2", "3", "4", "5"]
    area = methods["student__pad"]["aggregate"]["normalised_area"]
    assert area["kind"] == "confidence interval" and "hierarchical" in area["note"]
    rows = summary["transfer"]["targets"][SEAQUEST]["rows"]
    assert rows["student__pad"]["upstream_env_steps"] == {"distillation": 1000, "experts": 2000}
    assert rows["finetune__mean-over-sources__pad"]["upstream_env_steps"] == {"experts": 2000}
    assert rows["scratch"]["upstream_env_steps"] == {}


def test_across_targets_and_the_four_claims(synthetic: Path) -> None:
    summary = _strict(synthetic / "summary.json")
    across = summary["transfer"]["across_targets"]
    assert across["n_targets"] == 2
    assert set(across["scores"]) == {"scratch", "student__pad", "finetune__mean-over-sources__pad",
                                     "finetune__best-source__pad", "progressive__pad", "random_column__pad"}
    student = across["scores"]["student__pad"]
    assert student["targets"] == [BREAKOUT, SEAQUEST] and student["runs"] == 12
    assert student["normalised_area"]["kind"] == "confidence interval"
    assert student["poi_over_scratch"]["point"] == 1.0
    assert (synthetic / across["profiles"]["plot"]).read_bytes()[:4] == b"\x89PNG"
    claims = summary["claims"]
    assert claims["a"]["outcome"] == "supported"
    assert claims["b"]["outcome"] == "supported"  # single_teacher did not run: only vs finetune counts
    assert claims["c"]["outcome"] in OUTCOMES
    assert claims["d"]["outcome"] == NO_CAPACITY
    report = (synthetic / "report.md").read_text()
    assert "(a) sharing helps transfer to a held-out game: **supported**" in report
    assert f"(d) sharing gives more per parameter: {NO_CAPACITY}" in report
    assert "across 2 held-out targets" in report and "env steps charged upstream" in report


def test_claim_d_comes_from_the_capacity_section(synthetic: Path) -> None:
    summary = _strict(synthetic / "summary.json")
    capacity = {"verdict": {"claim": "one shared network beats K single-task ones per parameter",
                            "outcome": "undecided at this budget", "seeds_needed": 9,
                            "text": "one shared network beats K single-task ones per parameter: undecided at this "
                                    "budget (…)"},
                "table": ["| network | score |", "|---|---:|", "| shared | 0.5 |"]}
    text = render({**summary, "capacity": capacity})
    assert "(d) one shared network beats K single-task ones per parameter: undecided at this budget" in text
    assert "| shared | 0.5 |" in text and NO_CAPACITY not in text


def test_policyshare_report_rebuilds_the_same_report_from_the_folder(synthetic: Path) -> None:
    before = _strict(synthetic / "summary.json")
    (synthetic / "report.md").unlink()
    proc = run_cli("report", str(synthetic))
    assert proc.returncode == 0, proc.stderr
    after = _strict(synthetic / "summary.json")
    assert after["findings"] == before["findings"] and after["claims"] == before["claims"]
    assert (synthetic / "report.md").is_file()
