"""Load benchmark of the CDS Hooks service: p50/p99 latency, requests/s and errors.

Starts ``cds serve --workers W`` (JWT-authenticated, a trusted issuer whose key is generated here,
SQLite audit) and drives it from asyncio httpx clients on loopback: a patient-view call with a
300-resource prefetch, and an order-sign call for a draft T-DM1 order, at each concurrency level
for DURATION seconds. Every request carries a freshly signed ES384 JWT (unique jti), so the replay
store and the audit write are part of what is measured. The client shares the machine's cores.

    python bench/hooks_load.py --duration 60 --concurrency 1 16 64 --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
from joserfc import jwt
from joserfc.jwk import ECKey

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cds import default_rules_dir, load_library  # noqa: E402
from cds.api.services import prefetch_templates  # noqa: E402

ISS = "https://bench-ehr.example.org"
SAMPLE = "tdm1-platelets-not-recovered"
ORDER_SAMPLE = "order-tdm1-name-confusion"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def build_prefetch(name: str, target: int) -> tuple[str, dict[str, Any]]:
    """A spec-shaped prefetch for one sample, padded with older lab results to ``target`` resources."""
    resources = [
        e["resource"] for e in orjson.loads((ROOT / "fhir_samples" / f"{name}.json").read_bytes())["entry"]
    ]
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    labs = [
        r
        for r in resources
        if r["resourceType"] == "Observation"
        and r["code"]["coding"][0]["code"] in {"777-3", "1920-8", "1742-6", "1975-2", "751-8"}
    ]
    extra: list[dict[str, Any]] = []
    i = 0
    while len(resources) + len(extra) < target - 1 and labs:  # + the Patient read
        lab = copy.deepcopy(labs[i % len(labs)])
        lab["id"] = f"pad-{i}"
        lab["effectiveDateTime"] = f"20{20 + i % 5}-0{1 + i % 9}-1{i % 9}T08:00:00Z"
        extra.append(lab)
        i += 1
    all_resources = resources + extra
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in all_resources:
        by_type.setdefault(r["resourceType"], []).append(r)
    templates = prefetch_templates(load_library(default_rules_dir()))
    prefetch: dict[str, Any] = {"patient": patient}
    for key, template in templates.items():
        if key == "patient":
            continue
        rtype, _, query = template.partition("?")
        codes = {
            c.rsplit("|", 1)[1] for p in query.split("&") if p.startswith("code=") for c in p[5:].split(",")
        }
        found = [
            r
            for r in by_type.get(rtype, [])
            if not codes or any(c.get("code") in codes for c in r.get("code", {}).get("coding", []))
        ]
        prefetch[key] = _bundle(found)
    count = 1 + sum(len(v.get("entry", [])) for k, v in prefetch.items() if k != "patient")
    return f"{count}", {"patient_id": patient["id"], "prefetch": prefetch}


def request_body(hook: str, patient_id: str, prefetch: dict[str, Any], order: dict[str, Any] | None) -> bytes:
    context: dict[str, Any] = {"userId": "Practitioner/bench", "patientId": patient_id}
    if order is not None:
        context["draftOrders"] = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": order}],
        }
    return orjson.dumps(
        {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context, "prefetch": prefetch}
    )


async def run_level(url: str, key: ECKey, body: bytes, concurrency: int, duration: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    stop = time.perf_counter() + duration

    async def client_loop(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < stop:
            now = int(time.time())
            token = jwt.encode(
                {"alg": "ES384", "typ": "JWT", "kid": key.kid},
                {"iss": ISS, "aud": url, "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex},
                key,
                algorithms=["ES384"],
            )
            started = time.perf_counter()
            try:
                response = await client.post(
                    url,
                    content=body,
                    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                )
                elapsed = time.perf_counter() - started
                if response.status_code == 200 and "cards" in response.json():
                    latencies.append(elapsed)
                else:
                    errors[str(response.status_code)] = errors.get(str(response.status_code), 0) + 1
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        began = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        wall = time.perf_counter() - began
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return (
            ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))] * 1000 if ordered else float("nan")
        )

    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "rps": len(latencies) / wall,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "mean_ms": statistics.fmean(ordered) * 1000 if ordered else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--resources", type=int, default=300)
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="hooks-bench-"))
    key = ECKey.generate_key("P-384", parameters={"kid": "bench-1"})
    (tmp / "jwks.json").write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cds = shutil.which("cds") or "cds"
    command = [
        cds,
        "serve",
        "--workers",
        str(args.workers),
        "--port",
        str(port),
        "--as-of",
        "2026-11-01",
        "--trusted-issuer",
        f"{ISS}|{tmp / 'jwks.json'}",
        "--database-url",
        f"sqlite:///{tmp / 'b.db'}",
        "--log-level",
        "warning",
    ]
    print("server:", " ".join(command), flush=True)
    server = subprocess.Popen(command, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("server did not start")
            time.sleep(0.2)
        count, pv = build_prefetch(SAMPLE, args.resources)
        _, sign = build_prefetch(ORDER_SAMPLE, 0)
        order = orjson.loads((ROOT / "fhir_samples" / "orders" / f"{ORDER_SAMPLE}.order.json").read_bytes())
        calls = {
            f"patient-view ({count} prefetched resources)": (
                f"{base}/cds-services/her2-therapy-review",
                request_body("patient-view", pv["patient_id"], pv["prefetch"], None),
            ),
            "order-sign (T-DM1 draft, sample prefetch)": (
                f"{base}/cds-services/her2-order-sign",
                request_body("order-sign", sign["patient_id"], sign["prefetch"], order),
            ),
        }
        results = []
        print("\n| call | clients | requests | req/s | p50 ms | p99 ms | errors |")
        print("|---|---|---|---|---|---|---|")
        for name, (url, body) in calls.items():
            for level in args.concurrency:
                r = asyncio.run(run_level(url, key, body, level, args.duration))
                r["call"] = name
                results.append(r)
                print(
                    f"| {name} | {level} | {r['requests']} | {r['rps']:.1f} | {r['p50_ms']:.1f} | "
                    f"{r['p99_ms']:.1f} | {r['errors']} {r['error_kinds'] if r['errors'] else ''}|",
                    flush=True,
                )
        if args.json:
            args.json.write_text(
                json.dumps({"command": command, "cpus": os.cpu_count(), "results": results}, indent=2)
            )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
