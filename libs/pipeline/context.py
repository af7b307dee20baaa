"""What a step needs from its process: settings, the database and (for inference) the loaded bundle."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from libs.core.config import Settings, get_settings
from libs.storage.db import get_engine, upgrade_schema

if TYPE_CHECKING:
    import numpy as np

    from libs.bundle.runner import BundleRunner
    from libs.domain.context import ClinicalContext
    from libs.domain.model_output import ModelOutput
    from libs.lifecycle.registry import ModelVersion
    from libs.lifecycle.routing import Deployment, DeploymentCache
    from libs.observability.runtime_status import InferenceStatus
    from libs.runtime.batcher import DynamicBatcher


@dataclass
class PipelineContext:
    settings: Settings
    engine: Engine
    _runner: "BundleRunner | None" = field(default=None, repr=False)  # the production runner last loaded
    _runners: dict = field(default_factory=dict, repr=False)  # model id ("configured": the bundle) -> runner
    _deployments: "DeploymentCache | None" = field(default=None, repr=False)
    _batcher_runner: "BundleRunner | None" = field(default=None, repr=False)
    _batcher: "DynamicBatcher | None" = field(default=None, repr=False)
    _runner_lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings | None = None, *, migrate: bool = True) -> "PipelineContext":
        settings = settings or get_settings()
        engine = get_engine(settings.sqlalchemy_url)
        if migrate:
            upgrade_schema(engine)
        return cls(settings=settings, engine=engine)

    @property
    def deployment(self) -> "Deployment":
        """Production and the model in trial, from the registry (read every few seconds at most)."""
        from libs.lifecycle.routing import DeploymentCache

        if self._deployments is None:
            self._deployments = DeploymentCache()
        return self._deployments.get(self.engine, self.settings)

    @property
    def runner(self) -> "BundleRunner":
        """The production model's runner: the registry's production, else the configured bundle. Loaded
        once per process, on first use (only the inference service pays for it)."""
        runner = self.runner_for(self.deployment.production)
        if runner is not self._runner:  # the first load, or a promotion / rollback since the last study
            from libs.observability import metrics, runtime_status

            with self._runner_lock:
                self._runner = runner
            metrics.record_providers(runner.model_name, runner.model_version, list(runner.providers))
            runtime_status.publish_local(self.runtime_status())
        return runner

    def runner_for(self, model: "ModelVersion | None") -> "BundleRunner":
        """The runner of a registered model (its registry copy, checked against its hash when first loaded),
        or of the configured bundle for None."""
        key = model.id if model is not None else "configured"
        with self._runner_lock:
            if key not in self._runners:
                from libs.bundle.runner import BundleRunner
                from libs.lifecycle.registry import verified_path

                s = self.settings
                path = verified_path(model) if model is not None else s.bundle_path
                wanted = [p.strip() for p in (s.execution_providers or "").split(",") if p.strip()] or None
                self._runners[key] = BundleRunner(path, wanted, num_beams=s.num_beams,
                                                  cache_dir=s.provider_cache_dir or s.data_dir / "provider-cache")
            return self._runners[key]

    def runtime_status(self) -> "InferenceStatus":
        """What this process's inference runs on (for /readyz and the worker's heartbeat)."""
        from libs.observability.runtime_status import InferenceStatus, worker_name

        runner = self._runner or self.runner
        size, delay = self.batch_limits(runner) if self.settings.batching else (None, None)
        return InferenceStatus(worker=worker_name(), model_name=runner.model_name,
                               model_version=runner.model_version, providers=list(runner.providers),
                               batching=self.settings.batching, max_batch_size=size, max_queue_delay_ms=delay,
                               num_beams=runner.num_beams)

    def batch_limits(self, runner: "BundleRunner | None" = None) -> tuple[int, float]:
        """(max_batch_size, max_queue_delay_ms): the environment overrides the bundle's manifest."""
        manifest = (runner or self.runner).manifest.batching
        size = self.settings.max_batch_size or manifest.max_batch_size
        delay = self.settings.max_queue_delay_ms
        return size, manifest.max_queue_delay_ms if delay is None else delay

    def predict(self, image: "np.ndarray", priority: str = "routine",
                context: "ClinicalContext | None" = None, model: "ModelVersion | None" = None) -> "ModelOutput":
        """One image (and its clinical context, which conditions the report text) through a model (None:
        production): production via the dynamic batcher when batching is on, anything else directly."""
        runner = self.runner_for(model) if model is not None else self.runner
        if not self.settings.batching or runner is not self.runner:
            return runner.predict(image[None], [context])[0]
        from libs.runtime.batcher import PRIORITY_ROUTINE, PRIORITY_STAT

        rank = PRIORITY_STAT if priority == "stat" else PRIORITY_ROUTINE
        return self.batcher.submit((image, context), rank).result()

    @property
    def batcher(self) -> "DynamicBatcher":
        """The production runner's batcher; a promotion gets a new one (the old one finishes its queue)."""
        runner = self.runner
        old = None
        with self._runner_lock:
            if self._batcher is not None and self._batcher_runner is not runner:
                old, self._batcher = self._batcher, None
            if self._batcher is None:
                import numpy as np

                from libs.runtime.batcher import DynamicBatcher

                size, delay = self.batch_limits(runner)
                self._batcher = DynamicBatcher(
                    lambda items: runner.predict(np.stack([image for image, _ in items]),
                                                 [context for _, context in items]),
                    max_batch_size=size, max_queue_delay_ms=delay, name="inference-batcher",
                )
                self._batcher_runner = runner
            batcher = self._batcher
        if old is not None:
            old.close()
        return batcher

    def close(self) -> None:
        """Graceful shutdown: queued inference finishes before the process exits."""
        with self._runner_lock:
            batcher, self._batcher = self._batcher, None
        if batcher is not None:
            batcher.close()
