"""Hyper-parameter search: ``policyshare tune`` (Ray Tune trials, Optuna's sampler, ASHA).

What lives where (imports only downward):

* :mod:`~policyshare.tune.space` — ``configs/tune.yaml``: the ``tuner:`` settings and a search
  space per algorithm, checked against the train config before any trial runs; a sampled trial
  turned into train-config overrides.
* :mod:`~policyshare.tune.search` — the search itself: one :func:`policyshare.train.train` run
  folder per Ray Tune trial, evaluations reported with ``ray.tune.report``, ASHA early stopping,
  Optuna's TPE sampler; :func:`tune`.
* :mod:`~policyshare.tune.best` — the best trial's config as YAML for ``configs/<algo>.yaml``.

Ray and Optuna are the ``ray`` extra (``pip install 'policyshare[ray]'``) and are imported only
when a search runs.
"""

from policyshare.tune.search import TuneResult, tune

__all__ = ["TuneResult", "tune"]
