"""The ingestion service: a Celery worker consuming the `ingestion` queue."""
