"""The qa service: a Celery worker consuming the `qa` queue."""
