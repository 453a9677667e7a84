"""The experiment folder's layout and its jobs: what runs where, and what a finished job depends on.

Every stage of the experiment (:data:`~policyshare.experiment.config.STAGES`) is a list of
independent :class:`Job` s (:func:`plan`), one run folder each. Layout of the experiment folder
(``runs/<name>`` by default, :func:`default_root`)::

    config.yaml, meta.json                   the resolved config; every invocation
    experts/<env>/                           model.zip, trunk.safetensors, metrics.json (expert_dir)
    distill/                                 the student's run folder (student.safetensors …)
    transfer/<env>/<method>__s<seed>/        train run folders, TensorBoard under tb/ (transfer_dir)
    vision_trunks/, vision/                  this run's trunks for the vision stage; its run folder
    report.md, summary.json, plots/          the report (rebuilt by ``policyshare report``)

:func:`job_settings` lists the settings a finished job depends on ("resume only with the same
settings" compares them); :func:`report_inputs` the result files the report is built from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policyshare.config import to_dict
from policyshare.errors import UserError
from policyshare.experiment.config import STAGES, ExperimentConfig
from policyshare.io import atomic_write_bytes, read_json
from policyshare.methods import FINETUNE, PROGRESSIVE, RANDOM_COLUMN, STUDENT
from policyshare.runs import runs_dir, slug

#: The files and folders each stage writes at the experiment folder's root (moved aside by
#: ``--force STAGE``).
STAGE_OUTPUTS: dict[str, tuple[str, ...]] = {
    "experts": ("experts",), "distill": ("distill",), "transfer": ("transfer",),
    "vision": ("vision", "vision_trunks"), "report": ("report.md", "summary.json", "plots")}


@dataclass(frozen=True)
class Job:
    """One independent unit of work: it writes one run folder.

    Attributes:
        stage: one of :data:`STAGES`.
        kind: ``expert``, ``distill``, ``transfer``, ``vision`` or ``report``.
        name: unique, path-like (``transfer/MinAtar-Seaquest-v1/student__s0``).
        params: plain data (env id, method, seed …).
    """

    stage: str
    kind: str
    name: str
    params: dict[str, Any]

    def folder(self, root: Path) -> Path:
        """The job's run folder in the experiment folder ``root``."""
        return root / self.name

    def done(self, root: Path) -> bool:
        """Whether the job's run folder is finished."""
        if self.kind == "report":
            return report_is_current(root)
        return (self.folder(root) / "metrics.json").is_file()


def plan(cfg: ExperimentConfig) -> dict[str, list[Job]]:
    """The jobs of every stage, in order.

    Returns:
        Every stage of :data:`STAGES` → its jobs (experts per source game; one student; transfer
        per target × seed × method; one vision table; one report).
    """
    out: dict[str, list[Job]] = {s: [] for s in STAGES}
    for game in cfg.sources:
        out["experts"].append(Job("experts", "expert", expert_dir(Path(), game).as_posix(), {"env_id": game}))
    if cfg.distill.enabled:
        out["distill"].append(Job("distill", "distill", "distill", {}))
    for target in cfg.targets:
        for seed in cfg.seeds:
            for method in cfg.transfer.methods:
                name = transfer_dir(Path(), target, method, seed).as_posix()
                out["transfer"].append(Job("transfer", "transfer", name,
                                           {"env_id": target, "method": method, "seed": seed}))
    if cfg.vision.enabled:
        out["vision"].append(Job("vision", "vision", "vision", {}))
    out["report"].append(Job("report", "report", "report", {}))
    return out


def expert_dir(root: Path, game: str) -> Path:
    """The folder of the expert on ``game`` (``experts/<env>/``)."""
    return root / "experts" / slug(game)


def transfer_dir(root: Path, env_id: str, method: str, seed: int) -> Path:
    """The run folder of one transfer job (``transfer/<env>/<method>__s<seed>/``)."""
    return root / "transfer" / slug(env_id) / f"{method}__s{seed}"


def _copy_file(src: Path, dst: Path) -> None:
    atomic_write_bytes(dst, src.read_bytes())


def vision_trunks(root: Path, cfg: ExperimentConfig) -> list[str]:
    """The trunk references of the vision stage: built-in ones, then this run's (copied under
    ``vision_trunks/`` with readable names, which label the table's rows)."""
    refs = list(cfg.vision.trunks)
    produced = {
        "expert": (expert_dir(root, cfg.sources[0]) / "trunk.safetensors",
                   f"expert-{cfg.sources[0].split('/')[-1].split('-')[0]}"),
        "student": (root / "distill" / "trunk.safetensors", "student"),
        "progressive": (transfer_dir(root, cfg.targets[0], "progressive", cfg.seeds[0]) / "trunk.safetensors",
                        f"progressive-column-{cfg.targets[0].split('/')[-1].split('-')[0]}"),
    }
    for key in cfg.vision.include:
        src, label = produced[key]
        if key == "student" and not cfg.distill.enabled:
            continue
        if key == "progressive" and "progressive" not in cfg.transfer.methods:
            continue
        dst = root / "vision_trunks" / f"{label}.safetensors"
        if not dst.is_file():
            if not src.is_file():
                raise UserError(f"the vision stage needs {src}; run the earlier stages first")
            _copy_file(src, dst)
        refs.append(str(dst))
    return refs


def job_settings(cfg: ExperimentConfig, job: Job) -> dict[str, Any]:
    """Every setting a job's result depends on, its inputs' included ("resume only with the same
    settings" compares these, job by job).

    The list of seeds, targets and methods is not among them: adding a seed, a target or a method
    adds jobs and changes none of the finished ones. The report job has none: it is rebuilt
    whenever its inputs (``config.yaml`` among them) change.
    """
    d = to_dict(cfg)
    if job.kind == "expert":
        game = job.params["env_id"]
        experts = {**d["experts"], "runs": {game: d["experts"]["runs"].get(game)}}
        return {"algo": cfg.algo, "env_id": game, "experts": experts}
    if job.kind == "distill":
        return {"algo": cfg.algo, "sources": cfg.sources, "experts": d["experts"], "distill": d["distill"]}
    if job.kind == "transfer":
        method = job.params["method"]
        transfer = {k: v for k, v in d["transfer"].items()
                    if k not in ("methods", "finetune_from", "progressive_from", "adapter")}
        out: dict[str, Any] = {"algo": cfg.algo, **job.params, "transfer": transfer}
        if method == FINETUNE:
            out["from"] = job_settings(cfg, Job("experts", "expert", "", {"env_id": cfg.finetune_from}))
        elif method == STUDENT:
            out["from"] = job_settings(cfg, Job("distill", "distill", "distill", {}))
        elif method in (PROGRESSIVE, RANDOM_COLUMN):
            out["adapter"] = d["transfer"]["adapter"]
            out["from"] = job_settings(cfg, Job("experts", "expert", "", {"env_id": cfg.progressive_from}))
        return out
    if job.kind == "vision":
        inputs = {"expert": job_settings(cfg, Job("experts", "expert", "", {"env_id": cfg.sources[0]}))}
        if "student" in cfg.vision.include and cfg.distill.enabled:
            inputs["student"] = job_settings(cfg, Job("distill", "distill", "distill", {}))
        if "progressive" in cfg.vision.include and "progressive" in cfg.transfer.methods:
            inputs["progressive"] = job_settings(cfg, Job("transfer", "transfer", "", {
                "env_id": cfg.targets[0], "method": "progressive", "seed": cfg.seeds[0]}))
        return {"vision": d["vision"], "seed": cfg.seeds[0], "inputs": inputs}
    return {}


def default_root(cfg: ExperimentConfig) -> Path:
    """``runs/<name>``."""
    return runs_dir() / slug(cfg.name)


def report_inputs(root: Path) -> list[list[Any]]:
    """Every result file the report reads, with its size and modification time.

    Returns:
        ``[relative path, size in bytes, modification time in ns]`` per file, in a fixed order.
    """
    out = []
    for pattern in ("experts/*/metrics.json", "distill/metrics.json", "transfer/*/*/metrics.json",
                    "transfer/*/*/evaluations.json", "vision/metrics.json", "config.yaml"):
        for p in sorted(root.glob(pattern)):
            st = p.stat()
            out.append([str(p.relative_to(root)), st.st_size, st.st_mtime_ns])
    return out


def report_is_current(root: Path) -> bool:
    """Whether ``summary.json`` was built from the result files as they are now."""
    path = root / "summary.json"
    if not (path.is_file() and (root / "report.md").is_file()):
        return False
    try:
        return bool(read_json(path, "summary")["inputs"] == report_inputs(root))
    except (KeyError, UserError):
        return False


__all__ = ["STAGE_OUTPUTS", "Job", "default_root", "expert_dir", "job_settings", "plan", "report_inputs",
           "report_is_current", "transfer_dir", "vision_trunks"]
