"""The vision side: Gram losses by hand, texture synthesis, probes, guidance, data, evaluators.

Budgets are tiny (one torch thread, small images, few steps); the full comparison is in
``test_vision_slow.py``.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import torch

from policyshare.checkpoints import load_trunk, save_trunk
from policyshare.errors import ConfigError, UserError
from policyshare.trunks import Trunk, TrunkSpec
from policyshare.vision.config import VisionConfig, load_vision_config
from policyshare.vision.data import (
    ImageSet,
    Splits,
    decode_image,
    load_cifar10,
    load_dataset,
    load_digits,
    load_image,
    load_mnist,
    resize_short_side,
    split,
    texture_crops,
    to_grayscale,
)
from policyshare.vision.evaluators import (
    EVALUATORS,
    DigitJudge,
    EvaluatorNet,
    TextureJudge,
    classification_accuracy_score,
    texture_distances,
)
from policyshare.vision.inputs import ImageInput, fit_spatial, load_trunk_ref, random_trunk, unique_labels
from policyshare.vision.pretrain import pretrain_trunk, resolve_trunk, save_vision_trunk
from policyshare.vision.probe import finetune, linear_probe
from policyshare.vision.style import StyleTransferLoss, style_transfer
from policyshare.vision.texture import TextureFailure, TextureLoss, gram, mirrored_gram, shifted_gram, synthesize


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits() -> ImageSet:
    return load_digits()


@pytest.fixture(scope="module")
def splits(digits: ImageSet) -> Splits:
    return split(digits, 0.6, 0.2, 0)


def tiny_features() -> torch.Tensor:
    """(1, 2, 2, 2): channel 0 = [[1, 2], [3, 4]], channel 1 = [[0, 1], [1, 0]]."""
    return torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [1.0, 0.0]]]])


# --------------------------------------------------------------------------------------------
# Gram and shifted Gram by hand


def test_gram_hand_computed() -> None:
    f = tiny_features()
    # G00 = (1+4+9+16)/4, G01 = (0+2+3+0)/4, G11 = (0+1+1+0)/4 over the 4 positions.
    expected = torch.tensor([[7.5, 1.25], [1.25, 0.5]])
    assert torch.allclose(gram(f, "hw")[0], expected)
    assert torch.allclose(gram(f, "chw")[0], expected / 2)
    assert torch.allclose(gram(f, "none")[0], expected * 4)


def test_shifted_gram_hand_computed() -> None:
    f = tiny_features()
    # Horizontal shift 1: column 0 against column 1, 2 positions: G00=(1*2+3*4)/2, G01=(1*1+3*0)/2,
    # G10=(0*2+1*4)/2, G11=(0*1+1*0)/2.
    assert torch.allclose(shifted_gram(f, 0, 1)[0], torch.tensor([[7.0, 0.5], [2.0, 0.0]]))
    # Vertical shift 1: row 0 against row 1: G00=(1*3+2*4)/2, G01=(1*1+2*0)/2, G10=(0*3+1*4)/2, G11=0.
    assert torch.allclose(shifted_gram(f, 1, 0)[0], torch.tensor([[5.5, 0.5], [2.0, 0.0]]))
    assert torch.allclose(shifted_gram(f, 1, 0, "none")[0], torch.tensor([[11.0, 1.0], [4.0, 0.0]]))
    assert torch.allclose(shifted_gram(f, 0, 0), gram(f))
    with pytest.raises(UserError, match="does not fit a 2x2 feature map"):
        shifted_gram(f, 0, 2)


def test_mirrored_gram_hand_computed() -> None:
    f = tiny_features()
    # Left-right mirror: channel 0 -> [[2, 1], [4, 3]], channel 1 -> [[1, 0], [0, 1]]. Over the 4 positions:
    # G00 = (1*2 + 2*1 + 3*4 + 4*3)/4 = 7, G01 = (1*1 + 2*0 + 3*0 + 4*1)/4 = 1.25 = G10, G11 = 0.
    assert torch.allclose(mirrored_gram(f, "h")[0], torch.tensor([[7.0, 1.25], [1.25, 0.0]]))
    # Top-bottom mirror: channel 0 -> [[3, 4], [1, 2]]: G00 = (1*3 + 2*4 + 3*1 + 4*2)/4 = 5.5.
    assert torch.allclose(mirrored_gram(f, "v")[0], torch.tensor([[5.5, 1.25], [1.25, 0.0]]))
    assert torch.allclose(mirrored_gram(f, "v", "none")[0], torch.tensor([[22.0, 5.0], [5.0, 0.0]]))
    with pytest.raises(UserError, match="too small to mirror left-right"):
        mirrored_gram(torch.ones(1, 2, 3, 1), "h")
    with pytest.raises(UserError, match="unknown mirror axis"):
        mirrored_gram(f, "d")


def center_tap_trunk() -> Trunk:
    """A minatar trunk on 1x4x4 input whose conv1 map 0 is the input's 2x2 interior, other maps 0."""
    trunk = Trunk(TrunkSpec("minatar", in_channels=1, height=4, width=4))
    with torch.no_grad():
        conv = trunk.layers[0]
        assert isinstance(conv, torch.nn.Conv2d) and conv.bias is not None
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[0, 0, 1, 1] = 1.0
    return trunk


def interior(values: list[list[float]]) -> torch.Tensor:
    img = torch.zeros(1, 1, 4, 4)
    img[0, 0, 1:3, 1:3] = torch.tensor(values)
    return img


def test_texture_loss_hand_computed() -> None:
    source = interior([[1.0, 2.0], [3.0, 4.0]])
    flat = interior([[1.0, 1.0], [1.0, 1.0]])
    # conv1 has 16 maps, only map 0 is non-zero, so each term is a mean over 16x16 = 256 entries
    # with one non-zero difference: G00(source) = 7.5 vs G00(flat) = 1.
    absolute = TextureLoss(center_tap_trunk(), source, relative=False)
    assert float(absolute(source)) == pytest.approx(0.0, abs=1e-12)
    assert float(absolute(flat)) == pytest.approx((7.5 - 1.0) ** 2 / 256)
    # Relative: divided by mean(A²) = 7.5²/256.
    relative = TextureLoss(center_tap_trunk(), source)
    assert float(relative(flat)) == pytest.approx(6.5**2 / 7.5**2)
    # Plus shifts of 1 both ways (cropped): horizontal 7 vs (1+1)/2 = 1; vertical 5.5 vs 1; weight 0.5.
    shifted = TextureLoss(center_tap_trunk(), source, shifts=[1], shift_weight=0.5)
    expected = 6.5**2 / 7.5**2 + 0.5 * (6.0**2 / 7.0**2 + 4.5**2 / 5.5**2)
    assert float(shifted(flat)) == pytest.approx(expected)
    terms = shifted.terms(flat)
    assert set(terms) == {"conv1/gram", "conv1/shift_0_1", "conv1/shift_1_0"}


def test_mirrored_texture_loss_hand_computed() -> None:
    source = interior([[1.0, 2.0], [3.0, 4.0]])
    # The mirrored Gramian of the source's map (7, above) is matched to its plain Gramian (7.5): relative
    # (7 - 7.5)^2 / 7.5^2; the plain term of the source itself is 0.
    loss = TextureLoss(center_tap_trunk(), source, mirror=["h"], mirror_weight=2.0)
    terms = loss.terms(source)
    assert set(terms) == {"conv1/gram", "conv1/mirror_h"}
    assert float(terms["conv1/mirror_h"]) == pytest.approx(0.5**2 / 7.5**2)
    assert float(loss(source)) == pytest.approx(2.0 * 0.5**2 / 7.5**2)
    # A left-right symmetric image with the same plain Gramian entry G00 = 7.5 needs no mirror correction beyond it.
    symmetric = interior([[5.0**0.5, 5.0**0.5], [10.0**0.5, 10.0**0.5]])
    assert float(loss.terms(symmetric)["conv1/mirror_h"]) == pytest.approx(0.0, abs=1e-10)
    # A 4x3 image gives conv1 a 2x1 map: nothing to mirror left-right.
    with pytest.raises(UserError, match="layer conv1's 2x1 feature map .* too small to mirror left-right"):
        TextureLoss(center_tap_trunk(), torch.rand(1, 1, 4, 3) + 0.1, mirror=["h"])
    with pytest.raises(UserError, match="not among the matched layers"):
        TextureLoss(center_tap_trunk(), source, mirror={"conv2": ["h"]})


def test_texture_loss_rejects_bad_layers_and_shifts() -> None:
    source = interior([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(UserError, match="no layer 'conv9'; its conv layers are conv1"):
        TextureLoss(center_tap_trunk(), source, layers=["conv9"])
    with pytest.raises(UserError, match="is dense"):
        TextureLoss(center_tap_trunk(), source, layers=["fc1"])
    with pytest.raises(UserError, match="shift 2 is not smaller than layer conv1's 2x2 feature map"):
        TextureLoss(center_tap_trunk(), source, shifts=[2])
    with pytest.raises(UserError, match="not among the matched layers"):
        TextureLoss(center_tap_trunk(), source, shifts={"conv2": [1]})
    with pytest.raises(UserError, match="one weight per layer"):
        TextureLoss(center_tap_trunk(), source, layer_weights=[1.0, 2.0])
    with pytest.raises(TextureFailure, match="all-zero features"):
        TextureLoss(center_tap_trunk(), torch.zeros(1, 1, 4, 4))
    with pytest.raises(UserError, match="too small"):
        TextureLoss(center_tap_trunk(), torch.zeros(1, 1, 2, 2))


# --------------------------------------------------------------------------------------------
# Texture synthesis


def test_synthesis_lowers_loss_on_brick() -> None:
    source, reference = texture_crops("brick", 64, 32)
    assert source.shape == reference.shape == (1, 1, 32, 32)
    runs: tuple[tuple[Literal["lbfgs", "adam"], float], ...] = (("lbfgs", 0.0), ("adam", 0.1))
    for optimizer, lr in runs:
        loss = TextureLoss(random_trunk(VisionConfig().trunk, 0), source, shifts=[2, 4])
        result = synthesize(loss, source.shape, optimizer=optimizer, steps=8, lr=lr, patience=8)
        assert result.final_loss < 0.5 * result.initial_loss, (optimizer, result.losses)
        assert result.image.shape == source.shape
        assert float(result.image.min()) >= 0.0 and float(result.image.max()) <= 1.0
        assert float(loss(result.image)) == pytest.approx(result.final_loss, rel=1e-4)


def test_synthesis_stops_on_nan_and_stall() -> None:
    shape = (1, 1, 8, 8)
    for optimizer in ("adam", "lbfgs"):
        with pytest.raises(TextureFailure, match="NaN or infinite"):
            synthesize(lambda x: x.sum() * float("nan"), shape, optimizer=optimizer, steps=5)
        with pytest.raises(TextureFailure, match="stalled"):
            synthesize(lambda x: x.sum() * 0.0 + 1.0, shape, optimizer=optimizer, steps=10, patience=5)
        # A loss that becomes NaN after some progress (an exploding guide) also stops.
        with pytest.raises(TextureFailure, match="NaN or infinite"):
            synthesize(lambda x: torch.where(x.mean() < 0.3, x.sum() / 0.0 * 0.0, (x - 0.1).pow(2).sum()), shape,
                       optimizer=optimizer, steps=200, lr=0.5)
    with pytest.raises(UserError, match="unknown optimizer"):
        synthesize(lambda x: x.sum(), shape, optimizer="sgd", steps=1)



def test_a_run_shorter_than_the_patience_without_progress_fails_at_its_end() -> None:
    # Adam at lr 1e6 saturates the sigmoid pixels in one step: the loss never falls below the
    # starting noise's. With 10 steps and a patience of 20 the stall rule never fires mid-run, so
    # the verdict has to come at the end.
    source, _ = texture_crops("brick", 64, 32)
    loss = TextureLoss(random_trunk(VisionConfig().trunk, 0), source)
    with pytest.raises(TextureFailure, match="stalled.*after 10 iterations.*starting noise"):
        synthesize(loss, source.shape, optimizer="adam", steps=10, lr=1e6, patience=20)
    # A constant loss over fewer iterations than the patience, with both optimisers.
    for optimizer in ("adam", "lbfgs"):
        with pytest.raises(TextureFailure, match="stalled"):
            synthesize(lambda x: x.sum() * 0.0 + 1.0, (1, 1, 8, 8), optimizer=optimizer, steps=3, patience=20)
    # Progress within a short run still passes.
    result = synthesize(loss, source.shape, optimizer="lbfgs", steps=3, patience=20)
    assert result.final_loss < 0.99 * result.initial_loss

def test_evaluator_is_held_out_and_deterministic() -> None:
    a, b = EvaluatorNet(1, 7), EvaluatorNet(1, 7)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb) and not pa.requires_grad
    assert not torch.equal(next(EvaluatorNet(1, 8).parameters()), next(a.parameters()))
    source, reference = texture_crops("brick", 128, 64)
    same = texture_distances(source, source, a)
    assert same["gram"] == 0.0 and same["shifted_gram"] == 0.0
    held_out = texture_distances(reference, source, a)
    noise = texture_distances(torch.rand_like(source), source, a)
    assert 0.0 < held_out["gram"] < noise["gram"]
    with pytest.raises(UserError, match="evaluator shift"):
        texture_distances(source, source, a, shifts=[40])


@pytest.mark.parametrize(("resize", "size", "shifts"), [(64, 32, [1, 2]), (128, 64, [2, 4])])
def test_texture_judge_ranks_a_held_out_crop_of_brick_first_under_every_evaluator(
        resize: int, size: int, shifts: list[int]) -> None:
    crops = {name: texture_crops(name, resize, size) for name in ("brick", "gravel", "grass")}
    source, reference = crops["brick"]
    judge = TextureJudge(1, 1234, shifts)
    assert judge.names == list(EVALUATORS) and len(set(judge.describe().values())) == len(EVALUATORS)
    negatives = {"gravel": crops["gravel"][1], "grass": crops["grass"][1],
                 "noise": 0.25 + 0.5 * torch.rand(source.shape, generator=torch.Generator().manual_seed(0))}
    validation = judge.validate(source, reference, negatives)
    for evaluator in EVALUATORS:
        ref = validation["reference"][evaluator]
        for name, d in validation["negatives"].items():
            assert ref["gram"] < d[evaluator]["gram"], (evaluator, name)
            assert ref["shifted_gram"] < d[evaluator]["shifted_gram"], (evaluator, name)
    assert validation["validated"] == list(EVALUATORS)
    # Scores are ratios to the held-out crop: the crop scores 1, noise far above.
    assert judge.score(reference, source, validation)["gram"] == pytest.approx(1.0)
    noise = judge.score(negatives["noise"], source, validation)
    assert noise["gram_min"] > 1.0 and noise["shifted_gram_min"] > 1.0 and noise["fooled"] == []


def test_style_transfer_lowers_content_and_style_loss_on_a_bundled_photo() -> None:
    content = resize_short_side(load_image("chelsea"), 48).unsqueeze(0)
    style = resize_short_side(load_image("coffee"), 48).unsqueeze(0)
    trunk = random_trunk(VisionConfig().trunk, 0, "image_deep")
    loss = StyleTransferLoss(trunk, content, style, "conv4", shifts=[1], style_weight=0.05)
    result = style_transfer(loss, content, init="noise", steps=5, patience=5)
    assert result.final["content"] < 0.8 * result.initial["content"], (result.initial, result.final)
    assert result.final["style"] < 0.8 * result.initial["style"], (result.initial, result.final)
    assert result.synthesis.image.shape == content.shape
    with pytest.raises(UserError, match="has 3 channel.* but the style image style has 1"):
        StyleTransferLoss(trunk, content, to_grayscale(style), "conv4")
    with pytest.raises(UserError, match="shift 2 is not smaller than layer conv6's 2x5 feature map"):
        StyleTransferLoss(trunk, content, style, "conv4", shifts=[2])


# --------------------------------------------------------------------------------------------
# Images into trunks


def test_images_of_any_size_and_channels_enter_trunks(tmp_path: Path) -> None:
    rl_like = Trunk(TrunkSpec("minatar", in_channels=10, height=10, width=10))
    gray = torch.rand(3, 1, 8, 8)
    x = ImageInput(1, rl_like.spec)(gray)
    assert x.shape == (3, 10, 10, 10)
    assert torch.equal(x[:, 0, 1:9, 1:9], gray[:, 0]) and float(x[:, 1:].abs().sum()) == 0.0
    assert rl_like(x).shape == (3, 128)
    rgb = torch.rand(2, 3, 40, 30)
    assert ImageInput(3, rl_like.spec)(rgb).shape == (2, 10, 10, 10)  # resized: 40x30 is far from 10x10
    big = ImageInput(3, rl_like.spec, fit="none")(rgb)
    assert rl_like.forward_layers(big, upto="conv1")[-1].shape == (2, 16, 38, 28)
    nature = load_trunk_ref("random:nature", VisionConfig().trunk, 0)
    assert nature.spec.height == 84 and nature(ImageInput(1, nature.spec)(gray)).shape == (3, 512)
    narrow = TrunkSpec("minatar", in_channels=1, height=10, width=10)
    with pytest.raises(UserError, match="set trunk.alignment: stem"):
        ImageInput(3, narrow)
    assert ImageInput(3, narrow, alignment="stem")(rgb).shape == (2, 1, 10, 10)
    with pytest.raises(UserError, match="set trunk.fit: resize"):
        fit_spatial(torch.zeros(1, 1, 12, 12), 10, 10, "pad")
    assert unique_labels(["random", "random", "a/run/trunk.safetensors"]) == ["random", "random-2", "run"]


def test_trunk_references_and_errors(tmp_path: Path) -> None:
    cfg = VisionConfig().trunk
    a, b = load_trunk_ref("random", cfg, 3), load_trunk_ref("random", cfg, 3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    with pytest.raises(UserError, match="not found; pass random"):
        load_trunk_ref(str(tmp_path / "missing.safetensors"), cfg, 0)
    with pytest.raises(UserError, match="unknown trunk spec 'resnet'"):
        load_trunk_ref("random:resnet", cfg, 0)


def test_image_files_decode_or_fail_clearly(tmp_path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.full((5, 7, 3), 255, dtype=np.uint8)).save(tmp_path / "white.png")
    img = decode_image(tmp_path / "white.png")
    assert img.shape == (3, 5, 7) and float(img.min()) == 1.0
    assert decode_image(tmp_path / "white.png", grayscale=True).shape == (1, 5, 7)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(UserError, match="could not decode image"):
        decode_image(tmp_path / "broken.png")
    with pytest.raises(UserError, match="not found"):
        load_image(str(tmp_path / "nope.png"))
    for name, shape in (("brick", (1, 512, 512)), ("china", (3, 427, 640))):
        assert load_image(name).shape == shape


def test_local_datasets(tmp_path: Path) -> None:
    from PIL import Image

    # MNIST IDX (gzipped), 3 images of 28x28.
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    pixels = np.arange(3 * 28 * 28, dtype=np.uint32).astype(np.uint8).reshape(3, 28, 28)
    head = bytes([0, 0, 8, 3]) + b"".join(int(v).to_bytes(4, "big") for v in (3, 28, 28))
    (mnist / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(head + pixels.tobytes()))
    (mnist / "train-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1]) + (3).to_bytes(4, "big") + bytes([4, 1, 9]))
    m = load_mnist(mnist)
    assert m.images.shape == (3, 1, 28, 28) and m.labels.tolist() == [4, 1, 9]
    assert float(m.images[0, 0, 0, 1]) == pytest.approx(1 / 255)
    # CIFAR-10 binary: 2 records.
    cifar = tmp_path / "cifar"
    cifar.mkdir()
    rec = np.zeros((2, 3073), dtype=np.uint8)
    rec[:, 0] = [3, 7]
    rec[1, 1:] = 255
    (cifar / "data_batch_1.bin").write_bytes(rec.tobytes())
    c = load_cifar10(cifar)
    assert c.images.shape == (2, 3, 32, 32) and c.labels.tolist() == [3, 7] and float(c.images[1].min()) == 1.0
    (cifar / "data_batch_1.bin").write_bytes(rec.tobytes()[:-5])
    with pytest.raises(UserError, match="truncated"):
        load_cifar10(cifar)
    pickled = tmp_path / "cifar-py"
    pickled.mkdir()
    (pickled / "data_batch_1").write_bytes(b"pickle")
    with pytest.raises(UserError, match="does not unpickle"):
        load_cifar10(pickled)
    # A folder of class sub-folders.
    for k, name in enumerate(("cats", "dogs")):
        (tmp_path / "folder" / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((6, 6), 40 * (k + i), dtype=np.uint8)).save(tmp_path / "folder" / name / f"{i}.png")
    f = load_dataset(str(tmp_path / "folder"), image_size=4)
    assert f.images.shape == (4, 1, 4, 4) and f.classes == ["cats", "dogs"] and f.labels.tolist() == [0, 0, 1, 1]
    with pytest.raises(UserError, match="unknown dataset"):
        load_dataset("imagenet")


def test_config_is_strict() -> None:
    cfg = load_vision_config()
    assert cfg.trunk.spec == "minatar" and cfg.threads == 1
    with pytest.raises(ConfigError, match="did you mean 'scale'"):
        load_vision_config(None, {"guidance": {"scal": 2}})
    with pytest.raises(ConfigError, match="test split"):
        load_vision_config(None, {"data": {"train_fraction": 0.8, "eval_fraction": 0.2}})
    assert load_vision_config(None, {"texture": {"shifts": {"conv1": [2]}}}).texture.shifts == {"conv1": [2]}


# --------------------------------------------------------------------------------------------
# Classification


def test_probe_on_classification_trained_trunk_beats_random(splits: Splits, tmp_path: Path) -> None:
    cfg = VisionConfig()
    random = resolve_trunk("random", splits.train, cfg, 0)
    before = {k: v.clone() for k, v in random.state_dict().items()}
    rand_result, _ = linear_probe(random, splits.train, splits.test, cfg.probe, cfg.trunk, 0)
    assert all(torch.equal(before[k], v) for k, v in random.state_dict().items())  # frozen: unchanged bit for bit
    trained, losses = pretrain_trunk("classify", splits.train, cfg, 0)
    assert losses[-1] < losses[0]
    cls_result, _ = linear_probe(trained, splits.train, splits.test, cfg.probe, cfg.trunk, 0)
    assert cls_result.accuracy > rand_result.accuracy
    assert cls_result.n_test == len(splits.test) == 360
    # The trained trunk round-trips through a trunk file with its provenance.
    path = save_vision_trunk(trained, tmp_path / "trunk.safetensors", cfg, 1)
    loaded = load_trunk(path)
    assert loaded.header is not None and loaded.header["source"]["kind"] == "classify"
    assert loaded.header["source"]["split"] == "train"
    x = torch.rand(4, 10, 10, 10)
    assert torch.equal(loaded(x), trained(x))


def test_finetune_leaves_the_given_trunk_alone(splits: Splits) -> None:
    cfg = VisionConfig()
    trunk = random_trunk(cfg.trunk, 0)
    before = {k: v.clone() for k, v in trunk.state_dict().items()}
    small = splits.train.subset(range(200))
    result, model = finetune(trunk, small, splits.test, cfg.probe, cfg.trunk, 0, epochs=2)
    assert all(torch.equal(before[k], v) for k, v in trunk.state_dict().items())
    assert model.trunk is not trunk
    assert not torch.equal(model.trunk.layers[0].weight, trunk.layers[0].weight)
    assert result.mode == "finetune" and len(result.losses) == 2


def test_autoencoder_pretraining_reduces_reconstruction_loss(splits: Splits) -> None:
    cfg = load_vision_config(None, {"pretrain": {"autoencoder_epochs": 3}, "trunk": {"activation": "tlin"}})
    trunk, losses = pretrain_trunk("autoencoder", splits.train.subset(range(300)), cfg, 0)
    assert losses[-1] < losses[0]
    assert trunk.spec.activation == "tlin" and not trunk.spec.bias
    assert all(layer.bias is None for layer in trunk.layers)


def test_judge_and_classification_accuracy_score(splits: Splits) -> None:
    judge = DigitJudge(splits.eval)
    assert judge.accuracy(splits.test.images, splits.test.labels) > 0.9
    # CAS of real training digits (as if generated) is high; of shuffled labels, near chance.
    assert classification_accuracy_score(splits.train.images, splits.train.labels, splits.test) > 0.9
    shuffled = splits.train.labels[torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(0))]
    assert classification_accuracy_score(splits.train.images, shuffled, splits.test) < 0.3
    with pytest.raises(UserError, match="reads images of shape"):
        judge.predict(torch.zeros(1, 1, 10, 10))


def test_unknown_spec_trunk_file_is_refused(tmp_path: Path) -> None:
    from policyshare.checkpoints import save_tensors
    from policyshare.errors import CheckpointError

    trunk = Trunk(TrunkSpec("minatar", in_channels=10, height=10, width=10))
    header = {"format": "policyshare.trunk", "spec": {**trunk.spec.to_dict(), "name": "resnet"}}
    save_tensors(tmp_path / "odd.safetensors", trunk.state_dict(), header)
    with pytest.raises(CheckpointError, match="resnet"):
        load_trunk_ref(str(tmp_path / "odd.safetensors"), VisionConfig().trunk, 0)
    with pytest.raises(CheckpointError, match="without trunk.safetensors"):
        load_trunk_ref(str(tmp_path), VisionConfig().trunk, 0)
    save_trunk(trunk, tmp_path / "trunk.safetensors")
    loaded = load_trunk_ref(str(tmp_path), VisionConfig().trunk, 0)  # a run folder works too
    assert all(torch.equal(p, q) for p, q in zip(loaded.parameters(), trunk.parameters()))


# --------------------------------------------------------------------------------------------
# Diffusion prior and classifier guidance


def test_guided_samples_hit_their_target_more_often_than_unguided(splits: Splits, tmp_path: Path) -> None:
    from policyshare.vision.diffusion import load_or_train_prior
    from policyshare.vision.guidance import generate, train_noisy_classifier

    cfg = load_vision_config(None, {
        "diffusion": {"timesteps": 40, "hidden": 128, "train_steps": 1200, "batch_size": 128,
                      "cache_dir": str(tmp_path / "cache")},
        "guidance": {"train_steps": 400, "batch_size": 128, "head_hidden": 128},
    })
    prior, path, cached = load_or_train_prior(splits.train.images, cfg.diffusion, 0)
    assert path.is_file() and not cached
    again, path2, cached2 = load_or_train_prior(splits.train.images, cfg.diffusion, 0)
    assert cached2 and path2 == path
    assert all(torch.equal(p, q) for p, q in zip(prior.state_dict().values(), again.state_dict().values()))
    trunk, _ = pretrain_trunk("classify", splits.train, cfg, 0)
    before = {k: v.clone() for k, v in trunk.state_dict().items()}
    clf = train_noisy_classifier(trunk, splits.train, prior.schedule, cfg.trunk, cfg.guidance, seed=0)
    assert clf.trunk is trunk
    assert all(torch.equal(before[k], v) for k, v in trunk.state_dict().items())  # the trunk guides, frozen
    judge = DigitJudge(splits.eval)
    unguided = generate(prior, None, 10, 10, 0.0, seed=1)
    guided = generate(prior, clf, 10, 10, 4.0, seed=1)
    assert guided.images.shape == unguided.images.shape == (100, 1, 8, 8)
    assert float(guided.images.min()) >= 0.0 and float(guided.images.max()) <= 1.0
    acc_unguided = judge.accuracy(unguided.images, unguided.labels)
    acc_guided = judge.accuracy(guided.images, guided.labels)
    assert acc_guided > acc_unguided + 0.2, (acc_guided, acc_unguided)
    # Scale 0 with a classifier is exactly the unguided sampler.
    with_clf, without = generate(prior, clf, 10, 2, 0.0, seed=1), generate(prior, None, 10, 2, 0.0, seed=1)
    assert torch.equal(with_clf.images, without.images)


def test_corrupt_prior_cache_is_retrained(splits: Splits, tmp_path: Path) -> None:
    from policyshare.vision.diffusion import load_or_train_prior

    cfg = load_vision_config(None, {"diffusion": {"timesteps": 10, "hidden": 16, "train_steps": 5,
                                                  "cache_dir": str(tmp_path)}})
    _, path, _ = load_or_train_prior(splits.train.images[:50], cfg.diffusion, 0)
    path.write_bytes(path.read_bytes()[:100])
    _, path2, cached = load_or_train_prior(splits.train.images[:50], cfg.diffusion, 0)
    assert path2 == path and not cached
    _, _, cached = load_or_train_prior(splits.train.images[:50], cfg.diffusion, 0)
    assert cached
