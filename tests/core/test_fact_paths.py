"""Reading a fact by its dotted path: the compiled reader gives what walking the model gives."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from cds import Evaluator, RuleLibrary, parse_as_of, raw_patient_from_path
from cds.facts.model import Exposures, PatientFacts, leaf_paths
from tests.conftest import SAMPLES


def walk(facts: PatientFacts, path: str) -> Any:
    """The value at ``path`` by walking the live model (isinstance at every step)."""
    node: Any = facts
    annotation: Any = None
    for part in path.split("."):
        if isinstance(node, Exposures) and part not in type(node).model_fields:
            node = node.agent(part)
        elif isinstance(node, BaseModel):
            fields = type(node).model_fields
            if part not in fields:
                raise KeyError(path)
            annotation = fields[part].annotation
            node = getattr(node, part)
        elif isinstance(node, dict):
            if part in node:
                node = node[part]
            else:
                value_type = annotation.__args__[1]
                node = False if value_type is bool else 0 if value_type is int else None
        else:
            raise KeyError(path)
    return node


def test_every_leaf_path_reads_the_same_as_walking_the_model(
    evaluator: Evaluator, library: RuleLibrary
) -> None:
    paths = list(leaf_paths(agents=library.catalogue.agent_ids()))
    for name in ("tdm1-platelets-not-recovered", "mbc-second-line", "ebc-residual-tdxd", "her2-discordant"):
        facts = evaluator.evaluate(
            raw_patient_from_path(SAMPLES / f"{name}.json"), as_of=parse_as_of("2026-11-01")
        ).facts
        for path in paths:
            assert facts.get(path) == walk(facts, path), path


@pytest.mark.parametrize("path", ["labs.nope", "labs.platelets.value.more", "nope", "exposure.tdm1.nope"])
def test_an_unknown_path_is_a_key_error(path: str) -> None:
    with pytest.raises(KeyError):
        PatientFacts().get(path)
