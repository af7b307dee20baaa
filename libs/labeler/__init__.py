"""Rule-based report labeler: the 14 CheXpert observations of a radiology report, with evidence.

    from libs.labeler import label_report
    result = label_report(findings + "\\n" + impression)
    result.observations["Pleural Effusion"].status   # Status.POSITIVE
    result.observations["Pleural Effusion"].spans    # [Span(start, end, text), ...]

See docs/labeler.md for the rules, the measurement against the IU/Open-i MeSH labels and its limits.
"""

from libs.labeler.labeler import label_report, label_reports
from libs.labeler.types import LabelerResult, ObservationLabel, Span, Status

__all__ = ["LabelerResult", "ObservationLabel", "Span", "Status", "label_report", "label_reports"]
