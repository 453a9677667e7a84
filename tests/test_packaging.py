"""Packaging: a wheel carries the suites, default configs and zoo, and a wheel install trains.

The wheel is built from a copy of the package's sources in ``tmp_path`` (``pip wheel`` builds in
the tree and leaves ``build/`` and ``*.egg-info`` there), offline: ``--no-build-isolation`` uses the
running venv's setuptools, ``--no-deps --no-index`` asks no index for anything.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT

import policyshare
import policyshare.paths

#: The top-level folders the package ships, each as ``policyshare/_data/<folder>/`` in the wheel.
SHIPPED = ("envs", "configs")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``policyshare-*.whl`` built offline from a copy of this checkout's sources."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("policyshare", *SHIPPED):
        # symlinks=True: the package's _data/ links stay links, pointing at the copied folders.
        shutil.copytree(ROOT / name, src / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    dist = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "-q", "-w", str(dist), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (whl,) = dist.glob("policyshare-*.whl")
    return whl


def test_the_package_reaches_the_top_level_folders_through_links() -> None:
    """One source of truth: ``policyshare/_data/{envs,configs}`` are links to the user-facing folders."""
    for name in SHIPPED:
        link = ROOT / "policyshare" / "_data" / name
        assert link.is_symlink(), f"{link} must link to {name}/, not copy it"
        assert link.resolve() == (ROOT / name).resolve()
    if not os.environ.get("POLICYSHARE_HOME"):
        assert (ROOT / "envs").resolve() == policyshare.paths.ENVS_DIR
        assert (ROOT / "configs").resolve() == policyshare.paths.CONFIGS_DIR


def test_wheel_ships_the_suites_configs_and_zoo(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        shipped = {n for n in names if n.startswith("policyshare/_data/")}
        expected = {f"policyshare/_data/{folder}/{p.name}": p
                    for folder in SHIPPED for p in sorted((ROOT / folder).glob("*.yaml"))}
        assert len(expected) >= 5
        assert shipped == set(expected)
        for name, source in expected.items():
            assert zf.read(name) == source.read_bytes(), f"{name} differs from {source}"
        zoo = {f"policyshare/zoo/{p.name}" for p in (ROOT / "policyshare" / "zoo").iterdir()
               if p.suffix in (".zip", ".json")}
        assert any(n.endswith(".zip") for n in zoo)
        assert zoo <= names
        for name in zoo:
            assert zf.getinfo(name).file_size == (ROOT / name).stat().st_size, name


@pytest.mark.slow
def test_a_wheel_install_trains_outside_the_source_tree(wheel: Path, tmp_path: Path) -> None:
    """Install the wheel into a fresh venv and train from a folder that is no source tree (~30 s).

    The venv is made without pip, and the wheel installed into it with ``--no-deps`` by this
    interpreter's pip (``pip --python``): the heavy dependencies (torch, SB3, …) are not installed
    again but made importable through a ``.pth`` file in the fresh venv's site-packages that lists
    the site-packages of the venv running the tests. A path line of a ``.pth`` file only appends to ``sys.path`` (the
    ``.pth`` files found there are not run), so the editable install of the source tree that this
    venv may hold stays invisible, and the venv's own site-packages comes first: ``policyshare`` is
    imported from the wheel's files, which the test checks.

    The fresh venv lies inside a git repository of its own, as a project's ``.venv`` does: a
    wheel install must not record that repository's commit as policyshare's.
    """
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "unrelated project"], check=True)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                           "-q", str(wheel)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    (purelib / "_policyshare_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "POLICYSHARE_", "VIRTUAL_ENV"))}
    env.update(PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")

    proc = subprocess.run([str(python), "-m", "policyshare", "train", "--env", "MinAtar/Breakout-v1",
                           "--timesteps", "256", "--set", "n_envs=1", "--set", "hyperparams.batch_size=64",
                           "--set", "eval.freq=0", "--set", "eval.final_episodes=1",
                           "--set", "eval.random_episodes=1", "--set", "checkpoint_freq=256", "--quiet"],
                          capture_output=True, text=True, cwd=elsewhere, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    (run,) = (elsewhere / "runs" / "train").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["env_id"] == "MinAtar/Breakout-v1" and metrics["timesteps"] >= 256
    meta = json.loads((run / "meta.json").read_text())
    (invocation,) = meta["invocations"]
    assert invocation["git"] == {}, "a wheel install recorded the commit of the repository around its venv"
    assert invocation["versions"]["policyshare"] == policyshare.__version__

    where = subprocess.run([str(python), "-c", "import policyshare, policyshare.paths as p; "
                            "print(policyshare.__file__); print(p.CONFIGS_DIR); print(p.ENVS_DIR)"],
                           capture_output=True, text=True, cwd=elsewhere, env=env, timeout=300)
    assert where.returncode == 0, where.stderr
    module, configs, envs = (Path(line) for line in where.stdout.split())
    assert module.is_relative_to(purelib.resolve()) and not module.is_relative_to(ROOT)
    assert configs == purelib.resolve() / "policyshare" / "_data" / "configs" and (configs / "ppo.yaml").is_file()
    assert envs == purelib.resolve() / "policyshare" / "_data" / "envs" and (envs / "minatar.yaml").is_file()


def test_policyshare_home_without_envs_names_the_folder_and_the_fix(tmp_path: Path) -> None:
    """``POLICYSHARE_HOME`` overrides the shipped data; one lacking ``envs/`` says so, not "known ids: "."""
    env = dict(os.environ, POLICYSHARE_HOME=str(tmp_path), PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-m", "policyshare", "train", "--env", "MinAtar/Breakout-v1",
                           "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert str(tmp_path / "envs") in line and "POLICYSHARE_HOME" in line and "unset it" in line, line
    assert not (tmp_path / "run").exists()
