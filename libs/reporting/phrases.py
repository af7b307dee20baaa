"""How each CheXpert observation is worded in a report."""

from __future__ import annotations

# label → (positive finding phrase, negative sentence)
PHRASES: dict[str, tuple[str, str]] = {
    "Enlarged Cardiomediastinum": ("Enlarged cardiomediastinal silhouette", "The cardiomediastinal silhouette is not enlarged."),
    "Cardiomegaly": ("Cardiomegaly", "The heart size is normal."),
    "Lung Opacity": ("Lung opacity", "No focal lung opacity."),
    "Lung Lesion": ("Lung lesion (nodule or mass)", "No lung nodule or mass."),
    "Edema": ("Pulmonary edema", "No pulmonary edema."),
    "Consolidation": ("Consolidation", "No consolidation."),
    "Pneumonia": ("Findings suggestive of pneumonia", "No findings of pneumonia."),
    "Atelectasis": ("Atelectasis", "No atelectasis."),
    "Pneumothorax": ("Pneumothorax", "No pneumothorax."),
    "Pleural Effusion": ("Pleural effusion", "No pleural effusion."),
    "Pleural Other": ("Other pleural abnormality (thickening or plaque)", "No other pleural abnormality."),
    "Fracture": ("Fracture", "No fracture."),
    "Support Devices": ("Support device(s)", "No support devices."),
}
