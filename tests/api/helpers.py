"""Test parts for the CDS Hooks service: a FHIR query engine over fhir_samples, a FHIR server double
built on it, a mock EHR that signs real JWTs, a uvicorn runner and a CDS Hooks conformance checker."""

from __future__ import annotations

import copy
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
import uvicorn
import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

JSON = dict[str, Any]
SAMPLES = Path(__file__).resolve().parents[2] / "fhir_samples"


# ---- samples and FHIR search ----------------------------------------------------------------------


@dataclass
class Sample:
    """One fhir_samples scenario: its resources, expected codes and optional draft order."""

    name: str
    patient_id: str
    resources: list[JSON]
    expected: list[str]
    order: JSON | None


def load_samples() -> dict[str, Sample]:
    out: dict[str, Sample] = {}
    for path in sorted(SAMPLES.glob("*.json")):
        bundle = orjson.loads(path.read_bytes())
        resources = [
            e["resource"]
            for e in bundle["entry"]
            if isinstance(e, dict) and isinstance(e.get("resource"), dict)
        ]
        patient = next(r for r in resources if r.get("resourceType") == "Patient")
        spec = yaml.safe_load((SAMPLES / f"{path.stem}.expected.yaml").read_text())
        order = orjson.loads((SAMPLES / spec["order"]).read_bytes()) if spec.get("order") else None
        expected = sorted(f["code"] for f in spec.get("findings") or [])
        out[path.stem] = Sample(path.stem, patient["id"], resources, expected, order)
    return out


def _date_of(resource: JSON) -> str:
    for key in ("effectiveDateTime", "issued", "recordedDate", "onsetDateTime", "authoredOn"):
        if isinstance(resource.get(key), str):
            return str(resource[key])
    period = resource.get("effectivePeriod")
    if isinstance(period, dict) and isinstance(period.get("start"), str):
        return str(period["start"])
    return ""


def _token_match(resource: JSON, tokens: list[str]) -> bool:
    codings = (resource.get("code") or {}).get("coding") or []
    for token in tokens:
        system, _, code = token.rpartition("|")
        for c in codings:
            if c.get("code") == code and (not system or c.get("system") == system):
                return True
    return False


class FhirData:
    """An in-memory FHIR R4 server over the samples: reads and the search subset our templates use."""

    def __init__(self, samples: dict[str, Sample]) -> None:
        self.by_patient: dict[str, list[JSON]] = {s.patient_id: s.resources for s in samples.values()}

    def read(self, rtype: str, rid: str) -> JSON | None:
        for resources in self.by_patient.values():
            for r in resources:
                if r.get("resourceType") == rtype and r.get("id") == rid:
                    return r
        return None

    def search(self, rtype: str, params: list[tuple[str, str]]) -> list[JSON]:
        args = dict(params)
        patient = args.get("patient", "").removeprefix("Patient/")
        # every resource filed in the patient's chart, as an EHR returns it: a resource naming another
        # patient in its subject (the gap-other-patient-data sample) comes back too
        found = [r for r in self.by_patient.get(patient, []) if r.get("resourceType") == rtype]
        if "code" in args:
            found = [r for r in found if _token_match(r, args["code"].split(","))]
        if args.get("_sort") == "-date":
            found.sort(key=_date_of, reverse=True)
        return found

    def execute(self, query: str) -> JSON | None:
        """What a FHIR server answers to ``query`` (no paging): a resource, None, or a searchset."""
        path, _, qs = query.partition("?")
        if not qs and "/" in path:
            rtype, rid = path.split("/", 1)
            return self.read(rtype, rid)
        found = self.search(path, parse_qsl(qs))
        return searchset(found)


def searchset(resources: list[JSON], next_url: str | None = None) -> JSON:
    bundle: JSON = {"resourceType": "Bundle", "type": "searchset", "total": len(resources)}
    if resources:
        bundle["entry"] = [{"resource": r, "search": {"mode": "match"}} for r in resources]
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle


OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "exception", "diagnostics": "prefetch failed"}],
}


@dataclass
class FhirLog:
    """What the double saw: paths requested and the Authorization headers sent."""

    requests: list[str] = field(default_factory=list)
    auth: list[str | None] = field(default_factory=list)


def fhir_double(data: FhirData, jwks: dict[str, JSON], page_size: int = 20) -> tuple[FastAPI, FhirLog]:
    """A tiny FHIR server: ``/fhir`` serves the samples with paging; ``/outcome`` answers every
    search with an OperationOutcome; ``/broken`` answers 500; ``/jwks/{name}`` serves key sets."""
    app = FastAPI()
    seen = FhirLog()

    @app.get("/jwks/{name}")
    async def keys(name: str) -> JSONResponse:
        return JSONResponse(jwks[name])

    @app.get("/{mode}/{rest:path}")
    async def fhir(mode: str, rest: str, request: Request) -> Response:
        seen.requests.append(f"/{mode}/{rest}?{request.url.query}")
        seen.auth.append(request.headers.get("authorization"))
        if mode == "broken":
            return JSONResponse({"error": "down"}, status_code=500)
        params = [(k, v) for k, v in parse_qsl(request.url.query) if k != "_offset"]
        if "/" in rest and not request.url.query:
            if mode == "outcome":
                return JSONResponse(OUTCOME)
            rtype, rid = rest.split("/", 1)
            resource = data.read(rtype, rid.split("/_history/", 1)[0])  # a vread: one version held
            if resource is None:
                return JSONResponse(OUTCOME, status_code=404)
            return JSONResponse(resource)
        if mode == "outcome":
            return JSONResponse(OUTCOME)
        found = data.search(rest, params)
        offset = int(request.query_params.get("_offset", "0"))
        page = found[offset : offset + page_size]
        nxt = None
        if offset + page_size < len(found):
            query = urlencode([*params, ("_offset", str(offset + page_size))])
            nxt = f"{request.base_url}{mode}/{rest}?{query}"
        return JSONResponse(searchset(page, nxt))

    return app, seen


# ---- running servers --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(app: Any, port: int | None = None) -> Iterator[str]:
    """Run ``app`` under a real uvicorn on 127.0.0.1:port (a free one by default) in a thread;
    yields the base URL."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


# ---- mock EHR -----------------------------------------------------------------------------------------


@dataclass
class Signer:
    """A CDS client identity: issuer, key, algorithm."""

    iss: str
    key: ECKey | RSAKey
    alg: str
    kid: str

    def token(self, aud: str | list[str], **overrides: Any) -> str:
        now = int(time.time())
        claims: JSON = {"iss": self.iss, "aud": aud, "exp": now + 300, "iat": now, "jti": uuid.uuid4().hex}
        header: JSON = {"alg": self.alg, "typ": "JWT", "kid": self.kid}
        for k, v in overrides.items():
            if k.startswith("h_"):
                if v is None:
                    header.pop(k[2:], None)
                else:
                    header[k[2:]] = v
            elif v is None:
                claims.pop(k, None)
            else:
                claims[k] = v
        return jwt.encode(header, claims, self.key, algorithms=[self.alg])


def make_signer(iss: str, alg: str) -> Signer:
    key: ECKey | RSAKey
    if alg.startswith("ES"):
        curve = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}[alg]
        key = ECKey.generate_key(curve, parameters={"kid": f"{alg}-{uuid.uuid4().hex[:8]}"})
    else:
        key = RSAKey.generate_key(2048, parameters={"kid": f"{alg}-{uuid.uuid4().hex[:8]}"})
    return Signer(iss, key, alg, str(key.kid))


def jwks_of(*signers: Signer) -> JSON:
    return {"keys": [s.key.as_dict(private=False) for s in signers]}


def prefetch_for(data: FhirData, templates: dict[str, str], patient_id: str) -> JSON:
    """What a spec-following EHR prefetches: every template, run against its own FHIR data."""
    return {k: data.execute(t.replace("{{context.patientId}}", patient_id)) for k, t in templates.items()}


def hook_body(
    hook: str,
    patient_id: str,
    *,
    prefetch: JSON | None = None,
    order: JSON | None = None,
    fhir_server: str | None = None,
    token: str | None = "fhir-access-token",
) -> JSON:
    """A CDS Hooks request as an EHR sends it."""
    context: JSON = {"userId": "Practitioner/onc-1", "patientId": patient_id}
    if hook in ("order-select", "order-sign"):
        assert order is not None
        context["draftOrders"] = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": copy.deepcopy(order)}],  # tests mutate bodies; samples are shared
        }
        if hook == "order-select":
            context["selections"] = [f"MedicationRequest/{order['id']}"]
    body: JSON = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context}
    if prefetch is not None:
        body["prefetch"] = prefetch
    if fhir_server is not None:
        body["fhirServer"] = fhir_server
        if token:
            body["fhirAuthorization"] = {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": 300,
                "scope": "patient/*.read",
                "subject": "her2-cds",
                "patient": patient_id,
            }
    return body


# ---- conformance -----------------------------------------------------------------------------------------

EXT = "org.her2-cds.finding"
RESOURCE_ID = re.compile(
    r"\b(Observation|Condition|Procedure|Medication[A-Za-z]*|AllergyIntolerance|Patient|ServiceRequest)/[A-Za-z0-9]"
)


def _no_empty(value: Any, where: str, problems: list[str]) -> None:
    if value is None or value == "" or value == [] or value == {}:
        problems.append(f"{where}: null or empty")
    elif isinstance(value, dict):
        for k, v in value.items():
            _no_empty(v, f"{where}.{k}", problems)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _no_empty(v, f"{where}[{i}]", problems)


def card_problems(body: JSON) -> list[str]:
    """Every checklist §0/§4/§7 rule a strict tester applies to a response."""
    problems: list[str] = []
    if not isinstance(body.get("cards"), list):
        return ["cards is not an array"]
    for k, v in body.items():
        if k != "cards":
            _no_empty(v, k, problems)
    uuids: list[str] = []
    suggestion_ids: list[str] = []
    for i, card in enumerate(body["cards"]):
        at = f"cards[{i}]"
        _no_empty(card, at, problems)
        for text in (card.get("summary", ""), card.get("detail", "")):
            if RESOURCE_ID.search(text):
                problems.append(f"{at}: a resource id in the card text (ids belong in the extension)")
        if card.get("detail", "x")[:1].islower():
            problems.append(f"{at}.detail starts in lower case")
        uuids.append(card.get("uuid", ""))
        if not isinstance(card.get("summary"), str) or not 0 < len(card["summary"]) <= 139:
            problems.append(f"{at}.summary missing or longer than 139")
        if card.get("indicator") not in ("info", "warning", "critical"):
            problems.append(f"{at}.indicator {card.get('indicator')!r}")
        source = card.get("source") or {}
        if not source.get("label"):
            problems.append(f"{at}.source.label missing")
        if "url" in source and not re.match(r"^https?://", source["url"]):
            problems.append(f"{at}.source.url not absolute")
        topic = source.get("topic")
        if topic is not None and not (topic.get("system") and topic.get("code")):
            problems.append(f"{at}.source.topic needs system and code")
        suggestions = card.get("suggestions")
        if suggestions is not None:
            if card.get("selectionBehavior") not in ("at-most-one", "any"):
                problems.append(f"{at}: suggestions without selectionBehavior")
            if (
                card.get("selectionBehavior") == "at-most-one"
                and sum(1 for s in suggestions if s.get("isRecommended")) > 1
            ):
                problems.append(f"{at}: more than one recommended suggestion with at-most-one")
            for s in suggestions:
                if not s.get("label"):
                    problems.append(f"{at}: suggestion without label")
                suggestion_ids.append(s.get("uuid", ""))
                for a in s.get("actions", []):
                    problems += action_problems(a, at)
        elif "selectionBehavior" in card:
            problems.append(f"{at}: selectionBehavior without suggestions")
        for r in card.get("overrideReasons", []):
            if not (r.get("system") and r.get("code") and r.get("display")):
                problems.append(f"{at}: overrideReason needs system, code and display")
        for link in card.get("links", []):
            if not (link.get("label") and link.get("url")) or link.get("type") not in ("absolute", "smart"):
                problems.append(f"{at}: bad link")
            if "appContext" in link and link.get("type") != "smart":
                problems.append(f"{at}: appContext on a non-smart link")
        ext = (card.get("extension") or {}).get(EXT)
        if not ext or not ext.get("codes") or not all(r.get("id") and r.get("version") for r in ext["rules"]):
            problems.append(f"{at}: extension {EXT} lacks codes or rule id/version")
    if len(set(uuids)) != len(uuids) or "" in uuids:
        problems.append("card uuids missing or not unique")
    if len(set(suggestion_ids)) != len(suggestion_ids) or "" in suggestion_ids:
        problems.append("suggestion uuids missing or not unique")
    for a in body.get("systemActions", []):
        problems += action_problems(a, "systemActions")
    return problems


def action_problems(action: JSON, at: str) -> list[str]:
    out = []
    if action.get("type") not in ("create", "update", "delete"):
        out.append(f"{at}: action type {action.get('type')!r}")
    if not action.get("description"):
        out.append(f"{at}: action without description")
    if action.get("type") in ("create", "update") and not isinstance(action.get("resource"), dict):
        out.append(f"{at}: create/update without resource")
    if action.get("type") == "delete" and not re.match(
        r"^[A-Za-z]+/[A-Za-z0-9\-.]+$", action.get("resourceId", "")
    ):
        out.append(f"{at}: delete without resourceId")
    return out


def card_codes(body: JSON) -> list[str]:
    return sorted(code for card in body["cards"] for code in card["extension"][EXT]["codes"])
