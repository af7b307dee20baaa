"""The 14 CheXpert observations: the vocabulary shared by the model, the labeler, QA and FHIR.

Order matters: bundle manifests, model outputs and label vectors all index observations in this order.
"""

from __future__ import annotations

CHEXPERT_LABELS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)

# Findings a radiologist must always look at when either the model or the text reports them
# (the design: pneumothorax, fracture, mass (= CheXpert "Lung Lesion"), effusion).
CRITICAL_LABELS: frozenset[str] = frozenset({"Pneumothorax", "Fracture", "Lung Lesion", "Pleural Effusion"})

# "No Finding" is derived (no other observation positive), it is never a finding in a report.
ABNORMAL_LABELS: tuple[str, ...] = tuple(label for label in CHEXPERT_LABELS if label != "No Finding")


def label_index(label: str) -> int:
    """Index of an observation in CHEXPERT_LABELS; raises ValueError with the unknown name."""
    try:
        return CHEXPERT_LABELS.index(label)
    except ValueError:
        raise ValueError(f"unknown CheXpert observation {label!r}") from None
