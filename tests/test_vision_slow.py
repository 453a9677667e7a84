"""The full thesis table with the default config (minutes): ``pytest -m slow tests/test_vision_slow.py``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from policyshare.vision.compare import compare
from policyshare.vision.config import load_vision_config


@pytest.mark.slow
def test_compare_default_config(tmp_path: Path, breakout_run: Path) -> None:
    cfg = load_vision_config(None, {"diffusion": {"cache_dir": str(tmp_path / "cache")}})
    rl = str(breakout_run / "trunk.safetensors")
    metrics = compare(["random", "classify", "autoencoder", rl], cfg, tmp_path / "run", seed=0)
    results = metrics["results"]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["results"].keys() == results.keys()
    # Classification-trained trunk: better probe than random, and its guided digits are >= 90 % on target.
    assert results["classify"]["probe"]["accuracy"] > results["random"]["probe"]["accuracy"]
    assert results["classify"]["generate"]["accuracy"] >= 0.9
    unguided = metrics["baselines"]["unguided"]
    for label, row in results.items():
        assert row["generate"]["accuracy"] > unguided["accuracy"] + 0.5, label
        assert row["generate"]["cas"] > unguided["cas"] + 0.5, label
        noise = metrics["baselines"]["texture"]["brick"]["noise"]
        for variant in ("gram", "gram+shift"):
            cell = row["texture"]["brick"][variant]
            assert cell["gram"] < noise["gram"] and cell["shifted_gram"] < noise["shifted_gram"], (label, variant)
        # Matching shifted Gramians too brings the long-range statistics closer than Gramians alone.
        assert row["texture"]["brick"]["gram+shift"]["shifted_gram"] < row["texture"]["brick"]["gram"]["shifted_gram"]


@pytest.mark.slow
def test_a_held_out_crop_scores_better_than_every_synthesis_on_a_deep_trunk(tmp_path: Path) -> None:
    from policyshare.vision.compare import load_textures, texture_baselines

    cfg = load_vision_config(None)  # brick at 64 px, 150 L-BFGS steps on random:image_deep (tens of seconds)
    base = texture_baselines(load_textures(cfg), cfg, tmp_path, seed=0)["brick"]
    assert base["validation"]["validated"] == list(base["validation"]["passed"])  # every judge validated first
    for variant in ("gram", "gram+shift"):
        cell = base["deep"][variant]
        assert cell["final_loss"] < 0.01 * cell["initial_loss"], variant
        # The worst judge's ratio to the held-out crop: the real crop (1) stays better than the synthesis.
        assert cell["gram"] > 1.0 and cell["shifted_gram"] > 1.0, (variant, cell["per_evaluator"])
        assert cell["gram"] < base["noise"]["gram"], variant
    assert (tmp_path / "brick_deep_gram_shift.png").is_file()
