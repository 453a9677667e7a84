"""Where policyshare finds its data (``envs/``, ``configs/``) and writes runs (``runs/``).

The task suites (``envs/*.yaml``) and default configs (``configs/*.yaml``) have one source of
truth: the top-level ``envs/`` and ``configs/`` of the source tree, the copies users read and edit.
The package reaches them through ``policyshare/_data/envs`` and ``policyshare/_data/configs``,
symlinks to those folders that the wheel build follows, so a wheel (or sdist) carries them as
package data in the same place. One lookup therefore serves every install:

* source checkout or editable install: ``policyshare/_data/…`` resolves to the top-level folders;
* wheel install: ``policyshare/_data/…`` holds the copies the build made;
* ``POLICYSHARE_HOME`` set: ``$POLICYSHARE_HOME/envs`` and ``$POLICYSHARE_HOME/configs`` instead.

Runs go under ``./runs`` relative to the working directory, as rl-baselines3-zoo writes ``./logs``.
Nothing else in the package reads files beside it but the zoo (``policyshare/zoo/*.zip``, package
data too).
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
#: The data shipped with the package: ``envs/`` and ``configs/`` (symlinks in a source checkout).
DATA_DIR = PACKAGE_DIR / "_data"
#: The source checkout the package runs from (editable install, ``PYTHONPATH``); ``None`` when it
#: is installed from a wheel, whose site-packages is no source tree (and may sit inside an unrelated
#: git repository, whose commit must not be recorded as ours).
SOURCE_DIR: Path | None = PACKAGE_DIR.parent if (PACKAGE_DIR.parent / "pyproject.toml").is_file() else None
#: The folder holding ``envs/`` and ``configs/``: ``POLICYSHARE_HOME`` if set, else the package's data.
ROOT = Path(os.environ["POLICYSHARE_HOME"]).resolve() if os.environ.get("POLICYSHARE_HOME") else DATA_DIR
# resolve(): in a checkout, messages name the top-level files users edit, not the symlinks.
ENVS_DIR = (ROOT / "envs").resolve()
CONFIGS_DIR = (ROOT / "configs").resolve()


def runs_dir() -> Path:
    """Default parent of run folders: ``./runs`` (``POLICYSHARE_RUNS`` overrides)."""
    return Path(os.environ.get("POLICYSHARE_RUNS", "runs"))


def default_config(name: str) -> Path:
    """``configs/<name>.yaml``: the shipped default (or ``$POLICYSHARE_HOME/configs/<name>.yaml``)."""
    return CONFIGS_DIR / f"{name}.yaml"
