"""The sample responses in docs/cds-hooks.md are what the service answers today: the card uuid,
summary, first words of the detail, source label and rule version shown for each sample are read
from a real call, so the guide cannot drift from the wire (the feedback example posts a uuid the
service really issued)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .conftest import Service
from .helpers import FhirData, Sample, hook_body, prefetch_for

DOC = Path(__file__).resolve().parents[2] / "docs" / "cds-hooks.md"


def _section(title: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"### {title}\n")
    end = text.find("\n### ", start + 1)
    return text[start:end]


def _card(cards: list[dict[str, Any]], code: str) -> dict[str, Any]:
    return next(c for c in cards if c["extension"]["org.her2-cds.finding"]["codes"] == [code])


def _shown(card: dict[str, Any]) -> list[str]:
    """The fragments of a card the guide quotes verbatim."""
    rule = card["extension"]["org.her2-cds.finding"]["rules"][0]
    return [
        f'"uuid": "{card["uuid"]}"',
        f'"summary": {json.dumps(card["summary"], ensure_ascii=False)}',
        f'"label": {json.dumps(card["source"]["label"], ensure_ascii=False)}',
        f'"version": "{rule["version"]}"',
        f'"detail": {json.dumps(card["detail"].split(". ")[0], ensure_ascii=False)[:-1]}',
    ]


def test_patient_view_sample_card_is_the_real_card(
    service: Service, samples: dict[str, Sample], fhir_data: FhirData
) -> None:
    sample = samples["mbc-second-line"]
    prefetch = prefetch_for(fhir_data, service.templates, sample.patient_id)
    response = service.call(
        "her2-therapy-review", hook_body("patient-view", sample.patient_id, prefetch=prefetch)
    )
    card = _card(response.json()["cards"], "rec.mbc2.tdxd")
    section = _section("patient-view")
    assert [s for s in _shown(card) if s not in section] == []


def test_order_sign_sample_card_and_feedback_use_the_real_card(
    service: Service, samples: dict[str, Sample], fhir_data: FhirData
) -> None:
    sample = samples["order-tdm1-name-confusion"]
    prefetch = prefetch_for(fhir_data, service.templates, sample.patient_id)
    body = hook_body("order-sign", sample.patient_id, prefetch=prefetch, order=sample.order)
    cards = service.call("her2-order-sign", body).json()["cards"]
    card = _card(cards, "order.name-confusion")
    assert [s for s in _shown(card) if s not in _section("order-sign")] == []
    feedback = _section("Feedback")
    assert re.findall(r'"card": "([0-9a-f-]+)"', feedback) == [card["uuid"]]
