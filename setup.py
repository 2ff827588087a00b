"""Packaging glue that pyproject.toml cannot express on its own.

The top-level ``rules/`` folder stays the one editable source of the rule sets, value sets and
catalogue; the wheel ships it inside the package as ``cds/bundled_rules`` (package data, read
through ``importlib.resources`` by ``cds.config``), so nothing is copied in the repository.
"""

from setuptools import find_namespace_packages, find_packages, setup

# rules/ and each folder in it (valuesets/, changelogs/, ...) as data-only packages under cds
RULE_PACKAGES = ["cds.bundled_rules", *(f"cds.bundled_rules.{p}" for p in find_namespace_packages("rules"))]

setup(
    packages=[*find_packages(include=["cds", "cds.*"]), *RULE_PACKAGES],
    package_dir={"cds.bundled_rules": "rules"},
    package_data={
        "cds": ["py.typed", "api/migrations/script.py.mako", "authoring/workbench/static/*"],
        **{p: ["*.yaml", "*.yml", "*.md"] for p in RULE_PACKAGES},
    },
)
