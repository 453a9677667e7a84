"""``policyshare sweep`` on a local Ray: two tiny trials, their run folders, the report from them."""

from __future__ import annotations

import json
from pathlib import Path

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
        "transfer": {"methods": ["scratch", "finetune"], "timesteps": 2048,
                     "set": {"checkpoint_freq": 1024,
                             "eval": {"freq": 1024, "episodes": 1, "final_episodes": 2, "random_episodes": 2}}},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(cfg))
    root = tmp_path / "exp"
    proc = run_cli("sweep", str(path), "--run-dir", str(root), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted(p.parent.name for p in root.glob("transfer/MinAtar-Breakout-v1/*/metrics.json"))
    assert runs == ["finetune__s0", "scratch__s0"]
    assert list((root / "ray" / "transfer").iterdir()), "Ray Tune wrote its trial records"
    summary = json.loads((root / "summary.json").read_text())
    assert "finetune" in summary["transfer"]["targets"]["MinAtar/Breakout-v1"]["transfer_percent"]
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
