"""Progressive neural networks over a sequence of tasks (Rusu et al. 2016, arXiv 1606.04671).

A progressive network grows one **column** per task. Every column is a trunk built from the same
:class:`~policyshare.trunks.TrunkSpec`; column ``k``'s layer ``i`` reads, besides its own layer
``i-1``, the layer ``i-1`` activations of every earlier column through a lateral **adapter**
(paper Eq. 2)::

    h_i^(k) = σ( W_i^(k) h_{i-1}^(k) + U_i^(k) σ( V_i^(k) (α_{i-1}^(k) · [h_{i-1}^(1), …, h_{i-1}^(k-1)]) ) )

Earlier columns and their adapters are frozen (never change, bit for bit); the optimizer holds
exactly the new column's trunk, adapters, input stem and heads. Because SB3's ``ortho_init``
re-initialises the features extractor while the policy is built, frozen weights are loaded
*after* the model is built.

Modules, in data-flow order (imports only go downward):

* :mod:`~policyshare.progressive.config` — the typed ``configs/progressive.yaml``
  (:class:`AdapterConfig`, :class:`ControlsConfig`, :class:`FisherConfig`,
  :class:`ProgressiveConfig`, :func:`load_progressive_config`); no torch.
* :mod:`~policyshare.progressive.adapters` — the lateral connection of Eq. 2
  (:class:`LateralAdapter`, :func:`pointwise_conv`).
* :mod:`~policyshare.progressive.columns` — the columns (:class:`ColumnStack`, its fused frozen
  path, :class:`FrozenActivationCache`) and one column's heads (:class:`ColumnHead`).
* :mod:`~policyshare.progressive.policy` — SB3 glue: :class:`ProgressiveExtractor`,
  :class:`ProgressivePolicy`, :class:`LateralScalarLogger`, :func:`column_model_factory`.
* :mod:`~policyshare.progressive.network` — the whole network (:class:`ProgressiveNetwork`),
  its ``network.safetensors`` file (:func:`load_network`), its agent and policy loader
  (:class:`ProgressiveAgent`, :func:`load_policy`).
* :mod:`~policyshare.progressive.fisher` — Average Fisher Sensitivity (paper Sec. 5).
* :mod:`~policyshare.progressive.plan` — the checked experiment settings and its folder layout.
* :mod:`~policyshare.progressive.report` — ``metrics.json``, ``report.md``, plots, summary.
* :mod:`~policyshare.progressive.run` — ``policyshare progressive`` (:func:`run_progressive`):
  column 1 from a checkpoint (:func:`network_from_checkpoint`), grow the network, train the
  controls, check no forgetting (:func:`check_no_forgetting`), analyse.

Every public name is importable from the package (``from policyshare.progressive import
ProgressiveNetwork``); the submodule is imported on first use, so ``import
policyshare.progressive`` alone imports neither torch nor SB3. SB3 pickles policy classes by
module path: zips saved before the split record ``policyshare.progressive.ProgressivePolicy``
and ``policyshare.progressive.ProgressiveExtractor``, which resolve here to the classes of
:mod:`~policyshare.progressive.policy`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from policyshare.progressive.adapters import LateralAdapter, pointwise_conv
    from policyshare.progressive.columns import ColumnHead, ColumnStack, FrozenActivationCache, columns_input
    from policyshare.progressive.config import (
        ALGOS,
        CONTROLS,
        FISHER_SEED_OFFSET,
        RANDOM_COLUMN_SEED_OFFSET,
        AdapterConfig,
        ControlsConfig,
        FisherConfig,
        ProgressiveConfig,
        load_progressive_config,
    )
    from policyshare.progressive.fisher import (
        FisherSensitivity,
        average_fisher_sensitivity,
        collect_observations,
        fisher_table,
        plot_fisher_heatmap,
    )
    from policyshare.progressive.network import (
        NETWORK_FILE,
        NETWORK_FORMAT,
        ColumnInfo,
        ProgressiveAgent,
        ProgressiveNetwork,
        load_network,
        load_policy,
    )
    from policyshare.progressive.policy import (
        LateralScalarLogger,
        ProgressiveExtractor,
        ProgressivePolicy,
        column_model_factory,
    )
    from policyshare.progressive.report import METHOD_LABELS
    from policyshare.progressive.run import check_no_forgetting, network_from_checkpoint, run_progressive

#: Public name → the submodule that defines it.
_WHERE: dict[str, str] = {
    **dict.fromkeys(("ALGOS", "CONTROLS", "FISHER_SEED_OFFSET", "RANDOM_COLUMN_SEED_OFFSET", "AdapterConfig",
                     "ControlsConfig", "FisherConfig", "ProgressiveConfig", "load_progressive_config"), "config"),
    **dict.fromkeys(("LateralAdapter", "pointwise_conv"), "adapters"),
    **dict.fromkeys(("ColumnHead", "ColumnStack", "FrozenActivationCache", "columns_input"), "columns"),
    **dict.fromkeys(("LateralScalarLogger", "ProgressiveExtractor", "ProgressivePolicy", "column_model_factory"),
                    "policy"),
    **dict.fromkeys(("NETWORK_FILE", "NETWORK_FORMAT", "ColumnInfo", "ProgressiveAgent", "ProgressiveNetwork",
                     "load_network", "load_policy"), "network"),
    **dict.fromkeys(("FisherSensitivity", "average_fisher_sensitivity", "collect_observations", "fisher_table",
                     "plot_fisher_heatmap"), "fisher"),
    "METHOD_LABELS": "report",
    **dict.fromkeys(("check_no_forgetting", "network_from_checkpoint", "run_progressive"), "run"),
}

__all__ = ["ALGOS", "AdapterConfig", "CONTROLS", "ColumnHead", "ColumnInfo", "ColumnStack", "ControlsConfig",
           "FISHER_SEED_OFFSET", "FisherConfig", "FisherSensitivity", "FrozenActivationCache", "LateralAdapter",
           "LateralScalarLogger", "METHOD_LABELS", "NETWORK_FILE", "NETWORK_FORMAT", "ProgressiveAgent",
           "ProgressiveConfig", "ProgressiveExtractor", "ProgressiveNetwork", "ProgressivePolicy",
           "RANDOM_COLUMN_SEED_OFFSET", "average_fisher_sensitivity", "check_no_forgetting", "collect_observations",
           "column_model_factory", "columns_input", "fisher_table", "load_network", "load_policy",
           "load_progressive_config", "network_from_checkpoint", "plot_fisher_heatmap", "pointwise_conv",
           "run_progressive"]


def __getattr__(name: str) -> Any:
    """``policyshare.progressive.<public name>``, importing its submodule on first use (PEP 562)."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
