"""One comparison: (method × seed → learning curve) into scores, intervals, verdicts, tables, plots.

``policyshare transfer``, ``policyshare progressive``'s report and the experiment's report
(``policyshare run`` / ``policyshare report``) all compare methods through here:

1. **Curves from run folders** (:mod:`~policyshare.comparison.runs`: :func:`read_runs`,
   :func:`load_curve`): a run's ``evaluations.json`` holds two curves over the same evaluation
   points, both ``(env steps, mean return)`` from env step 0 — **greedy evaluation** and
   **training episodes** (:data:`CURVE_LABELS`); its final figures are its ``metrics.json``. The
   target's random return is the runs' own (:meth:`Runs.random_return`), its expert return the
   zoo expert's (:func:`zoo_expert_return`).
2. **The comparison** (:func:`compare_methods` → :class:`Comparison`): per method and seed
   (a target seed, or ``(upstream seed, target seed)``) every metric of
   :mod:`~policyshare.comparison.measures` — the paper's transfer % (Rusu et al. 2016, Table 1)
   where scratch is clearly above random, normalised area gain, forward transfer (Continual
   World), expert-normalised return at fractions of the budget, normalised area — each a value
   or the reason it is undefined (:mod:`policyshare.transfer_metrics`); per method the IQM over
   seeds with rliable's stratified bootstrap interval, or a hierarchical bootstrap over upstream
   then target seeds, or a labelled range when there are too few seeds (:mod:`policyshare.stats`);
   the probability of improvement over scratch; performance profiles; verdicts on claims.
3. **Tables** (:meth:`Comparison.markdown`, :meth:`Comparison.table_rows`,
   :func:`markdown_table`) and **plots** (:func:`plot_curves`, :func:`plot_intervals`,
   :func:`plot_profiles`), each saying which curve it uses; PNGs written atomically
   (:func:`save_figure`).

:mod:`~policyshare.comparison.legacy` keeps the old transfer % (a bare area ratio, ``nan`` where
scratch's area is not positive) for the experiment report until it moves to
:func:`compare_methods`. Method names are those of :mod:`policyshare.methods`.

Example::

    from policyshare.comparison import compare_methods, read_runs, zoo_expert_return

    runs = read_runs({"scratch": {0: "runs/a/scratch__s0", 1: ...}, "finetune": {0: ..., 1: ...}})
    expert, source = zoo_expert_return("MinAtar/Breakout-v1")
    c = compare_methods(runs.curves_of("training"), random=runs.random_return() or 0.0, expert=expert,
                        budget=runs.budget(), curve="training episodes", references=source)
    print("\\n".join(c.markdown()))
    print(c.verdict("finetune", "scratch"))
"""

from __future__ import annotations

from policyshare.comparison.compare import Comparison, MethodResult, compare_methods
from policyshare.comparison.figures import (
    interval_figure,
    markdown_table,
    plot_curves,
    plot_intervals,
    plot_profiles,
    save_figure,
)
from policyshare.comparison.legacy import aggregate_over_tasks, interval_rows, transfer_by_seed, transfer_summary
from policyshare.comparison.measures import (
    AREA_GAIN,
    FORWARD_TRANSFER,
    NORMALISED_AREA,
    TRANSFER_PERCENT,
    MetricInfo,
    metric_infos,
    return_at_key,
)
from policyshare.comparison.runs import (
    CURVE_LABELS,
    NO_TRAINING_CURVE,
    Curve,
    CurveKind,
    Runs,
    load_curve,
    mean_over_seeds,
    read_runs,
    zoo_expert_return,
)
from policyshare.comparison.tables import (
    definitions,
    format_estimate,
    format_interval_record,
    format_poi,
    format_summary,
)

__all__ = ["AREA_GAIN", "CURVE_LABELS", "Comparison", "Curve", "CurveKind", "FORWARD_TRANSFER", "MethodResult",
           "MetricInfo", "NORMALISED_AREA", "NO_TRAINING_CURVE", "Runs", "TRANSFER_PERCENT", "aggregate_over_tasks",
           "compare_methods", "definitions", "format_estimate", "format_interval_record", "format_poi",
           "format_summary", "interval_figure", "interval_rows", "load_curve", "markdown_table", "mean_over_seeds",
           "metric_infos", "plot_curves", "plot_intervals", "plot_profiles", "read_runs", "return_at_key",
           "save_figure", "transfer_by_seed", "transfer_summary", "zoo_expert_return"]
