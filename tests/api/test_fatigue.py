"""Alert fatigue: patient-view shows actionable cards only (info cards on request), and a card
overridden with a reason stays quiet for the same patient, rule version and basis values for a
configurable period (pinned clock), returning at once when a value changes or severity rises."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from cds.cli import app as cli_app
from cds.findings.cards import CARD_EXTENSION

from .conftest import FhirSide, Service, running_service
from .helpers import FhirData, Sample, card_codes, hook_body, prefetch_for

JSON = dict[str, Any]
PV = "her2-therapy-review"
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def quiet(
    tmp_path_factory: pytest.TempPathFactory, fhir_side: FhirSide, templates: dict[str, str]
) -> Iterator[Service]:
    with running_service(
        tmp_path_factory.mktemp("quiet"), fhir_side, templates, override_quiet_days=7.0
    ) as s:
        yield s


@pytest.fixture(scope="module")
def chatty(
    tmp_path_factory: pytest.TempPathFactory, fhir_side: FhirSide, templates: dict[str, str]
) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("chatty"), fhir_side, templates, info_cards=(PV,)) as s:
        yield s


def _view(service: Service, prefetch: JSON, patient_id: str) -> JSON:
    response = service.call(PV, hook_body("patient-view", patient_id, prefetch=prefetch))
    assert response.status_code == 200, response.text
    body: JSON = response.json()
    return body


def _feedback(service: Service, item: JSON) -> None:
    token = service.es384.token(service.url(PV, "/feedback"))
    response = service.client.post(
        service.url(PV, "/feedback"),
        content=orjson.dumps({"feedback": [item]}),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text


def _platelets(prefetch: JSON, value: float) -> JSON:
    changed = copy.deepcopy(prefetch)
    for entry in changed["labObservations"]["entry"]:
        if entry["resource"]["id"] == "tdm1-platelets-grade3-obs17":
            entry["resource"]["valueQuantity"]["value"] = value
    return changed


def test_info_cards_only_on_request(
    service: Service, chatty: Service, samples: dict[str, Sample], fhir_data: FhirData
) -> None:
    s = samples["mbc-on-therapy-stable"]
    assert s.expected == ["info.on-therapy"]
    prefetch = prefetch_for(fhir_data, service.templates, s.patient_id)
    assert _view(service, prefetch, s.patient_id) == {"cards": []}
    assert card_codes(_view(chatty, prefetch, s.patient_id)) == ["info.on-therapy"]


def test_override_with_reason_quiets_the_card_until_a_value_changes_or_the_period_ends(
    quiet: Service, samples: dict[str, Sample], fhir_data: FhirData
) -> None:
    s = samples["tdm1-platelets-grade3"]
    code = "alert.tdm1.platelets-grade3"
    prefetch = prefetch_for(fhir_data, quiet.templates, s.patient_id)
    quiet.runtime.clock = lambda: T0
    (card,) = [
        c
        for c in _view(quiet, prefetch, s.patient_id)["cards"]
        if c["extension"][CARD_EXTENSION]["codes"] == [code]
    ]
    _feedback(
        quiet,
        {
            "card": card["uuid"],
            "outcome": "overridden",
            "outcomeTimestamp": "2026-11-01T09:01:00Z",
            "overrideReason": {"reason": card["overrideReasons"][1]},
        },
    )
    quiet.runtime.clock = lambda: T0 + timedelta(days=6, hours=23)
    assert code not in card_codes(_view(quiet, prefetch, s.patient_id))
    metrics = quiet.client.get(f"{quiet.base}/metrics").text
    assert f'cds_hooks_cards_suppressed_total{{code="{code}",service="{PV}"}} 1.0' in metrics
    # a basis value changes (still grade 3): a new card at once
    changed = _view(quiet, _platelets(prefetch, 40.0), s.patient_id)
    assert code in card_codes(changed)
    # severity rises (grade 4): shown at once
    assert "alert.tdm1.platelets-grade4" in card_codes(_view(quiet, _platelets(prefetch, 20.0), s.patient_id))
    # the period ends: the same card is back
    quiet.runtime.clock = lambda: T0 + timedelta(days=7, minutes=1)
    assert code in card_codes(_view(quiet, prefetch, s.patient_id))
    report = CliRunner().invoke(
        cli_app, ["feedback", "report", "--database-url", quiet.settings.database_url, "--format", "json"]
    )
    assert report.exit_code == 0, report.output
    row = next(r for r in orjson.loads(report.stdout) if r["rule"] == code)
    assert row["suppressed"] == 1
    assert row["overridden"] == 1


def test_plain_dismiss_does_not_quiet_and_reads_dismissed_no_reason(
    quiet: Service, samples: dict[str, Sample], fhir_data: FhirData
) -> None:
    s = samples["tdm1-lvef-hold"]
    prefetch = prefetch_for(fhir_data, quiet.templates, s.patient_id)
    quiet.runtime.clock = lambda: T0
    body = _view(quiet, prefetch, s.patient_id)
    card = next(c for c in body["cards"] if c["extension"][CARD_EXTENSION]["kind"] == "alert")
    code = card["extension"][CARD_EXTENSION]["codes"][0]
    _feedback(
        quiet,
        {
            "card": card["uuid"],
            "outcome": "overridden",
            "outcomeTimestamp": "2026-11-01T09:02:00Z",
            "overrideReason": {"userComment": "seen"},
        },
    )
    quiet.runtime.clock = lambda: T0 + timedelta(days=1)
    assert code in card_codes(_view(quiet, prefetch, s.patient_id))
    report = CliRunner().invoke(
        cli_app, ["feedback", "report", "--database-url", quiet.settings.database_url, "--format", "json"]
    )
    row = next(r for r in orjson.loads(report.stdout) if r["code"] == code)
    assert row["top_override_reasons"] == [{"reason": "dismissed, no reason", "count": 1}]
