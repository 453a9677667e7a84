"""The seeds of ``vision compare --seeds`` on several CPU cores: one worker process per seed at a time.

Every seed of the thesis (:func:`~policyshare.vision.thesis.run_seed`: its diffusion prior, its
trunks, guidance sweeps, few-label probes and battles) is independent of the others and seeded
by its own number only, so seeds can run side by side. :class:`SeedPool` runs them in ``jobs``
worker processes (:class:`concurrent.futures.ProcessPoolExecutor`, ``spawn`` start method, so
no worker inherits the parent's torch threads or open files), each with ``threads`` torch CPU
threads — the same count a serial run uses, so a seed gives the same result in a worker as in
the parent. With ``jobs = 1`` (or one seed) the seeds run in this process, one after another,
as they are asked for.

The workers' log records (each line names its seed) travel through a queue to the parent,
which hands them to its own loggers whole, one record at a time.

Diffusion priors are cached per seed (:func:`~policyshare.vision.diffusion.load_or_train_prior`):
a file lock per cache entry makes a second process that needs the same prior wait for the first
one's atomic write and load it, instead of training it again.
"""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing
import queue as queue_module
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

from policyshare.vision.config import VisionConfig
from policyshare.vision.data import Splits
from policyshare.vision.scales import Judges
from policyshare.vision.thesis import SeedRun, run_seed

_worker_queue: Any = None


def _init_worker(messages: Any, threads: int) -> None:
    """Runs once in each worker: its log records go to the parent, and the torch thread count."""
    global _worker_queue
    _worker_queue = messages
    root = logging.getLogger("policyshare")
    root.handlers[:] = [logging.handlers.QueueHandler(messages)]
    root.setLevel(logging.DEBUG)
    root.propagate = False
    torch.set_num_threads(threads)


def _run_in_worker(refs: Sequence[str], labels: Sequence[str], cfg: VisionConfig, seed: int, splits: Splits,
                   judges: Judges, run_dir: Path | None, keep_models: bool) -> SeedRun:
    """One seed in a worker; only the first seed sends its trunks and samples back (the parent uses those)."""
    run = run_seed(refs, labels, cfg, seed, splits, judges, None, run_dir)
    if not keep_models:
        run.trunks.clear()
        run.best_samples.clear()
        run.unguided = None
    return run


class SeedPool:
    """The thesis's seeds, run in ``jobs`` worker processes (or here, one after another, with ``jobs = 1``).

    Use as a context manager; :meth:`result` waits for one seed, :meth:`results` for all.
    Leaving the block because of an error cancels the seeds not started and ends the workers.

    Args:
        refs: trunk references.
        labels: their unique labels.
        cfg: the config (``threads``: torch threads per worker).
        seeds: the seeds, in report order.
        splits: the data.
        judges: :func:`~policyshare.vision.thesis.make_judges` (sent to each worker).
        run_dir: the run folder the user chose, where priors are cached (see
            :func:`~policyshare.vision.diffusion.cache_dir`).
        jobs: worker processes; at most one per seed.

    Raises:
        ValueError: ``jobs < 1``.
    """

    def __init__(self, refs: Sequence[str], labels: Sequence[str], cfg: VisionConfig, seeds: Sequence[int],
                 splits: Splits, judges: Judges, run_dir: Path | None = None,
                 jobs: int = 1) -> None:
        if jobs < 1:
            raise ValueError(f"jobs must be at least 1, got {jobs}")
        self.refs, self.labels, self.cfg, self.seeds = list(refs), list(labels), cfg, list(seeds)
        self.splits, self.judges, self.run_dir = splits, judges, run_dir
        self.jobs = min(jobs, len(self.seeds))
        self._done: dict[int, SeedRun] = {}
        self._pool: ProcessPoolExecutor | None = None
        self._futures: list[Future[SeedRun]] = []
        self._messages: Any = None
        self._stop = threading.Event()
        self._relay: threading.Thread | None = None

    def __enter__(self) -> SeedPool:
        if self.jobs > 1:
            ctx = multiprocessing.get_context("spawn")
            self._messages = ctx.Queue()
            self._relay = threading.Thread(target=self._relay_progress, daemon=True)
            self._relay.start()
            self._pool = ProcessPoolExecutor(self.jobs, mp_context=ctx, initializer=_init_worker,
                                             initargs=(self._messages, self.cfg.threads))
            self._futures = [self._pool.submit(_run_in_worker, self.refs, self.labels, self.cfg, s, self.splits,
                                               self.judges, self.run_dir, i == 0) for i, s in enumerate(self.seeds)]
        return self

    @staticmethod
    def _handle(record: logging.LogRecord) -> None:
        """A worker's log record, handed to the parent's logger of the same name."""
        logging.getLogger(record.name).handle(record)

    def _relay_progress(self) -> None:
        while not self._stop.is_set():
            try:
                message = self._messages.get(timeout=0.2)
            except queue_module.Empty:
                continue
            self._handle(message)

    def result(self, index: int) -> SeedRun:
        """The ``index``-th seed's run (waits for it; serially, runs the seeds up to it).

        Raises:
            UserError: what the seed's run raised (bad layer, diverging training …), re-raised here.
        """
        if index not in self._done:
            if self._pool is None:
                for i in range(len(self._done), index + 1):
                    self._done[i] = run_seed(self.refs, self.labels, self.cfg, self.seeds[i], self.splits,
                                             self.judges, None, self.run_dir)
            else:
                self._done[index] = self._futures[index].result()
        return self._done[index]

    def results(self) -> list[SeedRun]:
        """Every seed's run, in seed order."""
        return [self.result(i) for i in range(len(self.seeds))]

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._pool is not None:
            if exc_type is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                # A failed run need not wait minutes for the other seeds: end the workers.
                for process in list(getattr(self._pool, "_processes", {}).values()):
                    process.terminate()
            self._pool.shutdown(wait=True)
        self._stop.set()
        if self._relay is not None:
            self._relay.join()
            while True:  # lines that arrived after the last poll
                try:
                    self._handle(self._messages.get_nowait())
                except queue_module.Empty:
                    break
            self._messages.close()
