"""What arrived from the PACS: a study made of DICOM instances, each with the view it shows."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from pydantic import BaseModel, Field


class View(str, Enum):
    PA = "PA"
    AP = "AP"
    LATERAL = "LATERAL"
    UNKNOWN = "UNKNOWN"

    @property
    def is_frontal(self) -> bool:
        return self in (View.PA, View.AP)


class Instance(BaseModel):
    """One stored DICOM instance. Holds no patient identifiers: only UIDs, geometry and where the file is."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    modality: str
    view: View = View.UNKNOWN
    rows: int | None = None
    columns: int | None = None
    transfer_syntax_uid: str | None = None
    path: Path | None = None


class Study(BaseModel):
    study_uid: str
    instances: list[Instance] = Field(default_factory=list)

    def frontal_choice(self) -> Instance | None:
        """The image the model reads: PA before AP before a view we could not tell; never a lateral."""
        ranked = sorted(
            (i for i in self.instances if i.view is not View.LATERAL),
            key=lambda i: {View.PA: 0, View.AP: 1, View.UNKNOWN: 2}[i.view],
        )
        return ranked[0] if ranked else None
