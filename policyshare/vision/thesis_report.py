"""The thesis sections of ``report.md`` and the guidance-curve figure, from :func:`~.thesis.aggregate`'s output.

Tables: generation per trunk (best scale with precision and recall, at matched recall) with intervals over seeds;
paired differences between trunks; few-label probes per feature source; the battle table in
Im et al. 2016's format (battle, r_test, r_sample, winner); the two verdicts.
Figure: ``guidance_curves.png`` — judged accuracy against the guidance scale and against recall
(the measure matched), mean over seeds, one line per trunk.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from policyshare.vision.config import VisionConfig
from policyshare.vision.scales import mean_curve
from policyshare.vision.seeds import MIN_SEEDS_FOR_CI
from policyshare.vision.thesis import DENOISER, summary_from_dict


def _f(d: Mapping[str, Any] | None, pct: bool = True) -> str:
    return summary_from_dict(d).format(pct) if d else "—"


def _pp(d: Mapping[str, Any] | None) -> str:
    return summary_from_dict(d).format(points=True) if d else "—"


def _ratio(v: float) -> str:
    return f"{v:.2f}" if math.isfinite(v) else str(v)


def interval_note(n_seeds: int, confidence: float) -> str:
    """What the brackets mean for this number of seeds."""
    if n_seeds == 1:
        return "One seed: no interval (run with `--seeds 0-4` for intervals)."
    if n_seeds < MIN_SEEDS_FOR_CI:
        return (f"{n_seeds} seeds: mean and range (min–max), not a confidence interval; no verdict is drawn from "
                f"fewer than {MIN_SEEDS_FOR_CI} seeds.")
    return (f"{n_seeds} seeds: mean [{100 * confidence:.0f} % percentile-bootstrap interval over seeds] "
            "(scipy.stats.bootstrap).")


def thesis_markdown(thesis: Mapping[str, Any], cfg: VisionConfig, plot: str | None = "guidance_curves.png") -> str:
    """The thesis sections of ``report.md``."""
    t = cfg.thesis
    seeds = thesis["seeds"]
    gen = thesis["generation"]
    labels = list(gen)
    pre = ", ".join(str(c) for c in t.pretrain_classes)
    tgt = ", ".join(str(c) for c in t.target_classes)
    lines = [
        "## The thesis in both directions",
        "",
        f"Seeds {', '.join(str(s) for s in seeds)}. {interval_note(len(seeds), t.confidence)} `classify` is trained "
        f"with the labels of classes {pre} only and `autoencoder` on the same images without labels; generation and "
        f"few-label probes use the other classes ({tgt}), so no score comes from having seen their labels. The "
        "diffusion prior (one per seed, shared by every trunk of that seed) learns from every training image "
        "without labels.",
        "",
        "### Verdicts",
        "",
    ]
    names = {"classification_to_generation": "Classification → generation",
             "generation_to_classification": "Generation → classification"}
    for key, v in thesis["verdicts"].items():
        lines.append(f"* **{names[key]}: {v['verdict']}.** Claim: {v['claim']}. {v['reason']}.")
    lines += ["", "### Classification → generation: guided samples of the unseen classes", "",
              f"Every trunk's noisy classifier guides the seed's prior at scales {t.scales}; *best* is the swept scale "
              "with the highest judged accuracy (the same optimistic choice for every trunk); *matched* reads the "
              f"curve where the samples' recall falls to {t.matched_diversity:g} × the unguided prior's "
              "(interpolated; — where no scale gets there). Precision and recall (Kynkäänniemi et al. 2019; k = 3 "
              "nearest neighbours, per class, under a held-out feature network): precision is the share of samples "
              "that lie on the real digits' manifold, recall the share of real test digits the samples' manifold "
              "covers. Relative diversity (mean pairwise distance, 1 = real digits) is shown beside them; it counts "
              "noise as diversity (samples that break down read as *more* diverse), which is why matching uses "
              "recall.", "",
              "| trunk | best s (most often) | judged acc. at best s | CAS at best s | precision at best s | "
              "recall at best s | rel. diversity at best s | judged acc. at matched recall | CAS at matched recall |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label in labels:
        g = gen[label]
        lines.append(f"| `{label}` | {thesis['best_scales'].get(label)} | {_f(g['best_accuracy'])} | "
                     f"{_f(g['best_cas'])} | {_f(g.get('best_precision'))} | {_f(g.get('best_recall'))} | "
                     f"{_f(g['best_diversity'], False)} | {_f(g['matched_accuracy'])} | {_f(g['matched_cas'])} |")
    lines += ["", "Paired differences (same seed, same prior, same sampling noise; percentage points):", "",
              "| difference | judged acc. at matched recall | judged acc. at best s | CAS at best s |",
              "|---|---:|---:|---:|"]
    pairs = thesis["generation_pairs"]
    for name in pairs["matched_accuracy"]:
        lines.append(f"| {name} | {_pp(pairs['matched_accuracy'][name])} | {_pp(pairs['best_accuracy'][name])} | "
                     f"{_pp(pairs['best_cas'][name])} |")
    if plot:
        lines += ["", f"![guidance curves]({plot})"]
    shots = [str(k) for k in t.shots]
    lines += ["", "### Generation → classification: few-label probes on the unseen classes", "",
              f"Logistic regression on frozen features from {', '.join(shots)} labelled training images per class, "
              f"{t.probe_repeats} draws per seed (the same draws for every source); test accuracy on classes {tgt}. "
              f"`{DENOISER}`: the seed's diffusion prior's last hidden layer at timestep index {t.denoiser_timestep}.",
              "", "| features | " + " | ".join(f"{k} per class" for k in shots) + " |",
              "|---|" + "---:|" * len(shots)]
    for src, row in thesis["few_label"].items():
        lines.append(f"| `{src}` | " + " | ".join(_f(row[k]) for k in shots) + " |")
    lines += ["", "Paired differences (percentage points):", "",
              "| difference | " + " | ".join(f"{k}/class" for k in shots) + " |", "|---|" + "---:|" * len(shots)]
    fp = thesis["few_label_pairs"]
    for name in fp[shots[0]]:
        lines.append(f"| {name} | " + " | ".join(_pp(fp[k][name]) for k in shots) + " |")
    lines += ["", "### Battles (Generative Adversarial Metric, Im et al. 2016)", "",
              "Each trunk's real-vs-generated discriminator (a linear head on the trunk, trained against its own "
              "samples at its best scale) judges the other's samples. r_test = ε(D_A; real test) / ε(D_B; real test), "
              "r_sample = ε(D_A; B's samples) / ε(D_B; A's samples); A wins when r_sample < 1, B when r_sample > 1, "
              f"only if |r_test − 1| ≤ {t.battle_tolerance:g}, else a tie. Error counts pooled over seeds "
              "(Jeffreys-smoothed rates); the last column counts the winners of single seeds.", "",
              "| battle | r_test | r_sample | winner | winners per seed |", "|---|---:|---:|---|---|"]
    for b in thesis["battles"]:
        per = ", ".join(f"{k} {v}" for k, v in sorted(b["seed_winners"].items()))
        lines.append(f"| {b['battle']} | {_ratio(b['r_test'])} | {_ratio(b['r_sample'])} | {b['winner']} | {per} |")
    lines.append("")
    return "\n".join(lines)


def plot_guidance_curves(per_seed: Sequence[Mapping[str, Any]], labels: Sequence[str], path: Path) -> Path:
    """``path``: judged accuracy vs guidance scale and vs recall, mean over seeds, one line per trunk."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from policyshare.comparison import save_figure

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9.0, 3.6))
    for label in labels:
        curves = [r["trunks"][label]["curve"] for r in per_seed]
        scales, acc = mean_curve(curves, "accuracy")
        _, recall = mean_curve(curves, "recall")
        ax1.plot(scales, acc, marker="o", label=label)
        ax2.plot(recall, acc, marker="o", label=label)
    ax1.set_xscale("symlog", linthresh=1.0)
    ax1.set_xlabel("guidance scale s")
    ax1.set_ylabel("judged accuracy (unseen classes)")
    ax2.set_xlabel("recall (share of real digits covered; held-out features)")
    ax2.invert_xaxis()
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    fig.suptitle(f"Guidance curves, mean over {len(per_seed)} seed(s)", fontsize=10)
    return save_figure(fig, path)
