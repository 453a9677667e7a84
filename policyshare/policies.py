"""Any checkpoint as a policy for one task: what ``policyshare evaluate PATH`` loads.

:func:`load_policy` turns a run folder, an SB3 zip, or a policyshare tensor file that can act (a
progressive network, a distilled student) into an agent with SB3's ``predict`` for one task, so
that :func:`policyshare.evaluate.evaluate` runs episodes of any of them. Which tensor-file format
is loaded by which function is the explicit table :data:`POLICY_LOADERS`.

This module sits above the methods whose files it loads (:mod:`policyshare.progressive`,
:mod:`policyshare.distill`, :mod:`policyshare.multitask`) and below the command line; the episode runner
(:mod:`policyshare.evaluate`) needs none of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from policyshare.checkpoints import load_tensors
from policyshare.distill import load_policy as load_student_policy
from policyshare.errors import CheckpointError, UserError
from policyshare.io import read_json
from policyshare.multitask.policy import load_task_agent
from policyshare.progressive import load_policy as load_network_policy
from policyshare.sb3_files import load_sb3, read_sb3_header

#: ``loader(path, header, task) -> (agent, env_id)``: loads a tensor file as an agent for ``task``.
PolicyLoader = Callable[[Path, Mapping[str, Any], str | None], tuple[Any, str]]

#: Tensor-file formats (the header's ``format``) that can act, and the function that loads each:
#: a progressive network (``network.safetensors``) and a distilled student
#: (``student.safetensors``). Trunk files cannot act: they have no heads.
POLICY_LOADERS: dict[str, PolicyLoader] = {
    "policyshare.progressive": load_network_policy,
    "policyshare.student": load_student_policy,
}

#: The checkpoints a run folder may hold, in the order :func:`load_policy` looks for them.
RUN_CHECKPOINTS = ("model.zip", "network.safetensors", "student.safetensors")


def load_policy(path: str | Path, task: str | None = None, safe: bool = False) -> tuple[Any, str, dict[str, Any]]:
    """Load a checkpoint as a policy for one task.

    Args:
        path: a run folder (its ``model.zip`` or ``student``/``progressive`` file), an SB3
            zip, or a policyshare ``.safetensors`` file.
        task: env id to act in; required where the checkpoint holds several tasks, optional
            where it holds one.
        safe: load SB3 zips without unpickling (:func:`~policyshare.sb3_files.load_sb3_safe`);
            policyshare's own ``.safetensors`` files never unpickle anyway.

    Returns:
        ``(agent, env_id, header)``: ``agent.predict`` acts in ``env_id``.

    Raises:
        CheckpointError: missing or unreadable checkpoint, or a tensor file that cannot act.
        UserError: ``task`` not among the checkpoint's tasks.
    """
    p = Path(path)
    if p.is_dir():
        p = _run_checkpoint(p)
    if not p.exists():
        raise CheckpointError(f"checkpoint {p} not found; check the path")
    if p.suffix == ".safetensors":
        return _load_tensor_file(p, task)
    return _load_sb3_zip(p, task, safe)


def _run_checkpoint(folder: Path) -> Path:
    """The checkpoint of a run folder (:data:`RUN_CHECKPOINTS`).

    Raises:
        CheckpointError: none there; the message names what to pass instead (a run folder of an
            experiment folder, or one of the folder's zips).
    """
    candidates = [folder / name for name in RUN_CHECKPOINTS]
    found = [c for c in candidates if c.is_file()]
    if found:
        return found[0]
    others = sorted(c.name for c in folder.glob("*.zip"))
    runs = sorted((d for d in folder.iterdir()
                   if d.is_dir() and any((d / c.name).is_file() for c in candidates)),
                  key=lambda d: d.name)
    if runs:  # an experiment folder (progressive: DIR/s<seed>, transfer: <method>__s<seed>)
        more = ", …" if len(runs) > 6 else ""
        hint = f"pass one of its run folders: {', '.join(str(d) for d in runs[:6])}{more}"
    elif others:
        hint = f"pass one of its files, e.g. {folder / others[0]}"
    else:
        hint = "pass a run folder of a finished run"
    raise CheckpointError(f"{folder} holds no checkpoint (model.zip, network.safetensors or "
                          f"student.safetensors); {hint}")


def _load_tensor_file(p: Path, task: str | None) -> tuple[Any, str, dict[str, Any]]:
    """A tensor file that can act, by its format's loader (:data:`POLICY_LOADERS`)."""
    _, header = load_tensors(p)
    fmt = str(header.get("format"))
    if fmt not in POLICY_LOADERS:
        raise CheckpointError(f"{p} is a {fmt!r} file, which cannot act; pass a model, "
                              "progressive network or student checkpoint")
    agent, env_id = POLICY_LOADERS[fmt](p, header, task)
    return agent, env_id, header


def _load_sb3_zip(p: Path, task: str | None, safe: bool) -> tuple[Any, str, dict[str, Any]]:
    """An SB3 zip, for the env it was trained on (its header's, else its run's ``metrics.json``)."""
    header = read_sb3_header(p)
    if header.get("method") == "multitask_ppo":  # a multi-task model (policyshare multitask): one of its tasks
        agent, task_id = load_task_agent(p, header, task, safe)
        return agent, task_id, header
    env_id = header.get("env_id")
    if env_id is None:
        meta = p.parent / "metrics.json"
        env_id = read_json(meta).get("env_id") if meta.is_file() else None
    if task is not None and env_id is not None and task != env_id:
        raise UserError(f"{p} was trained on {env_id}, not {task}; drop --task/--env or pass a "
                        "checkpoint of that task")
    env_id = env_id or task
    if env_id is None:
        raise UserError(f"cannot tell which env {p} acts in; pass --env ID")
    model, header = load_sb3(p, safe=safe)
    return model, str(env_id), header
