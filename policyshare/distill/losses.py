"""The distillation losses and the greedy-agreement figure, over the common action space.

* :func:`policy_regression_loss` — cross-entropy (Actor-Mimic, Parisotto, Ba & Salakhutdinov
  2016, arXiv 1511.06342, Eq. 2) or KL divergence (Policy Distillation, Rusu et al. 2015,
  arXiv 1511.06295, Eq. 3) to the teacher's ``softmax(scores / τ)``; summed over actions, mean
  over the batch.
* :func:`feature_regression_loss` — ``‖f_i(h_student) − h_teacher‖²`` (Actor-Mimic, Eq. 4);
  summed over feature units, mean over the batch.
* :func:`agreement` — how often the student's and the teacher's greedy actions coincide.
"""

from __future__ import annotations

import torch

from policyshare.distill.config import LossKind
from policyshare.errors import ConfigError


def policy_regression_loss(student_logits: torch.Tensor, teacher_scores: torch.Tensor,
                           mask: torch.Tensor, tau: float,
                           kind: LossKind = "cross_entropy") -> torch.Tensor:
    """Policy regression of a student onto a teacher, over the actions a task has.

    With ``p = softmax(teacher_scores / τ)`` and ``q = softmax(student_logits)``, both taken
    over the task's actions only (``mask``; other actions get probability 0, whatever their
    scores):

    * ``cross_entropy`` — ``−Σ_a p(a) log q(a)`` (Actor-Mimic, Parisotto et al. 2016, Eq. 2);
    * ``kl`` — ``Σ_a p(a) (log p(a) − log q(a))`` (Policy Distillation, Rusu et al. 2015,
      Eq. 3; the student's softmax is at temperature 1).

    The two differ by the teacher's entropy, a constant, so their gradients are equal.

    Reduction: summed over actions, **mean over the batch** (per-sample mean), so the scale does
    not depend on the batch size.

    Args:
        student_logits: ``(batch, n_actions)`` student scores (common action space).
        teacher_scores: ``(batch, n_actions)`` teacher logits (PPO/A2C) or Q-values (DQN).
        mask: ``(batch, n_actions)`` or ``(n_actions,)`` bool, ``True`` where the task has
            the action; every row needs at least one.
        tau: temperature τ > 0 of the teacher's softmax (small τ → the greedy action).
        kind: ``cross_entropy`` or ``kl``.

    Returns:
        A scalar tensor (nats).

    Raises:
        ConfigError: ``tau <= 0`` or an unknown ``kind``.
    """
    if not tau > 0:
        raise ConfigError(f"tau must be > 0, got {tau}")
    if kind not in ("cross_entropy", "kl"):
        raise ConfigError(f"unknown policy loss {kind!r}; choose cross_entropy or kl")
    mask = mask.to(torch.bool).expand_as(student_logits)
    neg_inf = float("-inf")
    log_q = torch.log_softmax(student_logits.masked_fill(~mask, neg_inf), dim=-1)
    log_p = torch.log_softmax((teacher_scores / tau).masked_fill(~mask, neg_inf), dim=-1)
    # Zero the masked entries before multiplying: 0 · (−inf) would be NaN.
    log_q = log_q.masked_fill(~mask, 0.0)
    log_p = log_p.masked_fill(~mask, 0.0)
    p = log_p.exp() * mask
    per_sample = -(p * log_q).sum(-1) if kind == "cross_entropy" else (p * (log_p - log_q)).sum(-1)
    return per_sample.mean()


def feature_regression_loss(predicted: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """Feature regression ``‖f_i(h_student) − h_teacher‖²₂`` (Actor-Mimic, Eq. 4).

    Reduction: squared L2 norm **summed over feature units**, **mean over the batch**.

    Args:
        predicted: ``(batch, d_teacher)`` = ``f_i(h_student)``, the student's hidden features
            through the per-teacher linear map.
        teacher_features: ``(batch, d_teacher)`` the teacher's last hidden layer.

    Returns:
        A scalar tensor.

    Raises:
        ValueError: if the shapes differ.
    """
    if predicted.shape != teacher_features.shape:
        raise ValueError(f"feature regression needs equal shapes, got {tuple(predicted.shape)} "
                         f"and {tuple(teacher_features.shape)}")
    return (predicted - teacher_features).pow(2).sum(-1).mean()


def agreement(student_logits: torch.Tensor, teacher_scores: torch.Tensor,
              mask: torch.Tensor) -> float:
    """Fraction of rows where the student's and the teacher's greedy actions (over the task's
    actions) coincide. Shapes as in :func:`policy_regression_loss`."""
    mask = mask.to(torch.bool).expand_as(student_logits)
    s = student_logits.masked_fill(~mask, float("-inf")).argmax(-1)
    t = teacher_scores.masked_fill(~mask, float("-inf")).argmax(-1)
    return float((s == t).float().mean())

