"""The formatting service: a Celery worker consuming the `formatting` queue."""
