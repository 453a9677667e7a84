"""The thesis tested in both directions, over seeds (the generation side of ``vision compare``).

Per seed (:func:`run_seed`) — every part that depends on the seed is redrawn:

1. the diffusion prior of the seed (trained once per seed on every training image, cached,
   shared by every trunk of the seed: :func:`~policyshare.vision.diffusion.load_or_train_prior`);
2. each trunk: ``classify`` is trained with the labels of ``thesis.pretrain_classes`` only and
   ``autoencoder`` on the same images without labels (:func:`~policyshare.vision.pretrain.pretrain_trunk`);
   ``random`` and trunk files as they are;
3. **classification → generation**: a noisy classifier over ``thesis.target_classes`` on the
   frozen trunk guides the prior at every scale of ``thesis.scales`` (:mod:`.scales`): judged
   accuracy, CAS, diversity, precision and recall per scale; the trunk's best scale; accuracy at
   matched diversity (where recall falls to ``thesis.matched_diversity`` × the unguided prior's);
4. **generation → classification**: few-label probes on the target classes of each trunk's
   features and of the prior's denoiser (:mod:`.fewshot`);
5. **battles**: a real-vs-generated discriminator on each trunk against its own samples at
   its best scale, judging every other trunk's samples (:mod:`.battles`).

:func:`aggregate` turns the seeds into per-trunk summaries with intervals, paired differences
between trunks (:mod:`.seeds`), the battle table and one verdict per direction.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from policyshare.errors import UserError
from policyshare.trunks import Trunk
from policyshare.vision.battles import Discriminator, battle_table, seed_counts
from policyshare.vision.config import VisionConfig
from policyshare.vision.data import ImageSet, Splits
from policyshare.vision.diffusion import DDPM, cache_label, load_or_train_prior
from policyshare.vision.diversity import FeatureNet, diversity
from policyshare.vision.evaluators import DigitJudge
from policyshare.vision.fewshot import denoiser_features, probe_table, trunk_features
from policyshare.vision.guidance import Samples, clean_accuracy, train_noisy_classifier
from policyshare.vision.inputs import PRETRAINED_REFS, freeze, load_trunk_ref
from policyshare.vision.pretrain import pretrain_trunk
from policyshare.vision.scales import Judges, at_diversity, best_point, matched_target, sweep
from policyshare.vision.seeds import SeedSummary, paired_difference, summarise, verdict
from policyshare.vision.tb import ScalarLog, no_log

log = logging.getLogger(__name__)

#: Row label of the diffusion prior's denoiser in the few-label probe table.
DENOISER = "diffusion-denoiser"

#: Per-trunk generation figures summarised over seeds.
GENERATION_METRICS: tuple[str, ...] = ("best_accuracy", "best_cas", "best_diversity", "best_precision",
                                       "best_recall", "best_scale", "matched_accuracy", "matched_cas")

#: What "matched diversity" matches: recall (Kynkäänniemi et al. 2019), which noise does not raise.
MATCHED_MEASURE = "recall"


def restrict(data: ImageSet, classes: Sequence[int]) -> ImageSet:
    """The images of ``classes`` (label indices), relabelled ``0 … k−1`` in that order.

    Raises:
        UserError: a class index the data does not have, or a class without images.
    """
    n = len(data.classes)
    bad = [c for c in classes if c >= n]
    if bad:
        raise UserError(f"thesis classes {bad} do not exist: {data.name} has {n} classes (0–{n - 1}); set "
                        "thesis.pretrain_classes and thesis.target_classes to label indices it has")
    keep = torch.zeros(len(data), dtype=torch.bool)
    labels = data.labels.clone()
    for new, c in enumerate(classes):
        hit = data.labels == c
        if not bool(hit.any()):
            raise UserError(f"class {data.classes[c]!r} has no images in this split of {data.name}")
        keep |= hit
        labels[hit] = new
    return ImageSet(data.images[keep], labels[keep], [data.classes[c] for c in classes], data.name)


def check_classes(cfg: VisionConfig, n_classes: int, name: str) -> None:
    """Refuse thesis classes outside ``0 … n_classes − 1`` (before anything trains).

    Raises:
        UserError: naming the classes and the fix.
    """
    t = cfg.thesis
    bad = sorted(c for c in t.pretrain_classes + t.target_classes if c >= n_classes)
    if bad:
        raise UserError(f"thesis classes {bad} do not exist: {name} has {n_classes} classes (0–{n_classes - 1}); "
                        "set thesis.pretrain_classes and thesis.target_classes to label indices it has")


def make_judges(splits: Splits, cfg: VisionConfig, judge: DigitJudge | None = None) -> Judges:
    """The seed-independent scorers of the target classes (judge and feature network on the eval split)."""
    t = cfg.thesis
    test = splits.test.subset([i for i, y in enumerate(splits.test.labels.tolist()) if y in t.target_classes])
    features = FeatureNet(splits.eval, t.feature_hidden)
    return Judges(judge or DigitJudge(splits.eval, cfg.guidance.judge_c), features, test, list(t.target_classes),
                  diversity(features.features(test.images), test.labels.numpy()), cfg.guidance.judge_c)


@dataclass
class SeedRun:
    """One seed's outcome.

    Attributes:
        result: plain data for ``metrics.json`` (``{"seed", "prior", "trunks", "denoiser", "battles"}``).
        trunks: label → the seed's (frozen) trunk.
        best_samples: label → the samples at the trunk's best scale.
        unguided: the samples at scale 0 (identical for every trunk of the seed).
        timing: wall-clock seconds (``prior_s``, ``<label>_s``) and whether the prior came from
            the cache — for ``timing.json``, kept out of ``result`` so same-seed reruns write the
            same ``metrics.json``.
    """

    result: dict[str, Any]
    timing: dict[str, Any] = field(default_factory=dict)
    trunks: dict[str, Trunk] = field(default_factory=dict)
    best_samples: dict[str, Samples] = field(default_factory=dict)
    unguided: Samples | None = None


def seed_trunk(ref: str, pretrain: ImageSet, cfg: VisionConfig, seed: int, log: ScalarLog = no_log) -> Trunk:
    """The seed's frozen trunk: ``classify``/``autoencoder`` trained on ``pretrain`` (the pretrain classes)."""
    if ref in PRETRAINED_REFS:
        trunk, _ = pretrain_trunk(ref, pretrain, cfg, seed, log)
        trunk.header = dict(trunk.header or {})
        trunk.header["source"] = {**trunk.header.get("source", {}), "classes": list(pretrain.classes)}
        return freeze(trunk)
    return freeze(load_trunk_ref(ref, cfg.trunk, seed))


def run_seed(refs: Sequence[str], labels: Sequence[str], cfg: VisionConfig, seed: int, splits: Splits,
             judges: Judges, prior: DDPM | None = None, run_dir: Path | None = None,
             logs: Mapping[str, ScalarLog] | None = None) -> SeedRun:
    """Everything seed-dependent of the thesis for one seed (see the module docstring).

    Args:
        refs: trunk references.
        labels: their unique labels.
        cfg: the config.
        seed: the seed.
        splits: the data.
        judges: :func:`make_judges`.
        prior: the seed's prior if already loaded; else loaded from the cache or trained.
        run_dir: the run folder the user chose, where priors are cached (see
            :func:`~policyshare.vision.diffusion.cache_dir`).
        logs: label → TensorBoard logger (pretraining and guide losses).

    Raises:
        UserError: bad classes or layer.
        NumericalError: diverging training.
    """
    t, g = cfg.thesis, cfg.guidance
    out: dict[str, Any] = {"seed": seed, "trunks": {}}
    run = SeedRun(out)
    if prior is None:
        log.info(f"seed {seed}: diffusion prior (cached per seed)")
        t0 = time.perf_counter()
        prior, path, cached = load_or_train_prior(splits.train.images, cfg.diffusion, seed, no_log, run_dir)
        out["prior"] = {"cache_file": cache_label(path, run_dir)}
        run.timing.update(prior_s=round(time.perf_counter() - t0, 1), prior_from_cache=cached)
    pretrain = restrict(splits.train, t.pretrain_classes)
    train_t, test_t = restrict(splits.train, t.target_classes), restrict(splits.test, t.target_classes)
    discriminators: dict[str, Discriminator] = {}
    for label, ref in zip(labels, refs):
        t0 = time.perf_counter()
        scalars = (logs or {}).get(label, no_log)
        log.info(f"seed {seed} · {label}: trunk, guidance sweep over scales {t.scales}, few-label probes, "
                 "discriminator")
        trunk = seed_trunk(ref, pretrain, cfg, seed, scalars)
        run.trunks[label] = trunk
        clf = train_noisy_classifier(trunk, train_t, prior.schedule, cfg.trunk, g, cfg.probe.layer, seed, scalars)
        curve, samples = sweep(prior, clf, judges, t.scales, g.per_class, seed)
        best = best_point(curve)
        target = matched_target(curve, t.matched_diversity, MATCHED_MEASURE)
        row: dict[str, Any] = {
            "curve": curve, "best": best, "matched_measure": MATCHED_MEASURE, "matched_level": target,
            "matched_accuracy": at_diversity(curve, target, "accuracy", MATCHED_MEASURE),
            "matched_cas": at_diversity(curve, target, "cas", MATCHED_MEASURE),
            "guide_clean_accuracy": clean_accuracy(clf, test_t),
            "few_label": probe_table(trunk_features(trunk, splits.train.channels, cfg.trunk, cfg.probe.layer, seed),
                                     train_t, test_t, t.shots, seed, t.probe_repeats)}
        if 0.0 in samples:
            run.unguided = samples[0.0]
        if best:
            run.best_samples[label] = samples[float(best["scale"])]
            discriminators[label] = Discriminator(trunk, train_t, samples[float(best["scale"])].images, cfg, seed)
        seconds = run.timing[f"{label}_s"] = round(time.perf_counter() - t0, 1)
        out["trunks"][label] = row
        log.info(f"seed {seed} · {label}: best s={best.get('scale')} accuracy {best.get('accuracy', math.nan):.3f}, "
                 f"at matched recall {row['matched_accuracy']:.3f}; {t.verdict_shots}-label probe "
                 f"{row['few_label'][str(t.verdict_shots)]:.3f} ({seconds:.0f} s)")
    out["denoiser"] = {"few_label": probe_table(denoiser_features(prior, t.denoiser_timestep), train_t, test_t,
                                                t.shots, seed, t.probe_repeats)}
    out["battles"] = seed_counts(discriminators, {k: s.images for k, s in run.best_samples.items()}, test_t.images)
    return run


# --------------------------------------------------------------------------------------------
# Over seeds


def _get(row: Mapping[str, Any], metric: str) -> float:
    best = row.get("best") or {}
    if metric.startswith("best_"):
        v = best.get(metric[5:])
    else:
        v = row.get(metric)
    return float(v) if isinstance(v, (int, float)) else math.nan


def aggregate(per_seed: Sequence[Mapping[str, Any]], labels: Sequence[str], cfg: VisionConfig) -> dict[str, Any]:
    """Intervals per trunk, paired differences, battles and verdicts from :func:`run_seed` results.

    Returns:
        ``{"seeds", "generation": {label: {metric: summary}}, "generation_pairs": {metric: {"A − B": summary}},
        "few_label": {source: {shots: summary}}, "few_label_pairs": {shots: {"A − B": summary}},
        "battles": [...], "verdicts": {"classification_to_generation", "generation_to_classification"},
        "best_scales": {label: most frequent best scale}}`` (summaries as plain data).
    """
    t = cfg.thesis
    reps, conf = t.bootstrap_reps, t.confidence

    def s(values: Sequence[float]) -> SeedSummary:
        return summarise(values, reps, conf)

    seeds = [int(r["seed"]) for r in per_seed]
    values = {label: {m: [_get(r["trunks"][label], m) for r in per_seed] for m in GENERATION_METRICS}
              for label in labels}
    generation = {label: {m: s(v) for m, v in values[label].items()} for label, v in values.items()}
    ordered = [(b, a) if b == "classify" else (a, b) for a, b in itertools.combinations(labels, 2)]
    pairs: dict[str, dict[str, SeedSummary]] = {}
    for m in ("matched_accuracy", "best_accuracy", "best_cas"):
        pairs[m] = {f"{a} − {b}": paired_difference(values[a][m], values[b][m], reps, conf) for a, b in ordered}
    sources = [*labels, DENOISER]
    probe_vals: dict[str, dict[str, list[float]]] = {}
    for src in sources:
        probe_vals[src] = {str(k): [float((r["denoiser"] if src == DENOISER else r["trunks"][src])["few_label"][str(k)])
                                    for r in per_seed] for k in t.shots}
    few = {src: {k: s(v) for k, v in probe_vals[src].items()} for src in sources}
    few_pairs = {str(k): {f"{a} − {b}": paired_difference(probe_vals[a][str(k)], probe_vals[b][str(k)], reps, conf)
                          for a in sources for b in sources if a != b and (a == "classify" or b == "random")}
                 for k in t.shots}
    best_scales = {label: Counter(v for v in values[label]["best_scale"] if math.isfinite(v)).most_common(1)
                   for label in labels}
    out = {"seeds": seeds,
           "generation": {k: {m: v.to_dict() for m, v in d.items()} for k, d in generation.items()},
           "generation_pairs": {m: {k: v.to_dict() for k, v in d.items()} for m, d in pairs.items()},
           "few_label": {k: {n: v.to_dict() for n, v in d.items()} for k, d in few.items()},
           "few_label_pairs": {n: {k: v.to_dict() for k, v in d.items()} for n, d in few_pairs.items()},
           "battles": battle_table([r["battles"] for r in per_seed], labels, t.battle_tolerance),
           "best_scales": {k: (v[0][0] if v else None) for k, v in best_scales.items()},
           "verdicts": verdicts(pairs["matched_accuracy"], few_pairs[str(t.verdict_shots)], labels, t.verdict_shots)}
    return out


def verdicts(generation_pairs: Mapping[str, SeedSummary], probe_pairs: Mapping[str, SeedSummary],
             labels: Sequence[str], shots: int) -> dict[str, dict[str, str]]:
    """One verdict per direction, from paired intervals (:func:`~policyshare.vision.seeds.verdict`).

    * classification → generation: the thesis holds when the ``classify`` trunk (trained on
      other classes) guides better, at matched diversity, than the ``autoencoder`` (same images,
      no labels) and the ``random`` trunk;
    * generation → classification: the thesis ("not the other way around") holds when the
      generatively trained features — the diffusion denoiser and the autoencoder — classify the
      new classes from ``shots`` labels each *worse* than the classification trunk.

    Returns:
        ``{direction: {"claim", "verdict", "reason"}}``.
    """
    def pick(pairs: Mapping[str, SeedSummary], others: Sequence[str]) -> dict[str, SeedSummary]:
        return {f"classify − {o}": pairs[f"classify − {o}"] for o in others if f"classify − {o}" in pairs}

    out: dict[str, dict[str, str]] = {}
    claims = {
        "classification_to_generation": (
            "the classification-trained trunk guides generation of unseen classes better than the autoencoder and "
            "the random trunk, at matched diversity", ["autoencoder", "random"], generation_pairs),
        "generation_to_classification": (
            f"generatively trained features (diffusion denoiser, autoencoder) do not classify unseen classes from "
            f"{shots} label(s) per class as well as the classification trunk does", [DENOISER, "autoencoder"],
            probe_pairs)}
    for key, (claim, others, pairs) in claims.items():
        if "classify" not in labels or not all(o == DENOISER or o in labels for o in others):
            out[key] = {"claim": claim, "verdict": "undecided",
                        "reason": "needs the classify, autoencoder and random trunks in --trunks"}
            continue
        v, reason = verdict(pick(pairs, others))
        out[key] = {"claim": claim, "verdict": v, "reason": reason}
    return out


def thesis_generation_row(thesis: Mapping[str, Any], first_seed: Mapping[str, Any], label: str) -> dict[str, Any]:
    """The thesis table's ``generate`` cell of a trunk: means over seeds at its best scale; the first seed's point."""
    g = thesis["generation"][label]

    def mean(metric: str) -> float:
        v = g[metric]["mean"]
        return math.nan if v is None else float(v)

    return {"scale": thesis["best_scales"].get(label), "accuracy": mean("best_accuracy"), "cas": mean("best_cas"),
            "diversity": mean("best_diversity"), "matched_accuracy": mean("matched_accuracy"),
            "n_seeds": len(thesis["seeds"]), "first_seed": first_seed.get("best", {}),
            "guide_clean_accuracy": first_seed.get("guide_clean_accuracy")}


def summary_from_dict(d: Mapping[str, Any]) -> SeedSummary:
    """A :class:`SeedSummary` back from its plain data (``None`` → ``nan``)."""
    def f(x: Any) -> float:
        return math.nan if x is None else float(x)

    return SeedSummary(f(d["mean"]), f(d["low"]), f(d["high"]), d["kind"], int(d["n"]), float(d["confidence"]),
                       [f(v) for v in d.get("values", [])])
