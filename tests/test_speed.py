"""Speed: the default PPO config trains MinAtar with wide rollouts on the batched env (Atari keeps
SB3's envs), and MinAtar's channels-last grids reach the trunk in the memory layout its
convolution and ReLU are fast in. Speed itself is measured by benchmarks/, not here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback

from policyshare.alignment import InputAlignment
from policyshare.envs import check_vec_env, load_suite
from policyshare.train import load_train_config, rollout_size
from policyshare.trunks import TrunkExtractor


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


def test_channels_last_grids_reach_the_trunk_contiguous_and_channels_first() -> None:
    """A permuted view would make the conv output channels-last and the ReLU's backward pass mix
    layouts (about 50x slower on CPU); the layout copies into standard channels-first order."""
    obs = torch.as_tensor(np.random.default_rng(0).random((5, 10, 10, 4)) > 0.5)
    x = InputAlignment((10, 10, 4), mode="pad", channels_last=True, channels=10).layout(obs)
    assert x.dtype == torch.float32 and x.shape == (5, 4, 10, 10) and x.is_contiguous()
    assert torch.equal(x, obs.float().permute(0, 3, 1, 2))

    box = spaces.Box(0, 1, (10, 10, 4), dtype=np.bool_)
    for mode in ("pad", "stem", "none"):
        ex = TrunkExtractor(box, alignment={"mode": mode, "channels_last": True, "channels": 10})
        x = ex.alignment.layout(obs) if mode == "pad" else ex.alignment(obs)
        conv = ex.trunk.forward_layers(x, upto="conv1")[0]
        assert conv.is_contiguous(), mode  # standard NCHW, not channels-last
        assert torch.equal(ex(obs), ex.trunk(x)), mode


class _Corrupt(BaseCallback):
    """At env step ``at``, make the first parameter NaN or log a NaN loss."""

    def __init__(self, at: int, what: str) -> None:
        super().__init__()
        self.at, self.what = at, what

    def _on_step(self) -> bool:
        if self.num_timesteps == self.at:
            if self.what == "parameter":
                with torch.no_grad():
                    next(self.model.policy.parameters()).fill_(float("nan"))
            else:
                self.logger.record("train/loss", float("nan"))
        return True


@pytest.mark.parametrize(("what", "caught_at"), [("parameter", 100), ("loss", 10)])
def test_dqn_guard_scans_parameters_every_check_freq_steps_and_losses_every_step(what: str, caught_at: int) -> None:
    """DQN's rollouts are one env step: scanning every parameter at each took a fifth of a DQN run
    (benchmarks/profile_training.py). The parameters are scanned every ``check_freq`` steps (and
    before every checkpoint), the logged losses still after every rollout."""
    from policyshare.algos import DQNParams, PolicyConfig, TrunkConfig, build_model
    from policyshare.callbacks import FiniteGuard
    from policyshare.envs import make_vec_env
    from policyshare.errors import NumericalError

    env_id = "MinAtar/Breakout-v1"
    params = DQNParams(learning_starts=10_000, buffer_size=500, train_freq=1)  # no updates: only _Corrupt changes it
    model = build_model("dqn", make_vec_env(env_id, 1, 0), params, PolicyConfig(), TrunkConfig(),
                        load_suite("minatar"), seed=0)
    with pytest.raises(NumericalError, match=f"env step {caught_at}:"):
        model.learn(300, callback=[_Corrupt(10, what), FiniteGuard(check_freq=100)])
