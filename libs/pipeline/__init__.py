"""The report pipeline as four small steps (ingest → infer → format → review) over a queue contract.

The same step functions run in Celery workers (one per service, over Redis) and in one process
(`cxr-report run`, in-process queue); only the Dispatcher differs.
"""
