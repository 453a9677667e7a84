"""The whole progressive network: columns, per-task alignment and heads, its file, its agent.

:class:`ProgressiveNetwork` acts in every task it has learned given the task id
(:meth:`ProgressiveNetwork.agent`, a :class:`ProgressiveAgent` with SB3's ``predict``). It grows
from SB3 models, one column per task (:meth:`ProgressiveNetwork.add_column_from_model`), saves
as one
``network.safetensors`` (format :data:`NETWORK_FORMAT`, read back by :func:`load_network`
without unpickling anything), and exports every column as a trunk file that
:func:`~policyshare.checkpoints.load_trunk` reads. :func:`load_policy` is the loader that
``policyshare evaluate --task`` uses for network files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from pydantic.dataclasses import dataclass
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn

from policyshare.alignment import InputAlignment
from policyshare.checkpoints import load_state_checked, load_tensors, save_tensors, save_trunk
from policyshare.config import SETTINGS, Settings, from_dict
from policyshare.errors import CheckpointError, UserError
from policyshare.progressive.columns import ColumnHead, ColumnStack, columns_input
from policyshare.progressive.config import AdapterConfig
from policyshare.progressive.policy import ProgressiveExtractor
from policyshare.trunks import Trunk, TrunkExtractor, TrunkSpec

#: Header ``format`` of a saved progressive network.
NETWORK_FORMAT = "policyshare.progressive"
#: File name of the network inside an experiment's per-seed folder.
NETWORK_FILE = "network.safetensors"


@dataclass(config=SETTINGS)
class ColumnInfo(Settings):
    """What a column was trained on (stored in the network file's header).

    Attributes:
        task: the Gymnasium id of the column's task.
        n_actions: the task's number of actions (its own, minimal set).
        action_map: each of the task's actions as an index into the suite's common action space.
        observation_shape: the task's single observation shape.
        alignment: the task's input alignment (``InputAlignment.describe()``).
        net_arch: SB3 ``net_arch`` of the heads.
        head_activation: SB3 ``activation_fn`` of the heads (``Tanh``/``ReLU``).
        source: provenance: run folder, seed, env steps, and the evaluation right after the
            column was trained (``eval_seed``, ``eval_episodes``, ``eval_returns``).
    """

    task: str
    n_actions: int
    action_map: list[int]
    observation_shape: list[int]
    alignment: dict[str, Any]
    net_arch: Any = field(default_factory=list)
    head_activation: str = "Tanh"
    source: dict[str, Any] = field(default_factory=dict)


def _alignment_from(describe: Mapping[str, Any]) -> InputAlignment:
    """Rebuild an :class:`InputAlignment` from its ``describe()`` output."""
    c, h, w = int(describe["task_channels"]), int(describe["height"]), int(describe["width"])
    last = bool(describe["channels_last"])
    return InputAlignment((h, w, c) if last else (c, h, w), mode=str(describe["mode"]),
                          channels_last=last, channels=int(describe["channels"]))


def describe_spec(spec: TrunkSpec) -> str:
    """A trunk spec in words, for messages: ``'minatar' trunk (relu, 10 input channels, 10x10)``."""
    return (f"{spec.name!r} trunk ({spec.activation}, {spec.in_channels} input channels, "
            f"{spec.height}x{spec.width})")


class ProgressiveNetwork(nn.Module):
    """A progressive network that acts in every task it has learned.

    Attributes:
        stack: the columns and lateral adapters (:class:`ColumnStack`).
        alignments: each column's task input alignment (``alignments[c]``).
        heads: each column's :class:`ColumnHead`.
        info: each column's :class:`ColumnInfo`.
        algo: the algorithm the columns were trained with.

    Args:
        spec: the columns' trunk spec.
        adapter: lateral adapter settings.
        algo: ``ppo`` or ``a2c`` (recorded).
    """

    def __init__(self, spec: TrunkSpec, adapter: AdapterConfig, algo: str = "ppo") -> None:
        super().__init__()
        self.stack = ColumnStack(spec, 0, adapter)
        self.alignments = nn.ModuleList()
        self.heads = nn.ModuleList()
        self.info: list[ColumnInfo] = []
        self.algo = algo

    def __len__(self) -> int:
        return len(self.stack)

    @property
    def tasks(self) -> list[str]:
        """The task of each column, in order."""
        return [i.task for i in self.info]

    def column_index(self, task: str) -> int:
        """The 0-based column trained on ``task``.

        Raises:
            UserError: ``task`` is not one of the network's tasks.
        """
        if task not in self.tasks:
            raise UserError(f"task {task!r} is not in this progressive network; its tasks are "
                            f"{', '.join(self.tasks)} — pass one of them with --task")
        return self.tasks.index(task)

    def add_column(self, info: ColumnInfo) -> None:
        """Append a column (trunk, adapters, alignment, heads) with fresh weights for ``info``."""
        self.stack.add_column()
        c = len(self.stack) - 1
        self.alignments.append(_alignment_from(info.alignment))
        self.heads.append(ColumnHead(self.stack.features_dim(c), info.net_arch,
                                     info.head_activation, info.n_actions))
        self.info.append(info)
        self.requires_grad_(False)

    def add_column_from_model(self, model: Any, task: str, source: Mapping[str, Any]) -> None:
        """Append the column an SB3 model trained (its trunk, adapters, alignment and heads).

        Column 1 comes from a single-trunk model (``policyshare train``, a
        :class:`~policyshare.trunks.TrunkExtractor`); column ``k > 1`` from a model whose
        :class:`ProgressiveExtractor` has ``k`` columns, the first ``k-1`` of which must equal
        this network's, bit for bit.

        Raises:
            CheckpointError: the model is not a PPO/A2C policy on a trunk, has another trunk
                spec or adapter layout, has the wrong number of columns, or its frozen columns
                differ from this network's.
        """
        from policyshare.envs import task_action_map

        policy = model.policy
        if not isinstance(policy, ActorCriticPolicy):
            raise CheckpointError(f"a progressive column needs a PPO or A2C policy, got "
                                  f"{type(policy).__name__}")
        ex = policy.features_extractor
        c = len(self)
        trunk, laterals, alignment = self._trained_column(ex)
        info = ColumnInfo(task=task, n_actions=int(model.action_space.n),
                          action_map=task_action_map(task),
                          observation_shape=[int(d) for d in policy.observation_space.shape or ()],
                          alignment=alignment.describe(), net_arch=policy.net_arch,
                          head_activation=policy.activation_fn.__name__, source=dict(source))
        self.add_column(info)
        what = f"column {c + 1} ({task})"
        load_state_checked(self.stack.columns[c], trunk.state_dict(), what)
        if laterals is not None:
            load_state_checked(self.stack.laterals[c], laterals.state_dict(), what)
        load_state_checked(self.alignments[c], alignment.state_dict(), what)
        heads = {k: v for k, v in policy.state_dict().items()
                 if k.startswith(("mlp_extractor.", "action_net.", "value_net."))}
        load_state_checked(self.heads[c], heads, what)

    def _trained_column(self, ex: Any) -> tuple[Trunk, nn.Module | None, InputAlignment]:
        """The trunk, adapters and input alignment an SB3 model's extractor trained as this
        network's next column.

        Raises:
            CheckpointError: see :meth:`add_column_from_model`.
        """
        c = len(self)
        laterals: nn.Module | None = None
        if isinstance(ex, ProgressiveExtractor):
            if ex.n_columns != c + 1:
                raise CheckpointError(f"the model has {ex.n_columns} columns; a network of {c} "
                                      f"columns can only take a model of {c + 1}")
            if ex.stack.adapter != self.stack.adapter:
                raise CheckpointError(f"the model's adapters {asdict(ex.stack.adapter)} differ "
                                      f"from the network's {asdict(self.stack.adapter)}")
            for j in range(c):
                for mine, theirs in zip(self.stack.column_modules(j), ex.stack.column_modules(j)):
                    theirs_state = theirs.state_dict()
                    if any(not torch.equal(v, theirs_state[k]) for k, v in mine.state_dict().items()):
                        raise CheckpointError(f"the model's frozen column {j + 1} differs from "
                                              "the network's; it was trained on another network")
            trunk, laterals = ex.stack.column(c), ex.stack.laterals[c]
        elif isinstance(ex, TrunkExtractor):
            if c != 0:
                raise CheckpointError("a single-trunk model can only be column 1 of a network")
            trunk = ex.trunk
        else:
            raise CheckpointError(f"a progressive column needs a policyshare trunk extractor, got "
                                  f"{type(ex).__name__}")
        if trunk.spec != self.stack.spec:
            raise CheckpointError(f"the model has a {describe_spec(trunk.spec)} but the network "
                                  f"uses a {describe_spec(self.stack.spec)}")
        return trunk, laterals, ex.alignment

    def extractor_kwargs(self, alignment: Mapping[str, Any]) -> dict[str, Any]:
        """Plain-data kwargs of the :class:`ProgressiveExtractor` that trains the next column.

        Args:
            alignment: the new task's input alignment kwargs (``Suite.alignment_kwargs``).
        """
        spec = self.stack.spec
        return {"trunk": {"name": spec.name, "activation": spec.activation, "theta": spec.theta},
                "alignment": dict(alignment), "n_columns": len(self) + 1,
                "adapter": asdict(self.stack.adapter)}

    def load_frozen_into(self, extractor: ProgressiveExtractor) -> None:
        """Copy this network's columns and adapters into the frozen part of ``extractor``.

        Call it *after* the SB3 model is built: SB3's ``ortho_init`` re-initialises the
        extractor while the policy is built.

        Raises:
            CheckpointError: ``extractor`` does not have exactly one column more than this
                network, or another spec or adapter layout (the message names both).
        """
        if extractor.n_columns != len(self) + 1:
            raise CheckpointError(f"an extractor of {extractor.n_columns} columns cannot take a "
                                  f"network of {len(self)} as its frozen part")
        if extractor.stack.spec != self.stack.spec:
            raise CheckpointError(f"the extractor has a {describe_spec(extractor.stack.spec)} but "
                                  f"the network a {describe_spec(self.stack.spec)}")
        for c in range(len(self)):
            for theirs, mine in zip(extractor.stack.column_modules(c), self.stack.column_modules(c)):
                load_state_checked(theirs, mine.state_dict(), f"frozen column {c + 1}")

    def forward(self, observations: torch.Tensor, column: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Act with one column.

        Args:
            observations: the column's task observations as its env gives them (MinAtar:
                ``(batch, 10, 10, C)``), any dtype.
            column: 0-based column index.

        Returns:
            ``(logits (batch, n_actions), values (batch, 1))``.
        """
        x = columns_input(cast(InputAlignment, self.alignments[column]), observations)
        earlier, own = self.stack.forward_column(x, column)
        logits, values = self.heads[column](self.stack.column_features(earlier, own, column))
        return logits, values

    def agent(self, task: str, seed: int = 0) -> ProgressiveAgent:
        """An agent with SB3's ``predict`` that acts in ``task`` with its column.

        Raises:
            UserError: ``task`` is not in the network.
        """
        return ProgressiveAgent(self, self.column_index(task), seed)

    def header(self) -> dict[str, Any]:
        """The JSON header of the network file."""
        return {"format": NETWORK_FORMAT, "format_version": 1, "spec": self.stack.spec.to_dict(),
                "adapter": asdict(self.stack.adapter), "algo": self.algo, "tasks": self.tasks,
                "columns": [asdict(i) for i in self.info]}

    def save(self, path: str | Path) -> Path:
        """Save the whole network (columns, adapters, alignments, heads, task ids) atomically.

        Raises:
            CheckpointError: if the write fails.
        """
        return save_tensors(path, self.state_dict(), self.header())

    def export_columns(self, folder: str | Path, network_path: str | Path | None = None) -> list[Path]:
        """Write every column's trunk as ``column_<k>__<task>.safetensors`` (``load_trunk`` reads it).

        A column ``k > 1`` was trained with lateral inputs: its trunk file holds its own
        weights only.
        """
        from policyshare.runs import slug

        paths = []
        for c, info in enumerate(self.info):
            source = {**info.source, "progressive_network": str(network_path or ""), "column": c + 1,
                      "task": info.task}
            paths.append(save_trunk(self.stack.column(c),
                                    Path(folder) / f"column_{c + 1}__{slug(info.task)}.safetensors",
                                    alignment=info.alignment,
                                    observation_shape=tuple(info.observation_shape), source=source))
        return paths


def load_network(path: str | Path) -> ProgressiveNetwork:
    """Load a network file written by :meth:`ProgressiveNetwork.save` (nothing is unpickled).

    Raises:
        CheckpointError: missing, corrupt, not a progressive network, or tensors that do not
            fit the header's layout (the message names both shapes).
    """
    tensors, header = load_tensors(path, NETWORK_FORMAT)
    try:
        spec = TrunkSpec.from_dict(header["spec"])
        adapter = from_dict(AdapterConfig, header["adapter"], f"{path} adapter")
        network = ProgressiveNetwork(spec, adapter, str(header.get("algo", "ppo")))
        for i, col in enumerate(header["columns"]):
            network.add_column(from_dict(ColumnInfo, col, f"{path} column {i + 1}"))
    except (KeyError, TypeError, UserError) as e:
        raise CheckpointError(f"{path}: unusable progressive network header ({e}); use another "
                              "checkpoint") from None
    load_state_checked(network, tensors, f"progressive network {path}")
    return network.eval()


class ProgressiveAgent:
    """One column of a :class:`ProgressiveNetwork` with SB3's ``predict`` signature.

    Args:
        network: the network.
        column: 0-based column index.
        seed: seed of the action sampling (``deterministic=False``).
    """

    def __init__(self, network: ProgressiveNetwork, column: int, seed: int = 0) -> None:
        self.network = network
        self.column = column
        self.task = network.info[column].task
        self.generator = torch.Generator().manual_seed(seed)

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[np.ndarray, None]:
        """Actions ``(batch,)`` (task-local indices) for observations ``(batch, *obs_shape)``.

        A single unbatched observation gives a 0-d array. Greedy when ``deterministic``
        (argmax of the logits, as SB3's categorical ``mode``), else sampled.
        """
        obs = torch.as_tensor(np.asarray(observation))
        single = obs.dim() == len(self.network.info[self.column].observation_shape)
        if single:
            obs = obs.unsqueeze(0)
        with torch.no_grad():
            logits, _ = self.network(obs, self.column)
            if deterministic:
                actions = logits.argmax(dim=1)
            else:
                actions = torch.multinomial(torch.softmax(logits, 1), 1, generator=self.generator)[:, 0]
        out = actions.numpy()
        return (out[0] if single else out), None


def load_policy(path: str | Path, header: Mapping[str, Any], task: str | None
                ) -> tuple[ProgressiveAgent, str]:
    """Load a network file as a policy for one of its tasks (``policyshare evaluate --task``).

    Args:
        path: the ``network.safetensors`` file.
        header: its header (already read by :func:`policyshare.evaluate.load_policy`).
        task: the env id to act in; may be omitted only when the network has one column.

    Returns:
        ``(agent, env_id)``.

    Raises:
        CheckpointError: an unreadable network file.
        UserError: no ``task`` for a multi-task network, or ``task`` not in the network.
    """
    network = load_network(path)
    if task is None:
        if len(network) != 1:
            raise UserError(f"{path} holds a progressive network for {', '.join(network.tasks)}; "
                            "pass the one to act in with --task ID")
        task = network.tasks[0]
    try:
        return network.agent(task), task
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
