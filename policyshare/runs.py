"""Run folders: one folder per run, reproducible and never silently overwritten.

Layout (see ``runs/README.md``)::

    <run>/config.yaml        the resolved config
    <run>/meta.json          command line(s), versions, git commit, seed, start times
    <run>/tb/                TensorBoard event files
    <run>/checkpoints/       periodic checkpoints (SB3 zips with a policyshare.json header)
    <run>/model.zip          final model (plain ``PPO.load`` works)
    <run>/best_model.zip     best model under periodic evaluation
    <run>/trunk.safetensors  the trunk, loadable with ``policyshare.load_trunk``
    <run>/evaluations.json   periodic evaluation curve (env steps, mean, std)
    <run>/metrics.json       final figures; its presence marks the run finished
    <run>/.lock              held (flock) by the process writing the run
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from policyshare.errors import UserError
from policyshare.io import atomic_write_json, atomic_write_text, read_json, slug, versions
from policyshare.paths import SOURCE_DIR, runs_dir


def default_run_dir(command: str, name: str, seed: int | None = None,
                    method: str | None = None) -> Path:
    """``runs/<command>/<name>[__<method>][__s<seed>]``, the default of every writing command."""
    parts = [slug(name)]
    if method:
        parts.append(slug(method))
    if seed is not None:
        parts.append(f"s{seed}")
    return runs_dir() / command / "__".join(parts)


def git_commit() -> dict[str, Any]:
    """The source tree's commit and whether it had uncommitted changes.

    Empty when the package is not run from a source checkout (a wheel install: the version in
    ``meta.json`` names the code then) or the checkout is not a git repository.
    """
    if SOURCE_DIR is None:
        return {}
    try:
        commit = subprocess.run(["git", "-C", str(SOURCE_DIR), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(SOURCE_DIR), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip() != ""
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {}


def command_line() -> str:
    """The current command line, as a user would type it."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(("policyshare", "__main__.py", "cli.py")):
        argv[0] = "policyshare"
    return " ".join(shlex.quote(a) for a in argv)


#: Run folders this process holds, by resolved path: the open, flock-ed ``.lock`` file.
_LOCKS: dict[Path, int] = {}
LOCK_NAME = ".lock"


def _lock(folder: Path) -> None:
    """Hold an exclusive ``flock`` on ``folder/.lock`` until this process ends.

    Two processes writing one run folder (a job resubmitted while the first still runs) would
    interleave checkpoints and logs; the second is refused. The lock is the kernel's, so a
    killed process leaves none behind; one process may reopen a folder it holds; it lasts until
    the process ends or :meth:`RunFolder.release`. File systems without ``flock`` support are
    not locked.

    Raises:
        UserError: another process holds the folder.
    """
    import fcntl
    import os

    key = folder.resolve()
    if key in _LOCKS:
        return
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UserError(f"run folder {folder} is in use by another running process; wait for it to "
                        "end (or stop it), then continue with --resume") from None
    except OSError:  # no flock on this file system: carry on unlocked
        os.close(fd)
        return
    _LOCKS[key] = fd


def move_aside(path: Path, root: Path) -> Path:
    """Move ``path`` to ``root/.replaced/<YYYYmmdd-HHMMSS>-<name>``; nothing is ever deleted.

    The one way outputs are replaced: ``policyshare run --force STAGE`` moves a stage's outputs
    aside, and a run folder opened with ``restart`` moves an unfinished run aside. A second move
    of the same name within one second gets a ``-2``, ``-3`` … suffix.

    Returns:
        Where ``path`` now is.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dst = root / ".replaced" / f"{stamp}-{path.name}"
    k = 1
    while dst.exists():
        k += 1
        dst = root / ".replaced" / f"{stamp}-{path.name}-{k}"
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(path), str(dst))
    return dst


@dataclass
class RunFolder:
    """A run's folder and the paths inside it.

    Attributes:
        path: the folder.
        replaced: where :meth:`open` with ``restart`` moved an unfinished run found in ``path``
            (``None``: there was none).
    """

    path: Path
    replaced: Path | None = None

    @property
    def tb_dir(self) -> Path:
        return self.path / "tb"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.json"

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def meta_path(self) -> Path:
        return self.path / "meta.json"

    @property
    def finished(self) -> bool:
        """Whether the run completed (its ``metrics.json`` exists)."""
        return self.metrics_path.is_file()

    @classmethod
    def open(cls, path: str | Path, *, command: str, config: Mapping[str, Any],
             seed: int | None = None, resume: bool = False, restart: bool = False) -> RunFolder:
        """Create a run folder, or reopen one to resume; never overwrite a run.

        Args:
            path: the folder.
            command: the writing command (``train``, ``progressive`` …).
            config: the resolved config (written as ``config.yaml``).
            seed: the run's seed (recorded in ``meta.json``).
            resume: continue an unfinished run in ``path``.
            restart: for commands without checkpoints (``vision …``): move an unfinished run
                (failed or killed) found in ``path`` aside to ``<parent>/.replaced/`` with
                :func:`move_aside` and start afresh; :attr:`replaced` says where it went.

        Raises:
            UserError: the folder holds a finished run; holds an unfinished one and neither
                ``resume`` nor ``restart`` is on; ``resume`` is on and there is nothing to resume;
                or another process is writing to it (see :func:`_lock`).
        """
        run = cls(Path(path))
        exists = run.path.is_dir() and any(f.name != LOCK_NAME for f in run.path.iterdir())
        if run.finished:
            raise UserError(f"run folder {run.path} holds a finished run (metrics.json); choose "
                            "another --run-dir or delete that folder")
        if exists and not resume and restart:
            run.replaced = run._set_aside()
        elif exists and not resume:
            raise UserError(f"run folder {run.path} holds an unfinished run; add --resume to "
                            "continue it, or choose another --run-dir")
        if resume and not run.meta_path.is_file():
            raise UserError(f"nothing to resume in {run.path}; drop --resume to start a new run")
        run.path.mkdir(parents=True, exist_ok=True)
        _lock(run.path)
        meta = read_json(run.meta_path, "run metadata") if resume else {
            "command": command, "seed": seed, "invocations": []}
        meta["invocations"].append({"command_line": command_line(), "cwd": str(Path.cwd()),
                                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                    "versions": versions(), "git": git_commit()})
        if not resume:
            atomic_write_text(run.config_path, yaml.safe_dump(dict(config), sort_keys=False))
        atomic_write_json(run.meta_path, meta)
        return run

    def _set_aside(self) -> Path:
        """Move this unfinished run aside (refused while another process writes it)."""
        import os

        key = self.path.resolve()
        try:
            _lock(self.path)  # a killed process holds no lock; a running one does
        except UserError:
            raise UserError(f"run folder {self.path} is in use by another running process; wait for it to end "
                            "(or stop it), then run the command again") from None
        try:
            return move_aside(self.path, self.path.parent)
        finally:
            fd = _LOCKS.pop(key, None)
            if fd is not None:
                os.close(fd)

    def release(self) -> None:
        """Give up this process's lock on the folder (taken by :meth:`open`), if it holds one.

        Without it the lock lasts until the process ends; call it when a command run inside a
        longer-lived process (a notebook, a test) is done with the folder, so that another
        process may resume it.
        """
        import os

        fd = _LOCKS.pop(self.path.resolve(), None)
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock

    def write_metrics(self, metrics: Mapping[str, Any]) -> Path:
        """Write ``metrics.json`` atomically (marks the run finished)."""
        return atomic_write_json(self.metrics_path, dict(metrics))
