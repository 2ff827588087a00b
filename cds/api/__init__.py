"""CDS Hooks 2.0 service for the HER2 engine: ``create_app(Settings(...))`` or ``cds serve``."""

from cds.api.app import create_app
from cds.api.settings import Settings, TrustedIssuer

__all__ = ["Settings", "TrustedIssuer", "create_app"]
