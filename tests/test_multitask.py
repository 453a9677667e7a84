"""Multi-task PPO from scratch (`policyshare multitask`): one network trained by SB3's PPO on three MinAtar
games at once — one optimizer, one trunk object for every task, per-task action masks respected, per-task
TensorBoard tags — and its trunk file taken by `transfer` and `train --init-trunk`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import run_cli

from policyshare.algos import features_extractors
from policyshare.alignment import action_mask
from policyshare.cli import main
from policyshare.config import parse_overrides
from policyshare.envs import check_env_id, make_vec_env, task_action_map
from policyshare.multitask import (
    MultiTaskExtractor,
    MultiTaskPolicy,
    TaskAgent,
    build_multitask_model,
    load_multitask_config,
    make_multitask_env,
)

TASKS = ["MinAtar/Breakout-v1", "MinAtar/Asterix-v1", "MinAtar/SpaceInvaders-v1"]  # 4, 4, 6 channels
HELD_OUT = "MinAtar/Seaquest-v1"  # 10 channels, not a source game
# A rollout is n_steps * n_envs * tasks = 64 * 2 * 3 = 384 env steps; 768 = two rollouts (256 per task).
SETTINGS = ["n_envs=2", "hyperparams.n_steps=64", "hyperparams.batch_size=128", "eval.freq=384", "eval.episodes=1",
            "eval.final_episodes=2", "eval.random_episodes=2", "checkpoint_freq=384", "progress_bar=false"]
TINY = ["--timesteps", "768", *[arg for item in SETTINGS for arg in ("--set", item)]]


@pytest.fixture(scope="module")
def mt_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished `policyshare multitask` run on three games (768 env steps), through the command line."""
    run = tmp_path_factory.mktemp("multitask") / "run"
    proc = run_cli("multitask", "--tasks", *TASKS, "--run-dir", str(run), "--seed", "3", *TINY)
    assert proc.returncode == 0, proc.stderr
    assert "expert-normalised IQM over 3 tasks" in proc.stdout and "trunk:" in proc.stdout
    return run


def fresh_model(alignment: str = "pad") -> Any:
    """An untrained multi-task PPO on the three games, as `policyshare multitask` builds it."""
    overrides = parse_overrides([*SETTINGS, f"trunk.alignment={alignment}"])
    cfg, params = load_multitask_config(len(TASKS), overrides=overrides)
    maps = [task_action_map(t) for t in TASKS]
    env = make_multitask_env(TASKS, cfg.n_envs, 0, cfg.vec_env, maps, 6)
    return build_multitask_model(env, cfg, params, check_env_id(TASKS[0]), maps, seed=0)


def task_observations(task: str, n: int = 64) -> np.ndarray:
    """``n`` real observations of a task (random play), ``(n, 10, 10, C_task)`` bool."""
    venv = make_vec_env(task, 4, 7)
    obs, out = venv.reset(), []
    rng = np.random.default_rng(0)
    while sum(len(o) for o in out) < n:
        out.append(obs)
        obs, *_ = venv.step(rng.integers(venv.action_space.n, size=4))
    venv.close()
    return np.concatenate(out)[:n]


def dict_batch(model: Any, k: int, obs: np.ndarray) -> dict[str, torch.Tensor]:
    channels = model.observation_space["obs"].shape[-1]
    padded = np.concatenate([obs, np.zeros((*obs.shape[:-1], channels - obs.shape[-1]), bool)], -1)
    tensors, _ = model.policy.obs_to_tensor({"obs": padded, "task": np.full(len(obs), k)})
    return tensors


# --------------------------------------------------------------------------------------------
# The run


def test_multitask_trains_one_network_on_three_games(mt_run: Path) -> None:
    for name in ("config.yaml", "meta.json", "model.zip", "trunk.safetensors", "metrics.json", "evaluations.json",
                 "timing.json"):
        assert (mt_run / name).is_file(), name
    assert sorted(p.name for p in (mt_run / "checkpoints").glob("ckpt_*.zip")) == ["ckpt_384.zip", "ckpt_768.zip"]
    m = json.loads((mt_run / "metrics.json").read_text())
    assert m["tasks"] == TASKS and m["method"] == "multitask_ppo" and m["seed"] == 3
    assert m["timesteps"] == 768 and m["env_steps_per_task"] == 256
    for task in TASKS:
        r = m["per_task"][task]
        assert len(r["eval_returns"]) == 2 and r["eval_mean_return"] == pytest.approx(np.mean(r["eval_returns"]))
        assert r["expert_source"].startswith("zoo expert")
        gap = r["expert_mean_return"] - r["random_mean_return"]
        if gap > 0:
            assert r["expert_normalised"] == pytest.approx((r["eval_mean_return"] - r["random_mean_return"]) / gap)
        else:
            assert r["expert_normalised"] is None and r["expert_normalised_why"]
    # Each task is evaluated greedily on its own env, from step 0, at every eval.freq and at the end.
    curves = json.loads((mt_run / "evaluations.json").read_text())
    assert list(curves) == TASKS and all(curves[t]["timesteps"] == [0, 384, 768] for t in TASKS)


def test_tensorboard_has_per_task_tags_beside_sb3s(mt_run: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set(EventAccumulator(str(mt_run / "tb")).Reload().Tags()["scalars"])
    assert {"rollout/ep_rew_mean", "train/loss", "train/entropy_loss"} <= tags
    for task in TASKS:
        slug = task.replace("/", "-")
        for name in ("ep_rew_mean", "ep_len_mean", "eval_return", "eval_std"):
            assert f"multitask/{slug}/{name}" in tags, (task, name)


def test_exported_trunk_is_read_by_load_trunk_and_matches_the_network(mt_run: Path) -> None:
    from stable_baselines3 import PPO

    from policyshare import load_trunk

    trunk = load_trunk(mt_run / "trunk.safetensors")
    assert trunk.header is not None and trunk.header["format"] == "policyshare.trunk"
    assert trunk.header["alignment"]["mode"] == "pad" and trunk.header["source"]["tasks"] == TASKS
    assert trunk.spec.in_channels == 10  # the suite's width: any MinAtar game fits
    model = PPO.load(mt_run / "model.zip")  # plain SB3 loads the multi-task model
    assert isinstance(model.policy, MultiTaskPolicy)
    saved = model.policy.features_extractor.trunk.state_dict()
    for key, value in trunk.state_dict().items():
        assert torch.equal(value, saved[key]), key


def test_exported_trunk_initialises_train_and_transfer_on_a_held_out_game(mt_run: Path, tmp_path: Path) -> None:
    from policyshare import load_trunk
    from policyshare.transfer import transfer

    trunk_file = mt_run / "trunk.safetensors"
    assert main(["train", "--env", HELD_OUT, "--init-trunk", str(trunk_file), "--timesteps", "256",
                 "--run-dir", str(tmp_path / "train"), "--quiet", "--set", "n_envs=2",
                 "--set", "hyperparams.n_steps=128", "--set", "hyperparams.batch_size=128", "--set", "eval.freq=0",
                 "--set", "eval.final_episodes=1", "--set", "eval.random_episodes=1",
                 "--set", "checkpoint_freq=0"]) == 0
    assert json.loads((tmp_path / "train" / "metrics.json").read_text())["init_trunk"] == str(trunk_file)
    # Frozen: the held-out agent's trunk is the multi-task trunk, bit for bit, after training.
    result = transfer(trunk_file, HELD_OUT, seeds=[0], timesteps=256, freeze_trunk=True, run_dir=tmp_path / "transfer",
                      overrides=parse_overrides(["n_envs=2", "hyperparams.n_steps=128", "hyperparams.batch_size=128",
                                                 "eval.freq=256", "eval.episodes=1", "eval.final_episodes=1",
                                                 "eval.random_episodes=1", "checkpoint_freq=0", "progress_bar=false"]))
    assert result.summary["method"] == "frozen"
    after = load_trunk(tmp_path / "transfer" / "frozen__s0" / "trunk.safetensors")
    for key, value in load_trunk(trunk_file).state_dict().items():
        assert torch.equal(value, after.state_dict()[key]), key


# --------------------------------------------------------------------------------------------
# Sharing invariants


@pytest.mark.parametrize("alignment", ["pad", "stem"])
def test_one_optimizer_holds_exactly_the_networks_trainable_parameters(alignment: str) -> None:
    model = fresh_model(alignment)
    policy = model.policy
    in_optimizer = [p for group in policy.optimizer.param_groups for p in group["params"]]
    trainable = [p for p in policy.parameters() if p.requires_grad]
    assert len(in_optimizer) == len({id(p) for p in in_optimizer})  # none twice
    assert {id(p) for p in in_optimizer} == {id(p) for p in trainable}
    ex = policy.features_extractor
    assert {id(p) for p in ex.trunk.parameters()} <= {id(p) for p in in_optimizer}
    stems = [ex.alignment(k).stem for k in range(len(TASKS))]
    if alignment == "stem":  # one 1x1 stem per task, each its own module, all optimised
        assert all(s is not None for s in stems) and len({id(s) for s in stems}) == len(TASKS)
        assert all({id(p) for p in s.parameters()} <= {id(p) for p in in_optimizer} for s in stems)
    else:
        assert stems == [None] * len(TASKS)
    model.env.close()


@pytest.mark.parametrize("alignment", ["pad", "stem"])
def test_every_task_goes_through_the_same_trunk_object(alignment: str) -> None:
    model = fresh_model(alignment)
    policy = model.policy
    extractors = features_extractors(model)
    assert len(extractors) == 1 and isinstance(extractors[0], MultiTaskExtractor)
    trunk = extractors[0].trunk
    assert policy.pi_features_extractor.trunk is trunk and policy.vf_features_extractor.trunk is trunk
    agents = [TaskAgent(model, k, t, task_action_map(t)) for k, t in enumerate(TASKS)]
    assert all(a.model.policy.features_extractor.trunk is trunk for a in agents)

    calls: list[int] = []
    handle = trunk.register_forward_hook(lambda module, args, out: calls.append(len(args[0])))
    batches = [dict_batch(model, k, task_observations(t, 8)) for k, t in enumerate(TASKS)]
    mixed = {key: torch.cat([b[key] for b in batches]) for key in batches[0]}
    policy.evaluate_actions(mixed, torch.zeros(24, dtype=torch.long))
    assert calls == [24]  # one pass of the one trunk over all three tasks' observations
    for agent, t in zip(agents, TASKS):  # each task acting alone uses that same trunk
        agent.predict(task_observations(t, 4))
    assert calls == [24, 4, 4, 4]
    handle.remove()

    # Every task's loss reaches the one trunk's weights.
    first = trunk.layers[0].weight
    for k, t in enumerate(TASKS):
        policy.zero_grad()
        values, log_prob, _ = policy.evaluate_actions(batches[k], torch.zeros(8, dtype=torch.long))
        (values.sum() + log_prob.sum()).backward()
        assert first.grad is not None and first.grad.abs().sum() > 0, t
    model.env.close()


def test_masked_actions_have_zero_probability_and_are_never_taken() -> None:
    model = fresh_model("stem")
    policy = model.policy
    with torch.no_grad():  # tempt it: a large logit on every action, so only the mask can keep one out
        policy.action_net.bias.copy_(torch.tensor([0.0, 0.0, 9.0, 0.0, 9.0, 9.0]))
    for k, task in enumerate(TASKS):
        allowed = action_mask(task_action_map(task), 6)
        batch = dict_batch(model, k, task_observations(task))
        with torch.no_grad():
            dist = policy.get_distribution(batch).distribution
            probs = dist.probs
            assert torch.all(probs[:, ~allowed] == 0), task
            torch.testing.assert_close(probs.sum(-1), torch.ones(len(probs)))
            assert torch.all(probs[:, allowed] > 0)
            sampled = dist.sample((200,)).flatten()
            assert set(sampled.tolist()) <= set(np.flatnonzero(allowed.numpy()).tolist()), task
            actions, _, log_prob = policy(batch)  # SB3's rollout path
            assert allowed[actions].all() and torch.isfinite(log_prob).all()
            greedy = policy.get_distribution(batch).get_actions(deterministic=True)
            assert allowed[greedy].all()
            _, lp, entropy = policy.evaluate_actions(batch, actions)
            assert torch.isfinite(lp).all() and torch.isfinite(entropy).all()
            # The entropy is over the task's own actions only (masked ones carry no probability).
            assert torch.all(entropy <= np.log(int(allowed.sum())) + 1e-5)
    model.env.close()


# --------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(("args", "fragment"), [
    (["--tasks", "MinAtar/Breakout-v1"], "at least two tasks"),
    (["--tasks", "MinAtar/Breakout-v1", "MinAtar/Breakout-v1"], "given twice"),
    (["--tasks", "MinAtar/Breakout-v1", "MinAtar/Breakot-v1"], "unknown env id"),
    (["--tasks", "MinAtar/Breakout-v1", "ALE/Pong-v5"], "different suites"),
    (["--tasks", *TASKS[:2], "--set", "n_env=2"], "unknown key 'n_env'"),
    (["--tasks", *TASKS[:2], "--set", "hyperparams.batch_size=100000"], "exceeds the rollout size"),
    (["--tasks", *TASKS[:2], "--set", "trunk.alignment=diagonal"], "trunk.alignment"),
    (["--tasks", *TASKS[:2], "--timesteps", "0"], "--timesteps must be > 0"),
    (["--tasks", "MinAtar/Breakout-v1", "MinAtar/SpaceInvaders-v1", "--set", "trunk.alignment=none"],
     "alignment 'none' cannot share one trunk"),
])
def test_bad_input_is_one_line_exit_2_before_anything_is_written(args: list[str], fragment: str, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["multitask", *args, "--run-dir", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0] and "Traceback" not in err[0], err
    assert not run.exists()


def test_a_finished_run_is_not_overwritten(mt_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (mt_run / "metrics.json").read_bytes()
    assert main(["multitask", "--tasks", *TASKS, "--run-dir", str(mt_run), "--seed", "3", *TINY, "--quiet"]) == 2
    assert "finished run" in capsys.readouterr().err
    assert (mt_run / "metrics.json").read_bytes() == before


def test_resume_continues_an_interrupted_run_from_its_checkpoint(tmp_path: Path) -> None:
    import shutil

    from policyshare.errors import UserError
    from policyshare.multitask import multitask

    tasks = TASKS[:2]  # a rollout is 64 * 2 * 2 = 256 env steps
    settings = parse_overrides([*SETTINGS, "eval.freq=256", "checkpoint_freq=256", "experts=none"])
    whole = multitask(tasks, timesteps=512, run_dir=tmp_path / "whole", overrides=settings)
    written = json.loads((whole.run_dir / "metrics.json").read_text())["per_task"][tasks[0]]
    assert written["expert_normalised"] is None and "experts: none" in written["expert_normalised_why"]
    # A run killed after its first checkpoint: nothing of the second rollout was saved.
    run = tmp_path / "killed"
    shutil.copytree(tmp_path / "whole", run)
    for name in ("metrics.json", "model.zip", "trunk.safetensors", "timing.json", "checkpoints/ckpt_512.zip"):
        (run / name).unlink()
    with pytest.raises(UserError, match="other settings"):
        multitask(tasks, timesteps=1024, run_dir=run, overrides=settings, resume=True)
    result = multitask(tasks, timesteps=512, run_dir=run, overrides=settings, resume=True)
    assert result.metrics["timesteps"] == 512 and (run / "trunk.safetensors").is_file()
    curves = json.loads((run / "evaluations.json").read_text())
    assert all(curves[t]["timesteps"] == [0, 256, 512] for t in tasks)  # the step-512 evaluation once, not twice
    invocations = json.loads((run / "meta.json").read_text())["invocations"]
    assert len(invocations) == 2  # started, resumed (the refused resume wrote nothing)


def test_evaluate_acts_with_the_multitask_model_in_one_of_its_tasks(mt_run: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(mt_run), "--task", TASKS[2], "--episodes", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["env_id"] == TASKS[2] and out["episodes"] == 1
    for args, fragment in ((["--episodes", "1"], "pass one of them with --task"),
                           (["--task", HELD_OUT, "--episodes", "1"], f"not {HELD_OUT}")):
        assert main(["evaluate", str(mt_run), *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and fragment in err[0], err
