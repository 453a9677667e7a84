"""Multi-task PPO from scratch: one shared-trunk network trained by RL on all source games at once.

The control that separates *sharing* from *distillation* in a transfer study (DESIGN.md,
"Measuring"): the same shared trunk as the Actor-Mimic student, trained by SB3's PPO on the
source games together with the same total env steps as their experts, then transferred to a
held-out game like the student (``policyshare transfer --trunk RUN/trunk.safetensors``).

Modules, imports only downward:

* :mod:`~policyshare.multitask.vecenv` — the games side by side as one SB3 ``VecEnv``
  (``Dict`` observations: padded channels + task index; common-space actions);
* :mod:`~policyshare.multitask.policy` — the network: per-task alignment, one trunk, the
  one-hot task beside its features, masked common-space logits (:class:`MultiTaskPolicy`);
* :mod:`~policyshare.multitask.config` — ``configs/multitask.yaml``, typed;
* :mod:`~policyshare.multitask.callbacks` — per-task TensorBoard tags and evaluations;
* :mod:`~policyshare.multitask.run` — the ``policyshare multitask`` command.
"""

from policyshare.multitask.config import MultiTaskConfig, load_multitask_config
from policyshare.multitask.policy import MultiTaskExtractor, MultiTaskPolicy, TaskAgent
from policyshare.multitask.run import MultiTaskResult, build_multitask_model, make_multitask_env, multitask
from policyshare.multitask.vecenv import MultiTaskVecEnv

__all__ = ["MultiTaskConfig", "MultiTaskExtractor", "MultiTaskPolicy", "MultiTaskResult", "MultiTaskVecEnv",
           "TaskAgent", "build_multitask_model", "load_multitask_config", "make_multitask_env", "multitask"]
