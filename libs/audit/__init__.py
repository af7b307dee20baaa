"""The audit trail: who did what to which resource, when, from where, with what outcome."""

from libs.audit.trail import AuditRecord, append, search, verify

__all__ = ["AuditRecord", "append", "search", "verify"]
