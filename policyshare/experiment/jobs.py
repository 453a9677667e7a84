"""What each kind of job runs: ``expert``, ``distill``, ``multitask``, ``transfer``, ``vision`` and ``report``.

:data:`RUNNERS` maps a :class:`~policyshare.experiment.layout.Job`'s kind to the function that
writes its run folder:

* ``expert`` — an expert per game, seed and alignment: copied from the zoo (``<env>__s<seed>.zip``)
  or an earlier run (with its trunk and metrics), or trained with ``policyshare train`` under the
  alignment;
* ``distill`` — an Actor-Mimic student (:func:`policyshare.distill.distill`) of the experts of its
  games (one game: the ``single_teacher`` control), its trunk under the job's alignment;
* ``multitask`` — multi-task PPO from scratch on its games (:func:`policyshare.multitask.multitask`),
  by default with as many env steps as their experts together
  (:func:`~policyshare.experiment.budget.multitask_timesteps`);
* ``transfer`` — a run on a target game: ``scratch``; ``finetune``/``frozen`` (a source expert's
  trunk, trained or frozen; Rusu et al. 2016's baselines 3 and 2); ``student``,
  ``single_teacher``, ``multitask`` (the trunk of that upstream artifact); ``progressive`` (a
  two-column progressive network whose frozen first column is a source expert) and
  ``random_column`` (the same with a random frozen column, baseline 4). Every run but ``scratch``
  uses the job's alignment, and records the artifact and upstream seed it started from under
  ``upstream`` in its ``config.yaml``;
* ``capacity_single``, ``capacity_multitask``, ``capacity_student`` — the data-per-parameter
  variants (:mod:`policyshare.experiment.capacity`);
* ``vision`` — the vision thesis table (:func:`policyshare.vision.compare.compare`);
* ``report`` — :func:`policyshare.experiment.report.build_report`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from policyshare.config import deep_merge, from_dict, to_dict
from policyshare.errors import UserError
from policyshare.experiment.budget import multitask_timesteps
from policyshare.experiment.capacity_run import RUNNERS as CAPACITY_RUNNERS
from policyshare.experiment.checks import zoo_expert
from policyshare.experiment.config import ExperimentConfig
from policyshare.experiment.design import Upstream, teachers
from policyshare.experiment.layout import Job, upstream_dir, upstream_of, vision_trunks
from policyshare.experiment.report import build_report
from policyshare.io import atomic_write_bytes, atomic_write_json, read_json
from policyshare.methods import FINETUNE, FROZEN, MULTITASK, PROGRESSIVE, RANDOM_COLUMN, SINGLE_TEACHER, STUDENT


def _with_alignment(overrides: Mapping[str, Any], alignment: str | None) -> dict[str, Any]:
    """``overrides`` with ``trunk.alignment`` set (unchanged for ``None``: the suite's own)."""
    return deep_merge(overrides, {"trunk": {"alignment": alignment}}) if alignment else dict(overrides)


def _materialise_expert(folder: Path, game: str, model_zip: Path, provenance: Mapping[str, Any]) -> None:
    """Copy an expert (zoo or earlier run) into ``folder`` with its trunk and metrics."""
    from policyshare.algos import features_extractors
    from policyshare.checkpoints import save_trunk
    from policyshare.sb3_files import load_sb3

    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / "model.zip", model_zip.read_bytes())
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
        "alignment": extractor.alignment.mode,
        "n_parameters": sum(p.numel() for p in model.policy.parameters()),
        "trunk_parameters": extractor.trunk.n_parameters(), "copied_from": str(model_zip)})


def _expert_job(root: Path, cfg: ExperimentConfig, job: Job) -> None:
    up = upstream_of(job.params)
    game = up.games[0]
    folder = job.folder(root)
    if cfg.experts.source == "zoo":
        path = zoo_expert(game, up.seed)
        _materialise_expert(folder, game, path, read_json(path.with_suffix(".json"), "zoo provenance"))
    elif cfg.experts.source == "runs":
        entry = cfg.experts.runs[game]
        run = Path(entry if isinstance(entry, str) else entry[up.index])
        metrics = read_json(run / "metrics.json", f"metrics of expert run {run}")
        if metrics.get("env_id") != game:
            raise UserError(f"experts.runs[{game}] = {run} was trained on {metrics.get('env_id')}")
        _materialise_expert(folder, game, run / "model.zip", {
            "env_id": game, "algo": metrics["algo"], "seed": metrics["seed"], "timesteps": metrics["timesteps"],
            "evaluation": {"mean": metrics["eval_mean_return"], "std": metrics["eval_std_return"],
                           "episodes": metrics["eval_episodes"], "returns": metrics["eval_returns"]},
            "random_mean_return": metrics["random_mean_return"], "source_run": str(run)})
    else:
        from policyshare.train import train

        e = cfg.experts
        train(game, cfg.algo, config=e.config, timesteps=e.timesteps, seed=up.seed, run_dir=folder,
              overrides=_with_alignment(e.set, up.alignment), resume=(folder / "meta.json").is_file(),
              run_name="expert")


def _distill_job(root: Path, cfg: ExperimentConfig, job: Job) -> None:
    from policyshare.distill import distill

    up = upstream_of(job.params)
    folder = job.folder(root)
    models = [f"{t.games[0]}={upstream_dir(root, t) / 'model.zip'}" for t in teachers(cfg, up)]
    d = cfg.distill
    distill(models, config=d.config, steps=d.steps, seed=up.seed, run_dir=folder,
            overrides=_with_alignment(d.set, up.alignment), resume=(folder / "meta.json").is_file())


def _multitask_job(root: Path, cfg: ExperimentConfig, job: Job) -> None:
    from policyshare.multitask import multitask

    up = upstream_of(job.params)
    folder = job.folder(root)
    m = cfg.multitask
    # The expert-normalised scores come from this experiment's experts (the report), not the zoo's.
    overrides = deep_merge({"experts": "none"}, _with_alignment(m.set, up.alignment))
    multitask(list(up.games), config=m.config, timesteps=multitask_timesteps(cfg, up.games, up.index),
              seed=up.seed, run_dir=folder, overrides=overrides, resume=(folder / "meta.json").is_file())


def _transfer_job(root: Path, cfg: ExperimentConfig, job: Job) -> None:
    from policyshare.train import train

    p = job.params
    env_id, method, seed = p["env_id"], p["method"], int(p["seed"])
    up = upstream_of(p["upstream"]) if p.get("upstream") else None
    folder = job.folder(root)
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {"upstream": up.describe() if up is not None else None}
    if method in (FINETUNE, FROZEN, STUDENT, SINGLE_TEACHER, MULTITASK):
        assert up is not None
        kwargs["init_trunk"] = upstream_dir(root, up) / "trunk.safetensors"
        kwargs["freeze_trunk"] = method == FROZEN
    elif method in (PROGRESSIVE, RANDOM_COLUMN):
        prog = _progressive_kwargs(root, cfg, method, up)
        extra.update(prog.pop("extra_config"))
        kwargs.update(prog)
    t = cfg.transfer
    train(env_id, cfg.algo, config=t.config, timesteps=t.timesteps, seed=seed, run_dir=folder,
          overrides=_with_alignment(t.set, p.get("alignment")), resume=(folder / "meta.json").is_file(),
          run_name=method, extra_config=extra, **kwargs)


def _progressive_kwargs(root: Path, cfg: ExperimentConfig, method: str, up: Upstream | None) -> dict[str, Any]:
    """``train`` arguments of a two-column progressive network: its first column the expert ``up``
    (``progressive``), or random (``random_column``, whose trunk spec is the suite's)."""
    from policyshare.checkpoints import load_tensors
    from policyshare.progressive import (
        AdapterConfig,
        LateralScalarLogger,
        column_model_factory,
        network_from_checkpoint,
    )
    from policyshare.trunks import TrunkSpec

    adapter = from_dict(AdapterConfig, cfg.transfer.adapter, "transfer.adapter")
    network = None
    trunk: dict[str, Any] = {"name": None, "activation": "relu", "theta": 0.5}
    if up is not None:
        folder = upstream_dir(root, up)
        _, header = load_tensors(folder / "trunk.safetensors", "policyshare.trunk")
        spec = TrunkSpec.from_dict(header["spec"])
        trunk = {"name": spec.name, "activation": spec.activation, "theta": spec.theta}
        if method == PROGRESSIVE:
            network = network_from_checkpoint(folder / "model.zip", up.games[0], spec, adapter, cfg.algo)
    else:
        trunk = _suite_trunk(cfg)
    frozen = up.games[0] if up is not None and network is not None else "random"
    describe = {"progressive": {"column": 2, "adapter": to_dict(adapter), "frozen_column": frozen}}
    return {"model_factory": column_model_factory(cfg.algo, 2, trunk, adapter, network),
            "extra_callbacks": [LateralScalarLogger()], "extra_config": describe}


def _suite_trunk(cfg: ExperimentConfig) -> dict[str, Any]:
    """The column spec of a random column: the training config's trunk for the first target."""
    from policyshare.envs import check_env_id
    from policyshare.train import load_train_config

    target = cfg.target_games[0]
    t_cfg, _ = load_train_config(target, cfg.algo, cfg.transfer.config, cfg.transfer.set)
    return {"name": t_cfg.trunk.spec or check_env_id(target).trunk, "activation": t_cfg.trunk.activation,
            "theta": t_cfg.trunk.theta}


def _vision_job(root: Path, cfg: ExperimentConfig, job: Job) -> None:
    from policyshare.vision.compare import compare
    from policyshare.vision.config import load_vision_config

    # An unfinished folder (no checkpoints) is moved aside to root/.replaced/ by compare itself.
    vcfg = load_vision_config(cfg.vision.config, cfg.vision.set)
    compare(vision_trunks(root, cfg), vcfg, run_dir=job.folder(root), seed=cfg.seeds[0])


def _report_job(root: Path, cfg: ExperimentConfig, job: Job) -> None:
    build_report(root)


#: What each job kind runs: ``RUNNERS[job.kind](experiment folder, config, job)`` writes the job's
#: run folder (resuming an unfinished one).
RUNNERS: dict[str, Callable[[Path, ExperimentConfig, Job], None]] = {
    "expert": _expert_job, "distill": _distill_job, "multitask": _multitask_job, "transfer": _transfer_job,
    "vision": _vision_job, "report": _report_job, **CAPACITY_RUNNERS,
}


__all__ = ["RUNNERS"]
