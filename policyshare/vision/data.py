"""Images that need no download, labelled splits, and PNG writing.

Sources (nothing is fetched at run time):

* ``digits`` — scikit-learn's handwritten digits: 1797 grayscale 8x8 images, 10 classes,
  stored as 0..16 and scaled to [0, 1] here.
* textures — scikit-image's bundled ``brick``, ``grass`` and ``gravel`` (grayscale 512x512)
  and scikit-learn's sample photos ``china`` and ``flower`` (RGB 427x640).
* photos — scikit-image's bundled ``astronaut``, ``chelsea``, ``coffee``, ``rocket``,
  ``hubble_deep_field`` (RGB) and ``camera`` (grayscale), for style transfer.
* the user's image files (anything Pillow decodes) and folders with one sub-folder per class.
* ``mnist:DIR`` — MNIST's IDX files (``train-images-idx3-ubyte`` and ``-labels-idx1-ubyte``,
  optionally ``t10k-*`` and ``.gz``) from a local folder.
* ``cifar10:DIR`` — CIFAR-10's *binary* version (``data_batch_*.bin``, ``test_batch.bin``).
  The Python version is pickled and is refused: policyshare never unpickles data.

Every image tensor is float32 ``(batch, channels, height, width)`` with values in [0, 1].
"""

from __future__ import annotations

import gzip
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from policyshare.errors import UserError
from policyshare.io import atomic_write_bytes

TEXTURES: tuple[str, ...] = ("brick", "grass", "gravel")
SAMPLE_PHOTOS: tuple[str, ...] = ("china", "flower")
SKIMAGE_PHOTOS: tuple[str, ...] = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "camera")
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


@dataclass
class ImageSet:
    """Labelled images.

    Attributes:
        images: ``(n, channels, height, width)`` float32 in [0, 1].
        labels: ``(n,)`` int64 class indices.
        classes: class names, indexed by label.
        name: where the images came from (``digits``, a path …).
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, index: np.ndarray | Sequence[int]) -> ImageSet:
        """The images at ``index`` (same classes and name)."""
        idx = torch.as_tensor(np.asarray(index), dtype=torch.long)
        return ImageSet(self.images[idx], self.labels[idx], list(self.classes), self.name)

    @property
    def channels(self) -> int:
        """Image channels (1 grayscale, 3 RGB)."""
        return int(self.images.shape[1])


@dataclass
class Splits:
    """Disjoint stratified splits of one :class:`ImageSet`.

    Attributes:
        train: trains trunks, heads, guiding classifiers and the diffusion prior.
        eval: held out from every trunk; trains the independent judge.
        test: reports every accuracy (probes, judge, classification accuracy score).
    """

    train: ImageSet
    eval: ImageSet
    test: ImageSet

    def describe(self) -> dict[str, object]:
        """Sizes and source, for ``metrics.json``."""
        return {"dataset": self.train.name, "train": len(self.train), "eval": len(self.eval),
                "test": len(self.test), "classes": self.train.classes}


def load_digits() -> ImageSet:
    """scikit-learn's digits: ``(1797, 1, 8, 8)`` in [0, 1] (stored values 0..16 divided by 16)."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    images = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)
    labels = torch.from_numpy(d.target.astype(np.int64))
    return ImageSet(images, labels, [str(c) for c in range(10)], "digits")


def split(data: ImageSet, train_fraction: float, eval_fraction: float, seed: int) -> Splits:
    """Stratified train / eval / test split.

    Args:
        data: the images.
        train_fraction: share for ``train``.
        eval_fraction: share for ``eval``; ``test`` gets the rest.
        seed: split seed.

    Raises:
        UserError: if a class has too few images to appear in every split.
    """
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(data))
    y = data.labels.numpy()
    try:
        train_idx, rest = train_test_split(idx, train_size=train_fraction, stratify=y, random_state=seed)
        eval_share = eval_fraction / (1.0 - train_fraction)
        eval_idx, test_idx = train_test_split(rest, train_size=eval_share, stratify=y[rest], random_state=seed)
    except ValueError as e:
        raise UserError(f"cannot split {data.name} into train/eval/test ({e}); add images per class or "
                        "change data.train_fraction / data.eval_fraction") from e
    return Splits(data.subset(np.sort(train_idx)), data.subset(np.sort(eval_idx)), data.subset(np.sort(test_idx)))


def subsample(data: ImageSet, n: int, seed: int) -> ImageSet:
    """A stratified subsample of at most ``n`` images (``n <= 0`` or ``n >= len``: all)."""
    if n <= 0 or n >= len(data):
        return data
    from sklearn.model_selection import train_test_split

    keep, _ = train_test_split(np.arange(len(data)), train_size=n, stratify=data.labels.numpy(), random_state=seed)
    return data.subset(np.sort(keep))


# --------------------------------------------------------------------------------------------
# Single images


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    """``(H, W)`` or ``(H, W, C)`` uint8/float array → ``(C, H, W)`` float32 in [0, 1]."""
    a = np.asarray(array)
    scale = 255.0 if a.dtype == np.uint8 else 1.0
    t = torch.from_numpy(a.astype(np.float32) / scale)
    if t.dim() == 2:
        t = t.unsqueeze(-1)
    return t.permute(2, 0, 1).contiguous().clamp(0.0, 1.0)


def decode_image(path: str | Path, grayscale: bool = False) -> torch.Tensor:
    """Decode one image file into ``(C, H, W)`` float32 in [0, 1] (C = 1 gray or 3 RGB).

    Args:
        path: any format Pillow decodes; alpha is dropped, palettes are expanded.
        grayscale: convert to one channel (ITU-R 601 luma).

    Raises:
        UserError: the file is missing or does not decode as an image.
    """
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise UserError(f"image file {p} not found; pass an image file, a folder, or one of "
                        f"{', '.join(TEXTURES + SAMPLE_PHOTOS + SKIMAGE_PHOTOS)}")
    try:
        with Image.open(p) as im:
            im.load()
            mode = "L" if grayscale or im.mode in ("1", "L", "I", "I;16", "F") else "RGB"
            arr = np.asarray(im.convert(mode))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise UserError(f"could not decode image {p} ({type(e).__name__}: {e}); pass a PNG, JPEG or other "
                        "image file Pillow reads") from e
    return _to_tensor(arr)


def load_image(source: str, grayscale: bool = False) -> torch.Tensor:
    """A texture or photo by name, or an image file, as ``(C, H, W)`` float32 in [0, 1].

    Args:
        source: ``brick``, ``grass``, ``gravel`` (scikit-image, gray 512x512), ``china``,
            ``flower`` (scikit-learn sample photos, RGB 427x640), a scikit-image photo
            (:data:`SKIMAGE_PHOTOS`) or a path.
        grayscale: convert to one channel.

    Raises:
        UserError: unknown name and no such file, or a file that does not decode.
    """
    if source in TEXTURES or source in SKIMAGE_PHOTOS:
        import skimage.data

        t = _to_tensor(getattr(skimage.data, source)())
    elif source in SAMPLE_PHOTOS:
        from sklearn.datasets import load_sample_image

        t = _to_tensor(load_sample_image(f"{source}.jpg"))
    else:
        return decode_image(source, grayscale)
    if grayscale and t.shape[0] == 3:
        t = to_grayscale(t.unsqueeze(0)).squeeze(0)
    return t


def to_grayscale(images: torch.Tensor) -> torch.Tensor:
    """``(n, 3, H, W)`` RGB → ``(n, 1, H, W)`` luma (ITU-R 601: 0.299 R + 0.587 G + 0.114 B)."""
    w = torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype).view(1, 3, 1, 1)
    return (images * w).sum(1, keepdim=True)


def resize_short_side(image: torch.Tensor, short: int) -> torch.Tensor:
    """Resize ``(C, H, W)`` so ``min(H, W) == short`` (bilinear, antialiased, aspect kept)."""
    c, h, w = image.shape
    s = short / min(h, w)
    size = (max(1, round(h * s)), max(1, round(w * s)))
    out = torch.nn.functional.interpolate(image.unsqueeze(0), size=size, mode="bilinear",
                                          align_corners=False, antialias=True)
    return out.squeeze(0).clamp(0.0, 1.0)


def texture_crops(source: str, resize: int, size: int, grayscale: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The source crop and a disjoint held-out crop of one texture.

    The image is resized so its shorter side is ``resize`` pixels; the source is its top-left
    ``size x size`` crop and the reference its bottom-right one (disjoint when
    ``2 * size <= resize``). The reference gives the distance a perfect synthesis would reach.

    Returns:
        ``(source, reference)``, each ``(1, C, size, size)`` in [0, 1].

    Raises:
        UserError: unknown texture, undecodable file, or ``size`` larger than the resized image.
    """
    img = resize_short_side(load_image(source, grayscale), resize)
    _, h, w = img.shape
    if size > min(h, w):
        raise UserError(f"texture size {size} exceeds the resized image {h}x{w}; lower texture.size")
    return img[:, :size, :size].unsqueeze(0).contiguous(), img[:, h - size:, w - size:].unsqueeze(0).contiguous()


# --------------------------------------------------------------------------------------------
# Labelled datasets from local files


def load_dataset(source: str, *, image_size: int = 0, grayscale: bool = False) -> ImageSet:
    """Labelled images by name or path.

    Args:
        source: ``digits``, ``mnist:DIR``, ``cifar10:DIR`` or a folder holding one sub-folder of
            images per class (the sub-folder name is the class).
        image_size: resize folder images to ``image_size x image_size`` (0: keep; they must agree).
        grayscale: convert to one channel.

    Raises:
        UserError: unknown source, missing files, a file that does not decode, or mixed sizes.
    """
    if source == "digits":
        data = load_digits()
    elif source.startswith("mnist:"):
        data = load_mnist(source.split(":", 1)[1])
    elif source.startswith("cifar10:"):
        data = load_cifar10(source.split(":", 1)[1])
    elif Path(source).is_dir():
        data = load_folder(source, image_size=image_size, grayscale=grayscale)
    else:
        raise UserError(f"unknown dataset {source!r}; use digits, mnist:DIR, cifar10:DIR or a folder with "
                        "one sub-folder of images per class")
    if grayscale and data.channels == 3:
        data = ImageSet(to_grayscale(data.images), data.labels, data.classes, data.name)
    return data


def _open_maybe_gz(folder: Path, stem: str) -> bytes | None:
    for name in (stem, stem + ".gz"):
        p = folder / name
        if p.is_file():
            raw = p.read_bytes()
            if name.endswith(".gz"):
                try:
                    raw = gzip.decompress(raw)
                except (OSError, EOFError) as e:
                    raise UserError(f"{p} is not a readable gzip file ({e}); re-extract MNIST") from e
            return raw
    return None


def read_idx(raw: bytes, what: str) -> np.ndarray:
    """Decode an IDX array (MNIST's format: magic ``0x00000803`` images, ``0x00000801`` labels).

    Raises:
        UserError: bad magic number or truncated data.
    """
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise UserError(f"{what} is not an unsigned-byte IDX file; pass MNIST's original files")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    start = 4 + 4 * ndim
    n = int(np.prod(dims))
    if len(raw) < start + n:
        raise UserError(f"{what} is truncated ({len(raw)} bytes for shape {dims}); re-extract MNIST")
    return np.frombuffer(raw, dtype=np.uint8, count=n, offset=start).reshape(dims)


def load_mnist(folder: str | Path) -> ImageSet:
    """MNIST from local IDX files (train and, when present, t10k), ``(n, 1, 28, 28)`` in [0, 1].

    Raises:
        UserError: no IDX files in ``folder``, bad files, or images and labels of different counts.
    """
    f = Path(folder)
    images: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for prefix in ("train", "t10k"):
        img_raw = _open_maybe_gz(f, f"{prefix}-images-idx3-ubyte")
        lab_raw = _open_maybe_gz(f, f"{prefix}-labels-idx1-ubyte")
        if img_raw is None or lab_raw is None:
            continue
        x = read_idx(img_raw, f"{f}/{prefix}-images-idx3-ubyte")
        y = read_idx(lab_raw, f"{f}/{prefix}-labels-idx1-ubyte")
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise UserError(f"{f}: {prefix} images {x.shape} and labels {y.shape} do not match; re-extract MNIST")
        images.append(x)
        labels.append(y)
    if not images:
        raise UserError(f"no MNIST IDX files in {f}; expected train-images-idx3-ubyte[.gz] and "
                        "train-labels-idx1-ubyte[.gz]")
    pixels = torch.from_numpy(np.concatenate(images).astype(np.float32) / 255.0).unsqueeze(1)
    targets = torch.from_numpy(np.concatenate(labels).astype(np.int64))
    return ImageSet(pixels, targets, [str(c) for c in range(10)], f"mnist:{f}")


CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def load_cifar10(folder: str | Path) -> ImageSet:
    """CIFAR-10's binary version (records of 1 label byte + 3072 RGB bytes), ``(n, 3, 32, 32)`` in [0, 1].

    Raises:
        UserError: no ``*.bin`` batches (the pickled Python version is refused), or a truncated file.
    """
    f = Path(folder)
    files = sorted(f.glob("data_batch_*.bin")) + sorted(f.glob("test_batch.bin"))
    if not files:
        hint = (" (this is the pickled Python version, which policyshare does not unpickle; use the binary "
                "version cifar-10-binary)") if (f / "data_batch_1").is_file() else ""
        raise UserError(f"no CIFAR-10 binary batches (data_batch_*.bin) in {f}{hint}")
    records = []
    for p in files:
        raw = np.frombuffer(p.read_bytes(), dtype=np.uint8)
        if raw.size % 3073:
            raise UserError(f"{p} is truncated ({raw.size} bytes is not a multiple of 3073); re-extract CIFAR-10")
        records.append(raw.reshape(-1, 3073))
    r = np.concatenate(records)
    x = torch.from_numpy(r[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)
    y = torch.from_numpy(r[:, 0].astype(np.int64))
    if int(y.max()) >= 10:
        raise UserError(f"{f}: label {int(y.max())} outside 0..9; these are not CIFAR-10 binary batches")
    return ImageSet(x, y, list(CIFAR10_CLASSES), f"cifar10:{f}")


def load_folder(folder: str | Path, image_size: int = 0, grayscale: bool = False) -> ImageSet:
    """Images from ``folder/<class>/<image>`` (classes in sorted order).

    Mixed gray and RGB images are all made RGB unless ``grayscale``.

    Raises:
        UserError: fewer than two class folders, an empty class, an undecodable file, or images
            of different sizes with ``image_size`` 0.
    """
    root = Path(folder)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise UserError(f"{root} needs at least two sub-folders of images, one per class")
    tensors: list[torch.Tensor] = []
    labels: list[int] = []
    for k, c in enumerate(classes):
        files = sorted(p for p in (root / c).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UserError(f"class folder {root / c} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        for p in files:
            t = decode_image(p, grayscale)
            if image_size:
                t = torch.nn.functional.interpolate(t.unsqueeze(0), size=(image_size, image_size), mode="bilinear",
                                                    align_corners=False, antialias=True).squeeze(0).clamp(0, 1)
            tensors.append(t)
            labels.append(k)
    channels = max(t.shape[0] for t in tensors)
    tensors = [t.expand(channels, -1, -1) if t.shape[0] != channels else t for t in tensors]
    sizes = {tuple(t.shape[1:]) for t in tensors}
    if len(sizes) > 1:
        raise UserError(f"images in {root} have different sizes {sorted(sizes)[:3]}; set data.image_size to "
                        "resize them")
    return ImageSet(torch.stack(tensors).contiguous(), torch.tensor(labels, dtype=torch.long), classes, str(root))


# --------------------------------------------------------------------------------------------
# PNG output


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """``(C, H, W)`` in [0, 1] → ``(H, W)`` or ``(H, W, 3)`` uint8 (extra channels: first three)."""
    x = image.detach().float().clamp(0.0, 1.0).cpu()
    if x.shape[0] == 1:
        arr = x[0].numpy()
    else:
        if x.shape[0] == 2:
            x = torch.cat([x, torch.zeros_like(x[:1])])
        arr = x[:3].permute(1, 2, 0).numpy()
    return np.round(arr * 255.0).astype(np.uint8)


def save_png(path: str | Path, image: torch.Tensor, upscale: int = 1) -> Path:
    """Write ``(C, H, W)`` in [0, 1] as a PNG, atomically, optionally enlarged by nearest-neighbour.

    Raises:
        CheckpointError: if the write fails.
    """
    from PIL import Image

    im = Image.fromarray(to_uint8(image))
    if upscale > 1:
        im = im.resize((im.width * upscale, im.height * upscale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())


def grid(images: torch.Tensor, nrow: int, pad: int = 1, fill: float = 1.0) -> torch.Tensor:
    """Tile ``(n, C, H, W)`` images into one ``(C, H', W')`` image, ``nrow`` images per row."""
    n, c, h, w = images.shape
    rows = (n + nrow - 1) // nrow
    out = torch.full((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), fill, dtype=images.dtype)
    for i in range(n):
        r, k = divmod(i, nrow)
        out[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + k * (w + pad): pad + k * (w + pad) + w] = images[i]
    return out


def label_rows(image: torch.Tensor, labels: Sequence[str], upscale: int = 1, pad: int = 1) -> torch.Tensor:
    """Enlarge a :func:`grid` and write ``labels[r]`` in a left margin beside its row ``r``.

    The text is drawn with Pillow's default font, black on white, after the nearest-neighbour
    enlargement so that it stays legible.

    Args:
        image: ``(C, H, W)`` in [0, 1], a grid of ``len(labels)`` rows as :func:`grid` tiles them
            (``pad`` pixels before and between rows).
        labels: one label per row, e.g. the class names.
        upscale: nearest-neighbour enlargement of the images (the margin is added after it).
        pad: the grid's padding, in pixels before enlargement.

    Returns:
        ``(C, H · upscale, M + W · upscale)``: the enlarged grid with an ``M``-pixel label margin.

    Raises:
        ValueError: ``image``'s height is not that of ``len(labels)`` rows of a :func:`grid`.
    """
    from PIL import Image, ImageDraw, ImageFont

    c, height, width = image.shape
    rows = len(labels)
    if rows == 0 or (height - pad) % rows:
        raise ValueError(f"a {height}-pixel-high grid does not hold {rows} rows with padding {pad}")
    row_h = (height - pad) // rows * upscale  # one image plus one padding, enlarged
    big = image.repeat_interleave(upscale, dim=1).repeat_interleave(upscale, dim=2)
    try:
        font: ImageFont.ImageFont | ImageFont.FreeTypeFont = ImageFont.load_default(size=max(8, row_h * 3 // 5))
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    boxes = [probe.textbbox((0, 0), str(t), font=font) for t in labels]
    margin = int(math.ceil(max(b[2] - b[0] for b in boxes))) + 2 * max(2, row_h // 6)
    canvas = Image.new("L", (margin, height * upscale), 255)
    draw = ImageDraw.Draw(canvas)
    for r, (text, box) in enumerate(zip(labels, boxes)):
        centre = pad * upscale + r * row_h + (row_h - pad * upscale) / 2
        x = (margin - (box[2] - box[0])) / 2 - box[0]
        y = centre - (box[3] - box[1]) / 2 - box[1]
        draw.text((x, y), str(text), fill=0, font=font)
    side = torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255.0).to(image.dtype)
    return torch.cat([side.expand(c, -1, -1), big], dim=2)
