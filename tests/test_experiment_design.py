"""The experiment's design: which jobs a config plans (leave-one-game-out × methods × alignments ×
seeds), how target seeds pair with upstream seeds, what is refused before anything runs, and the
``--plan`` estimate."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, run_cli

from policyshare.config import from_dict
from policyshare.errors import ConfigError, UserError
from policyshare.experiment import ExperimentConfig, load_experiment_config, plan
from policyshare.experiment.design import arms, upstream_for, upstreams

GAMES = ["MinAtar/Breakout-v1", "MinAtar/Asterix-v1", "MinAtar/Freeway-v1", "MinAtar/Seaquest-v1",
         "MinAtar/SpaceInvaders-v1"]
ALL_METHODS = ["scratch", "finetune", "frozen", "student", "single_teacher", "multitask", "progressive",
               "random_column"]


def study(**changes: Any) -> ExperimentConfig:
    """Leave-one-game-out over the five MinAtar games, every method, pad and stem, five target
    seeds, three upstream seeds (the games given as a list: nothing is read from disk)."""
    raw: dict[str, Any] = {"name": "loo", "games": GAMES, "targets": "all", "sources": "others",
                           "seeds": [0, 1, 2, 3, 4],
                           "experts": {"source": "train", "seeds": [0, 1, 2]},
                           "transfer": {"methods": ALL_METHODS, "alignments": ["pad", "stem"]},
                           "vision": {"enabled": False}}
    for key, value in changes.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) and isinstance(raw.get(key), dict) else value
    return from_dict(ExperimentConfig, raw, "study")


def test_leave_one_game_out_plans_every_arm_for_every_target_seed_and_alignment() -> None:
    cfg = study()
    jobs = plan(cfg)
    # Per target and seed: scratch once, and per alignment 4 finetune + 4 frozen (one per source),
    # student, single_teacher, multitask, progressive and random_column.
    per_target_seed = 1 + 2 * (4 + 4 + 5)
    assert len(jobs["transfer"]) == 5 * 5 * per_target_seed == 675
    names = {j.name for j in jobs["transfer"]}
    assert len(names) == len(jobs["transfer"])
    seaquest = "transfer/MinAtar-Seaquest-v1"
    assert f"{seaquest}/scratch__s4" in names and f"{seaquest}/scratch__pad__s4" not in names
    for source in ("Breakout-v1", "Asterix-v1", "Freeway-v1", "SpaceInvaders-v1"):
        for method in ("finetune", "frozen"):
            assert f"{seaquest}/{method}__{source}__stem__s0" in names
    assert not any(n.startswith(f"{seaquest}/finetune__Seaquest-v1") for n in names)  # never its own source
    methods = Counter(j.params["method"] for j in jobs["transfer"])
    assert methods == {"scratch": 25, "finetune": 200, "frozen": 200, "student": 50, "single_teacher": 50,
                       "multitask": 50, "progressive": 50, "random_column": 50}


def test_experts_are_shared_by_targets_and_students_are_per_target() -> None:
    jobs = plan(study())
    # One expert per game, seed and alignment, whichever targets use it.
    assert len(jobs["experts"]) == 5 * 3 * 2
    assert "experts/MinAtar-Breakout-v1/stem__s2" in {j.name for j in jobs["experts"]}
    students = [j for j in jobs["distill"] if len(j.params["games"]) == 4]
    assert len(students) == 5 * 3 * 2
    assert "distill/Breakout-v1_Asterix-v1_Freeway-v1_SpaceInvaders-v1/pad__s1" in {j.name for j in students}
    # Single-teacher students: each target's first source; the same teacher serves several targets once.
    single = sorted({j.params["games"][0] for j in jobs["distill"] if len(j.params["games"]) == 1})
    assert single == ["MinAtar/Asterix-v1", "MinAtar/Breakout-v1"]
    assert len(jobs["multitask"]) == 5 * 3 * 2
    assert {j.params["games"].__len__() for j in jobs["multitask"]} == {4}


def test_target_seed_i_uses_upstream_seed_i_mod_u_and_records_it() -> None:
    cfg = study()
    target = "MinAtar/Seaquest-v1"
    student = next(a for a in arms(cfg, target) if a.method == "student" and a.alignment == "stem")
    used = {s: upstream_for(cfg, target, student, s) for s in cfg.seeds}
    assert {s: u.seed for s, u in used.items() if u} == {0: 0, 1: 1, 2: 2, 3: 0, 4: 1}
    assert used[3] is not None and used[3].name == "distill/Breakout-v1_Asterix-v1_Freeway-v1_SpaceInvaders-v1/stem__s0"
    jobs = {j.name: j for j in plan(cfg)["transfer"]}
    job = jobs["transfer/MinAtar-Seaquest-v1/finetune__Freeway-v1__pad__s4"]
    assert job.params["upstream"]["run"] == "experts/MinAtar-Freeway-v1/pad__s1"
    assert job.params["upstream"]["seed"] == 1
    assert jobs["transfer/MinAtar-Seaquest-v1/scratch__s4"].params["upstream"] is None
    assert jobs["transfer/MinAtar-Seaquest-v1/random_column__stem__s4"].params["upstream"] is None


def test_students_learn_from_the_experts_of_their_upstream_seed_and_alignment() -> None:
    cfg = study(distill={"seeds": [10, 11, 12]})
    students = [u for u in upstreams(cfg)["distill"] if len(u.games) == 4]
    assert {(u.seed, u.teacher_seed) for u in students} == {(10, 0), (11, 1), (12, 2)}
    job = next(j for j in plan(cfg)["distill"] if j.name.endswith("stem__s11"))
    assert job.params["teacher_seed"] == 1 and job.params["alignment"] == "stem"


def test_fixed_sources_share_one_student_across_targets() -> None:
    cfg = study(sources=["MinAtar/Breakout-v1", "MinAtar/Asterix-v1"], targets=["MinAtar/Seaquest-v1",
                "MinAtar/Freeway-v1"], transfer={"finetune_from": "first", "alignments": ["pad"]})
    jobs = plan(cfg)
    assert [j.name for j in jobs["distill"] if len(j.params["games"]) == 2] == [
        f"distill/Breakout-v1_Asterix-v1/pad__s{s}" for s in (0, 1, 2)]
    assert {j.name.split("/")[-1].split("__")[1] for j in jobs["transfer"] if j.params["method"] == "finetune"} == {
        "Breakout-v1"}
    assert len(jobs["experts"]) == 2 * 3  # the two sources only: nothing is trained that no run uses


@pytest.mark.parametrize(("changes", "message"), [
    ({"sources": ["MinAtar/Seaquest-v1", "MinAtar/Breakout-v1"], "targets": ["MinAtar/Seaquest-v1"]},
     "MinAtar/Seaquest-v1 is both a source and a target; a target must be held out"),
    ({"sources": ["MinAtar/Breakout-v1", "MinAtar/Asterix-v1"]},  # targets: all holds the sources out too
     "MinAtar/Breakout-v1 is both a source and a target"),
    ({"seeds": [0, 1]}, "seeds: 2 target seeds cannot use the 3 upstream seeds of experts.seeds"),
    ({"experts": {"source": "zoo", "seeds": [0]}},
     "transfer.alignments: stem needs experts trained with stem for finetune, but experts.source: zoo gives pad"),
    ({"transfer": {"set": {"trunk": {"alignment": "stem"}}}}, "transfer.set.trunk.alignment: the alignment is a "
     "condition of the study; set transfer.alignments"),
    ({"transfer": {"alignments": ["pad", "pad"]}}, "lists an alignment twice"),
    ({"transfer": {"alignments": ["none"]}}, "alignments"),
    ({"transfer": {"progressive_from": "MinAtar/Breakout-v1"}},
     "transfer.progressive_from: MinAtar/Breakout-v1 is not a source of MinAtar/Breakout-v1"),
    ({"experts": {"seeds": [0, 0]}}, "experts.seeds: seed 0 is given twice"),
    ({"distill": {"enabled": False}}, "transfer method 'student' needs the distill stage"),
])
def test_designs_that_cannot_work_are_refused_with_one_line(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        study(**changes)
    assert message in str(e.value) and "\n" not in str(e.value)


def config_file(tmp_path: Path, **raw: Any) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "vision": {"enabled": False}, **raw}))
    return path


def test_a_zoo_seed_the_zoo_lacks_is_refused_naming_the_fix(tmp_path: Path) -> None:
    path = config_file(tmp_path, sources=["MinAtar/Asterix-v1", "MinAtar/Breakout-v1"],
                       targets=["MinAtar/Seaquest-v1"], seeds=[0, 1, 2, 3, 4, 5, 6, 7],
                       experts={"source": "zoo", "seeds": [0, 7]},
                       transfer={"methods": ["scratch", "finetune"], "timesteps": 65536}, distill={"enabled": False})
    with pytest.raises(UserError, match=r"experts.seeds: the zoo has no MinAtar/Asterix-v1 expert of seed 7 "
                                        r"\(it has seeds? 0.*\); list only seeds the zoo has.*experts.source: train"):
        load_experiment_config(path)


def test_all_and_others_without_a_named_game_need_the_suite(tmp_path: Path) -> None:
    path = config_file(tmp_path, targets="all", sources="others")
    with pytest.raises(ConfigError, match="targets: all and sources: others need the suite: add games: SUITE"):
        load_experiment_config(path)
    cfg = load_experiment_config(config_file(tmp_path, targets="all", sources="others", games="minatar",
                                             experts={"source": "train"}, distill={"enabled": False},
                                             transfer={"methods": ["scratch", "finetune"], "timesteps": 65536}))
    assert cfg.games == GAMES and cfg.target_games == GAMES and cfg.alignments == ["pad"]
    assert cfg.sources_for("MinAtar/Freeway-v1") == [g for g in GAMES if g != "MinAtar/Freeway-v1"]


def test_plan_of_the_sharing_study_validates_and_fits_two_hours_on_two_cores() -> None:
    from policyshare.experiment.budget import estimate

    cfg = load_experiment_config(ROOT / "configs" / "sharing.yaml")
    assert cfg.target_games == GAMES and cfg.sources == "others" and len(cfg.seeds) >= 5
    assert set(cfg.transfer.methods) == set(ALL_METHODS) and cfg.alignments == ["pad", "stem"]
    assert min(len(cfg.experts.seeds), len(cfg.distill.seeds or cfg.experts.seeds)) >= 3
    est = estimate(cfg, plan(cfg))
    assert est.wall_seconds(2) < 2 * 3600
    quick = load_experiment_config(ROOT / "configs" / "quickstart.yaml")
    assert set(quick.transfer.methods) == set(ALL_METHODS)
    assert estimate(quick, plan(quick)).wall_seconds(2) < 15 * 60


def test_run_plan_prints_jobs_env_steps_and_wall_time_and_refuses_bad_configs(tmp_path: Path) -> None:
    proc = run_cli("run", "configs/sharing.yaml", "--plan", "--jobs", "2", "--run-dir", str(tmp_path / "e"))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "5 targets (leave-one-game-out), 5 target seeds, alignments pad, stem" in out
    assert "transfer     675" in out and "estimated wall time on 2 cores:" in out
    assert "finetune 200" in out and "frozen 200" in out
    assert not (tmp_path / "e").exists()
    bad = config_file(tmp_path, sources=["MinAtar/Breakout-v1"], targets=["MinAtar/Breakout-v1"])
    proc = run_cli("run", str(bad), "--plan")
    assert proc.returncode == 2 and "both a source and a target" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_the_estimate_rounds_budgets_to_whole_rollouts_and_schedules_jobs_as_the_pool_does() -> None:
    from policyshare.experiment.budget import JobCost, Throughput, job_cost, wall_seconds
    from policyshare.experiment.layout import Job

    # Four jobs in plan order on two cores: 3 | 2, then 2 on the core free first (4), then 1 (4).
    costs = [JobCost(Job("transfer", "transfer", str(i), {}), 0, 0, s) for i, s in enumerate((3.0, 2.0, 2.0, 1.0))]
    assert wall_seconds(costs, 2) == 4.0 and wall_seconds(costs, 1) == 8.0
    cfg = study(transfer={"timesteps": 20000, "set": {"eval": {"freq": 8192, "episodes": 2, "final_episodes": 3}}})
    name = "transfer/MinAtar-Freeway-v1/finetune__Breakout-v1__pad__s0"
    job = next(j for j in plan(cfg)["transfer"] if j.name == name)
    tp = Throughput()
    cost = job_cost(cfg, job, tp)
    # 64 batched envs x 128 steps: 20,000 env steps train as three rollouts of 8,192.
    assert cost.train_steps == 24576
    # Evaluations at steps 0, 8192, 16384, 24576 (2 episodes each) and 3 final episodes, 2,500 steps each.
    assert cost.eval_steps == (4 * 2 + 3) * 2500
    assert cost.seconds == pytest.approx(24576 / tp.train + cost.eval_steps / tp.evaluate + tp.job_s)


def test_a_finished_run_whose_upstream_seed_would_change_counts_as_changed() -> None:
    """More upstream seeds re-pair target seeds (i mod U): a finished run that started from another
    expert must not be taken as done with the new pairing ("resume only with the same settings")."""
    from policyshare.experiment import job_settings

    one = study(experts={"seeds": [0]}, seeds=[0, 1])
    two = study(experts={"seeds": [0, 1]}, seeds=[0, 1])
    jobs = {j.name: j for j in plan(two)["transfer"]}
    first = jobs["transfer/MinAtar-Seaquest-v1/finetune__Breakout-v1__pad__s0"]
    second = jobs["transfer/MinAtar-Seaquest-v1/finetune__Breakout-v1__pad__s1"]
    assert job_settings(one, first) == job_settings(two, first)
    assert job_settings(one, second) != job_settings(two, second)
    assert job_settings(one, second)["from"]["seed"] == 0 and job_settings(two, second)["from"]["seed"] == 1
    student = next(j for j in plan(two)["distill"] if j.name.endswith("pad__s1") and len(j.params["games"]) == 4)
    three = study(experts={"seeds": [0, 1]}, distill={"seeds": [0, 1]}, seeds=[0, 1])
    moved = study(experts={"seeds": [1, 0]}, distill={"seeds": [0, 1]}, seeds=[0, 1])  # student 1 now learns from 0
    assert job_settings(three, student) != job_settings(moved, student)
