"""The console: where the library's log records go when it runs as the ``policyshare`` command.

The library prints nothing itself. Each module logs through :mod:`logging`
(``log = logging.getLogger(__name__)``, all under the ``policyshare`` logger), and
:func:`console_logging`, entered once by :func:`policyshare.cli.main`, attaches the console for
the command's duration at the level ``-q``/``-v`` chose:

* ``INFO`` records — what a command is doing, and its summary — go to stdout, as the command's
  output; to stderr for a command whose stdout is data (``tune``'s YAML, ``--json``);
* ``WARNING`` and above — notes such as a checkpoint skipped on resume — go to stderr;
* ``-q`` (``WARNING``) keeps only those, and hides SB3's progress bar; ``-v`` (``DEBUG``) adds
  the progress of the runs a command starts inside itself (:func:`inner_run`).

On a terminal the records are drawn by rich's :class:`~rich.logging.RichHandler` (the console
SB3's progress bar uses too); into a pipe or a file each record is its message alone, one line,
so what scripts and tests read is exactly the text. Used as a library, policyshare leaves
:mod:`logging` to the application: nothing is shown below ``WARNING`` unless it is configured.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TextIO

#: The logger every module of the package logs under.
ROOT_LOGGER = "policyshare"

#: How many :func:`inner_run` blocks the current thread is inside.
_INNER: ContextVar[int] = ContextVar("policyshare_inner_run", default=0)


@contextmanager
def inner_run() -> Iterator[None]:
    """A run started inside another command (a transfer's seeds, an experiment's jobs, a tune trial).

    Its ``INFO`` records and progress bar are shown with ``-v`` only, so the console follows the
    outer command; its warnings are shown as ever.
    """
    token = _INNER.set(_INNER.get() + 1)
    try:
        yield
    finally:
        _INNER.reset(token)


def _shown(record: logging.LogRecord) -> bool:
    """Whether the console shows ``record``: not an ``INFO`` of an inner run unless ``-v``."""
    return (record.levelno >= logging.WARNING or not _INNER.get()
            or logging.getLogger(ROOT_LOGGER).isEnabledFor(logging.DEBUG))


def shows_progress(log: logging.Logger) -> bool:
    """Whether a run logging to ``log`` should draw a progress bar: its ``INFO`` records are shown
    (not ``-q``, not an :func:`inner_run` without ``-v``, and logging configured to show them)."""
    return log.isEnabledFor(logging.INFO) and (not _INNER.get() or log.isEnabledFor(logging.DEBUG))


class _StdHandler(logging.Handler):
    """Writes each record's message, one line, to ``sys.<name>`` as it is at that moment (so a
    redirected or captured stream is followed)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name_of_stream = name

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream: TextIO = getattr(sys, self.name_of_stream)
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def _handler(stream_name: str) -> logging.Handler:
    """A rich handler on a terminal, else the plain one-line handler."""
    stream = getattr(sys, stream_name)
    if getattr(stream, "isatty", lambda: False)():
        from rich.console import Console
        from rich.logging import RichHandler

        return RichHandler(console=Console(file=stream), show_time=False, show_path=False,
                           show_level=stream_name == "stderr", markup=False, rich_tracebacks=False)
    return _StdHandler(stream_name)


@contextmanager
def console_logging(level: int = logging.INFO, info_to_stderr: bool = False) -> Iterator[None]:
    """Show the package's log records on the console at ``level`` while the block runs.

    Args:
        level: ``logging.INFO`` (default), ``logging.WARNING`` (``-q``) or ``logging.DEBUG`` (``-v``).
        info_to_stderr: send ``INFO`` and ``DEBUG`` records to stderr too (a command whose stdout
            is data).

    The ``policyshare`` logger's level, handlers and propagation are restored afterwards.
    """
    logger = logging.getLogger(ROOT_LOGGER)
    info = _handler("stderr" if info_to_stderr else "stdout")
    info.addFilter(lambda r: r.levelno < logging.WARNING and _shown(r))
    warn = _handler("stderr")
    warn.addFilter(lambda r: r.levelno >= logging.WARNING)
    saved = (logger.level, logger.propagate)
    logger.setLevel(level)
    logger.propagate = False
    logger.addHandler(info)
    logger.addHandler(warn)
    try:
        yield
    finally:
        logger.removeHandler(info)
        logger.removeHandler(warn)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


__all__ = ["ROOT_LOGGER", "console_logging", "inner_run", "shows_progress"]
