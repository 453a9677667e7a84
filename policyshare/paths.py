"""Where policyshare finds its data (``envs/``, ``configs/``) and writes runs (``runs/``).

``envs/`` and ``configs/`` live at the top of the source tree, beside the package (the README
installs it editable). ``POLICYSHARE_HOME`` points elsewhere if needed. Runs go under
``./runs`` relative to the working directory, as rl-baselines3-zoo writes ``./logs``.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
ROOT = Path(os.environ.get("POLICYSHARE_HOME", PACKAGE_DIR.parent)).resolve()
ENVS_DIR = ROOT / "envs"
CONFIGS_DIR = ROOT / "configs"


def runs_dir() -> Path:
    """Default parent of run folders: ``./runs`` (``POLICYSHARE_RUNS`` overrides)."""
    return Path(os.environ.get("POLICYSHARE_RUNS", "runs"))


def default_config(name: str) -> Path:
    """``configs/<name>.yaml`` of the source tree."""
    return CONFIGS_DIR / f"{name}.yaml"
