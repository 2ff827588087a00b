"""CDS Hooks 2.0 service for the HER2 engine: ``create_app(Settings(...))`` or ``cds serve``.

``create_app`` is imported on first use (PEP 562), so ``cds --help`` does not load FastAPI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cds.api.settings import Settings, TrustedIssuer

if TYPE_CHECKING:
    from cds.api.app import create_app

__all__ = ["Settings", "TrustedIssuer", "create_app"]


def __getattr__(name: str) -> Any:
    """``create_app`` from ``cds.api.app``, imported on first use."""
    if name == "create_app":
        from cds.api.app import create_app

        return create_app
    raise AttributeError(f"module 'cds.api' has no attribute {name!r}")
