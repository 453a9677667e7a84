"""Guidance at its best for every trunk: a sweep over the guidance scale and its accuracy–diversity curve.

The size of ``∇_x log p_φ(y | x_t, t)`` differs from trunk to trunk, so one fixed scale ``s``
(Dhariwal & Nichol 2021, Algorithm 1) favours the trunks whose gradient happens to suit it.
Instead every trunk samples at every scale of ``thesis.scales`` — the same prior, the same
seed, hence at ``s = 0`` exactly the same samples — and is compared

* at its **best scale**: the swept scale with the highest judged accuracy (a maximum over
  the same swept scales for every trunk, so equally optimistic for all), and
* at **matched diversity**: the judged accuracy where the curve's *recall* (Kynkäänniemi et al.
  2019: the share of real images of the class that the samples cover) falls to
  ``thesis.matched_diversity`` × the unguided prior's, linearly interpolated between the two
  swept scales around it (``nan`` — "not reached" — when even the largest scale keeps more).
  Recall, not the mean pairwise distance, because the distance counts noise as diversity:
  samples that break down into noise at large scales read as more diverse than real digits,
  but cover none of them.

Per point: judged accuracy (the independent SVM, :class:`~policyshare.vision.evaluators.DigitJudge`),
classification accuracy score (Ravuri & Vinyals 2019), relative diversity (mean pairwise
distance) and precision / recall, all under the held-out feature network (:mod:`.diversity`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from policyshare.errors import NumericalError
from policyshare.vision.data import ImageSet
from policyshare.vision.diffusion import DDPM
from policyshare.vision.diversity import FeatureNet, class_precision_recall, diversity
from policyshare.vision.evaluators import DigitJudge, classification_accuracy_score
from policyshare.vision.guidance import NoisyClassifier, Samples, generate


@dataclass
class Judges:
    """What scores generated samples of the target classes; none of it saw a trunk.

    Attributes:
        judge: the independent SVM on all classes (eval split).
        features: the held-out feature network (eval split).
        test: real test images of the target classes, with their original labels (CAS's test set).
        target_classes: original label index of each generated class ``0 … k−1``.
        real_diversity: :func:`~policyshare.vision.diversity.diversity` of ``test`` (the unit of
            relative diversity).
        judge_c: the SVM's C for CAS.
        real_features: the feature network's features of ``test`` ``(n, hidden)`` (computed when
            not given): the real manifold of precision and recall.
    """

    judge: DigitJudge
    features: FeatureNet
    test: ImageSet
    target_classes: list[int]
    real_diversity: float
    judge_c: float = 10.0
    real_features: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.real_features is None:
            self.real_features = self.features.features(self.test.images)

    def score(self, samples: Samples) -> dict[str, float]:
        """``{"accuracy", "cas", "diversity", "precision", "recall"}`` of samples whose labels index ``target_classes``.

        ``diversity`` is relative to real test images; ``precision`` and ``recall`` are per class
        against the real test images of that class (:func:`~policyshare.vision.diversity.class_precision_recall`).
        """
        labels = torch.tensor(self.target_classes)[samples.labels]
        feats = self.features.features(samples.images)
        assert self.real_features is not None
        precision, recall = class_precision_recall(self.real_features, self.test.labels.numpy(), feats,
                                                   labels.numpy())
        return {"accuracy": self.judge.accuracy(samples.images, labels),
                "cas": classification_accuracy_score(samples.images, labels, self.test, self.judge_c),
                "diversity": diversity(feats, labels.numpy()) / self.real_diversity,
                "precision": precision, "recall": recall}


def sweep(prior: DDPM, classifier: NoisyClassifier, judges: Judges, scales: Sequence[float], per_class: int,
          seed: int) -> tuple[list[dict[str, Any]], dict[float, Samples]]:
    """Sample at every scale with the same seed and score each set.

    Args:
        prior: the seed's diffusion prior.
        classifier: the trunk's noisy classifier over the target classes.
        judges: the scorers.
        scales: guidance scales (0: the unguided prior).
        per_class: samples per target class and scale.
        seed: sampling seed (the same for every scale and trunk).

    Returns:
        ``(curve, samples)``: one point ``{"scale", "accuracy", "cas", "diversity"}`` per scale in
        increasing order (``{"scale", "error"}`` where sampling broke down), and the samples per scale.
    """
    curve: list[dict[str, Any]] = []
    samples: dict[float, Samples] = {}
    n_classes = len(judges.target_classes)
    for s in sorted(float(x) for x in scales):
        try:
            out = generate(prior, classifier, n_classes, per_class, s, seed)
        except NumericalError as e:
            curve.append({"scale": s, "error": str(e)})
            continue
        samples[s] = out
        curve.append({"scale": s, **judges.score(out)})
    return curve, samples


def _ok(curve: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [p for p in curve if "error" not in p and math.isfinite(float(p["accuracy"]))]


def best_point(curve: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The point of highest judged accuracy (the smallest such scale on ties); ``{}`` if none."""
    ok = _ok(curve)
    if not ok:
        return {}
    return dict(max(ok, key=lambda p: (float(p["accuracy"]), -float(p["scale"]))))


def at_diversity(curve: Sequence[Mapping[str, Any]], target: float, key: str = "accuracy",
                 measure: str = "diversity") -> float:
    """``key`` where the curve's ``measure`` first falls to ``target`` (linear in ``measure`` between scales).

    The curve is walked in increasing scale. If the first point is already at or below
    ``target`` its value is returned; if no point reaches it, ``nan`` (not reached).

    Args:
        curve: points ``{"scale", measure, key}``.
        target: the level of ``measure`` (its units: relative diversity, or a share for recall).
        key: the figure to read (``accuracy`` or ``cas``).
        measure: what is matched: ``recall`` (as ``vision compare`` does) or ``diversity``.
    """
    ok = sorted((p for p in _ok(curve) if math.isfinite(float(p[measure]))), key=lambda p: float(p["scale"]))
    prev: Mapping[str, Any] | None = None
    for p in ok:
        d = float(p[measure])
        if d <= target:
            if prev is None:
                return float(p[key])
            d0 = float(prev[measure])
            w = 1.0 if d0 == d else (d0 - target) / (d0 - d)
            return float(prev[key]) + w * (float(p[key]) - float(prev[key]))
        prev = p
    return math.nan


def matched_target(curve: Sequence[Mapping[str, Any]], fraction: float, measure: str = "diversity") -> float:
    """``fraction`` × ``measure`` at scale 0 (the unguided prior); ``nan`` without a scale-0 point."""
    zero = [p for p in _ok(curve) if float(p["scale"]) == 0.0]
    return fraction * float(zero[0][measure]) if zero else math.nan


def mean_curve(curves: Sequence[Sequence[Mapping[str, Any]]], key: str) -> tuple[list[float], list[float]]:
    """Scales and the mean of ``key`` over seeds at each (points that broke down are left out)."""
    by: dict[float, list[float]] = {}
    for c in curves:
        for p in _ok(c):
            by.setdefault(float(p["scale"]), []).append(float(p[key]))
    scales = sorted(by)
    return scales, [float(np.mean(by[s])) for s in scales]
