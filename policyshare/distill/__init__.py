"""Distilling several single-task experts into one shared-trunk student: ``policyshare distill``.

Two published recipes, chosen by config (``configs/actor_mimic.yaml``): **Actor-Mimic**
(Parisotto, Ba & Salakhutdinov 2016, arXiv 1511.06342: one output over the suite's common
action space, cross-entropy to the teacher's ``softmax(Q / τ)`` plus β · feature regression) and
**Policy Distillation** (Rusu et al. 2015, arXiv 1511.06295: per-task heads, KL divergence).
Teachers are stable-baselines3 checkpoints (PPO/A2C logits, DQN Q-values).

Modules, in data-flow order:

* :mod:`~policyshare.distill.config` — the typed config (:class:`DistillConfig`), its loader and
  the method name (``actor_mimic``, ``policy_distillation``).
* :mod:`~policyshare.distill.losses` — policy regression, feature regression, agreement.
* :mod:`~policyshare.distill.vec_envs` — a task's vectorised env as an SB3 model sees it.
* :mod:`~policyshare.distill.teachers` — :class:`Teacher`: loading, checks, ``TASK=PATH``.
* :mod:`~policyshare.distill.student` — the :class:`Student` network, :class:`StudentAgent`,
  the student file (save, load, ``load_policy`` for ``policyshare evaluate``).
* :mod:`~policyshare.distill.memory` — :class:`TaskMemory`, one replay memory per task.
* :mod:`~policyshare.distill.trainer` — :func:`train_student`, the loop, and its checkpoints.
* :mod:`~policyshare.distill.command` — :func:`distill`: the run folder's stages, the final
  per-task evaluation and the table.

Units: ``steps``, ``learning_starts`` and every frequency are env steps per task; gradient
updates are counted apart; evaluation is in complete episodes.

The public names below are importable from the package (``from policyshare.distill import
distill``); each submodule is imported on first use (PEP 562), so importing the package alone
loads no torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from policyshare.distill.command import DistillResult, distill, evaluate_task, format_table
    from policyshare.distill.config import (
        DistillConfig,
        DistillEvalConfig,
        HeadKind,
        LossKind,
        load_distill_config,
        method_name,
    )
    from policyshare.distill.losses import agreement, feature_regression_loss, policy_regression_loss
    from policyshare.distill.memory import TaskMemory
    from policyshare.distill.student import (
        STUDENT_FORMAT,
        Student,
        StudentAgent,
        TaskInfo,
        build_student,
        load_policy,
        load_student,
        save_student,
        task_info,
    )
    from policyshare.distill.teachers import Teacher, check_teacher_spaces, load_teachers, parse_teacher
    from policyshare.distill.trainer import (
        CHECKPOINT_FORMAT,
        load_training_checkpoint,
        save_training_checkpoint,
        train_student,
    )
    from policyshare.distill.vec_envs import observation_scale, policy_vec_env

#: The submodule of each public name.
_MODULES: dict[str, tuple[str, ...]] = {
    "config": ("DistillConfig", "DistillEvalConfig", "HeadKind", "LossKind", "load_distill_config",
               "method_name"),
    "losses": ("agreement", "feature_regression_loss", "policy_regression_loss"),
    "vec_envs": ("observation_scale", "policy_vec_env"),
    "teachers": ("Teacher", "check_teacher_spaces", "load_teachers", "parse_teacher"),
    "student": ("STUDENT_FORMAT", "Student", "StudentAgent", "TaskInfo", "build_student", "load_policy",
                "load_student", "save_student", "task_info"),
    "memory": ("TaskMemory",),
    "trainer": ("CHECKPOINT_FORMAT", "load_training_checkpoint", "save_training_checkpoint", "train_student"),
    "command": ("DistillResult", "distill", "evaluate_task", "format_table"),
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "CHECKPOINT_FORMAT", "STUDENT_FORMAT", "DistillConfig", "DistillEvalConfig", "DistillResult", "HeadKind",
    "LossKind", "Student", "StudentAgent", "TaskInfo", "TaskMemory", "Teacher", "agreement", "build_student",
    "check_teacher_spaces", "distill", "evaluate_task", "feature_regression_loss", "format_table",
    "load_distill_config", "load_policy", "load_student", "load_teachers", "load_training_checkpoint",
    "method_name", "observation_scale", "parse_teacher", "policy_regression_loss", "policy_vec_env",
    "save_student", "save_training_checkpoint", "task_info", "train_student",
]


def __getattr__(name: str) -> Any:
    """``policyshare.distill.<public name>``, importing its submodule on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
