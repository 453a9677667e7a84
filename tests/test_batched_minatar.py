"""Batched MinAtar is the same game as the reference ``minatar`` package, step for step.

Each game: ``n`` reference ``minatar.environments.<game>.Env(ramping=True)`` envs, env ``i``
drawing from ``RandomState(seed_i)``, against the batched game with the same RandomStates, over
thousands of steps of random actions (from a separate generator), resetting terminated envs on
both sides: states, rewards, terminations (and the ramp counter) identical at every step. The
tests assert that game-overs and difficulty ramps really happened.

The vectorised env: ``BatchedMinAtarVecEnv(id, n, seed)`` against the real
``policyshare.envs.make_vec_env(id, n, seed)`` (``DummyVecEnv`` of ``MinAtarEnv``):
observations, rewards, dones and infos identical, including sticky actions, auto-resets,
re-seeding and truncation.

Other games join by adding a :class:`GameCase` to :data:`CASES`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env
from stable_baselines3.common.utils import check_for_correct_spaces
from stable_baselines3.common.vec_env import VecMonitor, is_vecenv_wrapped

import policyshare.batched_minatar as batched
from policyshare.batched_minatar import available_games, game_class
from policyshare.batched_minatar.vecenv import BatchedMinAtarVecEnv, make_batched_vec_env
from policyshare.cli import main
from policyshare.envs import make_vec_env
from policyshare.errors import UserError


@dataclass(frozen=True)
class GameCase:
    """How to drive one game through the equivalence test.

    Attributes:
        steps: env steps per env.
        action_probs: probabilities of MinAtar's 6 actions for the random policy (``None``:
            uniform); Freeway's chicken needs a push upwards to cross at all.
        min_terminations: game-overs the run must reach (summed over envs).
        min_reward: total reward the run must reach (so the reward paths ran).
        min_ramps: largest ramp counter (``Env.difficulty_ramp()``) some env must reach; 0 for
            games without ramping.
    """

    steps: int
    action_probs: tuple[float, ...] | None = None
    min_terminations: int = 1
    min_reward: float = 1
    min_ramps: int = 0


#: Game module name -> its case. Seaquest and SpaceInvaders join here.
CASES: dict[str, GameCase] = {
    "breakout": GameCase(steps=1500, min_terminations=100, min_reward=100),
    # Random play ends an Asterix episode in ~100 steps; a third of the envs ramp at least twice.
    "asterix": GameCase(steps=2000, min_terminations=50, min_reward=20, min_ramps=2),
    # Episodes last exactly 2,500 steps; pressing "up" more often makes crossings (re-draws).
    "freeway": GameCase(steps=2600, action_probs=(0.2, 0, 0.6, 0, 0.2, 0), min_terminations=8,
                        min_reward=20),
}
N_ENVS = 8


def run_against_reference(game: str, seeds: list[int], steps: int,
                          action_probs: tuple[float, ...] | None = None, ramping: bool = True,
                          action_seed: int = 0, reset_every: int = 1) -> dict[str, float]:
    """Step reference and batched envs side by side; assert equality at every step.

    Finished games are reset every ``reset_every`` steps (1: at once, as the vec env does);
    until then both sides keep acting on them.

    Returns:
        ``terminations``, ``reward`` (summed over envs) and ``max_ramp`` seen.
    """
    reference_cls = import_module(f"minatar.environments.{game}").Env
    refs = []
    for s in seeds:
        env = reference_cls(ramping=ramping)
        env.random = np.random.RandomState(s)
        env.reset()
        refs.append(env)
    n = len(seeds)
    game_ = game_class(game)(n, [np.random.RandomState(s) for s in seeds], ramping=ramping)
    game_.reset(np.arange(n))
    assert np.array_equal(game_.state(), np.stack([e.state() for e in refs]))
    actions_rng = np.random.default_rng(action_seed)
    terminations, total, max_ramp = 0, 0.0, 0
    for t in range(steps):
        actions = actions_rng.choice(6, size=n, p=action_probs)
        out = [e.act(int(a)) for e, a in zip(refs, actions, strict=True)]
        reward, terminal = game_.act(actions)
        assert np.array_equal(reward, [r for r, _ in out]), f"{game}: rewards differ at step {t}"
        assert np.array_equal(terminal, [d for _, d in out]), f"{game}: terminals differ at step {t}"
        assert np.array_equal(game_.state(), np.stack([e.state() for e in refs])), \
            f"{game}: states differ at step {t}"
        ramps = [e.difficulty_ramp() for e in refs]
        if ramps[0] is not None:
            assert np.array_equal(game_.ramp_index, ramps), f"{game}: ramps differ at step {t}"
            max_ramp = max(max_ramp, *ramps)
        if t % reset_every:
            continue
        done = np.flatnonzero(terminal)
        for i in done:
            refs[i].reset()
        game_.reset(done)
        terminations += len(done)
        total += float(reward.sum())
    return {"terminations": terminations, "reward": total, "max_ramp": max_ramp}


@pytest.mark.parametrize("game", sorted(CASES))
def test_batched_game_is_the_reference_game_step_for_step(game: str) -> None:
    case = CASES[game]
    seeds = [1000 * k + 17 for k in range(N_ENVS)]
    stats = run_against_reference(game, seeds, case.steps, case.action_probs)
    assert stats["terminations"] >= case.min_terminations, stats
    assert stats["reward"] >= case.min_reward, stats
    assert stats["max_ramp"] >= case.min_ramps, stats


@pytest.mark.parametrize("game", sorted(CASES))
def test_finished_games_stay_finished_until_reset(game: str) -> None:
    case = CASES[game]
    stats = run_against_reference(game, [5, 6, 7, 8], min(case.steps, 2600 if game == "freeway" else 600),
                                  case.action_probs, action_seed=2, reset_every=7)
    assert stats["terminations"] >= 1


def test_asterix_without_ramping_is_the_reference_game() -> None:
    stats = run_against_reference("asterix", [3, 4, 5, 6], 600, ramping=False, action_seed=1)
    assert stats["terminations"] >= 5 and stats["max_ramp"] == 0


def test_registry_imports_games_lazily_and_skips_missing_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    assert {"asterix", "breakout", "freeway"} <= set(available_games())
    monkeypatch.setitem(batched.GAMES, "not_written_yet", "BatchedNotWrittenYet")
    assert "not_written_yet" not in available_games()
    with pytest.raises(ModuleNotFoundError):
        game_class("not_written_yet")
    with pytest.raises(KeyError, match="known"):
        game_class("pong")
    assert game_class("breakout").__name__ == "BatchedBreakout"


# --------------------------------------------------------------------------------------------
# The vectorised env against DummyVecEnv


def assert_same_step(ref: tuple, bat: tuple, where: str) -> None:
    (o1, r1, d1, i1), (o2, r2, d2, i2) = ref, bat
    assert o1.dtype == o2.dtype and np.array_equal(o1, o2), f"observations differ {where}"
    assert r1.dtype == r2.dtype and np.array_equal(r1, r2), f"rewards differ {where}"
    assert d1.dtype == d2.dtype and np.array_equal(d1, d2), f"dones differ {where}"
    for a, b in zip(i1, i2, strict=True):
        assert a.keys() == b.keys(), where
        assert a["TimeLimit.truncated"] == b["TimeLimit.truncated"], where
        if "terminal_observation" in a:
            assert np.array_equal(a["terminal_observation"], b["terminal_observation"]), where
        if "episode" in a:
            assert (a["episode"]["r"], a["episode"]["l"]) == (b["episode"]["r"], b["episode"]["l"]), where


@pytest.mark.parametrize("env_id,steps", [("MinAtar/Breakout-v1", 1200), ("MinAtar/Asterix-v0", 1200),
                                          ("MinAtar/Freeway-v1", 300)])
def test_batched_vec_env_gives_the_dummy_vec_env_episodes(env_id: str, steps: int) -> None:
    n = 4
    ref, bat = make_vec_env(env_id, n, seed=7), make_vec_env(env_id, n, seed=7, vec_env="batched")
    assert isinstance(bat.unwrapped, BatchedMinAtarVecEnv) and is_vecenv_wrapped(bat, VecMonitor)
    assert bat.observation_space == ref.observation_space and bat.action_space == ref.action_space
    assert np.array_equal(ref.reset(), bat.reset())
    rng = np.random.default_rng(1)
    dones = 0
    for t in range(steps):
        if t == steps // 3:    # a reset without seeds continues each env's random stream
            assert np.array_equal(ref.reset(), bat.reset())
        if t == 2 * steps // 3:  # re-seeding starts them afresh
            ref.seed(11)
            bat.seed(11)
            assert np.array_equal(ref.reset(), bat.reset())
        actions = rng.integers(0, ref.action_space.n, size=n)
        step = ref.step(actions)
        assert_same_step(step, bat.step(actions), f"at step {t}")
        dones += int(step[2].sum())
    if "Freeway" not in env_id:
        assert dones >= 10  # auto-resets (with their draws and the sticky last action) happened


def test_batched_vec_env_truncates_as_time_limit() -> None:
    env_id, limit, n = "MinAtar/Freeway-v1", 40, 3
    ref = sb3_make_vec_env(lambda: gym.make(env_id, max_episode_steps=limit), n_envs=n, seed=2)
    bat = VecMonitor(BatchedMinAtarVecEnv(env_id, n, seed=2, max_episode_steps=limit))
    assert np.array_equal(ref.reset(), bat.reset())
    rng = np.random.default_rng(0)
    truncations = 0
    for t in range(3 * limit + 5):
        actions = rng.integers(0, 3, size=n)
        step = ref.step(actions)
        assert_same_step(step, bat.step(actions), f"at step {t}")
        truncations += sum(info["TimeLimit.truncated"] for info in step[3])
    assert truncations == 3 * n


def test_batched_vec_env_honours_the_vec_env_contract() -> None:
    venv = BatchedMinAtarVecEnv("MinAtar/Breakout-v1", 5, seed=0, render_mode="rgb_array")
    check_for_correct_spaces(venv, make_vec_env("MinAtar/Breakout-v1", 1, 0).observation_space,
                             gym.spaces.Discrete(3))
    assert BatchedMinAtarVecEnv("MinAtar/Breakout-v0", 2, seed=0).action_space == gym.spaces.Discrete(6)
    obs = venv.reset()
    assert obs.shape == (5, 10, 10, 4) and obs.dtype == bool
    assert all(venv.observation_space.contains(o) for o in obs)
    seen_done = False
    for _ in range(200):
        obs, rewards, dones, infos = venv.step(np.array([venv.action_space.sample() for _ in range(5)]))
        assert obs.shape == (5, 10, 10, 4) and rewards.shape == (5,) and rewards.dtype == np.float32
        assert dones.dtype == bool and len(infos) == 5
        assert all(venv.observation_space.contains(o) for o in obs)
        for info, done in zip(infos, dones, strict=True):
            assert ("terminal_observation" in info) == bool(done)
            if done:
                seen_done = True
                assert venv.observation_space.contains(info["terminal_observation"])
    assert seen_done
    assert venv.get_attr("render_mode") == ["rgb_array"] * 5
    assert venv.env_is_wrapped(gym.Wrapper) == [False] * 5
    frames = venv.get_images()
    assert len(frames) == 5 and frames[0] is not None and frames[0].shape == (240, 240, 3)


def test_batched_refuses_what_is_not_minatar() -> None:
    with pytest.raises(UserError, match="MinAtar"):
        make_vec_env("ALE/Pong-v5", 2, seed=0, vec_env="batched")
    with pytest.raises(UserError, match="MinAtar"):
        BatchedMinAtarVecEnv("CartPole-v1", 2)


def test_train_with_batched_refuses_atari_before_writing(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", "--env", "ALE/Pong-v5", "--run-dir", str(run), "--set", "vec_env=batched"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "batched" in err and "vec_env=dummy" in err
    assert not run.exists()


def test_train_with_batched_envs_is_the_training_with_dummy_envs(tmp_path: Path) -> None:
    """Same seed, same episodes: PPO trained on the batched envs ends with the same metrics."""
    common = ["--env", "MinAtar/Breakout-v1", "--timesteps", "512", "--seed", "3", "--quiet",
              "--set", "n_envs=4", "--set", "hyperparams.n_steps=128", "--set", "hyperparams.batch_size=128",
              "--set", "hyperparams.n_epochs=1", "--set", "eval.freq=0", "--set", "eval.final_episodes=2",
              "--set", "eval.random_episodes=1", "--set", "checkpoint_freq=0", "--set", "progress_bar=false"]
    for kind in ("dummy", "batched"):
        assert main(["train", *common, "--run-dir", str(tmp_path / kind), "--set", f"vec_env={kind}"]) == 0
    dummy, bat = (json.loads((tmp_path / k / "metrics.json").read_text()) for k in ("dummy", "batched"))
    assert dummy == bat
    progress = (tmp_path / "batched" / "tb" / "progress.csv").read_text().splitlines()
    assert "rollout/ep_rew_mean" in progress[0]  # VecMonitor's episode statistics reach SB3's logger


def test_make_batched_vec_env_wraps_in_vec_monitor() -> None:
    venv = make_batched_vec_env("MinAtar/Asterix-v1", 2, seed=0)
    assert isinstance(venv, VecMonitor) and venv.action_space == gym.spaces.Discrete(5)
