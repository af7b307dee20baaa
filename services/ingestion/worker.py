"""Registers the ingestion step as a Celery task (`celery -A services.ingestion.worker worker -Q ingestion`)."""

from libs.pipeline.messages import Step
from libs.queue.celery_app import celery_app, register_step_task

app = celery_app()
process = register_step_task(app, Step.INGESTION)
