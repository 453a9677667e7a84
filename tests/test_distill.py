"""Distillation: losses against hand-computed values, the student's masks and file round trip,
a real (tiny) distillation from two briefly trained MinAtar teachers, resume, and bad teachers."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_user_error, run_cli

from policyshare.checkpoints import save_tensors
from policyshare.config import parse_overrides
from policyshare.distill import (
    LossKind,
    Student,
    StudentAgent,
    TaskInfo,
    TaskMemory,
    build_student,
    distill,
    feature_regression_loss,
    load_distill_config,
    load_student,
    load_teachers,
    policy_regression_loss,
    policy_vec_env,
    save_student,
    task_info,
)
from policyshare.envs import load_suite
from policyshare.errors import CheckpointError, ConfigError, UserError
from policyshare.policies import load_policy
from policyshare.trunks import TrunkSpec

# ---------------------------------------------------------------------------------------------
# Losses (hand-computed on small tensors)

# Row 0: the task has actions 0 and 1 only; action 2's huge scores must not matter.
#   student logits (1, 2) → log q = (1 − ln(e + e²), 2 − ln(e + e²)) = (−1.3132617, −0.3132617)
#   teacher (2, 0) / τ:  τ = 1 → p = (0.8807971, 0.1192029);  τ = 0.5 → p = (0.9820138, 0.0179862)
#   CE = −Σ p log q:     τ = 1 → 1.1940588;                    τ = 0.5 → 1.2952755
#   KL = CE − H(p):      τ = 1 → 0.8287249;                    τ = 0.5 → 1.2051807
# Row 1: all three actions, all scores 0 → p = q = uniform: CE = ln 3 = 1.0986123, KL = 0.
STUDENT = torch.tensor([[1.0, 2.0, 50.0], [0.0, 0.0, 0.0]])
TEACHER = torch.tensor([[2.0, 0.0, 100.0], [0.0, 0.0, 0.0]])
MASK = torch.tensor([[True, True, False], [True, True, True]])


@pytest.mark.parametrize(("kind", "tau", "row0", "row1"), [
    ("cross_entropy", 1.0, 1.1940588, 1.0986123),
    ("cross_entropy", 0.5, 1.2952755, 1.0986123),
    ("kl", 1.0, 0.8287249, 0.0),
    ("kl", 0.5, 1.2051807, 0.0),
])
def test_policy_regression_hand_computed(kind: LossKind, tau: float, row0: float, row1: float) -> None:
    loss = policy_regression_loss(STUDENT, TEACHER, MASK, tau, kind)
    assert loss.item() == pytest.approx((row0 + row1) / 2, abs=1e-6)  # per-sample mean
    one = policy_regression_loss(STUDENT[:1], TEACHER[:1], MASK[:1], tau, kind)
    assert one.item() == pytest.approx(row0, abs=1e-6)


def test_masked_actions_get_no_probability_and_no_gradient() -> None:
    logits = STUDENT.clone().requires_grad_(True)
    loss = policy_regression_loss(logits, TEACHER, MASK, 1.0)
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert logits.grad[0, 2].item() == 0.0
    # Scores at the masked action do not change the loss, whatever they are (even -inf).
    other = STUDENT.clone()
    other[0, 2] = float("-inf")
    teacher = TEACHER.clone()
    teacher[0, 2] = -7.0
    assert policy_regression_loss(other, teacher, MASK, 1.0).item() == pytest.approx(loss.item())


def test_small_temperature_targets_the_greedy_action() -> None:
    # τ → 0: p → one-hot on the teacher's argmax, so CE → −log q(argmax) = 1.3132617.
    loss = policy_regression_loss(STUDENT[:1], TEACHER[:1], MASK[:1], 0.01)
    assert loss.item() == pytest.approx(1.3132617, abs=1e-6)


def test_reduction_is_a_per_sample_mean() -> None:
    loss = policy_regression_loss(STUDENT, TEACHER, MASK, 1.0)
    doubled = policy_regression_loss(STUDENT.repeat(2, 1), TEACHER.repeat(2, 1), MASK.repeat(2, 1), 1.0)
    assert doubled.item() == pytest.approx(loss.item())


def test_feature_regression_hand_computed() -> None:
    # ‖(1,2) − (0,0)‖² = 5, ‖(0,0) − (3,4)‖² = 25 → summed over units, mean over batch = 15.
    got = feature_regression_loss(torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([[0.0, 0.0], [3.0, 4.0]]))
    assert got.item() == 15.0
    with pytest.raises(ValueError, match="equal shapes"):
        feature_regression_loss(torch.zeros(2, 3), torch.zeros(2, 4))


def test_tau_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="tau must be > 0"):
        policy_regression_loss(STUDENT, TEACHER, MASK, 0.0)


# ---------------------------------------------------------------------------------------------
# Config


@pytest.mark.parametrize(("item", "match"), [
    ("tau=0", "tau must be > 0"),
    ("tau=-1", "tau must be > 0"),
    ("epsilon=1.5", r"epsilon must lie in \[0, 1\]"),
    ("epsilon=-0.1", r"epsilon must lie in \[0, 1\]"),
    ("beta=-0.01", "beta must be >= 0"),
    ("loss=mse", "'mse' is not one of"),
    ("head=shared", "'shared' is not one of"),
    ("tua=1", "did you mean 'tau'"),
])
def test_bad_config_values(item: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_distill_config(overrides=parse_overrides([item]))


def test_default_config_is_actor_mimic() -> None:
    cfg = load_distill_config()
    assert (cfg.loss, cfg.head, cfg.epsilon, cfg.beta) == ("cross_entropy", "common", 0.1, 0.01)


# ---------------------------------------------------------------------------------------------
# The package: public names from policyshare.distill, each submodule loaded on first use


def test_importing_the_package_loads_no_submodule_until_a_name_is_used() -> None:
    """``import policyshare.distill`` (as ``policyshare --help`` may) adds no module beyond the
    package itself; a public name imports the submodule that defines it, and only that one."""
    import subprocess
    import sys

    from conftest import ROOT

    code = ("import sys, policyshare; before = set(sys.modules); import policyshare.distill as d; "
            "print(sorted(set(sys.modules) - before)); before = set(sys.modules); d.TaskMemory; "
            "print(sorted(m for m in set(sys.modules) - before if m.startswith('policyshare')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["['policyshare.distill']", "['policyshare.distill.memory']"]


def test_every_public_name_comes_from_the_module_of_its_concept() -> None:
    import importlib

    import policyshare.distill as package

    homes = {"distill": "command", "train_student": "trainer", "Teacher": "teachers", "Student": "student",
             "TaskMemory": "memory", "policy_regression_loss": "losses", "DistillConfig": "config"}
    for name in package.__all__:
        obj = getattr(package, name)
        module = importlib.import_module(f"policyshare.distill.{package._EXPORTS[name]}")
        assert getattr(module, name) is obj, name
    for name, home in homes.items():
        assert getattr(package, name).__module__ == f"policyshare.distill.{home}", name
    assert set(package.__all__) <= set(dir(package))


# ---------------------------------------------------------------------------------------------
# The student network


def two_task_student(head: str = "common") -> Student:
    suite = load_suite("minatar")
    cfg = load_distill_config(overrides={"head": head})
    torch.manual_seed(0)
    return build_student([task_info("MinAtar/Breakout-v1"), task_info("MinAtar/SpaceInvaders-v1")], suite, cfg)


def some_observations(env_id: str, n: int = 32) -> np.ndarray:
    venv = policy_vec_env(env_id, 4, seed=5)
    obs = [venv.reset()]
    rng = np.random.default_rng(0)
    for _ in range(n // 4 - 1):
        obs.append(venv.step(rng.integers(venv.action_space.n, size=4))[0])
    venv.close()
    return np.concatenate(obs)


@pytest.mark.parametrize("head", ["common", "per_task"])
def test_student_masks_actions_a_task_lacks(head: str) -> None:
    student = two_task_student(head)
    obs = some_observations("MinAtar/Breakout-v1")
    scores, hidden = student(torch.as_tensor(obs), 0)
    breakout = student.tasks[0].action_map  # MinAtar's noop, left, right → common 0, 1, 3
    assert list(breakout) == [0, 1, 3]
    assert scores.shape == (32, 6) and hidden.shape == (32, student.hidden_dim)
    assert torch.isinf(scores[:, [2, 4, 5]]).all() and torch.isfinite(scores[:, [0, 1, 3]]).all()
    actions, _ = StudentAgent(student, 0).predict(obs)
    assert set(actions.tolist()) <= {0, 1, 2}
    # Both tasks through one trunk pass equal the per-task forwards.
    si = some_observations("MinAtar/SpaceInvaders-v1", 8)
    both = student.forward_tasks([torch.as_tensor(obs), torch.as_tensor(si)])
    assert torch.allclose(both[1][0], student(torch.as_tensor(si), 1)[0], atol=1e-6)


def test_the_trunk_is_shared_by_every_task() -> None:
    student = two_task_student()
    assert student.alignments[0].out_channels == student.alignments[1].out_channels == 10
    trunk_params = {id(p) for p in student.trunk.parameters()}
    assert len(trunk_params) == 4  # conv and dense weights and biases, once for both tasks


def test_save_load_gives_the_same_actions(tmp_path: Path) -> None:
    student = two_task_student("per_task")
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    path = save_student(student, tmp_path / "student.safetensors", {"run": "test"})
    for k, env_id in enumerate(["MinAtar/Breakout-v1", "MinAtar/SpaceInvaders-v1"]):
        obs = some_observations(env_id)
        agent, got_env, header = load_policy(path, env_id)
        assert got_env == env_id and header["format"] == "policyshare.student"
        before, _ = StudentAgent(student, k).predict(obs)
        after, _ = agent.predict(obs)
        assert np.array_equal(before, after)
        with torch.no_grad():
            assert torch.equal(student(torch.as_tensor(obs), k)[0], agent.student(torch.as_tensor(obs), k)[0])
    with pytest.raises(UserError, match="pass --task ID"):
        load_policy(path)
    with pytest.raises(UserError, match="not MinAtar/Asterix-v1"):
        load_policy(path, "MinAtar/Asterix-v1")
    raw = path.read_bytes()
    assert not raw.startswith(b"\x80")  # safetensors, not a pickle


def test_student_file_that_does_not_fit_its_header_is_refused(tmp_path: Path) -> None:
    student = two_task_student()
    spec = student.trunk.spec
    other = Student(TrunkSpec("minatar_deep", spec.in_channels, spec.height, spec.width),
                    [TaskInfo("MinAtar/Breakout-v1", (10, 10, 4), 1.0, (0, 1, 3))], 6,
                    student.alignment_kwargs)
    header = {"format": "policyshare.student", **student.describe()}
    path = save_tensors(tmp_path / "s.safetensors", other.state_dict(), header)
    with pytest.raises(CheckpointError, match="does not fit this network"):
        load_student(path)


def test_replay_memory_wraps_around_and_samples_only_what_it_holds() -> None:
    memory = TaskMemory(5, (2,), np.int64)
    memory.add(np.array([[1, 1], [2, 2], [3, 3]]))
    assert len(memory) == 3
    assert set(memory.sample(200, np.random.default_rng(0))[:, 0].tolist()) == {1, 2, 3}
    memory.add(np.array([[4, 4], [5, 5], [6, 6]]))  # 6 overwrites 1
    assert len(memory) == 5 and memory.obs[:, 0].tolist() == [6, 2, 3, 4, 5]
    memory.add(np.arange(14).reshape(7, 2))  # larger than the memory: its newest 5 rows stay
    assert sorted(memory.obs[:, 0].tolist()) == [4, 6, 8, 10, 12]
    with pytest.raises(ValueError, match="empty"):
        TaskMemory(3, (2,), np.int64).sample(1, np.random.default_rng(0))


# ---------------------------------------------------------------------------------------------
# Real distillation from two briefly trained teachers (PPO Freeway, DQN Breakout)

# Teacher settings are pinned here (not taken from configs/) so that the teachers stay the same
# when the default configs are tuned: briefly trained, but with state-dependent greedy actions.
TEACHER_TINY = ["--set", "eval.freq=0", "--set", "eval.final_episodes=1", "--set", "eval.random_episodes=1",
                "--set", "checkpoint_freq=0", "--set", "progress_bar=false", "--quiet"]
PPO_TEACHER = ["--set", "policy.net_arch=[64, 64]", "--set", "hyperparams.n_epochs=10",
               "--set", "hyperparams.learning_rate=2.5e-4", "--set", "vec_env=dummy", "--set", "n_envs=8",
               "--set", "hyperparams.n_steps=128", "--set", "hyperparams.batch_size=256",
               "--set", "hyperparams.clip_range=0.1", "--set", "hyperparams.ent_coef=0.01"]
DQN_TEACHER = ["--set", "policy.net_arch=[]", "--set", "hyperparams.learning_starts=1000",
               "--set", "hyperparams.buffer_size=2000", "--set", "hyperparams.learning_rate=2.5e-4"]
STUDENT_ARGS = ["--steps", "3000", "--set", "learning_starts=500", "--set", "n_envs=4", "--set", "batch_size=64",
                "--set", "head_hidden=[]", "--set", "tau=0.01", "--set", "learning_rate=3e-3", "--set", "log_freq=1000",
                "--set", "eval.freq=3000", "--set", "eval.episodes=1", "--set", "eval.final_episodes=1",
                "--set", "eval.random_episodes=1", "--quiet"]


@pytest.fixture(scope="module")
def teachers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two real MinAtar teachers: PPO on Freeway (4096 env steps), DQN on Breakout (2000)."""
    from policyshare.cli import main

    root = tmp_path_factory.mktemp("teachers")
    assert main(["train", "--env", "MinAtar/Freeway-v1", "--timesteps", "4096", "--run-dir",
                 str(root / "freeway"), *PPO_TEACHER, *TEACHER_TINY]) == 0
    assert main(["train", "--env", "MinAtar/Breakout-v1", "--algo", "dqn", "--timesteps", "2000",
                 "--run-dir", str(root / "breakout"), *DQN_TEACHER, *TEACHER_TINY]) == 0
    return {"freeway": root / "freeway", "breakout": root / "breakout"}


@pytest.fixture(scope="module")
def student_run(teachers: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`policyshare distill` in a subprocess: 3000 env steps per task, sharp temperature."""
    run = tmp_path_factory.mktemp("distill") / "run"
    proc = run_cli("distill", "--teachers", str(teachers["freeway"]), str(teachers["breakout"] / "model.zip"),
                   "--run-dir", str(run), *STUDENT_ARGS)
    assert proc.returncode == 0, proc.stderr
    return run


def test_distill_writes_a_complete_run(student_run: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for name in ("config.yaml", "meta.json", "student.safetensors", "trunk.safetensors", "metrics.json",
                 "evaluations.json", "evaluation/MinAtar-Freeway-v1.json", "evaluation/MinAtar-Breakout-v1.json"):
        assert (student_run / name).is_file(), name
    metrics = json.loads((student_run / "metrics.json").read_text())
    assert metrics["tasks"] == ["MinAtar/Freeway-v1", "MinAtar/Breakout-v1"]
    assert metrics["env_steps_per_task"] == 3000 and metrics["updates"] > 0
    for task, r in metrics["per_task"].items():
        expected = (r["student_return"] - r["random_return"]) / (r["teacher_return"] - r["random_return"]) \
            if r["teacher_return"] > r["random_return"] else float("nan")
        assert (math.isnan(expected) and r["expert_normalised"] is None) or \
            r["expert_normalised"] == pytest.approx(expected), task
    assert {"point", "low", "high"} <= set(metrics["expert_normalised_iqm"])
    # One shared trunk and 6 common outputs against two teachers with a trunk each.
    assert metrics["student_parameters"] < metrics["teacher_parameters"] / 1.9
    tags = set(EventAccumulator(str(student_run / "tb")).Reload().Tags()["scalars"])
    for task in ("MinAtar-Freeway-v1", "MinAtar-Breakout-v1"):
        for part in ("policy_loss", "feature_loss", "loss", "agreement", "eval_return"):
            assert f"distill/{task}/{part}" in tags, (task, part, tags)
    # ε-greedy training episodes: Breakout's end within the run (Freeway's last 2500 env steps).
    assert "distill/MinAtar-Breakout-v1/episode_return" in tags


def test_student_agrees_with_its_teachers_far_above_chance(student_run: Path, teachers: dict[str, Path]) -> None:
    """On states of a uniformly random policy (not the ones it trained on), the student's greedy
    action matches each teacher's far above chance: Cohen's κ, which discounts the agreement
    expected from the teacher's action frequencies alone, is at least 0.4."""
    loaded = load_teachers([str(teachers["freeway"]), str(teachers["breakout"])])
    for teacher in loaded:
        agent, _, _ = load_policy(student_run / "student.safetensors", teacher.task)
        obs = some_observations(teacher.task, 400)
        target = teacher.outputs(torch.as_tensor(obs))[0].argmax(-1).numpy()
        got, _ = agent.predict(obs)
        n = len(teacher.action_map)
        p_teacher = np.bincount(target, minlength=n) / len(target)
        p_student = np.bincount(got, minlength=n) / len(got)
        assert p_teacher.max() < 0.9, f"{teacher.task}: the teacher barely varies its action {p_teacher}"
        agree = float((got == target).mean())
        chance = float(p_teacher @ p_student)
        kappa = (agree - chance) / (1 - chance)
        assert agree > 1 / n + 0.3 and kappa >= 0.4, (teacher.task, agree, chance, kappa)


def test_evaluate_cli_acts_with_the_student(student_run: Path) -> None:
    proc = run_cli("evaluate", str(student_run / "student.safetensors"), "--task", "MinAtar/Breakout-v1",
                   "--episodes", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["env_id"] == "MinAtar/Breakout-v1" and out["episodes"] == 2


def test_student_trunk_fits_a_transfer_target(student_run: Path) -> None:
    from policyshare.transfer import check_trunk_fits

    header = check_trunk_fits(student_run / "trunk.safetensors", "MinAtar/Seaquest-v1")
    assert header["source"]["tasks"] == ["MinAtar/Freeway-v1", "MinAtar/Breakout-v1"]


def test_resume_redoes_only_unfinished_stages(student_run: Path, tmp_path: Path, teachers: dict[str, Path]) -> None:
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(student_run, run)
    (run / "metrics.json").unlink()
    (run / "evaluation" / "MinAtar-Breakout-v1.json").unlink()
    kept = {n: hashlib.sha256((run / n).read_bytes()).hexdigest()
            for n in ("student.safetensors", "evaluation/MinAtar-Freeway-v1.json")}
    items = [str(teachers["freeway"]), str(teachers["breakout"] / "model.zip")]
    steps = int(STUDENT_ARGS[1])
    overrides = parse_overrides(STUDENT_ARGS[3:-1:2])
    with pytest.raises(UserError, match="other settings"):
        distill(items, steps=steps, run_dir=run, overrides={**overrides, "tau": 0.5}, resume=True)
    result = distill(items, steps=steps, run_dir=run, overrides=overrides, resume=True)
    for n, digest in kept.items():
        assert hashlib.sha256((run / n).read_bytes()).hexdigest() == digest, n
    assert (run / "evaluation" / "MinAtar-Breakout-v1.json").is_file()
    assert result.metrics["env_steps_per_task"] == 3000


def test_resumed_training_continues_its_logs_without_gaps_or_repeats(teachers: dict[str, Path],
                                                                     tmp_path: Path) -> None:
    """A run resumed from a mid-run checkpoint has the same logged steps as one never stopped."""
    from conftest import csv_steps, tensorboard_steps

    items = [str(teachers["freeway"]), str(teachers["breakout"] / "model.zip")]
    overrides = {**parse_overrides(STUDENT_ARGS[3:-1:2]), "checkpoint_freq": 1000, "log_freq": 500,
                 "eval": {"freq": 0, "episodes": 1, "final_episodes": 1, "random_episodes": 1}}
    run = tmp_path / "run"
    distill(items, steps=2000, run_dir=run, overrides=overrides)
    tag = "distill/loss"
    full_csv, full_tb = csv_steps(run), tensorboard_steps(run, tag)
    assert full_csv == full_tb == [500, 1000, 1500, 2000]  # every log_freq env steps
    # As if killed after the checkpoint at 1000 env steps, with the later steps already logged.
    newest = sorted(run.glob("checkpoints/distill_*.safetensors"))
    assert [p.name for p in newest] == ["distill_1000.safetensors", "distill_2000.safetensors"]
    newest[-1].unlink()
    for name in ("student.safetensors", "trunk.safetensors", "metrics.json"):
        (run / name).unlink()
    distill(items, steps=2000, run_dir=run, overrides=overrides, resume=True)
    assert csv_steps(run) == full_csv
    assert tensorboard_steps(run, tag) == full_tb


# ---------------------------------------------------------------------------------------------
# Bad teachers


def test_two_teachers_of_one_task(teachers: dict[str, Path], tmp_path: Path) -> None:
    proc = run_cli("distill", "--teachers", str(teachers["freeway"]), str(teachers["freeway"] / "model.zip"),
                   "--run-dir", str(tmp_path / "r"))
    assert_user_error(proc, "two teachers for MinAtar/Freeway-v1", "one teacher per task")
    assert not (tmp_path / "r").exists()


def test_teacher_whose_spaces_do_not_fit_its_task(teachers: dict[str, Path], tmp_path: Path) -> None:
    from stable_baselines3 import PPO

    plain = tmp_path / "plain.zip"  # a plain SB3 file (no policyshare header) of Freeway
    PPO.load(teachers["freeway"] / "model.zip", device="cpu").save(plain)
    proc = run_cli("distill", "--teachers", f"MinAtar/Breakout-v1={plain}", "--run-dir", str(tmp_path / "r"))
    assert_user_error(proc, "does not fit its task", "(10, 10, 7)", "(10, 10, 4)",
                      "pass a teacher trained on MinAtar/Breakout-v1")
    assert not (tmp_path / "r").exists()
    with pytest.raises(CheckpointError, match=r"Discrete\(3\) but MinAtar/Asterix-v1 has Discrete\(5\)"):
        load_teachers([f"MinAtar/Asterix-v1={plain}"])
    with pytest.raises(UserError, match="write it as TASK=PATH"):
        load_teachers([str(plain)])
    with pytest.raises(UserError, match="was trained on MinAtar/Freeway-v1, not MinAtar/Asterix-v1"):
        load_teachers([f"MinAtar/Asterix-v1={teachers['freeway']}"])


# ---------------------------------------------------------------------------------------------
# Reproducible metrics; budgets that cannot train


def test_same_seed_runs_write_byte_identical_metrics(teachers: dict[str, Path], tmp_path: Path) -> None:
    """Two same-seed runs: the same metrics.json byte for byte; wall-clock time in timing.json."""
    items = [str(teachers["freeway"]), str(teachers["breakout"] / "model.zip")]
    overrides = {**parse_overrides(STUDENT_ARGS[3:-1:2]), "learning_starts": 128, "log_freq": 128,
                 "checkpoint_freq": 0, "eval": {"freq": 0, "episodes": 1, "final_episodes": 1,
                                                "random_episodes": 1}}
    run = tmp_path / "run"
    distill(items, steps=256, seed=3, run_dir=run, overrides=overrides)
    first = (run / "metrics.json").read_bytes()
    run.rename(tmp_path / "first")  # the same command again, into the same (now free) folder
    result = distill(items, steps=256, seed=3, run_dir=run, overrides=overrides)
    assert result.metrics["updates"] > 0
    assert (run / "metrics.json").read_bytes() == first
    timing = json.loads((run / "timing.json").read_text())
    assert timing["train_wall_s"] > 0 and timing["env_steps_trained_per_task"] == 256
    assert "train_wall_s" not in json.loads(first) and "train_wall_s" not in json.loads(
        (run / "train_info.json").read_text())


@pytest.mark.parametrize(("args", "first_update"), [
    (["--steps", "64"], 5000),  # the config's learning_starts
    (["--steps", "100", "--set", "learning_starts=50", "--set", "n_envs=4", "--set", "train_freq=30"], 120),
])
def test_steps_below_the_first_update_are_refused_before_anything_is_written(
        breakout_run: Path, tmp_path: Path, args: list[str], first_update: int) -> None:
    """No run that would report an untrained student as a result (``updates: 0``)."""
    proc = run_cli("distill", "--teachers", str(breakout_run), *args, "--run-dir", str(tmp_path / "r"))
    assert_user_error(proc, "trains nothing", f"at least {first_update}", "learning_starts")
    assert not (tmp_path / "r").exists()
    # The last collection round is whole: 113 steps in rounds of 4 reach env step 116 >= 116.
    assert load_distill_config(overrides={"steps": 113, "learning_starts": 116, "n_envs": 4}).steps == 113
    with pytest.raises(ConfigError, match="trains nothing"):
        load_distill_config(overrides={"steps": 112, "learning_starts": 116, "n_envs": 4})
