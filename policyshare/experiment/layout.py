"""The experiment folder's layout and its jobs: what runs where, and what a finished job depends on.

Every stage of the experiment (:data:`~policyshare.experiment.config.STAGES`) is a list of
independent :class:`Job` s (:func:`plan`), one run folder each, built from the design
(:mod:`policyshare.experiment.design`). Layout of the experiment folder (``runs/<name>`` by
default, :func:`default_root`)::

    config.yaml, meta.json                          the resolved config; every invocation
    experts/<env>/<alignment>__s<seed>/             model.zip, trunk.safetensors, metrics.json
    distill/<games>/<alignment>__s<seed>/           a student's run folder (student.safetensors …);
                                                    <games>: its teachers' games
    multitask/<games>/<alignment>__s<seed>/         a multi-task PPO run folder (trunk.safetensors …)
    transfer/<env>/<arm>__s<seed>/                  train run folders, TensorBoard under tb/
                                                    (transfer_dir); <arm>: method[__source][__alignment]
    vision_trunks/, vision/                         this run's trunks for the vision stage; its run folder
    capacity/<variant>/<env or games>__s<seed>/     data per parameter (capacity.py): single, multitask,
                                                    shared_total, shared_one
    report.md, summary.json, plots/                 the report (rebuilt by ``policyshare report``)

:func:`job_settings` lists the settings a finished job depends on ("resume only with the same
settings" compares them); :func:`report_inputs` the result files the report is built from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policyshare.config import to_dict
from policyshare.errors import UserError
from policyshare.experiment.capacity_plan import capacity_jobs, capacity_settings
from policyshare.experiment.config import STAGES, ExperimentConfig
from policyshare.experiment.design import (
    Arm,
    Upstream,
    arms,
    short,
    student,
    teachers,
    upstream_for,
    upstream_seeds,
    upstreams,
    vision_expert,
    vision_progressive,
    vision_student,
)
from policyshare.io import atomic_write_bytes, read_json
from policyshare.methods import PROGRESSIVE, RANDOM_COLUMN
from policyshare.runs import runs_dir, slug

#: The files and folders each stage writes at the experiment folder's root (moved aside by
#: ``--force STAGE``).
STAGE_OUTPUTS: dict[str, tuple[str, ...]] = {
    "experts": ("experts",), "distill": ("distill",), "multitask": ("multitask",), "transfer": ("transfer",),
    "vision": ("vision", "vision_trunks"), "capacity": ("capacity/single", "capacity/multitask"),
    "capacity_shared": ("capacity/shared_total", "capacity/shared_one"),
    "report": ("report.md", "summary.json", "plots")}


@dataclass(frozen=True)
class Job:
    """One independent unit of work: it writes one run folder.

    Attributes:
        stage: one of :data:`STAGES`.
        kind: ``expert``, ``distill``, ``multitask``, ``transfer``, ``vision`` or ``report``.
        name: unique, path-like (``transfer/MinAtar-Seaquest-v1/student__pad__s0``).
        params: plain data: an upstream job's :meth:`Upstream.describe`; a transfer job's env id,
            method, seed, alignment, source and ``upstream`` (the artifact it starts from, or
            ``None``).
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
        Every stage of :data:`STAGES` → its jobs: experts per game, seed and alignment (shared by
        every target); students and multi-task networks per set of source games, seed and
        alignment; transfer per target × target seed × arm; one vision table; one report.
    """
    out: dict[str, list[Job]] = {s: [] for s in STAGES}
    for kind, ups in upstreams(cfg).items():
        stage = {"expert": "experts"}.get(kind, kind)
        out[stage] += [Job(stage, kind, up.name, up.describe()) for up in ups]
    for target in cfg.target_games:
        for seed in cfg.seeds:
            for arm in arms(cfg, target):
                up = upstream_for(cfg, target, arm, seed)
                name = transfer_dir(Path(), target, arm.label, seed).as_posix()
                out["transfer"].append(Job("transfer", "transfer", name, {
                    "env_id": target, "method": arm.method, "seed": seed, "alignment": arm.alignment,
                    "source": arm.source, "upstream": up.describe() if up is not None else None}))
    if cfg.vision.enabled:
        out["vision"].append(Job("vision", "vision", "vision", {}))
    for stage, specs in capacity_jobs(cfg).items():
        out[stage] = [Job(*spec) for spec in specs]
    out["report"].append(Job("report", "report", "report", {}))
    return out


def upstream_of(params: dict[str, Any]) -> Upstream:
    """The :class:`Upstream` an upstream job's (or a transfer job's ``upstream``) params describe."""
    return Upstream(params["kind"], tuple(params["games"]), params["alignment"], int(params["seed"]),
                    int(params["index"]), params.get("teacher_seed"))


def upstream_dir(root: Path, up: Upstream) -> Path:
    """The run folder of an upstream artifact (``experts/…``, ``distill/…``, ``multitask/…``)."""
    return root / up.name


def transfer_dir(root: Path, env_id: str, arm: str, seed: int) -> Path:
    """The run folder of one transfer job (``transfer/<env>/<arm>__s<seed>/``; ``arm`` is an
    :attr:`~policyshare.experiment.design.Arm.label`)."""
    return root / "transfer" / slug(env_id) / f"{arm}__s{seed}"


def _copy_file(src: Path, dst: Path) -> None:
    atomic_write_bytes(dst, src.read_bytes())


def vision_trunks(root: Path, cfg: ExperimentConfig) -> list[str]:
    """The trunk references of the vision stage: built-in ones, then this run's (copied under
    ``vision_trunks/`` with readable names, which label the table's rows).

    Raises:
        UserError: a trunk of an earlier stage is missing.
    """
    refs = list(cfg.vision.trunks)
    produced: dict[str, tuple[Path, str]] = {}
    ex = vision_expert(cfg)
    produced["expert"] = (upstream_dir(root, ex) / "trunk.safetensors", f"expert-{short(ex.games[0]).split('-')[0]}")
    if cfg.distill.enabled:
        produced["student"] = (upstream_dir(root, vision_student(cfg)) / "trunk.safetensors", "student")
    prog = vision_progressive(cfg)
    if prog is not None:
        target, arm, seed = prog
        produced["progressive"] = (transfer_dir(root, target, arm.label, seed) / "trunk.safetensors",
                                   f"progressive-column-{short(target).split('-')[0]}")
    for key in cfg.vision.include:
        if key not in produced:
            continue
        src, label = produced[key]
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

    The lists of seeds, targets, methods and alignments are not among them: adding one adds jobs
    and changes none of the finished ones. The report job has none: it is rebuilt whenever its
    inputs (``config.yaml`` among them) change.
    """
    if job.kind in ("expert", "distill", "multitask"):
        return upstream_settings(cfg, upstream_of(job.params))
    if job.kind.startswith("capacity_"):
        return capacity_settings(cfg, job.kind, job.params)
    if job.kind == "transfer":
        d = to_dict(cfg)
        p = job.params
        transfer = {k: d["transfer"][k] for k in ("timesteps", "config", "set")}
        out: dict[str, Any] = {"algo": cfg.algo, **{k: v for k, v in p.items() if k != "upstream"},
                               "transfer": transfer}
        if p["method"] in (PROGRESSIVE, RANDOM_COLUMN):
            out["adapter"] = d["transfer"]["adapter"]
        up = _planned_upstream(cfg, p)
        if up is not None:
            out["from"] = upstream_settings(cfg, up)
        return out
    if job.kind == "vision":
        d = to_dict(cfg)
        inputs: dict[str, Any] = {}
        if "expert" in cfg.vision.include:
            inputs["expert"] = upstream_settings(cfg, vision_expert(cfg))
        if "student" in cfg.vision.include and cfg.distill.enabled:
            inputs["student"] = upstream_settings(cfg, vision_student(cfg))
        prog = vision_progressive(cfg)
        if "progressive" in cfg.vision.include and prog is not None:
            target, arm, seed = prog
            name = transfer_dir(Path(), target, arm.label, seed).as_posix()
            up = upstream_for(cfg, target, arm, seed)
            inputs["progressive"] = job_settings(cfg, Job("transfer", "transfer", name, {
                "env_id": target, "method": arm.method, "seed": seed, "alignment": arm.alignment,
                "source": arm.source, "upstream": up.describe() if up is not None else None}))
        return {"vision": d["vision"], "seed": cfg.seeds[0], "inputs": inputs}
    return {}


def _planned_upstream(cfg: ExperimentConfig, params: dict[str, Any]) -> Upstream | None:
    """The artifact ``cfg`` has a transfer job start from (a finished run checked against an older
    config must be compared with what *that* config paired it with: the pairing of seeds may have
    changed); the job's own record where ``cfg`` does not have its target seed."""
    if params["seed"] not in cfg.seeds or params["env_id"] not in cfg.target_games:
        return upstream_of(params["upstream"]) if params.get("upstream") else None
    arm = Arm(params["method"], params.get("alignment"), params.get("source"))
    return upstream_for(cfg, params["env_id"], arm, params["seed"])


def _as_planned(cfg: ExperimentConfig, up: Upstream) -> Upstream:
    """``up`` as ``cfg`` plans it: its seed's number and, for a student, its teachers' seed."""
    seeds = upstream_seeds(cfg, up.kind)
    if up.seed not in seeds:
        return up
    i = seeds.index(up.seed)
    if up.kind == "distill":
        return student(cfg, list(up.games), up.alignment, i)
    return Upstream(up.kind, up.games, up.alignment, up.seed, i)


def upstream_settings(cfg: ExperimentConfig, up: Upstream) -> dict[str, Any]:
    """The settings an upstream artifact depends on (its teachers' too, for a student), as ``cfg``
    plans it."""
    up = _as_planned(cfg, up)
    d = to_dict(cfg)
    base = {"algo": cfg.algo, "games": list(up.games), "seed": up.seed, "alignment": up.alignment}
    if up.kind == "expert":
        experts = {k: d["experts"][k] for k in ("source", "timesteps", "config", "set")}
        if cfg.experts.source == "runs":
            entry = cfg.experts.runs.get(up.games[0])
            experts["run"] = entry if isinstance(entry, str) or entry is None else entry[up.index]
        return {**base, "experts": experts}
    if up.kind == "distill":
        distill = {k: d["distill"][k] for k in ("config", "steps", "set")}
        return {**base, "teachers": [upstream_settings(cfg, t) for t in teachers(cfg, up)], "distill": distill}
    multitask = {k: d["multitask"][k] for k in ("config", "timesteps", "set")}
    out = {**base, "multitask": multitask}
    if cfg.multitask.timesteps is None:  # its budget is the experts' together
        out["experts"] = {k: d["experts"][k] for k in ("source", "timesteps", "config", "set")}
    return out


def default_root(cfg: ExperimentConfig) -> Path:
    """``runs/<name>``."""
    return runs_dir() / slug(cfg.name)


#: The result files the report reads (relative to the experiment folder).
REPORT_INPUTS: tuple[str, ...] = (
    "experts/*/*/metrics.json", "distill/*/*/metrics.json", "multitask/*/*/metrics.json",
    "transfer/*/*/metrics.json", "transfer/*/*/evaluations.json", "transfer/*/*/config.yaml", "vision/metrics.json",
    "capacity/*/*/metrics.json", "config.yaml")


def report_inputs(root: Path) -> list[list[Any]]:
    """Every result file the report reads, with its size and modification time.

    Returns:
        ``[relative path, size in bytes, modification time in ns]`` per file, in a fixed order.
    """
    out = []
    for pattern in REPORT_INPUTS:
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


__all__ = ["REPORT_INPUTS", "STAGE_OUTPUTS", "Job", "default_root", "job_settings", "plan", "report_inputs",
           "report_is_current", "transfer_dir", "upstream_dir", "upstream_of", "upstream_settings", "vision_trunks"]
