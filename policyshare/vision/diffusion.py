"""A small DDPM prior on the digits, trained once and cached; sampling with optional guidance.

Denoising diffusion (Ho, Jain & Abbeel 2020, "Denoising diffusion probabilistic models"):
images ``x_0`` scaled to [-1, 1] are noised as ``x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε`` (their
Eq. 4) with the cosine schedule of Nichol & Dhariwal 2021 (Eq. 17); an MLP ``ε_θ(x_t, t)``
learns to predict ``ε`` with the "simple" loss ``mean ||ε − ε_θ(x_t, t)||²`` (Ho et al. Eq. 14),
averaged over pixels and over the minibatch, ``t`` uniform. Sampling is ancestral (Ho et al.
Algorithm 2) through the posterior ``q(x_{t−1} | x_t, x̂_0)`` with the predicted ``x̂_0``
clipped to [-1, 1] and variance ``β̃_t``. Classifier guidance (Dhariwal & Nichol 2021,
"Diffusion models beat GANs on image synthesis", Algorithm 1) shifts the posterior mean by
``s · β̃_t · ∇_{x_t} log p_φ(y | x_t, t)``; ``s = 0`` is the unguided prior.

The prior never sees a trunk: it is trained once per (config, data, seed) and cached (see
:func:`cache_dir`: in the run folder, or in ``runs/vision/cache/`` for runs in their default
folders) so that every trunk guides the *same* prior, and differences between trunks are
differences in guidance.

Index convention: timestep index ``i = 0 … T−1`` stands for the paper's ``t = i + 1``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from policyshare.checkpoints import load_state_checked, load_tensors, save_tensors
from policyshare.errors import CheckpointError, NumericalError
from policyshare.paths import runs_dir
from policyshare.vision.config import DiffusionConfig
from policyshare.vision.tb import ScalarLog, no_log

DDPM_FORMAT = "policyshare.ddpm"
#: Bump when the denoiser or the training loop changes, so stale caches are not reused.
DDPM_VERSION = 1

#: ``guide(x_t, i) -> ∇_{x_t} log p(y | x_t, t)``: same shape as ``x_t`` ``(n, C, H, W)``.
Guide = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class NoiseSchedule(nn.Module):
    """The cosine noise schedule and the posterior coefficients, as buffers of shape ``(T,)``.

    ``ᾱ(t) = f(t)/f(0)``, ``f(t) = cos²(((t/T + s)/(1 + s)) · π/2)``, ``β_t = 1 − ᾱ_t/ᾱ_{t−1}``
    clipped to 0.999 (Nichol & Dhariwal 2021, Eq. 17, s = 0.008). Posterior of Ho et al. 2020
    Eq. 7: mean ``c0 · x̂_0 + c1 · x_t``, variance ``β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t)``.

    Args:
        timesteps: T.
    """

    betas: torch.Tensor
    alpha_bars: torch.Tensor
    alpha_bars_prev: torch.Tensor
    posterior_variance: torch.Tensor
    coef_x0: torch.Tensor
    coef_xt: torch.Tensor

    def __init__(self, timesteps: int, s: float = 0.008) -> None:
        super().__init__()
        self.timesteps = int(timesteps)
        steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        abar = f / f[0]
        betas = (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
        alpha_bars = torch.cumprod(1 - betas, 0)
        prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bars[:-1]])
        self.register_buffer("betas", betas.float())
        self.register_buffer("alpha_bars", alpha_bars.float())
        self.register_buffer("alpha_bars_prev", prev.float())
        self.register_buffer("posterior_variance", (betas * (1 - prev) / (1 - alpha_bars)).float())
        self.register_buffer("coef_x0", (betas * prev.sqrt() / (1 - alpha_bars)).float())
        self.register_buffer("coef_xt", ((1 - prev) * (1 - betas).sqrt() / (1 - alpha_bars)).float())

    def q_sample(self, x0: torch.Tensor, i: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε`` for ``x0`` ``(n, C, H, W)`` and indices ``i`` ``(n,)``."""
        ab = self.alpha_bars[i].view(-1, 1, 1, 1)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def timestep_embedding(i: torch.Tensor, timesteps: int, dim: int) -> torch.Tensor:
    """Sinusoidal embedding ``(n, dim)`` of timestep indices ``(n,)`` (Vaswani et al. 2017), phase ``i/T``."""
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, dtype=torch.float32) / max(half - 1, 1))
    arg = (i.float() / timesteps * 1000.0).unsqueeze(1) * freqs.unsqueeze(0)
    return torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)


class Denoiser(nn.Module):
    """``ε_θ(x_t, t)``: an MLP with the timestep embedding added to each hidden layer.

    Input ``(n, C, H, W)`` and indices ``(n,)``; output ``(n, C, H, W)``.

    Args:
        shape: ``(C, H, W)`` of the images.
        timesteps: T.
        hidden: hidden width.
    """

    def __init__(self, shape: tuple[int, int, int], timesteps: int, hidden: int = 512) -> None:
        super().__init__()
        self.shape = shape
        self.timesteps = timesteps
        d = shape[0] * shape[1] * shape[2]
        self.embed = nn.Sequential(nn.Linear(64, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.inp = nn.Linear(d, hidden)
        self.blocks = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(3)])
        self.time = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(3)])
        self.out = nn.Linear(hidden, d)

    def features(self, x: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        """The last hidden layer ``(n, hidden)`` (after SiLU), which the output layer reads."""
        emb = self.embed(timestep_embedding(i, self.timesteps, 64))
        h = self.inp(x.flatten(1)) + emb
        for block, time in zip(self.blocks, self.time):
            h = h + block(nn.functional.silu(h + time(emb)))
        return nn.functional.silu(h)

    def forward(self, x: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x, i)).view(-1, *self.shape)


class DDPM(nn.Module):
    """Denoiser + schedule. Images are in [-1, 1] inside; :meth:`sample` returns [0, 1].

    Args:
        shape: ``(C, H, W)``.
        cfg: timesteps and width.
    """

    def __init__(self, shape: tuple[int, int, int], cfg: DiffusionConfig) -> None:
        super().__init__()
        self.shape = shape
        self.schedule = NoiseSchedule(cfg.timesteps)
        self.denoiser = Denoiser(shape, cfg.timesteps, cfg.hidden)

    @property
    def timesteps(self) -> int:
        """T."""
        return self.schedule.timesteps

    def loss(self, x0: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Ho et al.'s simple loss on ``x0`` ``(n, C, H, W)`` in [-1, 1]: mean over pixels and batch."""
        i = torch.randint(0, self.timesteps, (len(x0),), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        return nn.functional.mse_loss(self.denoiser(self.schedule.q_sample(x0, i, noise), i), noise)

    def sample(self, n: int, gen: torch.Generator, guide: Guide | None = None, scale: float = 0.0) -> torch.Tensor:
        """Ancestral sampling, optionally classifier-guided (Dhariwal & Nichol 2021, Algorithm 1).

        Args:
            n: number of samples.
            gen: random generator (initial noise and every step's noise).
            guide: ``∇_{x_t} log p(y | x_t, t)`` for the samples' target classes.
            scale: guidance scale ``s`` (ignored without ``guide``; 0: unguided).

        Returns:
            ``(n, C, H, W)`` samples in [0, 1].

        Raises:
            NumericalError: a non-finite sample (guidance scale far too large).
        """
        sch = self.schedule
        x = torch.randn((n, *self.shape), generator=gen)
        for step in reversed(range(self.timesteps)):
            i = torch.full((n,), step, dtype=torch.long)
            with torch.no_grad():
                eps = self.denoiser(x, i)
                x0 = ((x - (1 - sch.alpha_bars[step]).sqrt() * eps) / sch.alpha_bars[step].sqrt()).clamp(-1, 1)
                mean = sch.coef_x0[step] * x0 + sch.coef_xt[step] * x
            var = sch.posterior_variance[step]
            if guide is not None and scale != 0.0:
                mean = mean + scale * var * guide(x, i)
            x = mean + var.sqrt() * torch.randn(x.shape, generator=gen) if step > 0 else mean
            if not torch.isfinite(x).all():
                raise NumericalError(f"diffusion sampling produced non-finite values at step {step}; lower the "
                                     "guidance scale")
        return ((x.clamp(-1, 1) + 1) / 2).detach()


def train_ddpm(images: torch.Tensor, cfg: DiffusionConfig, seed: int = 0, log: ScalarLog = no_log) -> DDPM:
    """Train the prior on ``images`` ``(n, C, H, W)`` in [0, 1]; returns its EMA weights.

    Adam with a cosine-decayed learning rate; the loss is Ho et al.'s simple loss (mean over
    pixels and batch). ``log`` receives ``loss`` every 100 updates.

    Raises:
        NumericalError: a non-finite loss.
    """
    shape = (int(images.shape[1]), int(images.shape[2]), int(images.shape[3]))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = DDPM(shape, cfg)
    ema = DDPM(shape, cfg)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.train_steps)
    gen = torch.Generator().manual_seed(seed)
    data = images * 2 - 1
    running = 0.0
    for step in range(cfg.train_steps):
        idx = torch.randint(0, len(data), (cfg.batch_size,), generator=gen)
        loss = model.loss(data[idx], gen)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise NumericalError(f"diffusion training: the loss became {value} at update {step}; lower diffusion.lr")
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - cfg.ema)
        running += value
        if (step + 1) % 100 == 0:
            log("loss", running / 100, step + 1)
            running = 0.0
    return ema.eval()


def cache_key(images: torch.Tensor, cfg: DiffusionConfig, seed: int) -> str:
    """SHA-256 (16 hex digits) of the training images, the config (without ``cache_dir``), seed and version."""
    h = hashlib.sha256()
    settings = {k: v for k, v in asdict(cfg).items() if k != "cache_dir"}
    h.update(json.dumps({"cfg": settings, "seed": seed, "version": DDPM_VERSION}, sort_keys=True).encode())
    h.update(str(tuple(images.shape)).encode())
    h.update(images.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def cache_dir(cfg: DiffusionConfig, run_dir: str | Path | None = None) -> Path:
    """Where trained priors are kept.

    Args:
        cfg: ``cfg.cache_dir``, when set, wins.
        run_dir: the run folder the user chose (``--run-dir``, or an experiment's ``vision/``
            folder): priors go to ``run_dir/cache``, inside the folder the command writes.

    Returns:
        ``cfg.cache_dir``; else ``run_dir/cache``; else ``<runs>/vision/cache``, shared by the
        vision runs in their default folders (``<runs>``: :func:`policyshare.paths.runs_dir`).
    """
    if cfg.cache_dir:
        return Path(cfg.cache_dir)
    return Path(run_dir) / "cache" if run_dir is not None else runs_dir() / "vision" / "cache"


def load_or_train_prior(images: torch.Tensor, cfg: DiffusionConfig, seed: int = 0,
                        log: ScalarLog = no_log, run_dir: str | Path | None = None) -> tuple[DDPM, Path, bool]:
    """The cached prior for (images, config, seed), training and caching it if absent.

    A cache file that cannot be read (corrupt, truncated) is trained again and replaced. A file
    lock per cache entry (``<file>.lock``) lets only one process train a given prior; another one
    that needs it waits, then loads it. The file is written atomically (temporary file + rename).

    Args:
        images: training images ``(n, C, H, W)`` in [0, 1] (the training split only).
        cfg: the prior's config.
        seed: training seed.
        log: receives the training loss when training.
        run_dir: the run folder the user chose, if any (see :func:`cache_dir`).

    Returns:
        ``(prior, cache file, whether it came from the cache)``.

    Raises:
        NumericalError: a non-finite training loss.
        CheckpointError: the cache file cannot be written.
    """
    key = cache_key(images, cfg, seed)
    path = cache_dir(cfg, run_dir) / f"ddpm_{key}.safetensors"
    shape = (int(images.shape[1]), int(images.shape[2]), int(images.shape[3]))
    with _cache_lock(path):  # another process training this very prior: wait for its file
        if path.is_file():
            try:
                tensors, header = load_tensors(path, DDPM_FORMAT)
                if header.get("key") != key:
                    raise CheckpointError(f"{path} holds another prior")
                model = DDPM(shape, cfg)
                load_state_checked(model, tensors, f"diffusion prior {path}")
                return model.eval().requires_grad_(False), path, True
            except CheckpointError:
                pass
        model = train_ddpm(images, cfg, seed, log)
        header = {"format": DDPM_FORMAT, "key": key, "shape": list(shape), "seed": seed,
                  "config": {k: v for k, v in asdict(cfg).items() if k != "cache_dir"}, "n_images": int(len(images))}
        save_tensors(path, model.state_dict(), header)
    return model.requires_grad_(False), path, False


@contextlib.contextmanager
def _cache_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<path>.lock`` for the block (blocking; the kernel frees it if killed).

    Two processes needing the same prior (two seeds' workers never do; two runs sharing a cache
    may) then train it once: the second waits and loads the first one's atomic write. File
    systems without ``flock`` run the block unlocked.

    Raises:
        CheckpointError: the cache folder cannot be created.
    """
    import fcntl
    import os

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise CheckpointError(f"cannot write the prior cache {path.parent}: {e}; set diffusion.cache_dir to a "
                              "writable folder") from None
    try:
        with contextlib.suppress(OSError):  # no flock on this file system: unlocked
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def cache_label(path: Path, run_dir: str | Path | None) -> str:
    """How ``metrics.json`` names a cache file: relative to the run folder when inside it, else as given.

    Two runs of the same config into two folders then write the same name (``cache/ddpm_<key>.safetensors``).
    """
    if run_dir is not None:
        with contextlib.suppress(ValueError):
            return path.relative_to(run_dir).as_posix()
    return str(path)
