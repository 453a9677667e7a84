"""Helper of ``test_sweep_cluster.py`` (not a test): a two-node Ray cluster loses its worker node.

Run inside a network namespace of its own with only ``lo`` up (``unshare -rn``), so that Ray
binds 127.0.0.1 and nothing else::

    python tests/ray_lost_worker.py CONFIG RUN_DIR REPORT_JSON [--max-failures N]

It starts a Ray head (1 CPU) and a worker node (2 CPUs) on 127.0.0.1 with
:class:`ray.cluster_utils.Cluster`, runs ``policyshare sweep CONFIG --address …`` against them,
waits until every transfer job has written a checkpoint and at least one of them runs on the
worker node, then kills every process of the worker node (SIGKILL: its trial processes, raylet
and the rest, as when a machine dies), and waits for the sweep to end. What happened goes to
REPORT_JSON: the sweep's exit status and output, which jobs ran on the lost node, and each
transfer job's ``progress.csv`` and newest checkpoint at the moment of the kill.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def _children(pid: int) -> list[int]:
    """Every descendant of process ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        out += kids
        frontier += kids
    return out


def _run_folders_held(pids: list[int], root: Path) -> dict[int, str]:
    """pid → the run folder (relative to ``root``) whose ``.lock`` the process holds open."""
    held: dict[int, str] = {}
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = Path(os.readlink(fd))
            except OSError:
                continue
            if target.name == ".lock" and root in target.parents:
                held[pid] = str(target.parent.relative_to(root))
    return held


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("run_dir")
    parser.add_argument("report")
    parser.add_argument("--max-failures", default=None, help="passed on to the sweep (default: its own)")
    parser.add_argument("--jobs", type=int, default=2, help="transfer jobs of the config")
    parser.add_argument("--timeout", type=float, default=900)
    a = parser.parse_args()
    root = Path(a.run_dir).resolve()

    from ray.cluster_utils import Cluster

    started = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False})
    worker = cluster.add_node(num_cpus=2, node_ip_address="127.0.0.1")
    report: dict[str, Any] = {"address": cluster.address, "cluster_up_s": time.perf_counter() - started}
    log = open(Path(a.report).with_suffix(".log"), "w")  # noqa: SIM115 (the sweep writes to it)
    retries = ["--max-failures", a.max_failures] if a.max_failures is not None else []
    sweep = subprocess.Popen([sys.executable, "-m", "policyshare", "sweep", a.config, "--run-dir", str(root),
                              "--address", cluster.address, *retries],
                             stdout=log, stderr=subprocess.STDOUT, text=True)
    raylet = worker.all_processes["raylet"][0].process.pid
    try:
        deadline = time.monotonic() + a.timeout
        on_worker: dict[int, str] = {}
        while time.monotonic() < deadline and sweep.poll() is None:
            ckpts = {p.parent.parent for p in root.glob("transfer/*/*/checkpoints/ckpt_*.zip")}
            finished = list(root.glob("transfer/*/*/metrics.json"))
            on_worker = {pid: f for pid, f in _run_folders_held(_children(raylet), root).items()
                         if f.startswith("transfer/")}
            if len(ckpts) == a.jobs and not finished and on_worker:
                break
            time.sleep(0.2)
        else:
            report["error"] = "the transfer trials never all ran with a checkpoint while one was on the worker node"
            return 1
        report["lost_jobs"] = sorted(on_worker.values())
        report["at_kill"] = {}
        for folder in sorted(root.glob("transfer/*/*")):
            name = str(folder.relative_to(root))
            newest = max((p for p in (folder / "checkpoints").glob("ckpt_*.zip")),
                         key=lambda p: int(p.stem.split("_")[1]), default=None)
            csv = folder / "tb" / "progress.csv"
            report["at_kill"][name] = {"checkpoint": newest.name if newest else None,
                                       "progress_csv": csv.read_text() if csv.is_file() else ""}
        # The machine dies: every process of the worker node at once, trials included.
        victims = _children(raylet)
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        cluster.remove_node(worker, allow_graceful=False)
        report["killed_at_s"] = time.perf_counter() - started
        report["killed_pids"] = len(victims) + 1
        report["returncode"] = sweep.wait(timeout=max(1.0, deadline - time.monotonic()))
        return 0
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.wait()
        log.close()
        report["sweep_output"] = Path(a.report).with_suffix(".log").read_text()
        report["wall_s"] = time.perf_counter() - started
        cluster.shutdown()
        Path(a.report).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    sys.exit(main())
