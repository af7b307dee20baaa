"""The reconciler service: re-enqueues jobs whose queue message was lost (`python -m services.reconciler`)."""
