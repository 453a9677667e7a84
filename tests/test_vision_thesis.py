"""The thesis over seeds: paired intervals, guidance curves, GAM battles, disjoint classes, the compare command."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from policyshare.cli import main
from policyshare.config import parse_overrides
from policyshare.errors import ConfigError, UserError
from policyshare.vision.battles import battle_table, battle_winner, error_rate, gam_ratios
from policyshare.vision.config import VisionConfig, load_vision_config
from policyshare.vision.data import load_digits
from policyshare.vision.diversity import class_precision_recall, precision_recall
from policyshare.vision.guidance import Samples
from policyshare.vision.inputs import load_trunk_ref, trunk_label
from policyshare.vision.scales import at_diversity, best_point, matched_target
from policyshare.vision.seed_pool import SeedPool
from policyshare.vision.seeds import MIN_SEEDS_FOR_CI, paired_difference, summarise, verdict
from policyshare.vision.steps import load_splits
from policyshare.vision.thesis import SeedRun, make_judges, restrict


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------------------------
# Intervals over seeds


def test_paired_interval_recovers_a_known_difference_that_unpaired_intervals_miss() -> None:
    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.9, size=8)  # what the seed does to both trunks (prior, sampler)
    noise = 0.005 * rng.permutation([1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 1.5, -1.5])  # mean exactly 0
    a = base + 0.1 + noise
    b = base.copy()
    d = paired_difference(a, b)
    assert d.kind == "ci" and d.n == 8
    assert 0.05 < d.low < 0.1 < d.high < 0.15, d
    assert d.mean == pytest.approx(0.1)
    # Unpaired, the seeds' spread hides the difference: the two intervals overlap.
    sa, sb = summarise(a), summarise(b)
    assert sa.low < sb.high
    assert verdict({"a − b": d})[0] == "supported"
    assert verdict({"b − a": paired_difference(b, a)})[0] == "refuted"
    assert verdict({"a − a": paired_difference(a, a + rng.normal(0.0, 0.05, size=8))})[0] == "undecided"


def test_fewer_than_five_seeds_give_a_range_and_one_seed_no_interval() -> None:
    assert MIN_SEEDS_FOR_CI == 5
    three = paired_difference([0.5, 0.6, 0.7], [0.3, 0.3, 0.3])
    assert three.kind == "range" and (three.low, three.high) == pytest.approx((0.2, 0.4))
    assert "range" in three.format() and "3 seeds" in three.format()
    v, reason = verdict({"a − b": three})
    assert v == "undecided" and "fewer than 5" in reason
    # A part with a range cannot support the claim, but a full interval below 0 refutes it.
    eight_worse = paired_difference(np.linspace(0.1, 0.2, 8), np.linspace(0.3, 0.4, 8) + 0.001 * np.arange(8))
    assert eight_worse.kind == "ci" and eight_worse.high < 0
    v, reason = verdict({"a − b": three, "a − c": eight_worse})
    assert v == "refuted" and "a − c" in reason
    eight_better = paired_difference(np.linspace(0.3, 0.4, 8) + 0.001 * np.arange(8), np.linspace(0.1, 0.2, 8))
    v, reason = verdict({"a − b": three, "a − c": eight_better})
    assert v == "undecided" and "a − b" in reason and "fewer than 5" in reason
    one = summarise([0.8])
    assert one.kind == "single" and math.isnan(one.low)
    assert one.format(pct=True) == "80.0% (one seed: no interval)"
    # Undefined values (a diversity level never reached) leave their seed out of the pairing.
    partial = paired_difference([0.5, math.nan, 0.7], [0.4, 0.1, 0.5])
    assert partial.n == 2 and partial.values[1] != partial.values[1]
    with pytest.raises(ValueError):
        paired_difference([0.1, 0.2], [0.1])


# --------------------------------------------------------------------------------------------
# Guidance curves


def test_best_scale_and_accuracy_at_matched_diversity() -> None:
    curve = [{"scale": 0.0, "accuracy": 0.1, "cas": 0.2, "diversity": 1.0},
             {"scale": 2.0, "accuracy": 0.5, "cas": 0.6, "diversity": 0.9},
             {"scale": 4.0, "accuracy": 0.9, "cas": 0.7, "diversity": 0.7},
             {"scale": 8.0, "error": "non-finite samples"}]
    assert best_point(curve)["scale"] == 4.0
    target = matched_target(curve, 0.8)
    assert target == pytest.approx(0.8)
    # Half-way (in diversity) between s = 2 (0.9) and s = 4 (0.7).
    assert at_diversity(curve, target) == pytest.approx(0.7)
    assert at_diversity(curve, target, "cas") == pytest.approx(0.65)
    assert math.isnan(at_diversity(curve, 0.5))  # never that low: not reached
    assert at_diversity(curve, 1.0) == pytest.approx(0.1)


def test_precision_and_recall_on_hand_made_point_sets() -> None:
    rng = np.random.default_rng(0)
    real = rng.normal(size=(20, 2))
    assert precision_recall(real, real.copy()) == (1.0, 1.0)  # identical sets
    assert precision_recall(real, real + 100.0) == (0.0, 0.0)  # disjoint, far apart
    # Real points 0, 1, 2, 3 (k = 1: each ball has radius 1). Samples collapsed near 0.5: all realistic,
    # but their balls (radius 0.1) cover no real point.
    line = np.array([[0.0], [1.0], [2.0], [3.0]])
    assert precision_recall(line, np.array([[0.5], [0.6]]), k=1) == (1.0, 0.0)
    # Two of three samples off the real manifold: precision 1/3. The lone realistic sample's nearest
    # neighbour is 9.5 away, so its ball covers every real point (recall's known weakness to outliers,
    # Naeem et al. 2020); on real digits noise stays far from the real features (next test).
    assert precision_recall(line, np.array([[0.5], [10.0], [10.5]]), k=1) == (pytest.approx(1 / 3), 1.0)
    # Per class, then averaged: class 0 reproduced exactly, class 1 far off.
    labels = np.array([0] * 10 + [1] * 10)
    fake = np.concatenate([real[:10], real[10:] + 100.0])
    assert class_precision_recall(real, labels, fake, labels) == (0.5, 0.5)
    assert math.isnan(precision_recall(real[:1], real)[0])  # one point has no k-NN radius


def test_noise_reads_as_diverse_but_has_neither_precision_nor_recall() -> None:
    cfg = load_vision_config(None)
    splits = load_splits(cfg)
    judges = make_judges(splits, cfg)
    train = splits.train
    keep = [i for i, y in enumerate(train.labels.tolist()) if y in judges.target_classes]
    images = train.images[keep]
    labels = torch.tensor([judges.target_classes.index(y) for y in train.labels[keep].tolist()])
    real = judges.score(Samples(images, labels, 0.0))  # held-out real digits: the samples one would wish for
    noise = judges.score(Samples(torch.rand(images.shape, generator=torch.Generator().manual_seed(0)), labels, 0.0))
    assert noise["diversity"] > real["diversity"]  # the mean pairwise distance counts noise as diversity
    assert real["precision"] > 0.8 and real["recall"] > 0.8
    assert noise["precision"] < 0.1 and noise["recall"] < 0.1
    prototypes = torch.stack([images[labels == c][0] for c in range(len(judges.target_classes))])[labels]
    assert judges.score(Samples(prototypes, labels, 0.0))["recall"] == 0.0  # one image per class covers nothing


def test_matched_diversity_reads_the_curve_where_recall_falls() -> None:
    # Diversity climbs at s = 8 (samples break down into noise); recall does not.
    curve = [{"scale": 0.0, "accuracy": 0.1, "cas": 0.2, "diversity": 1.0, "recall": 0.9},
             {"scale": 4.0, "accuracy": 0.7, "cas": 0.6, "diversity": 0.9, "recall": 0.8},
             {"scale": 8.0, "accuracy": 0.5, "cas": 0.3, "diversity": 1.4, "recall": 0.6}]
    target = matched_target(curve, 0.8, "recall")
    assert target == pytest.approx(0.72)
    assert at_diversity(curve, target, "accuracy", "recall") == pytest.approx(0.7 + 0.4 * (0.5 - 0.7))
    assert math.isnan(at_diversity(curve, matched_target(curve, 0.8), "accuracy"))  # never reached by distance


# --------------------------------------------------------------------------------------------
# Battles (Im et al. 2016)


def test_gam_ratios_and_winner_on_hand_made_error_rates() -> None:
    # D_A errs on 10 % of real test images, D_B too; D_A errs on 20 % of B's samples, D_B on 40 % of A's.
    r_test, r_sample = gam_ratios(0.1, 0.1, 0.2, 0.4)
    assert (r_test, r_sample) == pytest.approx((1.0, 0.5))
    assert battle_winner(r_test, r_sample, 0.2) == "A"  # A's samples fool D_B more often
    assert battle_winner(*gam_ratios(0.12, 0.1, 0.6, 0.3), 0.2) == "B"  # r_test 1.2: within tolerance
    assert battle_winner(*gam_ratios(0.1, 0.2, 0.2, 0.4), 0.2) == "tie"  # r_test 0.5: discriminators unlike
    assert battle_winner(*gam_ratios(0.1, 0.1, 0.3, 0.3), 0.2) == "tie"
    assert gam_ratios(0.0, 0.0, 0.1, 0.0)[0] != gam_ratios(0.0, 0.0, 0.1, 0.0)[0]  # 0/0 is nan
    assert gam_ratios(0.0, 0.0, 0.1, 0.0)[1] == math.inf
    assert error_rate(0, 99) == pytest.approx(0.005) and error_rate(3, 9) == pytest.approx(0.35)
    # Counts pooled over two seeds: D_A 10+10 of 200 real, D_B 10+10; D_A 19+19 of 198 samples of B, D_B 39+39.
    counts = {"test": {"a": [10, 100], "b": [10, 100]}, "sample": {"a|b": [19, 99], "b|a": [39, 99]}}
    (row,) = battle_table([counts, counts], ["a", "b"], 0.2)
    assert row["battle"] == "a vs b" and row["winner"] == "a" and row["seed_winners"] == {"a": 2}
    assert row["r_test"] == pytest.approx(1.0)
    assert row["r_sample"] == pytest.approx((38.5 / 199) / (78.5 / 199))


# --------------------------------------------------------------------------------------------
# Disjoint classes, config, references


def test_disjoint_classes_are_relabelled_and_overlaps_refused() -> None:
    digits = load_digits()
    upper = restrict(digits, [5, 6, 7, 8, 9])
    assert upper.classes == ["5", "6", "7", "8", "9"]
    assert set(upper.labels.tolist()) == {0, 1, 2, 3, 4}
    assert len(upper) == int((digits.labels >= 5).sum())
    assert torch.equal(upper.images[upper.labels == 0], digits.images[digits.labels == 5])
    with pytest.raises(UserError, match="do not exist"):
        restrict(digits, [3, 12])
    with pytest.raises(ConfigError, match="disjoint"):
        load_vision_config(None, {"thesis": {"pretrain_classes": [0, 1, 5], "target_classes": [5, 6]}})
    with pytest.raises(ConfigError, match="must hold 0"):
        load_vision_config(None, {"thesis": {"scales": [1, 2]}})
    with pytest.raises(ConfigError, match="verdict_shots"):
        load_vision_config(None, {"thesis": {"shots": [1, 10], "verdict_shots": 5}})


def test_zoo_references() -> None:
    cfg = load_vision_config(None)
    with pytest.raises(UserError, match="zoo has no expert"):
        load_trunk_ref("zoo:MinAtar/Pong-v1", cfg.trunk, 0)
    assert trunk_label("zoo:MinAtar/Breakout-v1") == "expert-breakout"
    # Seeds: zoo:ENV is seed 0, as zoo:ENV@s0; another seed is named, and one the zoo lacks is refused.
    assert trunk_label("zoo:MinAtar/Breakout-v1@s0") == "expert-breakout"
    assert trunk_label("zoo:MinAtar/Breakout-v1@s1") == "expert-breakout-s1"
    with pytest.raises(UserError, match=r"no seed 7 of 'MinAtar/Breakout-v1'; its seeds: 0"):
        load_trunk_ref("zoo:MinAtar/Breakout-v1@s7", cfg.trunk, 0)
    trunk = load_trunk_ref("zoo:MinAtar/Breakout-v1@s0", cfg.trunk, 0)
    assert trunk.header["source"]["seed"] == 0
    assert trunk.header["source"]["copied_from"].endswith("MinAtar-Breakout-v1__s0.zip")


# --------------------------------------------------------------------------------------------
# The command


def tiny_thesis(cache: Path) -> list[str]:
    sets = {"diffusion.timesteps": 10, "diffusion.hidden": 32, "diffusion.train_steps": 40,
            "diffusion.cache_dir": str(cache), "guidance.train_steps": 40, "guidance.per_class": 4,
            "pretrain.classify_epochs": 1, "pretrain.autoencoder_epochs": 1, "texture.resize": 64, "texture.size": 32,
            "texture.steps": 4, "texture.patience": 4, "texture.shifts": "[2]", "texture.evaluator_shifts": "[1, 2]",
            "probe.max_iter": 20, "thesis.scales": "[0, 4]", "thesis.shots": "[1, 2]", "thesis.verdict_shots": 1,
            "thesis.probe_repeats": 1, "thesis.bootstrap_reps": 100, "thesis.denoiser_timestep": 1,
            "texture.deep_trunk": "null"}
    out: list[str] = []
    for key, value in sets.items():
        out += ["--set", f"{key}={value}"]
    return out


def test_empty_seed_range_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "c"
    code = main(["vision", "compare", "--trunks", "random", "--seeds", "3-1", "--run-dir", str(run),
                 *tiny_thesis(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert "3-1" in lines[0] and "holds no seed" in lines[0] and "write 1-3" in lines[0], lines[0]
    assert not run.exists() and not (tmp_path / "cache").exists()
    # Thesis classes the data does not have are refused before anything is written, too.
    code = main(["vision", "compare", "--trunks", "random", "--run-dir", str(run), *tiny_thesis(tmp_path / "cache"),
                 "--set", "thesis.target_classes=[5, 12]"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "thesis classes [12]" in err, err
    assert not run.exists()
    code = main(["vision", "compare", "--trunks", "random", "--jobs", "0", "--run-dir", str(run),
                 *tiny_thesis(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "jobs must be > 0" in err, err
    assert not run.exists()


def test_compare_over_seeds_writes_intervals_curves_probes_battles_and_verdicts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "c"
    assert main(["vision", "compare", "--trunks", "random", "classify", "autoencoder", "--seeds", "0-1",
                 "--run-dir", str(run), "--quiet", *tiny_thesis(tmp_path / "cache")]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["seeds"] == [0, 1]
    thesis = metrics["thesis"]
    labels = ["random", "classify", "autoencoder"]
    assert list(thesis["generation"]) == labels
    for label in labels:
        best = thesis["generation"][label]["best_accuracy"]
        assert best["kind"] == "range" and best["n"] == 2 and len(best["values"]) == 2
    # Every point of a curve has precision and recall (shares) beside the pairwise diversity.
    for point in metrics["thesis_seeds"][1]["trunks"]["classify"]["curve"]:
        assert 0.0 <= point["precision"] <= 1.0 and 0.0 <= point["recall"] <= 1.0 and point["diversity"] > 0
    assert metrics["thesis_seeds"][0]["trunks"]["random"]["matched_measure"] == "recall"
    # Paired design: at scale 0 every trunk of a seed draws the very same samples from the seed's prior.
    for seed_result in metrics["thesis_seeds"]:
        zero = [next(p for p in seed_result["trunks"][k]["curve"] if p["scale"] == 0.0) for k in labels]
        assert all(z == zero[0] for z in zero)
    assert {"classify − random", "classify − autoencoder", "random − autoencoder"} == set(
        thesis["generation_pairs"]["matched_accuracy"])
    assert set(thesis["few_label"]) == {*labels, "diffusion-denoiser"}
    assert set(thesis["few_label"]["diffusion-denoiser"]) == {"1", "2"}
    assert [b["battle"] for b in thesis["battles"]] == ["random vs classify", "random vs autoencoder",
                                                        "classify vs autoencoder"]
    # Two seeds decide nothing.
    assert {v["verdict"] for v in thesis["verdicts"].values()} == {"undecided"}
    # The classify trunk never saw a label (or an image) of the classes it guides.
    assert metrics["results"]["classify"]["source"]["classes"] == ["0", "1", "2", "3", "4"]
    report = (run / "report.md").read_text()
    for heading in ("### Verdicts", "Classification → generation: undecided", "few-label probes", "recall at best s",
                    "| battle | r_test | r_sample | winner |", "(range ", "pp"):
        assert heading in report, heading
    assert (run / "guidance_curves.png").is_file() and (run / "classify" / "samples.png").is_file()
    # One seed: no interval.
    assert main(["vision", "compare", "--trunks", "random", "--run-dir", str(tmp_path / "one"), "--quiet",
                 *tiny_thesis(tmp_path / "cache")]) == 0
    assert "one seed: no interval" in (tmp_path / "one" / "report.md").read_text()
    capsys.readouterr()


def tiny_config(cache: Path) -> VisionConfig:
    """``tiny_thesis`` as a :class:`VisionConfig`."""
    args = tiny_thesis(cache)
    return load_vision_config(None, parse_overrides(args[1::2]))


def seed_result_text(run: SeedRun) -> str:
    """A seed's result as canonical text (``nan`` compares equal), without where its prior was cached."""
    return json.dumps({k: v for k, v in run.result.items() if k != "prior"}, sort_keys=True)


@pytest.mark.slow  # two spawned workers import torch and scikit-learn: ~20 s of CPU
def test_a_seed_gives_the_same_result_in_a_worker_process_as_in_this_one(tmp_path: Path,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    refs = ["classify"]
    splits = load_splits(tiny_config(tmp_path))
    caplog.set_level(logging.INFO, logger="policyshare")
    runs = {}
    for jobs in (1, 2):
        cfg = tiny_config(tmp_path / f"cache-{jobs}")  # each trains its own priors
        with SeedPool(refs, refs, cfg, [3, 4], splits, make_judges(splits, cfg), None, jobs) as pool:
            assert pool.jobs == jobs
            runs[jobs] = pool.results()
        assert [r.timing["prior_from_cache"] for r in runs[jobs]] == [False, False]
    for serial, pooled in zip(runs[1], runs[2]):
        assert seed_result_text(serial) == seed_result_text(pooled)
    # The first seed's trunks and samples come back from its worker; the others' stay there.
    first = runs[2][0]
    assert set(first.trunks) == set(refs) and first.unguided is not None
    assert all(torch.equal(a, b) for a, b in zip(first.trunks["classify"].state_dict().values(),
                                                  runs[1][0].trunks["classify"].state_dict().values()))
    assert not runs[2][1].trunks
    # The workers' log records arrive whole in this process's loggers, each naming its seed.
    said = [r.getMessage() for r in caplog.records if r.name == "policyshare.vision.thesis"]
    pooled_lines = said[len(said) // 2:]
    assert any(line.startswith("seed 4 · classify: best s=") for line in pooled_lines), pooled_lines


def test_same_seed_reruns_write_byte_identical_metrics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("a", "b"):  # b finds the prior that a trained in the shared cache
        assert main(["vision", "compare", "--trunks", "random", "--run-dir", str(tmp_path / name), "--quiet",
                     *tiny_thesis(tmp_path / "cache")]) == 0
    capsys.readouterr()
    assert (tmp_path / "a" / "metrics.json").read_bytes() == (tmp_path / "b" / "metrics.json").read_bytes()
    first, second = (json.loads((tmp_path / n / "timing.json").read_text()) for n in ("a", "b"))
    assert first["seeds"]["0"]["prior_from_cache"] is False and second["seeds"]["0"]["prior_from_cache"] is True
    assert first["prior_from_cache"] is True  # the baselines read the prior the seed's run had just cached
