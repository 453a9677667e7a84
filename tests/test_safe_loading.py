"""Safe loading: a checkpoint crafted to run code on unpickling never runs it on the safe paths."""

from __future__ import annotations

import base64
import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import rewrite_zip, run_cli

from policyshare.checkpoints import load_trunk
from policyshare.errors import CheckpointError
from policyshare.sb3_files import load_sb3, load_sb3_safe
from policyshare.trunks import TrunkSpec


class _Payload:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def evil_tensor_file(marker: Path) -> bytes:
    buf = io.BytesIO()
    torch.save({"action_net.weight": _Payload(marker)}, buf)
    return buf.getvalue()


def test_safe_load_acts_like_sb3(breakout_run: Path) -> None:
    model, _ = load_sb3(breakout_run / "model.zip")
    safe, header = load_sb3_safe(breakout_run / "model.zip")
    obs = np.random.default_rng(0).random((16, 10, 10, 4)) > 0.7
    assert np.array_equal(model.predict(obs, deterministic=True)[0], safe.predict(obs, deterministic=True)[0])
    assert header["env_id"] == "MinAtar/Breakout-v1"


def test_code_in_policy_weights_is_never_run(breakout_run: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    bad = tmp_path / "bad.zip"
    rewrite_zip(breakout_run / "model.zip", bad, {"policy.pth": evil_tensor_file(marker)})
    with pytest.raises(CheckpointError, match="refused without running it"):
        load_sb3_safe(bad)
    assert not marker.exists()
    proc = run_cli("evaluate", str(bad), "--safe", "--episodes", "1")
    assert proc.returncode == 2 and "refused" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()


def test_code_in_sb3_data_is_never_read_by_the_safe_path(breakout_run: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with zipfile.ZipFile(breakout_run / "model.zip") as zf:
        data = json.loads(zf.read("data"))
    data["policy_class"][":serialized:"] = base64.b64encode(pickle.dumps(_Payload(marker))).decode()
    bad = tmp_path / "bad.zip"
    rewrite_zip(breakout_run / "model.zip", bad, {"data": json.dumps(data).encode()})
    model, _ = load_sb3_safe(bad)  # the weights are genuine: it loads and acts
    assert model.predict(np.zeros((1, 10, 10, 4), bool), deterministic=True)[0].shape == (1,)
    assert not marker.exists()


def test_plain_sb3_zip_cannot_be_loaded_safely(breakout_run: Path, tmp_path: Path) -> None:
    from stable_baselines3 import PPO

    plain = tmp_path / "plain.zip"
    PPO.load(breakout_run / "model.zip", device="cpu").save(plain)
    with pytest.raises(CheckpointError, match="no policyshare description"):
        load_sb3_safe(plain)


def test_trunk_files_never_unpickle(breakout_run: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    fake = tmp_path / "trunk.safetensors"
    fake.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_trunk(fake)
    assert not marker.exists()


@pytest.mark.parametrize("command", ["distill", "progressive"])
def test_teachers_and_init_from_never_unpickle_with_safe(command: str, breakout_run: Path,
                                                         tmp_path: Path) -> None:
    """``distill --teachers`` and ``progressive --init-from`` with ``--safe``: a crafted zip is
    refused without running its code, before any run folder is written."""
    marker = tmp_path / "pwned"
    bad = tmp_path / "bad.zip"
    rewrite_zip(breakout_run / "model.zip", bad, {"policy.pth": evil_tensor_file(marker)})
    out = tmp_path / "out"
    if command == "distill":
        args = ["distill", "--teachers", str(bad), "--steps", "64", "--set", "learning_starts=0"]
    else:
        args = ["progressive", "--tasks", "MinAtar/Breakout-v1", "MinAtar/Asterix-v1",
                "--init-from", str(bad), "--timesteps", "64", "--set", "train.eval.freq=32"]
    proc = run_cli(*args, "--safe", "--run-dir", str(out))
    assert proc.returncode == 2, proc.stderr
    assert "refused without running it" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists() and not out.exists()


def test_safe_teachers_and_init_from_load_genuine_checkpoints(breakout_run: Path) -> None:
    """The safe path gives the same teacher policy and the same column 1 as SB3's loader."""
    from policyshare.distill import load_teachers
    from policyshare.progressive import AdapterConfig, network_from_checkpoint

    plain, safe = load_teachers([str(breakout_run)]), load_teachers([str(breakout_run)], safe=True)
    obs = torch.as_tensor(np.random.default_rng(1).random((8, 10, 10, 4)) > 0.7)
    for a, b in zip(plain[0].outputs(obs.float()), safe[0].outputs(obs.float())):
        assert torch.equal(a, b)
    assert plain[0].task == safe[0].task == "MinAtar/Breakout-v1"
    spec = _spec(breakout_run)
    ref = network_from_checkpoint(breakout_run, "MinAtar/Breakout-v1", spec, AdapterConfig(), "ppo")
    net = network_from_checkpoint(breakout_run, "MinAtar/Breakout-v1", spec, AdapterConfig(), "ppo", safe=True)
    with torch.no_grad():
        x = obs.float()
        for r, s in zip(ref(x, 0), net(x, 0)):
            assert torch.equal(r, s)


def _spec(run: Path) -> TrunkSpec:
    return load_trunk(run / "trunk.safetensors").spec
