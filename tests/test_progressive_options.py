"""Every option of ``configs/progressive.yaml`` at a tiny budget: adapters into the heads on and
off, reductions and α, alignments ``pad``/``stem``, trunks ``minatar``/``minatar_deep``, every
activation, PPO and A2C, every control, Fisher on and off; the Fisher sensitivity of layers that
do not reach the output, resume, ``evaluate --safe`` on progressive columns, and values that
cannot work refused before anything is written."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import ASTERIX, BREAKOUT, INVADERS, observations, rewrite_zip, run_cli

from policyshare.cli import main
from policyshare.envs import task_action_map
from policyshare.errors import CheckpointError
from policyshare.policies import load_policy
from policyshare.progressive import AdapterConfig, ColumnInfo, ProgressiveNetwork, load_network, run_progressive
from policyshare.progressive.fisher import average_fisher_sensitivity
from policyshare.sb3_files import SB3_HEADER, read_sb3_header
from policyshare.trunks import TrunkSpec

# Tiny runs: 4 envs, PPO rollouts of 128 env steps (A2C: 20), evaluations every 128 env steps.
TINY = {"train": {"eval": {"freq": 128, "episodes": 1, "final_episodes": 1, "random_episodes": 1},
                  "checkpoint_freq": 1024, "n_envs": 4},
        "fisher": {"samples": 32, "batch_size": 16}}
PPO_SMALL = {"n_steps": 32, "batch_size": 64}


def flat_sets(nested: dict[str, Any], prefix: str = "") -> list[str]:
    """``{"a": {"b": 1}}`` → ``["--set", "a.b=1"]``."""
    out: list[str] = []
    for k, v in nested.items():
        if isinstance(v, dict):
            out += flat_sets(v, f"{prefix}{k}.")
        else:
            out += ["--set", f"{prefix}{k}={json.dumps(v)}"]
    return out


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---- Fisher sensitivity of layers that do not reach the output ------------------------------


@pytest.mark.parametrize(("name", "mode"), [("minatar", "pad"), ("minatar_deep", "stem")])
def test_fisher_sensitivity_without_head_laterals(name: str, mode: str) -> None:
    """Without head laterals the earlier columns' last layer feeds nothing of the target column:
    its sensitivity is exactly 0 (the target column holds all of it); the other layers still
    split between the columns and every layer sums to 1."""
    torch.manual_seed(0)
    spec = TrunkSpec(name, 10, 10, 10)
    network = ProgressiveNetwork(spec, AdapterConfig(heads=False))
    describe = {"mode": mode, "channels_last": True, "task_channels": 4, "channels": 10,
                "height": 10, "width": 10}
    for task in (BREAKOUT, ASTERIX):
        actions = task_action_map(task)
        network.add_column(ColumnInfo(task, len(actions), actions, [10, 10, 4], describe))
    afs = average_fisher_sensitivity(network, ASTERIX, observations(ASTERIX, 24), 8)
    assert afs.layers == [layer.name for layer in spec.layers]
    assert afs.fisher[0, -1] == 0.0 and afs.afs[0, -1] == 0.0 and afs.afs[1, -1] == 1.0
    assert (afs.fisher[:, :-1] > 0).all() and (afs.afs[0, :-1] > 0).all()
    np.testing.assert_allclose(afs.afs.sum(axis=0), 1.0, atol=1e-9)


# ---- one experiment through the command: A2C, minatar_deep, stem, no head laterals -----------

HEADS_OFF = {**TINY, "algo": "a2c", "adapter": {"heads": False},
             "train": {**TINY["train"], "trunk": {"spec": "minatar_deep", "alignment": "stem"}}}


def heads_off_args(run_dir: Path) -> list[str]:
    return ["progressive", "--tasks", BREAKOUT, INVADERS, "--timesteps", "256", "--seeds", "0",
            "--controls", "finetune", "random_column", "--run-dir", str(run_dir), *flat_sets(HEADS_OFF)]


@pytest.fixture(scope="module")
def heads_off(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished experiment (the issue's case), run once through the command's entry point."""
    exp = tmp_path_factory.mktemp("progressive") / "heads_off"
    assert main([*heads_off_args(exp), "--quiet"]) == 0
    return exp


def test_progressive_without_head_laterals_finishes(heads_off: Path) -> None:
    metrics = json.loads((heads_off / "metrics.json").read_text())
    assert metrics["algo"] == "a2c" and set(metrics["methods"]) == {"progressive", "finetune", "random_column"}
    afs = metrics["fisher"]["afs_mean"]
    assert metrics["fisher"]["layers"] == ["conv1", "conv2", "fc1"]
    assert afs[BREAKOUT]["fc1"] == 0.0 and afs[INVADERS]["fc1"] == 1.0
    assert metrics["no_forgetting_all_identical"] is True
    assert set(metrics["lateral_alpha"]["0"]) == {"conv2", "fc1"}  # no "head" adapter
    network = load_network(heads_off / "s0" / "network.safetensors")
    assert "head" not in network.stack.adapters(1) and network.alignments[1].stem is not None


def test_resume_after_the_fisher_step_failed(heads_off: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The state a crash in the Fisher step left (every run trained, no Fisher, no summary):
    ``--resume`` trains nothing again and finishes."""
    exp = tmp_path / "exp"
    shutil.copytree(heads_off, exp)
    for name in ("metrics.json", "fisher.json", "fisher.md", "fisher.png", "report.md", "s0/fisher.json"):
        (exp / name).unlink()
    assert main([*heads_off_args(exp), "--resume"]) == 0
    out = capsys.readouterr().out
    assert ": training →" not in out and ": resuming →" not in out
    for method in ("finetune", "random_column"):
        assert f"{method} on {INVADERS}: finished earlier" in out
    assert "column_2 on" not in out  # the network already holds column 2
    assert "Average Fisher Sensitivity" in out
    assert json.loads((exp / "s0" / "fisher.json").read_text())["afs"][BREAKOUT]["fc1"] == 0.0
    assert (exp / "metrics.json").is_file()


@pytest.mark.parametrize("method", ["column_2", "random_column"])
def test_safe_evaluate_rebuilds_progressive_columns(heads_off: Path, method: str) -> None:
    """A column's SB3 zip loads without unpickling and acts exactly as SB3's own loader does."""
    run = heads_off / "s0" / f"{method}__MinAtar-SpaceInvaders-v1"
    assert read_sb3_header(run / "model.zip")["extractor"]["kind"] == "progressive"
    plain, _, _ = load_policy(run)
    safe, env_id, _ = load_policy(run, safe=True)
    assert env_id == INVADERS
    obs = observations(INVADERS, 64)
    np.testing.assert_array_equal(plain.predict(obs, deterministic=True)[0],
                                  safe.predict(obs, deterministic=True)[0])
    for (k, a), (k2, b) in zip(plain.policy.state_dict().items(), safe.policy.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k


def test_safe_evaluate_command_on_a_column(heads_off: Path) -> None:
    """The issue's command, in a subprocess: ``evaluate RUN --safe`` on a progressive column."""
    proc = run_cli("evaluate", str(heads_off / "s0" / "column_2__MinAtar-SpaceInvaders-v1"), "--safe",
                   "--episodes", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["env_id"] == INVADERS


def test_safe_evaluate_refuses_in_one_line_what_it_cannot_rebuild(heads_off: Path, tmp_path: Path) -> None:
    """A column zip without its layout (as older policyshare wrote it) or naming an extractor
    policyshare does not rebuild: one line that names the fix, nothing unpickled."""
    src = heads_off / "s0" / "column_2__MinAtar-SpaceInvaders-v1" / "model.zip"
    header = read_sb3_header(src)
    old = {k: v for k, v in header.items() if k != "extractor"}
    rewrite_zip(src, tmp_path / "old.zip", {SB3_HEADER: json.dumps(old).encode()})
    with pytest.raises(CheckpointError, match="progressive column saved without its network's layout") as e:
        load_policy(tmp_path / "old.zip", safe=True)
    assert "network.safetensors with --task ID" in str(e.value) and len(str(e.value)) < 400
    other = {**header, "extractor": {"kind": "os.system", "kwargs": {}}}
    rewrite_zip(src, tmp_path / "other.zip", {SB3_HEADER: json.dumps(other).encode()})
    with pytest.raises(CheckpointError, match="'os.system' that --safe cannot rebuild"):
        load_policy(tmp_path / "other.zip", safe=True)
    bad_kwargs = {**header, "extractor": {"kind": "progressive", "kwargs": {"n_columns": 2, "evil": 1}}}
    rewrite_zip(src, tmp_path / "bad.zip", {SB3_HEADER: json.dumps(bad_kwargs).encode()})
    with pytest.raises(CheckpointError, match="does not describe a network"):
        load_policy(tmp_path / "bad.zip", safe=True)


# ---- every other option value, at a tiny budget -----------------------------------------------

# Together with ``heads_off`` (A2C, minatar_deep, stem, heads off, reduction null, α 1, relu,
# finetune and random_column): every value of every option is run at least once.
CASES = {
    "ppo-minatar-pad-trec-heads-reduction-scratch": (
        {"algo": "ppo", "adapter": {"heads": True, "reduction": 4, "alpha_init": 0.1},
         "train": {"trunk": {"spec": "minatar", "alignment": "pad", "activation": "trec"},
                   "hyperparams": PPO_SMALL}}, ["scratch"]),
    "ppo-minatar-stem-tlin-no-heads": (
        {"algo": "ppo", "adapter": {"heads": False, "alpha_init": 0.01},
         "train": {"trunk": {"spec": "minatar", "alignment": "stem", "activation": "tlin"},
                   "hyperparams": PPO_SMALL}}, []),
    "a2c-deep-pad-heads-no-fisher": (
        {"algo": "a2c", "adapter": {"heads": True, "reduction": 8}, "fisher": {"enabled": False},
         "train": {"trunk": {"spec": "minatar_deep", "alignment": "pad"}}}, ["scratch", "finetune"]),
}


def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_every_option_value_trains_and_analyses(case: str, tmp_path: Path) -> None:
    overrides, controls = CASES[case]
    overrides = merge(TINY, overrides)
    algo = overrides.pop("algo")
    metrics = run_progressive([BREAKOUT, INVADERS], algo=algo, timesteps=256, seeds=[0], run_dir=tmp_path / "e",
                              controls=controls, overrides=overrides)
    assert set(metrics["methods"]) == {"progressive", *controls} and metrics["no_forgetting_all_identical"]
    network = load_network(tmp_path / "e" / "s0" / "network.safetensors")
    adapter = overrides["adapter"]
    assert ("head" in network.stack.adapters(1)) == adapter["heads"]
    if adapter.get("reduction"):
        assert all(a.reduced == adapter["reduction"] for a in network.stack.adapters(1).values())
    assert network.stack.spec.activation == overrides["train"]["trunk"].get("activation", "relu")
    fisher = metrics["fisher"]
    if overrides.get("fisher", {}).get("enabled", True):
        afs = np.array([[fisher["afs_mean"][c][layer] for layer in fisher["layers"]] for c in fisher["columns"]])
        keep = ~np.isnan(afs).any(axis=0)
        np.testing.assert_allclose(afs[:, keep].sum(axis=0), 1.0, atol=1e-9)
        if not adapter["heads"]:
            assert afs[0, -1] == 0.0
    else:
        assert fisher is None and not (tmp_path / "e" / "fisher.json").exists()
    run = tmp_path / "e" / "s0" / "column_2__MinAtar-SpaceInvaders-v1"
    plain, _, _ = load_policy(run)
    safe, _, _ = load_policy(run, safe=True)
    obs = observations(INVADERS, 32)
    np.testing.assert_array_equal(plain.predict(obs, deterministic=True)[0], safe.predict(obs, deterministic=True)[0])


# ---- values that cannot work: refused before anything is written -----------------------------


@pytest.mark.parametrize(("sets", "fragments"), [
    (["train.trunk.spec=nature"], ["input 10x10 is too small", "set train.trunk.spec to one that fits",
                                   "minatar, minatar_deep"]),
    (["train.trunk.alignment=none"], ["need input alignment 'pad' or 'stem'"]),
    (["algo=dqn"], ["'dqn' is not one of 'ppo' | 'a2c'"]),
    (["adapter.heads=maybe"], ["adapter.heads: expected true or false"]),
    (["adapter.reduction=0"], ["reduction must be > 0"]),
    (["train.trunk.activation=gelu"], ["'gelu' is not one of 'relu' | 'trec' | 'tlin'"]),
    (["fisher.samples=0"], ["samples must be > 0"]),
])
def test_unsupported_option_values_are_refused_up_front(sets: list[str], fragments: list[str], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    args = ["progressive", "--tasks", BREAKOUT, INVADERS, "--timesteps", "256", "--run-dir", str(out),
            "--set", "train.eval.freq=128", *[a for s in sets for a in ("--set", s)]]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    for f in fragments:
        assert f in err[0], err[0]
    assert not out.exists()
