"""Mention phrases: which words in a report talk about which of the 14 observations.

Every rule is a regular expression over the lower-cased report and names the observations it is about
and what the words alone say about them:

* CONTEXT   - a finding named as a noun phrase ("small left pleural effusion"); the negation and
              uncertainty cues around it decide its status (positive when there are none);
* NEGATIVE  - a normality statement ("heart size is normal", "lungs are clear"): negative whatever
              surrounds it;
* UNCERTAIN - a hedged size statement ("heart size is at the upper limits of normal").

"Clausal" rules are a subject and its predicate ("the cardiac silhouette is mildly enlarged"). They
carry their own verb, so only cues inside them count ("is not enlarged", "may be enlarged"): a "no"
earlier in the sentence belongs to a different clause. Each also has a colon form for structured
reports ("Heart size: normal.", "Mediastinum: widened.", "Lungs: clear."), where the predicate must be
the whole value after the colon.

All rules go into one alternation, tried in order at each position, so longer and more specific
phrases come first, and "blocker" rules (no observation) swallow look-alikes such as "pericardial
effusion" or "lytic lesion" before the generic phrase can match them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

EC = "Enlarged Cardiomediastinum"
CARDIO = "Cardiomegaly"
OPACITY = "Lung Opacity"
LESION = "Lung Lesion"
EDEMA = "Edema"
CONSOLIDATION = "Consolidation"
PNEUMONIA = "Pneumonia"
ATELECTASIS = "Atelectasis"
PTX = "Pneumothorax"
EFFUSION = "Pleural Effusion"
PLEURAL_OTHER = "Pleural Other"
FRACTURE = "Fracture"
DEVICES = "Support Devices"


class Polarity(str, Enum):
    CONTEXT = "context"
    NEGATIVE = "negative"
    UNCERTAIN = "uncertain"


Target = tuple[str, Polarity]


@dataclass(frozen=True, slots=True)
class MentionRule:
    name: str
    pattern: str
    targets: tuple[Target, ...] = ()  # what a match says; empty for blockers
    clausal: bool = False
    # Clausal rules: the targets per predicate kind that matched ("is enlarged" / "is normal" / "is borderline").
    on_pos: tuple[Target, ...] = ()
    on_neg: tuple[Target, ...] = ()
    on_unc: tuple[Target, ...] = ()


def _words(phrase: str) -> str:
    """A space matches a run of spaces or hyphens ("air-space"); " ?" an optional one ("airspace")."""
    return phrase.replace(" ?", r"[\s\-]?").replace(" ", r"[\s\-]+")


def _any(*phrases: str) -> str:
    return "(?:" + "|".join(_words(p) for p in phrases) + ")"


# Up to six words between a subject and its predicate ("heart size is [at the] upper limits of normal"),
# never crossing into another organ's clause or a contrast.
_GAP = (
    r"(?:(?!(?:lungs?|pleural|no|but|however|although|without|with|which|while|whereas|and there)\b)"
    r"[\w'/]+[\s,\-]+){0,6}?"
)

# Predicates of size statements. "Upper limits of normal" is a normal size (and contains "normal");
# "borderline" is a hedge. The IU MeSH indexers read them the same way: 4 of 112 reports whose heart is
# "upper limits of normal" (and not enlarged elsewhere) are indexed Cardiomegaly, 30 of 34 "borderline".
_UPPER_NORMAL = (
    "upper limits? of normal", "upper limits? normal", "upper normal(?: limits?)?", "upper range of normal",
    "top normal(?: limits?)?", "top of normal", "high normal", "upper end of normal", "upper limits? of the normal",
)
_SIZE_UNC = _any(
    r"(?:upper limits? (?:of )?normal|upper normal|top normal|borderline) (?:or|to) (?:\w+ )?(?:enlarged|enlargement)",
    "borderline", "mildly prominent", "possibly enlarged", "may be enlarged", "questionably enlarged",
    "borderline enlarged",
)
_SIZE_NEG = _any(
    *_UPPER_NORMAL, r"not (?:\w+ )?enlarged", "normal", "within normal limits", r"within (?:the )?normal range",
    r"within (?:the )?limits of normal",
    "unremarkable", "wnl", "grossly normal", "normal size", "unchanged and normal",
)
_SIZE_POS = _any("enlarged", "enlargement", "increased", "large", "enlarging", "prominent", "prominence", "dilated")
_WIDTH_POS = _any("widened", "widening", "wide", "enlarged", "enlargement", "increased", "prominent", "prominence")

_HEART = _any(
    r"heart(?: size| silhouette| shadow| contours?| borders?)?",
    r"cardiac (?:size|silhouette|shadow|contours?|outline|borders?|diameter|dimensions)",
    r"size of the (?:heart|cardiac silhouette)",
    r"cardiopericardial silhouette",
)
_CARDIOMEDIASTINAL = _any(
    r"cardio ?mediastinal(?: silhouettes?| contours?| shadows?| sizes?| width| outlines?| structures)?",
    r"cardiomediastinum",
    r"(?:cardiac|heart) (?:and|&) mediastinal(?: silhouettes?| contours?| shadows?| sizes?| structures)?",
    r"(?:heart|cardiac silhouette),? (?:and )?(?:the )?mediastinum",
    r"mediastinal (?:and|&) (?:cardiac|heart)(?: silhouettes?| contours?| shadows?| sizes?)?",
    r"heart size (?:and|&) mediastin(?:um|al)(?: contours?| silhouettes?| width)?",
)
_MEDIASTINUM = _any(
    r"(?:superior )?mediastinum",
    r"mediastinal (?:silhouettes?|contours?|width|shadows?|outlines?|structures|"
    r"and hilar (?:contours?|silhouettes?|structures))",
)
# The IU reports replace some words by "XXXX" during de-identification, "angle" among them.
_ANGLE = r"(?:angles?|sulcus|sulci|recess(?:es)?|xxxx)"
_CP_ANGLE = _any(r"(?:costophrenic|cp|costodiaphragmatic) " + _ANGLE)
_LUNGS = _any(r"lungs?", r"lung fields?", r"lung parenchyma", r"lung bases", r"lungs? zones", r"pulmonary parenchyma")
_VASCULATURE = _any(
    r"pulmonary (?:vascularity|vasculature|vessels|vascular markings|vascular pattern|blood flow|venous pattern)",
    r"vascularity", r"vasculature",
)


def _clausal(
    name: str,
    subject: str,
    pos: tuple[Target, ...] = (),
    neg: tuple[Target, ...] = (),
    unc: tuple[Target, ...] = (),
    pos_predicate: str | None = None,
    neg_predicate: str | None = None,
    unc_predicate: str | None = None,
) -> MentionRule:
    """A subject + predicate rule; which predicate matched decides the targets at match time."""
    branches = []
    if unc_predicate:
        branches.append(f"(?P<unc>{unc_predicate})")
    if neg_predicate:
        branches.append(f"(?P<neg>{neg_predicate})")
    if pos_predicate:
        branches.append(f"(?P<pos>{pos_predicate})")
    pattern = subject + r"[\s,]+" + _GAP + "(?:" + "|".join(branches) + ")"
    return MentionRule(name, pattern, (), True, pos, neg, unc)


def _colon_form(rule: MentionRule) -> MentionRule:
    """A subject + predicate rule written as "<subject>: <predicate>" ("Heart size: normal."): the
    predicate right after the colon and the whole value, so "Heart and mediastinum: widened mediastinum"
    is not one (the value names a finding of its own)."""
    subject, _, predicates = rule.pattern.partition(r"[\s,]+" + _GAP)
    pattern = subject + r"[ \t]*:\s*" + predicates + r"(?=[ \t]*(?:[.;,:()!\n]|$))"
    return MentionRule(rule.name + ":", pattern, (), True, rule.on_pos, rule.on_neg, rule.on_unc)


def _phrase(name: str, pattern: str, *observations: str, polarity: Polarity = Polarity.CONTEXT) -> MentionRule:
    return MentionRule(name, pattern, tuple((obs, polarity) for obs in observations))


def _blocker(name: str, pattern: str) -> MentionRule:
    return MentionRule(name, pattern)


CTX = Polarity.CONTEXT
NEG = Polarity.NEGATIVE
UNC = Polarity.UNCERTAIN

# Order matters (first alternative that matches at a position wins): clausal statements, blockers,
# specific phrases, then generic single words. Each clausal rule is followed by its colon form (RULES).
_RULES: tuple[MentionRule, ...] = (
    # --- cardiac and mediastinal size ---------------------------------------------------------------
    # "cardiomediastinal silhouette is enlarged": the mediastinum is enlarged for sure (CheXpert's
    # Enlarged Cardiomediastinum); whether the heart is the enlarged part is not said, so uncertain.
    _clausal("cardiomediastinal-size", _CARDIOMEDIASTINAL, pos=((EC, CTX), (CARDIO, UNC)),
             neg=((EC, NEG), (CARDIO, NEG)), unc=((EC, UNC), (CARDIO, UNC)),
             pos_predicate=_WIDTH_POS, neg_predicate=_SIZE_NEG, unc_predicate=_SIZE_UNC),
    _clausal("heart-size", _HEART, pos=((CARDIO, CTX),), neg=((CARDIO, NEG),), unc=((CARDIO, UNC),),
             pos_predicate=_SIZE_POS, neg_predicate=_SIZE_NEG, unc_predicate=_SIZE_UNC),
    _clausal("mediastinum-size", _MEDIASTINUM, pos=((EC, CTX),), neg=((EC, NEG),), unc=((EC, UNC),),
             pos_predicate=_WIDTH_POS, neg_predicate=_SIZE_NEG, unc_predicate=_SIZE_UNC),
    _clausal("costophrenic-angles", _CP_ANGLE, pos=((EFFUSION, CTX),), neg=((EFFUSION, NEG),),
             unc=((EFFUSION, UNC),),
             pos_predicate=_any("blunted", "blunting", "blunt", "obliterated", "effaced"),
             neg_predicate=_any("sharp", "sharply defined", "clear", "normal", "preserved", "well defined",
                                "crisp", "maintained", "unremarkable"),
             unc_predicate=_any("obscured", "not well seen", "not well visualized", "partially obscured")),
    _clausal("lungs-clear", _LUNGS, neg=((OPACITY, NEG),),
             neg_predicate=_any("clear", "normal", "unremarkable",
                                r"free of (?:focal )?(?:airspace )?(?:disease|opacit\w+)")),
    _clausal("vasculature", _VASCULATURE, pos=((EDEMA, CTX),), neg=((EDEMA, NEG),), unc=((EDEMA, UNC),),
             pos_predicate=_any("congested", "congestion", "engorged", "engorgement", "indistinct", "cephalized",
                                "cephalization", "redistributed", "redistribution", "increased", "prominent",
                                "prominence", "plethoric"),
             neg_predicate=_any("normal", "within normal limits", r"within (?:the )?limits of normal", "unremarkable",
                                "not congested", "not engorged", "not prominent", "wnl"),
             unc_predicate=_any("upper limits? of normal", "borderline", "mildly prominent")),
    # --- normal statements said as noun phrases -----------------------------------------------------
    _phrase("normal-heart", r"normal[\s\-]+(?:sized[\s\-]+)?(?:heart|cardiac (?:size|silhouette|contour|shadow))"
            r"(?:[\s\-]+size)?", CARDIO, polarity=NEG),
    _phrase("normal-cardiomediastinal", r"normal[\s\-]+(?:cardio[\s\-]?mediastin(?:al|um)|cardiac and mediastinal|"
            r"heart and mediastin\w+)(?:[\s\-]+(?:silhouettes?|contours?|size))?", EC, CARDIO, polarity=NEG),
    _phrase("normal-mediastinum",
            r"normal[\s\-]+(?:\w+[\s\-]+)?mediastin(?:um|al(?:[\s\-]+(?:contours?|silhouettes?|width)))",
            EC, polarity=NEG),
    _phrase("clear-lungs", r"clear[\s\-]+lungs?", OPACITY, polarity=NEG),
    _phrase("sharp-cp-angles", _any(r"sharp (?:\w+ )?costophrenic " + _ANGLE), EFFUSION, polarity=NEG),
    _phrase("normal-vasculature", r"normal[\s\-]+pulmonary[\s\-]+(?:vascularity|vasculature|vessels)", EDEMA,
            polarity=NEG),
    _phrase("borderline-heart", r"borderline[\s\-]+(?:enlarged[\s\-]+)?(?:heart|cardiac)"
            r"(?:[\s\-]+(?:size|silhouette|enlargement|contour))?", CARDIO, polarity=UNC),
    _phrase("upper-normal-heart", r"(?:upper[\s\-]+normal|top[\s\-]+normal|high[\s\-]+normal|upper[\s\-]+limits?"
            r"[\s\-]+of[\s\-]+normal)[\s\-]+(?:\w+[\s\-]+){0,2}(?:heart|cardiac)(?:[\s\-]+(?:size|silhouette|contour))?",
            CARDIO, polarity=NEG),
    # --- blockers: look-alikes that are not the observation -----------------------------------------
    _blocker("not-pleural-effusion", _any(r"pericardial effusions?",
                                          r"(?:joint|shoulder|glenohumeral|knee) effusions?")),
    _blocker("not-lung-lesion", _any(
        r"(?:lytic|blastic|sclerotic|bone|bony|osseous|skin|cutaneous|breast|liver|hepatic|renal|adrenal|"
        r"soft tissue|chest wall|thyroid|osteolytic|expansile) (?:lesions?|mass(?:es)?|nodules?)",
        r"(?:lucent|lucency|osteocartilaginous|cartilaginous|bone|bony) (?:\w+ )?lesions?",
        r"mass effect", r"body mass", r"lesions? of the (?:bone|rib|spine|\w+ vertebra)",
        r"(?:thoracic|pleural|abdominal|peritoneal|chest|body) cavity")),
    _blocker("not-lung-density", _any(
        r"(?:bone|bony|osseous|mineral|breast|soft tissue|metallic|metal|calcific|calcium|fat|fluid|water|radiopaque|"
        r"sclerotic) densit(?:y|ies)", r"retrosternal (?:air ?space|clear space)",
        r"densit(?:y|ies) of the (?:bones?|breasts?)")),
    # Old granulomatous infection (healed tuberculosis / histoplasmosis) is not a pneumonia.
    _blocker("old-infection", _any(
        r"(?:prior |previous |old |remote |healed )?(?:granulomatous|histoplasmosis|tuberculous|fungal) infections?",
        r"(?:prior|previous|old|remote|healed) infections?", r"sequela\w* of (?:\w+ ){0,2}infections?")),
    _blocker("not-edema", _any(
        r"(?:soft tissue|subcutaneous|airway|mucosal|chest wall|facial|peripheral) (?:edema|swelling)")),
    # "Lines and tubes", "lines/tubes" (a report section) name devices; "line" alone is too often not a
    # device (midline, Kerley lines, pleural line); named lines match first.
    _phrase("lines-and-tubes", _any(r"lines?(?:,? and | or | ?& ?| ?/ ?)tubes?",
                                    r"tubes?(?:,? and | or | ?& ?| ?/ ?)lines?"), DEVICES),
    _blocker("not-device", _any(r"breast (?:implants?|prosthes[ie]s)", r"nipple (?:rings?|piercings?)",
                                r"plate ?like", r"plate", r"tube ?like", r"lines?")),
    _blocker("not-atelectasis", _any(r"(?:vertebral|vertebra|compression) (?:body )?(?:collapse|deformity)")),
    _blocker("not-fracture", _any(r"fracture ?risk")),
    # A broken device is a device finding, not a bone fracture.
    _phrase("device-fracture", _any(
        r"(?:(?:central |venous |central venous |tunneled |dialysis )?catheter|line|lead|wire|screw|hardware) "
        r"fractures?",
        r"fractured (?:\w+ ){0,3}?(?:leads?|wires?|catheters?|screws?|hardware)",
        r"(?:screws?|leads?|wires?|hardware|catheter) (?:is|are|appears?) (?:\w+ )?fractured"), DEVICES),
    # --- pleura --------------------------------------------------------------------------------------
    _phrase("hydropneumothorax", r"(?:hydro|hemo|haemo)[\s\-]?pneumothora\w*", PTX, EFFUSION),
    _phrase("pneumothorax", _any(r"pneumothora\w*", r"pleural air(?: collections?)?", r"air in the pleural spaces?",
                                 r"ptx"), PTX),
    _phrase("pleural-parenchymal", _any(r"pleuro ?parenchymal (?:scar\w*|thickening|changes?|densit\w+|opacit\w+|"
                                        r"fibrosis|disease|abnormalit\w+)",
                                        r"pleural parenchymal (?:scar\w*|thickening|changes?|densit\w+|opacit\w+|"
                                        r"fibrosis|disease|abnormalit\w+)"), PLEURAL_OTHER, OPACITY),
    _phrase("pleural-thickening", _any(
        r"pleural (?:thickening|plaques?|calcifications?|scar\w*|reaction|fibrosis|rind|calcified plaques?)",
        r"calcified pleura\w*(?: plaques?)?", r"thickening of the (?:\w+ ){0,2}pleura\w*", r"thickened pleura\w*",
        r"(?:apical )?(?:pleural )?capping", r"apical (?:pleural )?(?:cap|caps|thickening)", r"apical pleural scar\w*",
        r"(?:interlobar )?(?:fissural|fissure) thickening", r"thickening (?:of|in|along) the (?:\w+ ){0,2}fissures?",
        r"thickened (?:\w+ ){0,2}fissures?", r"pleural abnormalit(?:y|ies)",
        r"fibrothorax", r"pleural[\s\-]based (?:opacit\w+|densit\w+|thickening)"), PLEURAL_OTHER),
    _phrase("effusion", _any(
        r"(?:pleural )?effusions?", r"pleural fluid(?: collections?)?", r"hydrothorax", r"ha?emothorax",
        r"(?:fissural|subpulmonic|subpulmonary|loculated|layering) fluid",
        r"fluid (?:in|within|tracking (?:into|along)|along) the (?:\w+ ){0,2}(?:fissures?|pleural spaces?)",
        r"blunt\w* (?:of )?(?:the )?(?:\w+ ){0,2}(?:costophrenic|cp|costodiaphragmatic) " + _ANGLE,
        r"(?:costophrenic|cp) (?:angle |sulcus |xxxx )?blunting",
        r"blunt\w* (?:of )?(?:the )?(?:\w+ ){0,2}(?:sulci|sulcus)"), EFFUSION),
    # --- heart and mediastinum as noun phrases --------------------------------------------------------
    _phrase("cardiomegaly", _any(
        r"cardiomegal\w*", r"cardiac enlargement", r"heart enlargement",
        r"enlarge(?:d|ment of the|ment of) (?:\w+ )?(?:heart|cardiac silhouette|cardiac shadow|cardiac contour)"
        r"(?: size)?",
        r"(?:increased|large) (?:heart|cardiac) (?:size|silhouette|shadow)",
        r"increase in (?:the )?(?:heart size|cardiac size|size of the (?:heart|cardiac silhouette))",
        r"prominent (?:heart|cardiac silhouette|cardiac shadow)",
        r"prominence of the (?:left |right )?(?:heart|cardiac silhouette|cardiac contour)",
        r"(?:left |right |bi)?ventricular (?:enlargement|hypertrophy|prominence)",
        r"(?:left |right |bi)?atrial enlargement",
        r"(?:enlarged|prominent|dilated) (?:left |right )?(?:ventricle|atrium|ventricular contour|atrial contour)",
        r"cardiac (?:silhouette|shadow) enlargement", r"large heart"), CARDIO),
    MentionRule("enlarged-cardiomediastinal", _any(
        r"(?:enlarged|enlarging|widened|widening|prominent|wide) (?:cardio ?mediastinal|cardiac and mediastinal)"
        r"(?: silhouettes?| contours?| shadows?| outlines?)?",
        r"(?:enlarged|enlarging|widened|widening|prominent|wide) cardio ?mediastinum",
        r"cardio ?mediastinal (?:enlargement|widening|prominence)",
        r"(?:enlargement|widening|prominence) of the (?:cardio ?mediastinal|cardiac and mediastinal) "
        r"(?:silhouettes?|contours?|shadows?|outlines?)",
        r"(?:enlargement|widening|prominence) of the cardio ?mediastinum"),
        ((EC, CTX), (CARDIO, UNC))),
    _phrase("widened-mediastinum", _any(
        r"mediastinal (?:widening|enlargement|prominence|fullness)",
        r"(?:widening|enlargement|prominence|fullness) of the (?:\w+ ){0,2}mediastin(?:um|al (?:contours?|silhouettes?|"
        r"shadows?|width|structures))",
        r"(?:widened|enlarged|prominent|wide|widening) (?:upper |superior )?"
        r"mediastin(?:um|al (?:contours?|silhouettes?|shadows?|width|structures))",
        r"(?:prominent|widened|wide|enlarged) (?:right )?"
        r"(?:paratracheal (?:stripe|soft tissues?|contour)|vascular pedicle)",
        r"(?:right )?paratracheal (?:stripe |soft tissue |soft tissues )?(?:prominence|widening|fullness|enlargement)",
        r"(?:prominence|widening|fullness) of the (?:right )?paratracheal (?:stripe|soft tissues?)"), EC),
    # --- parenchyma ---------------------------------------------------------------------------------
    _phrase("edema", _any(
        r"interstitial (?:pulmonary )?edema", r"(?:pulmonary |alveolar |interstitial )?o?edema",
        r"(?:pulmonary )?vascular (?:congestion|engorgement|prominence|redistribution|cephalization|plethora)",
        r"(?:pulmonary|venous|vascular|central vascular|hilar|perihilar) congestion", r"congestion",
        r"congestive (?:heart )?failure", r"heart failure", r"chf", r"fluid overload", r"volume overload",
        r"cephalization", r"kerley (?:b )?lines", r"(?:increased|prominent|engorged|congested|indistinct|cephalized) "
        r"(?:pulmonary |lung )?(?:vascularity|vasculature|vascular markings|vessels)"), EDEMA),
    _phrase("consolidation", _any(r"air ?space consolidat\w*", r"consolidat\w*"), CONSOLIDATION),
    _phrase("pneumonia", _any(r"(?:broncho)?pneumoni(?:a|as|c)", r"pneumonitis", r"infections?", r"infectious",
                              r"infective"), PNEUMONIA),
    _phrase("atelectasis", _any(
        r"atelecta\w*", r"(?:lobar|lobe|lung|segmental|subsegmental) collapse",
        r"collapse of the (?:\w+ ){0,3}(?:lobe|lung|segment)", r"collapsed (?:\w+ )?(?:lung|lobe|segment)"),
        ATELECTASIS),
    # A nodular or round opacity is a nodule (CheXpert: "nodular density" is a Lung Lesion) and an opacity.
    _phrase("nodular-opacity", _any(
        r"(?:nodular|fibronodular|round|rounded|circular|ovoid|oval|spherical|masslike|mass like) "
        r"(?:(?!pleura|sclerotic|calcific|bony|osseous|metallic|radiopaque)\w+ ){0,2}?"
        r"(?:opacit\w+|densit(?:y|ies)|infiltrat\w+|scar\w*|thickening)", r"fibronodular"), LESION, OPACITY),
    _phrase("lung-lesion", _any(
        r"nodul\w*", r"mass(?:es)?", r"(?:lung |pulmonary |cavitary |parenchymal )?lesions?", r"tumou?rs?",
        r"neoplasm\w*", r"malignan\w+", r"carcinoma", r"cancer", r"metasta\w+", r"cavitary \w+",
        r"cavitation", r"cavit(?:y|ies)"), LESION),
    _phrase("lung-opacity", _any(
        r"opaci\w+", r"densit(?:y|ies)", r"infiltrat\w+", r"air ?space (?:disease|process|filling)",
        r"(?:interstitial|reticular|reticulonodular|reticulo nodular) (?:markings?|opacit\w+|prominence|pattern|"
        r"changes?|thickening|densit\w+|infiltrat\w+|process|disease|lung disease|abnormalit\w+|fibrosis|scar\w*)",
        r"(?:increased|prominent|coarse|coarsened|accentuated|chronic) (?:interstitial |lung |pulmonary )?markings",
        r"(?:prominence|increase|accentuation|coarsening) (?:of|in) (?:the )?(?:\w+ )?"
        r"(?:interstitial |lung |pulmonary )?"
        r"(?:markings|interstitium)", r"(?:prominent|thickened|coarse) (?:pulmonary )?interstitium",
        r"reticulation", r"reticular", r"reticulonodular", r"scar\w*", r"fibros\w+", r"fibrotic", r"ground ?glass",
        r"haziness", r"hazy", r"peribronchial (?:thickening|cuffing)", r"bronchial wall thickening",
        r"decreased (?:translucency|lucency)"), OPACITY),
    # --- bones ----------------------------------------------------------------------------------------
    _phrase("fracture", _any(r"fractur\w*", r"fx"), FRACTURE),
    # --- devices --------------------------------------------------------------------------------------
    _phrase("support-devices", _any(
        r"pace ?makers?", r"pacers?", r"aicds?", r"icds?", r"defibrillators?", r"cardioverter",
        r"(?:pacing|pacer|cardiac|transvenous|epicardial|monitoring|ekg|ecg|telemetry|defibrillator|icd|aicd) "
        r"(?:leads?|wires?|electrodes?|generators?|devices?)",
        r"(?:sternotomy|sternal|cerclage|surgical|epicardial|median sternotomy) (?:wires?|sutures?|clips?|staples?)",
        r"(?:surgical )?clips?", r"staples?", r"sutures?", r"catheters?", r"picc(?: lines?)?",
        r"(?:central|venous|central venous|arterial|swan ganz|subclavian|jugular|ij|femoral|dialysis|hemodialysis) "
        r"(?:venous )?(?:lines?|catheters?)",
        r"port ?a ?caths?", r"portacaths?", r"mediports?", r"(?:power |chest |venous |infusion )?ports?",
        r"(?:endotracheal|tracheostomy|trach|et|ett|nasogastric|ng|orogastric|og|feeding|enteric|dobhoff|chest|"
        r"thoracostomy|gastrostomy|drainage|pigtail) tubes?", r"tubes?", r"(?:pigtail |chest |surgical )?drains?",
        r"stents?", r"shunts?", r"(?:ivc|caval|vena cava) filters?",
        r"(?:prosthetic|mechanical|bioprosthetic|replaced|artificial) (?:\w+ )?valves?",
        r"valve (?:replacement|prosthesis|prostheses)", r"annuloplasty(?: rings?)?",
        r"(?:orthopedic |surgical |fixation |spinal |fusion |postsurgical |postoperative )?hardware",
        r"(?:fixation|stabilization|fusion) (?:plates?|screws?|rods?|devices?)", r"screws?", r"rods?",
        r"prosthes[ei]s", r"arthroplast\w+", r"(?:support |medical )?devices?", r"loop recorders?",
        r"(?:event|cardiac) monitors?",
        r"generators?", r"lvad", r"ventricular assist devices?", r"(?:intra ?aortic )?balloon pump", r"iabp",
        r"electrodes?", r"wires?", r"coils?", r"leads", r"(?:graft|bypass|surgical|cabg) markers?",
        r"(?:neuro ?|spinal cord |spinal |vagal nerve |vagus nerve |nerve |deep brain |bone growth )?stimulators?",
        r"tracheostomy", r"(?:bone )?anchors", r"occluders?", r"(?:internal )?fixation",
        # a tip positioned in a central vein, the heart or the stomach belongs to a line or tube, even
        # where the device's name was lost to de-identification ("right chest XXXX with tip in the SVC")
        r"tips? (?:\w+ ){0,7}?(?:svc|superior vena cava|cavoatrial|caval ?atrial|cavo ?atrial|atriocaval|"
        r"right atrium|brachiocephalic|stomach|right ventricle)"), DEVICES),
)

RULES: tuple[MentionRule, ...] = tuple(
    form for rule in _RULES for form in ((rule, _colon_form(rule)) if rule.clausal else (rule,))
)


def compile_rules(rules: tuple[MentionRule, ...] = RULES) -> re.Pattern[str]:
    """One alternation, each rule a named group r<index> (its predicate groups r<index>_pos/_neg/_unc)."""
    parts = []
    for index, rule in enumerate(rules):
        body = rule.pattern.replace("(?P<pos>", f"(?P<r{index}_pos>").replace("(?P<neg>", f"(?P<r{index}_neg>")
        body = body.replace("(?P<unc>", f"(?P<r{index}_unc>")
        parts.append(f"(?P<r{index}>{body})")
    return re.compile(r"(?<![\w])(?:" + "|".join(parts) + r")(?![\w])")
