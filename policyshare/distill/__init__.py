"""Distilling several single-task experts into one shared-trunk student (being split into modules)."""

from policyshare.distill.trainer import *  # noqa: F403
from policyshare.distill.trainer import _AgreementProbe, _teacher_forward  # noqa: F401
