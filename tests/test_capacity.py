"""The capacity stages (issue 12, item 6): data per parameter, measured — planned jobs, refusals,
networks sized as designed, and a tiny end-to-end run whose summary has every variant and a verdict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import assert_user_error, run_cli

from policyshare.config import from_dict
from policyshare.errors import ConfigError
from policyshare.experiment import ExperimentConfig, plan
from policyshare.experiment.capacity import VARIANTS, fit_width

SOURCES = ["MinAtar/SpaceInvaders-v1", "MinAtar/Asterix-v1"]
TARGET = "MinAtar/Breakout-v1"


def raw_config(**capacity: Any) -> dict[str, Any]:
    return {"name": "cap", "sources": SOURCES, "targets": [TARGET], "seeds": [0, 1],
            "experts": {"source": "zoo", "seeds": [0]}, "distill": {"enabled": False},
            "transfer": {"methods": ["scratch"], "timesteps": 8192, "set": {"eval": {"freq": 4096}}},
            "vision": {"enabled": False},
            "report": {"bootstrap_reps": 200},
            "capacity": {"enabled": True, **capacity}}


def test_capacity_is_off_by_default_and_plans_every_variant_per_seed() -> None:
    off = from_dict(ExperimentConfig, {**raw_config(), "capacity": {}}, "t")
    assert not off.capacity.enabled and not plan(off)["capacity"] and not plan(off)["capacity_shared"]
    jobs = plan(from_dict(ExperimentConfig, raw_config(), "t"))
    names = {j.name for j in jobs["capacity"]}
    assert names == {f"capacity/single/{g.replace('/', '-')}__s{s}" for g in SOURCES for s in (0, 1)} | {
        f"capacity/multitask/SpaceInvaders-v1_Asterix-v1__s{s}" for s in (0, 1)}
    assert {j.name for j in jobs["capacity_shared"]} == {
        f"capacity/{v}/SpaceInvaders-v1_Asterix-v1__s{s}" for v in ("shared_total", "shared_one") for s in (0, 1)}
    # the experts the scores are normalised by are planned
    assert {j.params["games"][0] for j in jobs["experts"]} == set(SOURCES)


@pytest.mark.parametrize("capacity, message", [
    ({"games": ["MinAtar/Asterix-v1"]}, "capacity.games: 1 game; a shared network needs at least two"),
    ({"games": ["MinAtar/Asterix-v1", "MinAtar/Asterix-v1"]}, "lists a game twice"),
    ({"seeds": []}, "capacity.seeds: list at least one seed"),
    ({"timesteps": 1}, "less than one env step per game"),
])
def test_capacity_configs_that_cannot_work_are_refused(capacity: dict[str, Any], message: str,
                                                       tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        from_dict(ExperimentConfig, raw_config(**capacity), "t")
    assert message in str(e.value) and "\n" not in str(e.value)
    path = tmp_path / "cap.yaml"
    path.write_text(yaml.safe_dump(raw_config(**capacity)))
    assert_user_error(run_cli("run", str(path), "--plan"), message)


def test_fit_width_finds_the_nearest_parameter_count() -> None:
    def count(w: float) -> int:  # conv 16w, fc 128w over 64 cells: as the minatar trunk
        c, h = max(1, round(16 * w)), max(1, round(128 * w))
        return 10 * 9 * c + c + c * 64 * h + h
    base = count(1.0)
    for k in (2, 4):
        assert abs(count(fit_width(k * base, count)) / (k * base) - 1) < 0.03
        assert abs(count(fit_width(round(base / k), count)) / (base / k) - 1) < 0.06


def test_a_tiny_capacity_run_summarises_every_variant_with_a_verdict(tmp_path: Path) -> None:
    from policyshare.experiment.capacity_report import capacity_markdown, capacity_summary, plot_capacity
    from policyshare.experiment.runner import open_experiment, run_job

    tiny_eval = {"freq": 0, "episodes": 1, "final_episodes": 2, "random_episodes": 2}
    raw = raw_config(timesteps=4096, distill_steps=256,
                     train_set={"n_envs": 8, "checkpoint_freq": 0, "eval": tiny_eval,
                                "hyperparams": {"n_steps": 128, "batch_size": 256}},
                     multitask_set={"n_envs": 8, "checkpoint_freq": 0, "progress_bar": False, "eval": tiny_eval,
                                    "hyperparams": {"n_steps": 128, "batch_size": 512}},
                     distill_set={"n_envs": 4, "learning_starts": 64, "batch_size": 32, "checkpoint_freq": 0,
                                  "log_freq": 128, "eval": tiny_eval})
    path = tmp_path / "cap.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg, root = open_experiment(path, tmp_path / "run")
    jobs = plan(cfg)
    for stage in ("experts", "capacity", "capacity_shared"):
        for job in jobs[stage]:
            assert run_job(root, job) == "ran"
    summary = capacity_summary(root, cfg)
    assert summary is not None
    json.dumps(summary, allow_nan=False)  # strict JSON: no nan anywhere
    v = summary["variants"]
    assert set(v) == set(VARIANTS)
    for name in VARIANTS:
        assert set(v[name]["per_seed"]) == {"0", "1"} and v[name]["iqm"]["point"] is not None
    single = v["single"]["trainable_parameters"]
    assert abs(v["shared_total"]["trainable_parameters"] / single - 1) < 0.03  # the K networks' together
    assert abs(v["shared_one"]["trainable_parameters"] / (single / 2) - 1) < 0.05  # 1/K of them
    assert v["single"]["total_env_steps"] == 4096 and v["single"]["upstream_env_steps"] == 0
    assert v["shared_one"]["upstream_env_steps"] == 4096
    assert summary["verdict"]["outcome"] in ("supported", "refuted", "undecided at this budget", "no verdict")
    assert "1/K" in summary["verdict"]["text"]
    text = "\n".join(capacity_markdown(summary))
    assert "K single-task networks" in text and "multi-task PPO" in text
    assert plot_capacity(summary, tmp_path / "capacity.png").is_file()
    student_cfg = yaml.safe_load((root / "capacity/shared_one/SpaceInvaders-v1_Asterix-v1__s0/config.yaml").read_text())
    assert student_cfg["trunk"]["width"] < 1  # the width is recorded in the run's config
