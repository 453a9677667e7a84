"""The experiment package's shape: one concept per module, imports only downward, a light __init__."""

from __future__ import annotations

import ast
import subprocess
import sys

from conftest import ROOT

PACKAGE = ROOT / "policyshare" / "experiment"
#: Data-flow order: a module may import only the ones before it.
ORDER = ["capacity", "config", "checks", "design", "capacity_plan", "layout", "budget", "capacity_run",
         "report_targets", "report_claims", "capacity_report", "report", "jobs", "runner", "sweep"]


def _imported_siblings(module: str) -> set[str]:
    """The package's modules that ``module`` imports, at any depth of its code (lazy imports too)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            name = node.module
        elif isinstance(node, ast.Import):
            name = node.names[0].name
        else:
            continue
        if name.startswith("policyshare.experiment."):
            out.add(name.split(".")[2])
        elif name == "policyshare.experiment" and isinstance(node, ast.ImportFrom):
            out.add("__init__")  # climbing back up through the package
    return out


def test_every_module_imports_only_the_modules_below_it() -> None:
    assert sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__") == sorted(ORDER)
    for i, module in enumerate(ORDER):
        climbs = _imported_siblings(module) - set(ORDER[:i])
        assert not climbs, f"{module} imports {sorted(climbs)}, which are not below it in {ORDER}"


def test_every_module_stays_under_600_lines() -> None:
    for module in ["__init__", *ORDER]:
        assert len((PACKAGE / f"{module}.py").read_text().splitlines()) < 600, module


def test_importing_the_package_loads_no_submodule_and_keeps_the_public_functions() -> None:
    code = ("import sys, policyshare.experiment as e\n"
            "loaded = [m for m in sys.modules if m.startswith('policyshare.experiment.')]\n"
            "assert not loaded, loaded\n"
            "import policyshare.experiment.sweep, policyshare.experiment.report\n"
            "from policyshare.experiment import plan, run_experiment, ExperimentConfig, build_report\n"
            "assert callable(plan) and plan.__module__ == 'policyshare.experiment.layout', plan\n"
            "assert run_experiment.__module__ == 'policyshare.experiment.runner'\n"
            "assert all(hasattr(e, name) for name in e.__all__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
