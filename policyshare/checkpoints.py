"""Checkpoints: atomic writes, verified SB3 zips, and safetensors trunk files.

Two kinds of files:

* **SB3 models** (``*.zip``) — what ``model.save`` writes, loadable with plain
  ``stable_baselines3.PPO.load`` once policyshare is installed. policyshare adds one entry,
  ``policyshare.json``, holding the algorithm, env id, spaces, policy description and a SHA-256
  of every other entry; SB3 ignores it, :func:`load_sb3` verifies it.
* **Tensor files** (``*.safetensors``) — trunks, progressive columns, students: tensors plus
  a JSON header in the safetensors metadata (spec, input alignment, observation shape, source
  run, versions, SHA-256 of the tensors). Loading never unpickles anything.

Every write goes to a temporary file in the same folder, is flushed to disk and renamed over
the target, so a crash or a full disk leaves the previous file intact.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from policyshare.errors import CheckpointError, UserError
from policyshare.trunks import Trunk, TrunkSpec

SB3_HEADER = "policyshare.json"
#: Suffix of the temporary files of atomic writes (``.<name>.<pid>.tmp``).
TMP_SUFFIX = ".tmp"
TRUNK_FORMAT = "policyshare.trunk"


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


def _json_default(o: Any) -> Any:
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
    text = json.dumps(json_ready(obj, why), indent=2, allow_nan=False, default=_json_default)
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
# Tensor files (safetensors + JSON header)


def tensors_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of ``tensors`` in sorted name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_tensors(path: str | Path, tensors: Mapping[str, torch.Tensor],
                 header: Mapping[str, Any]) -> Path:
    """Save tensors and a JSON header as one safetensors file, atomically.

    The header gains ``sha256`` (of the tensors) and ``versions``.

    Raises:
        CheckpointError: if the write fails.
    """
    from safetensors.torch import save

    clean = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    full = dict(header)
    full["sha256"] = tensors_sha256(clean)
    full.setdefault("versions", versions())
    data = save(clean, metadata={"policyshare": json.dumps(full, default=_json_default)})
    return atomic_write_bytes(path, data)


def load_tensors(path: str | Path, expected_format: str | None = None
                 ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a file written by :func:`save_tensors`, verifying its checksum. Never unpickles.

    Args:
        path: the ``.safetensors`` file.
        expected_format: if given, the header's ``format`` must equal it.

    Returns:
        ``(tensors, header)``.

    Raises:
        CheckpointError: missing file, not a safetensors file, corrupt (checksum mismatch),
            or of another format.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} not found; check the path")
    raw = p.read_bytes()
    if raw[:4] == b"PK\x03\x04":
        raise CheckpointError(f"{p} is an SB3 zip (a whole model), not a policyshare .safetensors "
                              f"file; pass the trunk.safetensors of its run folder{_run_trunk_hint(p)}")
    try:
        tensors = load(raw)
        n = int.from_bytes(raw[:8], "little")
        meta = json.loads(raw[8:8 + n]).get("__metadata__", {})
    except (SafetensorError, ValueError, OSError, RuntimeError) as e:
        raise CheckpointError(f"{p} is not a readable safetensors file ({e}); it may be "
                              "truncated or corrupt — use another checkpoint") from e
    try:
        header = json.loads(meta["policyshare"])
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{p} has no policyshare header; it was not written by "
                              "policyshare (use save_trunk / policyshare train)") from e
    if header.get("sha256") != tensors_sha256(tensors):
        raise CheckpointError(f"{p} is corrupt: its checksum does not match its contents; "
                              "use another checkpoint")
    if expected_format is not None and header.get("format") != expected_format:
        raise CheckpointError(f"{p} is a {header.get('format')!r} file, expected "
                              f"{expected_format!r}")
    return tensors, header


def _run_trunk_hint(zip_path: Path) -> str:
    """`` (<run>/trunk.safetensors)`` for an SB3 zip of a run folder (or its checkpoints/), else ``""``."""
    for folder in (zip_path.parent, zip_path.parent.parent):
        if (folder / "trunk.safetensors").is_file():
            return f" ({folder / 'trunk.safetensors'})"
    return ""


#: Tensor-file formats that hold a trunk, and the prefix of the trunk's tensors in them: trunk
#: files, and distilled students (``policyshare distill``'s ``student.safetensors``), whose
#: shared trunk is their ``trunk`` submodule.
TRUNK_SOURCES: dict[str, str] = {TRUNK_FORMAT: "", "policyshare.student": "trunk."}


def read_trunk_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The trunk tensors and header of a trunk file, or of a student file (its shared trunk).

    Never unpickles. The header has at least ``spec`` (:meth:`TrunkSpec.to_dict`),
    ``alignment`` (with ``mode``) and ``source``, as :func:`save_trunk` writes them.

    Returns:
        ``(tensors, header)``; tensor names as in ``Trunk.state_dict()``.

    Raises:
        CheckpointError: missing, corrupt, an SB3 zip, or a tensor file that holds no single
            trunk (e.g. a progressive network: pass one of its column files).
    """
    p = Path(path)
    tensors, header = load_tensors(p)
    fmt = header.get("format")
    if fmt not in TRUNK_SOURCES:
        raise CheckpointError(
            f"{p} is a {fmt!r} file, expected {TRUNK_FORMAT!r} (a trunk.safetensors) or a "
            "student.safetensors; for a progressive network pass one of its column files "
            "(<seed folder>/columns/column_<k>__<task>.safetensors)")
    prefix = TRUNK_SOURCES[str(fmt)]
    if prefix:
        tensors = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    return tensors, header


def save_trunk(trunk: Trunk, path: str | Path, *, alignment: Mapping[str, Any] | None = None,
               observation_shape: tuple[int, ...] | None = None,
               source: Mapping[str, Any] | None = None) -> Path:
    """Export a trunk as safetensors + JSON header (spec, alignment, observation shape, source).

    Args:
        trunk: the trunk module.
        path: target ``.safetensors`` file (written atomically).
        alignment: the input alignment it was trained with (``InputAlignment.describe()``).
        observation_shape: the observation shape of the task it was trained on.
        source: provenance, e.g. ``{"run": "runs/train/…", "env_id": …, "algo": …}``.

    Raises:
        CheckpointError: if the write fails.
    """
    header = {"format": TRUNK_FORMAT, "format_version": 1, "spec": trunk.spec.to_dict(),
              "alignment": dict(alignment or {}),
              "observation_shape": list(observation_shape) if observation_shape else None,
              "source": dict(source or {})}
    return save_tensors(path, trunk.state_dict(), header)


def load_trunk(path: str | Path) -> Trunk:
    """Rebuild a trunk from a trunk file (or a student file's trunk) without unpickling anything.

    Example:
        >>> trunk = load_trunk("runs/train/MinAtar-Breakout-v1__ppo__s0/trunk.safetensors")  # doctest: +SKIP
        >>> trunk(torch.zeros(1, 10, 10, 10)).shape  # doctest: +SKIP
        torch.Size([1, 128])

    Returns:
        A :class:`~policyshare.trunks.Trunk` in eval mode, with the file's header as
        ``trunk.header``.

    Raises:
        CheckpointError: missing, corrupt, not a trunk file, or of an unknown spec.
    """
    tensors, header = read_trunk_file(path)
    try:
        spec = TrunkSpec.from_dict(header["spec"])
    except (KeyError, UserError) as e:
        raise CheckpointError(f"{path}: unusable trunk spec ({e})") from None
    trunk = Trunk(spec)
    load_state_checked(trunk, tensors, f"trunk file {path}")
    trunk.header = header
    return trunk.eval()


def load_state_checked(module: torch.nn.Module, tensors: Mapping[str, torch.Tensor],
                       what: str) -> None:
    """Load a state dict, refusing missing/unexpected keys and shape mismatches by name.

    Raises:
        CheckpointError: naming the parameter and both shapes.
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(tensors))
    extra = sorted(set(tensors) - set(own))
    if missing or extra:
        raise CheckpointError(f"{what} does not fit this network: missing {missing or 'none'}, "
                              f"unexpected {extra or 'none'}")
    for k, t in tensors.items():
        if tuple(t.shape) != tuple(own[k].shape):
            raise CheckpointError(
                f"{what} does not fit this network: {k} has shape {tuple(t.shape)} in the file "
                f"but {tuple(own[k].shape)} in the network; use a trunk of the same spec and "
                "input alignment")
    module.load_state_dict(dict(tensors))


def load_trunk_weights(target: Trunk, path: str | Path,
                       alignment: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Copy a trunk file's weights into an existing trunk (e.g. inside an SB3 policy).

    Call it *after* the SB3 model is built: SB3's ``ortho_init`` re-initialises extractors
    at construction. A student file (``student.safetensors``) gives its shared trunk.

    Args:
        target: the trunk to load into.
        path: the trunk (or student) file.
        alignment: the target network's input alignment (``InputAlignment.describe()``); when
            given, a file trained with another alignment mode (``pad``/``stem``/``none``) is
            refused — the weights would fit but read other inputs.

    Returns:
        The file's header.

    Raises:
        CheckpointError: missing/corrupt file, another spec, activation, threshold or input
            alignment, or other shapes (the message names both); the fix it suggests is one
            that fits (a setting is named only when the file's trunk can be built for this
            network's input).
    """
    tensors, header = read_trunk_file(path)
    spec = header.get("spec", {})
    own = target.spec
    same_input = (spec.get("in_channels"), spec.get("height"), spec.get("width")) == (
        own.in_channels, own.height, own.width)
    if spec.get("name") != own.name:
        fix = (f"pass a trunk of that spec or set trunk.spec: {spec.get('name')}" if same_input else
               f"pass a {own.name!r} trunk trained on this env's suite (the file's trunk reads "
               f"{_input(spec)} input, this network {_input(own.to_dict())})")
        raise CheckpointError(f"trunk file {path} holds a {spec.get('name')!r} trunk but the "
                              f"network uses {own.name!r}; {fix}")
    act, theta = spec.get("activation"), float(spec.get("theta", own.theta))
    other_theta = act != "relu" and theta != own.theta  # ReLU has no threshold
    if act != own.activation:
        also = f" and trunk.theta: {theta:g}" if other_theta else ""
        raise CheckpointError(f"trunk file {path} uses activation {act!r}, the network "
                              f"{own.activation!r}; set trunk.activation: {act}{also} to match")
    if other_theta:
        raise CheckpointError(f"trunk file {path} uses {act} with threshold theta {theta:g}, the "
                              f"network theta {own.theta:g}; set trunk.theta: {theta:g} to match")
    file_mode = (header.get("alignment") or {}).get("mode")
    own_mode = (alignment or {}).get("mode")
    if file_mode and own_mode and file_mode != own_mode:
        other = f"pass a trunk trained with {own_mode!r} alignment on this env's suite"
        fix = (f"set trunk.alignment: {file_mode} (--set trunk.alignment={file_mode}) or {other}"
               if same_input else other)
        raise CheckpointError(f"trunk file {path} was trained with {file_mode!r} input alignment, "
                              f"the network uses {own_mode!r}; {fix}")
    load_state_checked(target, tensors, f"trunk file {path}")
    return header


def _input(spec: Mapping[str, Any]) -> str:
    """``CxHxW`` of a trunk spec's input."""
    return f"{spec.get('in_channels')}x{spec.get('height')}x{spec.get('width')}"


# --------------------------------------------------------------------------------------------
# SB3 zips


def _entries_sha256(zf: zipfile.ZipFile) -> dict[str, str]:
    return {name: hashlib.sha256(zf.read(name)).hexdigest()
            for name in sorted(zf.namelist()) if name != SB3_HEADER}


def save_sb3(model: Any, path: str | Path, header: Mapping[str, Any]) -> Path:
    """Save an SB3 model atomically with an embedded, checksummed ``policyshare.json``.

    Args:
        model: an SB3 ``BaseAlgorithm``.
        path: target ``.zip``.
        header: plain-data description (algo, env id, …) stored in the zip.

    Raises:
        CheckpointError: if the write fails (the previous file is kept).
    """
    buf = io.BytesIO()
    model.save(buf)
    with zipfile.ZipFile(buf, "a") as zf:
        full = dict(header)
        full["entries_sha256"] = _entries_sha256(zf)
        full.setdefault("versions", versions())
        zf.writestr(SB3_HEADER, json.dumps(full, indent=2, default=_json_default))
    return atomic_write_bytes(path, buf.getvalue())


def read_sb3_header(path: str | Path, verify: bool = True) -> dict[str, Any]:
    """Read (and verify) the ``policyshare.json`` of an SB3 zip without unpickling.

    Zips saved by plain SB3 have no header: the algorithm is then inferred from the zip's
    JSON ``data`` entry and ``{"algo": …}`` is returned.

    Raises:
        CheckpointError: missing, not a zip, truncated, or a checksum mismatch.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} not found; check the path")
    try:
        with zipfile.ZipFile(p) as zf:
            names = zf.namelist()
            if SB3_HEADER not in names:
                data = json.loads(zf.read("data"))
                return {"algo": _infer_algo(data), "plain_sb3": True}
            header: dict[str, Any] = json.loads(zf.read(SB3_HEADER))
            if verify and header.get("entries_sha256") != _entries_sha256(zf):
                raise CheckpointError(f"{p} is corrupt: its checksum does not match its "
                                      "contents; use an earlier checkpoint")
            return header
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as e:
        raise CheckpointError(f"{p} is not a readable SB3 checkpoint ({e}); it may be truncated "
                              "or corrupt — use an earlier checkpoint") from e


def _infer_algo(data: Mapping[str, Any]) -> str:
    if "exploration_rate" in data or "target_update_interval" in data:
        return "dqn"
    if "clip_range" in data or "n_epochs" in data:
        return "ppo"
    return "a2c"


ALGOS = ("ppo", "a2c", "dqn")


def algo_class(algo: str) -> Any:
    """The SB3 class for ``ppo``, ``a2c`` or ``dqn``.

    Raises:
        UserError: unknown algorithm.
    """
    from stable_baselines3 import A2C, DQN, PPO

    classes = {"ppo": PPO, "a2c": A2C, "dqn": DQN}
    if algo not in classes:
        raise UserError(f"unknown algorithm {algo!r}; choose one of {', '.join(ALGOS)}")
    return classes[algo]


def load_sb3(path: str | Path, env: Any = None, device: str = "cpu",
             safe: bool = False) -> tuple[Any, dict[str, Any]]:
    """Load an SB3 checkpoint after verifying its header.

    Note: SB3 zips contain pickled objects; ``safe=False`` loads them with SB3 and so runs
    whatever they contain — only for files you trust. ``safe=True`` never unpickles: see
    :func:`load_sb3_safe`.

    Args:
        path: the ``.zip``.
        env: env to attach (``safe=False`` only).
        device: torch device.
        safe: rebuild the network from policyshare's JSON description and load only tensors.

    Returns:
        ``(model, header)``.

    Raises:
        CheckpointError: missing, corrupt, or unloadable (or, with ``safe``, not describable).
    """
    if safe:
        return load_sb3_safe(path, device)
    header = read_sb3_header(path)
    cls = algo_class(str(header.get("algo", "ppo")))
    try:
        model = cls.load(str(path), env=env, device=device)
    except (zipfile.BadZipFile, KeyError, ValueError, RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(f"could not load {path} ({type(e).__name__}: {e}); use another "
                              "checkpoint") from e
    return model, header


#: Features extractors other than the plain trunk that :func:`load_sb3_safe` rebuilds: the
#: ``extractor.kind`` of a zip's ``policyshare.json`` → ``(module, extractor class, policy class)``.
#: Only these are ever imported by name; a zip naming any other kind is refused.
SAFE_EXTRACTORS: dict[str, tuple[str, str, str]] = {
    "progressive": ("policyshare.progressive.policy", "ProgressiveExtractor", "ProgressivePolicy"),
}


def extractor_header(policy: Any) -> dict[str, Any]:
    """The ``policyshare.json`` entry that lets :func:`load_sb3_safe` rebuild ``policy``'s extractor.

    Args:
        policy: an SB3 policy (``model.policy``).

    Returns:
        ``{"extractor": {"kind", "kwargs"}}`` for an extractor of :data:`SAFE_EXTRACTORS` (its
        constructor's plain-data kwargs, as SB3 records them), else ``{}`` (the plain trunk,
        which the header's ``trunk`` entry describes).
    """
    cls = getattr(policy, "features_extractor_class", None)
    for kind, (module, extractor, _) in SAFE_EXTRACTORS.items():
        if cls is not None and (cls.__module__, cls.__qualname__) == (module, extractor):
            return {"extractor": {"kind": kind, "kwargs": dict(policy.features_extractor_kwargs)}}
    return {}


def _safe_extractor(path: str | Path, header: Mapping[str, Any]) -> tuple[Any, tuple[type, dict[str, Any]] | None]:
    """``(policy_class, features_extractor)`` for :func:`~policyshare.algos.build_model` from a header."""
    import importlib

    described = header.get("extractor")
    if described is None:
        return "CnnPolicy", None
    kind = described.get("kind") if isinstance(described, Mapping) else None
    kwargs = described.get("kwargs") if isinstance(described, Mapping) else None
    if kind not in SAFE_EXTRACTORS or not isinstance(kwargs, Mapping):
        raise CheckpointError(f"{path}: its policyshare.json describes a features extractor {kind!r} that "
                              f"--safe cannot rebuild (it rebuilds {', '.join(SAFE_EXTRACTORS)}); only "
                              "load it without --safe if you trust its source")
    module_name, extractor, policy_class = SAFE_EXTRACTORS[str(kind)]
    module = importlib.import_module(module_name)
    return getattr(module, policy_class), (getattr(module, extractor), dict(kwargs))


def load_sb3_safe(path: str | Path, device: str = "cpu") -> tuple[Any, dict[str, Any]]:
    """Load an SB3 zip written by policyshare without unpickling anything.

    The network is rebuilt from the zip's ``policyshare.json`` (algorithm, env id, trunk and
    head description, and for a progressive column its extractor's layout, :data:`SAFE_EXTRACTORS`;
    plain JSON), and only ``policy.pth`` is read, with
    ``torch.load(weights_only=True)``, which accepts tensors and refuses any other object. The
    optimizer state and SB3's pickled ``data`` entry are never read, so the model can act
    (``predict``) but is not set up to continue training.

    Returns:
        ``(model, header)``.

    Raises:
        CheckpointError: a corrupt file, a zip without a policyshare description (e.g. saved by
            plain SB3), a network policyshare cannot rebuild, or ``policy.pth`` holding
            anything but tensors.
    """
    import pickle

    header = read_sb3_header(path)
    if header.get("plain_sb3") or not {"algo", "env_id", "trunk", "policy"} <= set(header):
        raise CheckpointError(f"{path} carries no policyshare description of its network, so --safe "
                              "cannot rebuild it; only load it without --safe if you trust its source")
    from policyshare.algos import PARAMS, PolicyConfig, TrunkConfig, build_model
    from policyshare.config import from_dict
    from policyshare.envs import check_env_id, make_vec_env

    algo = str(header["algo"])
    env_id = str(header["env_id"])
    suite = check_env_id(env_id)
    trunk = from_dict(TrunkConfig, header["trunk"], f"{path} policyshare.json trunk")
    policy = from_dict(PolicyConfig, header["policy"], f"{path} policyshare.json policy")
    # Smallest valid hyper-parameters: the model only acts, it is not trained.
    small = {"ppo": {"n_steps": 2, "batch_size": 2}, "a2c": {}, "dqn": {"buffer_size": 1, "learning_starts": 0}}
    policy_class, extractor = _safe_extractor(path, header)
    env = make_vec_env(env_id, 1, 0)
    try:
        try:
            model = build_model(algo, env, PARAMS[algo](**small[algo]), policy, trunk, suite, 0, device,
                                policy_class=policy_class, features_extractor=extractor)
        except (TypeError, ValueError) as e:  # extractor kwargs that do not build a network
            raise CheckpointError(f"{path}: its policyshare.json does not describe a network policyshare "
                                  f"can build ({e}); do not trust this file") from None
        with zipfile.ZipFile(path) as zf:
            raw = zf.read("policy.pth")
        try:
            state = torch.load(io.BytesIO(raw), map_location=device, weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError) as e:
            raise CheckpointError(f"{path}: policy.pth holds more than tensors and was refused without "
                                  f"running it ({type(e).__name__}); do not trust this file") from None
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointError(f"{path}: policy.pth is not a dict of tensors; refused")
        _check_described(path, model.policy, state, extractor is not None)
        load_state_checked(model.policy, state, f"{path} policy.pth")
    finally:
        env.close()
    model.num_timesteps = int(header.get("timesteps", 0))
    return model, header


def _check_described(path: str | Path, policy: torch.nn.Module, state: Mapping[str, torch.Tensor],
                     described: bool) -> None:
    """Refuse, in one short line, weights of another network than the header describes."""
    own = policy.state_dict()
    extra = sorted(set(state) - set(own))
    missing = sorted(set(own) - set(state))
    if not extra and not missing:
        return
    if not described and any(k.startswith("features_extractor.stack.") for k in extra):
        raise CheckpointError(f"{path} is a progressive column saved without its network's layout in "
                              "policyshare.json (an older policyshare), so --safe cannot rebuild it; "
                              "evaluate its experiment's s<seed>/network.safetensors with --task ID "
                              "instead (never unpickled), or drop --safe if you trust this file")
    raise CheckpointError(f"{path}: policy.pth does not fit the network its policyshare.json describes "
                          f"({len(missing)} tensors missing, e.g. {(missing or ['none'])[0]}; "
                          f"{len(extra)} unexpected, e.g. {(extra or ['none'])[0]}); drop --safe only "
                          "if you trust this file")
