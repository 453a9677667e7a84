"""A run's training logs — TensorBoard events and ``progress.csv`` — and how a resume cuts them.

SB3 writes a new TensorBoard events file every time a logger is configured, and its CSV writer
truncates ``progress.csv``. A run killed after its last checkpoint at env step ``S`` may already
have logged steps beyond ``S``; the resumed run logs them again from the checkpoint. So that the
curves have neither a gap nor a duplicate step range, :func:`open_logger` with ``resume_step=S``

1. rewrites every existing events file without the events of steps ``> S`` (atomically, through
   tensorboard's own record reader and writer; a record torn by a kill is dropped too),
2. opens the new events file with ``purge_step=S + 1``: TensorBoard's restart marker
   (``SessionLog.START``), which also makes an already running TensorBoard drop the steps it
   had loaded beyond ``S``,
3. keeps the rows of ``progress.csv`` up to step ``S`` and appends to it (its ``step`` column
   holds the env step of every row).

The values an SB3 algorithm records but has not dumped yet (e.g. PPO's ``train/*`` losses of
the last update, written at the next rollout's dump) are saved with each checkpoint
(:func:`pending_values`) and recorded again on resume (:func:`restore_pending`), so no step
loses them.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from stable_baselines3.common.logger import CSVOutputFormat, Logger, TensorBoardOutputFormat

from policyshare.io import atomic_write_bytes, atomic_write_text

#: Name of the CSV log in a run's ``tb/`` folder.
CSV_NAME = "progress.csv"
#: Column of :data:`CSV_NAME` holding the env step of each row.
STEP_COLUMN = "step"


def events_files(folder: str | Path) -> list[Path]:
    """The TensorBoard events files directly in ``folder``, oldest first (by name)."""
    return sorted(Path(folder).glob("events.out.tfevents.*"))


def read_events(path: str | Path) -> list[tuple[int, bytes]]:
    """``(step, serialized Event)`` of every readable record of an events file.

    Reading stops at a torn or corrupt record (the tail a killed writer may leave).
    """
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto.event_pb2 import Event

    out: list[tuple[int, bytes]] = []
    with contextlib.suppress(Exception):  # tensorboard raises its own DataLossError types
        for raw in RawEventFileLoader(str(path)).Load():
            out.append((int(Event.FromString(raw).step), raw))
    return out


def trim_events(folder: str | Path, last_step: int) -> int:
    """Drop the events of steps ``> last_step`` from every events file in ``folder``.

    Files are rewritten atomically; a file left without any scalar data is kept (it holds only
    the file-version record). Returns the number of events dropped.
    """
    from tensorboard.summary.writer.record_writer import RecordWriter

    dropped = 0
    for path in events_files(folder):
        records = read_events(path)
        keep = [raw for step, raw in records if step <= last_step]
        torn = path.stat().st_size != _records_size(records)
        if len(keep) == len(records) and not torn:
            continue
        dropped += len(records) - len(keep)
        buf = io.BytesIO()
        writer = RecordWriter(buf)
        for raw in keep:
            writer.write(raw)
        atomic_write_bytes(path, buf.getvalue())
    return dropped


def _records_size(records: list[tuple[int, bytes]]) -> int:
    # TFRecord framing: 8-byte length, 4-byte length CRC, data, 4-byte data CRC.
    return sum(16 + len(raw) for _, raw in records)


def trim_csv(path: str | Path, last_step: int) -> None:
    """Keep the rows of a ``progress.csv`` whose ``step`` is ``<= last_step``.

    Rows without a step (logs written before the column existed) fall back to
    ``time/total_timesteps``; rows with neither are kept.
    """
    p = Path(path)
    if not p.is_file():
        return
    rows = list(csv.reader(io.StringIO(p.read_text())))
    if not rows:
        return
    header, body = rows[0], rows[1:]
    cols = [header.index(c) for c in (STEP_COLUMN, "time/total_timesteps") if c in header]

    def step_of(row: list[str]) -> float | None:
        for c in cols:
            if c < len(row) and row[c] != "":
                with contextlib.suppress(ValueError):
                    return float(row[c])
        return None

    kept = [r for r in body if (s := step_of(r)) is None or s <= last_step]
    if len(kept) == len(body):
        return
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(header)
    w.writerows(kept)
    atomic_write_text(p, out.getvalue())


class ResumableTensorBoard(TensorBoardOutputFormat):
    """SB3's TensorBoard writer, opened with TensorBoard's ``purge_step`` on resume.

    Args:
        folder: the events folder.
        purge_step: first step the new file rewrites (``None`` for a new run).
    """

    def __init__(self, folder: str | Path, purge_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # Not super().__init__: that would open a second, empty events file.
        self.writer = SummaryWriter(log_dir=str(folder), purge_step=purge_step)
        self._is_closed = False


class StepCSV(CSVOutputFormat):
    """SB3's CSV writer with a ``step`` column, continuing an existing file.

    SB3's writer opens its file with ``"w+"`` and so truncates it; this one keeps the rows
    already there (call :func:`trim_csv` first on resume) and extends its header as SB3's
    does when new keys appear.

    Args:
        filename: the ``progress.csv`` file.
    """

    def __init__(self, filename: str | Path) -> None:
        p = Path(filename)
        existing = p.is_file() and p.stat().st_size > 0
        self.file = open(p, "r+" if existing else "w+")  # noqa: SIM115 - closed by close()
        self.keys: list[str] = []
        self.separator = ","
        self.quotechar = '"'
        if existing:
            first = self.file.readline()
            self.keys = next(csv.reader([first]), []) if first.strip() else []
            self.file.seek(0, io.SEEK_END)

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]],
              step: int = 0) -> None:
        """Write one row (the logged values and their ``step``)."""
        values = {STEP_COLUMN: step, **key_values}
        excluded = {STEP_COLUMN: (), **key_excluded}
        super().write(values, excluded, step)


def open_logger(folder: str | Path, resume_step: int | None = None) -> Logger:
    """SB3 logger writing TensorBoard events and ``progress.csv`` into ``folder``.

    Args:
        folder: the run's ``tb/`` folder.
        resume_step: the env step of the checkpoint a resumed run continues from; what was
            logged after it is cut (see the module docstring). ``None`` for a new run.
    """
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    if resume_step is not None:
        trim_events(d, resume_step)
        trim_csv(d / CSV_NAME, resume_step)
    purge = None if resume_step is None else resume_step + 1
    return Logger(str(d), [ResumableTensorBoard(d, purge), StepCSV(d / CSV_NAME)])


def silence_writer_thread_errors() -> Callable[[], None]:
    """Keep tensorboard's writer thread from printing a traceback when a write fails.

    The thread keeps the error and tensorboard raises it again in the main thread at the next
    flush (SB3 flushes after every dump), where the training command reports it in one line.

    Returns:
        A function that puts the previous ``threading.excepthook`` back.
    """
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if not (type(args.thread).__name__ == "_AsyncWriterThread" and args.exc_type is not None
                and issubclass(args.exc_type, OSError)):
            previous(args)

    threading.excepthook = hook

    def restore() -> None:
        threading.excepthook = previous

    return restore


def pending_values(logger: Logger) -> dict[str, Any]:
    """The numbers recorded on ``logger`` but not dumped yet, as plain JSON data."""
    values: dict[str, float | str] = {}
    for key, value in logger.name_to_value.items():
        try:
            f = float(value)
        except (TypeError, ValueError):
            continue  # images, videos, figures: not kept across a resume
        values[key] = f if math.isfinite(f) else repr(f)
    return {"values": values,
            "excluded": {k: list(v) if v is not None else None
                         for k, v in logger.name_to_excluded.items() if k in values},
            "counts": {k: int(v) for k, v in logger.name_to_count.items() if k in values}}


def restore_pending(logger: Logger, pending: Mapping[str, Any] | None) -> None:
    """Record again on ``logger`` the values :func:`pending_values` saved."""
    if not pending:
        return
    excluded = pending.get("excluded", {})
    for key, value in pending.get("values", {}).items():
        ex = excluded.get(key)
        logger.record(key, float(value), exclude=tuple(ex) if ex is not None else None)
    for key, count in pending.get("counts", {}).items():
        logger.name_to_count[key] = count
