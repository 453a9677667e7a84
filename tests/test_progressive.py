"""Progressive networks: Eq. 2 adapters, frozen columns bit for bit, the optimizer, no forgetting,
save → load → same actions, the ``progressive`` command (controls, transfer %, Fisher, resume) and
its bad inputs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import ASTERIX, BREAKOUT, INVADERS, assert_user_error, observations, run_cli

from policyshare.algos import A2CParams, PolicyConfig, PPOParams, TrunkConfig, build_model
from policyshare.alignment import InputAlignment
from policyshare.checkpoints import load_trunk
from policyshare.cli import main
from policyshare.comparison import load_curve, zoo_expert_return
from policyshare.envs import load_suite, make_vec_env, task_action_map
from policyshare.errors import UserError
from policyshare.evaluate import EVAL_SEED_OFFSET, evaluate
from policyshare.policies import load_policy as load_any_policy
from policyshare.progressive import (
    AdapterConfig,
    ColumnInfo,
    ColumnStack,
    LateralAdapter,
    ProgressiveExtractor,
    ProgressiveNetwork,
    column_model_factory,
    columns_input,
    load_network,
    run_progressive,
)
from policyshare.progressive.fisher import average_fisher_sensitivity, collect_observations
from policyshare.sb3_files import load_sb3, read_sb3_header, save_sb3
from policyshare.transfer_metrics import transfer_percent
from policyshare.trunks import LayerSpec, TrunkSpec

TRUNK = {"name": "minatar", "activation": "relu", "theta": 0.5}
# Tiny budgets for every run of an experiment: one evaluation per 1024 env steps, short evaluations.
TINY_SET = {"train": {"eval": {"freq": 512, "episodes": 2, "final_episodes": 3, "random_episodes": 1},
                      "checkpoint_freq": 1024, "n_envs": 8},
            "fisher": {"samples": 64, "batch_size": 32}}


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One torch thread, as training runs use (spinning OpenMP threads crawl on a shared CPU)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same_state(a: torch.nn.Module | dict[str, torch.Tensor], b: torch.nn.Module) -> None:
    sa = a if isinstance(a, dict) else a.state_dict()
    sb = b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k





# ---- the network --------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "target"), [
    ((16, 8, 8), LayerSpec("conv2", "conv", 32, 3)),
    ((16, 8, 8), LayerSpec("fc1", "fc", 128)),
    ((128,), LayerSpec("fc2", "fc", 64)),
    ((128,), None),
])
def test_lateral_adapter_is_eq2(source: tuple[int, ...], target: LayerSpec | None) -> None:
    """U σ(V (α h)) with h the earlier columns concatenated (Rusu et al. 2016, Eq. 2)."""
    torch.manual_seed(0)
    a = LateralAdapter(source, 2, target, None, 0.1, "relu", 0.5, True)
    h = torch.rand(5, 2 * source[0], *source[1:])
    v = a.reduce(0.1 * h)
    expected = torch.relu(v).flatten(1) if len(source) == 1 or target is None or target.kind == "fc" \
        else torch.relu(v)
    if a.project is not None:
        expected = a.project(expected)
    assert torch.allclose(a(h), expected, atol=1e-6)
    assert a.reduce.weight.shape[0] == source[0]  # reduced to one column's width (the paper's)
    assert a.alpha.item() == pytest.approx(0.1)
    (a(h) ** 2).sum().backward()
    assert a.alpha.grad is not None and a.alpha.grad.abs().item() > 0


def random_stack(spec: TrunkSpec, n_columns: int, adapter: AdapterConfig, seed: int) -> ColumnStack:
    """A column stack with every weight drawn from N(0, 0.2²), seeded."""
    torch.manual_seed(seed)
    stack = ColumnStack(spec, n_columns, adapter)
    for p in stack.parameters():
        p.data.normal_(0, 0.2)
    return stack


@pytest.mark.parametrize(("name", "act"), [("minatar", "relu"), ("minatar_deep", "trec"),
                                           ("minatar_deep", "relu")])
def test_fused_frozen_columns_equal_the_column_by_column_reference(name: str, act: str) -> None:
    stack = random_stack(TrunkSpec(name, 10, 10, 10, activation=act, theta=0.05), 4,
                         AdapterConfig(alpha_init=0.5, reduction=6), seed=1)
    x = torch.rand(6, 10, 10, 10)
    ref = stack.activations(x, 4)
    for column in range(4):
        earlier, own = stack.forward_column(x, column)
        for i, o in enumerate(own):
            assert torch.allclose(o, ref[column][i], atol=1e-5, rtol=1e-5)
            if column:
                assert torch.allclose(earlier[i], torch.cat([ref[j][i] for j in range(column)], 1),
                                      atol=1e-5, rtol=1e-5)
    # New weights in the frozen part are picked up (the fused weights are rebuilt).
    with torch.no_grad():
        stack.column(0).layers[0].weight.mul_(2)
    earlier, _ = stack.forward_column(x, 2)
    assert torch.allclose(earlier[0], torch.cat([r[0] for r in stack.activations(x, 2)], 1), atol=1e-5)


def test_columns_read_fewer_channels_as_zero_padded() -> None:
    """A task with fewer channels than the suite (``pad``): the columns read only its channels,
    and every layer of every column equals the column-by-column run on the zero-padded input."""
    stack = random_stack(TrunkSpec("minatar", 10, 10, 10), 3, AdapterConfig(alpha_init=0.5), seed=2)
    obs = (torch.rand(5, 10, 10, 6) > 0.7).float()  # channels-last, as MinAtar gives them
    padded = F.pad(obs.permute(0, 3, 1, 2), (0, 0, 0, 0, 0, 4))
    align = InputAlignment((10, 10, 6), mode="pad", channels_last=True, channels=10)
    x = columns_input(align, obs)
    assert x.shape == (5, 6, 10, 10) and x.is_contiguous()
    ref = stack.activations(padded, 3)
    for column in range(3):
        earlier, own = stack.forward_column(x, column)
        for i, o in enumerate(own):
            assert torch.allclose(o, ref[column][i], atol=1e-5, rtol=1e-5)
        if column:
            assert torch.allclose(earlier[-1], torch.cat([ref[j][-1] for j in range(column)], 1), atol=1e-5)


def column_model(algo: str, network: ProgressiveNetwork | None, n_columns: int, seed: int = 0,
                 alignment: str = "pad") -> Any:
    from policyshare.train import load_train_config

    small = {"ppo": {"n_steps": 32, "batch_size": 64}, "a2c": {}}[algo]
    cfg, params = load_train_config(INVADERS, algo, overrides={"n_envs": 4, "hyperparams": small,
                                                               "trunk": {"alignment": alignment}})
    env = make_vec_env(INVADERS, cfg.n_envs, seed)
    factory = column_model_factory(algo, n_columns, TRUNK, AdapterConfig(), network)
    return factory(env, cfg, params, load_suite("minatar"), seed)


def trainable_ids(model: Any) -> set[int]:
    """The parameters that must train: the new column, its adapters, its alignment, the heads."""
    ex = model.policy.features_extractor
    k = ex.n_columns - 1
    modules = [ex.stack.columns[k], ex.stack.laterals[k], ex.alignment, model.policy.mlp_extractor,
               model.policy.action_net, model.policy.value_net]
    return {id(p) for m in modules for p in m.parameters()}


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_random_frozen_column_trains_with_ppo_and_a2c(algo: str) -> None:
    """Baseline 4's network: the first column is random, frozen, and stays out of the optimizer."""
    model = column_model(algo, None, 2)
    ex = model.policy.features_extractor
    frozen = [state(m) for m in ex.stack.column_modules(0)]
    in_optimizer = {id(p) for g in model.policy.optimizer.param_groups for p in g["params"]}
    assert in_optimizer == trainable_ids(model)
    assert all(not p.requires_grad for m in ex.stack.column_modules(0) for p in m.parameters())
    before_trainable = state(ex.stack.columns[1])
    model.learn(128 if algo == "ppo" else 40)
    for snapshot, module in zip(frozen, ex.stack.column_modules(0)):
        assert_same_state(snapshot, module)
    changed = any(not torch.equal(v, ex.stack.columns[1].state_dict()[k]) for k, v in before_trainable.items())
    assert changed, "the new column did not train"
    # The random column is not the initialisation a column-1 run of the same seed starts from.
    plain = build_model(algo, make_vec_env(INVADERS, 4, 0), PPOParams() if algo == "ppo" else A2CParams(),
                        PolicyConfig(), TrunkConfig(), load_suite("minatar"), 0)
    w0 = plain.policy.features_extractor.trunk.layers[0].weight
    assert not torch.equal(w0, ex.stack.column(0).layers[0].weight)


def test_stem_alignment_trains_the_new_tasks_stem_through_the_frozen_columns() -> None:
    """With a per-task 1x1 stem the frozen columns read a trainable input: they run with autograd
    (weights still frozen), the stem trains with the new column, the cache stays off."""
    model = column_model("ppo", None, 2, alignment="stem")
    ex = model.policy.features_extractor
    assert ex.alignment.stem is not None and ex.cache is None
    assert {id(p) for p in ex.alignment.parameters()} <= trainable_ids(model)
    in_optimizer = {id(p) for g in model.policy.optimizer.param_groups for p in g["params"]}
    assert in_optimizer == trainable_ids(model)
    frozen = [state(m) for m in ex.stack.column_modules(0)]
    stem = state(ex.alignment)
    model.learn(128)
    for snapshot, module in zip(frozen, ex.stack.column_modules(0)):
        assert_same_state(snapshot, module)
    assert any(not torch.equal(v, ex.alignment.state_dict()[k]) for k, v in stem.items())
    # The stem's gradient flows through the frozen column's laterals too.
    obs = torch.as_tensor(observations(INVADERS, 8)).float()
    model.policy.set_training_mode(True)
    ex.zero_grad()
    earlier, _ = ex.stack.forward_column(ex.alignment(obs), 1)
    earlier[-1].sum().backward()
    assert ex.alignment.stem.weight.grad is not None and ex.alignment.stem.weight.grad.abs().sum() > 0


def test_frozen_activation_cache_serves_later_epochs_and_clears_before_a_rollout() -> None:
    model = column_model("ppo", None, 3)
    ex = model.policy.features_extractor
    assert ex.cache is not None and ex.cache.capacity == 32 * 4  # n_steps * n_envs
    obs = torch.as_tensor(observations(INVADERS, 40)).float()
    model.policy.set_training_mode(False)
    reference = ex(obs).detach()
    model.policy.set_training_mode(True)
    first = ex(obs)
    again = ex(obs[torch.randperm(40)[:16]])  # a later epoch: another minibatch of the same rollout
    assert (ex.cache.misses, ex.cache.hits) == (1, 1)
    assert torch.allclose(first, reference, atol=1e-6) and first.requires_grad
    perm = torch.randperm(40)[:16]
    assert torch.allclose(ex(obs[perm]), reference[perm], atol=1e-6) and again.shape == (16, ex.features_dim)
    model.policy.set_training_mode(False)  # SB3 does this before every rollout
    assert not ex.cache.index
    model.policy.set_training_mode(True)
    ex(obs[:8])
    assert ex.cache.misses == 2
    a2c = column_model("a2c", None, 3)
    assert a2c.policy.features_extractor.cache is None  # A2C uses each rollout once


def test_three_column_network(tmp_path: Path) -> None:
    """Acceptance: a 3-column network on three MinAtar games, trained for a small budget."""
    tasks = [BREAKOUT, ASTERIX, INVADERS]
    metrics = run_progressive(tasks, timesteps=1024, seeds=[0], run_dir=tmp_path / "exp", controls=[],
                              overrides={**TINY_SET, "fisher": {"enabled": False}})
    seed_dir = tmp_path / "exp" / "s0"
    network = load_network(seed_dir / "network.safetensors")
    assert network.tasks == tasks and len(network) == 3
    stage_models = [load_sb3(seed_dir / f"column_{k + 1}__{t.replace('/', '-')}" / "model.zip")[0]
                    for k, t in enumerate(tasks)]

    # Frozen parameters bit-identical: the model that trained column k+1 still holds columns
    # 1..k exactly as the model that trained them left them.
    for k, model in enumerate(stage_models):
        ex = model.policy.features_extractor
        own = ex.trunk
        assert_same_state(own, network.stack.columns[k])
        for j in range(k):
            assert_same_state(stage_models[j].policy.features_extractor.trunk, ex.stack.columns[j])
            if j > 0:
                assert_same_state(stage_models[j].policy.features_extractor.stack.laterals[j],
                                  ex.stack.laterals[j])
            assert all(not p.requires_grad for m in ex.stack.column_modules(j) for p in m.parameters())

    # The optimizer of column 3 holds exactly column 3, its adapters, alignment and heads.
    for model in stage_models[1:]:
        in_optimizer = [p for g in model.policy.optimizer.param_groups for p in g["params"]]
        assert {id(p) for p in in_optimizer} == trainable_ids(model)
        assert len(in_optimizer) == len({id(p) for p in in_optimizer})

    # Earlier columns' returns unchanged: the whole 3-column network acts in tasks 1 and 2
    # exactly as the models that trained those columns did (same seeds → identical returns).
    assert metrics["no_forgetting_all_identical"] is True
    for k, task in enumerate(tasks[:2]):
        check = metrics["no_forgetting"]["0"][task]
        assert check["identical"] and check["before"] == check["after"]
        again = evaluate(network.agent(task), task, 3, EVAL_SEED_OFFSET)
        assert again.returns == evaluate(stage_models[k], task, 3, EVAL_SEED_OFFSET).returns

    # Save → load → same actions for every column (and the same as the SB3 model of its stage).
    rebuilt = load_network(seed_dir / "network.safetensors")
    for k, task in enumerate(tasks):
        obs = observations(task, 64)
        ours, _ = network.agent(task).predict(obs, deterministic=True)
        theirs, _ = rebuilt.agent(task).predict(obs, deterministic=True)
        sb3, _ = stage_models[k].predict(obs, deterministic=True)
        agent, env_id, header = load_any_policy(seed_dir, task)
        via_evaluate, _ = agent.predict(obs, deterministic=True)
        assert env_id == task and header["format"] == "policyshare.progressive"
        np.testing.assert_array_equal(ours, theirs)
        np.testing.assert_array_equal(ours, sb3)
        np.testing.assert_array_equal(ours, via_evaluate)
        logits, _ = network(torch.as_tensor(obs), k)
        assert logits.shape == (64, network.info[k].n_actions)

    # Columns export as trunk files that load_trunk reads.
    for k, task in enumerate(tasks):
        trunk = load_trunk(seed_dir / "columns" / f"column_{k + 1}__{task.replace('/', '-')}.safetensors")
        assert_same_state(trunk, network.stack.columns[k])
        assert trunk.header is not None and trunk.header["source"]["column"] == k + 1

    # Average Fisher Sensitivity: every layer's AFS sums to 1 over the columns.
    afs = average_fisher_sensitivity(network, INVADERS, collect_observations(network, INVADERS, 48, 0), 16)
    assert afs.afs.shape == (3, 2) and afs.columns == tasks and afs.layers == ["conv1", "fc1"]
    np.testing.assert_allclose(afs.afs.sum(axis=0), 1.0, atol=1e-9)
    assert (afs.afs >= 0).all() and (afs.fisher > 0).all()


def test_fisher_sensitivity_is_zero_for_a_column_the_policy_ignores() -> None:
    """A column whose laterals are switched off (α = 0) gets AFS 0 in the layers they feed."""
    torch.manual_seed(0)
    spec = TrunkSpec("minatar", 10, 10, 10)
    network = ProgressiveNetwork(spec, AdapterConfig(alpha_init=0.0))
    describe = {"mode": "pad", "channels_last": True, "task_channels": 4, "channels": 10,
                "height": 10, "width": 10}
    for task in (BREAKOUT, ASTERIX):
        actions = task_action_map(task)
        network.add_column(ColumnInfo(task, len(actions), actions, [10, 10, 4], describe))
    obs = observations(ASTERIX, 32)
    afs = average_fisher_sensitivity(network, ASTERIX, obs, 16)
    np.testing.assert_allclose(afs.afs[0], 0.0, atol=1e-12)
    np.testing.assert_allclose(afs.afs[1], 1.0, atol=1e-12)


def test_progressive_extractor_is_plain_data_for_sb3_load(tmp_path: Path) -> None:
    """An SB3 checkpoint of a column loads back with plain PPO.load: same frozen part, same actions."""
    from stable_baselines3 import PPO

    model = column_model("ppo", None, 3)
    path = save_sb3(model, tmp_path / "m.zip", {"algo": "ppo", "env_id": INVADERS})
    loaded = PPO.load(path)
    assert isinstance(loaded.policy.features_extractor, ProgressiveExtractor)
    assert_same_state(model.policy, loaded.policy)
    assert {id(p) for g in loaded.policy.optimizer.param_groups for p in g["params"]} == trainable_ids(loaded)
    obs = observations(INVADERS, 16)
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0],
                                  loaded.predict(obs, deterministic=True)[0])


def sb3_class_paths(zip_path: Path) -> bytes:
    """The pickled ``policy_class`` and ``policy_kwargs`` SB3 recorded in a zip's ``data`` entry."""
    import base64
    import zipfile

    data = json.loads(zipfile.ZipFile(zip_path).read("data"))
    return b"".join(base64.b64decode(data[k][":serialized:"]) for k in ("policy_class", "policy_kwargs"))


def test_a_zip_saved_before_the_package_split_still_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SB3 pickles the policy and extractor classes by module path: a column saved when they lived
    in ``policyshare/progressive.py`` records ``policyshare.progressive.ProgressivePolicy``; plain
    ``PPO.load`` and the ``--safe`` path still rebuild it, and new zips record the new module."""
    from stable_baselines3 import PPO

    from policyshare import sb3_files
    from policyshare.config import to_dict
    from policyshare.progressive.policy import ProgressiveExtractor as Moved
    from policyshare.progressive.policy import ProgressivePolicy
    from policyshare.train import load_train_config

    model = column_model("ppo", None, 2)
    cfg, _ = load_train_config(INVADERS, "ppo", overrides={"n_envs": 4, "trunk": {"alignment": "pad"},
                                                         "hyperparams": {"batch_size": 256}})

    def header() -> dict[str, Any]:  # as `policyshare train` writes it
        return {"format": "policyshare.sb3", "algo": "ppo", "env_id": INVADERS, "trunk": to_dict(cfg.trunk),
                "policy": to_dict(cfg.policy), **sb3_files.extractor_header(model.policy)}

    with monkeypatch.context() as old:  # save exactly as the code before the split did
        for cls in (ProgressivePolicy, Moved):
            old.setattr(cls, "__module__", "policyshare.progressive")
        old.setitem(sb3_files.SAFE_EXTRACTORS, "progressive",
                    ("policyshare.progressive", "ProgressiveExtractor", "ProgressivePolicy"))
        old_zip = save_sb3(model, tmp_path / "old.zip", header())
    new_zip = save_sb3(model, tmp_path / "new.zip", header())
    for path in (old_zip, new_zip):
        assert read_sb3_header(path)["extractor"]["kind"] == "progressive"
    recorded = sb3_class_paths(old_zip)
    assert b"policyshare.progressive" in recorded and b"policyshare.progressive.policy" not in recorded
    assert b"policyshare.progressive.policy" in sb3_class_paths(new_zip)
    assert ProgressiveExtractor is Moved and Moved.__module__ == "policyshare.progressive.policy"
    obs = observations(INVADERS, 16)
    expected = model.predict(obs, deterministic=True)[0]
    for path in (old_zip, new_zip):
        plain = PPO.load(path)
        assert type(plain.policy) is ProgressivePolicy and type(plain.policy.features_extractor) is Moved
        assert_same_state(model.policy, plain.policy)
        safe, _ = load_sb3(path, safe=True)
        assert type(safe.policy.features_extractor) is Moved
        for loaded in (plain, safe):
            np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], expected)


def test_progressive_package_imports_its_modules_on_first_use_and_only_downward() -> None:
    """``import policyshare.progressive`` loads no submodule; every public name resolves to the
    module that defines it; each module imports only the modules below it (no circle)."""
    import ast
    import subprocess
    import sys

    import policyshare.progressive as package

    code = ("import sys, policyshare.progressive as p; "
            "print(sorted(m for m in sys.modules if m.startswith('policyshare.progressive.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    for name in package.__all__:
        value = getattr(package, name)
        if isinstance(value, type) or callable(value):
            assert value.__module__.startswith("policyshare.progressive."), name
    order = ["config", "adapters", "columns", "policy", "network", "fisher", "plan", "report", "run"]
    folder = Path(package.__file__).parent
    assert sorted(p.stem for p in folder.glob("*.py")) == sorted([*order, "__init__"])
    for i, name in enumerate(order):
        tree = ast.parse((folder / f"{name}.py").read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        inside = {m.removeprefix("policyshare.progressive").lstrip(".") for m in imported
                  if m == "policyshare.progressive" or m.startswith("policyshare.progressive.")}
        assert inside <= set(order[:i]), (name, inside - set(order[:i]))
        assert len((folder / f"{name}.py").read_text().splitlines()) < 600, name


# ---- the command ----------------------------------------------------------------------------


def sets() -> list[str]:
    flat = ["train.n_envs=8", "train.eval.freq=512", "train.eval.episodes=2", "train.eval.final_episodes=2",
            "train.eval.random_episodes=1", "train.checkpoint_freq=1024", "fisher.samples=64",
            "fisher.batch_size=32"]
    return [a for item in flat for a in ("--set", item)]


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_progressive_command_controls_transfer_fisher_and_resume(breakout_run: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    exp = tmp_path / "exp"
    args = ["progressive", "--tasks", BREAKOUT, INVADERS, "--init-from", str(breakout_run),
            "--timesteps", "1024", "--seeds", "0", "--run-dir", str(exp), *sets()]
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert "transfer % IQM" in proc.stdout and "Average Fisher Sensitivity" in proc.stdout
    metrics = json.loads((exp / "metrics.json").read_text())
    assert set(metrics["methods"]) == {"progressive", "scratch", "finetune", "random_column"}
    # Transfer % per seed = 100·AUC(method)/AUC(scratch) over the budget, only where scratch is clearly
    # above random (null with the reason otherwise: a tiny budget rarely learns).
    scratch = load_curve(metrics["methods"]["scratch"]["runs"]["0"])
    random = float(np.mean(list(metrics["target_random_mean_return"].values())))
    expert, _ = zoo_expert_return(INVADERS)
    for m, d in metrics["methods"].items():
        t = d["transfer_percent"]
        # One seed: no interval (null, never nan).
        assert t["curve"] == "greedy evaluation" and t["low"] is None and t["high"] is None and t["kind"] == "none"
        expected = transfer_percent(load_curve(d["runs"]["0"]), scratch, random, expert, budget=1024)
        got = t["per_seed"]["0"]
        if expected.defined:
            assert got == pytest.approx(expected.value), m
        else:
            assert got is None and t["per_seed_why"]["0"] == expected.reason, m
        if m == "scratch":
            assert expected.value in (100.0, None)
    # Every method on both curves, every metric; verdicts on the paper's claims: one seed decides nothing.
    assert set(metrics["comparison"]) == {"greedy evaluation", "training episodes"}
    for curve in metrics["comparison"].values():
        assert set(curve["methods"]) == set(metrics["methods"])
    assert [v["outcome"] for v in metrics["verdicts"]] == ["no verdict"] * 4
    assert "verdict: the progressive column beats its random-column control (baseline 4)" in proc.stdout
    for name in ("curves.png", "fisher.png"):
        assert (exp / name).read_bytes()[:4] == b"\x89PNG"
    assert "| 1 | MinAtar/Breakout-v1 |" in (exp / "fisher.md").read_text()
    report = (exp / "report.md").read_text()
    assert "Transfer to the target" in report and "Every metric on the training episodes curve" in report
    assert (exp / "curves_training.png").read_bytes()[:4] == b"\x89PNG"
    recorded = yaml.safe_load((exp / "config.yaml").read_text())
    assert recorded["timesteps"] == 1024 and recorded["init_from"] == str(breakout_run)
    for runs in metrics["methods"].values():  # every run trained with the recorded config
        run_cfg = yaml.safe_load((Path(runs["runs"]["0"]) / "config.yaml").read_text())
        for key in ("hyperparams", "policy", "trunk", "eval", "n_envs"):
            assert run_cfg[key] == recorded["runs"][INVADERS][key], key
    assert metrics["no_forgetting_all_identical"] is True
    # Column 1 was taken from the training run, not retrained.
    assert not (exp / "s0" / "column_1__MinAtar-Breakout-v1").exists()
    network = load_network(exp / "s0" / "network.safetensors")
    assert_same_state(load_trunk(breakout_run / "trunk.safetensors"), network.stack.columns[0])

    # Compared runs evaluate at the same env steps and share tag names (TensorBoard overlays them).
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps = set()
    for m, runs in metrics["methods"].items():
        acc = EventAccumulator(str(Path(runs["runs"]["0"]) / "tb")).Reload()
        tags = set(acc.Tags()["scalars"])
        assert "eval/mean_reward" in tags, (m, tags)
        value = metrics["methods"][m]["transfer_percent"]["per_seed"]["0"]  # null where undefined
        finite = value is not None and bool(np.isfinite(value))
        assert ("progressive/transfer_percent" in tags) == finite, (m, tags)
        if m in ("progressive", "random_column"):
            assert {"progressive/column_2/alpha/fc1", "progressive/column_2/alpha/head"} <= tags
        steps.add(tuple(e.step for e in acc.Scalars("eval/mean_reward")))
    assert steps == {(0, 512, 1024)}

    # `policyshare evaluate DIR --task ID` acts with the column of that task (the first one here;
    # every column is checked in-process by test_three_column_network).
    proc = run_cli("evaluate", str(exp / "s0"), "--task", BREAKOUT, "--episodes", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["env_id"] == BREAKOUT

    # Stage-level resume: a finished experiment is not overwritten; after losing one control,
    # --resume retrains only that control and leaves every other run as it was.
    main_args = [*args[1:], "--resume"]
    assert main(["progressive", *main_args]) == 2
    assert "holds a finished run" in capsys.readouterr().err
    (exp / "metrics.json").unlink()
    import shutil

    shutil.rmtree(exp / "s0" / "finetune__MinAtar-SpaceInvaders-v1")
    before = {d.name: digest(d) for d in (exp / "s0").iterdir() if d.is_dir() and d.name != "columns"}
    assert main(["progressive", *main_args]) == 0
    out = capsys.readouterr().out
    assert "finetune on MinAtar/SpaceInvaders-v1: training" in out
    for control in ("scratch", "random_column"):
        assert f"{control} on MinAtar/SpaceInvaders-v1: finished earlier" in out
    assert "column_2 on" not in out  # the network already holds column 2
    for name, files in before.items():  # only new TensorBoard scalars (transfer %) were added
        after = digest(exp / "s0" / name)
        assert {k: v for k, v in after.items() if not k.startswith("tb/")} == \
            {k: v for k, v in files.items() if not k.startswith("tb/")}, name
    assert (exp / "metrics.json").is_file()


@pytest.mark.parametrize(("args", "fragments"), [
    (["--tasks", BREAKOUT], ["--tasks needs at least two env ids"]),
    (["--tasks", BREAKOUT, "MinAtar/SpaceInvaderz-v1"],
     ["unknown env id 'MinAtar/SpaceInvaderz-v1'", "did you mean 'MinAtar/SpaceInvaders-v1'"]),
])
def test_bad_task_lists(tmp_path: Path, args: list[str], fragments: list[str]) -> None:
    proc = run_cli("progressive", *args, "--run-dir", str(tmp_path / "r"))
    assert_user_error(proc, *fragments)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"tasks": [BREAKOUT, BREAKOUT]}, "more than once"),
    ({"tasks": [BREAKOUT, "ALE/Pong-v5"]}, "mixes suites"),
    ({"overrides": {"adapter": {"alpha_int": 0.1}}}, "unknown key 'alpha_int' .did you mean 'alpha_init'"),
    ({"algo": "dqn"}, "train with ppo or a2c"),
    ({"timesteps": 1000, "overrides": {"train": {"eval": {"freq": 600}}}}, "at least two evaluations"),
    ({"overrides": {"train": {"trunk": {"alignment": "none"}}}}, "need input alignment 'pad' or 'stem'"),
])
def test_bad_experiments_are_refused_before_anything_is_written(tmp_path: Path, kwargs: dict[str, Any],
                                                                 match: str) -> None:
    args: dict[str, Any] = {"tasks": [BREAKOUT, INVADERS], **kwargs}
    with pytest.raises(UserError, match=match):
        run_progressive(args.pop("tasks"), run_dir=tmp_path / "r", **args)
    assert not (tmp_path / "r").exists()


def test_init_from_a_checkpoint_of_another_spec(tmp_path: Path) -> None:
    deep = build_model("ppo", make_vec_env(BREAKOUT, 2, 0), PPOParams(n_steps=8, batch_size=16),
                       PolicyConfig(), TrunkConfig(spec="minatar_deep"), load_suite("minatar"), 0)
    path = save_sb3(deep, tmp_path / "deep" / "model.zip", {"algo": "ppo", "env_id": BREAKOUT})
    proc = run_cli("progressive", "--tasks", BREAKOUT, INVADERS, "--init-from", str(path.parent),
                   "--run-dir", str(tmp_path / "r"))
    assert_user_error(proc, "holds a 'minatar_deep' trunk", "uses a 'minatar' trunk")
    assert not (tmp_path / "r").exists()
    with pytest.raises(UserError, match=f"was trained on {BREAKOUT}, but the first task is {ASTERIX}"):
        run_progressive([ASTERIX, INVADERS], init_from=path, run_dir=tmp_path / "r")


def test_evaluate_a_task_not_in_the_network(tmp_path: Path) -> None:
    model = column_model("ppo", None, 1)
    network = ProgressiveNetwork(model.policy.features_extractor.stack.spec, AdapterConfig())
    network.add_column_from_model(model, INVADERS, {})
    path = network.save(tmp_path / "network.safetensors")
    proc = run_cli("evaluate", str(path), "--task", BREAKOUT, "--episodes", "1")
    assert_user_error(proc, f"task '{BREAKOUT}' is not in this progressive network", INVADERS, str(path))
    _, env_id, _ = load_any_policy(tmp_path)  # one column: the task may be omitted
    assert env_id == INVADERS
