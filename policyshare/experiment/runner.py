"""The end-to-end sharing experiment: ``policyshare run CONFIG`` (and ``policyshare sweep``).

One config (``configs/quickstart.yaml``, ``configs/sharing.yaml``, ``configs/sharing_atari.yaml``)
names a suite's **source** games and held-out **target** games, the seeds, and the budget of each
stage. The stages run in order:

1. ``experts`` — a single-task expert per source game: copied from the zoo
   (:mod:`policyshare.zoo`), from earlier ``policyshare train`` runs, or trained here;
2. ``distill`` — one Actor-Mimic student distilled from the source experts
   (:func:`policyshare.distill.distill`);
3. ``transfer`` — on every target game and seed, with the same config and evaluation steps:
   ``scratch`` (from scratch), ``finetune`` (an expert's trunk, fine-tuned), ``student`` (the
   student's trunk, fine-tuned), ``progressive`` (a progressive network whose frozen first
   column is an expert, Rusu et al. 2016) and ``random_column`` (the same with a random frozen
   column: extra capacity without transfer, the paper's baseline 4);
4. ``vision`` — the vision thesis table (:func:`policyshare.vision.compare.compare`) over a
   random trunk, trunks trained on digits by classification and by a denoising autoencoder,
   and the trunks this run produced (an expert's, the student's, the progressive column's);
5. ``report`` — ``report.md``, ``summary.json`` and plots (:mod:`policyshare.report`).

Every stage is a list of independent **jobs** (one run folder each). A job whose run folder is
finished is not redone; an unfinished one resumes from its last checkpoint (the vision job,
which has no checkpoints, restarts and moves its unfinished folder aside). So the command can be
killed and started again, and a second run of a finished experiment only checks the folders.
``policyshare sweep`` runs each stage's jobs as Ray Tune trials (:mod:`policyshare.sweep`).

Layout of the experiment folder (``runs/<name>`` by default)::

    config.yaml, meta.json                   the resolved config; every invocation
    experts/<env>/                           model.zip, trunk.safetensors, metrics.json
    distill/                                 the student's run folder (student.safetensors …)
    transfer/<env>/<method>__s<seed>/        train run folders (TensorBoard under tb/)
    vision/                                  the vision comparison's run folder
    report.md, summary.json, plots/          the report (rebuilt by ``policyshare report``)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from policyshare.checkpoints import atomic_write_bytes, atomic_write_json, read_json
from policyshare.config import check_positive, check_seeds, deep_merge, from_dict, read_yaml, to_dict
from policyshare.errors import ConfigError, Interrupted, UserError
from policyshare.runs import RunFolder, move_aside, runs_dir, slug

#: The stages, in order.
STAGES: tuple[str, ...] = ("experts", "distill", "transfer", "vision", "report")
#: Transfer methods on a target game; ``scratch`` is the reference of transfer %.
METHODS: tuple[str, ...] = ("scratch", "finetune", "student", "progressive", "random_column")


# --------------------------------------------------------------------------------------------
# Configuration


@dataclass
class ExpertsStage:
    """Where the source experts come from.

    Attributes:
        source: ``zoo`` (the shipped experts), ``train`` (trained here with
            ``policyshare train``) or ``runs`` (finished train run folders listed in ``runs``).
        runs: env id → a finished ``policyshare train`` run folder (``source: runs``).
        timesteps: env steps per expert when trained here.
        seed: seed of the experts trained here.
        config: training config (default ``configs/<algo>.yaml``).
        set: overrides of the training config (same keys as an entry of it).
    """

    source: Literal["zoo", "train", "runs"] = "zoo"
    runs: dict[str, str] = field(default_factory=dict)
    timesteps: int | None = None
    seed: int = 0
    config: str | None = None
    set: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.timesteps is not None:
            check_positive("", timesteps=self.timesteps)


@dataclass
class DistillStage:
    """The Actor-Mimic student (see ``configs/actor_mimic.yaml``).

    Attributes:
        enabled: distil a student (the ``student`` transfer method needs it).
        config: distillation config (default ``configs/actor_mimic.yaml``).
        steps: env steps per task (overrides the config).
        seed: the student's seed.
        set: overrides of the distillation config.
    """

    enabled: bool = True
    config: str | None = None
    steps: int | None = None
    seed: int = 0
    set: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.steps is not None:
            check_positive("", steps=self.steps)


@dataclass
class TransferStage:
    """Training on the held-out target games.

    Attributes:
        methods: which of ``scratch``, ``finetune``, ``student``, ``progressive``,
            ``random_column`` to run (``scratch`` is always run: it is the reference).
        timesteps: env steps per run.
        finetune_from: source game whose expert's trunk ``finetune`` starts from (default: the
            first source).
        progressive_from: source game whose expert is ``progressive``'s frozen column
            (default: the first source).
        config: training config (default ``configs/<algo>.yaml``).
        set: overrides of the training config for every run (e.g. ``eval: {freq: 10000}``).
        adapter: lateral adapters of the progressive columns (``policyshare.progressive.AdapterConfig``).
    """

    methods: list[str] = field(default_factory=lambda: list(METHODS))
    timesteps: int = 500_000
    finetune_from: str | None = None
    progressive_from: str | None = None
    config: str | None = None
    set: dict[str, Any] = field(default_factory=dict)
    adapter: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_positive("", timesteps=self.timesteps)
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ConfigError(f"methods: unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
        if "scratch" not in self.methods:
            self.methods.insert(0, "scratch")


@dataclass
class VisionStage:
    """The vision thesis table over the trunks (``configs/vision.yaml``).

    Attributes:
        enabled: run it.
        config: vision config (default ``configs/vision.yaml``).
        set: overrides of the vision config.
        trunks: trunks built there: ``random``, ``classify``, ``autoencoder``.
        include: trunks of this run to add: ``expert`` (the first source's), ``student``,
            ``progressive`` (the column trained on the first target, first seed).
    """

    enabled: bool = True
    config: str | None = None
    set: dict[str, Any] = field(default_factory=dict)
    trunks: list[str] = field(default_factory=lambda: ["random", "classify", "autoencoder"])
    include: list[Literal["expert", "student", "progressive"]] = field(
        default_factory=lambda: ["expert", "student", "progressive"])


@dataclass
class ReportStage:
    """Report settings.

    Attributes:
        bootstrap_reps: stratified bootstrap replications of the intervals.
        confidence: interval size.
    """

    bootstrap_reps: int = 2000
    confidence: float = 0.95

    def __post_init__(self) -> None:
        check_positive("", bootstrap_reps=self.bootstrap_reps)
        if not 0 < self.confidence < 1:
            raise ConfigError(f"confidence must lie in (0, 1), got {self.confidence}")


@dataclass
class ExperimentConfig:
    """An experiment (``configs/sharing.yaml``).

    Attributes:
        name: the experiment's name (default folder ``runs/<name>``).
        description: one line for the report.
        algo: ``ppo`` or ``a2c`` (progressive columns are actor-critic).
        sources: source games (experts, distillation teachers).
        targets: held-out target games.
        seeds: seeds of the transfer runs.
    """

    name: str
    sources: list[str]
    targets: list[str]
    description: str = ""
    algo: Literal["ppo", "a2c"] = "ppo"
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    experts: ExpertsStage = field(default_factory=ExpertsStage)
    distill: DistillStage = field(default_factory=DistillStage)
    transfer: TransferStage = field(default_factory=TransferStage)
    vision: VisionStage = field(default_factory=VisionStage)
    report: ReportStage = field(default_factory=ReportStage)

    def __post_init__(self) -> None:
        if not self.sources:
            raise ConfigError("sources: list at least one source game")
        if not self.targets:
            raise ConfigError("targets: list at least one held-out target game")
        both = sorted(set(self.sources) & set(self.targets))
        if both:
            raise ConfigError(f"{both[0]} is both a source and a target; a target must be held out")
        if not self.seeds or any(s < 0 for s in self.seeds):
            raise ConfigError("seeds: list at least one seed >= 0")
        check_seeds(self.seeds)
        if len(self.sources) < 2 and self.distill.enabled:
            raise ConfigError("distillation needs at least two source games (or set distill.enabled: false)")
        if not self.distill.enabled and "student" in self.transfer.methods:
            raise ConfigError("transfer method 'student' needs the distill stage (distill.enabled: true)")
        for name in ("finetune_from", "progressive_from"):
            game = getattr(self.transfer, name)
            if game is not None and game not in self.sources:
                raise ConfigError(f"transfer.{name}: {game} is not a source game")
        missing = [g for g in self.sources if self.experts.source == "runs" and g not in self.experts.runs]
        if missing:
            raise ConfigError(f"experts.runs has no run folder for {missing[0]}")

    @property
    def finetune_from(self) -> str:
        return self.transfer.finetune_from or self.sources[0]

    @property
    def progressive_from(self) -> str:
        return self.transfer.progressive_from or self.sources[0]


def load_experiment_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """Read an experiment config strictly (unknown keys, wrong types and bad values are errors).

    Env ids are checked against the suites.

    Raises:
        ConfigError: bad file, key, type or value; UserError: an unknown env id.
    """
    from policyshare.envs import check_env_id

    raw = read_yaml(path)
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: expected a mapping of settings (name, sources, targets, …)")
    raw = deep_merge(raw, overrides or {})
    cfg = from_dict(ExperimentConfig, raw, str(path))
    suites = {check_env_id(g).name for g in cfg.sources + cfg.targets}
    if len(suites) > 1:
        raise ConfigError(f"{path}: sources and targets mix suites ({', '.join(sorted(suites))})")
    check_stage_configs(cfg)
    return cfg


def check_stage_configs(cfg: ExperimentConfig) -> None:
    """Validate every stage's own config and overrides now, before any stage runs.

    Raises:
        ConfigError: a bad key, type or value in a stage's config or ``set``.
    """
    from policyshare.train import load_train_config

    if cfg.experts.source == "train":
        for game in cfg.sources:
            load_train_config(game, cfg.algo, cfg.experts.config, cfg.experts.set)
    if cfg.distill.enabled:
        from policyshare.distill import load_distill_config

        steps = {} if cfg.distill.steps is None else {"steps": cfg.distill.steps}
        load_distill_config(cfg.distill.config, {**cfg.distill.set, **steps})
    for target in cfg.targets:
        t_cfg, _ = load_train_config(target, cfg.algo, cfg.transfer.config, cfg.transfer.set)
        if not 0 < 2 * t_cfg.eval.freq <= cfg.transfer.timesteps:
            raise ConfigError(f"transfer is measured on learning curves: set transfer.set.eval.freq (now "
                              f"{t_cfg.eval.freq}) to at most half of transfer.timesteps ({cfg.transfer.timesteps})")
    if {"progressive", "random_column"} & set(cfg.transfer.methods):
        from policyshare.progressive import AdapterConfig

        from_dict(AdapterConfig, cfg.transfer.adapter, "transfer.adapter")
    if cfg.vision.enabled:
        from policyshare.vision.config import load_vision_config

        load_vision_config(cfg.vision.config, cfg.vision.set)


# --------------------------------------------------------------------------------------------
# Jobs


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
        return root / self.name

    def done(self, root: Path) -> bool:
        """Whether the job's run folder is finished."""
        if self.kind == "report":
            from policyshare.experiment.report import report_is_current

            return report_is_current(root)
        return (self.folder(root) / "metrics.json").is_file()


def plan(cfg: ExperimentConfig) -> dict[str, list[Job]]:
    """The jobs of every stage, in order."""
    out: dict[str, list[Job]] = {s: [] for s in STAGES}
    for game in cfg.sources:
        out["experts"].append(Job("experts", "expert", f"experts/{slug(game)}", {"env_id": game}))
    if cfg.distill.enabled:
        out["distill"].append(Job("distill", "distill", "distill", {}))
    for target in cfg.targets:
        for seed in cfg.seeds:
            for method in cfg.transfer.methods:
                out["transfer"].append(Job("transfer", "transfer", f"transfer/{slug(target)}/{method}__s{seed}",
                                           {"env_id": target, "method": method, "seed": seed}))
    if cfg.vision.enabled:
        out["vision"].append(Job("vision", "vision", "vision", {}))
    out["report"].append(Job("report", "report", "report", {}))
    return out


def expert_dir(root: Path, game: str) -> Path:
    return root / "experts" / slug(game)


def _copy_file(src: Path, dst: Path) -> None:
    atomic_write_bytes(dst, src.read_bytes())


def _materialise_expert(root: Path, game: str, model_zip: Path, provenance: Mapping[str, Any]) -> None:
    """Copy an expert (zoo or earlier run) into ``experts/<env>/`` with its trunk and metrics."""
    from policyshare.algos import features_extractors
    from policyshare.checkpoints import load_sb3, save_trunk

    folder = expert_dir(root, game)
    folder.mkdir(parents=True, exist_ok=True)
    _copy_file(model_zip, folder / "model.zip")
    model, header = load_sb3(folder / "model.zip")
    extractor: Any = features_extractors(model)[0]  # PPO/A2C and DQN experts alike
    save_trunk(extractor.trunk, folder / "trunk.safetensors", alignment=extractor.alignment.describe(),
               observation_shape=tuple(model.observation_space.shape),
               source={"run": str(folder), "env_id": game, "algo": header.get("algo"),
                       "copied_from": str(model_zip)})
    atomic_write_json(folder / "provenance.json", dict(provenance))
    ev = provenance.get("evaluation", {})
    atomic_write_json(folder / "metrics.json", {
        "env_id": game, "algo": provenance.get("algo"), "seed": provenance.get("seed"),
        "timesteps": provenance.get("timesteps"), "eval_episodes": ev.get("episodes"),
        "eval_mean_return": ev.get("mean"), "eval_std_return": ev.get("std"),
        "eval_returns": ev.get("returns"), "random_mean_return": provenance.get("random_mean_return"),
        "n_parameters": sum(p.numel() for p in model.policy.parameters()),
        "trunk_parameters": extractor.trunk.n_parameters(), "copied_from": str(model_zip)})


def _expert_job(root: Path, cfg: ExperimentConfig, job: Job) -> None:
    game = job.params["env_id"]
    folder = job.folder(root)
    if cfg.experts.source == "zoo":
        from policyshare import zoo

        path = zoo.expert_path(game)
        _materialise_expert(root, game, path, read_json(path.with_suffix(".json"), "zoo provenance"))
    elif cfg.experts.source == "runs":
        run = Path(cfg.experts.runs[game])
        metrics = read_json(run / "metrics.json", f"metrics of expert run {run}")
        if metrics.get("env_id") != game:
            raise UserError(f"experts.runs[{game}] = {run} was trained on {metrics.get('env_id')}")
        _materialise_expert(root, game, run / "model.zip", {
            "env_id": game, "algo": metrics["algo"], "seed": metrics["seed"], "timesteps": metrics["timesteps"],
            "evaluation": {"mean": metrics["eval_mean_return"], "std": metrics["eval_std_return"],
                           "episodes": metrics["eval_episodes"], "returns": metrics["eval_returns"]},
            "random_mean_return": metrics["random_mean_return"], "source_run": str(run)})
    else:
        from policyshare.train import train

        e = cfg.experts
        train(game, cfg.algo, config=e.config, timesteps=e.timesteps, seed=e.seed, run_dir=folder,
              overrides=e.set, resume=(folder / "meta.json").is_file(), run_name="expert", quiet=True)


def _distill_job(root: Path, cfg: ExperimentConfig, job: Job) -> None:
    from policyshare.distill import distill

    folder = job.folder(root)
    teachers = [f"{g}={expert_dir(root, g) / 'model.zip'}" for g in cfg.sources]
    d = cfg.distill
    distill(teachers, config=d.config, steps=d.steps, seed=d.seed, run_dir=folder, overrides=d.set,
            resume=(folder / "meta.json").is_file(), quiet=True)


def _transfer_job(root: Path, cfg: ExperimentConfig, job: Job) -> None:
    from policyshare.train import train

    env_id, method, seed = job.params["env_id"], job.params["method"], int(job.params["seed"])
    folder = job.folder(root)
    kwargs: dict[str, Any] = {}
    if method == "finetune":
        kwargs["init_trunk"] = expert_dir(root, cfg.finetune_from) / "trunk.safetensors"
    elif method == "student":
        kwargs["init_trunk"] = root / "distill" / "trunk.safetensors"
    elif method in ("progressive", "random_column"):
        kwargs.update(_progressive_kwargs(root, cfg, method))
    t = cfg.transfer
    train(env_id, cfg.algo, config=t.config, timesteps=t.timesteps, seed=seed, run_dir=folder,
          overrides=t.set, resume=(folder / "meta.json").is_file(), run_name=method, quiet=True, **kwargs)


def _progressive_kwargs(root: Path, cfg: ExperimentConfig, method: str) -> dict[str, Any]:
    """``train`` arguments of a two-column progressive network (expert or random first column)."""
    from policyshare.checkpoints import load_tensors
    from policyshare.progressive import (
        AdapterConfig,
        LateralScalarLogger,
        column_model_factory,
        network_from_checkpoint,
    )
    from policyshare.trunks import TrunkSpec

    source = cfg.progressive_from
    folder = expert_dir(root, source)
    _, header = load_tensors(folder / "trunk.safetensors", "policyshare.trunk")
    spec = TrunkSpec.from_dict(header["spec"])
    trunk = {"name": spec.name, "activation": spec.activation, "theta": spec.theta}
    adapter = from_dict(AdapterConfig, cfg.transfer.adapter, "transfer.adapter")
    network = (network_from_checkpoint(folder / "model.zip", source, spec, adapter, cfg.algo)
               if method == "progressive" else None)
    describe = {"progressive": {"column": 2, "adapter": to_dict(adapter),
                                "frozen_column": source if network is not None else "random"}}
    return {"model_factory": column_model_factory(cfg.algo, 2, trunk, adapter, network),
            "extra_callbacks": [LateralScalarLogger()], "extra_config": describe}


def vision_trunks(root: Path, cfg: ExperimentConfig) -> list[str]:
    """The trunk references of the vision stage: built-in ones, then this run's (copied under
    ``vision_trunks/`` with readable names, which label the table's rows)."""
    refs = list(cfg.vision.trunks)
    produced = {
        "expert": (expert_dir(root, cfg.sources[0]) / "trunk.safetensors",
                   f"expert-{cfg.sources[0].split('/')[-1].split('-')[0]}"),
        "student": (root / "distill" / "trunk.safetensors", "student"),
        "progressive": (root / "transfer" / slug(cfg.targets[0]) / f"progressive__s{cfg.seeds[0]}"
                        / "trunk.safetensors",
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


def _vision_job(root: Path, cfg: ExperimentConfig, job: Job) -> None:
    from policyshare.vision.compare import compare
    from policyshare.vision.config import load_vision_config

    # An unfinished folder (no checkpoints) is moved aside to root/.replaced/ by compare itself.
    vcfg = load_vision_config(cfg.vision.config, cfg.vision.set)
    compare(vision_trunks(root, cfg), vcfg, run_dir=job.folder(root), seed=cfg.seeds[0])


def _report_job(root: Path, cfg: ExperimentConfig, job: Job) -> None:
    from policyshare.experiment.report import build_report

    build_report(root)


RUNNERS: dict[str, Callable[[Path, ExperimentConfig, Job], None]] = {
    "expert": _expert_job, "distill": _distill_job, "transfer": _transfer_job, "vision": _vision_job,
    "report": _report_job,
}


def run_job(root: str | Path, job: Job | Mapping[str, Any]) -> str:
    """Run one job of the experiment in ``root`` (reading its ``config.yaml``); skip it if done.

    This is the unit ``policyshare sweep`` hands to Ray Tune, so it takes plain data.

    Returns:
        ``"done"`` (it was finished before) or ``"ran"``.
    """
    root = Path(root)
    j = job if isinstance(job, Job) else Job(**dict(job))
    cfg = from_dict(ExperimentConfig, read_yaml(root / "config.yaml"), str(root / "config.yaml"))
    if j.done(root):
        return "done"
    RUNNERS[j.kind](root, cfg, j)
    _release(j.folder(root))
    return "ran"


def _release(folder: Path) -> None:
    """Let other processes resume this folder (``train`` and ``distill`` lock run folders)."""
    RunFolder(folder).release()


# --------------------------------------------------------------------------------------------
# The command


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
        if method == "finetune":
            out["from"] = job_settings(cfg, Job("experts", "expert", "", {"env_id": cfg.finetune_from}))
        elif method == "student":
            out["from"] = job_settings(cfg, Job("distill", "distill", "distill", {}))
        elif method in ("progressive", "random_column"):
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


def open_experiment(config: str | Path, run_dir: str | Path | None,
                    overrides: Mapping[str, Any] | None = None,
                    force: Sequence[str] = ()) -> tuple[ExperimentConfig, Path]:
    """Validate the config and open (or reopen) the experiment folder.

    A reopened experiment may change any setting that no finished job depends on
    (:func:`job_settings`), and any setting at all of the stages ``force`` redoes; the stored
    ``config.yaml`` is then updated. So more seeds, targets or methods only add their own jobs.

    Raises:
        UserError: a changed setting that a finished job depends on (naming the job and the
            ``--force STAGE`` that redoes it).
    """
    cfg = load_experiment_config(config, overrides)
    root = Path(run_dir) if run_dir is not None else runs_dir() / slug(cfg.name)
    resolved = to_dict(cfg)
    now = yaml.safe_load(yaml.safe_dump(resolved, sort_keys=False))
    resume = (root / "meta.json").is_file()
    changed = False
    if (root / "config.yaml").is_file():
        stored = read_yaml(root / "config.yaml") or {}
        keys = sorted(k for k in set(stored) | set(now) if stored.get(k) != now.get(k))
        if keys:
            before = from_dict(ExperimentConfig, stored, str(root / "config.yaml"))
            forced = min(force, key=STAGES.index) if force else None
            redone = STAGES[STAGES.index(forced):] if forced else ()
            jobs = plan(cfg)
            stale = [j for s in STAGES if s not in redone for j in jobs[s]
                     if j.kind != "report" and j.done(root) and job_settings(before, j) != job_settings(cfg, j)]
            if stale:
                first = min((j.stage for j in stale), key=STAGES.index)
                more = f" and {len(stale) - 1} more" if len(stale) > 1 else ""
                raise UserError(f"{root}: {', '.join(keys)} changed, and {stale[0].name}{more} finished with the "
                                f"old settings; add --force {first} to redo the {first} stage and every later one "
                                "(their outputs are moved aside), or use another --run-dir")
            changed = True
    RunFolder.open(root, command="run", config=resolved, resume=resume)
    if changed:
        from policyshare.checkpoints import atomic_write_text

        atomic_write_text(root / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
    return cfg, root


def force_stage(root: Path, stage: str) -> list[Path]:
    """Move a stage's outputs, and those of every later stage, aside under ``.replaced/``.

    Nothing is deleted: a later stage depends on the earlier ones, so all of them are redone.

    Returns:
        The folders moved.
    """
    later = STAGES[STAGES.index(stage):]
    moved = []
    names = {"experts": ["experts"], "distill": ["distill"], "transfer": ["transfer"],
             "vision": ["vision", "vision_trunks"], "report": ["report.md", "summary.json", "plots"]}
    for s in later:
        for name in names[s]:
            src = root / name
            if src.exists():
                moved.append(move_aside(src, root))
    return moved


Executor = Callable[[Path, Sequence[Job]], None]


def _local(root: Path, jobs: Sequence[Job]) -> None:
    for job in jobs:
        started = time.perf_counter()
        print(f"  {job.name} …", flush=True)
        run_job(root, job)
        print(f"  {job.name}: done ({time.perf_counter() - started:.0f} s)", flush=True)


#: Set in a worker of :func:`local_pool` while it runs a job.
_IN_JOB = False


def _worker_start() -> None:
    """A pool worker: its own process group, so that a Ctrl-C at the terminal reaches only the
    parent (which asks each worker once); SIGINT interrupts a job, and is ignored between jobs."""
    import os
    import signal

    os.setpgrp()

    def on_sigint(signum: int, frame: Any) -> None:
        if _IN_JOB:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    signal.signal(signal.SIGTERM, on_sigint)


def _job_in_process(root: str, job: dict[str, Any]) -> str:
    import torch

    global _IN_JOB
    torch.set_num_threads(1)
    _IN_JOB = True
    try:
        return run_job(root, job)
    finally:
        _IN_JOB = False


def _unfinished(root: Path, jobs: Sequence[Job], signame: str) -> Interrupted:
    left = [j.name for j in jobs if not j.done(root)]
    shown = ", ".join(left[:4]) + (f" and {len(left) - 4} more" if len(left) > 4 else "")
    return Interrupted(f"interrupted ({signame}); unfinished: {shown or 'none of this stage'}, and the later "
                       "stages; run the same command again to continue (finished jobs are kept, unfinished "
                       "ones resume from their last checkpoint)")


def local_pool(workers: int) -> Executor:
    """An executor running up to ``workers`` jobs at once in separate processes (one torch thread
    each); ``workers == 1`` runs them in this process, one after another.

    Jobs are handed to a worker only when one is free. On SIGINT (Ctrl-C) or SIGTERM no further
    job starts, each running job is asked once to stop (training saves a checkpoint first), and
    :class:`~policyshare.errors.Interrupted` (exit status 130) names the unfinished jobs; the same
    command resumes them. A second signal asks the running jobs again, which stops them at once.

    Raises:
        Interrupted: a signal stopped the stage.
    """
    if workers <= 1:
        return _local

    def execute(root: Path, jobs: Sequence[Job]) -> None:
        import multiprocessing
        import os
        import signal
        import threading
        from concurrent.futures import FIRST_COMPLETED, Future, wait
        from concurrent.futures import ProcessPoolExecutor as Pool
        from dataclasses import asdict

        stop: list[str] = []

        def on_signal(signum: int, frame: Any) -> None:
            stop.append(signal.Signals(signum).name)
            for child in multiprocessing.active_children():  # the pool's workers
                if child.pid is not None:
                    os.kill(child.pid, signal.SIGINT)

        handled = (signal.SIGINT, signal.SIGTERM)
        previous = ({s: signal.signal(s, on_signal) for s in handled}
                    if threading.current_thread() is threading.main_thread() else {})
        error: BaseException | None = None
        try:
            ctx = multiprocessing.get_context("spawn")
            with Pool(max_workers=min(workers, len(jobs)), mp_context=ctx, initializer=_worker_start) as pool:
                queue = list(jobs)
                running: dict[Future[str], Job] = {}
                while running or (queue and not stop and error is None):
                    while queue and not stop and error is None and len(running) < workers:
                        job = queue.pop(0)
                        running[pool.submit(_job_in_process, str(root), asdict(job))] = job
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for f in finished:
                        job = running.pop(f)
                        try:
                            print(f"  {job.name}: {f.result()}", flush=True)
                        except BaseException as e:  # a job failed, or was stopped by the signal
                            if stop:
                                print(f"  {job.name}: stopped ({e})", flush=True)
                            elif error is None:
                                error = e
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
        if stop:
            raise _unfinished(root, jobs, stop[0])
        if error is not None:
            raise error

    return execute


def run_experiment(config: str | Path, *, run_dir: str | Path | None = None, only: str | None = None,
                   force: Sequence[str] = (), overrides: Mapping[str, Any] | None = None,
                   executor: Executor = _local) -> Path:
    """Run (or finish) the experiment; return its folder.

    Args:
        config: the experiment YAML.
        run_dir: the experiment folder (default ``runs/<name>``).
        only: run just this stage (the earlier ones must be done).
        force: redo these stages (and every later one): their outputs are moved aside.
        overrides: nested config overrides (``--set``).
        executor: runs a stage's pending jobs (one after another by default; Ray in ``sweep``).

    Raises:
        UserError: bad config, an unknown stage, ``only`` with unfinished earlier stages.
    """
    for s in [*force, *([only] if only else [])]:
        if s not in STAGES:
            raise UserError(f"unknown stage {s!r}; stages: {', '.join(STAGES)}")
    cfg, root = open_experiment(config, run_dir, overrides, force)
    for s in sorted(force, key=STAGES.index)[:1]:
        for moved in force_stage(root, s):
            print(f"moved aside: {moved}")
    stages = plan(cfg)
    if only is not None:
        for s in STAGES[:STAGES.index(only)]:
            unfinished = [j.name for j in stages[s] if not j.done(root)]
            if unfinished:
                raise UserError(f"--only {only} needs the {s} stage, which is not finished ({unfinished[0]} …); "
                                "run without --only first")
    started = time.perf_counter()
    for stage in STAGES:
        if only is not None and stage != only:
            continue
        pending = [j for j in stages[stage] if not j.done(root)]
        if not pending:
            print(f"[{stage}] done ({len(stages[stage])} jobs)")
            continue
        print(f"[{stage}] {len(pending)} of {len(stages[stage])} jobs to run", flush=True)
        executor(root, pending)
    print(f"experiment folder: {root} ({time.perf_counter() - started:.0f} s)")
    if (root / "report.md").is_file():
        print(f"report:            {root / 'report.md'}")
    print(f"TensorBoard:       tensorboard --logdir {root}")
    for label, pattern in (("experts:", "experts/*/model.zip"), ("student:", "distill/student.safetensors"),
                           ("transfer runs:", "transfer/*/*/model.zip")):
        found = sorted(root.glob(pattern))
        if found:
            more = f"  (+{len(found) - 1} more: {root / pattern})" if len(found) > 1 else ""
            print(f"{label:18s} {found[0]}{more}")
    return root


def default_root(cfg: ExperimentConfig) -> Path:
    """``runs/<name>``."""
    return runs_dir() / slug(cfg.name)


__all__ = ["METHODS", "STAGES", "ExperimentConfig", "Job", "force_stage", "load_experiment_config",
           "open_experiment", "plan", "run_experiment", "run_job", "vision_trunks"]
