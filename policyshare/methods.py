"""The names of the compared methods: one vocabulary for ``transfer``, ``progressive``, the experiment
and every report.

A *method* is one way of training an agent on a target task; methods are compared per seed on
the same target, env steps and evaluation steps, against :data:`SCRATCH` (the reference of
transfer %). The names are the strings written in run-folder names (``<method>__s<seed>``), in
config files (``transfer.methods``, ``controls``), and as keys of ``summary.json`` and
``metrics.json``; they are plain ``str`` constants so that JSON and YAML files hold them as they
are. Baselines are numbered as in Rusu et al. 2016, "Progressive Neural Networks", Sec. 4.

Which commands compare which methods:

* ``policyshare transfer``: :data:`TRANSFER_METHODS` (one of them, per ``--freeze-trunk``)
  against :data:`SCRATCH`;
* ``policyshare progressive``: :data:`PROGRESSIVE` against :data:`PROGRESSIVE_CONTROLS`;
* ``policyshare run`` (the experiment): :data:`EXPERIMENT_METHODS`. Of these, the methods of
  :data:`PER_SOURCE_METHODS` run once per source game (the run folder names the source), and every
  method but :data:`SCRATCH` runs once per input alignment (``pad``, ``stem``) of the study.

The controls follow DESIGN.md ("Measuring"): :data:`FROZEN` is Rusu et al.'s baseline 2,
:data:`FINETUNE` their baseline 3 and :data:`RANDOM_COLUMN` their baseline 4; :data:`MULTITASK`
(multi-task RL from scratch, no teachers) separates sharing from distillation, and
:data:`SINGLE_TEACHER` (a student of one teacher) separates distillation from the number of sources.
"""

from __future__ import annotations

SCRATCH = "scratch"
FINETUNE = "finetune"
FROZEN = "frozen"
STUDENT = "student"
SINGLE_TEACHER = "single_teacher"
MULTITASK = "multitask"
PROGRESSIVE = "progressive"
RANDOM_COLUMN = "random_column"

#: Every method name with its one-line description.
DESCRIPTIONS: dict[str, str] = {
    SCRATCH: "a single network trained from scratch on the target (baseline 1; the reference of transfer %)",
    FINETUNE: "a source's trained trunk (an expert's, or the first progressive column) fine-tuned on the "
              "target with fresh heads (baseline 3)",
    FROZEN: "a source's trained trunk kept frozen, fresh heads trained on the target (baseline 2)",
    STUDENT: "the distilled Actor-Mimic student's trunk fine-tuned on the target with fresh heads",
    SINGLE_TEACHER: "the trunk of a student distilled from one teacher (one source game) fine-tuned on the "
                    "target with fresh heads: the student with the number of sources taken out",
    MULTITASK: "the trunk of multi-task PPO trained from scratch on the source games together (no teachers; "
               "by default as many env steps as their experts together) fine-tuned on the target with fresh "
               "heads: sharing without distillation",
    PROGRESSIVE: "a new progressive column on the target, with lateral connections from the frozen source "
                 "columns (Rusu et al. 2016)",
    RANDOM_COLUMN: "a progressive column whose predecessor is random and frozen (baseline 4: extra capacity "
                   "without transfer)",
}

#: The trunk-initialised methods of ``policyshare transfer`` (fine-tuned, or frozen with ``--freeze-trunk``).
TRANSFER_METHODS: tuple[str, ...] = (FINETUNE, FROZEN)
#: The controls ``policyshare progressive`` can train on the target beside the progressive column.
PROGRESSIVE_CONTROLS: tuple[str, ...] = (SCRATCH, FINETUNE, RANDOM_COLUMN)
#: The methods of the experiment's transfer stage, in the order they are run and reported.
EXPERIMENT_METHODS: tuple[str, ...] = (SCRATCH, FINETUNE, FROZEN, STUDENT, SINGLE_TEACHER, MULTITASK, PROGRESSIVE,
                                       RANDOM_COLUMN)
#: The experiment's methods that start from one source game's expert: run once per source game.
PER_SOURCE_METHODS: tuple[str, ...] = (FINETUNE, FROZEN)


def describe(method: str) -> str:
    """The one-line description of a method name.

    Raises:
        KeyError: not a method name of :data:`DESCRIPTIONS`.
    """
    return DESCRIPTIONS[method]


__all__ = ["DESCRIPTIONS", "EXPERIMENT_METHODS", "FINETUNE", "FROZEN", "MULTITASK", "PER_SOURCE_METHODS", "PROGRESSIVE",
           "PROGRESSIVE_CONTROLS", "RANDOM_COLUMN", "SCRATCH", "SINGLE_TEACHER", "STUDENT", "TRANSFER_METHODS",
           "describe"]
