"""The trunk: specs, zero-bias activations, and use as an SB3 features extractor."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from policyshare.errors import ConfigError
from policyshare.trunks import TLin, TRec, Trunk, TrunkExtractor, TrunkSpec


@pytest.mark.parametrize(("name", "c", "hw", "shapes", "dim"), [
    ("minatar", 10, 10, [(16, 8, 8), (128,)], 128),
    ("minatar_deep", 10, 10, [(16, 8, 8), (32, 6, 6), (128,)], 128),
    ("nature", 4, 84, [(32, 20, 20), (64, 9, 9), (64, 7, 7), (512,)], 512),
])
def test_spec_shapes(name: str, c: int, hw: int, shapes: list[tuple[int, ...]], dim: int) -> None:
    trunk = Trunk(TrunkSpec(name, c, hw, hw))
    x = torch.rand(3, c, hw, hw)
    outs = trunk.forward_layers(x)
    assert [tuple(o.shape[1:]) for o in outs] == shapes == trunk.layer_shapes
    assert trunk(x).shape == (3, dim) and trunk.features_dim == dim
    assert torch.equal(trunk(x), outs[-1])


def test_minatar_spec_is_the_paper_network() -> None:
    trunk = Trunk(TrunkSpec("minatar", 4, 10, 10))
    conv, fc = trunk.layers
    assert isinstance(conv, torch.nn.Conv2d) and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
    assert conv.out_channels == 16 and isinstance(fc, torch.nn.Linear)
    assert (fc.in_features, fc.out_features) == (16 * 8 * 8, 128)


def test_trec_and_tlin_threshold() -> None:
    z = torch.tensor([-2.0, -0.5, 0.2, 0.5, 0.7, 3.0])
    assert torch.equal(TRec(0.5)(z), torch.tensor([0.0, 0.0, 0.0, 0.0, 0.7, 3.0]))
    assert torch.equal(TLin(0.5)(z), torch.tensor([-2.0, 0.0, 0.0, 0.0, 0.7, 3.0]))


@pytest.mark.parametrize("act", ["trec", "tlin"])
def test_zero_bias_activations_drop_bias(act: str) -> None:
    trunk = Trunk(TrunkSpec("minatar", 4, 10, 10, activation=act, theta=0.3))
    assert all(layer.bias is None for layer in trunk.layers)
    assert all(a.theta == 0.3 for a in trunk.activations)
    assert all(layer.bias is not None for layer in Trunk(TrunkSpec("minatar", 4, 10, 10)).layers)


def test_conv_layers_take_any_image_size() -> None:
    trunk = Trunk(TrunkSpec("minatar_deep", 3, 10, 10))
    out = trunk.forward_layers(torch.rand(2, 3, 37, 53), upto="conv2")
    assert [tuple(o.shape) for o in out] == [(2, 16, 35, 51), (2, 32, 33, 49)]


def test_bad_specs_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown trunk spec"):
        TrunkSpec("resnet", 3, 10, 10)
    with pytest.raises(ConfigError, match="unknown activation"):
        TrunkSpec("minatar", 3, 10, 10, activation="gelu")
    with pytest.raises(ConfigError, match="too small"):
        Trunk(TrunkSpec("nature", 4, 10, 10))


def test_extractor_reads_minatar_bool_grids_channels_last() -> None:
    space = gym.spaces.Box(0, 1, (10, 10, 4), dtype=bool)
    ex = TrunkExtractor(space, {"name": "minatar"}, {"mode": "pad", "channels_last": True, "channels": 10})
    obs = torch.as_tensor(np.random.default_rng(0).random((5, 10, 10, 4)) > 0.5)
    assert ex(obs.float()).shape == (5, 128)
    assert ex.trunk.spec.in_channels == 10
    # Padding adds zero channels: the first conv's extra input channels see zeros only.
    aligned = ex.alignment(obs.float())
    assert aligned.shape == (5, 10, 10, 10) and aligned[:, 4:].abs().sum() == 0
    assert torch.equal(aligned[:, :4], obs.float().permute(0, 3, 1, 2))


def test_extractor_stem_alignment_is_per_task() -> None:
    space = gym.spaces.Box(0, 1, (10, 10, 7), dtype=bool)
    ex = TrunkExtractor(space, {"name": "minatar"}, {"mode": "stem", "channels_last": True, "channels": 10})
    assert ex.alignment.stem is not None and ex.alignment.stem.in_channels == 7
    assert ex(torch.zeros(2, 10, 10, 7)).shape == (2, 128)


def test_extractor_reads_atari_frames() -> None:
    space = gym.spaces.Box(0, 255, (4, 84, 84), dtype=np.uint8)
    ex = TrunkExtractor(space, {"name": "nature"}, {"mode": "pad", "channels_last": False, "channels": 4})
    assert ex(torch.rand(2, 4, 84, 84)).shape == (2, 512)


@pytest.mark.parametrize("algo", ["ppo", "a2c", "dqn"])
def test_sb3_algorithms_use_the_trunk(algo: str) -> None:
    from policyshare.algos import PARAMS, PolicyConfig, TrunkConfig, build_model
    from policyshare.envs import load_suite, make_vec_env

    env = make_vec_env("MinAtar/Asterix-v1", 2, seed=0)
    params = PARAMS[algo](**({"n_steps": 16, "batch_size": 32} if algo == "ppo" else
                             {"learning_starts": 0, "buffer_size": 1000} if algo == "dqn" else {}))
    model = build_model(algo, env, params, PolicyConfig(), TrunkConfig(), load_suite("minatar"), seed=0)
    extractor = model.policy.q_net.features_extractor if algo == "dqn" else model.policy.features_extractor
    assert isinstance(extractor, TrunkExtractor)
    before = extractor.trunk.layers[0].weight.detach().clone()
    model.learn(64)
    assert not torch.equal(before, extractor.trunk.layers[0].weight), "the trunk must be trained"
    env.close()


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_padded_input_layer_starts_like_an_unpadded_one(algo: str) -> None:
    """Padding Breakout's 4 channels to 10 must not shrink the initial weights on the real ones."""
    from policyshare.algos import PARAMS, PolicyConfig, TrunkConfig, build_model
    from policyshare.envs import load_suite, make_vec_env

    env = make_vec_env("MinAtar/Breakout-v1", 1, seed=0)
    params = PARAMS[algo](**({"n_steps": 16, "batch_size": 16} if algo == "ppo" else {"buffer_size": 100}))
    model = build_model(algo, env, params, PolicyConfig(), TrunkConfig(), load_suite("minatar"), seed=0)
    net = model.q_net if algo == "dqn" else model.policy
    w = net.features_extractor.trunk.layers[0].weight.detach()
    assert w.shape == (16, 10, 3, 3)
    assert torch.count_nonzero(w[:, 4:]) == 0, "padded channels start at zero"
    real = w[:, :4].reshape(16, -1)
    if algo == "ppo":  # orthogonal rows with SB3's gain sqrt(2), over the 36 real inputs
        torch.testing.assert_close(real @ real.T, 2.0 * torch.eye(16), atol=1e-5, rtol=0)
    else:  # PyTorch's default bound 1/sqrt(fan_in) with fan_in = 4 * 9
        assert real.abs().max() <= 1 / 6 + 1e-6 and real.abs().max() > 0.12
        target = model.q_net_target.features_extractor.trunk.layers[0].weight
        assert torch.equal(target, net.features_extractor.trunk.layers[0].weight)
    env.close()


@pytest.mark.parametrize("spec", ["minatar", "minatar_deep"])
def test_missing_channels_read_as_zero_padding(spec: str) -> None:
    trunk = Trunk(TrunkSpec(spec, 10, 10, 10))
    x = torch.rand(6, 4, 10, 10)
    padded = torch.nn.functional.pad(x, (0, 0, 0, 0, 0, 6))
    torch.testing.assert_close(trunk(x), trunk(padded), rtol=1e-5, atol=1e-6)
    for a, b in zip(trunk.forward_layers(x), trunk.forward_layers(padded), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # Gradients reach only the weights of the channels present, as with padding.
    trunk(x).sum().backward()
    grad = trunk.layers[0].weight.grad
    assert grad is not None and torch.count_nonzero(grad[:, 4:]) == 0 and torch.count_nonzero(grad[:, :4]) > 0
