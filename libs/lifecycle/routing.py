"""Which model drafts a study: the deployment (production, and a model in trial) read from the registry,
and the canary's deterministic assignment.

- No registered production model: the configured bundle (CXR_BUNDLE_PATH) serves, as before the registry.
- A canary: `canary_share` of studies, chosen by a hash of the Study Instance UID (not random per
  message), so a retry, a redelivered message or a second job for the same study stays in the same arm.
- After the served model, the inference step runs the other one (libs/lifecycle/trial.py): the shadow
  candidate on every study, or during a canary the model of the other arm, so that every trial study has
  both models' outputs for the paired comparison.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from libs.core.config import Settings
from libs.lifecycle import registry

PRODUCTION_ARM, CANARY_ARM = "production", "canary"
_CACHE_S = 5.0  # a promotion reaches every worker within this long


@dataclass(frozen=True)
class Deployment:
    production: registry.ModelVersion | None  # None: the configured bundle
    trial: registry.ModelVersion | None  # in shadow or canary
    canary_share: float

    @property
    def canary(self) -> registry.ModelVersion | None:
        return self.trial if self.trial is not None and self.trial.state == registry.CANARY else None

    def production_path(self, settings: Settings) -> Path:
        return self.production.path if self.production is not None else settings.bundle_path


def in_canary(study_uid: str, share: float) -> bool:
    """The study's arm: the first 8 bytes of SHA-256(study UID) as a fraction of 2^64, below `share`."""
    value = int.from_bytes(hashlib.sha256(study_uid.encode()).digest()[:8], "big") / 2.0**64
    return value < share


def read(engine: Engine, settings: Settings) -> Deployment:
    trial = registry.in_state(engine, registry.CANARY) or registry.in_state(engine, registry.SHADOW)
    return Deployment(production=registry.in_state(engine, registry.PRODUCTION), trial=trial,
                      canary_share=settings.canary_share)


class DeploymentCache:
    """read() at most every few seconds per process: the inference step asks for every study."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: Deployment | None = None
        self._at = 0.0

    def get(self, engine: Engine, settings: Settings) -> Deployment:
        with self._lock:
            if self._value is None or time.monotonic() - self._at > _CACHE_S:
                self._value, self._at = read(engine, settings), time.monotonic()
            return self._value

    def clear(self) -> None:
        with self._lock:
            self._value = None


def served(deployment: Deployment, study_uid: str) -> tuple[registry.ModelVersion | None, str]:
    """(the model that drafts this study (None: production from the configured bundle), its arm)."""
    canary = deployment.canary
    if canary is not None and in_canary(study_uid, deployment.canary_share):
        return canary, CANARY_ARM
    return deployment.production, PRODUCTION_ARM


def other(deployment: Deployment, arm: str) -> registry.ModelVersion | None:
    """The model to run after the served one: the trial model on production studies, production on canary
    studies (None: no trial, or production is the configured bundle on a canary study)."""
    if deployment.trial is None:
        return None
    return deployment.trial if arm == PRODUCTION_ARM else deployment.production
