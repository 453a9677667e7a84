"""Trunk files: tensors plus a JSON header as safetensors, loaded without unpickling anything.

Trunks, progressive columns and students are saved as ``*.safetensors``: tensors plus a JSON
header in the safetensors metadata (spec, input alignment, observation shape, source run,
versions, SHA-256 of the tensors). :func:`save_tensors` / :func:`load_tensors` write and verify
any such file; :func:`save_trunk`, :func:`load_trunk`, :func:`read_trunk_file` and
:func:`load_trunk_weights` are the trunk's; :func:`load_state_checked` refuses weights that do not
fit a network, naming both shapes. Writes are atomic (:mod:`policyshare.io`).

SB3 zips (whole models) are :mod:`policyshare.sb3_files`'s; the algorithm registry is
:mod:`policyshare.algos`'s.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from policyshare.errors import CheckpointError, UserError
from policyshare.io import atomic_write_bytes, json_default, versions
from policyshare.trunks import Trunk, TrunkSpec

TRUNK_FORMAT = "policyshare.trunk"


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
    data = save(clean, metadata={"policyshare": json.dumps(full, default=json_default)})
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
