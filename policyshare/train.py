"""Training one policy per env from a config: ``policyshare train``.

One loop, read top to bottom in :func:`train`: resolve the config → open the run folder →
build the vectorised env and the SB3 model on a trunk → ``model.learn`` with periodic
evaluation, checkpoints and a finite-value guard → save the final model and trunk →
evaluate the final model and the random policy → ``metrics.json``.

Units: ``timesteps``, ``eval.freq`` and ``checkpoint_freq`` are env steps summed over the
parallel envs; evaluation is in complete episodes. A run trains ``timesteps`` rounded up to
whole rollouts (:func:`trained_timesteps`); ``--resume`` continues an interrupted run exactly
(see :func:`train` and the README's fault table).
"""

from __future__ import annotations

import errno
import logging
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any, Literal

import pydantic
import torch
from pydantic import NonNegativeInt, PositiveInt

from policyshare.algos import (
    ALGOS,
    PolicyConfig,
    TrunkConfig,
    algo_params,
    build_model,
    features_extractors,
    load_trunk_into,
)
from policyshare.callbacks import checkpoint_step, load_replay, trim_curve
from policyshare.checkpoints import save_trunk
from policyshare.config import (
    SETTINGS,
    Settings,
    check_same_settings,
    check_seeds,
    from_dict,
    read_settings,
    to_dict,
    with_changes,
)
from policyshare.console import shows_progress
from policyshare.envs import Suite, check_env_id, check_vec_env, make_vec_env
from policyshare.errors import CheckpointError, UserError
from policyshare.evaluate import EVAL_SEED_OFFSET, EvalResult, evaluate, random_return
from policyshare.io import atomic_write_json, remove_stale_temporaries
from policyshare.learning import learn
from policyshare.logs import open_logger, restore_pending, silence_writer_thread_errors
from policyshare.paths import default_config
from policyshare.runs import RunFolder, default_run_dir
from policyshare.sb3_files import extractor_header, load_sb3, read_sb3_header, save_sb3

log = logging.getLogger(__name__)


@pydantic.dataclasses.dataclass(config=SETTINGS)
class EvalConfig(Settings):
    """Evaluation settings.

    Attributes:
        freq: env steps between periodic evaluations (``eval/mean_reward``); 0 turns them off.
        episodes: episodes per periodic evaluation.
        final_episodes: episodes of the final evaluation in ``metrics.json``.
        random_episodes: episodes of the random-policy baseline.
    """

    freq: NonNegativeInt = 25_000
    episodes: PositiveInt = 10
    final_episodes: PositiveInt = 20
    random_episodes: PositiveInt = 20


@pydantic.dataclasses.dataclass(config=SETTINGS)
class TrainConfig(Settings):
    """A resolved training config (one entry of ``configs/<algo>.yaml`` after merging).

    Attributes:
        timesteps: total env steps to train (summed over envs).
        n_envs: parallel envs.
        vec_env: ``dummy`` (one process), ``subproc`` or ``batched`` (MinAtar only: the envs
            stepped together with array operations, same episodes as ``dummy``).
        torch_threads: torch intra-op threads.
        device: torch device (``cpu``, ``cuda``, ``auto``).
        checkpoint_freq: env steps between checkpoints; 0 turns them off.
        progress_bar: show a progress bar (tqdm + rich, through SB3).
        trunk: trunk spec, activation and input alignment.
        policy: heads above the trunk.
        eval: evaluation settings.
        hyperparams: the algorithm's hyper-parameters (validated per algorithm).
    """

    timesteps: PositiveInt = 1_000_000
    n_envs: PositiveInt = 8
    vec_env: Literal["dummy", "subproc", "batched"] = "dummy"
    torch_threads: PositiveInt = 1
    device: str = "cpu"
    checkpoint_freq: NonNegativeInt = 100_000
    progress_bar: bool = True
    trunk: TrunkConfig = field(default_factory=TrunkConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    hyperparams: dict[str, Any] = field(default_factory=dict)


def load_train_config(env_id: str, algo: str, path: str | Path | None = None,
                      overrides: Mapping[str, Any] | None = None) -> tuple[TrainConfig, Any]:
    """Resolve ``configs/<algo>.yaml`` for ``env_id``: default ← patterns ← id ← overrides.

    Returns:
        ``(config, hyperparams)``; ``hyperparams`` is the algorithm's typed object
        (:class:`~policyshare.algos.PPOParams` …).

    Raises:
        ConfigError: missing/malformed file, unknown key, wrong type, out-of-range value.
    """
    p = Path(path) if path is not None else default_config(algo)
    raw, where = read_settings(p, env_id=env_id, overrides=overrides)
    _check_no_top_level_hyperparams(raw, algo, where)
    cfg = from_dict(TrainConfig, raw, where)
    params = algo_params(algo, cfg.hyperparams, f"{where}.hyperparams")
    if algo == "ppo" and params.batch_size > params.n_steps * cfg.n_envs:
        from policyshare.errors import ConfigError

        raise ConfigError(f"{where}: hyperparams.batch_size ({params.batch_size}) exceeds the "
                          f"rollout size n_steps*n_envs ({params.n_steps * cfg.n_envs})")
    return cfg, params


def _check_no_top_level_hyperparams(raw: Any, algo: str, where: str) -> None:
    """Raise ConfigError for a hyper-parameter of ``algo`` given beside ``hyperparams``, not in it
    (``from_dict`` alone would only call it an unknown key)."""
    from policyshare.algos import PARAMS
    from policyshare.errors import ConfigError

    if not isinstance(raw, Mapping) or algo not in PARAMS:
        return
    names = {f.name for f in fields(PARAMS[algo])} - {f.name for f in fields(TrainConfig)}
    for key in raw:
        if key in names:
            raise ConfigError(f"{where}: {key!r} is a hyper-parameter of {algo.upper()}: put it under "
                              f"hyperparams (--set hyperparams.{key}=…)")


def _resolved(cfg: TrainConfig, params: Any, env_id: str, algo: str, seed: int) -> dict[str, Any]:
    d = to_dict(cfg)
    d["hyperparams"] = to_dict(params)
    return {"env_id": env_id, "algo": algo, "seed": seed, **d}


@dataclass
class TrainResult:
    """What :func:`train` produced."""

    run_dir: Path
    model_path: Path
    trunk_path: Path
    metrics: dict[str, Any]
    model: Any = None


def rollout_size(algo: str, n_envs: int, params: Any) -> int:
    """Env steps SB3 collects between two updates: the granularity of a run's step count.

    PPO/A2C collect ``n_steps * n_envs`` env steps per rollout; DQN ``train_freq * n_envs``
    (``train_freq`` counted in steps). SB3 stops at the first whole rollout at or after the
    requested ``timesteps``, so a run trains ``ceil(timesteps / size) * size`` env steps.
    """
    if algo in ("ppo", "a2c"):
        return int(params.n_steps) * n_envs
    freq = getattr(params, "train_freq", 1)
    return (int(freq) if isinstance(freq, int) else 1) * n_envs


def trained_timesteps(requested: int, size: int) -> int:
    """``requested`` rounded up to whole rollouts of ``size`` env steps (see :func:`rollout_size`)."""
    return -(-requested // size) * size


def _check_trains_something(algo: str, timesteps: int, n_envs: int, params: Any) -> None:
    """Refuse a budget that ends before the first gradient update (DQN: SB3 updates only once more
    than ``learning_starts`` env steps are collected), before anything is written.

    Raises:
        UserError: the run would train nothing, naming both fixes.
    """
    starts = getattr(params, "learning_starts", None)
    if starts is None:
        return
    target = trained_timesteps(timesteps, rollout_size(algo, n_envs, params))
    if target <= starts:
        raise UserError(f"--timesteps {timesteps} trains nothing: {algo.upper()} makes its first gradient update "
                        f"after learning_starts {starts} env steps; set --timesteps above {starts} or lower "
                        "learning_starts (--set hyperparams.learning_starts=N)")


def resume_point(run: RunFolder) -> tuple[Path | None, dict[str, Any]]:
    """The file a resumed run continues from, and its verified header.

    The newest of the run's ``ckpt_<step>.zip`` and its final ``model.zip`` (written before the
    final evaluation) whose checksum verifies. A file that fails verification is skipped with a
    warning (a note on stderr), so a damaged newest checkpoint costs the steps since the one before.

    Returns:
        ``(path, header)``, or ``(None, {})`` when there is none (the run restarts from step 0).
    """
    candidates: list[tuple[int, Path]] = [(checkpoint_step(c), c)
                                          for c in run.checkpoints_dir.glob("ckpt_*.zip")]
    final = run.path / "model.zip"
    if final.is_file():
        try:
            candidates.append((int(read_sb3_header(final).get("timesteps", -1)), final))
        except CheckpointError as e:
            log.warning(f"note: not resuming from {final}: {e}")
    for _, path in sorted(candidates, key=lambda c: c[0], reverse=True):
        try:
            return path, read_sb3_header(path)
        except CheckpointError as e:
            log.warning(f"note: skipping {path}: {e}")
    return None, {}


# Operational settings that may differ between a run and its resume: they do not change results.
_RESUME_FREE = ("progress_bar", "device", "torch_threads", "vec_env")


def check_same_config(run: RunFolder, resolved: Mapping[str, Any]) -> None:
    """Refuse to resume a run with another config than it started with
    (:func:`policyshare.config.check_same_settings`; device, threads, env vectorisation and the
    progress bar may change).

    A resumed SB3 model keeps the hyper-parameters and schedules of its checkpoint, and the
    step budget fixes the schedules' positions, so a changed setting would not act or would
    silently make another experiment.

    Raises:
        UserError: naming the settings that differ.
        CheckpointError: the run's ``config.yaml`` is corrupt.
    """
    check_same_settings(run.path, run.config_path, resolved, ignore=_RESUME_FREE)


#: errno values of a write that failed for lack of space, quota, size limit or permission.
_WRITE_ERRORS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}


def train(env_id: str, algo: str = "ppo", *, config: str | Path | None = None,
          timesteps: int | None = None, seed: int = 0, run_dir: str | Path | None = None,
          overrides: Mapping[str, Any] | None = None, resume: bool = False,
          init_trunk: str | Path | None = None, freeze_trunk: bool = False,
          run_name: str | None = None,
          model_factory: Callable[[Any, TrainConfig, Any, Suite, int], Any] | None = None,
          extra_callbacks: Sequence[Any] = (),
          extra_config: Mapping[str, Any] | None = None,
          on_evaluation: Callable[[int, EvalResult], None] | None = None) -> TrainResult:
    """Train one policy on one env and write a complete run folder.

    Three steps: :func:`_prepare` (the config, the run folder, the env and the model — new, or
    loaded from the resume point), :func:`~policyshare.learning.learn` (``model.learn`` with periodic evaluation,
    checkpoints, the finite-value guard and SIGINT/SIGTERM handling) and :func:`_finish` (the
    final model and trunk, the final and random-policy evaluations, ``metrics.json``). Progress
    and the summary are logged (``policyshare.train``, ``INFO``); SB3's progress bar is drawn when
    those records are shown (:func:`~policyshare.console.shows_progress`) and the config's
    ``progress_bar`` is on.

    Args:
        env_id: Gymnasium id of a suite (``MinAtar/Breakout-v1``, ``ALE/Pong-v5`` …).
        algo: ``ppo``, ``a2c`` or ``dqn``.
        config: YAML keyed by env id (default ``configs/<algo>.yaml``).
        timesteps: env steps (overrides the config).
        seed: seed of the model and training envs (evaluation uses ``seed + 10000``).
        run_dir: run folder (default ``runs/train/<env>__<algo>__s<seed>``).
        overrides: nested config overrides (from ``--set``).
        resume: continue the unfinished run in ``run_dir`` from its newest checkpoint that
            verifies (:func:`resume_point`), with the same settings (:func:`check_same_config`):
            what was logged or evaluated after that checkpoint is cut (:mod:`policyshare.logs`),
            and the run ends on the step an uninterrupted one ends on (:func:`trained_timesteps`).
        init_trunk: a trunk file whose weights initialise the trunk (fresh heads).
        freeze_trunk: keep the initialised trunk fixed (excluded from the optimizer).
        run_name: label recorded in ``metrics.json`` (method name for comparisons).
        model_factory: builds the SB3 model of a new run instead of
            :func:`~policyshare.algos.build_model`, called as ``(env, config, hyperparams,
            suite, seed)`` (e.g. a progressive column); a resumed run loads its checkpoint.
        extra_callbacks: SB3 callbacks added to the run's own (e.g. logging of extra tags).
        extra_config: entries added to the recorded ``config.yaml`` (describe what
            ``model_factory`` builds).
        on_evaluation: called with ``(env step, result)`` after every periodic evaluation
            (``eval/mean_reward``, ``eval.episodes`` episodes), including the one at the final
            step; not for the final ``metrics.json`` evaluation (``policyshare tune`` reports
            these to Ray Tune).

    Returns:
        A :class:`TrainResult`.

    Raises:
        UserError: unknown env or algorithm, bad config, a run folder that would be
            overwritten or is in use, a resume with other settings, a trunk file that does not
            fit, SIGINT/SIGTERM during training (after saving a checkpoint).
        NumericalError: a NaN or infinite loss, parameter or network output (names the step,
            the loss and the last good checkpoint).
        CheckpointError: a corrupt checkpoint or replay memory, a failed write (the previous
            checkpoint is kept).
    """
    cfg, params, suite, resolved = _configure(env_id, algo, config, timesteps, overrides, seed, init_trunk,
                                              freeze_trunk, extra_config)
    new_model = partial(_new_model, algo, cfg=cfg, params=params, suite=suite, seed=seed, init_trunk=init_trunk,
                        freeze_trunk=freeze_trunk, model_factory=model_factory)
    env, run, fresh = _open_run(Path(run_dir or default_run_dir("train", env_id, seed, algo)), resolved, cfg,
                                env_id, seed, resume, new_model)
    restore_excepthook = silence_writer_thread_errors()
    try:
        s = _prepare(_Session(env_id, algo, seed, cfg, params, run, env, fresh, resolved, freeze_trunk),
                     resume, new_model)
        evaluator, train_wall, trained_steps = learn(
            s.model, run, env_id=env_id, algo=algo, seed=seed, header=s.header, target=s.target,
            from_checkpoint=s.ckpt is not None, eval_freq=cfg.eval.freq, eval_episodes=cfg.eval.episodes,
            checkpoint_freq=cfg.checkpoint_freq, progress_bar=cfg.progress_bar and shows_progress(log),
            extra_callbacks=extra_callbacks, on_evaluation=on_evaluation)
        return _finish(s, evaluator, train_wall, trained_steps, run_name, init_trunk)
    except OSError as e:
        # Checkpoints and metrics report failed writes themselves (CheckpointError); this catches
        # the logs (TensorBoard events, progress.csv) written through SB3.
        if e.errno not in _WRITE_ERRORS:
            raise
        raise CheckpointError(f"could not write {e.filename or f'the logs in {run.tb_dir}'}: "
                              f"{e.strerror or e}; free space or fix permissions, then continue with "
                              "--resume (checkpoints are kept)") from e
    finally:
        restore_excepthook()
        run.release()  # another process may resume the folder now


@dataclass
class _Session:
    """One run of :func:`train` between its steps: settings, open run folder, env and model.

    ``model`` is the fresh model of a new run until :func:`_prepare` settles it (or loads the
    resume point, ``ckpt``); ``header`` is what every SB3 zip of the run records.
    """

    env_id: str
    algo: str
    seed: int
    cfg: TrainConfig
    params: Any
    run: RunFolder
    env: Any
    model: Any
    resolved: dict[str, Any]
    freeze_trunk: bool
    header: dict[str, Any] = field(default_factory=dict)
    target: int = 0
    ckpt: Path | None = None


def _configure(env_id: str, algo: str, config: str | Path | None, timesteps: int | None,
               overrides: Mapping[str, Any] | None, seed: int, init_trunk: str | Path | None,
               freeze_trunk: bool, extra_config: Mapping[str, Any] | None
               ) -> tuple[TrainConfig, Any, Suite, dict[str, Any]]:
    """The run's settings, checked before anything is built: ``(config, hyperparams, suite, resolved)``,
    ``resolved`` being what ``config.yaml`` records.

    Raises:
        UserError: unknown algorithm or env, bad config, ``timesteps <= 0``, a vec-env the env has
            none of, ``freeze_trunk`` without ``init_trunk``.
    """
    if algo not in ALGOS:
        raise UserError(f"unknown algorithm {algo!r}; choose one of {', '.join(ALGOS)}")
    suite: Suite = check_env_id(env_id)
    cfg, params = load_train_config(env_id, algo, config, overrides)
    if timesteps is not None:
        if timesteps <= 0:
            raise UserError(f"--timesteps must be > 0, got {timesteps}")
        cfg = with_changes(cfg, "train settings", timesteps=timesteps)
    check_vec_env(env_id, cfg.vec_env)
    _check_trains_something(algo, cfg.timesteps, cfg.n_envs, params)
    if freeze_trunk and init_trunk is None:
        raise UserError("--freeze-trunk needs a trunk to freeze: pass --init-trunk FILE")
    resolved = _resolved(cfg, params, env_id, algo, seed)
    if init_trunk is not None:
        resolved["init_trunk"] = str(init_trunk)
        resolved["freeze_trunk"] = freeze_trunk
    resolved.update(extra_config or {})
    return cfg, params, suite, resolved


def _open_run(folder: Path, resolved: dict[str, Any], cfg: TrainConfig, env_id: str, seed: int, resume: bool,
              new_model: Callable[[Any], Any]) -> tuple[Any, RunFolder, Any]:
    """The training envs, the open (locked) run folder and, for a new run, its model: ``(env, run, model)``.

    A new run's network is built, and its trunk file loaded, before its folder opens: what does
    not fit is refused without writing anything (a resumed run loads its checkpoint later).

    Raises:
        UserError: a resume with other settings (:func:`check_same_config`), a folder that would
            be overwritten or is in use, a network or trunk file that does not fit.
    """
    if resume:
        check_same_config(RunFolder(folder), resolved)
    torch.set_num_threads(cfg.torch_threads)
    env = make_vec_env(env_id, cfg.n_envs, seed, cfg.vec_env)
    try:
        fresh = None if resume else new_model(env)
        run = RunFolder.open(folder, command="train", config=resolved, seed=seed, resume=resume)
    except BaseException:
        env.close()
        raise
    return env, run, fresh


def _prepare(s: _Session, resume: bool, new_model: Callable[[Any], Any]) -> _Session:
    """Settle the model: the resume point's (:func:`resume_point`) or the new one; cut what a killed
    run logged after that point; open the TensorBoard logger. Returns ``s``, completed."""
    cfg, run = s.cfg, s.run
    s.header = {"format": "policyshare.sb3", "algo": s.algo, "env_id": s.env_id, "seed": s.seed,
                "run": str(run.path), "trunk": s.resolved["trunk"], "policy": s.resolved["policy"]}
    size = rollout_size(s.algo, cfg.n_envs, s.params)
    s.target = trained_timesteps(cfg.timesteps, size)
    if s.target != cfg.timesteps and not resume:
        log.info(f"note: {s.algo.upper()} collects {size} env steps per rollout, so this run trains "
                 f"{s.target} env steps ({cfg.timesteps} rounded up)")
    s.ckpt, ckpt_header = resume_point(run) if resume else (None, {})
    if s.ckpt is not None:
        s.model, _ = load_sb3(s.ckpt, env=s.env, device=cfg.device)
        if s.freeze_trunk:
            _freeze_trunk(s.model)
        if s.algo == "dqn" and s.ckpt.parent == run.checkpoints_dir:
            load_replay(s.model, s.ckpt, ckpt_header)
        # Fresh, reproducible random streams from the resume point (envs restart their episodes).
        s.model.set_random_seed(s.seed + s.model.num_timesteps)
    elif s.model is None:
        s.model = new_model(s.env)
    # Another extractor than the trunk (a progressive column): its layout, for `--safe` loads.
    s.header.update(extractor_header(s.model.policy))
    resume_step = int(s.model.num_timesteps) if resume else None
    if resume_step is not None:
        # Cut what a killed run logged or evaluated after the state it continues from.
        for d in (run.path, run.checkpoints_dir, run.tb_dir):
            remove_stale_temporaries(d)
        trim_curve(run.path / "evaluations.json", resume_step)
        log.info(f"resuming {run.path} at env step {resume_step}"
                 + (f" from {s.ckpt}" if s.ckpt is not None else " (no checkpoint yet: from the start)"))
    s.model.set_logger(open_logger(run.tb_dir, resume_step))
    restore_pending(s.model.logger, ckpt_header.get("pending_log"))
    return s


def _finish(s: _Session, evaluator: Any, train_wall: float, trained_steps: int, run_name: str | None,
            init_trunk: str | Path | None) -> TrainResult:
    """Save the final model and trunk, close the envs, evaluate the final model (and the periodic
    curve's last point, if missing) and the random policy, write ``timing.json`` and
    ``metrics.json`` (which marks the run finished), and log the summary."""
    model, run, cfg, env_id, algo, seed = s.model, s.run, s.cfg, s.env_id, s.algo, s.seed
    model_path = save_sb3(model, run.path / "model.zip", {**s.header, "timesteps": model.num_timesteps})
    extractor: Any = features_extractors(model)[0]  # a TrunkExtractor (or a progressive one)
    trunk_path = save_trunk(extractor.trunk, run.path / "trunk.safetensors",
                            alignment=extractor.alignment.describe(),
                            observation_shape=tuple(s.env.observation_space.shape),
                            source={"run": str(run.path), "env_id": env_id, "algo": algo,
                                    "seed": seed, "timesteps": model.num_timesteps})
    s.env.close()
    if evaluator is not None and (not evaluator.curve["timesteps"]
                                  or evaluator.curve["timesteps"][-1] < model.num_timesteps):
        if getattr(evaluator, "model", None) is None:  # learn() did not run (resumed from the final model)
            evaluator.init_callback(model)
        evaluator.run_evaluation()
    final = evaluate(model, env_id, cfg.eval.final_episodes, seed + EVAL_SEED_OFFSET)
    rand = random_return(env_id, cfg.eval.random_episodes, seed + EVAL_SEED_OFFSET)
    metrics = {
        "env_id": env_id, "algo": algo, "seed": seed, "run_name": run_name or algo,
        "timesteps": int(model.num_timesteps),
        "timesteps_requested": cfg.timesteps,
        "eval_episodes": cfg.eval.final_episodes,
        "eval_mean_return": final.mean, "eval_std_return": final.std,
        "eval_returns": final.returns,
        "random_mean_return": rand.mean, "random_std_return": rand.std,
        "n_parameters": sum(p.numel() for p in model.policy.parameters()),
        "trunk_parameters": extractor.trunk.n_parameters(),
        "init_trunk": str(init_trunk) if init_trunk else None,
        "freeze_trunk": s.freeze_trunk,
    }
    # Wall-clock figures live apart from metrics.json, which is identical across reruns (CPU).
    atomic_write_json(run.path / "timing.json", {
        "train_wall_s": round(train_wall, 3), "env_steps_trained": trained_steps,
        "train_steps_per_s": round(trained_steps / train_wall, 1) if train_wall > 0 else None})
    run.write_metrics(metrics)
    log.info(f"{env_id} {algo} seed {seed}: eval return {final.mean:.2f} ± {final.std:.2f} over "
             f"{cfg.eval.final_episodes} episodes (random policy {rand.mean:.2f})")
    log.info(f"run folder:   {run.path}")
    log.info(f"checkpoint:   {model_path}  (stable_baselines3.{algo.upper()}.load works)")
    log.info(f"trunk:        {trunk_path}  (policyshare.load_trunk)")
    log.info(f"TensorBoard:  tensorboard --logdir {shlex.quote(str(run.tb_dir))}")
    return TrainResult(run.path, model_path, trunk_path, metrics, model)


def _new_model(algo: str, env: Any, cfg: TrainConfig, params: Any, suite: Suite, seed: int,
               init_trunk: str | Path | None, freeze_trunk: bool,
               model_factory: Callable[[Any, TrainConfig, Any, Suite, int], Any] | None) -> Any:
    """The SB3 model of a new run: built, its trunk loaded from ``init_trunk`` and frozen as asked.

    Raises:
        UserError: a network that cannot be built for the env (e.g. a trunk spec too big for its
            input) or a trunk file that does not fit it (:func:`~policyshare.algos.load_trunk_into`).
    """
    model = (build_model(algo, env, params, cfg.policy, cfg.trunk, suite, seed, cfg.device)
             if model_factory is None else model_factory(env, cfg, params, suite, seed))
    if init_trunk is not None:
        # After construction: SB3's ortho_init re-initialises extractors when it builds them.
        load_trunk_into(model, init_trunk)
    if freeze_trunk:
        _freeze_trunk(model)
    return model


def _freeze_trunk(model: Any) -> None:
    """Keep the trunk fixed: its parameters get no gradients, so the optimizer never steps them.

    Applies to every features extractor of the model (:func:`~policyshare.algos.features_extractors`:
    PPO/A2C's, DQN's online and target Q-networks'). The optimizer is not rebuilt (PyTorch
    optimizers skip parameters whose ``grad`` is ``None``), so checkpoints of a frozen run load
    and resume with plain SB3.
    """
    for ex in features_extractors(model):
        trunk: Any = ex.trunk
        for p in trunk.parameters():
            p.requires_grad_(False)


def parse_seeds(items: Sequence[str]) -> list[int]:
    """Seeds from ``["0", "1", "5-7"]`` → ``[0, 1, 5, 6, 7]``.

    Raises:
        UserError: a value that is not an integer or a range ``a-b`` with ``a <= b``, or a seed
            given twice (``0 0``, ``0-2 1``).
    """
    seeds: list[int] = []
    for item in items:
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            lo_text, _, hi_text = part.partition("-")
            try:
                lo, hi = int(lo_text), int(hi_text or lo_text)
            except ValueError:
                raise UserError(f"bad seed {part!r}: use integers >= 0 or ranges like 0-4") from None
            if lo > hi:
                raise UserError(f"bad seed range {part!r}: the start exceeds the end, so it holds no seed; "
                                f"write {hi}-{lo}")
            seeds.extend(range(lo, hi + 1))
    if not seeds:
        raise UserError("no seeds given: use integers >= 0 or ranges like 0-4")
    return check_seeds(seeds, "--seeds")
