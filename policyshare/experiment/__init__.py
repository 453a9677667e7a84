"""The end-to-end sharing experiment: ``policyshare run CONFIG``, ``policyshare sweep``, ``policyshare report``.

One config (``configs/quickstart.yaml``, ``configs/sharing.yaml``, ``configs/sharing_atari.yaml``)
names a suite's **source** games and held-out **target** games, the seeds, and the budget of each
stage. The stages run in order:

1. ``experts`` — a single-task expert per source game, upstream seed (and alignment, when
   trained here): copied from the zoo (:mod:`policyshare.zoo`), from earlier ``policyshare
   train`` runs, or trained here;
2. ``distill`` — Actor-Mimic students (:func:`policyshare.distill.distill`): per target's set of
   source games, upstream seed and alignment, and one-teacher students for ``single_teacher``;
3. ``multitask`` — multi-task PPO from scratch on each target's source games
   (:func:`policyshare.multitask.multitask`), for the ``multitask`` method;
4. ``transfer`` — on every target game and target seed, with the same config and evaluation
   steps, every arm (:mod:`~policyshare.experiment.design`): ``scratch``; per alignment
   ``finetune`` and ``frozen`` from every source expert, ``student``, ``single_teacher``,
   ``multitask``, ``progressive`` and ``random_column`` (Rusu et al. 2016's baseline 4);
5. ``vision`` — the vision thesis table (:func:`policyshare.vision.compare.compare`) over
   built-in trunks and the trunks this run produced;
6. ``report`` — ``report.md``, ``summary.json`` and plots.

``targets: all`` with ``sources: others`` holds every game of the suite out in turn
(leave-one-game-out); ``transfer.alignments: [pad, stem]`` makes the input alignment a condition;
``experts.seeds`` (and ``distill.seeds``, ``multitask.seeds``) give every upstream artifact several
seeds, target seed number ``i`` using upstream seed number ``i mod U``.
``policyshare run CONFIG --plan`` prints the jobs, env steps and estimated wall time.

Modules, in data-flow order (imports only go down the list):

* :mod:`~policyshare.experiment.config` — :class:`ExperimentConfig` and its stages, checked
  across fields.
* :mod:`~policyshare.experiment.checks` — :func:`load_experiment_config`: strict loading, the
  games resolved from the suites, and the check of the zoo and every stage's own config before
  anything runs.
* :mod:`~policyshare.experiment.design` — the arms compared on each target (:class:`Arm`) and the
  upstream artifacts they start from (:class:`Upstream`), with the pairing of seeds.
* :mod:`~policyshare.experiment.layout` — :class:`Job`, :func:`plan`, the experiment folder's
  layout (:func:`upstream_dir`, :func:`transfer_dir`, :func:`default_root`, :func:`vision_trunks`)
  and what a finished job depends on (:func:`job_settings`).
* :mod:`~policyshare.experiment.budget` — env steps per job and stage and the estimated wall
  time (:func:`estimate`, ``--plan``).
* :mod:`~policyshare.experiment.report` — :func:`build_report` and :func:`render`: the report
  from the run folders alone.
* :mod:`~policyshare.experiment.jobs` — what each job kind runs (expert, distill, multitask,
  transfer with the progressive network's arguments, vision, report).
* :mod:`~policyshare.experiment.runner` — :func:`run_job`, :func:`open_experiment`,
  :func:`force_stage`, the local process pool (:func:`local_pool`) and :func:`run_experiment`.
* :mod:`~policyshare.experiment.sweep` — the stages' jobs as Ray Tune trials (``sweep``,
  ``ray_executor``).

The names below are importable from the package; their modules (which import torch and SB3)
load on first use, so ``import policyshare.experiment`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from policyshare.experiment.budget import Estimate, estimate
    from policyshare.experiment.checks import check_stage_configs, load_experiment_config
    from policyshare.experiment.config import (
        METHODS,
        STAGES,
        DistillStage,
        ExperimentConfig,
        ExpertsStage,
        MultitaskStage,
        ReportStage,
        TransferStage,
        VisionStage,
    )
    from policyshare.experiment.design import Arm, Upstream, arms, upstream_for, upstreams
    from policyshare.experiment.layout import (
        Job,
        default_root,
        job_settings,
        plan,
        report_is_current,
        transfer_dir,
        upstream_dir,
        vision_trunks,
    )
    from policyshare.experiment.report import build_report, render
    from policyshare.experiment.runner import (
        Executor,
        describe_plan,
        force_stage,
        local_pool,
        open_experiment,
        run_experiment,
        run_job,
    )

#: Public name → the submodule that defines it.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(["METHODS", "STAGES", "DistillStage", "ExperimentConfig", "ExpertsStage", "MultitaskStage",
                     "ReportStage", "TransferStage", "VisionStage"], "config"),
    **dict.fromkeys(["check_stage_configs", "load_experiment_config"], "checks"),
    **dict.fromkeys(["Arm", "Upstream", "arms", "upstream_for", "upstreams"], "design"),
    **dict.fromkeys(["Job", "default_root", "job_settings", "plan", "report_is_current", "transfer_dir",
                     "upstream_dir", "vision_trunks"], "layout"),
    **dict.fromkeys(["Estimate", "estimate"], "budget"),
    **dict.fromkeys(["build_report", "render"], "report"),
    **dict.fromkeys(["Executor", "describe_plan", "force_stage", "local_pool", "open_experiment", "run_experiment",
                     "run_job"], "runner"),
}

__all__ = ["METHODS", "STAGES", "Arm", "DistillStage", "Estimate", "Executor", "ExperimentConfig", "ExpertsStage",
           "Job", "MultitaskStage", "ReportStage", "TransferStage", "Upstream", "VisionStage", "arms", "build_report",
           "check_stage_configs", "default_root", "describe_plan", "estimate", "force_stage", "job_settings",
           "load_experiment_config", "local_pool", "open_experiment", "plan", "render", "report_is_current",
           "run_experiment", "run_job", "transfer_dir", "upstream_dir", "upstream_for", "upstreams",
           "vision_trunks"]


def __getattr__(name: str) -> Any:
    """``policyshare.experiment.<name>`` from its submodule, imported on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
