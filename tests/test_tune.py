"""``policyshare tune``: a search on a local Ray whose printed config trains; search spaces checked up
front; bad input refused before any trial runs; evaluations reported from a training run."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import yaml
from conftest import TINY, run_cli

from policyshare.cli import main
from policyshare.errors import ConfigError, UserError
from policyshare.tune.space import (
    cap_batch_size,
    check_search_space,
    load_search_space,
    trial_overrides,
)

BREAKOUT = "MinAtar/Breakout-v1"

# Two tiny trials: rollouts of 64-256 env steps, evaluations of one episode every 256 env steps.
TINY_SPACE = {
    "tuner": {"trials": 2, "timesteps": 512, "evaluations": 2, "grace_period": 0.5, "reduction_factor": 2},
    "ppo": {"n_envs": {"choice": [2, 4]},
            "hyperparams": {"n_steps": {"choice": [32, 64]}, "batch_size": 64, "n_epochs": 1,
                            "learning_rate": {"loguniform": [1.0e-4, 1.0e-3], "schedule": ["constant", "linear"]}}},
}
TINY_EVAL = ["--set", "eval.episodes=1", "--set", "eval.final_episodes=2", "--set", "eval.random_episodes=2",
             "--set", "checkpoint_freq=0"]


def _write(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.slow  # ~70 s on the shared 2-core machine (Ray's start and two trial workers), over the ~60 s budget
def test_tune_on_local_ray_prints_a_config_that_train_accepts(tmp_path: Path) -> None:
    space = _write(tmp_path / "space.yaml", TINY_SPACE)
    root = tmp_path / "tune"
    proc = run_cli("tune", "--env", BREAKOUT, "--space", str(space), "--run-dir", str(root), *TINY_EVAL, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    # Every trial is a finished policyshare train run folder with the sampled values in its config.
    summary = json.loads((root / "summary.json").read_text())
    names = [t["name"] for t in summary["trials"]]
    assert names == ["trial_1", "trial_2"]
    for t in summary["trials"]:
        run = root / t["name"]
        assert t["status"] == "finished" and (run / "metrics.json").is_file() and (run / "meta.json").is_file()
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        assert cfg["env_id"] == BREAKOUT and cfg["algo"] == "ppo" and cfg["seed"] == 0
        assert cfg["n_envs"] == t["sampled"]["n_envs"] in (2, 4)
        assert cfg["hyperparams"]["n_steps"] == t["sampled"]["hyperparams.n_steps"] in (32, 64)
        assert cfg["hyperparams"]["learning_rate"] == t["sampled"]["hyperparams.learning_rate"]
        lr = cfg["hyperparams"]["learning_rate"]
        assert 1e-4 <= float(str(lr).removeprefix("lin_")) <= 1e-3
        assert cfg["eval"]["freq"] == 256  # timesteps / evaluations
        # Ray Tune got each periodic evaluation (eval/mean_reward at its env step), then the final one.
        curve = json.loads((run / "evaluations.json").read_text())
        reported = [json.loads(line) for line in (root / "ray" / "search" / t["name"] / "result.json")
                    .read_text().splitlines()]
        assert [r["timesteps"] for r in reported if not r["final"]] == curve["timesteps"]
        assert [r["eval/mean_reward"] for r in reported if not r["final"]] == curve["mean"]
        metrics = json.loads((run / "metrics.json").read_text())
        assert reported[-1]["final"] and reported[-1]["eval/mean_reward"] == metrics["eval_mean_return"]
        assert t["score"] == metrics["eval_mean_return"]

    # stdout is the YAML alone: one block keyed by the env id, the best finished trial's agent.
    printed = yaml.safe_load(proc.stdout)
    assert list(printed) == [BREAKOUT]
    best = summary["best"]
    assert max(t["score"] for t in summary["trials"]) == next(t["score"] for t in summary["trials"]
                                                              if t["name"] == best)
    best_cfg = yaml.safe_load((root / best / "config.yaml").read_text())
    assert printed[BREAKOUT]["hyperparams"] == best_cfg["hyperparams"]
    assert printed[BREAKOUT]["n_envs"] == best_cfg["n_envs"]
    assert f"Best of 2 trials (2 finished) of 512 env steps each, seed 0: {best}" in proc.stdout
    assert (root / "best.yaml").read_text() == proc.stdout

    # ...and policyshare train accepts it and trains that agent.
    config = tmp_path / "best.yaml"
    config.write_text(proc.stdout)
    run = tmp_path / "retrain"
    assert main(["train", "--env", BREAKOUT, "--config", str(config), "--timesteps", "256", "--run-dir", str(run),
                 *TINY]) == 0
    trained = yaml.safe_load((run / "config.yaml").read_text())
    assert trained["hyperparams"] == best_cfg["hyperparams"] and trained["n_envs"] == best_cfg["n_envs"]
    assert trained["policy"] == best_cfg["policy"] and trained["trunk"] == best_cfg["trunk"]


@pytest.mark.slow
def test_tune_where_every_trial_diverges_lists_them_and_exits_2(tmp_path: Path) -> None:
    space = dict(TINY_SPACE)
    space["ppo"] = {"n_envs": {"choice": [2, 4]},
                    "hyperparams": {"n_steps": 64, "batch_size": 64, "learning_rate": 1.0e30}}
    root = tmp_path / "tune"
    proc = run_cli("tune", "--env", BREAKOUT, "--space", str(_write(tmp_path / "space.yaml", space)),
                   "--run-dir", str(root), *TINY_EVAL, timeout=600)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "policyshare tune: error: none of the 2 trials finished; first failure: ")
    summary = json.loads((root / "summary.json").read_text())
    assert [t["status"] for t in summary["trials"]] == ["failed", "failed"]
    assert all("NaN" in t["message"] or "infinite" in t["message"] for t in summary["trials"])
    assert not (root / "best.yaml").exists()


# --------------------------------------------------------------------------------------------
# Bad input: one line, exit 2, before any trial runs (no Ray is started: these take seconds).


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(("args", "message"), [
    (["--env", "MinAtar/Brekout-v1"], "unknown env id 'MinAtar/Brekout-v1' (did you mean 'MinAtar/Breakout-v1'?)"),
    (["--env", BREAKOUT, "--trials", "0"], "--trials must be >= 1, got 0"),
    (["--env", BREAKOUT, "--timesteps", "0"], "--timesteps must be >= 1"),
    (["--env", BREAKOUT, "--algo", "sac"], "unknown algorithm 'sac'"),
    (["--env", BREAKOUT, "--algo", "a2c"], "has no search space for 'a2c'; it has: ppo, dqn"),
    (["--env", "ALE/Pong-v5", "--set", "vec_env=batched"], "runs MinAtar games only"),
    (["--env", BREAKOUT, "--set", "hyperparams.gama=0.9"], "unknown key 'gama' (did you mean 'gamma'?)"),
    (["--env", BREAKOUT, "--address", "PORT"], "no Ray cluster at --address 127.0.0.1:"),
])
def test_tune_refuses_bad_input_before_any_trial(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  args: list[str], message: str) -> None:
    args = [f"127.0.0.1:{_free_port()}" if a == "PORT" else a for a in args]
    root = tmp_path / "tune"
    assert main(["tune", *args, "--run-dir", str(root)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not root.exists()


def test_tune_refuses_a_folder_holding_an_earlier_search(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "tune"
    (root / "trial_1").mkdir(parents=True)
    assert main(["tune", "--env", BREAKOUT, "--run-dir", str(root)]) == 2
    assert "already holds a search" in capsys.readouterr().err
    assert [p.name for p in root.iterdir()] == ["trial_1"]


# --------------------------------------------------------------------------------------------
# Search spaces


def test_the_shipped_search_spaces_train_on_every_minatar_game() -> None:
    from policyshare.envs import load_suite

    for algo in ("ppo", "dqn"):
        space = load_search_space(algo)
        names = {d.name for d in space.dimensions}
        assert {"n_envs", "hyperparams.learning_rate", "hyperparams.gamma", "hyperparams.batch_size"} <= names
        for env_id in load_suite("minatar").tasks:
            check_search_space(space, env_id, None)
    assert max(next(d for d in load_search_space("ppo").dimensions if d.name == "n_envs").values) == 128


@pytest.mark.parametrize(("entry", "message"), [
    ({"hyperparams": {"gamma": {"uniform": [0.9, 1.5]}}}, "ppo.hyperparams.gamma = 1.5 does not make a valid train"),
    ({"hyperparams": {"n_step": {"choice": [32, 64]}}}, "did you mean 'n_steps'?"),
    ({"hyperparams": {"ent_coef": {"loguniform": [0, 0.1]}}}, "a log scale needs low > 0"),
    ({"hyperparams": {"gamma": {"uniform": [0.99, 0.9]}}}, "low (0.99) must be below high (0.9)"),
    ({"hyperparams": {"gamma": {"normal": [0.9, 0.1]}}}, "expected one distribution"),
    ({"hyperparams": {"n_epochs": {"int": [1, 10], "schedule": ["linear"]}}}, "a schedule needs positive numbers"),
    ({"hyperparams": {"learning_rate": {"choice": [1e-3], "schedule": ["cosine"]}}}, "expected a list of constant"),
    ({"timesteps": {"choice": [1000, 2000]}}, "'timesteps' is set by the tuner"),
    ({"vec_env": {"choice": ["dummy", "fast"]}}, "'fast' is not one of 'dummy' | 'subproc' | 'batched'"),
])
def test_a_search_space_that_cannot_train_is_refused(tmp_path: Path, entry: dict[str, object], message: str) -> None:
    path = _write(tmp_path / "space.yaml", {"ppo": entry})
    with pytest.raises(UserError) as e:
        check_search_space(load_search_space("ppo", path), "MinAtar/Seaquest-v1", None)
    assert message in str(e.value)


def test_a_trial_becomes_train_overrides_with_schedules_rounding_and_list_choices(tmp_path: Path) -> None:
    path = _write(tmp_path / "space.yaml", {"ppo": {
        "policy": {"net_arch": {"choice": [[64, 64], []]}},
        "hyperparams": {"learning_rate": {"loguniform": [1e-5, 1e-3], "schedule": ["constant", "linear"]},
                        "clip_range": {"choice": [0.1, 0.2], "schedule": ["linear"]},
                        "n_epochs": {"int": [1, 10]}, "gamma": 0.98}}})
    space = load_search_space("ppo", path)
    assert space.fixed == {"hyperparams": {"gamma": 0.98}}
    assert set(space.domains()) == {"policy.net_arch", "hyperparams.learning_rate",
                                    "hyperparams.learning_rate:schedule", "hyperparams.clip_range",
                                    "hyperparams.clip_range:schedule", "hyperparams.n_epochs"}
    sampled = {"policy.net_arch": 1, "hyperparams.learning_rate": 0.000312345678,
               "hyperparams.learning_rate:schedule": "linear", "hyperparams.clip_range": 0.2,
               "hyperparams.clip_range:schedule": "linear", "hyperparams.n_epochs": 7}
    overrides = trial_overrides(space, sampled, {"n_envs": 8})
    assert overrides == {"hyperparams": {"gamma": 0.98, "learning_rate": "lin_0.0003123", "clip_range": "lin_0.2",
                                         "n_epochs": 7},
                         "policy": {"net_arch": []}, "n_envs": 8}
    from policyshare.train import load_train_config

    cfg, params = load_train_config(BREAKOUT, "ppo", None, overrides)
    assert cfg.policy.net_arch == [] and params.learning_rate == "lin_0.0003123" and params.n_epochs == 7
    # A key fixed with --set leaves the search.
    assert "hyperparams.n_epochs" not in space.without({"hyperparams": {"n_epochs": 3}}).domains()


def test_ppo_batch_size_is_capped_at_the_rollout() -> None:
    big = {"n_envs": 2, "hyperparams": {"n_steps": 16, "batch_size": 1024}}
    assert cap_batch_size(BREAKOUT, "ppo", None, big)["hyperparams"]["batch_size"] == 32
    fits = {"n_envs": 8, "hyperparams": {"n_steps": 128, "batch_size": 256}}
    assert cap_batch_size(BREAKOUT, "ppo", None, fits) == fits
    # The config's own batch_size (256) against a small rollout.
    assert cap_batch_size(BREAKOUT, "ppo", None, {"n_envs": 2, "hyperparams": {"n_steps": 32}}) == {
        "n_envs": 2, "hyperparams": {"n_steps": 32, "batch_size": 64}}
    with pytest.raises(ConfigError):
        cap_batch_size(BREAKOUT, "ppo", None, {"n_envs": 0})


# --------------------------------------------------------------------------------------------
# The hook that reports evaluations


def test_train_calls_on_evaluation_at_every_periodic_evaluation(tmp_path: Path) -> None:
    from policyshare.train import train

    seen: list[tuple[int, float]] = []
    result = train(BREAKOUT, "ppo", timesteps=512, run_dir=tmp_path / "run",
                   overrides={"n_envs": 2, "checkpoint_freq": 0, "hyperparams": {"n_steps": 64, "batch_size": 64},
                              "eval": {"freq": 256, "episodes": 1, "final_episodes": 2, "random_episodes": 2}},
                   on_evaluation=lambda step, r: seen.append((step, r.mean)))
    curve = json.loads((result.run_dir / "evaluations.json").read_text())
    assert [s for s, _ in seen] == curve["timesteps"] == [0, 256, 512]  # with the step-0 evaluation
    assert [m for _, m in seen] == curve["mean"]
