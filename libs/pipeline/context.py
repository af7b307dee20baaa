"""What a step needs from its process: settings, the database and (for inference) the loaded bundle."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from libs.core.config import Settings, get_settings
from libs.storage.db import get_engine, upgrade_schema

if TYPE_CHECKING:
    from libs.bundle.runner import BundleRunner


@dataclass
class PipelineContext:
    settings: Settings
    engine: Engine
    _runner: "BundleRunner | None" = field(default=None, repr=False)
    _runner_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings | None = None, *, migrate: bool = True) -> "PipelineContext":
        settings = settings or get_settings()
        engine = get_engine(settings.sqlalchemy_url)
        if migrate:
            upgrade_schema(engine)
        return cls(settings=settings, engine=engine)

    @property
    def runner(self) -> "BundleRunner":
        """The bundle is loaded once per process, on first use (only the inference service pays for it)."""
        with self._runner_lock:
            if self._runner is None:
                from libs.bundle.runner import BundleRunner

                self._runner = BundleRunner(self.settings.bundle_path)
            return self._runner
