"""The flow reads one way: fhir -> facts -> engine -> findings -> surfaces (checked on imports)."""

from __future__ import annotations

import ast
from pathlib import Path

import cds
from tests.conftest import ROOT

PKG = ROOT / "cds"
# package -> packages it must never import (lower layers never import higher ones)
FORBIDDEN = {
    "cds.fhir": (
        "cds.facts",
        "cds.engine",
        "cds.findings",
        "cds.evaluate",
        "cds.api",
        "cds.cohort",
        "cds.authoring",
    ),
    "cds.facts": ("cds.engine", "cds.findings", "cds.evaluate", "cds.api", "cds.cohort", "cds.authoring"),
    "cds.engine": ("cds.findings", "cds.evaluate", "cds.api", "cds.cohort", "cds.authoring"),
    "cds.findings": ("cds.evaluate", "cds.cohort", "cds.authoring"),
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def test_lower_layers_never_import_higher_ones() -> None:
    for path in sorted(PKG.rglob("*.py")):
        module = _module(path)
        for layer, banned in FORBIDDEN.items():
            if module == layer or module.startswith(layer + "."):
                bad = sorted(i for i in _imports(path) for b in banned if i == b or i.startswith(b + "."))
                assert not bad, f"{module} imports {bad}"


def test_durable_rules_only_in_its_adapter_and_fhir_resources_only_in_the_fhir_layer() -> None:
    for path in sorted(PKG.rglob("*.py")):
        module = _module(path)
        imports = _imports(path)
        if any(i == "durable" or i.startswith("durable.") for i in imports):
            assert module == "cds.engine.durable", module
        if any(i.startswith("fhir.resources") for i in imports):
            assert module.startswith("cds.fhir."), module


def test_public_api_is_sorted_and_importable() -> None:
    assert cds.__all__ == sorted(cds.__all__)
    for name in cds.__all__:
        assert getattr(cds, name) is not None
