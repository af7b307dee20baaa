"""Celery over Redis: the transport between the services."""
