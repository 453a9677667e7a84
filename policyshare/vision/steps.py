"""A comparison's shared context and the per-trunk steps of ``vision compare`` and ``vision generate``.

:func:`prepare` loads the data, trains the independent judge, loads or trains the cached
diffusion prior and crops the textures once (:class:`Context`); the steps then score one trunk
each: :func:`probe_step` (linear probe), :func:`generation_step` (guided samples judged by the
independent SVM and by CAS) and :func:`unguided_step` (the prior alone, scale 0).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from policyshare.trunks import Trunk
from policyshare.vision.config import VisionConfig
from policyshare.vision.data import Splits, grid, label_rows, load_dataset, save_png, split, subsample
from policyshare.vision.diffusion import DDPM, load_or_train_prior
from policyshare.vision.evaluators import DigitJudge, classification_accuracy_score
from policyshare.vision.guidance import Samples, clean_accuracy, generate, train_noisy_classifier
from policyshare.vision.probe import linear_probe
from policyshare.vision.tb import VisionWriter, no_log
from policyshare.vision.texture_compare import load_textures

log = logging.getLogger(__name__)


@dataclass
class Context:
    """The trunk-independent parts of a comparison, prepared once.

    Attributes:
        cfg: the config.
        seed: the run seed.
        splits: train / eval / test splits of the labelled data.
        judge: the independent classifier (trained on ``splits.eval``), for generation.
        prior: the cached diffusion prior (``None`` when generation is not needed).
        prior_info: where the prior came from (cache file, whether cached).
        textures: ``{name: (source, reference)}`` crops, each ``(1, C, size, size)``.
        timing: wall-clock seconds (``prior_s``); kept out of ``metrics.json``.
    """

    cfg: VisionConfig
    seed: int
    splits: Splits
    judge: DigitJudge | None = None
    prior: DDPM | None = None
    prior_info: dict[str, Any] = field(default_factory=dict)
    textures: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)


def load_splits(cfg: VisionConfig) -> Splits:
    """The configured dataset, subsampled and split (split seed from the config, not the run seed).

    Raises:
        UserError: unknown dataset, unreadable files, or too few images per class.
    """
    d = cfg.data
    data = subsample(load_dataset(d.dataset, image_size=d.image_size, grayscale=d.grayscale), d.max_images,
                     d.split_seed)
    return split(data, d.train_fraction, d.eval_fraction, d.split_seed)


def prepare(cfg: VisionConfig, seed: int, *, generation: bool = True, textures: bool = True,
            writer: VisionWriter | None = None, run_dir: Path | None = None) -> Context:
    """Load data, train the judge, load or train the prior and crop the textures (one ``INFO`` line
    per stage on this module's logger).

    Args:
        cfg: the config.
        seed: the run seed.
        generation: train the judge and load or train the prior.
        textures: crop the textures.
        writer: TensorBoard writer of the prior's training loss.
        run_dir: the run folder the user chose (``--run-dir``), where the prior is cached unless
            ``diffusion.cache_dir`` is set (``None``: the shared default cache; see
            :func:`~policyshare.vision.diffusion.cache_dir`).

    Raises:
        UserError: bad data or texture sources.
        NumericalError: the prior's training diverged.
    """
    ctx = Context(cfg, seed, load_splits(cfg))
    if generation:
        ctx.judge = DigitJudge(ctx.splits.eval, cfg.guidance.judge_c)
        log.info("diffusion prior: loading from cache or training (once per config)")
        t0 = time.perf_counter()
        prior, path, cached = load_or_train_prior(ctx.splits.train.images, cfg.diffusion, seed,
                                                  writer.logger("prior") if writer else no_log, run_dir)
        ctx.prior = prior
        ctx.prior_info = {"cache_file": str(path), "from_cache": cached}
        ctx.timing["prior_s"] = round(time.perf_counter() - t0, 1)
    if textures:
        ctx.textures = load_textures(cfg)
    return ctx



@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads, then restore the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------------------------
# Per-trunk steps (also used by the single-purpose commands)


def probe_step(trunk: Trunk, ctx: Context, writer: VisionWriter | None = None) -> dict[str, Any]:
    """Linear-probe the frozen trunk; ``vision/probe/accuracy`` to TensorBoard.

    Raises:
        UserError: unknown ``probe.layer``.
    """
    result, _ = linear_probe(trunk, ctx.splits.train, ctx.splits.test, ctx.cfg.probe, ctx.cfg.trunk, ctx.seed)
    if writer:
        writer.scalar("probe/accuracy", result.accuracy)
    out = result.to_dict()
    out.pop("losses")
    return out


def samples_grid(samples: Samples, classes: Sequence[str], columns: int = 10, upscale: int = 4) -> torch.Tensor:
    """One row per class, the first ``columns`` samples of each, each row labelled with its class.

    Args:
        samples: ordered class by class, the same number per class.
        classes: class names, indexed by label (the labels written beside the rows).
        columns: samples shown per class.
        upscale: nearest-neighbour enlargement of the samples.

    Returns:
        ``(C, H', W')`` in [0, 1]: the enlarged grid with a label margin on its left.
    """
    n_classes = len(classes)
    per = len(samples.labels) // n_classes
    pick = torch.cat([torch.arange(k * per, k * per + min(columns, per)) for k in range(n_classes)])
    return label_rows(grid(samples.images[pick], min(columns, per)), [str(c) for c in classes], upscale)


def unguided_step(ctx: Context, out_dir: Path, writer: VisionWriter | None = None) -> dict[str, Any]:
    """Samples of the prior alone (scale 0): judge accuracy against arbitrary targets (chance) and CAS."""
    assert ctx.prior is not None and ctx.judge is not None, "prepare(generation=True) first"
    g = ctx.cfg.guidance
    n_classes = len(ctx.splits.train.classes)
    s = generate(ctx.prior, None, n_classes, g.per_class, 0.0, ctx.seed)
    image = samples_grid(s, ctx.splits.train.classes)
    save_png(out_dir / "unguided.png", image)
    acc = ctx.judge.accuracy(s.images, s.labels)
    cas = classification_accuracy_score(s.images, s.labels, ctx.splits.test, g.judge_c)
    if writer:
        writer.scalar("generate/accuracy", acc)
        writer.scalar("generate/cas", cas)
        writer.image("generate/samples", image)
    return {"scale": 0.0, "accuracy": acc, "cas": cas, "n_samples": len(s.labels)}


def generation_step(trunk: Trunk, ctx: Context, out_dir: Path, writer: VisionWriter | None = None,
                    scale: float | None = None) -> dict[str, Any]:
    """Train the trunk's noisy classifier, sample with guidance, judge the samples.

    Writes ``out_dir/samples.png`` (one row per class, labelled). TensorBoard: ``vision/guide/loss``,
    ``vision/generate/accuracy``, ``vision/generate/cas``, ``vision/generate/samples``.

    Returns:
        ``{"scale", "accuracy", "cas", "guide_clean_accuracy", "judge_accuracy", "n_samples"}``: the
        judge's accuracy on the samples (against their targets), CAS, the guiding classifier's
        accuracy on clean test digits, and the judge's own accuracy on real test digits.

    Raises:
        UserError: unknown ``probe.layer``.
        NumericalError: diverging training or non-finite samples.
    """
    assert ctx.prior is not None and ctx.judge is not None, "prepare(generation=True) first"
    g = ctx.cfg.guidance
    s_value = g.scale if scale is None else scale
    n_classes = len(ctx.splits.train.classes)
    clf = train_noisy_classifier(trunk, ctx.splits.train, ctx.prior.schedule, ctx.cfg.trunk, g, ctx.cfg.probe.layer,
                                 ctx.seed, writer.logger("guide") if writer else no_log)
    s = generate(ctx.prior, clf, n_classes, g.per_class, s_value, ctx.seed)
    image = samples_grid(s, ctx.splits.train.classes)
    save_png(out_dir / "samples.png", image)
    acc = ctx.judge.accuracy(s.images, s.labels)
    cas = classification_accuracy_score(s.images, s.labels, ctx.splits.test, g.judge_c)
    if writer:
        writer.scalar("generate/accuracy", acc)
        writer.scalar("generate/cas", cas)
        writer.image("generate/samples", image)
    return {"scale": s_value, "accuracy": acc, "cas": cas, "guide_clean_accuracy": clean_accuracy(clf, ctx.splits.test),
            "judge_accuracy": ctx.judge.accuracy(ctx.splits.test.images, ctx.splits.test.labels),
            "n_samples": len(s.labels)}
