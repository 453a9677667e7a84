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


# ---------------------------------------------------------------------------------------------
# One mechanism: pydantic settings classes, one loader, one resume check


def _settings_classes() -> list[type]:
    """Every settings class the commands validate, with the sections nested in them."""
    import dataclasses
    import typing

    from policyshare.algos import PARAMS
    from policyshare.distill import DistillConfig
    from policyshare.envs import Suite
    from policyshare.experiment.config import ExperimentConfig
    from policyshare.progressive.config import ProgressiveConfig
    from policyshare.progressive.network import ColumnInfo
    from policyshare.train import TrainConfig
    from policyshare.tune.space import TunerSettings
    from policyshare.vision.config import VisionConfig

    todo: list[type] = [TrainConfig, *PARAMS.values(), DistillConfig, ProgressiveConfig, ExperimentConfig,
                        VisionConfig, TunerSettings, Suite, ColumnInfo]
    seen: list[type] = []
    while todo:
        cls = todo.pop()
        if cls not in seen:
            seen.append(cls)
            hints = typing.get_type_hints(cls)
            todo += [hints[f.name] for f in dataclasses.fields(cls)
                     if isinstance(hints[f.name], type) and dataclasses.is_dataclass(hints[f.name])]
    return seen


def test_every_settings_class_is_a_pydantic_dataclass_that_forbids_unknown_keys() -> None:
    import dataclasses

    from pydantic import ValidationError
    from pydantic.dataclasses import is_pydantic_dataclass

    classes = _settings_classes()
    assert len(classes) >= 25
    for cls in classes:
        assert is_pydantic_dataclass(cls), cls
        assert cls.__pydantic_config__.get("extra") == "forbid", cls
    cfg, params = load_train_config("MinAtar/Breakout-v1", "ppo")
    # dataclasses.replace builds the object again, so pydantic checks the new value too.
    with pytest.raises(ValidationError, match="greater than 0"):
        dataclasses.replace(cfg, n_envs=0)
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        dataclasses.replace(params, gamma=1.5)


def test_a_bad_list_item_is_named_by_its_index(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\.policy: net_arch\[1\] must be > 0, got -1$"):
        load_train_config("MinAtar/Breakout-v1", "ppo", write(tmp_path, "default: {policy: {net_arch: [64, -1]}}"))
    with pytest.raises(ConfigError, match=r"\.policy\.net_arch\[0\]: expected an integer, got 'wide'$"):
        load_train_config("MinAtar/Breakout-v1", "ppo", write(tmp_path, "default: {policy: {net_arch: [wide]}}"))


def test_yaml_scalars_read_as_before(tmp_path: Path) -> None:
    # PyYAML 1.1 reads 1e5 as a string: an integer field takes it; only true/false are booleans;
    # an empty section takes its defaults; a boolean is not a number.
    cfg, _ = load_train_config("MinAtar/Breakout-v1", "ppo", write(tmp_path, "default: {timesteps: 1e5, trunk:}"))
    assert cfg.timesteps == 100_000 and isinstance(cfg.timesteps, int) and cfg.trunk.activation == "relu"
    for text, match in [("default: {progress_bar: 1}", "progress_bar: expected true or false, got 1"),
                        ("default: {n_envs: true}", "n_envs: expected an integer, got True"),
                        ("default: {timesteps: 2.5}", "timesteps: expected an integer, got 2.5"),
                        ("default: {hyperparams: {learning_rate: true}}",
                         "learning_rate: expected a number or a string, got True"),
                        ("default: {trunk: {alignment: diagonal}}",
                         "'diagonal' is not one of 'pad' | 'stem' | 'none'")]:
        with pytest.raises(ConfigError, match=match):
            load_train_config("MinAtar/Breakout-v1", "ppo", write(tmp_path, text))


@pytest.mark.parametrize(("command", "typo", "meant"), [
    ("distill", "eval.episods", "episodes"), ("progressive", "fisher.batch_sise", "batch_size"),
    ("experiment", "report.confidense", "confidence"), ("vision", "probe.batch_sise", "batch_size")])
def test_one_loader_gives_every_command_the_same_messages(command: str, typo: str, meant: str, tmp_path: Path) -> None:
    from policyshare.distill import load_distill_config
    from policyshare.experiment.checks import load_experiment_config
    from policyshare.progressive.config import load_progressive_config
    from policyshare.vision.config import load_vision_config

    experiment = write(tmp_path, "name: x\nsources: [MinAtar/Breakout-v1, MinAtar/Freeway-v1]\n"
                                 "targets: [MinAtar/Asterix-v1]\n")
    load = {"distill": lambda o: load_distill_config(None, o),
            "progressive": lambda o: load_progressive_config(None, o),
            "experiment": lambda o: load_experiment_config(experiment, o),
            "vision": lambda o: load_vision_config(None, o)}[command]
    section, key = typo.split(".")
    with pytest.raises(ConfigError, match=rf"\.yaml\.{section}: unknown key '{key}' \(did you mean '{meant}'\?\)$"):
        load(parse_overrides([f"{typo}=1"]))
    with pytest.raises(ConfigError, match=r"\.yaml: unknown key 'colour'; valid keys: "):
        load({"colour": "red"})
    with pytest.raises(ConfigError, match=rf"\.yaml\.{section}: {meant} must (be|lie in) .*, got -3$"):
        load(parse_overrides([f"{section}.{meant}=-3"]))


def test_the_one_resume_check_names_each_setting_then_and_now(tmp_path: Path) -> None:
    import yaml

    from policyshare.config import check_same_settings
    from policyshare.errors import CheckpointError, UserError

    stored = tmp_path / "config.yaml"
    assert check_same_settings(tmp_path, stored, {"a": 1}) == {}  # nothing stored yet: nothing to compare
    then = {"steps": 100, "eval": {"freq": 10}, "device": "cpu", "runs": {"x": 1}, "net": (64, 64)}
    stored.write_text(yaml.safe_dump({**then, "net": [64, 64]}, sort_keys=False))
    assert check_same_settings(tmp_path, stored, then)["runs"] == {"x": 1}  # a tuple is stored as a list
    now = {**then, "steps": 200, "eval": {"freq": 20}, "device": "cuda", "runs": {"x": 2}}
    with pytest.raises(UserError, match=rf"^cannot resume {tmp_path} with other settings \(eval\.freq: 10 then, 20 "
                                        r"now; steps: 100 then, 200 now\); do this$"):
        check_same_settings(tmp_path, stored, now, ignore=("device", "runs"), fix="do this")
    with pytest.raises(UserError, match="device: 'cpu' then, 'cuda' now"):
        check_same_settings(tmp_path, stored, {**then, "device": "cuda"})
    stored.write_text("steps: [1\n")
    with pytest.raises(CheckpointError, match="is corrupt"):
        check_same_settings(tmp_path, stored, then)
