"""Files: atomic writes, strict JSON, and the provenance every written file carries.

The one place that knows how policyshare writes a file (checkpoints, logs, run folders, curves,
reports, the zoo all call it):

* :func:`atomic_write_bytes` / :func:`atomic_write_text` / :func:`atomic_write_json` write to a
  temporary file in the same folder (``.<name>.<pid>.tmp``), flush it to disk and rename it over
  the target, so a crash or a full disk leaves the previous file intact;
  :func:`remove_stale_temporaries` deletes what a killed process left behind.
* :func:`json_ready` / :func:`atomic_write_json` write strictly valid JSON: a NaN or infinity
  becomes ``null`` with a ``"<key>_why"`` reason beside it; :func:`read_json` reads it back.
* :func:`versions` (library versions recorded with results) and :func:`slug` (an env id or label
  as a file name).

Imports neither torch nor stable-baselines3.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from policyshare.errors import CheckpointError

#: Suffix of the temporary files of atomic writes (``.<name>.<pid>.tmp``).
TMP_SUFFIX = ".tmp"


# --------------------------------------------------------------------------------------------
# Atomic writes


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename).

    Raises:
        CheckpointError: if the write fails (e.g. no space left); the previous file at
            ``path``, if any, is left as it was and the temporary file is removed.
    """
    p = Path(path)
    tmp = p.with_name(f".{p.name}.{os.getpid()}{TMP_SUFFIX}")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise CheckpointError(f"could not write {p}: {e.strerror or e}; free space or fix "
                              f"permissions, then rerun with --resume (the previous file is kept)"
                              ) from e
    except BaseException:
        # Interrupted mid-write (e.g. a second Ctrl-C): no partial file is left behind.
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return p


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete temporary files that a killed process left in ``folder`` (not recursive).

    :func:`atomic_write_bytes` writes ``.<name>.<pid>.tmp`` and renames it; a process
    killed with SIGKILL mid-write leaves it behind. Only files of other processes are deleted.

    Returns:
        The deleted files.
    """
    removed: list[Path] = []
    own = f".{os.getpid()}{TMP_SUFFIX}"
    d = Path(folder)
    if not d.is_dir():
        return removed
    for f in d.glob(f".*{TMP_SUFFIX}"):
        if f.is_file() and not f.name.endswith(own):
            with contextlib.suppress(OSError):
                f.unlink()
                removed.append(f)
    return removed


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write text (UTF-8) atomically; see :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def json_default(o: Any) -> Any:
    """``json.dumps``'s ``default``: numpy scalars and arrays as numbers and lists, paths as strings.

    Raises:
        TypeError: any other object (not JSON serialisable).
    """
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _undefined(key: str, why: Mapping[str, str]) -> str:
    from policyshare.metrics import UNDEFINED_WHY

    return why.get(key) or UNDEFINED_WHY.get(key) or "not a finite number (NaN or infinity): undefined here"


def json_ready(obj: Any, why: Mapping[str, str] | None = None) -> Any:
    """Plain, strictly valid JSON data: numpy scalars and arrays become numbers and lists, paths
    strings, and every NaN or infinity ``None`` (JSON's ``null``).

    JSON has no NaN (``json.dumps`` writes a bare ``NaN`` that strict parsers reject). An entry
    ``key: nan`` of a record becomes ``key: null`` plus ``"<key>_why": reason``. Entries of a
    list, or of a mapping keyed by data (seeds, env ids: keys that are not identifiers), become
    ``null`` and the reason goes beside the list or mapping (``"per_seed_why": "… (null at 0)"``),
    so that the data's own keys stay as they were.

    Args:
        obj: nested mappings, lists, tuples, numbers, strings, numpy values, paths.
        why: reasons by key; keys not given take :data:`policyshare.metrics.UNDEFINED_WHY`'s,
            else a generic one.

    Returns:
        A copy of ``obj`` that ``json.dumps(..., allow_nan=False)`` accepts.
    """
    why = why or {}

    def bad(v: Any) -> bool:
        return isinstance(v, (float, np.floating)) and not np.isfinite(v)

    def clean(o: Any) -> tuple[Any, list[str]]:
        """The clean value and where in it a number became null without a reason beside it."""
        if isinstance(o, (bool, np.bool_)):
            return bool(o), []
        if isinstance(o, (float, np.floating)):
            return (float(o), []) if np.isfinite(o) else (None, [])
        if isinstance(o, np.integer):
            return int(o), []
        if isinstance(o, np.ndarray):
            return clean(o.tolist())
        if isinstance(o, Path):
            return str(o), []
        if isinstance(o, Mapping):
            out: dict[Any, Any] = {}
            nulled: list[str] = []
            for k, v in o.items():
                out[k], inner = clean(v)
                key = str(k)
                if bad(v) and not key.isidentifier():
                    nulled.append(key)
                    continue
                if (bad(v) or inner) and f"{key}_why" not in o:
                    reason = _undefined(key, why)
                    out[f"{key}_why"] = reason + (f" (null at {', '.join(inner)})" if inner else "")
            return out, nulled
        if isinstance(o, (list, tuple)):
            items = [clean(x) for x in o]
            return [x for x, _ in items], [str(i) for i, x in enumerate(o) if bad(x)]
        return o, []

    return clean(obj)[0]


def atomic_write_json(path: str | Path, obj: Any, why: Mapping[str, str] | None = None) -> Path:
    """Write ``obj`` as indented, strictly valid JSON atomically; see :func:`atomic_write_bytes`.

    NaN and infinities are written as ``null`` with a ``"<key>_why"`` reason (:func:`json_ready`),
    never as the bare ``NaN`` that strict parsers reject.

    Args:
        path: the file.
        obj: the data (see :func:`json_ready`).
        why: reasons for undefined figures, by key (defaults: :data:`policyshare.metrics.UNDEFINED_WHY`).

    Raises:
        CheckpointError: the write failed (the previous file is kept).
    """
    text = json.dumps(json_ready(obj, why), indent=2, allow_nan=False, default=json_default)
    return atomic_write_text(path, text + "\n")


def read_json(path: str | Path, what: str = "file") -> Any:
    """Read a JSON file.

    Raises:
        CheckpointError: missing or not valid JSON.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{what} {p} not found")
    try:
        return json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{what} {p} is corrupt ({e}); restore it or rerun the step that "
                              "writes it") from e


# --------------------------------------------------------------------------------------------
# Versions


def versions() -> dict[str, str]:
    """Versions of policyshare and the libraries whose behaviour a result depends on."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for pkg in ("policyshare", "torch", "stable-baselines3", "gymnasium", "numpy", "minatar",
                "ale-py", "safetensors"):
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    import platform
    import sys

    out["python"] = sys.version.split()[0]
    out["platform"] = platform.platform()
    return out


# --------------------------------------------------------------------------------------------
# Names


def slug(text: str) -> str:
    """A file-name-safe form of an env id or label (``MinAtar/Breakout-v1`` → ``MinAtar-Breakout-v1``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")
