"""The zoo: shipped MinAtar experts per game and seed that plain SB3 loads, with provenance that reproduces;
adding runs by seed, loading by seed, refusing runs from a dirty tree, and the per-game summary."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import BREAKOUT, TINY, assert_user_error, run_cli

from policyshare import zoo
from policyshare.errors import UserError
from policyshare.sb3_files import read_sb3_header

GAMES = ["MinAtar/Asterix-v1", "MinAtar/Breakout-v1", "MinAtar/Freeway-v1", "MinAtar/Seaquest-v1",
         "MinAtar/SpaceInvaders-v1"]


def test_five_games_with_seed_0_and_provenance() -> None:
    experts = zoo.list_experts()
    assert sorted({e.env_id for e in experts}) == GAMES
    assert all(0 in zoo.seeds(g) for g in GAMES)
    assert [(e.env_id, e.seed) for e in experts] == sorted((e.env_id, e.seed) for e in experts)
    for e in experts:
        assert e.path.name == zoo.file_name(e.env_id, e.seed) == f"{e.env_id.replace('/', '-')}__s{e.seed}.zip"
        # A fresh optimizer state keeps each expert under 1 MB (15 of them: about 10 MB).
        assert e.path.stat().st_size < 1_000_000, f"{e.path.name} is {e.path.stat().st_size:,} bytes"
        p = e.provenance
        assert p["seed"] == e.seed and p["evaluate_with"].startswith(f"policyshare evaluate {e.path.name} ")
        assert isinstance(p["trained_from_clean_commit"], bool)
        assert p["algo"] == "ppo" and p["timesteps"] >= 1_000_000
        assert p["config"]["env_id"] == e.env_id and "hyperparams" in p["config"]
        assert p["training"][0]["command_line"].startswith("policyshare train")
        low, high = e.interval
        assert low <= e.eval_mean <= high
        assert e.eval_mean > p["random_mean_return"], f"{e.env_id}: the expert must beat random"
        assert read_sb3_header(e.path)["entries_sha256"] == p["checkpoint_sha256"]


@pytest.mark.parametrize("env_id", GAMES)
def test_plain_sb3_loads_each_expert(env_id: str) -> None:
    from stable_baselines3 import PPO

    model = PPO.load(zoo.expert_path(env_id), device="cpu")
    obs = np.zeros((2, *model.observation_space.shape), dtype=bool)
    actions, _ = model.predict(obs, deterministic=True)
    assert actions.shape == (2,) and (actions < model.action_space.n).all()
    safe = zoo.load(env_id, safe=True)
    assert np.array_equal(safe.predict(obs, deterministic=True)[0], actions)


def test_unknown_expert() -> None:
    with pytest.raises(UserError, match="no expert for 'MinAtar/Pong-v1'"):
        zoo.expert_path("MinAtar/Pong-v1")
    proc = run_cli("zoo", "list")
    assert proc.returncode == 0 and "MinAtar/Freeway-v1" in proc.stdout


# Re-evaluating an expert takes up to a minute (Freeway's long episodes): Breakout in the fast suite.
@pytest.mark.parametrize("env_id", [g if g == "MinAtar/Breakout-v1" else pytest.param(g, marks=pytest.mark.slow)
                                    for g in GAMES])
def test_each_expert_reaches_its_recorded_score(env_id: str) -> None:
    expert = zoo.find_expert(env_id)
    ev = expert.provenance["evaluation"]
    proc = run_cli("evaluate", str(expert.path), "--episodes", str(ev["episodes"]), "--seed", str(ev["seed"]),
                   "--json")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)["mean_return"]
    low, high = expert.interval
    assert low <= got <= high, f"{env_id}: {got} outside [{low}, {high}]"


def test_zoo_list_prints_each_expert_then_each_game_against_its_target() -> None:
    proc = run_cli("zoo", "list")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    experts = zoo.list_experts()
    per_expert = [ln for ln in lines if ln.startswith("MinAtar/") and "env steps" in ln]
    assert len(per_expert) == len(experts)
    assert any(ln.startswith("MinAtar/Breakout-v1") and " s0 " in ln for ln in per_expert)
    per_game = [ln for ln in lines if ln.startswith("MinAtar/") and "target" in ln]
    assert [ln.split()[0] for ln in per_game] == GAMES
    for game, target in zoo.TARGETS.items():
        line = next(ln for ln in per_game if ln.startswith(game))
        assert f"target {target:g}:" in line


# --------------------------------------------------------------------------------------------
# Adding runs by seed, into a zoo folder of the test's own (tiny real runs: 2048 env steps each)


def _record_tree(run: Path, *, dirty: bool, commit: str | None = "0123456789abcdef0123456789abcdef01234567") -> None:
    """Set the git state every invocation of ``run`` recorded: the tests' own checkout may be dirty
    or clean, so the state a test needs is written into its copy of the run's meta.json."""
    meta_path = run / "meta.json"
    meta = json.loads(meta_path.read_text())
    for inv in meta["invocations"]:
        inv["git"] = {} if commit is None else {"commit": commit, "dirty": dirty}
    meta_path.write_text(json.dumps(meta))


@pytest.fixture(scope="module")
def seeded_runs(breakout_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Two finished Breakout runs from a clean commit: seed 0 (the session's) and seed 1."""
    from policyshare.cli import main

    root = tmp_path_factory.mktemp("zoo_runs")
    shutil.copytree(breakout_run, root / "s0")
    assert main(["train", "--env", BREAKOUT, "--seed", "1", "--timesteps", "2048", "--run-dir", str(root / "s1"),
                 *TINY]) == 0
    for run in (root / "s0", root / "s1"):
        _record_tree(run, dirty=False)
    return {0: root / "s0", 1: root / "s1"}


@pytest.fixture(scope="module")
def seeded_zoo(seeded_runs: dict[int, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("zoo")
    for run in seeded_runs.values():
        zoo.add_expert(run, folder)
    return folder


def test_add_writes_one_expert_per_seed_with_provenance(seeded_runs: dict[int, Path], seeded_zoo: Path) -> None:
    assert sorted(p.name for p in seeded_zoo.iterdir()) == [
        "MinAtar-Breakout-v1__s0.json", "MinAtar-Breakout-v1__s0.zip",
        "MinAtar-Breakout-v1__s1.json", "MinAtar-Breakout-v1__s1.zip"]
    experts = zoo.list_experts(seeded_zoo)
    assert [(e.env_id, e.seed) for e in experts] == [(BREAKOUT, 0), (BREAKOUT, 1)]
    for e in experts:
        run = seeded_runs[e.seed]
        metrics = json.loads((run / "metrics.json").read_text())
        p = e.provenance
        assert p["seed"] == metrics["seed"] == e.seed and p["trained_from_clean_commit"] is True
        assert p["config"]["seed"] == e.seed and p["config"]["env_id"] == BREAKOUT
        assert p["training"] == json.loads((run / "meta.json").read_text())["invocations"]
        # (trained in-process: the command line is pytest's)
        assert {"command_line", "cwd", "started", "versions", "git"} <= set(p["training"][0])
        assert p["evaluation"]["returns"] == metrics["eval_returns"] and e.episodes == 3
        assert p["evaluation"]["seed"] == e.seed + 10_000
        low, high = e.interval
        assert low <= e.eval_mean <= high
        assert p["random_mean_return"] == metrics["random_mean_return"]
        assert read_sb3_header(e.path)["entries_sha256"] == p["checkpoint_sha256"]
        assert p["evaluate_with"] == f"policyshare evaluate {e.path.name} --episodes 3 --seed {e.seed + 10_000}"
        assert zoo.describe(e).split()[:2] == [BREAKOUT, f"s{e.seed}"]


def test_load_by_seed(seeded_runs: dict[int, Path], seeded_zoo: Path) -> None:
    from stable_baselines3 import PPO

    assert zoo.expert_path(BREAKOUT, folder=seeded_zoo).name == "MinAtar-Breakout-v1__s0.zip"  # None: seed 0
    assert zoo.expert_path(BREAKOUT, 1, seeded_zoo).name == "MinAtar-Breakout-v1__s1.zip"
    obs = np.zeros((4, 10, 10, 4), dtype=bool)
    obs[:, 9, 3:6, 0] = True  # a paddle
    obs[1, 5, 5, 1] = obs[2, 2, 7, 1] = obs[3, 6, 1, 1] = True  # balls
    for seed in (0, 1):
        want = PPO.load(seeded_runs[seed] / "model.zip", device="cpu").policy.state_dict()
        for safe in (False, True):
            got = zoo.load(BREAKOUT, seed=seed, safe=safe, folder=seeded_zoo).policy.state_dict()
            assert got.keys() == want.keys() and all(bool((got[k] == want[k]).all()) for k in want)
    s0, s1 = (zoo.load(BREAKOUT, seed=s, folder=seeded_zoo).policy.state_dict() for s in (0, 1))
    assert any(not bool((s0[k] == s1[k]).all()) for k in s0), "seeds 0 and 1 should differ"


def test_an_absent_seed_is_refused_naming_the_seeds_there_are(seeded_zoo: Path) -> None:
    with pytest.raises(UserError, match=r"no seed 2 of 'MinAtar/Breakout-v1'; its seeds: 0, 1"):
        zoo.expert_path(BREAKOUT, 2, seeded_zoo)
    with pytest.raises(UserError, match=r"no seed 2 of 'MinAtar/Breakout-v1'; its seeds: 0, 1"):
        zoo.load(BREAKOUT, seed=2, folder=seeded_zoo)
    with pytest.raises(UserError, match=r"no expert for 'MinAtar/Asterix-v1'; it has: MinAtar/Breakout-v1"):
        zoo.expert_path("MinAtar/Asterix-v1", folder=seeded_zoo)
    only_s1 = seeded_zoo.parent / "only_s1"
    only_s1.mkdir()
    for suffix in (".zip", ".json"):
        shutil.copy(seeded_zoo / f"MinAtar-Breakout-v1__s1{suffix}", only_s1)
    with pytest.raises(UserError, match=r"no seed 0 \(the default\) of 'MinAtar/Breakout-v1'; its seeds: 1"):
        zoo.expert_path(BREAKOUT, folder=only_s1)


def test_old_one_per_game_names_still_load(seeded_zoo: Path, tmp_path: Path) -> None:
    for suffix in (".zip", ".json"):
        shutil.copy(seeded_zoo / f"MinAtar-Breakout-v1__s0{suffix}", tmp_path / f"MinAtar-Breakout-v1{suffix}")
    assert [(e.env_id, e.seed, e.path.name) for e in zoo.list_experts(tmp_path)] == [
        (BREAKOUT, 0, "MinAtar-Breakout-v1.zip")]
    assert zoo.load(BREAKOUT, folder=tmp_path) is not None
    for suffix in (".zip", ".json"):  # both names for one seed: the seeded one is the expert
        shutil.copy(seeded_zoo / f"MinAtar-Breakout-v1__s0{suffix}", tmp_path)
    assert [e.path.name for e in zoo.list_experts(tmp_path)] == ["MinAtar-Breakout-v1__s0.zip"]


def test_a_run_from_a_dirty_tree_is_refused_unless_allowed(seeded_runs: dict[int, Path], tmp_path: Path) -> None:
    dirty = tmp_path / "dirty"
    shutil.copytree(seeded_runs[1], dirty)
    _record_tree(dirty, dirty=True)
    folder = tmp_path / "zoo"
    folder.mkdir()
    with pytest.raises(UserError, match="uncommitted changes.*--allow-dirty"):
        zoo.add_expert(dirty, folder)
    assert list(folder.iterdir()) == []
    expert = zoo.add_expert(dirty, folder, allow_dirty=True)
    assert expert.seed == 1 and expert.provenance["trained_from_clean_commit"] is False
    assert expert.provenance["training"][0]["git"]["dirty"] is True
    outside = tmp_path / "outside"
    shutil.copytree(seeded_runs[1], outside)
    _record_tree(outside, dirty=False, commit=None)
    with pytest.raises(UserError, match="no git commit.*--allow-dirty"):
        zoo.add_expert(outside, folder)
    # The command: one line, exit 2, naming the fix; a clean run listed before it is not added either.
    before = sorted(p.name for p in zoo.ZOO_DIR.iterdir())
    try:
        proc = run_cli("zoo", "add", str(seeded_runs[0]), str(dirty))
        assert_user_error(proc, str(dirty), "uncommitted changes", "--allow-dirty")
    finally:  # never leave a test's expert in the package's zoo, even if the refusal failed
        for name in set(p.name for p in zoo.ZOO_DIR.iterdir()) - set(before):
            (zoo.ZOO_DIR / name).unlink()
    assert sorted(p.name for p in zoo.ZOO_DIR.iterdir()) == before


def test_game_summary_mean_over_seeds_interval_and_target(seeded_zoo: Path) -> None:
    experts = zoo.list_experts(seeded_zoo)
    (summary,) = zoo.summarise(experts)
    means = [e.eval_mean for e in experts]
    assert summary.seeds == (0, 1) and summary.mean == pytest.approx(np.mean(means))
    assert summary.interval is not None
    low, high = summary.interval
    # two seeds: mean ± t(0.975, 1) · sd / sqrt(2), t = 12.706
    half = 12.7062 * np.std(means, ddof=1) / np.sqrt(2)
    assert low == pytest.approx(summary.mean - half, rel=1e-4, abs=1e-9)
    assert high == pytest.approx(summary.mean + half, rel=1e-4, abs=1e-9)
    assert summary.target == 28 and summary.needs == pytest.approx(max(0.0, 28 - summary.mean))
    line = zoo.describe_game(summary)
    assert line.startswith(BREAKOUT) and "t-interval over 2 seeds" in line and "target 28: needs +" in line
    (one,) = zoo.summarise(experts[:1])
    assert one.interval is None and "one seed: no interval" in zoo.describe_game(one)


def test_zoo_references_parse() -> None:
    assert zoo.parse_ref("MinAtar/Breakout-v1") == (BREAKOUT, None)
    assert zoo.parse_ref("MinAtar/Breakout-v1@s2") == (BREAKOUT, 2)
    with pytest.raises(UserError, match="ENV_ID@s<seed>"):
        zoo.parse_ref("MinAtar/Breakout-v1@2")
