"""Queue contracts: small typed messages carrying ids and file paths, never pixel data."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict


class Step(str, Enum):
    INGESTION = "ingestion"
    INFERENCE = "inference"
    FORMATTING = "formatting"
    QA = "qa"

    @property
    def task_name(self) -> str:
        return f"cxr.{self.value}"


class StepMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: str
    priority: str = "routine"
    # Where the previous step left its product (the preprocessed .npy for inference), for logs and
    # for a worker on another host that shares the data volume; the job row stays the source of truth.
    image_path: str | None = None


# A radiologist's corrected findings to write a draft from again (libs/feedback/corrections.py): sent on
# the inference queue, where the model is loaded. Not a pipeline step: the job's state does not change.
REGENERATE_TASK = "cxr.regenerate"


class CorrectionMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    correction_id: str
