"""Registers the inference step as a Celery task (`celery -A services.inference.worker worker -Q inference`)."""

from libs.pipeline.messages import Step
from libs.queue.celery_app import celery_app, register_regenerate_task, register_step_task

app = celery_app()
process = register_step_task(app, Step.INFERENCE)
regenerate = register_regenerate_task(app)  # the workstation's correction task, also on this queue
