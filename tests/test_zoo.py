"""The zoo: five shipped MinAtar experts that plain SB3 loads, with provenance that reproduces."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli

from policyshare import zoo
from policyshare.errors import UserError
from policyshare.sb3_files import read_sb3_header

GAMES = ["MinAtar/Asterix-v1", "MinAtar/Breakout-v1", "MinAtar/Freeway-v1", "MinAtar/Seaquest-v1",
         "MinAtar/SpaceInvaders-v1"]


def test_five_experts_with_provenance() -> None:
    experts = zoo.list_experts()
    assert [e.env_id for e in experts] == GAMES
    total = sum(e.path.stat().st_size for e in experts)
    assert total < 5_000_000, f"the zoo should stay a few MB, it is {total:,} bytes"
    for e in experts:
        p = e.provenance
        assert p["algo"] == "ppo" and p["timesteps"] >= 1_000_000
        assert p["config"]["env_id"] == e.env_id and "hyperparams" in p["config"]
        assert p["training"][0]["command_line"].startswith("policyshare train")
        low, high = e.interval
        assert low <= e.eval_mean <= high
        assert e.eval_mean > p["random_mean_return"], f"{e.env_id}: the expert must beat random"
        assert read_sb3_header(e.path)["entries_sha256"] == p["checkpoint_sha256"]


@pytest.mark.parametrize("env_id", GAMES)
def test_plain_sb3_loads_each_expert(env_id: str) -> None:
    from stable_baselines3 import PPO

    model = PPO.load(zoo.expert_path(env_id), device="cpu")
    obs = np.zeros((2, *model.observation_space.shape), dtype=bool)
    actions, _ = model.predict(obs, deterministic=True)
    assert actions.shape == (2,) and (actions < model.action_space.n).all()
    safe = zoo.load(env_id, safe=True)
    assert np.array_equal(safe.predict(obs, deterministic=True)[0], actions)


def test_unknown_expert() -> None:
    with pytest.raises(UserError, match="no expert for 'MinAtar/Pong-v1'"):
        zoo.expert_path("MinAtar/Pong-v1")
    proc = run_cli("zoo", "list")
    assert proc.returncode == 0 and "MinAtar/Freeway-v1" in proc.stdout


# Re-evaluating an expert takes up to a minute (Freeway's long episodes): Breakout in the fast suite.
@pytest.mark.parametrize("env_id", [g if g == "MinAtar/Breakout-v1" else pytest.param(g, marks=pytest.mark.slow)
                                    for g in GAMES])
def test_each_expert_reaches_its_recorded_score(env_id: str) -> None:
    expert = next(e for e in zoo.list_experts() if e.env_id == env_id)
    ev = expert.provenance["evaluation"]
    proc = run_cli("evaluate", str(expert.path), "--episodes", str(ev["episodes"]), "--seed", str(ev["seed"]),
                   "--json")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)["mean_return"]
    low, high = expert.interval
    assert low <= got <= high, f"{env_id}: {got} outside [{low}, {high}]"
