"""The thesis table: for each trunk, probe accuracy, guided generation and texture distances.

:func:`compare` is the entry point (``policyshare vision compare`` and the end-to-end
experiment runner call it). Per trunk — ``random``, ``classify``, ``autoencoder``, or any trunk
file (an RL trunk, a distilled student, one written by ``policyshare vision pretrain``):

1. **probe** — linear-probe accuracy on the held-out test split (:mod:`.probe`);
2. **generate** — a noisy-image classifier on the frozen trunk guides the shared, cached DDPM
   prior (:mod:`.guidance`); the independent judge's accuracy on the samples and the
   classification accuracy score (:mod:`.evaluators`);
3. **texture** — Gram-only and Gram + shifted-Gram synthesis on the trunk's conv layers;
   scored by the ensemble texture judge (:class:`~policyshare.vision.evaluators.TextureJudge`),
   validated first on each texture, as the worst ratio over its evaluators to a held-out crop.

Reference rows make the figures readable: the unguided prior (scale 0), the judge on real
digits, a held-out crop of the same texture (1 by construction: as close as real texture), the
initial noise, and a synthesis on a trunk deep enough to carry a texture (``texture.deep_trunk``,
``image_deep``). ``report.md`` embeds the texture PNGs (source, held-out crop, Gram only,
Gram + shifts per trunk) with a legend.

The seeds of the generation side run side by side in worker processes
(:class:`~policyshare.vision.seed_pool.SeedPool`, ``--jobs``) while this process scores the
first seed's trunks (probe, texture).

Outputs in the run folder: ``metrics.json`` (byte-identical for a same-seed rerun),
``timing.json`` (wall-clock seconds, worker count, cache hits), ``report.md`` (the Markdown table),
``<trunk>/samples.png`` and ``<trunk>/<image>_<variant>.png``, ``unguided.png`` (sample
grids: one row per class, labelled with its class), ``textures/`` (source, held-out crop and the
deep reference's syntheses), ``cache/`` (the diffusion
prior, unless ``diffusion.cache_dir`` is set or the run uses its default folder; see
:func:`~policyshare.vision.diffusion.cache_dir`), and TensorBoard events in ``tb/<trunk>/``
under ``vision/`` tags. A folder left unfinished by a failed or killed run is moved aside to
``.replaced/`` beside it and the run starts again (:func:`open_run`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from policyshare.config import to_dict
from policyshare.errors import UserError
from policyshare.runs import RunFolder, default_run_dir
from policyshare.vision.compare_report import markdown_table, report_markdown
from policyshare.vision.config import VisionConfig, load_vision_config
from policyshare.vision.data import save_png
from policyshare.vision.diffusion import cache_label
from policyshare.vision.evaluators import classification_accuracy_score
from policyshare.vision.probe import check_layer
from policyshare.vision.seed_pool import SeedPool
from policyshare.vision.steps import (
    Context,
    generation_step,
    load_splits,
    prepare,
    probe_step,
    samples_grid,
    torch_threads,
    unguided_step,
)
from policyshare.vision.tb import VisionWriter
from policyshare.vision.texture_compare import (
    check_texture_setup,
    deep_texture_cfg,
    image_label,
    load_textures,
    texture_baselines,
    texture_judge,
    texture_step,
    texture_variants,
)
from policyshare.vision.texture_report import TEXTURE_LEGEND, texture_gallery_markdown
from policyshare.vision.thesis import SeedRun

# Kept importable from here for callers of the one-module compare (report.py, experiment.py, tests);
# each name is owned by the module it is imported from.
__all__ = ["TEXTURE_LEGEND", "Context", "check_texture_setup", "compare", "deep_texture_cfg",
           "generation_step", "image_label", "load_splits", "load_textures", "markdown_table", "open_run",
           "preflight", "prepare", "probe_step", "report_markdown", "samples_grid", "texture_baselines",
           "texture_gallery_markdown", "texture_judge", "texture_step", "texture_variants", "torch_threads",
           "unguided_step"]

log = logging.getLogger(__name__)


def open_run(path: str | Path, command: str, cfg: VisionConfig, seed: int) -> RunFolder:
    """Open a vision run folder; an unfinished run found there is moved aside, with a note.

    Vision runs keep no checkpoints, so a run that failed or was killed cannot be resumed: its
    folder goes to ``<parent>/.replaced/<time>-<name>`` (:func:`policyshare.runs.move_aside`)
    and the same command starts afresh. ``config.yaml`` is the resolved config, reusable with
    ``--config``.

    Raises:
        UserError: the folder holds a finished run, or another running process writes to it.
    """
    run = RunFolder.open(path, command=command, config=to_dict(cfg), seed=seed, restart=True)
    if run.replaced is not None:
        print(f"note: {run.path} held an unfinished run (failed or killed; vision runs keep no checkpoints); "
              f"moved it aside to {run.replaced}", flush=True)
    return run


def preflight(trunks: Sequence[str], cfg: VisionConfig, seed: int) -> None:
    """Check every trunk reference, texture, layer and shift in seconds, before anything trains.

    ``classify`` and ``autoencoder`` are checked on an untrained trunk of the configured spec.

    Raises:
        UserError: unknown reference, texture, layer or layer weight count; a shift not smaller
            than its feature map (trunk or evaluator).
        CheckpointError: an unreadable trunk file or one of an unknown spec.
    """
    from policyshare.vision.inputs import PRETRAINED_REFS, load_trunk_ref, random_trunk

    textures = load_textures(cfg)
    for ref in trunks:
        trunk = random_trunk(cfg.trunk, seed) if ref in PRETRAINED_REFS else load_trunk_ref(ref, cfg.trunk, seed)
        check_texture_setup(trunk, cfg, textures, texture_variants(cfg), seed)
        check_layer(trunk, cfg.probe.layer)
    if cfg.texture.deep_trunk:
        dcfg = deep_texture_cfg(cfg)
        check_texture_setup(load_trunk_ref(cfg.texture.deep_trunk, cfg.trunk, seed), dcfg, textures,
                            texture_variants(dcfg), seed)


def compare(trunks: Sequence[str], config: VisionConfig | str | Path | None = None,
            run_dir: str | Path | None = None, seed: int = 0,
            seeds: Sequence[int] | None = None, jobs: int | None = None) -> dict[str, Any]:
    """Run the thesis table over ``trunks`` and write it to a run folder.

    The generation side runs over ``seeds`` (:mod:`.thesis`): per seed a prior, the trunks, a
    guidance-scale sweep, few-label probes and battles; per trunk the figures with intervals,
    paired differences and two verdicts. Probe and texture columns come from the first seed.

    Args:
        trunks: references: ``random``, ``random:SPEC``, ``classify``, ``autoencoder`` (trained
            here on the training split) or trunk files.
        config: a :class:`VisionConfig`, a YAML path, or ``None`` for ``configs/vision.yaml``.
        run_dir: the run folder (default ``runs/vision/compare__s<seed>``); a finished run is never
            overwritten, an unfinished one is moved aside (:func:`open_run`). The diffusion prior
            is cached in ``run_dir/cache`` unless ``diffusion.cache_dir`` is set (default folder:
            the shared ``runs/vision/cache``).
        seed: seeds trunks, heads, samplers and texture noise (not the data split) when ``seeds``
            is not given.
        seeds: the seeds of the generation side (``--seeds 0-4``); the first one also seeds the
            probe and texture columns. Default ``[seed]``.
        jobs: worker processes that run seeds side by side (:class:`~policyshare.vision.seed_pool.SeedPool`;
            default ``cfg.jobs``; at most one per seed; 1: every seed in this process). The results
            do not depend on it.

    Returns:
        The metrics written to ``metrics.json``: ``results`` per trunk label (``probe``,
        ``generate``, ``texture``, ``source``), ``baselines``, ``data``,
        ``thesis`` (:func:`~policyshare.vision.thesis.aggregate`), ``thesis_seeds`` (each seed's
        curves, probes and battle counts), ``seeds`` …, plus ``run_dir`` and
        ``timing`` (what ``timing.json`` holds: ``wall_s``, ``prior_s``, ``trunks_s`` per label;
        wall-clock seconds stay out of ``metrics.json``, which same-seed reruns reproduce).

    Raises:
        UserError: no trunks, no seeds, a bad trunk reference, data, layer, shift or thesis class; a run folder that
            holds a finished run or is in use (an unfinished one is moved aside, see
            :func:`open_run`).
        CheckpointError: an unreadable trunk file or one of an unknown spec.
        NumericalError: diverging training.
    """
    start = time.perf_counter()
    if not trunks:
        raise UserError("no trunks to compare; pass --trunks random classify autoencoder [TRUNK_FILE …]")
    seed_list = list(dict.fromkeys(seeds)) if seeds is not None else [seed]
    if not seed_list:
        raise UserError("no seeds to run; pass --seeds 0-4 (a range whose start is not above its end) or --seed N")
    cfg = config if isinstance(config, VisionConfig) else load_vision_config(config)
    with torch_threads(cfg.threads):
        return _compare(list(trunks), cfg, run_dir, seed_list, start, cfg.jobs if jobs is None else jobs)


def _compare(trunks: list[str], cfg: VisionConfig, run_dir: str | Path | None, seeds: list[int],
             start: float, jobs: int) -> dict[str, Any]:
    from policyshare.vision.inputs import unique_labels
    from policyshare.vision.thesis import aggregate, check_classes, make_judges

    seed = seeds[0]
    labels = unique_labels(list(trunks))
    preflight(trunks, cfg, seed)  # bad input is refused before the folder is touched
    splits = load_splits(cfg)
    check_classes(cfg, len(splits.train.classes), cfg.data.dataset)
    default = (default_run_dir("vision", "compare", seed) if len(seeds) == 1
               else default_run_dir("vision", "compare", method="seeds-" + "_".join(str(s) for s in seeds)))
    run = open_run(run_dir or default, "vision compare", cfg, seed)
    cache_run = run.path if run_dir is not None else None
    writers = {label: VisionWriter(run.tb_dir / label) for label in labels}
    try:
        # The generation side over seeds (trunks, guidance sweeps, few-label probes, battles) runs in the
        # pool's workers; meanwhile this process scores the first seed's trunks (probe, texture).
        with SeedPool(trunks, labels, cfg, seeds, splits, make_judges(splits, cfg), cache_run,
                      jobs) as pool:
            first = pool.result(0)
            ctx, baselines, texture_judges = _baselines(cfg, seed, run, cache_run)
            columns, trunk_seconds = _first_seed_columns(first, labels, trunks, ctx, run, writers, texture_judges)
            seed_runs = pool.results()
        per_seed = [r.result for r in seed_runs]
        metrics: dict[str, Any] = {
            "command": "vision compare", "seed": seed, "seeds": seeds, "trunks": dict(zip(labels, trunks)),
            "data": ctx.splits.describe(), "guidance_scale": "best", "texture_variants": list(texture_variants(cfg)),
            "prior": {"cache_file": ctx.prior_info.get("cache_file")}, "baselines": baselines, "results": {},
            "thesis": aggregate(per_seed, labels, cfg), "thesis_seeds": per_seed}
        _generation_columns(metrics, columns, first, ctx, run, writers)
    finally:
        for writer in writers.values():
            writer.close()
    timing: dict[str, Any] = {"wall_s": round(time.perf_counter() - start, 1), "jobs": pool.jobs, **ctx.timing,
                              "prior_from_cache": ctx.prior_info.get("from_cache"), "trunks_s": trunk_seconds,
                              "seeds": {str(r.result["seed"]): r.timing for r in seed_runs}}
    _write_outputs(run, metrics, timing, cfg)
    metrics["run_dir"] = str(run.path)
    metrics["timing"] = timing
    return metrics


def _baselines(cfg: VisionConfig, seed: int, run: RunFolder, cache_run: Path | None
               ) -> tuple[Context, dict[str, Any], dict[str, Any]]:
    """The context (data, judge, the first seed's prior from the cache, textures) and the reference rows."""
    writer = VisionWriter(run.tb_dir / "baselines")
    try:
        ctx = prepare(cfg, seed, writer=writer, run_dir=cache_run)
        ctx.prior_info["cache_file"] = cache_label(Path(ctx.prior_info["cache_file"]), cache_run)
        log.info("baselines: unguided prior, held-out texture crops")
        (run.path / "textures").mkdir(exist_ok=True)
        judges = texture_judge(cfg, ctx.textures, seed)
        baselines: dict[str, Any] = {
            "judge_accuracy": ctx.judge.accuracy(ctx.splits.test.images, ctx.splits.test.labels) if ctx.judge else None,
            "real_cas": classification_accuracy_score(ctx.splits.train.images, ctx.splits.train.labels,
                                                      ctx.splits.test, cfg.guidance.judge_c),
            "unguided": unguided_step(ctx, run.path, writer),
            "texture": texture_baselines(ctx.textures, cfg, run.path / "textures", seed, judges)}
    finally:
        writer.close()
    return ctx, baselines, judges


def _first_seed_columns(first: SeedRun, labels: Sequence[str], trunks: Sequence[str], ctx: Context, run: RunFolder,
                        writers: Mapping[str, VisionWriter], texture_judges: Mapping[str, Any]
                        ) -> tuple[dict[str, dict[str, Any]], dict[str, float]]:
    """Per trunk of the first seed: its description, linear probe and texture syntheses (and the seconds each took)."""
    rows: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}
    for label, ref in zip(labels, trunks):
        t0 = time.perf_counter()
        out_dir = run.path / label
        out_dir.mkdir(parents=True, exist_ok=True)
        trunk = first.trunks[label]  # the first seed's trunk (classify: trained on thesis.pretrain_classes)
        log.info(f"{label}: linear probe")
        row: dict[str, Any] = {"ref": ref, "spec": trunk.spec.to_dict()["name"], "activation": trunk.spec.activation,
                               "source": (trunk.header or {}).get("source", {})}
        row["probe"] = probe_step(trunk, ctx, writers[label])
        log.info(f"{label}: texture synthesis")
        row["texture"] = texture_step(trunk, ctx.cfg, ctx.textures, out_dir, writers[label], seed=ctx.seed,
                                      judges=texture_judges)
        rows[label] = row
        seconds[label] = round(time.perf_counter() - t0, 1)
        log.info(f"{label}: probe {row['probe']['accuracy']:.3f} ({seconds[label]:.0f} s with texture)")
    return rows, seconds


def _generation_columns(metrics: dict[str, Any], columns: Mapping[str, dict[str, Any]], first: SeedRun,
                        ctx: Context, run: RunFolder, writers: Mapping[str, VisionWriter]) -> None:
    """Fill ``metrics["results"]``: each trunk's columns plus its generation cell over seeds; sample grids; curves."""
    from policyshare.vision.thesis import thesis_generation_row
    from policyshare.vision.thesis_report import plot_guidance_curves

    plot_guidance_curves(metrics["thesis_seeds"], list(columns), run.path / "guidance_curves.png")
    target_names = [ctx.splits.train.classes[c] for c in ctx.cfg.thesis.target_classes]
    if first.unguided is not None:
        save_png(run.path / "unguided_targets.png", samples_grid(first.unguided, target_names))
    for label, col in columns.items():
        generate = thesis_generation_row(metrics["thesis"], first.result["trunks"][label], label)
        writer = writers[label]
        if label in first.best_samples:
            image = samples_grid(first.best_samples[label], target_names)
            save_png(run.path / label / "samples.png", image)
            writer.image("generate/samples", image)
        writer.scalar("generate/accuracy", generate["accuracy"])
        writer.scalar("generate/cas", generate["cas"])
        # The row's keys in the order of the table: description, probe, generation, texture.
        metrics["results"][label] = {**{k: v for k, v in col.items() if k != "texture"}, "generate": generate,
                                     "texture": col["texture"]}
        log.info(f"{label}: probe {col['probe']['accuracy']:.3f}, guided {generate['accuracy']:.3f}, "
                 f"CAS {generate['cas']:.3f}")


def _write_outputs(run: RunFolder, metrics: Mapping[str, Any], timing: Mapping[str, Any], cfg: VisionConfig) -> None:
    """``timing.json`` (wall-clock seconds, cache hits), ``report.md``, and last ``metrics.json`` (the run is done)."""
    from policyshare.io import atomic_write_json, atomic_write_text
    from policyshare.vision.thesis_report import thesis_markdown

    atomic_write_json(run.path / "timing.json", timing)
    atomic_write_text(run.path / "report.md",
                      report_markdown(metrics, timing["wall_s"]) + "\n" + thesis_markdown(metrics["thesis"], cfg))
    run.write_metrics(metrics)
