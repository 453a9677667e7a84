"""Suites: every env passes Gymnasium's env checker; action maps fit the common action space."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from policyshare.alignment import action_mask, to_common, to_local
from policyshare.envs import all_suites, make_env, make_vec_env, suite_for, task_action_map
from policyshare.errors import UserError

SUITE_TASKS = [(s.name, t) for s in all_suites() for t in s.tasks]


def test_both_suites_exist() -> None:
    names = {s.name for s in all_suites()}
    assert {"minatar", "atari"} <= names
    minatar = suite_for("MinAtar/Breakout-v1")
    assert len(minatar.tasks) == 5 and len(minatar.actions) == 6 and minatar.observation.channels == 10
    atari = suite_for("ALE/Pong-v5")
    assert len(atari.actions) == 18 and atari.atari.frame_stack == 4


@pytest.mark.parametrize(("suite", "env_id"), SUITE_TASKS)
def test_env_checker_passes(suite: str, env_id: str) -> None:
    env = make_env(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env.unwrapped)  # the game itself, render modes included
        # ...and as the suite wraps it (SB3's wrappers cannot be re-made from a spec).
        check_env(env, skip_render_check=True, skip_close_check=True)
    env.close()


@pytest.mark.parametrize(("suite", "env_id"), SUITE_TASKS)
def test_action_map_into_common_space(suite: str, env_id: str) -> None:
    s = suite_for(env_id)
    mapping = task_action_map(env_id)
    env = make_env(env_id)
    assert len(mapping) == env.action_space.n
    env.close()
    mask = action_mask(mapping, len(s.actions))
    assert int(mask.sum()) == len(mapping)
    import torch

    logits = torch.randn(3, len(mapping))
    common = to_common(logits, mapping, len(s.actions))
    assert torch.equal(to_local(common, mapping), logits)
    assert torch.isinf(common[:, ~mask]).all()


def test_minatar_maps_match_the_games_minimal_sets() -> None:
    assert task_action_map("MinAtar/Breakout-v1") == [0, 1, 3]
    assert task_action_map("MinAtar/Freeway-v1") == [0, 2, 4]
    assert task_action_map("MinAtar/Seaquest-v1") == list(range(6))


def test_minatar_seeding_is_reproducible() -> None:
    def rollout(seed: int) -> list[float]:
        env = make_env("MinAtar/SpaceInvaders-v1")
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(0)
        out = [float(obs.sum())]
        for _ in range(200):
            obs, r, term, trunc, _ = env.step(int(rng.integers(env.action_space.n)))
            out.append(float(obs.sum()) + r)
            if term or trunc:
                obs, _ = env.reset()
        return out

    assert rollout(3) == rollout(3)
    assert rollout(3) != rollout(4)


def test_vec_env_shapes() -> None:
    venv = make_vec_env("MinAtar/Freeway-v1", 3, seed=0)
    assert venv.reset().shape == (3, 10, 10, 7)
    venv.close()
    venv = make_vec_env("ALE/Pong-v5", 2, seed=0)
    assert venv.reset().shape == (2, 84, 84, 4)
    venv.close()


def test_unknown_env_id_suggests_the_closest() -> None:
    with pytest.raises(UserError, match="did you mean 'MinAtar/Breakout-v1'"):
        suite_for("MinAtar/Breakot-v1")


def test_import_policyshare_registers_minatar_and_exposes_submodules() -> None:
    """What a user does after training: ``import policyshare`` then ``gym.make`` / ``policyshare.zoo``."""
    import subprocess
    import sys

    code = ("import gymnasium as gym, policyshare; env = gym.make('MinAtar/Breakout-v1'); "
            "print(env.reset(seed=0)[0].shape, callable(policyshare.zoo.load))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["(10,", "10,", "4)", "True"]
