"""The default PPO config trains MinAtar with wide rollouts on the batched env; Atari keeps SB3's envs."""

from __future__ import annotations

from pathlib import Path

import yaml

from policyshare.envs import check_vec_env, load_suite
from policyshare.train import load_train_config, rollout_size


def test_every_minatar_game_defaults_to_wide_rollouts_on_the_batched_env() -> None:
    for env_id in load_suite("minatar").tasks:
        cfg, params = load_train_config(env_id, "ppo")
        check_vec_env(env_id, cfg.vec_env)  # a batched version of the game exists
        size = rollout_size("ppo", cfg.n_envs, params)
        assert cfg.vec_env == "batched" and cfg.n_envs >= 64, env_id
        assert cfg.torch_threads == 1, env_id
        # whole minibatches, several of them per epoch, each far wider than the old 256
        assert size % params.batch_size == 0 and size // params.batch_size >= 4, env_id
        assert params.batch_size >= 1024 and params.n_epochs <= 4, env_id


def test_atari_keeps_sb3_envs_and_its_tuned_settings() -> None:
    cfg, params = load_train_config("ALE/Pong-v5", "ppo")
    assert (cfg.vec_env, cfg.n_envs) == ("dummy", 8)
    assert (params.n_steps, params.batch_size, params.n_epochs) == (128, 256, 4)


def test_policyshare_train_with_the_defaults_runs_the_batched_env(breakout_run: Path) -> None:
    """The session's default Breakout run (2048 env steps asked) trained one rollout of 64 x 128
    env steps on the batched env, and recorded that in its config."""
    import json

    resolved = yaml.safe_load((breakout_run / "config.yaml").read_text())
    assert (resolved["vec_env"], resolved["n_envs"]) == ("batched", 64)
    assert json.loads((breakout_run / "metrics.json").read_text())["timesteps"] == 64 * 128
