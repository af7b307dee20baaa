"""Typed domain objects that cross module and service boundaries."""

from libs.domain.context import ClinicalContext
from libs.domain.job import Job, JobState, InvalidTransition
from libs.domain.labels import ABNORMAL_LABELS, CHEXPERT_LABELS, CRITICAL_LABELS
from libs.domain.model_output import LabelPrediction, ModelOutput
from libs.domain.report import Finding, Report
from libs.domain.study import Instance, Study, View

__all__ = [
    "ABNORMAL_LABELS",
    "CHEXPERT_LABELS",
    "CRITICAL_LABELS",
    "ClinicalContext",
    "Finding",
    "Instance",
    "InvalidTransition",
    "Job",
    "JobState",
    "LabelPrediction",
    "ModelOutput",
    "Report",
    "Study",
    "View",
]
