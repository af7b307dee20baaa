"""The inference service: a Celery worker consuming the `inference` queue."""
