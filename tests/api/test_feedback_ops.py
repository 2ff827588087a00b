"""Feedback (idempotent, tied to rule and version), the report, audit rows, metrics, health, logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from typer.testing import CliRunner

from cds.cli import app as cli_app
from cds.findings.cards import CARD_EXTENSION

from .conftest import Service
from .helpers import FhirData, Sample, hook_body, prefetch_for

ORD = "her2-order-safety"


def _cards(service: Service, samples: dict[str, Sample], fhir_data: FhirData) -> list[dict[str, Any]]:
    s = samples["order-tdm1-name-confusion"]
    body = hook_body(
        "order-sign",
        s.patient_id,
        prefetch=prefetch_for(fhir_data, service.templates, s.patient_id),
        order=s.order,
    )
    response = service.call(ORD, body)
    assert response.status_code == 200
    return list(response.json()["cards"])


def _send(service: Service, items: list[dict[str, Any]], aud_suffix: str = "/feedback") -> Any:
    token = service.es384.token(service.url(ORD, aud_suffix))
    return service.client.post(
        service.url(ORD, "/feedback"),
        content=orjson.dumps({"feedback": items}),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )


def test_feedback_is_stored_idempotently_and_reported(
    service: Service, samples: dict[str, Sample], fhir_data: FhirData, tmp_path: Any
) -> None:
    cards = _cards(service, samples, fhir_data)
    confusion = next(c for c in cards if c["extension"][CARD_EXTENSION]["codes"] == ["order.name-confusion"])
    out_of_range = next(
        c for c in cards if c["extension"][CARD_EXTENSION]["codes"] == ["order.dose-out-of-range"]
    )
    reason = confusion["overrideReasons"][0]
    items = [
        {
            "card": confusion["uuid"],
            "outcome": "overridden",
            "outcomeTimestamp": "2026-11-01T10:05:31Z",
            "overrideReason": {"reason": reason, "userComment": "discussed with patient Jane"},
        },
        {
            "card": out_of_range["uuid"],
            "outcome": "accepted",
            "outcomeTimestamp": "2026-11-01T10:05:32Z",
            "acceptedSuggestions": [{"id": out_of_range["suggestions"][0]["uuid"]}],
        },
    ]
    first = _send(service, items)
    assert first.status_code == 200, first.text
    assert first.json() == {"stored": 2, "duplicates": 0}
    again = _send(service, items, aud_suffix="")  # the service URL is also accepted as aud
    assert again.json() == {"stored": 0, "duplicates": 2}

    runner = CliRunner()
    result = runner.invoke(
        cli_app, ["feedback", "report", "--database-url", service.settings.database_url, "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    rows = {(r["rule"], r["version"]): r for r in orjson.loads(result.stdout)}
    confusion_row = rows[("order.name-confusion", "2.1.0")]
    assert confusion_row["overridden"] == 1 and confusion_row["accepted"] == 0
    assert confusion_row["override_rate"] == 1.0
    assert confusion_row["top_override_reasons"] == [{"reason": reason["code"], "count": 1}]
    assert confusion_row["shown"] >= 1
    above = rows[("order.dose-above-max", "2.1.0")]
    assert (above["accepted"], above["overridden"], above["override_rate"]) == (1, 0, 0.0)
    table = runner.invoke(cli_app, ["feedback", "report", "--database-url", service.settings.database_url])
    assert "order.name-confusion" in table.stdout and "100%" in table.stdout
    # the free-text comment may hold PHI: it is not stored
    db = Path(service.settings.database_url.removeprefix("sqlite:///"))
    for file in (db, db.with_name(db.name + "-wal")):
        assert not file.exists() or b"Jane" not in file.read_bytes()


def test_bad_feedback_is_400(service: Service, samples: dict[str, Sample], fhir_data: FhirData) -> None:
    card = _cards(service, samples, fhir_data)[0]["uuid"]
    cases = [
        [{"card": card, "outcome": "ignored", "outcomeTimestamp": "2026-11-01T10:05:31Z"}],
        [{"card": card, "outcome": "accepted", "outcomeTimestamp": "2026-11-01T10:05:31Z"}],  # cds-fb-2
        [
            {
                "card": card,
                "outcome": "overridden",
                "outcomeTimestamp": "2026-11-01T10:05:31Z",
                "overrideReason": {},
            }
        ],  # cds-fb-3
        [{"card": card, "outcome": "overridden", "outcomeTimestamp": "yesterday"}],
        [
            {
                "card": "00000000-0000-4000-8000-000000000000",
                "outcome": "overridden",
                "outcomeTimestamp": "2026-11-01T10:05:31Z",
            }
        ],  # never issued
    ]
    for items in cases:
        response = _send(service, items)
        assert response.status_code == 400, items
        assert response.json()["error"] in {"bad-request", "unknown-card"}
    assert _send(service, []).status_code == 400
    bare = service.client.post(service.url(ORD, "/feedback"), content=b"{}", headers={"Authorization": "x"})
    assert bare.status_code == 401 and bare.content == b""


def test_audit_row_per_call_without_phi(
    service: Service, samples: dict[str, Sample], fhir_data: FhirData
) -> None:
    store = service.runtime.store
    before = len(store.audit_rows())
    s = samples["mbc-second-line"]
    body = hook_body(
        "patient-view", s.patient_id, prefetch=prefetch_for(fhir_data, service.templates, s.patient_id)
    )
    assert service.call("her2-therapy-review", body).status_code == 200
    assert service.call("her2-therapy-review", {"hook": "patient-view"}).status_code == 400
    rows = store.audit_rows()[before:]
    assert [r["status"] for r in rows] == [200, 400]
    ok = rows[0]
    assert ok["hook"] == "patient-view" and ok["hook_instance"] == body["hookInstance"]
    assert ok["finding_codes"] == "rec.mbc2.tdm1,rec.mbc2.tdxd"
    assert "her2-therapy@" in ok["rulesets"] and ok["latency_ms"] > 0
    assert ok["patient_hash"] == store.patient_hash(s.patient_id) and len(ok["patient_hash"]) == 64
    assert ok["issuer"] == service.es384.iss
    assert all(s.patient_id not in str(v) for r in rows for v in r.values())


def test_info_logs_carry_no_patient_id(
    service: Service, samples: dict[str, Sample], fhir_data: FhirData, log_records: Any
) -> None:
    s = samples["tdxd-ild-history"]
    body = hook_body(
        "patient-view", s.patient_id, prefetch=prefetch_for(fhir_data, service.templates, s.patient_id)
    )
    assert service.call("her2-therapy-review", body).status_code == 200
    assert any(body["hookInstance"] in m for m in log_records.messages)
    assert not any(s.patient_id in m for m in log_records.messages)


def test_metrics_and_health(service: Service, samples: dict[str, Sample], fhir_data: FhirData) -> None:
    s = samples["mbc-second-line"]
    body = hook_body(
        "patient-view", s.patient_id, prefetch=prefetch_for(fhir_data, service.templates, s.patient_id)
    )
    assert service.call("her2-therapy-review", body).status_code == 200
    text = service.client.get(f"{service.base}/metrics").text
    assert (
        'cds_hooks_requests_total{endpoint="service",hook="patient-view",service="her2-therapy-review",'
        'status="200"}' in text
    )
    assert 'cds_hooks_findings_total{code="rec.mbc2.tdxd"}' in text
    assert "cds_hooks_request_seconds_bucket" in text
    health = service.client.get(f"{service.base}/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"


def test_discovery_conforms(service: Service) -> None:
    import re

    body = service.client.get(f"{service.base}/cds-services").json()
    pairs = {(s["id"], s["hook"]) for s in body["services"]}
    assert pairs == {
        ("her2-therapy-review", "patient-view"),
        ("her2-order-safety", "order-select"),
        ("her2-order-safety", "order-sign"),
    }
    allowed_params = {"patient", "code", "_sort", "_count", "status", "category", "date"}
    for s in body["services"]:
        assert all(isinstance(s[k], str) and s[k] for k in ("hook", "id", "description", "title"))
        for key, template in s["prefetch"].items():
            tokens = re.findall(r"\{\{(.*?)\}\}", template)
            assert tokens and set(tokens) == {"context.patientId"}, key
            path, _, query = template.partition("?")
            if not query:
                assert path == "Patient/{{context.patientId}}"
                continue
            params = dict(p.split("=", 1) for p in query.split("&"))
            assert set(params) <= allowed_params, key
            assert params["patient"] == "{{context.patientId}}"
            if "code" in params:
                assert all(
                    re.fullmatch(r"http://loinc\.org\|[0-9]+-[0-9]", c) for c in params["code"].split(",")
                )
                assert params["_sort"] == "-date"
        assert {"patient", "conditions", "labObservations", "medicationAdministrations", "allergies"} <= set(
            s["prefetch"]
        )
