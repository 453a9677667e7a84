"""``policyshare vision …``: a subprocess smoke test of compare, each subcommand in-process, bad input → exit 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, run_cli

from policyshare.checkpoints import load_trunk, save_tensors, save_trunk
from policyshare.cli import main
from policyshare.runs import LOCK_NAME, RunFolder
from policyshare.trunks import Trunk, TrunkSpec
from policyshare.vision.config import load_vision_config
from policyshare.vision.evaluators import EVALUATORS


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(cache: Path | None) -> list[str]:
    """--set overrides that make every vision command take a second or two (``cache``: the prior's cache)."""
    sets: dict[str, object] = {
        "diffusion.timesteps": 10, "diffusion.hidden": 32, "diffusion.train_steps": 40, "guidance.train_steps": 40,
        "guidance.per_class": 3, "pretrain.classify_epochs": 1, "pretrain.autoencoder_epochs": 1,
        "texture.resize": 64, "texture.size": 32, "texture.steps": 4, "texture.patience": 4, "texture.shifts": "[2]",
        "texture.evaluator_shifts": "[1, 2]", "texture.deep_trunk": "null", "probe.max_iter": 20,
        "thesis.scales": "[0, 4]", "thesis.shots": "[1]",
        "thesis.verdict_shots": 1, "thesis.probe_repeats": 1, "thesis.bootstrap_reps": 100}
    if cache is not None:
        sets["diffusion.cache_dir"] = str(cache)
    out: list[str] = []
    for key, value in sets.items():
        out += ["--set", f"{key}={value}"]
    return out


def one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for f in fragments:
        assert f in lines[0], lines[0]


def test_compare_smoke_subprocess(tmp_path: Path, breakout_run: Path) -> None:
    run = tmp_path / "compare"
    rl = breakout_run / "trunk.safetensors"
    proc = run_cli("vision", "compare", "--trunks", "random", "classify", "autoencoder", str(rl), "--run-dir", str(run),
                   "--quiet", *tiny(tmp_path / "cache"))
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    labels = ["random", "classify", "autoencoder", breakout_run.name]
    assert list(metrics["results"]) == labels
    for label in labels:
        row = metrics["results"][label]
        assert 0.0 <= row["probe"]["accuracy"] <= 1.0
        assert 0.0 <= row["generate"]["accuracy"] <= 1.0 and 0.0 <= row["generate"]["cas"] <= 1.0
        assert set(row["texture"]["brick"]) == {"gram", "gram+shift"}
        assert (run / label / "samples.png").is_file() and (run / label / "brick_gram_shift_pair.png").is_file()
        assert list((run / "tb" / label).glob("events.out.tfevents.*"))
    assert metrics["results"][breakout_run.name]["source"]["env_id"] == "MinAtar/Breakout-v1"
    assert metrics["results"]["classify"]["source"]["split"] == "train"
    # Wall-clock figures live in timing.json: same-seed reruns write the same metrics.json.
    assert "wall_seconds" not in metrics and all("seconds" not in r for r in metrics["results"].values())
    timing = json.loads((run / "timing.json").read_text())
    assert timing["wall_s"] > 0 and set(timing["trunks_s"]) == set(labels) and "seconds" not in metrics["prior"]
    report = (run / "report.md").read_text()
    assert "| trunk | probe acc." in report and "`autoencoder`" in report and "unguided prior" in report
    assert "| trunk | probe acc." in proc.stdout
    assert (run / "unguided.png").is_file() and (run / "textures" / "brick_reference.png").is_file()
    # The resolved config is reusable as --config.
    assert load_vision_config(run / "config.yaml").diffusion.train_steps == 40
    # A finished run folder is never overwritten.
    again = run_cli("vision", "compare", "--trunks", "random", "--run-dir", str(run), *tiny(tmp_path / "cache"))
    one_line_error(again.returncode, again.stderr, "finished run")


def test_pretrain_probe_texture_generate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sets = tiny(tmp_path / "cache")
    assert main(["vision", "pretrain", "--method", "classify", "--run-dir", str(tmp_path / "cls"), *sets]) == 0
    trunk_file = tmp_path / "cls" / "trunk.safetensors"
    trunk = load_trunk(trunk_file)
    assert trunk.header is not None and trunk.header["source"]["kind"] == "classify"
    assert json.loads((tmp_path / "cls" / "metrics.json").read_text())["probe"]["accuracy"] > 0.1

    assert main(["vision", "probe", "--trunk", str(trunk_file), "--finetune", "--run-dir", str(tmp_path / "probe"),
                 *sets, "--set", "probe.finetune_epochs=1"]) == 0
    probe = json.loads((tmp_path / "probe" / "metrics.json").read_text())
    assert probe["linear"]["n_test"] == 360 and (tmp_path / "probe" / "trunk.safetensors").is_file()

    assert main(["vision", "texture", "--trunk", "random:minatar_deep", "--image", "gravel", "--shifts", "conv2:2,3",
                 "--optimizer", "adam", "--lr", "0.1", "--run-dir", str(tmp_path / "tex"), *sets]) == 0
    tex = json.loads((tmp_path / "tex" / "metrics.json").read_text())
    assert tex["results"]["gravel"]["layers"] == ["conv1", "conv2"]
    assert tex["results"]["gravel"]["final_loss"] < tex["results"]["gravel"]["initial_loss"]
    for name in ("gravel_source.png", "gravel_result.png"):
        assert (tmp_path / "tex" / name).is_file()

    assert main(["vision", "generate", "--trunk", "random", "--scale", "2", "--run-dir", str(tmp_path / "gen"),
                 *sets]) == 0
    gen = json.loads((tmp_path / "gen" / "metrics.json").read_text())
    assert gen["guided"]["scale"] == 2.0 and gen["unguided"]["scale"] == 0.0 and gen["prior"]["from_cache"] is False
    assert "seconds" not in gen["prior"] and json.loads((tmp_path / "gen" / "timing.json").read_text())["prior_s"] >= 0
    assert (tmp_path / "gen" / "samples.png").is_file() and (tmp_path / "gen" / "unguided.png").is_file()
    out = capsys.readouterr().out
    assert "judge accuracy" in out and "linear probe" in out


def test_symmetric_texture_and_style_transfer_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sets = tiny(None)
    assert main(["vision", "texture", "--trunk", "random:image_deep", "--image", "brick", "--size", "64", "--shifts",
                 "conv2:2,4", "--mirror", "h", "--steps", "3", "--run-dir", str(tmp_path / "sym"), *sets]) == 0
    tex = json.loads((tmp_path / "sym" / "metrics.json").read_text())
    assert tex["mirror"] == ["h"] and tex["results"]["brick"]["layers"] == [f"conv{k}" for k in range(1, 7)]
    assert set(tex["baselines"]["brick"]["validation"]["passed"]) == set(EVALUATORS)
    assert "texture judge" in capsys.readouterr().out
    for name in ("brick_source.png", "brick_reference.png", "brick_result.png"):
        assert (tmp_path / "sym" / name).is_file()

    assert main(["vision", "transfer", "--content", "chelsea", "--style", "coffee", "--size", "48", "--steps", "3",
                 "--shifts", "1", "--run-dir", str(tmp_path / "st"), *sets]) == 0
    st = json.loads((tmp_path / "st" / "metrics.json").read_text())
    assert st["content_layer"] == "conv4" and st["init"] == "content" and st["initial"]["content"] == 0.0
    assert st["final"]["style"] < st["initial"]["style"]
    for name in ("content.png", "style.png", "result.png", "transfer.png"):
        assert (tmp_path / "st" / name).is_file()
    assert "content loss" in capsys.readouterr().out


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sets = tiny(tmp_path / "cache")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    trunk = Trunk(TrunkSpec("minatar", in_channels=10, height=10, width=10))
    save_tensors(tmp_path / "odd.safetensors", trunk.state_dict(),
                 {"format": "policyshare.trunk", "spec": {**trunk.spec.to_dict(), "name": "resnet"}})
    save_trunk(trunk, tmp_path / "ok.safetensors")
    cases = [
        (["texture", "--trunk", "random", "--image", str(tmp_path / "broken.png")], "could not decode image"),
        (["texture", "--trunk", str(tmp_path / "odd.safetensors")], "unknown trunk spec 'resnet'"),
        (["texture", "--trunk", str(tmp_path / "ok.safetensors"), "--layers", "conv7"], "no layer 'conv7'"),
        (["texture", "--trunk", "random", "--shifts", "40"], "shift 40 is not smaller than layer conv1's 30x30"),
        (["texture", "--trunk", "random", "--shifts", "two"], "shifts must be integers"),
        (["texture", "--trunk", "random", "--set", "trunk.activation=trec"], "all-zero features"),
        (["texture", "--trunk", "random:image_deep", "--size", "24", "--layers", "conv1", "conv2", "conv3", "conv4",
          "conv5", "--shifts", "--mirror", "conv5:h"],
         "layer conv5's 1x1 feature map (for a 24x24 image) is too small to mirror"),
        (["texture", "--trunk", "random", "--mirror", "d"], "unknown axis 'd'"),
        (["transfer", "--content", "chelsea", "--style", "brick", "--size", "48"],
         "the content image chelsea has 3 channel(s) (RGB) but the style image brick has 1 (grayscale)"),
        (["probe", "--trunk", "random", "--layer", "conv7"], "no layer 'conv7'"),
        (["probe", "--trunk", str(tmp_path / "missing.safetensors")], "not found"),
        (["generate", "--trunk", "random", "--set", "guidance.sacle=2"], "did you mean 'scale'"),
    ]
    for k, (args, fragment) in enumerate(cases):
        code = main(["vision", *args, "--run-dir", str(tmp_path / f"run{k}"), *sets])
        one_line_error(code, capsys.readouterr().err, "policyshare vision: error:", fragment)
    # The real process: exit status and stderr.
    proc = run_cli("vision", "texture", "--trunk", "random", "--image", str(tmp_path / "broken.png"))
    one_line_error(proc.returncode, proc.stderr, "could not decode image")


# --------------------------------------------------------------------------------------------
# Failed and killed runs


def test_texture_without_progress_fails_and_writes_no_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                             ) -> None:
    # 10 Adam steps at lr 1e6 never leave the starting noise; the stall patience (20) is longer
    # than the run, so only a verdict at the end of the run catches it.
    run = tmp_path / "tex"
    cmd = ["vision", "texture", "--trunk", "random", "--image", "brick", "--run-dir", str(run),
           *tiny(tmp_path / "cache"), "--set", "texture.patience=20"]
    assert main([*cmd, "--optimizer", "adam", "--lr", "1e6", "--steps", "10"]) == 2
    one_line_error(2, capsys.readouterr().err, "brick: texture synthesis stalled", "after 10 iterations")
    assert not (run / "metrics.json").exists() and not (run / "brick_result.png").exists()
    # The same command without the bad options works again: the failed run is moved aside.
    assert main(cmd) == 0
    assert "moved it aside" in capsys.readouterr().out
    assert json.loads((run / "metrics.json").read_text())["results"]["brick"]["iterations"] == 4
    (aside,) = (tmp_path / ".replaced").iterdir()
    assert aside.name.endswith("-tex") and (aside / "meta.json").is_file() and not (aside / "metrics.json").exists()


COMMANDS = {
    "probe": ["probe", "--trunk", "random"],
    "pretrain": ["pretrain", "--method", "autoencoder"],
    "texture": ["texture", "--trunk", "random", "--image", "brick"],
    "generate": ["generate", "--trunk", "random"],
    "compare": ["compare", "--trunks", "random"],
}


@pytest.mark.parametrize("sub", list(COMMANDS))
def test_every_command_restarts_where_a_run_was_left_unfinished(
        sub: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # What a killed run leaves: config.yaml and meta.json but no metrics.json, and no lock (the
    # kernel drops a dead process's flock).
    run = tmp_path / sub
    RunFolder.open(run, command=f"vision {sub}", config={"stale": True}).release()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("POLICYSHARE_RUNS", raising=False)
    assert main(["vision", *COMMANDS[sub], "--run-dir", str(run), *tiny(None)]) == 0
    assert f"moved it aside to {tmp_path / '.replaced'}" in capsys.readouterr().out
    assert (run / "metrics.json").is_file() and "stale" not in (run / "config.yaml").read_text()
    (aside,) = (tmp_path / ".replaced").iterdir()
    assert "stale" in (aside / "config.yaml").read_text() and not (aside / "metrics.json").exists()
    # Nothing is written outside the run folder: a diffusion prior is cached inside it.
    assert not (cwd / "runs").exists()
    assert bool(list(run.glob("cache/ddpm_*.safetensors"))) == (sub in ("generate", "compare"))


def test_killed_texture_run_does_not_block_its_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "tex"
    cmd = ["vision", "texture", "--trunk", "random", "--image", "brick", "--optimizer", "adam", "--run-dir", str(run),
           *tiny(tmp_path / "cache")]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.Popen([sys.executable, "-m", "policyshare", *cmd, "--steps", "1000000",
                             "--set", "texture.patience=1000000"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list((run / "tb").glob("events.out.tfevents.*")):  # synthesising
            assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (run / "metrics.json").exists()
    assert main(cmd) == 0  # the same command (with its usual step count) runs again
    assert "moved it aside" in capsys.readouterr().out
    assert (run / "metrics.json").is_file() and (run / "brick_result.png").is_file()


def test_a_folder_another_process_writes_is_not_moved(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "tex"
    RunFolder.open(run, command="vision texture", config={}).release()
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time; "
                               "fd = os.open(sys.argv[1], os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_EX); "
                               "print('held', flush=True); time.sleep(120)", str(run / LOCK_NAME)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        code = main(["vision", "texture", "--trunk", "random", "--run-dir", str(run), *tiny(tmp_path / "cache")])
        one_line_error(code, capsys.readouterr().err, "in use by another running process", "run the command again")
    finally:
        holder.kill()
        holder.wait()
    assert (run / "meta.json").is_file() and not (tmp_path / ".replaced").exists()


# --------------------------------------------------------------------------------------------
# Where the prior is cached; labelled sample grids


def test_generate_caches_its_prior_in_its_run_folder_and_labels_each_class(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("POLICYSHARE_RUNS", raising=False)
    run = tmp_path / "gen"
    assert main(["vision", "generate", "--trunk", "random", "--run-dir", str(run), *tiny(None)]) == 0
    assert not (cwd / "runs").exists()
    (cached,) = (run / "cache").glob("ddpm_*.safetensors")
    assert json.loads((run / "metrics.json").read_text())["prior"]["cache_file"] == str(cached)
    for name in ("samples.png", "unguided.png"):
        image = np.asarray(Image.open(run / name).convert("L"), dtype=np.float32) / 255.0
        # 10 classes x 3 samples of 8x8 digits, 1-pixel padding, enlarged 4x; the rest is the margin.
        assert image.shape[0] == 4 * (10 * 9 + 1)
        margin = image[:, : image.shape[1] - 4 * (3 * 9 + 1)]
        assert margin.shape[1] > 0
        rows = [margin[4 * (1 + 9 * k): 4 * (9 + 9 * k)] for k in range(10)]
        assert all(float(r.min()) < 0.5 for r in rows), "every row carries its class label"
        assert len({r.tobytes() for r in rows}) == 10, "each row's label differs"
