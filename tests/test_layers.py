"""Layers: imports go downward (files → trunk files → algorithms → SB3 zips → episodes → policies),
and ``import policyshare`` / ``policyshare --help`` stay light (no torch, no stable-baselines3)."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

import policyshare.distill
import policyshare.progressive
from policyshare.policies import POLICY_LOADERS
from policyshare.sb3_files import PROGRESSIVE_POLICY_MODULE, SAFE_EXTRACTORS, allowed_modules, extractor_header

HEAVY = ("torch", "stable_baselines3")

#: The plumbing modules, lowest first: each may import only those before it (and none after).
PLUMBING = ("io", "checkpoints", "algos", "sb3_files", "evaluate", "policies")


def python(*args: str) -> subprocess.CompletedProcess[str]:
    """Run this checkout's Python in a fresh process (nothing imported yet)."""
    env = dict(os.environ, PYTHONWARNINGS="ignore", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)


def imported_modules(importtime_log: str) -> set[str]:
    """Module names from a ``python -X importtime`` log (``import time: self | cumulative | name``)."""
    return {line.rsplit("|", 1)[1].strip() for line in importtime_log.splitlines()
            if line.startswith("import time:") and line.count("|") == 2}


def policyshare_imports(module: str) -> set[str]:
    """The ``policyshare.*`` modules that ``policyshare/<module>.py`` imports anywhere (module level
    or inside functions), as written in its source."""
    tree = ast.parse((ROOT / "policyshare" / f"{module}.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("policyshare"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)  # from policyshare import zoo
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("policyshare"))
    return found


def test_import_policyshare_loads_neither_torch_nor_sb3() -> None:
    proc = python("-c", "import sys, policyshare, gymnasium as gym; gym.make('MinAtar/Breakout-v1'); "
                  f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"  # and the MinAtar ids are registered all the same


def test_help_loads_neither_torch_nor_sb3() -> None:
    proc = python("-X", "importtime", "-m", "policyshare", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "train" in proc.stdout and "evaluate" in proc.stdout
    loaded = imported_modules(proc.stderr)
    assert "policyshare.cli" in loaded  # the log is read right
    assert not loaded & set(HEAVY)


def test_public_names_still_load_on_first_use() -> None:
    proc = python("-c", "import policyshare as p; t = p.Trunk(p.TrunkSpec('minatar', 4, 10, 10)); "
                  "print(type(t).__name__, p.load_trunk.__module__, p.save_trunk.__module__)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["Trunk", "policyshare.checkpoints", "policyshare.checkpoints"]


def test_io_loads_neither_torch_nor_sb3() -> None:
    proc = python("-c", f"import sys, policyshare.io; print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_plumbing_imports_only_go_down() -> None:
    for i, module in enumerate(PLUMBING):
        above = {f"policyshare.{m}" for m in PLUMBING[i + 1:]}
        assert not policyshare_imports(module) & above, f"policyshare.{module} imports a module above it"


def test_moved_names_live_only_in_their_homes() -> None:
    # Wave 1 kept the names that left checkpoints.py importable from it; wave 2 removed that shim,
    # so every importer names the real home (io, algos, sb3_files) and checkpoints is trunk files only.
    import policyshare.checkpoints as checkpoints

    for name in ("atomic_write_json", "read_json", "remove_stale_temporaries", "ALGOS", "algo_class",
                 "load_sb3", "load_sb3_safe", "read_sb3_header", "save_sb3", "SAFE_EXTRACTORS"):
        assert not hasattr(checkpoints, name), name
    assert not hasattr(checkpoints, "__getattr__")


def test_episode_runner_needs_no_method_module() -> None:
    # evaluate.py runs episodes of any agent; loading the methods' files is policies.py's job.
    reached = policyshare_imports("evaluate")
    assert not {m for m in reached if m.startswith(("policyshare.progressive", "policyshare.distill"))}
    assert "importlib" not in (ROOT / "policyshare" / "evaluate.py").read_text()  # no import by string


def test_policy_loaders_are_the_methods_own_functions() -> None:
    assert POLICY_LOADERS["policyshare.progressive"] is policyshare.progressive.load_policy
    assert POLICY_LOADERS["policyshare.student"] is policyshare.distill.load_policy


def test_safe_allow_list_finds_the_progressive_classes_at_their_new_or_old_path() -> None:
    from policyshare.sb3_files import _import_allowed

    module, extractor, policy = SAFE_EXTRACTORS["progressive"]
    assert module == PROGRESSIVE_POLICY_MODULE
    # Zips saved before progressive became a package name the old module; both are accepted.
    assert allowed_modules(module) == ["policyshare.progressive.policy", "policyshare.progressive"]
    found = _import_allowed(module)
    assert getattr(found, extractor) is policyshare.progressive.ProgressiveExtractor
    assert getattr(found, policy) is policyshare.progressive.ProgressivePolicy
    assert policyshare.progressive.ProgressiveExtractor.__module__ in allowed_modules(module)


def test_extractor_header_describes_no_extractor_for_a_plain_trunk_policy() -> None:
    from policyshare.algos import PARAMS, PolicyConfig, TrunkConfig, build_model
    from policyshare.envs import check_env_id, make_vec_env

    env = make_vec_env("MinAtar/Breakout-v1", 1, 0)
    try:
        model = build_model("ppo", env, PARAMS["ppo"](n_steps=2, batch_size=2), PolicyConfig(), TrunkConfig(),
                            check_env_id("MinAtar/Breakout-v1"), 0)
    finally:
        env.close()
    assert extractor_header(model.policy) == {}


def test_the_import_walk_sees_imports_inside_functions() -> None:
    # evaluate's record_video imports the io module inside the function: the walk must see it, or
    # the layer tests above would pass without looking.
    assert "policyshare.io" in policyshare_imports("evaluate")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` (import-linter) on the package and contracts under ``root``, no cache."""
    env = dict(os.environ, PYTHONPATH=str(root))
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(exe), "--no-cache"], capture_output=True, text=True, cwd=root, env=env, timeout=120)


def copy_package(root: Path) -> None:
    """This checkout's package sources and ``pyproject.toml`` (its contracts) under ``root``."""
    shutil.copytree(ROOT / "policyshare", root / "policyshare", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "_data", "*.zip"))
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")


def test_the_import_contracts_hold() -> None:
    proc = lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Contracts: 2 kept, 0 broken." in proc.stdout


def test_an_upward_import_breaks_the_layers_contract(tmp_path: Path) -> None:
    # A copy of the package whose networks module reaches up into the comparison layer, inside a
    # function (where a lazy import would hide from a module-level check).
    copy_package(tmp_path)
    trunks = tmp_path / "policyshare" / "trunks.py"
    trunks.write_text(trunks.read_text()
                      + "\n\ndef _upward() -> None:\n    from policyshare import comparison  # noqa\n")
    proc = lint_imports(tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "policyshare.trunks is not allowed to import policyshare.comparison" in proc.stdout


def test_a_method_importing_another_breaks_the_independence_contract(tmp_path: Path) -> None:
    copy_package(tmp_path)
    transfer = tmp_path / "policyshare" / "transfer.py"
    transfer.write_text(transfer.read_text() + "\n\nimport policyshare.progressive  # noqa\n")
    proc = lint_imports(tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "The methods are independent: none imports another BROKEN" in proc.stdout
