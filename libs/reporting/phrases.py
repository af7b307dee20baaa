"""How each CheXpert observation is worded in a report.

The wording is chosen so that the project's labeler reads it back as the same observation with the
same status (tests/reporting check every template round-trips through the labeler): QA re-reads the
report text, so a phrase the labeler misreads would turn into a false disagreement.
"""

from __future__ import annotations

from dataclasses import dataclass

from libs.domain.labels import ABNORMAL_LABELS


@dataclass(frozen=True)
class Phrase:
    noun: str  # the positive finding, lower case, without severity or side: "pleural effusion"
    negative: str  # the sentence stating it is absent
    lateral: bool = True  # False for midline structures (heart, mediastinum): never given a side
    pattern: str = "{mod}{noun}"  # how severity/side ("{mod}") combine with the noun


PHRASES: dict[str, Phrase] = {
    "Enlarged Cardiomediastinum": Phrase("widened mediastinum", "The mediastinum is not widened.", lateral=False),
    "Cardiomegaly": Phrase("cardiomegaly", "The heart size is normal.", lateral=False),
    "Lung Opacity": Phrase("lung opacity", "No focal lung opacity."),
    "Lung Lesion": Phrase("lung nodule or mass", "No lung nodule or mass."),
    "Edema": Phrase("pulmonary edema", "No pulmonary edema."),
    "Consolidation": Phrase("consolidation", "No consolidation."),
    "Pneumonia": Phrase("pneumonia", "No findings of pneumonia."),
    "Atelectasis": Phrase("atelectasis", "No atelectasis."),
    "Pneumothorax": Phrase("pneumothorax", "No pneumothorax."),
    "Pleural Effusion": Phrase("pleural effusion", "No pleural effusion."),
    "Pleural Other": Phrase("pleural thickening or plaque", "No pleural thickening or plaque."),
    "Fracture": Phrase("fracture", "No fracture."),
    "Support Devices": Phrase("support devices", "No support devices.", lateral=False),
}

assert set(PHRASES) == set(ABNORMAL_LABELS), "every abnormal observation needs a phrase"

# How the not-assessed observations are named in a list ("not assessed: cardiomegaly, fracture").
LIST_NAMES: dict[str, str] = {label: label.lower() for label in ABNORMAL_LABELS}


def finding_phrase(label: str, severity: str | None = None, laterality: str | None = None) -> str:
    """The finding as written, e.g. "Moderate right pleural effusion": severity, side, noun; capitalised."""
    phrase = PHRASES[label]
    words = [w for w in (severity, laterality if phrase.lateral else None) if w]
    mod = " ".join(words) + " " if words else ""
    text = phrase.pattern.format(mod=mod, noun=phrase.noun)
    return text[:1].upper() + text[1:]
