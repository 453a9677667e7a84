"""Per-seed transfer metrics: one method's learning curve against scratch's on the same seed.

A *curve* is ``(env steps, mean return)``, two sequences of shape ``(n,)`` with env steps
increasing and starting at env step 0 (the untrained agent); the return is that of greedy
evaluations or of training episodes, whichever the caller compares (:mod:`policyshare.comparison`
says which in every table). Both curves of a
comparison are read on ``[0, T]``, ``T`` the budget in env steps; values between evaluations are
linear interpolations and areas are the trapezoid rule over env steps
(:func:`policyshare.metrics.auc`). ``random`` and ``expert`` are the random policy's and the
expert's mean returns on the target task (same units as the curve).

Every metric returns a :class:`Metric`: a value, or ``None`` with the reason it is undefined —
never ``nan``, so a method whose metric is undefined on some seed stays in every table.

* :func:`transfer_percent` — the paper's transfer %: 100 · AUC / AUC_scratch (Rusu et al.
  2016, Table 1), defined only where scratch is clearly above random.
* :func:`normalised_area_gain` — (AUC − AUC_scratch) / (T · (expert − random)).
* :func:`forward_transfer` — FT = (AUC − AUC_b) / (1 − AUC_b) on expert-normalised curves
  (Wołczyk et al. 2021, "Continual World: a robotic benchmark for continual RL", NeurIPS).
* :func:`normalised_return_at` — expert-normalised return at fixed fractions of ``T``.
* :func:`normalised_area` — the expert-normalised area over ``[0, T]`` divided by ``T``, the
  per-run score that probabilities of improvement and performance profiles rank.

Aggregates over seeds (intervals, verdicts) live in :mod:`policyshare.stats`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from policyshare.metrics import auc

Curve = tuple[ArrayLike, ArrayLike]
"""``(env steps, mean return)``, each of shape ``(n,)``."""


@dataclass(frozen=True)
class Metric:
    """A metric's value, or why it has none.

    Attributes:
        value: the number (units are the metric's own), or ``None`` when undefined.
        why: ``None`` when defined; otherwise a short reason that is the same on every seed it
            applies to (``"scratch not clearly above random"``), so that tables can group seeds
            by it.
        detail: the figures behind ``why`` on this seed (optional), e.g. ``"scratch's mean return
            over the curve (0) is not above random + 0.1·(expert − random) = 1"``.
    """

    value: float | None
    why: str | None = None
    detail: str | None = None

    def __post_init__(self) -> None:
        if (self.value is None) == (self.why is None):
            raise ValueError("a Metric has either a value or a reason it is undefined, not both or neither")
        if self.value is not None and not np.isfinite(self.value):
            raise ValueError(f"a Metric's value must be finite, got {self.value}; give the reason instead")
        if self.value is not None and self.detail is not None:
            raise ValueError("a defined Metric has no detail of why it is undefined")

    @property
    def defined(self) -> bool:
        """Whether the metric has a value."""
        return self.value is not None

    @property
    def reason(self) -> str | None:
        """``why`` with its ``detail``, ``"why: detail"`` (``None`` when defined)."""
        if self.why is None:
            return None
        return f"{self.why}: {self.detail}" if self.detail else self.why

    @classmethod
    def undefined(cls, why: str, detail: str | None = None) -> Metric:
        """An undefined metric with its (short) reason and, optionally, this seed's figures."""
        return cls(None, why, detail)

    def __str__(self) -> str:
        return f"{self.value:.4g}" if self.value is not None else f"undefined ({self.reason})"


#: The short reasons (:attr:`Metric.why`) of this module.
NO_STEP_0 = "no step-0 evaluation"
SHORT_CURVE = "curve shorter than the budget"
EXPERT_NOT_ABOVE_RANDOM = "expert not above random"
SCRATCH_NEAR_RANDOM = "scratch not clearly above random"
SCRATCH_AREA = "scratch's area not positive"
BASELINE_AT_EXPERT = "baseline already at the expert"
OUTSIDE_CURVE = "outside the curve's evaluations"


def _checked(curve: Curve, name: str) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(curve[0], dtype=float)
    v = np.asarray(curve[1], dtype=float)
    if t.ndim != 1 or t.shape != v.shape or t.size < 2:
        raise ValueError(f"{name}: a learning curve needs >= 2 matching (env step, return) points, "
                         f"got shapes {t.shape} and {v.shape}")
    if not (np.isfinite(t).all() and np.isfinite(v).all()):
        raise ValueError(f"{name}: the learning curve holds non-finite env steps or returns")
    if not (np.diff(t) > 0).all():
        raise ValueError(f"{name}: env steps must be strictly increasing")
    return t, v


def _on_budget(curves: dict[str, Curve], budget: float | None
               ) -> tuple[float, np.ndarray, dict[str, np.ndarray]] | Metric:
    """Read every curve on ``[0, T]`` at the union of their evaluation steps.

    Returns:
        ``(T, steps, name → values)``, or an undefined :class:`Metric` saying why it cannot be
        done (a missing step-0 evaluation, a curve that stops before the budget).
    """
    checked = {name: _checked(c, name) for name, c in curves.items()}
    for name, (t, _) in checked.items():
        if t[0] != 0:
            return Metric.undefined(NO_STEP_0, f"{name}'s first evaluation is at {t[0]:g} env steps")
    T = min(t[-1] for t, _ in checked.values()) if budget is None else float(budget)
    if not T > 0:
        raise ValueError(f"the budget T must be > 0 env steps, got {T:g}")
    for name, (t, _) in checked.items():
        if t[-1] < T:
            return Metric.undefined(SHORT_CURVE, f"{name} stops at {t[-1]:g} env steps, before the budget T = {T:g}")
    steps = np.union1d(np.concatenate([t[t <= T] for t, _ in checked.values()]), [T])
    return T, steps, {name: np.interp(steps, t, v) for name, (t, v) in checked.items()}


def _gap(random: float, expert: float) -> float | Metric:
    gap = float(expert) - float(random)
    if not (np.isfinite(gap) and gap > 0):
        return Metric.undefined(EXPERT_NOT_ABOVE_RANDOM, f"expert return {expert:g} is not above random {random:g}")
    return gap


def transfer_percent(curve: Curve, scratch: Curve, random: float, expert: float, *,
                     budget: float | None = None, margin: float = 0.1) -> Metric:
    """The paper's transfer %: 100 · AUC(curve) / AUC(scratch) (Rusu et al. 2016, Table 1).

    Areas are of raw mean returns over ``[0, T]`` env steps; 100 % means no better than
    training from scratch. The ratio means something only when scratch's area is clearly that
    of a learner, so it is defined only where scratch's mean return over the curve,
    ``AUC_scratch / T``, exceeds ``random + margin · (expert − random)`` and ``AUC_scratch > 0``
    (a ratio of areas of raw returns is meaningless when the denominator is not positive).

    Args:
        curve: the method's curve, ``(env steps, mean return)``, shapes ``(n,)``.
        scratch: from scratch on the same seed, ``(env steps, mean return)``, shapes ``(m,)``.
        random: the random policy's mean return on the task.
        expert: the expert's mean return on the task.
        budget: ``T`` in env steps; ``None`` reads both curves up to where the shorter ends.
        margin: how far above random scratch's mean return must be, as a fraction of
            ``expert − random``.

    Returns:
        The percentage, or undefined with the reason (:data:`SCRATCH_NEAR_RANDOM`,
        :data:`SCRATCH_AREA`, :data:`EXPERT_NOT_ABOVE_RANDOM`, :data:`NO_STEP_0`,
        :data:`SHORT_CURVE`) and this seed's figures.

    Raises:
        ValueError: a malformed curve (mismatched shapes, < 2 points, non-finite values, env
            steps not increasing) or a non-positive budget.
    """
    gap = _gap(random, expert)
    if isinstance(gap, Metric):
        return gap
    read = _on_budget({"curve": curve, "scratch": scratch}, budget)
    if isinstance(read, Metric):
        return read
    T, steps, v = read
    a, a_s = auc(steps, v["curve"]), auc(steps, v["scratch"])
    floor = random + margin * gap
    if not a_s / T > floor:
        return Metric.undefined(SCRATCH_NEAR_RANDOM, f"scratch's mean return over the curve ({a_s / T:.3g}) is not "
                                f"above random + {margin:g}·(expert − random) = {floor:.3g}")
    if not a_s > 0:
        return Metric.undefined(SCRATCH_AREA, f"scratch's area ({a_s:.3g}) is not positive, so a ratio of areas "
                                "is meaningless")
    return Metric(100.0 * a / a_s)


def normalised_area(curve: Curve, random: float, expert: float, *, budget: float | None = None) -> Metric:
    """The expert-normalised area ``(1/T) ∫_0^T (return − random) / (expert − random) dt``.

    The mean expert-normalised return over the budget (0: random throughout, 1: expert from the
    first env step): Continual World's ``AUC_i`` (Wołczyk et al. 2021) on returns normalised as
    Parisotto et al. 2016 do. It is the per-run score behind :func:`normalised_area_gain` (the
    paired difference of two such areas) and :func:`forward_transfer`, and the score that
    :mod:`policyshare.comparison` ranks runs by for the probability of improvement and the
    performance profiles.

    Args:
        curve: ``(env steps, mean return)``, shapes ``(n,)``, starting at env step 0.
        random: the random policy's mean return on the task.
        expert: the expert's mean return on the task.
        budget: ``T`` in env steps; ``None`` is the curve's last evaluation.

    Returns:
        The area (dimensionless), or undefined with the reason (:data:`EXPERT_NOT_ABOVE_RANDOM`,
        :data:`NO_STEP_0`, :data:`SHORT_CURVE`).

    Raises:
        ValueError: a malformed curve or a non-positive budget (see :func:`transfer_percent`).
    """
    gap = _gap(random, expert)
    if isinstance(gap, Metric):
        return gap
    read = _on_budget({"curve": curve}, budget)
    if isinstance(read, Metric):
        return read
    T, steps, v = read
    return Metric(auc(steps, (v["curve"] - random) / gap) / T)


def normalised_area_gain(curve: Curve, scratch: Curve, random: float, expert: float, *,
                         budget: float | None = None) -> Metric:
    """(AUC − AUC_scratch) / (T · (expert − random)), per seed.

    The area between the two curves over ``[0, T]`` env steps in units of "expert − random held
    for the whole budget": 0 is no gain, 1 is the gap between random and expert closed from the
    first env step on. Unlike :func:`transfer_percent` it is defined whatever scratch learns.
    It equals the difference of the two curves' :func:`normalised_area`. (The difference form of
    the "total reward" / area measures surveyed by Taylor & Stone 2009, JMLR 10, "Transfer
    learning for RL domains", normalised by the expert's margin over random as
    :func:`policyshare.metrics.expert_normalised` is.)

    Args:
        curve: the method's curve, ``(env steps, mean return)``, shapes ``(n,)``.
        scratch: from scratch on the same seed, ``(env steps, mean return)``, shapes ``(m,)``.
        random: the random policy's mean return on the task.
        expert: the expert's mean return on the task.
        budget: ``T`` in env steps; ``None`` reads both curves up to where the shorter ends.

    Returns:
        The gain (dimensionless), or undefined with the reason (:data:`EXPERT_NOT_ABOVE_RANDOM`,
        :data:`NO_STEP_0`, :data:`SHORT_CURVE`).

    Raises:
        ValueError: a malformed curve or a non-positive budget (see :func:`transfer_percent`).
    """
    gap = _gap(random, expert)
    if isinstance(gap, Metric):
        return gap
    read = _on_budget({"curve": curve, "scratch": scratch}, budget)
    if isinstance(read, Metric):
        return read
    T, steps, v = read
    return Metric((auc(steps, v["curve"]) - auc(steps, v["scratch"])) / (T * gap))


def forward_transfer(curve: Curve, baseline: Curve, random: float, expert: float, *,
                     budget: float | None = None) -> Metric:
    """Forward transfer FT = (AUC − AUC_b) / (1 − AUC_b) (Wołczyk et al. 2021, Continual World).

    Continual World's ``FT_i := (AUC_i − AUC_i^b) / (1 − AUC_i^b)`` with
    ``AUC_i = (1/Δ) ∫ p_i(t) dt`` over the task's budget Δ and ``b`` the reference trained from
    scratch.

    Both curves are first expert-normalised, ``(return − random) / (expert − random)``, and
    each area is divided by ``T`` (env steps), so an area lies in ``[0, 1]`` when its curve does:
    ``AUC = (1/T) ∫_0^T normalised return`` (:func:`normalised_area`). FT is the share of the
    room the baseline left below the expert (``1 − AUC_b``) that the method gains: 0 is none, 1
    is expert from the first step, negative is harm. Continual World's curves are success rates
    in ``[0, 1]``; normalised returns may leave that range (a method above the expert, a scratch
    run below random), so FT can exceed 1 or fall below −1; nothing is clipped.

    When ``AUC_b >= 1`` the baseline is already at the expert on average over the budget:
    there is no room to transfer into and the ratio is undefined (reason given).

    Args:
        curve: the method's curve, ``(env steps, mean return)``, shapes ``(n,)``.
        baseline: the reference (from scratch on the same seed), same form, shapes ``(m,)``.
        random: the random policy's mean return on the task.
        expert: the expert's mean return on the task.
        budget: ``T`` in env steps; ``None`` reads both curves up to where the shorter ends.

    Returns:
        FT (dimensionless), or undefined with the reason (:data:`BASELINE_AT_EXPERT`,
        :data:`EXPERT_NOT_ABOVE_RANDOM`, :data:`NO_STEP_0`, :data:`SHORT_CURVE`).

    Raises:
        ValueError: a malformed curve or a non-positive budget (see :func:`transfer_percent`).
    """
    gap = _gap(random, expert)
    if isinstance(gap, Metric):
        return gap
    read = _on_budget({"curve": curve, "baseline": baseline}, budget)
    if isinstance(read, Metric):
        return read
    T, steps, v = read
    a = auc(steps, (v["curve"] - random) / gap) / T
    a_b = auc(steps, (v["baseline"] - random) / gap) / T
    if a_b >= 1:
        return Metric.undefined(BASELINE_AT_EXPERT, f"the baseline's normalised area AUC_b = {a_b:.3g} >= 1: it is "
                                "at the expert already, no room for forward transfer")
    return Metric((a - a_b) / (1 - a_b))


def normalised_return_at(curve: Curve, random: float, expert: float,
                         fractions: Sequence[float] = (0.1, 0.5, 1.0), *,
                         budget: float | None = None) -> dict[float, Metric]:
    """Expert-normalised return ``(return − random) / (expert − random)`` at fractions of the budget.

    The curve is read at ``f · T`` env steps for each fraction ``f``, interpolating linearly
    between evaluations (Parisotto et al. 2016 for the normalisation).

    Args:
        curve: ``(env steps, mean return)``, shapes ``(n,)``.
        random: the random policy's mean return on the task.
        expert: the expert's mean return on the task.
        fractions: fractions of ``T`` in ``[0, 1]``.
        budget: ``T`` in env steps; ``None`` is the curve's last evaluation.

    Returns:
        fraction → normalised return, or undefined with the reason
        (:data:`EXPERT_NOT_ABOVE_RANDOM`, :data:`OUTSIDE_CURVE`).

    Raises:
        ValueError: a malformed curve, a non-positive budget, or a fraction outside ``[0, 1]``.
    """
    t, v = _checked(curve, "curve")
    T = float(t[-1]) if budget is None else float(budget)
    if not T > 0:
        raise ValueError(f"the budget T must be > 0 env steps, got {T:g}")
    bad = [f for f in fractions if not 0 <= f <= 1]
    if bad:
        raise ValueError(f"fractions of the budget must lie in [0, 1], got {bad}")
    gap = _gap(random, expert)
    out: dict[float, Metric] = {}
    for f in fractions:
        step = f * T
        if isinstance(gap, Metric):
            out[f] = gap
        elif not t[0] <= step <= t[-1]:
            out[f] = Metric.undefined(OUTSIDE_CURVE, f"{step:g} env steps lies outside the curve's evaluations "
                                      f"({t[0]:g} to {t[-1]:g})")
        else:
            out[f] = Metric((float(np.interp(step, t, v)) - random) / gap)
    return out
