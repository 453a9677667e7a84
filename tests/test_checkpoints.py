"""Checkpoints: plain-SB3 round trip, safetensors trunk files, refusal of bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from policyshare import load_trunk
from policyshare.checkpoints import load_tensors, load_trunk_weights, save_trunk
from policyshare.envs import make_vec_env
from policyshare.errors import CheckpointError
from policyshare.io import atomic_write_bytes
from policyshare.sb3_files import read_sb3_header
from policyshare.trunks import Trunk, TrunkSpec


def fixed_observations(env_id: str, n: int = 64) -> np.ndarray:
    venv = make_vec_env(env_id, 4, seed=123)
    obs = [venv.reset()]
    rng = np.random.default_rng(0)
    for _ in range(n // 4 - 1):
        obs.append(venv.step(rng.integers(venv.action_space.n, size=4))[0])
    venv.close()
    return np.concatenate(obs)


def test_plain_sb3_load_gives_the_same_actions(breakout_run: Path) -> None:
    from stable_baselines3 import PPO

    obs = fixed_observations("MinAtar/Breakout-v1")
    model = PPO.load(breakout_run / "model.zip", device="cpu")
    again = PPO.load(breakout_run / "model.zip", device="cpu")
    a1, _ = model.predict(obs, deterministic=True)
    a2, _ = again.predict(obs, deterministic=True)
    assert np.array_equal(a1, a2)
    # ...and the same as the model as it was in memory when saved: compare logits.
    with torch.no_grad():
        t = torch.as_tensor(obs)
        d1 = model.policy.get_distribution(t).distribution.logits
        d2 = again.policy.get_distribution(t).distribution.logits
    assert torch.equal(d1, d2)
    header = read_sb3_header(breakout_run / "model.zip")
    assert header["env_id"] == "MinAtar/Breakout-v1" and header["algo"] == "ppo"


def test_load_trunk_gives_the_same_features(breakout_run: Path) -> None:
    from stable_baselines3 import PPO

    model = PPO.load(breakout_run / "model.zip", device="cpu")
    trunk = load_trunk(breakout_run / "trunk.safetensors")
    obs = torch.as_tensor(fixed_observations("MinAtar/Breakout-v1")).float()
    with torch.no_grad():
        expected = model.policy.features_extractor(obs)
        got = trunk(model.policy.features_extractor.alignment(obs))
    assert torch.equal(expected, got)
    assert trunk.header is not None and trunk.header["source"]["env_id"] == "MinAtar/Breakout-v1"
    assert trunk.header["alignment"]["mode"] == "pad"


def test_trunk_file_is_not_a_pickle(breakout_run: Path) -> None:
    raw = (breakout_run / "trunk.safetensors").read_bytes()
    assert not raw.startswith(b"\x80") and b"policyshare.trunk" in raw[:4096]


def test_trunk_of_other_shape_is_refused_with_both_shapes(tmp_path: Path) -> None:
    src = Trunk(TrunkSpec("minatar", 4, 10, 10))
    path = save_trunk(src, tmp_path / "t.safetensors")
    target = Trunk(TrunkSpec("minatar", 10, 10, 10))
    with pytest.raises(CheckpointError, match=r"\(16, 4, 3, 3\) in the file but \(16, 10, 3, 3\)"):
        load_trunk_weights(target, path)
    with pytest.raises(CheckpointError, match="holds a 'minatar' trunk but the network uses 'nature'"):
        load_trunk_weights(Trunk(TrunkSpec("nature", 4, 84, 84)), path)


def test_corrupt_trunk_files_are_refused(tmp_path: Path) -> None:
    path = save_trunk(Trunk(TrunkSpec("minatar", 4, 10, 10)), tmp_path / "t.safetensors")
    raw = bytearray(path.read_bytes())
    flipped = tmp_path / "flipped.safetensors"
    raw[-10] ^= 0x40
    flipped.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="checksum"):
        load_trunk(flipped)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_trunk(truncated)
    with pytest.raises(CheckpointError, match="not found"):
        load_tensors(tmp_path / "missing.safetensors")


def test_corrupt_sb3_zip_is_refused(breakout_run: Path, tmp_path: Path) -> None:
    raw = (breakout_run / "model.zip").read_bytes()
    (tmp_path / "trunc.zip").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_sb3_header(tmp_path / "trunc.zip")


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"old")
    with pytest.raises(CheckpointError, match="could not write"):
        atomic_write_bytes(tmp_path / "f.bin" / "child", b"new")  # parent is a file: fails
    assert target.read_bytes() == b"old"
    assert not list(tmp_path.glob(".*.tmp"))


def strict_json(text: str) -> object:
    """Parse JSON as strict parsers do: a bare NaN or Infinity is an error."""
    import json

    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_json_files_never_hold_nan(tmp_path: Path) -> None:
    from policyshare.io import atomic_write_json
    from policyshare.metrics import iqm_intervals

    one_seed = iqm_intervals({"finetune": np.array([131.5])})["finetune"]  # one value: no interval
    data = {"eval_mean_return": float("nan"), "interval": one_seed.as_dict(),
            "per_seed": {"0": float("nan"), "1": np.float32(97.0)}, "curve": np.array([1.0, np.inf]),
            "steps": np.int64(3), "nested": [{"loss": -np.inf}]}
    path = atomic_write_json(tmp_path / "metrics.json", data, why={"eval_mean_return": "no episode ended"})
    out = strict_json(path.read_text())
    assert out == {
        "eval_mean_return": None, "eval_mean_return_why": "no episode ended",
        "interval": {"point": 131.5, "low": None, "low_why": "one value (one seed): no interval",
                     "high": None, "high_why": "one value (one seed): no interval"},
        "per_seed": {"0": None, "1": 97.0},
        "per_seed_why": "transfer % is undefined where scratch's area under the curve is not positive (null at 0)",
        "curve": [1.0, None], "curve_why": "not a finite number (NaN or infinity): undefined here (null at 1)",
        "steps": 3,
        "nested": [{"loss": None, "loss_why": "not a finite number (NaN or infinity): undefined here"}],
    }
