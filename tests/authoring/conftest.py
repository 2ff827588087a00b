"""Fixtures of the authoring tests: a real workbench on loopback (see tests/workbench_server.py)."""

from tests.workbench_server import workbench

__all__ = ["workbench"]
