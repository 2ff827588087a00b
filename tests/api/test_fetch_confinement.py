"""FHIR fallback confinement: per-issuer allow-list, path normalization, address checks at connect
time, response and call caps, a generic 412 — against a real loopback FHIR double."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

import httpcore
import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from cds.api.netguard import GuardedBackend, guarded_transport
from cds.errors import DataUnavailable

from .conftest import Service, extra_service
from .helpers import FhirData, Sample, free_port, hook_body, prefetch_for, searchset, serve

UNAVAILABLE = DataUnavailable.GENERIC

PV = "her2-therapy-review"
BIG = "tdm1-platelets-not-recovered"  # 58 resources
SMALL = "her2-zero"  # 10 resources
GENERIC_412 = {"error": "data-unavailable", "message": UNAVAILABLE}


@dataclass
class Probe:
    """What the double saw: every path, and how many bytes the endless stream produced."""

    paths: list[str] = field(default_factory=list)
    streamed: int = 0


def probe_app(data: FhirData, probe: Probe) -> FastAPI:
    app = FastAPI()

    @app.get("/{mode}/{rest:path}")
    async def fhir(mode: str, rest: str, request: Request) -> Response:
        probe.paths.append(f"/{mode}/{rest}")
        query = f"{rest}?{request.url.query}" if request.url.query else rest
        if mode == "huge":  # a 300 MiB answer, produced as fast as it is read

            async def endless() -> AsyncIterator[bytes]:
                chunk = b" " * 65536
                yield b'{"resourceType": "Bundle", "type": "searchset", "entry": ['
                for _ in range(300 * 16):
                    await asyncio.sleep(0)  # let the server notice a client that hung up
                    probe.streamed += len(chunk)
                    yield chunk
                yield b"]}"

            return StreamingResponse(endless(), media_type="application/fhir+json")
        if mode == "many" and request.url.query:
            rtype = rest.split("/")[0]
            resources = [
                {
                    "resourceType": rtype,
                    "id": f"x{i}",
                    "subject": {"reference": f"Patient/{dict(parse_qsl(request.url.query)).get('patient')}"},
                }
                for i in range(51)
            ]
            return JSONResponse(searchset(resources))
        value = data.execute(query)
        return (
            JSONResponse({"resourceType": "OperationOutcome"}, 404) if value is None else JSONResponse(value)
        )

    return app


@pytest.fixture(scope="module")
def probe(samples: dict[str, Sample]) -> Iterator[tuple[str, Probe]]:
    seen = Probe()
    with serve(probe_app(FhirData(samples), seen), free_port()) as base:
        yield base, seen


@pytest.fixture(scope="module")
def confined(tmp_path_factory: pytest.TempPathFactory, probe: tuple[str, Probe]) -> Iterator[Service]:
    """A service allowed /fhir, /huge and /many of the probe, with small caps."""
    base, _ = probe
    with extra_service(
        tmp_path_factory.mktemp("confined"),
        (f"{base}/fhir", f"{base}/huge", f"{base}/many"),
        fhir_allow_private=True,
        fhir_max_response_bytes=1024 * 1024,
        fhir_max_response_resources=50,
        fhir_max_call_bytes=4 * 1024 * 1024,
        fhir_max_call_resources=40,
    ) as service:
        yield service


@pytest.fixture(scope="module")
def public_only(tmp_path_factory: pytest.TempPathFactory, probe: tuple[str, Probe]) -> Iterator[Service]:
    """A service whose allow-list names the loopback probe, without --fhir-allow-private."""
    base, _ = probe
    port = base.rsplit(":", 1)[1]
    bases = (f"{base}/fhir", f"http://localhost:{port}/fhir", f"http://[::1]:{port}/fhir")
    with extra_service(tmp_path_factory.mktemp("public"), bases) as service:
        yield service


def _fallback(service: Service, patient: str, server: str) -> httpx.Response:
    return service.call(PV, hook_body("patient-view", patient, fhir_server=server))


def test_allowed_base_is_fetched(
    confined: Service, probe: tuple[str, Probe], samples: dict[str, Sample]
) -> None:
    base, seen = probe
    start = len(seen.paths)
    response = _fallback(confined, samples[SMALL].patient_id, f"{base}/fhir")
    assert response.status_code == 200, response.text
    assert seen.paths[start:] and all(p.startswith("/fhir/") for p in seen.paths[start:])


def test_fhir_base_of_another_issuer_is_never_called(service: Service, samples: dict[str, Sample]) -> None:
    """ehr-b (rs384) lists no FHIR server; ehr-a lists the double: the same request differs by caller."""
    s = samples[SMALL]
    start = len(service.fhir_log.requests)
    body = hook_body("patient-view", s.patient_id, fhir_server=service.fhir_base)
    response = service.call(PV, body, signer=service.rs384)
    assert response.status_code == 412 and response.json() == GENERIC_412
    assert service.fhir_log.requests[start:] == []
    assert service.call(PV, body).status_code == 200


TRAVERSALS = [
    "/fhir/../admin",
    "/fhir/./../admin",
    "/fhir/%2e%2e/admin",
    "/fhir/%2E%2E/admin",
    "/fhir/.%2e/admin",
    "/fhir/%2e./admin",
    "/fhir/%252e%252e/admin",
    "/fhir%2f..%2fadmin",
    "/fhir/..%2fadmin",
    "/fhir//admin",
    "/fhir\\..\\admin",
    "/fhirx",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_paths_escaping_the_allowed_base_are_never_requested(
    path: str, confined: Service, probe: tuple[str, Probe], samples: dict[str, Sample]
) -> None:
    base, seen = probe
    start = len(seen.paths)
    response = _fallback(confined, samples[SMALL].patient_id, f"{base}{path}")
    assert response.status_code in (400, 412), response.text
    if response.status_code == 412:
        assert response.json() == GENERIC_412
    assert seen.paths[start:] == []


def test_next_link_escaping_the_base_is_not_followed(
    confined: Service, probe: tuple[str, Probe], samples: dict[str, Sample]
) -> None:
    base, seen = probe
    s = samples[SMALL]
    data = FhirData({SMALL: s})
    prefetch = prefetch_for(data, confined.templates, s.patient_id)
    prefetch["conditions"] = {
        **searchset([]),
        "link": [{"relation": "next", "url": f"{base}/fhir/../admin/x"}],
    }
    start = len(seen.paths)
    response = confined.call(
        PV, hook_body("patient-view", s.patient_id, prefetch=prefetch, fhir_server=f"{base}/fhir")
    )
    assert response.status_code == 412 and response.json() == GENERIC_412
    assert not any(p.startswith("/admin") for p in seen.paths[start:])


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
def test_loopback_is_refused_at_connect_without_allow_private(
    host: str, public_only: Service, probe: tuple[str, Probe], samples: dict[str, Sample]
) -> None:
    base, seen = probe
    port = base.rsplit(":", 1)[1]
    start = len(seen.paths)
    response = _fallback(public_only, samples[SMALL].patient_id, f"http://{host}:{port}/fhir")
    assert response.status_code == 412 and response.json() == GENERIC_412
    assert seen.paths[start:] == []


def test_endless_response_is_cut_off_at_the_cap(
    confined: Service, probe: tuple[str, Probe], samples: dict[str, Sample]
) -> None:
    base, seen = probe
    seen.streamed = 0
    response = _fallback(confined, samples[SMALL].patient_id, f"{base}/huge")
    assert response.status_code == 412 and response.json() == GENERIC_412
    assert seen.streamed < 64 * 1024 * 1024  # of 300 MiB offered: reading stopped at the 1 MiB cap


def test_response_with_too_many_resources_is_refused(
    confined: Service, probe: tuple[str, Probe], samples: dict[str, Sample]
) -> None:
    base, _ = probe
    response = _fallback(confined, samples[SMALL].patient_id, f"{base}/many")
    assert response.status_code == 412 and response.json() == GENERIC_412


def test_call_total_resources_is_capped(
    confined: Service, probe: tuple[str, Probe], samples: dict[str, Sample]
) -> None:
    """40 resources per call: the 10-resource chart is fetched, the 58-resource chart is refused."""
    base, _ = probe
    assert _fallback(confined, samples[SMALL].patient_id, f"{base}/fhir").status_code == 200
    response = _fallback(confined, samples[BIG].patient_id, f"{base}/fhir")
    assert response.status_code == 412 and response.json() == GENERIC_412


def test_412_is_generic_whatever_the_cause(service: Service, samples: dict[str, Sample]) -> None:
    base = service.fhir_base.rsplit("/", 1)[0]
    s = samples[SMALL]
    bodies = []
    for server in (
        f"http://127.0.0.1:{free_port()}/fhir",
        f"{base}/broken",
        f"{base}/outcome",
        "https://10.0.0.7/fhir",
    ):
        response = _fallback(service, s.patient_id, server)
        assert response.status_code == 412
        bodies.append(response.json())
    assert bodies == [GENERIC_412] * 4


# ---- the connect-time guard itself ----------------------------------------------------------------


def _resolver(answers: list[list[str]], calls: list[str]):  # type: ignore[no-untyped-def]
    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return answers[min(len(calls) - 1, len(answers) - 1)]

    return resolve


def test_connection_goes_to_the_checked_address_only(probe: tuple[str, Probe]) -> None:
    """A name unknown to DNS, resolved by our resolver to the probe: one lookup, connection pinned."""
    base, _ = probe
    port = int(base.rsplit(":", 1)[1])
    calls: list[str] = []

    async def run() -> int:
        transport = guarded_transport(allow_private=True, resolver=_resolver([["127.0.0.1"]], calls))
        async with httpx.AsyncClient(transport=transport, timeout=5) as client:
            response = await client.get(f"http://fhir.pinned.test:{port}/fhir/Patient/her2-zero")
            return response.status_code

    assert asyncio.run(run()) == 200
    assert calls == ["fhir.pinned.test"]


@pytest.mark.parametrize(
    "answers",
    [
        [["127.0.0.1"]],
        [["8.8.8.8", "10.0.0.1"]],
        [["::ffff:169.254.169.254"]],
        [["100.64.0.1"]],
        [["0.0.0.0"]],
    ],
)
def test_any_non_public_address_refuses_the_connection(
    answers: list[list[str]], probe: tuple[str, Probe]
) -> None:
    base, seen = probe
    port = int(base.rsplit(":", 1)[1])
    calls: list[str] = []
    start = len(seen.paths)

    async def run() -> None:
        transport = guarded_transport(allow_private=False, resolver=_resolver(answers, calls))
        async with httpx.AsyncClient(transport=transport, timeout=5) as client:
            await client.get(f"http://fhir.rebind.test:{port}/fhir/Patient/her2-zero")

    with pytest.raises(httpx.ConnectError, match="refused"):
        asyncio.run(run())
    assert calls == ["fhir.rebind.test"] and seen.paths[start:] == []


def test_rebinding_after_the_check_cannot_redirect_the_connection(probe: tuple[str, Probe]) -> None:
    """First answer public, every later answer loopback: the only lookup is the checked one."""
    base, seen = probe
    port = int(base.rsplit(":", 1)[1])
    calls: list[str] = []
    backend = GuardedBackend(allow_private=False, resolver=_resolver([["8.8.8.8"], ["127.0.0.1"]], calls))
    start = len(seen.paths)

    async def run() -> None:
        stream = await backend.connect_tcp("fhir.rebind.test", port, timeout=0.5)
        await stream.aclose()

    # 8.8.8.8 on the probe's port does not answer: the connection fails there, never on loopback
    with pytest.raises((httpcore.ConnectError, httpcore.ConnectTimeout)):
        asyncio.run(run())
    assert calls == ["fhir.rebind.test"] and seen.paths[start:] == []


def test_settings_refuse_malformed_allowed_bases(tmp_path: Path) -> None:
    from cds.api.settings import Settings
    from cds.errors import ConfigurationError

    for base in ("https://h/fhir/../admin", "https://user@h/fhir", "ftp://h/fhir", "https://h/fhir?x=1"):
        with pytest.raises(ConfigurationError):
            Settings(insecure_dev=True, fhir_servers=(base,)).check()
