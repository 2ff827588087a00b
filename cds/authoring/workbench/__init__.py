"""``cds workbench``: the pharmacist's local web page for rules, knowledge and review.

``create_app(rules_dir, cohort_dir)`` is the ASGI application (guarded: see ``security``).
"""

from cds.authoring.workbench.app import create_app

__all__ = ["create_app"]
