"""``policyshare sweep`` on a local Ray (two tiny trials, their run folders, the report from them) and on a
two-node Ray cluster that loses its worker node mid-sweep; which failures Ray Tune retries."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml
from conftest import run_cli


def test_sweep_on_local_ray(tmp_path: Path) -> None:
    cfg = {
        "name": "sweep-tiny",
        "sources": ["MinAtar/SpaceInvaders-v1", "MinAtar/Asterix-v1"],
        "targets": ["MinAtar/Breakout-v1"],
        "seeds": [0],
        "experts": {"source": "zoo"},
        "distill": {"enabled": False},
        "vision": {"enabled": False},
        "transfer": {"methods": ["scratch", "finetune"], "finetune_from": "first", "timesteps": 2048,
                     "set": {"n_envs": 8, "checkpoint_freq": 1024,
                             "eval": {"freq": 1024, "episodes": 1, "final_episodes": 2, "random_episodes": 2}}},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(cfg))
    root = tmp_path / "exp"
    proc = run_cli("sweep", str(path), "--run-dir", str(root), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted(p.parent.name for p in root.glob("transfer/MinAtar-Breakout-v1/*/metrics.json"))
    assert runs == ["finetune__SpaceInvaders-v1__pad__s0", "scratch__s0"]
    assert list((root / "ray" / "transfer").iterdir()), "Ray Tune wrote its trial records"
    summary = json.loads((root / "summary.json").read_text())
    rows = summary["transfer"]["targets"]["MinAtar/Breakout-v1"]["transfer_percent"]
    assert "finetune__SpaceInvaders-v1__pad" in rows
    assert (root / "report.md").is_file()
    # ...and the report rebuilds from the run folders alone.
    proc = run_cli("report", str(root))
    assert proc.returncode == 0, proc.stderr


def test_sweep_without_ray_says_how_to_install(tmp_path: Path) -> None:
    import subprocess
    import sys

    from conftest import ROOT

    # Ray is an optional extra: make it unimportable in a child process, as on a machine without it.
    code = ("import sys; sys.modules['ray'] = None; from policyshare.cli import main; "
            f"raise SystemExit(main(['sweep', 'configs/quickstart.yaml', '--run-dir', {str(tmp_path / 'e')!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 2
    assert "pip install 'policyshare[ray]'" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "e").exists()


# --------------------------------------------------------------------------------------------
# A Ray cluster that loses a worker node


def _lost_worker_config(tmp_path: Path) -> Path:
    """Two transfer jobs of 6 rollouts each, a checkpoint every rollout (1024 env steps)."""
    cfg = {
        "name": "sweep-lost-worker",
        "sources": ["MinAtar/SpaceInvaders-v1", "MinAtar/Asterix-v1"],
        "targets": ["MinAtar/Breakout-v1"],
        "seeds": [0],
        "experts": {"source": "zoo"},
        "distill": {"enabled": False},
        "vision": {"enabled": False},
        "transfer": {"methods": ["scratch", "finetune"], "finetune_from": "first", "timesteps": 6144,
                     "set": {"n_envs": 8, "checkpoint_freq": 1024,
                             "eval": {"freq": 2048, "episodes": 1, "final_episodes": 2, "random_episodes": 2}}},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _run_folders(root: Path) -> set[str]:
    return {str(p.parent.relative_to(root)) for p in root.glob("**/metrics.json")}


def _folder_files(root: Path, run: str) -> set[str]:
    """A run folder's files, but TensorBoard's (one events file per process that wrote the run)."""
    folder = root / run
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and "tb" not in p.parts}


def _key_paths(obj: object, prefix: str = "") -> set[str]:
    if isinstance(obj, dict):
        return {prefix} | {k for key, v in obj.items() for k in _key_paths(v, f"{prefix}/{key}")}
    return {prefix}


def _report_skeleton(text: str) -> list[str]:
    """The headings and the first cell of every table row of report.md."""
    return [line if line.startswith("#") else line.split("|")[1].strip()
            for line in text.splitlines() if line.startswith(("#", "|"))]


def _csv_rows(text: str) -> list[dict[str, str]]:
    import csv
    import io

    return [{k: v for k, v in row.items() if v} for row in csv.DictReader(io.StringIO(text))]


def _isolated_loopback() -> bool:
    import shutil
    import subprocess

    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    probe = subprocess.run(["unshare", "-rn", "sh", "-c", "ip link set lo up"], capture_output=True, timeout=30)
    return probe.returncode == 0


@pytest.mark.slow
def test_sweep_on_a_cluster_that_loses_its_worker_node_finishes_with_resumed_trials(tmp_path: Path) -> None:
    """A real two-node Ray cluster on 127.0.0.1 (a network namespace of its own: Ray binds nothing
    else) loses its worker node, every process of it killed, while transfer trials run there; Ray
    Tune retries them (the default --max-failures), each resumes from its run folder's last
    checkpoint, and the experiment folder comes out as a local run's does."""
    import os
    import shutil
    import subprocess
    import sys
    import tempfile
    import time

    from conftest import ROOT

    if not _isolated_loopback():
        pytest.skip("needs `unshare -rn` (a network namespace with only the loopback) to keep Ray off the network")
    started = time.perf_counter()
    config = _lost_worker_config(tmp_path)
    # The reference: the same experiment run locally, one job after another.
    local = tmp_path / "local"
    proc = run_cli("run", str(config), "--run-dir", str(local), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]

    cluster_root, report = tmp_path / "cluster", tmp_path / "lost_worker.json"
    # Ray's session files and its "current cluster" address file in a short private folder, so that
    # no other Ray on this machine finds this cluster (unix socket paths must stay short).
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore", RAY_TMPDIR=ray_tmp)
    env.pop("RAY_ADDRESS", None)
    try:
        helper = subprocess.run(
            ["unshare", "-rn", "sh", "-c", 'ip link set lo up && exec "$0" "$@"', sys.executable,
             str(ROOT / "tests" / "ray_lost_worker.py"), str(config), str(cluster_root), str(report)],
            capture_output=True, text=True, cwd=ROOT, env=env, timeout=1200)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    wall = time.perf_counter() - started
    assert report.is_file(), helper.stderr[-3000:]
    got = json.loads(report.read_text())
    out = got.get("sweep_output", "")
    assert helper.returncode == 0 and "error" not in got, (got.get("error"), out[-3000:], helper.stderr[-3000:])
    assert got["address"].startswith("127.0.0.1:")

    # The sweep finished although the worker node died under its trials ...
    assert got["returncode"] == 0, out[-3000:]
    lost = got["lost_jobs"]
    assert lost, "at least one transfer trial ran on the worker node when it was killed"
    # ... because Ray Tune retried exactly the trials that ran there, once each.
    retried = [line.split(":")[0].strip() for line in out.splitlines() if "retrying it, resuming" in line]
    assert sorted(retried) == sorted(lost), out[-3000:]
    print(f"\nlost worker: {len(retried)} trial(s) retried ({', '.join(retried)}); cluster up in "
          f"{got['cluster_up_s']:.0f} s, node killed at {got['killed_at_s']:.0f} s, helper {got['wall_s']:.0f} s, "
          f"whole test {wall:.0f} s (with the local reference run)")

    # Each retried job resumed from its run folder's checkpoint: the progress rows it had logged up to
    # that checkpoint are kept as they were (time/time_elapsed included: not trained again), and its
    # meta.json records a second invocation; it still ends on the full budget, each step logged as in
    # the local run.
    for name, before in got["at_kill"].items():
        folder = cluster_root / name
        assert json.loads((folder / "metrics.json").read_text())["timesteps"] == 6144
        invocations = json.loads((folder / "meta.json").read_text())["invocations"]
        assert len(invocations) == (2 if name in lost else 1), name
        if name in lost:
            step = int(before["checkpoint"].removesuffix(".zip").split("_")[1])
            kept = [r for r in _csv_rows(before["progress_csv"]) if int(r["step"]) <= step]
            assert kept, f"{name} had logged rows up to its checkpoint at step {step}"
            now = [r for r in _csv_rows((folder / "tb" / "progress.csv").read_text()) if int(r["step"]) <= step]
            assert len(now) >= len(kept), name
            assert [{k: r.get(k) for k in old} for old, r in zip(kept, now)] == kept, name
        steps = [[r["step"] for r in _csv_rows((root / name / "tb" / "progress.csv").read_text())]
                 for root in (cluster_root, local)]
        assert steps[0] == steps[1], f"{name}: each step logged as often as in the local run"

    # No run folder duplicated or lost: the same run folders, files and report as the local run.
    assert _run_folders(cluster_root) == _run_folders(local) == {
        "experts/MinAtar-SpaceInvaders-v1/pad__s0",
        "transfer/MinAtar-Breakout-v1/scratch__s0", "transfer/MinAtar-Breakout-v1/finetune__SpaceInvaders-v1__pad__s0"}
    for run in _run_folders(local):
        assert _folder_files(cluster_root, run) == _folder_files(local, run), run
    assert {p.name for p in cluster_root.iterdir()} - {"ray"} == {p.name for p in local.iterdir()}
    assert len(list((cluster_root / "ray" / "transfer").glob("_trial_*"))) == 2, "one Tune trial per job"
    summary, reference = (json.loads((r / "summary.json").read_text()) for r in (cluster_root, local))
    assert _key_paths(summary) == _key_paths(reference)
    assert _report_skeleton((cluster_root / "report.md").read_text()) == \
        _report_skeleton((local / "report.md").read_text())


def test_sweep_max_failures_is_checked_before_anything_runs(tmp_path: Path) -> None:
    config = _lost_worker_config(tmp_path)
    for args, says in ((["--max-failures", "-2"], "--max-failures must be"),
                       (["--backend", "local", "--max-failures", "1"], "--backend local")):
        root = tmp_path / "exp"
        proc = run_cli("sweep", str(config), "--run-dir", str(root), *args, timeout=300)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0], proc.stderr
        assert not root.exists()


def _bad_expert_config(tmp_path: Path) -> dict[str, object]:
    """An expert run folder that does not exist: the expert jobs fail on their input, and would again."""
    nowhere = str(tmp_path / "nowhere")
    return {"name": "sweep-bad-expert", "sources": ["MinAtar/SpaceInvaders-v1", "MinAtar/Asterix-v1"],
            "targets": ["MinAtar/Breakout-v1"], "seeds": [0], "distill": {"enabled": False},
            "vision": {"enabled": False},
            "experts": {"source": "runs", "runs": {"MinAtar/SpaceInvaders-v1": nowhere, "MinAtar/Asterix-v1": nowhere}},
            "transfer": {"methods": ["scratch", "finetune"], "timesteps": 2048,
                         "set": {"n_envs": 8, "eval": {"freq": 1024}}}}


def test_a_trial_returns_a_job_failing_on_its_input_instead_of_raising_it(tmp_path: Path) -> None:
    import os

    from policyshare.experiment import open_experiment, plan
    from policyshare.experiment.sweep import _trial

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_bad_expert_config(tmp_path)))
    cfg, root = open_experiment(path, tmp_path / "exp")
    job = plan(cfg)["experts"][0]
    # Raised, Ray Tune would retry it (--max-failures); returned, it is reported at once.
    out = _trial({"cwd": os.getcwd(), "root": str(root), "job": asdict(job)})
    assert out["job"] == job.name and out["status"] == "failed"
    assert f"{tmp_path / 'nowhere'}" in out["error"] and "not found" in out["error"]


@pytest.mark.slow
def test_sweep_reports_a_job_failing_on_its_input_without_retrying_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_bad_expert_config(tmp_path)))
    proc = run_cli("sweep", str(path), "--run-dir", str(tmp_path / "exp"), "--max-failures", "2", timeout=600)
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert "2 of 2 experts trials failed" in last and f"{tmp_path / 'nowhere'}" in last, last
    assert "retrying" not in proc.stdout + proc.stderr
    assert not (tmp_path / "exp" / "transfer").exists()


def test_an_unreachable_address_writes_nothing(tmp_path: Path) -> None:
    """A wrong --address is refused before the experiment folder is opened."""
    from conftest import assert_user_error

    exp = tmp_path / "exp"
    proc = run_cli("sweep", "configs/quickstart.yaml", "--address", "127.0.0.1:1", "--run-dir", str(exp))
    assert_user_error(proc, "no Ray cluster at --address 127.0.0.1:1")
    assert not exp.exists()
