"""Average Fisher Sensitivity of a progressive network (Rusu et al. 2016, Sec. 5).

Which earlier columns and layers does a new task rely on? For the target column's policy π,
the modified diagonal Fisher with respect to the *normalised* activations ĥ of layer ``i`` of
column ``c`` is

    F̂_i^(c)(m) = E_s E_{a~π(·|s)} [ Σ_pixels (∂ log π(a|s) / ∂ĥ_i^(c)(m))² ]

(for conv layers the sum runs over the pixel locations of feature map ``m``; dense layers have
one location). Activations are normalised by their standard deviation over the sample,
ĥ = (h − μ)/σ, so ∂/∂ĥ = σ ∂/∂h: a unit's sensitivity does not depend on its scale. The
Average Fisher Sensitivity of feature ``m`` normalises across columns,

    AFS(i, c, m) = F̂_i^(c)(m) / Σ_c' F̂_i^(c')(m),

and AFS(i, c) is its mean over the features ``m`` (those with a non-zero denominator). Each
layer's AFS sums to 1 over the columns.

A layer whose activations do not reach the target's output has F̂ = 0 and so AFS 0: with
``adapter.heads`` off, the earlier columns' last layer feeds nothing of the target column
(only its own heads), so the target column holds all of that layer's sensitivity.

The expectation over actions is taken exactly (a sum over the task's actions weighted by π);
the expectation over states uses observations collected by running the target column's
stochastic policy on the target task (:func:`collect_observations`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from policyshare.comparison import save_figure

if TYPE_CHECKING:
    from policyshare.progressive.network import ProgressiveNetwork


@dataclass
class FisherSensitivity:
    """Average Fisher Sensitivity of one target column.

    Attributes:
        target: the target task (the column whose policy is differentiated).
        columns: the task of each column ``0..target``.
        layers: layer names.
        afs: AFS(i, c), array ``(n_columns, n_layers)``; each layer's column sums to 1.
        fisher: mean F̂ over the layer's features, ``(n_columns, n_layers)`` (unnormalised).
        samples: number of observations used.
    """

    target: str
    columns: list[str]
    layers: list[str]
    afs: np.ndarray
    fisher: np.ndarray
    samples: int

    def as_dict(self) -> dict[str, Any]:
        """JSON form: ``afs[column task][layer]`` and the raw Fisher values likewise."""
        return {"target": self.target, "samples": self.samples, "layers": self.layers,
                "columns": self.columns,
                "afs": {c: dict(zip(self.layers, map(float, row))) for c, row in zip(self.columns, self.afs)},
                "fisher": {c: dict(zip(self.layers, map(float, row)))
                           for c, row in zip(self.columns, self.fisher)}}


def collect_observations(network: ProgressiveNetwork, task: str, samples: int, seed: int,
                         n_envs: int = 8) -> np.ndarray:
    """Observations of ``task`` visited by its column's stochastic policy.

    Args:
        network: the progressive network.
        task: a task of the network.
        samples: number of observations (env steps, summed over the envs).
        seed: seed of the envs and of the action sampling.
        n_envs: parallel envs.

    Returns:
        Array ``(samples, *observation_shape)`` as the env gives it.

    Raises:
        UserError: ``task`` is not in the network.
    """
    from policyshare.envs import make_vec_env

    agent = network.agent(task, seed)
    venv = make_vec_env(task, n_envs, seed)
    out: list[np.ndarray] = []
    try:
        obs = venv.reset()
        while sum(len(o) for o in out) < samples:
            out.append(np.asarray(obs).copy())
            actions, _ = agent.predict(obs, deterministic=False)
            obs, _, _, _ = venv.step(actions)
    finally:
        venv.close()
    return np.concatenate(out)[:samples]


def average_fisher_sensitivity(network: ProgressiveNetwork, task: str, observations: np.ndarray,
                               batch_size: int = 256) -> FisherSensitivity:
    """AFS of every column and layer for ``task``'s policy (Rusu et al. 2016, Sec. 5).

    Args:
        network: the progressive network.
        task: the target task; its column and all earlier ones are analysed.
        observations: ``(n, *observation_shape)`` states of the target task.
        batch_size: observations per backward pass.

    Returns:
        A :class:`FisherSensitivity`.

    Raises:
        UserError: ``task`` is not in the network.
        ValueError: no observations.
    """
    if len(observations) == 0:
        raise ValueError("Fisher sensitivity needs at least one observation")
    column = network.column_index(task)
    stack = network.stack
    n_layers = len(stack.spec.layers)
    widths = [shape[0] for shape in stack.column(0).layer_shapes]
    n = column + 1
    grad_sq = [[torch.zeros(w, dtype=torch.float64) for w in widths] for _ in range(n)]
    act_sum = [[torch.zeros(w, dtype=torch.float64) for w in widths] for _ in range(n)]
    act_sq = [[torch.zeros(w, dtype=torch.float64) for w in widths] for _ in range(n)]
    count = [0] * n_layers
    network.eval()
    for start in range(0, len(observations), batch_size):
        obs = torch.as_tensor(observations[start:start + batch_size])
        x = network.alignments[column](obs)
        probes: list[list[torch.Tensor]] = [[] for _ in range(n)]
        acts = stack.activations(x, n, probes=probes)
        earlier = stack.concat_columns(acts[:column])
        logits, _ = network.heads[column](stack.column_features(earlier, acts[column], column))
        logp = torch.log_softmax(logits, dim=1)
        probs = logp.detach().exp()
        for a in range(logp.shape[1]):  # E_{a~π}: exact sum over actions, weighted by π(a|s)
            # A layer that does not reach the output (an earlier column's last layer without
            # head laterals) has no gradient: its sensitivity is exactly 0 (zeros, not an error).
            grads = torch.autograd.grad(logp[:, a].sum(), [p for col in probes for p in col],
                                        retain_graph=a < logp.shape[1] - 1, allow_unused=True,
                                        materialize_grads=True)
            weight = probs[:, a].double()
            for idx, g in enumerate(grads):
                c, i = divmod(idx, n_layers)
                per_feature = g.double().pow(2)
                if per_feature.dim() == 4:
                    per_feature = per_feature.sum(dim=(2, 3))  # Σ over pixel locations
                grad_sq[c][i] += (weight[:, None] * per_feature).sum(0)
        for c in range(n):
            for i, h in enumerate(acts[c]):
                h = h.detach().double()
                flat = h.transpose(0, 1).reshape(h.shape[1], -1)  # (features, batch·pixels)
                act_sum[c][i] += flat.sum(1)
                act_sq[c][i] += flat.pow(2).sum(1)
                if c == 0:
                    count[i] += flat.shape[1]
    total = len(observations)
    fisher = np.zeros((n, n_layers))
    afs = np.zeros((n, n_layers))
    for i in range(n_layers):
        f_hat = []
        for c in range(n):
            mean = act_sum[c][i] / count[i]
            var = (act_sq[c][i] / count[i] - mean.pow(2)).clamp_min(0.0)
            f_hat.append(var * grad_sq[c][i] / total)  # σ² E[(∂ log π/∂h)²] = E[(∂ log π/∂ĥ)²]
        stacked = torch.stack(f_hat)  # (columns, features)
        denom = stacked.sum(0)
        keep = denom > 0
        for c in range(n):
            fisher[c, i] = float(stacked[c].mean())
            afs[c, i] = float((stacked[c][keep] / denom[keep]).mean()) if keep.any() else float("nan")
    return FisherSensitivity(task, network.tasks[:n], list(stack.column(0).layer_names), afs, fisher,
                             total)


def fisher_table(afs: np.ndarray, columns: list[str], layers: list[str],
                 spread: np.ndarray | None = None) -> str:
    """A Markdown table of AFS: one row per column, one column per layer.

    Args:
        afs: ``(n_columns, n_layers)``.
        columns: row labels (column tasks).
        layers: layer names.
        spread: optional ``(n_columns, n_layers)`` standard deviations over seeds (shown as ±).
    """
    lines = ["| column | task | " + " | ".join(layers) + " |",
             "|---|---|" + "---|" * len(layers)]
    for c, task in enumerate(columns):
        cells = [f"{afs[c, i]:.3f}" + (f" ± {spread[c, i]:.3f}" if spread is not None else "")
                 for i in range(len(layers))]
        lines.append(f"| {c + 1} | {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_fisher_heatmap(afs: np.ndarray, columns: list[str], layers: list[str], path: str | Path,
                        title: str) -> Path:
    """Heat map of AFS (columns × layers, 0..1, annotated); PNG, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(layers), 1.2 + 0.6 * len(columns)))
    im = ax.imshow(afs, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(layers)), layers)
    ax.set_yticks(range(len(columns)), [f"column {c + 1}\n{t}" for c, t in enumerate(columns)],
                  fontsize=8)
    for c in range(afs.shape[0]):
        for i in range(afs.shape[1]):
            ax.text(i, c, f"{afs[c, i]:.2f}", ha="center", va="center",
                    color="white" if afs[c, i] < 0.6 else "black")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label="average Fisher sensitivity")
    return save_figure(fig, path)
