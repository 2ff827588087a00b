"""The HTTP routes, one module per surface; each handler is thin: read, delegate, answer."""

from cds.api.routes import discovery, docs, feedback, operations, services

__all__ = ["discovery", "docs", "feedback", "operations", "services"]
