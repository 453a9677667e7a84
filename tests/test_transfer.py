"""Transfer of a trunk file to a new env against scratch: the command, its figures, resume, and
trunk files that do not fit."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_user_error, run_cli

from policyshare.checkpoints import save_trunk
from policyshare.comparison import zoo_expert_return
from policyshare.config import parse_overrides
from policyshare.errors import CheckpointError, ConfigError, UserError
from policyshare.transfer import check_trunk_fits, transfer
from policyshare.transfer_metrics import transfer_percent
from policyshare.trunks import Trunk, TrunkSpec

# Two seeds, 1024 env steps each, evaluated every 512 (two points per curve).
SETTINGS = ["n_envs=4", "hyperparams.n_steps=64", "hyperparams.batch_size=128", "eval.freq=512", "eval.episodes=3",
            "eval.final_episodes=1", "eval.random_episodes=1", "checkpoint_freq=0", "progress_bar=false"]
TINY = ["--timesteps", "1024", *[arg for item in SETTINGS for arg in ("--set", item)]]


def area(curve: tuple[list[float], list[float]]) -> float:
    t, v = np.asarray(curve[0]), np.asarray(curve[1])
    return float(np.sum(np.diff(t) * (v[1:] + v[:-1]) / 2))


def read_curve(run: Path) -> tuple[list[float], list[float]]:
    data = json.loads((run / "evaluations.json").read_text())
    return data["timesteps"], data["mean"]


def test_transfer_smoke_and_resume(breakout_run: Path, tmp_path: Path) -> None:
    """An expert's trunk to Asterix vs scratch, 2 seeds: every metric on both curves, per seed and
    as a range of the two seeds (not a confidence interval), and no verdict."""
    root = tmp_path / "exp"
    proc = run_cli("transfer", "--trunk", str(breakout_run / "trunk.safetensors"), "--env", "MinAtar/Asterix-v1",
                   "--seeds", "0", "1", "--run-dir", str(root), *TINY)
    assert proc.returncode == 0, proc.stderr
    assert "IQM over 2 seeds" in proc.stdout
    assert "Curve: **greedy evaluation**" in proc.stdout and "Curve: **training episodes**" in proc.stdout
    assert ("Verdict: finetune learns faster than scratch (normalised area, greedy evaluation): no verdict"
            in proc.stdout)
    for name in ("summary.json", "report.md", "curves.png", "curves_training.png", "profiles.png", "metrics.json",
                 "config.yaml"):
        assert (root / name).is_file(), name
    assert (root / "curves.png").read_bytes()[:4] == b"\x89PNG"
    text = (root / "summary.json").read_text()
    summary = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in summary.json"))
    assert summary["method"] == "finetune" and summary["seeds"] == [0, 1]
    expert, source = zoo_expert_return("MinAtar/Asterix-v1")
    assert summary["expert_return"] == expert and source in summary["references"]
    random = summary["random_return"]
    for seed in ("0", "1"):
        ft, sc = root / f"finetune__s{seed}", root / f"scratch__s{seed}"
        ft_metrics = json.loads((ft / "metrics.json").read_text())
        assert ft_metrics["init_trunk"] and not json.loads((sc / "metrics.json").read_text())["init_trunk"]
        a, b = read_curve(ft), read_curve(sc)
        assert a[0] == b[0] == [0, 512, 1024]  # same evaluation steps, from step 0
        # Transfer % is the paper's ratio only where scratch is clearly above random; else null with the reason.
        expected = transfer_percent(a, b, random, expert, budget=1024)
        got = summary["transfer_percent"]["per_seed"][seed]
        assert got == pytest.approx(expected.value) if expected.defined else got is None, seed
        assert summary["transfer_percent"]["per_seed_why"].get(seed) == expected.reason
        gain = summary["comparison"]["greedy evaluation"]["methods"]["finetune"]["per_seed"]["normalised_area_gain"]
        assert gain[seed] == pytest.approx((area(a) - area(b)) / (1024 * (expert - random)))
        # Training-episode returns are recorded beside greedy evaluation.
        curve = json.loads((ft / "evaluations.json").read_text())
        assert curve["train_mean"][0] is None and curve["train_episodes"][0] == 0
        assert len(curve["train_mean"]) == len(curve["timesteps"]) and sum(curve["train_episodes"]) > 0
        assert summary["final_returns"]["scratch"][seed] == json.loads((sc / "metrics.json").read_text())[
            "eval_mean_return"]
        # TensorBoard: the same tags in both runs, told apart by the folder (run) name.
        assert list((ft / "tb").glob("events.out.tfevents.*")) and list((sc / "tb").glob("events.out.tfevents.*"))
    for curve in ("greedy evaluation", "training episodes"):
        methods = summary["comparison"][curve]["methods"]
        assert set(methods) == {"finetune", "scratch"}  # no method disappears, whatever is undefined
        for key, agg in methods["finetune"]["aggregate"].items():  # two seeds: a range (or fewer), never a CI
            assert agg["kind"] in ("range", "none"), (curve, key, agg)
        assert summary["verdicts"][curve]["outcome"] == "no verdict"
    report = (root / "report.md").read_text()
    assert "range" in report and "95% stratified bootstrap CI" not in report and "nan" not in report

    # Resume: the finished sub-runs are kept bit for bit; only the missing one is trained.
    kept = {p: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in (root / "finetune__s0").rglob("*") if p.is_file()}
    shutil.rmtree(root / "scratch__s1")
    for name in ("metrics.json", "summary.json"):
        (root / name).unlink()
    result = transfer(breakout_run / "trunk.safetensors", "MinAtar/Asterix-v1", seeds=[0, 1], run_dir=root,
                      resume=True, timesteps=1024, overrides=parse_overrides(SETTINGS))
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in kept} == kept
    assert (root / "scratch__s1" / "metrics.json").is_file() and (root / "metrics.json").is_file()
    np.testing.assert_equal(result.summary["transfer_percent"]["per_seed"]["0"],
                            summary["transfer_percent"]["per_seed"]["0"])
    # A finished experiment is never overwritten.
    with pytest.raises(UserError, match="holds a finished run"):
        transfer(breakout_run / "trunk.safetensors", "MinAtar/Asterix-v1", run_dir=root, timesteps=1024,
                 overrides=parse_overrides(SETTINGS))


def test_a_second_trunk_to_the_same_env_gets_its_own_default_folder(breakout_run: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The default folder names the trunk (folder, stem and a digest of its bytes): two trunks from
    folders of the same name no longer share ``runs/transfer/<env>__<method>``, where the second
    was refused as a finished run."""
    from policyshare.checkpoints import load_tensors, save_tensors

    monkeypatch.setenv("POLICYSHARE_RUNS", str(tmp_path / "runs"))
    first = breakout_run / "trunk.safetensors"
    tensors, header = load_tensors(first)
    second = save_tensors(tmp_path / "other" / breakout_run.name / "trunk.safetensors",
                          {k: 0.5 * v for k, v in tensors.items()}, header)
    settings = {"timesteps": 512, "overrides": parse_overrides(SETTINGS)}
    a = transfer(first, "MinAtar/Asterix-v1", **settings)
    b = transfer(second, "MinAtar/Asterix-v1", **settings)
    assert a.run_dir != b.run_dir and a.run_dir.parent == b.run_dir.parent == tmp_path / "runs" / "transfer"
    for result, trunk in ((a, first), (b, second)):
        assert result.run_dir.name.startswith(f"MinAtar-Asterix-v1__finetune__{breakout_run.name}-trunk-")
        assert (result.run_dir / "metrics.json").is_file() and result.summary["trunk"] == str(trunk)
    with pytest.raises(UserError, match="holds a finished run"):  # the same trunk: the same folder
        transfer(first, "MinAtar/Asterix-v1", **settings)


def test_trunk_file_of_another_spec_is_refused(tmp_path: Path) -> None:
    trunk = save_trunk(Trunk(TrunkSpec("minatar_deep", 10, 10, 10)), tmp_path / "deep.safetensors")
    proc = run_cli("transfer", "--trunk", str(trunk), "--env", "MinAtar/Seaquest-v1", "--run-dir",
                   str(tmp_path / "r"), *TINY)
    assert_user_error(proc, "holds a 'minatar_deep' trunk but the network uses 'minatar'")
    assert not (tmp_path / "r").exists()


def test_trunk_of_other_shape_or_format(tmp_path: Path, breakout_run: Path) -> None:
    narrow = save_trunk(Trunk(TrunkSpec("minatar", 4, 10, 10)), tmp_path / "narrow.safetensors")
    with pytest.raises(CheckpointError, match=r"\(16, 4, 3, 3\) in the file but \(16, 10, 3, 3\)"):
        check_trunk_fits(narrow, "MinAtar/Seaquest-v1")
    with pytest.raises(CheckpointError, match="expected 'policyshare.trunk'.*one of its column files"):
        check_trunk_fits(_network_like(tmp_path), "MinAtar/Seaquest-v1")
    with pytest.raises(ConfigError, match="eval.freq > 0"):
        transfer(breakout_run / "trunk.safetensors", "MinAtar/Seaquest-v1", overrides={"eval": {"freq": 0}},
                 run_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def _network_like(tmp_path: Path) -> Path:
    """A tensor file of another format (not one trunk: a progressive network's)."""
    from policyshare.checkpoints import save_tensors

    trunk = Trunk(TrunkSpec("minatar", 10, 10, 10))
    return save_tensors(tmp_path / "other.safetensors", trunk.state_dict(), {"format": "policyshare.progressive"})
