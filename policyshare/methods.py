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
* ``policyshare run`` (the experiment): :data:`EXPERIMENT_METHODS`.
"""

from __future__ import annotations

SCRATCH = "scratch"
FINETUNE = "finetune"
FROZEN = "frozen"
STUDENT = "student"
PROGRESSIVE = "progressive"
RANDOM_COLUMN = "random_column"

#: Every method name with its one-line description.
DESCRIPTIONS: dict[str, str] = {
    SCRATCH: "a single network trained from scratch on the target (baseline 1; the reference of transfer %)",
    FINETUNE: "a source's trained trunk (an expert's, or the first progressive column) fine-tuned on the "
              "target with fresh heads (baseline 3)",
    FROZEN: "a source's trained trunk kept frozen, fresh heads trained on the target (baseline 2)",
    STUDENT: "the distilled Actor-Mimic student's trunk fine-tuned on the target with fresh heads",
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
EXPERIMENT_METHODS: tuple[str, ...] = (SCRATCH, FINETUNE, STUDENT, PROGRESSIVE, RANDOM_COLUMN)


def describe(method: str) -> str:
    """The one-line description of a method name.

    Raises:
        KeyError: not a method name of :data:`DESCRIPTIONS`.
    """
    return DESCRIPTIONS[method]


__all__ = ["DESCRIPTIONS", "EXPERIMENT_METHODS", "FINETUNE", "FROZEN", "PROGRESSIVE", "PROGRESSIVE_CONTROLS",
           "RANDOM_COLUMN", "SCRATCH", "STUDENT", "TRANSFER_METHODS", "describe"]
