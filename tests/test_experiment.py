"""The end-to-end experiment: every stage at tiny budgets, resumable, and the report built from it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, run_cli

from policyshare.errors import ConfigError
from policyshare.experiment import load_experiment_config, plan, run_experiment
from policyshare.experiment.report import build_report

#: The methods of the every-stage test (the newer ones have their own tests, below).
FIVE = ["scratch", "finetune", "student", "progressive", "random_column"]
#: Arm labels (transfer folder names without the seed) of those methods in the tiny config.
FIVE_ARMS = {"scratch", "finetune__SpaceInvaders-v1__pad", "student__pad", "progressive__SpaceInvaders-v1__pad",
             "random_column__pad"}
TINY_TRANSFER = {"n_envs": 8, "checkpoint_freq": 1024, "eval": {"freq": 1024, "episodes": 1, "final_episodes": 2,
                                                    "random_episodes": 2}}


def tiny_config(tmp_path: Path, **changes: object) -> Path:
    cfg = {
        "name": "tiny",
        "sources": ["MinAtar/SpaceInvaders-v1", "MinAtar/Asterix-v1"],
        "targets": ["MinAtar/Breakout-v1"],
        "seeds": [0, 1],
        "experts": {"source": "zoo"},
        "distill": {"steps": 2000, "set": {"learning_starts": 256, "checkpoint_freq": 1000, "log_freq": 500,
                                           "eval": {"freq": 1000, "episodes": 1, "final_episodes": 2,
                                                    "random_episodes": 2}}},
        "transfer": {"timesteps": 3072, "methods": FIVE, "finetune_from": "first", "set": TINY_TRANSFER},
        "vision": {"set": {"pretrain": {"classify_epochs": 1, "autoencoder_epochs": 1},
                           "diffusion": {"train_steps": 50, "hidden": 32, "cache_dir": str(tmp_path / "cache")},
                           "guidance": {"train_steps": 20, "per_class": 3, "head_hidden": 16},
                           "texture": {"steps": 3},
                           "thesis": {"scales": [0, 4], "shots": [1], "verdict_shots": 1, "probe_repeats": 1}}},
    }
    cfg.update(changes)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def mtimes(root: Path, pattern: str) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.glob(pattern))}


def test_every_stage_and_a_report_then_nothing_redone(tmp_path: Path) -> None:
    root = tmp_path / "exp"
    run_experiment(tiny_config(tmp_path), run_dir=root)
    report = (root / "report.md").read_text()
    for heading in ("What this run shows", "Verdicts on the four claims", "Across the held-out targets",
                    "Transfer to each held-out game", "The Actor-Mimic student", "Parameter counts", "Vision"):
        assert heading in report
    summary = json.loads((root / "summary.json").read_text())
    tp = summary["transfer"]["targets"]["MinAtar/Breakout-v1"]["transfer_percent"]
    assert set(tp) == FIVE_ARMS
    assert all(len(v["per_seed"]) == 2 for v in tp.values())
    for png in ("plots/curves_MinAtar-Breakout-v1.png", "plots/curves_training_MinAtar-Breakout-v1.png",
                "plots/profiles_MinAtar-Breakout-v1.png", "plots/student.png"):
        assert (root / png).read_bytes()[:4] == b"\x89PNG"
    assert summary["student"]["per_task"].keys() == {"MinAtar/SpaceInvaders-v1", "MinAtar/Asterix-v1"}
    assert set(summary["vision"]["metrics"]["results"]) >= {"random", "classify", "autoencoder", "student"}
    # TensorBoard: every transfer run has event files and they share the evaluation tag.
    assert len(list(root.glob("transfer/*/*/tb/events.out.tfevents.*"))) >= 10

    before = mtimes(root, "**/metrics.json")
    started = time.perf_counter()
    run_experiment(tiny_config(tmp_path), run_dir=root)
    assert time.perf_counter() - started < 30
    assert mtimes(root, "**/metrics.json") == before

    # The report rebuilds from the run folders alone.
    (root / "report.md").unlink()
    rebuilt = build_report(root)
    assert (root / "report.md").is_file() and rebuilt["findings"] == summary["findings"]


EVERY_METHOD = ["scratch", "finetune", "frozen", "student", "single_teacher", "multitask", "progressive",
                "random_column"]


def test_every_method_row_metric_and_verdict_in_a_tiny_report(tmp_path: Path) -> None:
    """The quickstart's shape at a few hundred env steps: every method (finetune and frozen from both
    sources, their mean and best rows), two student seeds (so the student's runs are keyed by
    upstream seed), every metric with a range or interval, and the four claims' sentences."""
    quick_eval = {"freq": 0, "episodes": 1, "final_episodes": 1, "random_episodes": 1}
    config = tiny_config(
        tmp_path, vision={"enabled": False},
        distill={"steps": 512, "seeds": [0, 1], "set": {"n_envs": 4, "learning_starts": 256, "checkpoint_freq": 0,
                                                        "log_freq": 256, "eval": quick_eval}},
        multitask={"timesteps": 512, "set": {"n_envs": 2, "checkpoint_freq": 0, "progress_bar": False,
                                             "hyperparams": {"n_steps": 128, "batch_size": 128}, "eval": quick_eval}},
        transfer={"timesteps": 2048, "methods": EVERY_METHOD, "set": TINY_TRANSFER},
        report={"bootstrap_reps": 200})
    root = run_experiment(config, run_dir=tmp_path / "exp")
    report = (root / "report.md").read_text()
    summary = strict_json(root / "summary.json")
    target = summary["transfer"]["targets"]["MinAtar/Breakout-v1"]
    rows = {"scratch", "student__pad", "single_teacher__SpaceInvaders-v1__pad", "multitask__pad",
            "progressive__SpaceInvaders-v1__pad", "random_column__pad",
            *(f"{m}__{g}__pad" for m in ("finetune", "frozen") for g in ("SpaceInvaders-v1", "Asterix-v1")),
            *(f"{m}__{k}__pad" for m in ("finetune", "frozen") for k in ("mean-over-sources", "best-source"))}
    greedy = target["comparison"]["greedy evaluation"]
    assert set(greedy["methods"]) == rows and set(target["comparison"]["training episodes"]["methods"]) == rows
    for label in rows:
        assert f"| {label} |" in report
    for label in ("transfer %", "normalised area gain", "FT", "return at 10 % of T (norm.)",
                  "return at 100 % of T (norm.)", "normalised area", "P(> scratch), normalised area"):
        assert f"| {label} |" in report or f" {label} |" in report, label
    assert "(range " in report and "nan" not in report.lower()
    assert greedy["methods"]["student__pad"]["seeds"] == ["u0-s0", "u1-s1"]
    assert "Curve: **greedy evaluation**" in report and "Curve: **training episodes**" in report
    for key, claim in (("a", "sharing helps transfer to a held-out game"),
                       ("b", "the student transfers better than single experts"),
                       ("c", "progressive beats its random-column control")):
        assert f"({key}) {claim}: **no verdict**" in report  # two seeds: ranges, no verdict
    assert "(d) sharing gives more per parameter: undecided: no capacity study in this experiment" in report
    assert "env steps charged upstream: student__pad" in report


def test_killed_run_finishes_without_redoing_finished_stages(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, vision={"enabled": False}, distill={"enabled": False},
                         transfer={"timesteps": 8192, "methods": ["scratch", "finetune"], "finetune_from": "first",
                                   "set": TINY_TRANSFER},
                         seeds=[0])
    root = tmp_path / "exp"
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.Popen([sys.executable, "-m", "policyshare", "run", str(config), "--run-dir", str(root)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    scratch = root / "transfer" / "MinAtar-Breakout-v1" / "scratch__s0"
    deadline = time.time() + 300
    while not list((scratch / "checkpoints").glob("ckpt_*.zip")) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (root / "experts" / "MinAtar-SpaceInvaders-v1" / "pad__s0" / "metrics.json").is_file()
    assert not (scratch / "metrics.json").is_file()
    experts = mtimes(root, "experts/*/*/metrics.json")
    done = run_cli("run", str(config), "--run-dir", str(root))
    assert done.returncode == 0, done.stderr
    assert "[experts] done" in done.stdout
    assert mtimes(root, "experts/*/*/metrics.json") == experts
    metrics = json.loads((scratch / "metrics.json").read_text())
    assert metrics["timesteps"] == 8192
    assert (root / "report.md").is_file()


def test_bad_experiment_configs(tmp_path: Path) -> None:
    proc = run_cli("run", str(tiny_config(tmp_path, targets=["MinAtar/SpaceInvaders-v1"])))
    assert proc.returncode == 2 and "both a source and a target" in proc.stderr
    proc = run_cli("run", str(tiny_config(tmp_path, transfer={"methods": ["scratch", "magic"]})))
    assert proc.returncode == 2 and "unknown method 'magic'" in proc.stderr
    proc = run_cli("run", str(tiny_config(tmp_path, distill={"set": {"tau": 0}})))
    assert proc.returncode == 2 and "tau must be > 0" in proc.stderr
    proc = run_cli("run", str(tiny_config(tmp_path)), "--only", "vision", "--run-dir", str(tmp_path / "e"))
    assert proc.returncode == 2 and "needs the experts stage" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_distill_steps_that_cannot_reach_an_update_are_refused_before_any_stage(tmp_path: Path) -> None:
    """``distill.steps`` below the distill config's first update: refused when the config loads."""
    with pytest.raises(ConfigError, match="steps 200 .* trains nothing"):
        load_experiment_config(tiny_config(tmp_path, distill={"steps": 200, "set": {"learning_starts": 256}}))
    assert load_experiment_config(tiny_config(tmp_path, distill={"steps": 256, "set": {"learning_starts": 256}}))


def test_presets_are_valid() -> None:
    for name in ("quickstart", "sharing", "sharing_atari"):
        cfg = load_experiment_config(ROOT / "configs" / f"{name}.yaml")
        jobs = plan(cfg)
        assert jobs["transfer"] and jobs["report"]


@pytest.mark.slow
def test_quickstart_preset_runs(tmp_path: Path) -> None:
    proc = run_cli("run", "configs/quickstart.yaml", "--run-dir", str(tmp_path / "qs"), "--jobs", "2",
                   timeout=3600)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "qs" / "report.md").is_file()


def test_a_key_given_twice_in_an_experiment_config_is_refused(tmp_path: Path) -> None:
    # `targets` is already set above; were the later one taken, the unknown id would stop the run.
    text = tiny_config(tmp_path).read_text() + "targets: [MinAtar/Nope-v1]\n"
    config = tmp_path / "twice.yaml"
    config.write_text(text)
    first = next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith("targets:"))
    last = len(text.splitlines())
    proc = run_cli("run", str(config), "--run-dir", str(tmp_path / "e"))
    assert proc.returncode == 2
    assert f"duplicate key 'targets' at line {last} (first at line {first})" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "e").exists()


# --------------------------------------------------------------------------------------------
# One seed, then a second one added: what the report says, what JSON holds, what is redone.


def small_config(tmp_path: Path, **changes: object) -> Path:
    """Experts from the zoo, scratch and finetune on SpaceInvaders (a random policy scores there, so
    transfer % is defined), one seed, a 40 % interval (with two seeds, a narrower one than 95 %'s:
    the bootstrap of two values has three outcomes)."""
    return tiny_config(tmp_path, distill={"enabled": False}, vision={"enabled": False}, seeds=[0],
                       sources=["MinAtar/Breakout-v1", "MinAtar/Asterix-v1"], targets=["MinAtar/SpaceInvaders-v1"],
                       transfer={"timesteps": 2048, "methods": ["scratch", "finetune", "frozen"],
                                 "finetune_from": "first", "set": TINY_TRANSFER},
                       report={"confidence": 0.4, "bootstrap_reps": 500}, **changes)


@pytest.fixture(scope="module")
def one_seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("one_seed")
    return run_experiment(small_config(tmp), run_dir=tmp / "exp")


@pytest.fixture(scope="module")
def two_seeds(one_seed: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """The one-seed experiment copied, then run again with seeds [0, 1]; the first seed's files'
    modification times before the second run."""
    import shutil

    tmp = tmp_path_factory.mktemp("two_seeds")
    root = tmp / "exp"
    shutil.copytree(one_seed, root)
    before = mtimes(root, "transfer/*/*__s0/**/*")
    run_experiment(small_config(tmp), run_dir=root, overrides={"seeds": [0, 1]})
    return root, before


def strict_json(path: Path) -> dict:
    def refuse(name: str) -> None:
        raise ValueError(f"{path}: {name} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_frozen_keeps_the_source_experts_trunk_and_records_its_upstream_seed(one_seed: Path) -> None:
    run = one_seed / "transfer" / "MinAtar-SpaceInvaders-v1" / "frozen__Breakout-v1__pad__s0"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["freeze_trunk"] is True and metrics["run_name"] == "frozen"
    assert metrics["init_trunk"].endswith("experts/MinAtar-Breakout-v1/pad__s0/trunk.safetensors")
    upstream = yaml.safe_load((run / "config.yaml").read_text())["upstream"]
    assert upstream["run"] == "experts/MinAtar-Breakout-v1/pad__s0" and upstream["seed"] == 0
    summary = json.loads((one_seed / "summary.json").read_text())
    assert summary["transfer"]["targets"]["MinAtar/SpaceInvaders-v1"]["upstream_seeds"]["frozen__Breakout-v1__pad"] == {
        "0": 0}


def test_one_seed_reports_no_interval_instead_of_nan(one_seed: Path) -> None:
    report = (one_seed / "report.md").read_text()
    assert "| finetune__Breakout-v1__pad | " in report and "(one seed)" in report
    assert "nan" not in report.lower()
    summary = json.loads((one_seed / "summary.json").read_text())
    assert summary["claims"]["a"]["outcome"] == "no verdict"  # no student here: nothing to judge


def test_json_files_of_an_experiment_parse_strictly(one_seed: Path) -> None:
    files = sorted(one_seed.rglob("*.json"))
    assert one_seed / "summary.json" in files and len(files) >= 6
    for path in files:
        strict_json(path)
    finetune = strict_json(one_seed / "summary.json")["transfer"]["targets"]["MinAtar/SpaceInvaders-v1"][
        "normalised_area"]["finetune__Breakout-v1__pad"]
    assert finetune["low"] is None and finetune["high"] is None and isinstance(finetune["iqm"], float)
    assert finetune["kind"] == "none" and finetune["note"] == "one seed: no interval"


def test_transfer_and_progressive_tables_say_one_seed(one_seed: Path) -> None:
    from policyshare.comparison import load_curve, transfer_summary
    from policyshare.progressive.report import _transfer_rows
    from policyshare.transfer import report

    runs = one_seed / "transfer" / "MinAtar-SpaceInvaders-v1"
    curves = {m: {0: load_curve(runs / f"{a}__s0")} for m, a in (("finetune", "finetune__Breakout-v1__pad"),
                                                                  ("scratch", "scratch"))}
    tp = transfer_summary(curves, "scratch")
    text = report({"method": "finetune", "transfer_percent": tp["finetune"], "env_id": "MinAtar/SpaceInvaders-v1",
                   "algo": "ppo", "timesteps": 2048, "trunk": "trunk.safetensors", "seeds": [0],
                   "final_returns": {"finetune": {"0": 1.0}, "scratch": {"0": 2.0}},
                   "final_return_mean": {"finetune": 1.0, "scratch": 2.0}, "plot": "curves.png"})
    assert "IQM over 1 seed: **" in text and "(one seed: no interval)" in text and "nan" not in text
    rows = _transfer_rows({"methods": {"progressive": {"transfer_percent": tp["finetune"],
                                                       "final_eval_mean_return_over_seeds": 1.0}}})
    assert rows[0][1].endswith("(one seed: no interval)")


def test_adding_a_seed_runs_only_its_jobs(two_seeds: tuple[Path, dict[str, int]]) -> None:
    root, before = two_seeds
    assert before and mtimes(root, "transfer/*/*__s0/**/*") == before  # the first seed untouched
    runs = sorted(p.parent.name for p in root.glob("transfer/MinAtar-SpaceInvaders-v1/*/metrics.json"))
    assert runs == ["finetune__Breakout-v1__pad__s0", "finetune__Breakout-v1__pad__s1", "frozen__Breakout-v1__pad__s0",
                    "frozen__Breakout-v1__pad__s1", "scratch__s0", "scratch__s1"]
    assert not (root / ".replaced").exists()
    summary = json.loads((root / "summary.json").read_text())
    assert summary["seeds"] == [0, 1]


def test_changing_a_finished_jobs_setting_still_needs_force(two_seeds: tuple[Path, dict[str, int]],
                                                            tmp_path: Path) -> None:
    from policyshare.errors import UserError
    from policyshare.experiment import open_experiment

    root, _ = two_seeds
    config = small_config(tmp_path)
    more = {"seeds": [0, 1], "transfer": {"methods": ["scratch", "finetune", "frozen", "random_column"]}}
    open_experiment(config, root, more)  # a new method: only new jobs
    with pytest.raises(UserError, match=r"transfer changed, and transfer/MinAtar-SpaceInvaders-v1/scratch__s0 and 5 "
                                        r"more finished with the old settings; add --force transfer"):
        open_experiment(config, root, {"seeds": [0, 1], "transfer": {"timesteps": 4096}})


def test_report_confidence_is_honoured_for_a_single_target(two_seeds: tuple[Path, dict[str, int]]) -> None:
    """Two seeds give ranges, not intervals; the configured 40 % is what every caption names."""
    root, _ = two_seeds
    summary = json.loads((root / "summary.json").read_text())
    greedy = summary["transfer"]["targets"]["MinAtar/SpaceInvaders-v1"]["comparison"]["greedy evaluation"]
    assert greedy["settings"]["confidence"] == 0.4 and greedy["settings"]["reps"] == 500
    area = greedy["methods"]["finetune__Breakout-v1__pad"]["aggregate"]["normalised_area"]
    assert area["kind"] == "range" and "a range, not a confidence interval" in area["note"]
    report = (root / "report.md").read_text()
    assert "40% bootstrap confidence interval" in report and "range" in report
    assert "95%" not in report and "95 %" not in report


def test_multitask_and_single_teacher_jobs_run_and_transfer_their_trunks_under_stem(tmp_path: Path) -> None:
    """The new upstream job kinds at a few hundred env steps: multi-task PPO on the two source games
    (its trunk then fine-tuned on the target) and a student of one teacher; ``stem`` alignment
    throughout (the zoo's pad experts serve as teachers only: a student's trunk has its own alignment)."""
    from policyshare.checkpoints import read_trunk_file

    quick_eval = {"freq": 0, "episodes": 1, "final_episodes": 1, "random_episodes": 1}
    config = tiny_config(
        tmp_path, vision={"enabled": False}, seeds=[0],
        distill={"steps": 512, "set": {"n_envs": 4, "learning_starts": 256, "checkpoint_freq": 0, "log_freq": 256,
                                       "eval": quick_eval}},
        multitask={"timesteps": 512, "set": {"n_envs": 2, "checkpoint_freq": 0, "progress_bar": False,
                                             "hyperparams": {"n_steps": 128, "batch_size": 128}, "eval": quick_eval}},
        transfer={"timesteps": 2048, "methods": ["scratch", "single_teacher", "multitask"], "alignments": ["stem"],
                  "set": TINY_TRANSFER})
    root = run_experiment(config, run_dir=tmp_path / "exp")
    mt = root / "multitask" / "SpaceInvaders-v1_Asterix-v1" / "stem__s0"
    mt_metrics = json.loads((mt / "metrics.json").read_text())
    assert mt_metrics["tasks"] == ["MinAtar/SpaceInvaders-v1", "MinAtar/Asterix-v1"] and mt_metrics["timesteps"] == 512
    assert read_trunk_file(mt / "trunk.safetensors")[1]["alignment"]["mode"] == "stem"
    single = root / "distill" / "SpaceInvaders-v1" / "stem__s0"
    assert list(json.loads((single / "metrics.json").read_text())["per_task"]) == ["MinAtar/SpaceInvaders-v1"]
    transfer = root / "transfer" / "MinAtar-Breakout-v1"
    for arm, upstream in (("multitask__stem", "multitask/SpaceInvaders-v1_Asterix-v1/stem__s0"),
                          ("single_teacher__SpaceInvaders-v1__stem", "distill/SpaceInvaders-v1/stem__s0")):
        run = transfer / f"{arm}__s0"
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["init_trunk"] == str(root / upstream / "trunk.safetensors") and not metrics["freeze_trunk"]
        stored = yaml.safe_load((run / "config.yaml").read_text())
        assert stored["upstream"]["run"] == upstream and stored["trunk"]["alignment"] == "stem"
    summary = json.loads((root / "summary.json").read_text())
    rows = summary["transfer"]["targets"]["MinAtar/Breakout-v1"]["transfer_percent"]
    assert set(rows) == {"scratch", "multitask__stem", "single_teacher__SpaceInvaders-v1__stem"}
    assert set(summary["upstream_runs"]) == {"distill/SpaceInvaders-v1/stem__s0",
                                             "distill/SpaceInvaders-v1_Asterix-v1/stem__s0",
                                             "multitask/SpaceInvaders-v1_Asterix-v1/stem__s0"}
    report = (root / "report.md").read_text()
    assert "| multitask__stem |" in report and "Students and multi-task networks" in report


def test_experts_trained_here_under_stem_feed_finetune_and_a_progressive_column(tmp_path: Path) -> None:
    """``experts.source: train`` trains each expert under the study's alignment, so ``stem`` (which the
    zoo's pad experts cannot give) reaches the trunk-sharing methods."""
    from policyshare.checkpoints import read_trunk_file

    quick_eval = {"freq": 0, "episodes": 1, "final_episodes": 1, "random_episodes": 1}
    config = tiny_config(
        tmp_path, vision={"enabled": False}, distill={"enabled": False}, seeds=[0],
        experts={"source": "train", "timesteps": 1024, "set": {"n_envs": 8, "checkpoint_freq": 0, "eval": quick_eval}},
        transfer={"timesteps": 2048, "methods": ["scratch", "finetune", "progressive"], "finetune_from": "first",
                  "alignments": ["stem"], "set": TINY_TRANSFER})
    root = run_experiment(config, run_dir=tmp_path / "exp")
    expert = root / "experts" / "MinAtar-SpaceInvaders-v1" / "stem__s0"
    assert sorted(p.parent.relative_to(root).as_posix() for p in root.glob("experts/*/*/metrics.json")) == [
        "experts/MinAtar-SpaceInvaders-v1/stem__s0"]  # only the expert a run starts from
    assert read_trunk_file(expert / "trunk.safetensors")[1]["alignment"]["mode"] == "stem"
    transfer = root / "transfer" / "MinAtar-Breakout-v1"
    finetune = json.loads((transfer / "finetune__SpaceInvaders-v1__stem__s0" / "metrics.json").read_text())
    assert finetune["init_trunk"] == str(expert / "trunk.safetensors")
    column = yaml.safe_load((transfer / "progressive__SpaceInvaders-v1__stem__s0" / "config.yaml").read_text())
    assert column["progressive"]["frozen_column"] == "MinAtar/SpaceInvaders-v1"
    assert column["upstream"]["run"] == "experts/MinAtar-SpaceInvaders-v1/stem__s0"
    assert column["trunk"]["alignment"] == "stem"


def test_student_plot_title_fits_the_figure_and_clears_the_y_label() -> None:
    from policyshare.comparison import interval_figure

    rows = {"SpaceInvaders-v1": {"point": 0.8, "low": 0.8, "high": 0.8},
            "Asterix-v1": {"point": 0.5, "low": 0.5, "high": 0.5}, "IQM": {"point": 0.6, "low": 0.5, "high": 0.8}}
    fig = interval_figure(rows, "student: expert-normalised score per game (IQM: 95% bootstrap over games)",
                                  "(student − random) / (teacher − random)", 1.0)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    title, ylabel = ax.title.get_window_extent(renderer), ax.yaxis.label.get_window_extent(renderer)
    page = fig.bbox
    for box in (title, ylabel):
        assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1
    assert not title.overlaps(ylabel)


def test_ctrl_c_stops_a_pool_of_jobs_and_names_the_unfinished_ones(tmp_path: Path) -> None:
    # Four transfer jobs far too long to finish here, two at a time: the first two start, a SIGINT
    # (what Ctrl-C sends) must stop them at a checkpoint and never start the other two.
    config = tiny_config(tmp_path, vision={"enabled": False}, distill={"enabled": False}, seeds=[0, 1],
                         transfer={"timesteps": 500_000, "methods": ["scratch", "finetune"], "finetune_from": "first",
                                   "set": TINY_TRANSFER})
    root = tmp_path / "exp"
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.Popen([sys.executable, "-m", "policyshare", "run", str(config), "--run-dir", str(root),
                             "--jobs", "2"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    transfer = root / "transfer" / "MinAtar-Breakout-v1"
    deadline = time.time() + 300
    while len(list(transfer.glob("*/checkpoints/ckpt_*.zip"))) < 2 and time.time() < deadline:
        time.sleep(0.2)
    started = sorted(p.name for p in transfer.iterdir())
    assert len(started) == 2, started
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the command and any worker left in its group
        pytest.fail("still running 180 s after SIGINT")
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("policyshare run: interrupted (SIGINT); unfinished: ")
    for name in ("scratch__s0", "finetune__SpaceInvaders-v1__pad__s0", "scratch__s1",
                 "finetune__SpaceInvaders-v1__pad__s1"):
        assert f"transfer/MinAtar-Breakout-v1/{name}" in lines[0]
    assert "run the same command again to continue" in lines[0]
    assert sorted(p.name for p in transfer.iterdir()) == started  # the queued jobs never started
    for name in started:
        assert list((transfer / name / "checkpoints").glob("ckpt_*.zip"))
        assert not (transfer / name / "metrics.json").exists()
    assert not (root / "report.md").exists()
