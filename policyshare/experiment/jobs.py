"""What each kind of job runs: ``expert``, ``distill``, ``transfer``, ``vision`` and ``report``.

:data:`RUNNERS` maps a :class:`~policyshare.experiment.layout.Job`'s kind to the function that
writes its run folder: experts copied from the zoo or an earlier run (with their trunk and
metrics) or trained with ``policyshare train``; the Actor-Mimic student
(:func:`policyshare.distill.distill`); a transfer run on a target game — ``scratch``,
``finetune`` (an expert's trunk), ``student`` (the student's trunk), ``progressive`` (a
two-column progressive network whose frozen first column is an expert, Rusu et al. 2016) and
``random_column`` (the same with a random frozen column, the paper's baseline 4); the vision
thesis table (:func:`policyshare.vision.compare.compare`); and the report
(:func:`policyshare.experiment.report.build_report`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from policyshare.config import from_dict, to_dict
from policyshare.errors import UserError
from policyshare.experiment.config import ExperimentConfig
from policyshare.experiment.layout import Job, expert_dir, vision_trunks
from policyshare.experiment.report import build_report
from policyshare.io import atomic_write_bytes, atomic_write_json, read_json
from policyshare.methods import FINETUNE, PROGRESSIVE, RANDOM_COLUMN, STUDENT


def _materialise_expert(root: Path, game: str, model_zip: Path, provenance: Mapping[str, Any]) -> None:
    """Copy an expert (zoo or earlier run) into ``experts/<env>/`` with its trunk and metrics."""
    from policyshare.algos import features_extractors
    from policyshare.checkpoints import save_trunk
    from policyshare.sb3_files import load_sb3

    folder = expert_dir(root, game)
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
        "n_parameters": sum(p.numel() for p in model.policy.parameters()),
        "trunk_parameters": extractor.trunk.n_parameters(), "copied_from": str(model_zip)})


def _expert_job(root: Path, cfg: ExperimentConfig, job: Job) -> None:
    game = job.params["env_id"]
    folder = job.folder(root)
    if cfg.experts.source == "zoo":
        from policyshare import zoo

        path = zoo.expert_path(game, cfg.experts.seed)
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
              overrides=e.set, resume=(folder / "meta.json").is_file(), run_name="expert")


def _distill_job(root: Path, cfg: ExperimentConfig, job: Job) -> None:
    from policyshare.distill import distill

    folder = job.folder(root)
    teachers = [f"{g}={expert_dir(root, g) / 'model.zip'}" for g in cfg.sources]
    d = cfg.distill
    distill(teachers, config=d.config, steps=d.steps, seed=d.seed, run_dir=folder, overrides=d.set,
            resume=(folder / "meta.json").is_file())


def _transfer_job(root: Path, cfg: ExperimentConfig, job: Job) -> None:
    from policyshare.train import train

    env_id, method, seed = job.params["env_id"], job.params["method"], int(job.params["seed"])
    folder = job.folder(root)
    kwargs: dict[str, Any] = {}
    if method == FINETUNE:
        kwargs["init_trunk"] = expert_dir(root, cfg.finetune_from) / "trunk.safetensors"
    elif method == STUDENT:
        kwargs["init_trunk"] = root / "distill" / "trunk.safetensors"
    elif method in (PROGRESSIVE, RANDOM_COLUMN):
        kwargs.update(_progressive_kwargs(root, cfg, method))
    t = cfg.transfer
    train(env_id, cfg.algo, config=t.config, timesteps=t.timesteps, seed=seed, run_dir=folder,
          overrides=t.set, resume=(folder / "meta.json").is_file(), run_name=method, **kwargs)


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
    "expert": _expert_job, "distill": _distill_job, "transfer": _transfer_job, "vision": _vision_job,
    "report": _report_job,
}


__all__ = ["RUNNERS"]
