"""The end-to-end experiment: every stage at tiny budgets, resumable, and the report built from it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, run_cli

from policyshare.errors import ConfigError
from policyshare.experiment import load_experiment_config, plan, run_experiment
from policyshare.report import build_report

TINY_TRANSFER = {"n_envs": 8, "checkpoint_freq": 1024, "eval": {"freq": 1024, "episodes": 1, "final_episodes": 2,
                                                    "random_episodes": 2}}


def tiny_config(tmp_path: Path, **changes: object) -> Path:
    cfg = {
        "name": "tiny",
        "sources": ["MinAtar/SpaceInvaders-v1", "MinAtar/Asterix-v1"],
        "targets": ["MinAtar/Breakout-v1"],
        "seeds": [0, 1],
        "experts": {"source": "zoo"},
        "distill": {"steps": 2000, "set": {"learning_starts": 256, "checkpoint_freq": 1000, "log_freq": 500,
                                           "eval": {"freq": 1000, "episodes": 1, "final_episodes": 2,
                                                    "random_episodes": 2}}},
        "transfer": {"timesteps": 3072, "set": TINY_TRANSFER},
        "vision": {"set": {"pretrain": {"classify_epochs": 1, "autoencoder_epochs": 1},
                           "diffusion": {"train_steps": 50, "hidden": 32, "cache_dir": str(tmp_path / "cache")},
                           "guidance": {"train_steps": 20, "per_class": 3, "head_hidden": 16},
                           "texture": {"steps": 3}}},
    }
    cfg.update(changes)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def mtimes(root: Path, pattern: str) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.glob(pattern))}


def test_every_stage_and_a_report_then_nothing_redone(tmp_path: Path) -> None:
    root = tmp_path / "exp"
    run_experiment(tiny_config(tmp_path), run_dir=root)
    report = (root / "report.md").read_text()
    for heading in ("What this run shows", "Transfer to the held-out games", "The Actor-Mimic student",
                    "Parameter counts", "Vision"):
        assert heading in report
    summary = json.loads((root / "summary.json").read_text())
    tp = summary["transfer"]["targets"]["MinAtar/Breakout-v1"]["transfer_percent"]
    assert set(tp) == {"scratch", "finetune", "student", "progressive", "random_column"}
    assert all(len(v["per_seed"]) == 2 for v in tp.values())
    for png in ("plots/curves_MinAtar-Breakout-v1.png", "plots/transfer_MinAtar-Breakout-v1.png", "plots/student.png"):
        assert (root / png).read_bytes()[:4] == b"\x89PNG"
    assert summary["student"]["per_task"].keys() == {"MinAtar/SpaceInvaders-v1", "MinAtar/Asterix-v1"}
    assert set(summary["vision"]["metrics"]["results"]) >= {"random", "classify", "autoencoder", "student"}
    # TensorBoard: every transfer run has event files and they share the evaluation tag.
    assert len(list(root.glob("transfer/*/*/tb/events.out.tfevents.*"))) >= 10

    before = mtimes(root, "**/metrics.json")
    started = time.perf_counter()
    run_experiment(tiny_config(tmp_path), run_dir=root)
    assert time.perf_counter() - started < 30
    assert mtimes(root, "**/metrics.json") == before

    # The report rebuilds from the run folders alone.
    (root / "report.md").unlink()
    rebuilt = build_report(root)
    assert (root / "report.md").is_file() and rebuilt["findings"] == summary["findings"]


def test_killed_run_finishes_without_redoing_finished_stages(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, vision={"enabled": False}, distill={"enabled": False},
                         transfer={"timesteps": 8192, "methods": ["scratch", "finetune"], "set": TINY_TRANSFER},
                         seeds=[0])
    root = tmp_path / "exp"
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.Popen([sys.executable, "-m", "policyshare", "run", str(config), "--run-dir", str(root)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    scratch = root / "transfer" / "MinAtar-Breakout-v1" / "scratch__s0"
    deadline = time.time() + 300
    while not list((scratch / "checkpoints").glob("ckpt_*.zip")) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (root / "experts" / "MinAtar-Asterix-v1" / "metrics.json").is_file()
    assert not (scratch / "metrics.json").is_file()
    experts = mtimes(root, "experts/*/metrics.json")
    done = run_cli("run", str(config), "--run-dir", str(root))
    assert done.returncode == 0, done.stderr
    assert "[experts] done" in done.stdout
    assert mtimes(root, "experts/*/metrics.json") == experts
    metrics = json.loads((scratch / "metrics.json").read_text())
    assert metrics["timesteps"] == 8192
    assert (root / "report.md").is_file()


def test_bad_experiment_configs(tmp_path: Path) -> None:
    proc = run_cli("run", str(tiny_config(tmp_path, targets=["MinAtar/SpaceInvaders-v1"])))
    assert proc.returncode == 2 and "both a source and a target" in proc.stderr
    proc = run_cli("run", str(tiny_config(tmp_path, transfer={"methods": ["scratch", "magic"]})))
    assert proc.returncode == 2 and "unknown method 'magic'" in proc.stderr
    proc = run_cli("run", str(tiny_config(tmp_path, distill={"set": {"tau": 0}})))
    assert proc.returncode == 2 and "tau must be > 0" in proc.stderr
    proc = run_cli("run", str(tiny_config(tmp_path)), "--only", "vision", "--run-dir", str(tmp_path / "e"))
    assert proc.returncode == 2 and "needs the experts stage" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_distill_steps_that_cannot_reach_an_update_are_refused_before_any_stage(tmp_path: Path) -> None:
    """``distill.steps`` below the distill config's first update: refused when the config loads."""
    with pytest.raises(ConfigError, match="steps 200 .* trains nothing"):
        load_experiment_config(tiny_config(tmp_path, distill={"steps": 200, "set": {"learning_starts": 256}}))
    assert load_experiment_config(tiny_config(tmp_path, distill={"steps": 256, "set": {"learning_starts": 256}}))


def test_presets_are_valid() -> None:
    for name in ("quickstart", "sharing", "sharing_atari"):
        cfg = load_experiment_config(ROOT / "configs" / f"{name}.yaml")
        jobs = plan(cfg)
        assert jobs["transfer"] and jobs["report"]


@pytest.mark.slow
def test_quickstart_preset_runs(tmp_path: Path) -> None:
    proc = run_cli("run", "configs/quickstart.yaml", "--run-dir", str(tmp_path / "qs"), "--jobs", "2",
                   timeout=3600)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "qs" / "report.md").is_file()
