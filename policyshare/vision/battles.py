"""Generator battles: the Generative Adversarial Metric (GAM) of Im, Kim, Jiang & Memisevic 2016.

"Generating images with recurrent adversarial networks" (arXiv 1602.05110, Sec. 4) compares two
generative adversarial models ``M1 = (G1, D1)`` and ``M2 = (G2, D2)`` by letting each
discriminator judge the *other's* samples:

* ``r_test = ε(D1; x_test) / ε(D2; x_test)`` — the ratio of the discriminators' error rates
  on real test data (a real image called generated is an error);
* ``r_sample = ε(D1; G2(z)) / ε(D2; G1(z))`` — the ratio of their error rates on the
  opponent's samples (a generated image called real is an error).

``M1`` wins when ``r_sample < 1`` and ``r_test ≈ 1`` (its discriminator spots the opponent's
samples more often than the opponent's spots its own, while both judge real data alike);
``M2`` wins when ``r_sample > 1`` and ``r_test ≈ 1``; otherwise it is a tie. ``r_test ≈ 1``
is what makes ``r_sample`` meaningful: a discriminator that calls everything "generated" spots
every sample but errs on real data. Here "≈" is ``|r_test − 1| <= tolerance``
(``thesis.battle_tolerance``, default 0.2 — the error rates come from a few hundred images).

Here a model is a trunk: ``G`` is the prior guided by the trunk's noisy classifier at the
trunk's best scale, and ``D`` is a real-vs-generated linear head on the same frozen trunk
(:func:`~policyshare.vision.probe.linear_probe`), trained on real training images of the target
classes against the trunk's *own* guided samples. Error rates are smoothed as
``(errors + ½) / (n + 1)`` (Jeffreys) so a discriminator without errors gives a finite ratio.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal

import torch

from policyshare.trunks import Trunk
from policyshare.vision.config import VisionConfig
from policyshare.vision.data import ImageSet
from policyshare.vision.probe import TrunkClassifier, linear_probe, predict

Winner = Literal["A", "B", "tie"]

#: Class indices of the discriminator's two classes.
FAKE, REAL = 0, 1


def error_rate(errors: int, n: int) -> float:
    """Jeffreys-smoothed error rate ``(errors + ½) / (n + 1)``; finite and positive for any count."""
    return (errors + 0.5) / (n + 1)


def gam_ratios(test_error_a: float, test_error_b: float, sample_error_a: float,
               sample_error_b: float) -> tuple[float, float]:
    """``(r_test, r_sample)`` of a battle A vs B (Im et al. 2016, Sec. 4).

    Args:
        test_error_a: ε(D_A; x_test), D_A's error rate on real test images.
        test_error_b: ε(D_B; x_test).
        sample_error_a: ε(D_A; G_B(z)), D_A's error rate on B's samples.
        sample_error_b: ε(D_B; G_A(z)), D_B's error rate on A's samples.

    Returns:
        ``r_test = test_error_a / test_error_b`` and ``r_sample = sample_error_a / sample_error_b``
        (``inf`` for a zero denominator with a positive numerator, ``nan`` for 0/0).
    """

    def ratio(x: float, y: float) -> float:
        if y == 0:
            return math.nan if x == 0 else math.inf
        return x / y

    return ratio(test_error_a, test_error_b), ratio(sample_error_a, sample_error_b)


def battle_winner(r_test: float, r_sample: float, tolerance: float = 0.2) -> Winner:
    """``A`` if ``r_sample < 1``, ``B`` if ``r_sample > 1`` — only when ``|r_test − 1| <= tolerance``; else ``tie``."""
    if not (math.isfinite(r_test) and abs(r_test - 1.0) <= tolerance) or math.isnan(r_sample):
        return "tie"
    if r_sample < 1.0:
        return "A"
    if r_sample > 1.0:
        return "B"
    return "tie"


class Discriminator:
    """A real-vs-generated linear head on a frozen trunk (logistic regression on its features).

    Args:
        trunk: the trunk (frozen in place).
        real: real training images (label ignored).
        fake: the trunk's own guided samples ``(n, C, H, W)`` in [0, 1].
        cfg: ``probe`` (layer, λ, iterations) and ``trunk`` (alignment, fit).
        seed: head initialisation seed.

    Raises:
        UserError: unknown ``probe.layer``.
    """

    def __init__(self, trunk: Trunk, real: ImageSet, fake: torch.Tensor, cfg: VisionConfig, seed: int = 0) -> None:
        images = torch.cat([fake, real.images])
        labels = torch.cat([torch.full((len(fake),), FAKE), torch.full((len(real),), REAL)])
        data = ImageSet(images, labels.long(), ["generated", "real"], "battle")
        probe = replace(cfg.probe, max_iter=min(cfg.probe.max_iter, 100))
        _, self.model = linear_probe(trunk, data, data, probe, cfg.trunk, seed)

    @property
    def classifier(self) -> TrunkClassifier:
        """The fitted classifier (logits: generated, real)."""
        return self.model

    def errors_on_real(self, images: torch.Tensor) -> int:
        """How many real ``images`` it calls generated."""
        return int((predict(self.model, images) == FAKE).sum())

    def errors_on_generated(self, images: torch.Tensor) -> int:
        """How many generated ``images`` it calls real."""
        return int((predict(self.model, images) == REAL).sum())


def seed_counts(discriminators: Mapping[str, Discriminator], samples: Mapping[str, torch.Tensor],
                test: torch.Tensor) -> dict[str, Any]:
    """Error counts of one seed: every discriminator on real test images and on every opponent's samples.

    Args:
        discriminators: trunk label → its discriminator.
        samples: trunk label → its guided samples (not those its discriminator trained on is fine:
            a discriminator never judges its own generator here).
        test: real test images of the target classes.

    Returns:
        ``{"test": {A: [errors, n]}, "sample": {"A|B": [errors of D_A on G_B, n]}}``.
    """
    out: dict[str, Any] = {"test": {}, "sample": {}}
    for a, d in discriminators.items():
        out["test"][a] = [d.errors_on_real(test), len(test)]
        for b, s in samples.items():
            if a != b:
                out["sample"][f"{a}|{b}"] = [d.errors_on_generated(s), len(s)]
    return out


def battle_table(per_seed: Sequence[Mapping[str, Any]], labels: Sequence[str],
                 tolerance: float) -> list[dict[str, Any]]:
    """Every pair's battle, error counts pooled over seeds, plus the winner of each seed.

    Args:
        per_seed: :func:`seed_counts` of each seed.
        labels: trunk labels (battles in this order: each pair once).
        tolerance: of ``r_test ≈ 1``.

    Returns:
        One row per pair: ``{"battle": "A vs B", "a", "b", "r_test", "r_sample", "winner"`` (a label or
        ``tie``), ``"seed_winners": {label or "tie": count}}``.
    """
    rows: list[dict[str, Any]] = []
    for a, b in itertools.combinations(labels, 2):
        pooled = {"ta": [0, 0], "tb": [0, 0], "sa": [0, 0], "sb": [0, 0]}
        seed_winners: dict[str, int] = {}
        for c in per_seed:
            if a not in c["test"] or b not in c["test"]:
                continue
            parts = {"ta": c["test"][a], "tb": c["test"][b], "sa": c["sample"][f"{a}|{b}"],
                     "sb": c["sample"][f"{b}|{a}"]}
            for k, (e, n) in parts.items():
                pooled[k][0] += e
                pooled[k][1] += n
            r = gam_ratios(*(error_rate(*parts[k]) for k in ("ta", "tb", "sa", "sb")))
            w = battle_winner(*r, tolerance)
            key = {"A": a, "B": b}.get(w, "tie")
            seed_winners[key] = seed_winners.get(key, 0) + 1
        if not seed_winners:
            continue
        r_test, r_sample = gam_ratios(*(error_rate(*pooled[k]) for k in ("ta", "tb", "sa", "sb")))
        w = battle_winner(r_test, r_sample, tolerance)
        rows.append({"battle": f"{a} vs {b}", "a": a, "b": b, "r_test": r_test, "r_sample": r_sample,
                     "winner": {"A": a, "B": b}.get(w, "tie"), "seed_winners": seed_winners,
                     "errors": {k: list(v) for k, v in pooled.items()}})
    return rows
