"""Reference labels for the IU reports: their manual MeSH "major" terms mapped to the 14 observations.

A MeSH major term is "Term/qualifier/qualifier..." ("Pleural Effusion/bilateral/small",
"Opacity/lung/base/left"). The mapping follows CheXpert's definitions, the ones the labeler
implements, so that a disagreement means the labeler and the indexer read the report differently.

    Cardiomegaly ............... Cardiomegaly; Cardiac Shadow with enlarged/borderline/prominent;
                                 Heart Ventricles or Heart Atria with enlarged/prominent;
                                 Thickening/heart ventricles
    Enlarged Cardiomediastinum . Mediastinum with prominent/enlarged/widened (not lymph nodes)
    Lung Opacity ............... Opacity, Density, Infiltrate, Airspace Disease, unless a qualifier puts
                                 them outside the lung (mediastinum, paratracheal, spine, breast, soft
                                 tissue, ...; ribs/clavicle do not: "projecting over the 5th rib");
                                 Markings unless bronchovascular/paratracheal/sulcus; Lung/interstitial;
                                 Thickening with interstitial/bronchi; Cicatrix (not pleura);
                                 Lung Diseases, Interstitial; Pulmonary Fibrosis; Fibrosis
    Lung Lesion ................ Nodule, Mass, Cavitation (not breast); an Opacity/Density/Infiltrate
                                 qualified "round" (the indexers' way of writing "nodular density")
    Edema ...................... Pulmonary Edema; Pulmonary Congestion; Heart Failure
    Consolidation .............. Consolidation
    Pneumonia .................. Pneumonia
    Atelectasis ................ Pulmonary Atelectasis
    Pneumothorax ............... Pneumothorax; Hydropneumothorax; Hemopneumothorax
    Pleural Effusion ........... Pleural Effusion; Hydropneumothorax; Hemopneumothorax; Hemothorax;
                                 Costophrenic Angle, Sulcus or Pleura with blunted/obscured
    Pleural Other .............. Thickening/pleura; Cicatrix/pleura; Calcinosis/pleura; Pleura (other)
    Fracture ................... Fractures, Bone
    Support Devices ............ Catheters, Indwelling; Implanted Medical Device; Surgical Instruments;
                                 Tube, Inserted; Stents; Medical Device; Sutures
    No Finding ................. derived: none of the above except Support Devices

Everything else (emphysema, granulomas, calcinosis, degenerative spine, hypoinflation, hiatal hernia,
"normal", ...) is outside the 14 observations, as in CheXpert. "Spinal Fusion" is left out too: it
names a procedure (or a congenital/ankylotic fusion), not a device the report necessarily mentions.
Reports whose only term is "No Indexing" are not indexed and are left out of the evaluation.
"""

from __future__ import annotations

from collections.abc import Iterable

from libs.domain.labels import CHEXPERT_LABELS

# Sites that put an Opacity/Density outside the lung. Ribs and clavicles are not among them: "nodular
# opacity projecting over the left 5th rib" is indexed Opacity/ribs but describes the lung.
_NON_LUNG_SITES = frozenset({
    "mediastinum", "paratracheal", "sternum", "thoracic vertebrae", "spine", "breast", "soft tissue",
    "abdomen", "shoulder", "humerus", "lymph nodes", "trachea", "neck", "diaphragm", "aorta",
    "heart", "pericardium", "adipose tissue",
})
_DIRECT = {
    "Cardiomegaly": "Cardiomegaly",
    "Pulmonary Edema": "Edema",
    "Pulmonary Congestion": "Edema",
    "Heart Failure": "Edema",
    "Consolidation": "Consolidation",
    "Pneumonia": "Pneumonia",
    "Pulmonary Atelectasis": "Atelectasis",
    "Pneumothorax": "Pneumothorax",
    "Pleural Effusion": "Pleural Effusion",
    "Hemothorax": "Pleural Effusion",
    "Fractures, Bone": "Fracture",
    "Lung Diseases, Interstitial": "Lung Opacity",
    "Pulmonary Fibrosis": "Lung Opacity",
    "Fibrosis": "Lung Opacity",
    "Infiltrate": "Lung Opacity",
    "Airspace Disease": "Lung Opacity",
    "Catheters, Indwelling": "Support Devices",
    "Implanted Medical Device": "Support Devices",
    "Surgical Instruments": "Support Devices",
    "Tube, Inserted": "Support Devices",
    "Stents": "Support Devices",
    "Medical Device": "Support Devices",
    "Sutures": "Support Devices",
}


def _split(term: str) -> tuple[str, set[str]]:
    parts = [p.strip() for p in term.split("/")]
    return " ".join(parts[0].split()), {p.lower() for p in parts[1:] if p}


def mesh_term_observations(term: str) -> set[str]:
    """The observations one MeSH major term stands for (often none)."""
    name, qualifiers = _split(term)
    found: set[str] = set()
    if name in _DIRECT:
        found.add(_DIRECT[name])
    if name in ("Hydropneumothorax", "Hemopneumothorax"):
        found |= {"Pneumothorax", "Pleural Effusion"}
    elif name == "Cardiac Shadow" and qualifiers & {"enlarged", "borderline", "prominent"}:
        found.add("Cardiomegaly")
    elif name in ("Heart Ventricles", "Heart Atria") and qualifiers & {"enlarged", "prominent"}:
        found.add("Cardiomegaly")
    elif name == "Mediastinum" and qualifiers & {"prominent", "enlarged", "widened"}:
        if "lymph nodes" not in qualifiers:  # lymphadenopathy is not a wide mediastinum
            found.add("Enlarged Cardiomediastinum")
    elif name in ("Opacity", "Density", "Infiltrate", "Airspace Disease"):
        if not qualifiers & _NON_LUNG_SITES:
            found.add("Lung Opacity")
            # The indexers write a "nodular density" as Density/.../round (a round opacity is a nodule).
            if "round" in qualifiers:
                found.add("Lung Lesion")
    elif name == "Markings" and not qualifiers & {"bronchovascular", "paratracheal", "sulcus"}:
        found.add("Lung Opacity")  # increased / prominent / interstitial lung markings
    elif name == "Lung" and "interstitial" in qualifiers:
        found.add("Lung Opacity")
    elif name == "Calcinosis" and "pleura" in qualifiers:
        found.add("Pleural Other")  # calcified pleural plaques
    elif name == "Thickening":
        if "pleura" in qualifiers:
            found.add("Pleural Other")
        elif qualifiers & {"interstitial", "bronchi"}:
            found.add("Lung Opacity")
        elif "heart ventricles" in qualifiers:
            found.add("Cardiomegaly")
    elif name == "Cicatrix":
        found.add("Pleural Other" if "pleura" in qualifiers else "Lung Opacity")
    elif name in ("Nodule", "Mass", "Cavitation") and "breast" not in qualifiers:
        found.add("Lung Lesion")
    elif name in ("Costophrenic Angle", "Sulcus") and qualifiers & {"blunted", "obscured"}:
        found.add("Pleural Effusion")
    elif name == "Pleura":
        found.add("Pleural Effusion" if qualifiers & {"blunted", "obscured"} else "Pleural Other")
    return found


def mesh_observations(terms: Iterable[str]) -> set[str]:
    """Observations of a report from all its MeSH major terms, with No Finding derived the CheXpert way."""
    found: set[str] = set()
    for term in terms:
        found |= mesh_term_observations(term)
    if not found - {"Support Devices"}:
        found.add("No Finding")
    return found


assert all(name in CHEXPERT_LABELS for name in _DIRECT.values())
