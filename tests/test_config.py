"""Typed configs: strict keys and types, env-keyed resolution, overrides; nothing is evaluated."""

from __future__ import annotations

from pathlib import Path

import pytest

from policyshare.algos import PPOParams
from policyshare.config import parse_overrides
from policyshare.errors import ConfigError
from policyshare.train import load_train_config


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_default_configs_resolve_for_every_algo() -> None:
    for algo in ("ppo", "a2c", "dqn"):
        cfg, params = load_train_config("MinAtar/Breakout-v1", algo)
        assert cfg.timesteps > 0 and params is not None
    cfg, params = load_train_config("MinAtar/Breakout-v1", "ppo")
    assert isinstance(params, PPOParams) and cfg.timesteps == 500_000
    assert (cfg.vec_env, cfg.n_envs) == ("batched", 64)
    assert (params.n_steps, params.batch_size, params.n_epochs, params.clip_range) == (128, 1024, 4, 0.2)


def test_glob_entry_then_exact_id(tmp_path: Path) -> None:
    p = write(tmp_path, "default: {n_envs: 2}\nALE/*: {n_envs: 4, timesteps: 10}\nALE/Pong-v5: {timesteps: 20}\n")
    cfg, _ = load_train_config("ALE/Pong-v5", "ppo", p)
    assert (cfg.n_envs, cfg.timesteps) == (4, 20)
    cfg, _ = load_train_config("ALE/Breakout-v5", "ppo", p)
    assert (cfg.n_envs, cfg.timesteps) == (4, 10)
    cfg, _ = load_train_config("MinAtar/Breakout-v1", "ppo", p)
    assert cfg.n_envs == 2


def test_unknown_key_suggests_fix(tmp_path: Path) -> None:
    p = write(tmp_path, "default:\n  hyperparams: {learnin_rate: 0.001}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'learnin_rate' \(did you mean 'learning_rate'\?\)"):
        load_train_config("MinAtar/Breakout-v1", "ppo", p)


def test_key_of_another_algorithm_is_refused(tmp_path: Path) -> None:
    p = write(tmp_path, "default:\n  hyperparams: {buffer_size: 1000}\n")
    with pytest.raises(ConfigError, match="unknown key 'buffer_size'"):
        load_train_config("MinAtar/Breakout-v1", "ppo", p)


@pytest.mark.parametrize(("text", "match"), [
    ("default: {n_envs: eight}", "n_envs: expected an integer"),
    ("default: {progress_bar: 'yes'}", "expected true or false"),
    ("default: {timesteps: -5}", "timesteps must be > 0"),
    ("default: {hyperparams: {gamma: 1.5}}", r"gamma must lie in \[0, 1\]"),
    ("default: {hyperparams: {learning_rate: __import__('os')}}", "learning_rate"),
    ("default: {trunk: {activation: gelu}}", "'gelu' is not one of"),
    ("default: {vec_env: threads}", "is not one of"),
    ("default: [1, 2]", "must be a mapping"),
    ("default: {hyperparams: {batch_size: 4096}}", "exceeds the rollout size"),
])
def test_bad_values(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_train_config("MinAtar/Breakout-v1", "ppo", write(tmp_path, text))


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="malformed YAML at line 2"):
        load_train_config("MinAtar/Breakout-v1", "ppo", write(tmp_path, "default:\n  n_envs: [1\n"))


def test_yaml_strings_that_look_like_numbers_are_parsed_not_evaluated(tmp_path: Path) -> None:
    # PyYAML reads 1e-4 as the string "1e-4"; it is parsed as a float.
    cfg, params = load_train_config("MinAtar/Breakout-v1", "ppo",
                                    write(tmp_path, "default: {hyperparams: {learning_rate: 1e-4}}"))
    assert params.learning_rate == pytest.approx(1e-4)
    _, params = load_train_config("MinAtar/Breakout-v1", "ppo",
                                  write(tmp_path, "default: {hyperparams: {learning_rate: lin_3e-4}}"))
    assert params.learning_rate == "lin_3e-4"


def test_overrides_merge_last() -> None:
    over = parse_overrides(["hyperparams.learning_rate=1e-3", "n_envs=8", "policy.net_arch=[64]"])
    cfg, params = load_train_config("MinAtar/Breakout-v1", "ppo", None, over)
    assert params.learning_rate == pytest.approx(1e-3) and cfg.n_envs == 8 and cfg.policy.net_arch == [64]
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides(["n_envs"])


def test_a_key_given_twice_is_refused_naming_both_lines(tmp_path: Path) -> None:
    # PyYAML's safe_load silently keeps the later value; half the settings would be ignored.
    text = "default:\n  n_envs: 2\n  hyperparams:\n    gamma: 0.9\n    gamma: 0.99\n"
    with pytest.raises(ConfigError, match=r"duplicate key 'gamma' at line 5 \(first at line 4\)"):
        load_train_config("MinAtar/Breakout-v1", "ppo", write(tmp_path, text))
    with pytest.raises(ConfigError, match=r"duplicate key 'default' at line 3 \(first at line 1\)"):
        load_train_config("MinAtar/Breakout-v1", "ppo", write(tmp_path, "default: {}\nx: 1\ndefault: {}\n"))
    with pytest.raises(ConfigError, match="duplicate key 'n_envs'"):
        parse_overrides(["policy={n_envs: 1, n_envs: 2}"])


def test_merge_keys_may_still_be_overridden(tmp_path: Path) -> None:
    text = "base: &b {n_envs: 2, timesteps: 64}\ndefault:\n  <<: *b\n  n_envs: 4\n"
    cfg, _ = load_train_config("MinAtar/Breakout-v1", "ppo", write(tmp_path, text))
    assert (cfg.n_envs, cfg.timesteps) == (4, 64)


def test_every_shipped_config_and_suite_has_unique_keys() -> None:
    from conftest import ROOT

    from policyshare.config import read_yaml

    files = sorted((ROOT / "configs").glob("*.yaml")) + sorted((ROOT / "envs").glob("*.yaml"))
    assert len(files) >= 10
    for path in files:
        assert read_yaml(path) is not None, path
