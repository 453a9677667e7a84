"""SB3 zips: saving and loading stable-baselines3 models, verified, and optionally never unpickled.

What ``model.save`` writes, loadable with plain ``stable_baselines3.PPO.load`` once policyshare is
installed. policyshare adds one entry, ``policyshare.json`` (:data:`SB3_HEADER`), holding the
algorithm, env id, spaces, policy description and a SHA-256 of every other entry; SB3 ignores it,
:func:`read_sb3_header` verifies it.

* :func:`save_sb3` / :func:`load_sb3`: save atomically; load after verifying (SB3 unpickles).
* :func:`load_sb3_safe`: rebuild the network from ``policyshare.json`` and read only tensors
  (``--safe``); the features extractors it may rebuild besides the plain trunk are an explicit
  allow-list, :data:`SAFE_EXTRACTORS` (:func:`extractor_header` writes their description).

Trunk files (safetensors) are :mod:`policyshare.checkpoints`'s.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from policyshare.algos import PARAMS, PolicyConfig, TrunkConfig, algo_class, build_model, infer_algo
from policyshare.checkpoints import load_state_checked
from policyshare.config import from_dict
from policyshare.envs import check_env_id, make_vec_env
from policyshare.errors import CheckpointError
from policyshare.io import atomic_write_bytes, json_default, versions

#: The entry policyshare adds to an SB3 zip: its JSON description of the model.
SB3_HEADER = "policyshare.json"


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
        zf.writestr(SB3_HEADER, json.dumps(full, indent=2, default=json_default))
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
                return {"algo": infer_algo(data), "plain_sb3": True}
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


# --------------------------------------------------------------------------------------------
# The allow-list of --safe


#: The module that defines the progressive network's SB3 classes (``ProgressiveExtractor``,
#: ``ProgressivePolicy``): the progressive package's ``policy`` module. The one name to change if
#: they move again; :data:`MOVED_MODULES` keeps the old one working.
PROGRESSIVE_POLICY_MODULE = "policyshare.progressive.policy"

#: Modules that classes of the allow-list were defined in by earlier versions of policyshare
#: (and that SB3 zips saved then record), mapped to where those classes live now:
#: ``policyshare.progressive`` was one module before it became a package.
MOVED_MODULES: dict[str, str] = {"policyshare.progressive": PROGRESSIVE_POLICY_MODULE}

#: Features extractors other than the plain trunk that :func:`load_sb3_safe` rebuilds: the
#: ``extractor.kind`` of a zip's ``policyshare.json`` → ``(module, extractor class, policy class)``.
#: Only these classes are ever imported by name (from the module, or one that
#: :data:`MOVED_MODULES` maps to it); a zip naming any other kind is refused.
SAFE_EXTRACTORS: dict[str, tuple[str, str, str]] = {
    "progressive": (PROGRESSIVE_POLICY_MODULE, "ProgressiveExtractor", "ProgressivePolicy"),
}


def allowed_modules(module: str) -> list[str]:
    """``module`` and the older paths that :data:`MOVED_MODULES` maps to it (newest first)."""
    return [module, *(old for old, new in MOVED_MODULES.items() if new == module)]


def extractor_header(policy: Any) -> dict[str, Any]:
    """The ``policyshare.json`` entry that lets :func:`load_sb3_safe` rebuild ``policy``'s extractor.

    Args:
        policy: an SB3 policy (``model.policy``).

    Returns:
        ``{"extractor": {"kind", "kwargs"}}`` for an extractor of :data:`SAFE_EXTRACTORS` (its
        constructor's plain-data kwargs, as SB3 records them), found by its class's module (new
        or old path, :data:`MOVED_MODULES`) and name; else ``{}`` (the plain trunk, which the
        header's ``trunk`` entry describes).
    """
    cls = getattr(policy, "features_extractor_class", None)
    for kind, (module, extractor, _) in SAFE_EXTRACTORS.items():
        if cls is not None and cls.__module__ in allowed_modules(module) and cls.__qualname__ == extractor:
            return {"extractor": {"kind": kind, "kwargs": dict(policy.features_extractor_kwargs)}}
    return {}


def _import_allowed(module: str) -> ModuleType:
    """Import an allow-listed module by its current path, else by an older one it moved from."""
    for name in allowed_modules(module):
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name is None or not name.startswith(e.name):  # a missing module *inside* it: a real fault
                raise
    raise ModuleNotFoundError(f"none of {allowed_modules(module)} can be imported", name=module)


def _safe_extractor(path: str | Path, header: Mapping[str, Any]) -> tuple[Any, tuple[type, dict[str, Any]] | None]:
    """``(policy_class, features_extractor)`` for :func:`~policyshare.algos.build_model` from a header."""
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
    module = _import_allowed(module_name)
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
    header = read_sb3_header(path)
    if header.get("plain_sb3") or not {"algo", "env_id", "trunk", "policy"} <= set(header):
        raise CheckpointError(f"{path} carries no policyshare description of its network, so --safe "
                              "cannot rebuild it; only load it without --safe if you trust its source")
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
