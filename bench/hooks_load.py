"""Load benchmark of the CDS Hooks service: p50/p99 latency, requests/s, server CPU per call, errors.

Starts ``cds serve --workers W`` (JWT-authenticated, a trusted issuer whose key is generated here,
SQLite audit) and drives it from asyncio httpx clients on loopback: a patient-view call with a
300-resource prefetch (the on-T-DM1 lab-history patient of ``bench/patients.py``), and an
order-sign call for a draft T-DM1 order. Every request carries its own ES384 JWT (unique jti), so
JWT verification, the replay store and the audit write are part of what is measured; the tokens
are signed before each run starts, so signing does not take CPU from the server while it is timed.
The client shares the machine's cores.

Two load models, both printed:

* closed loop (``--concurrency``): N clients, each sending its next request when the previous
  answer arrives. Shows throughput at saturation; latency then is mostly queueing (Little's law).
* open loop (``--rates``): requests sent at a fixed arrival rate whatever the answers do, latency
  measured from the scheduled send time (no coordinated omission). Shows the latency a given
  load gets.

Server CPU per call is the CPU time (user + system) of the whole server process tree during the
run divided by the answered calls: JWT verify, decode, hash, facts, rules, cards and audit.

    python bench/hooks_load.py --duration 60 --concurrency 1 16 64 --rates 50 100 200 --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
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
import psutil
from joserfc import jwt
from joserfc.jwk import ECKey

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.patients import lab_history_resources, sample_resources  # noqa: E402
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
    """A spec-shaped prefetch for one sample; for the T-DM1 lab-history patient, lengthened with
    weekly lab draws until the prefetch holds ``target`` resources."""
    templates = prefetch_templates(load_library(default_rules_dir()))

    def prefetch_of(resources: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        patient = next(r for r in resources if r["resourceType"] == "Patient")
        by_type: dict[str, list[dict[str, Any]]] = {}
        for r in resources:
            by_type.setdefault(r["resourceType"], []).append(r)
        prefetch: dict[str, Any] = {"patient": patient}
        for key, template in templates.items():
            if key == "patient":
                continue
            rtype, _, query = template.partition("?")
            codes = {
                c.rsplit("|", 1)[1]
                for p in query.split("&")
                if p.startswith("code=")
                for c in p[5:].split(",")
            }
            found = [
                r
                for r in by_type.get(rtype, [])
                if not codes or any(c.get("code") in codes for c in r.get("code", {}).get("coding", []))
            ]
            prefetch[key] = _bundle(found)
        count = 1 + sum(len(v.get("entry", [])) for k, v in prefetch.items() if k != "patient")
        return count, {"patient_id": patient["id"], "prefetch": prefetch}

    if name != SAMPLE or target <= 0:
        count, body = prefetch_of(sample_resources(name))
        return f"{count}", body
    labs = 1
    count, body = prefetch_of(lab_history_resources(labs))
    while count < target:
        labs += target - count
        count, body = prefetch_of(lab_history_resources(labs))
    return f"{count}", body


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


GRACE_S = 20.0  # open loop: how long a saturated server may take after the last send
MAX_IN_FLIGHT = 64  # open loop: outstanding requests beyond this are dropped (see run_rate)


def sign_tokens(key: ECKey, url: str, count: int) -> list[str]:
    """``count`` distinct ES384 bearer tokens for ``url`` (signed now, for the 5-minute maximum lifetime)."""
    now = int(time.time())
    return [
        jwt.encode(
            {"alg": "ES384", "typ": "JWT", "kid": key.kid},
            {"iss": ISS, "aud": url, "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex},
            key,
            algorithms=["ES384"],
        )
        for _ in range(count)
    ]


def tree_cpu(root: psutil.Process) -> float:
    """CPU seconds (user + system) used so far by a process and its live children."""
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def _summary(latencies: list[float], errors: dict[str, int], wall: float) -> dict[str, Any]:
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return (
            ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))] * 1000 if ordered else float("nan")
        )

    return {
        "requests": len(latencies),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "rps": len(latencies) / wall,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "mean_ms": statistics.fmean(ordered) * 1000 if ordered else float("nan"),
    }


async def _post(client: httpx.AsyncClient, url: str, body: bytes, token: str, errors: dict[str, int]) -> bool:
    try:
        response = await client.post(
            url,
            content=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        if response.status_code == 200 and b'"cards"' in response.content:
            return True
        errors[str(response.status_code)] = errors.get(str(response.status_code), 0) + 1
    except httpx.HTTPError as exc:
        errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
    return False


async def run_level(
    url: str, tokens: list[str], body: bytes, concurrency: int, duration: float, server: psutil.Process
) -> dict[str, Any]:
    """Closed loop: ``concurrency`` clients, each sending again when its answer arrives."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    stop = time.perf_counter() + duration
    supply = iter(tokens)

    async def client_loop(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < stop:
            token = next(supply, None)
            if token is None:
                return
            started = time.perf_counter()
            if await _post(client, url, body, token, errors):
                latencies.append(time.perf_counter() - started)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        cpu_before = tree_cpu(server)
        began = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        wall = time.perf_counter() - began
        cpu = tree_cpu(server) - cpu_before
    out = {"mode": "closed", "concurrency": concurrency, **_summary(latencies, errors, wall)}
    out["server_cpu_ms_per_call"] = cpu / max(1, out["requests"] + out["errors"]) * 1000
    return out


async def run_rate(
    url: str, tokens: list[str], body: bytes, rate: float, duration: float, server: psutil.Process
) -> dict[str, Any]:
    """Open loop: one request every 1/rate seconds whatever the answers do; latency from the
    scheduled send time, so a server that falls behind shows it (no coordinated omission). At most
    MAX_IN_FLIGHT requests are outstanding: a request due while that many wait is dropped and
    counted ("dropped"), as a real client would time out, so an overloaded rate ends on time and
    shows as drops; GRACE_S after the run, unanswered requests are counted, not waited for."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    count = min(len(tokens), int(rate * duration))
    in_flight = 0
    limits = httpx.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=GRACE_S, limits=limits) as client:

        async def one(token: str, scheduled: float) -> None:
            nonlocal in_flight
            try:
                if await _post(client, url, body, token, errors):
                    latencies.append(time.perf_counter() - scheduled)
            finally:
                in_flight -= 1

        cpu_before = tree_cpu(server)
        began = time.perf_counter()
        tasks = []
        for i in range(count):
            scheduled = began + i / rate
            delay = scheduled - time.perf_counter()
            await asyncio.sleep(max(0.0, delay))  # also lets answers in when behind schedule
            if in_flight >= MAX_IN_FLIGHT:
                errors["dropped"] = errors.get("dropped", 0) + 1
                continue
            in_flight += 1
            tasks.append(asyncio.create_task(one(tokens[i], scheduled)))
        _done, pending = await asyncio.wait(tasks, timeout=GRACE_S) if tasks else (set(), set())
        for task in pending:
            task.cancel()
        if pending:
            errors["unanswered"] = len(pending)
            await asyncio.gather(*pending, return_exceptions=True)
        wall = time.perf_counter() - began
        cpu = tree_cpu(server) - cpu_before
    out = {"mode": "open", "rate": rate, **_summary(latencies, errors, wall)}
    out["rps"] = len(latencies) / duration  # answered per second of offered load
    out["server_cpu_ms_per_call"] = cpu / max(1, out["requests"]) * 1000
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, nargs="*", default=[1, 16, 64])
    parser.add_argument(
        "--rates", type=float, nargs="*", default=[50, 100, 200], help="open-loop arrival rates (req/s)"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--resources", type=int, default=300)
    parser.add_argument(
        "--calls", nargs="*", default=["patient-view", "order-sign"], choices=["patient-view", "order-sign"]
    )
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
    load = os.getloadavg()
    print(f"server: {' '.join(command)}   ({os.cpu_count()} cores, load average {load[0]:.2f})", flush=True)
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
        proc = psutil.Process(server.pid)
        count, pv = build_prefetch(SAMPLE, args.resources)
        _, sign = build_prefetch(ORDER_SAMPLE, 0)
        order = orjson.loads((ROOT / "fhir_samples" / "orders" / f"{ORDER_SAMPLE}.order.json").read_bytes())
        calls = {
            "patient-view": (
                f"patient-view ({count} prefetched resources)",
                f"{base}/cds-services/her2-therapy-review",
                request_body("patient-view", pv["patient_id"], pv["prefetch"], None),
            ),
            "order-sign": (
                "order-sign (T-DM1 draft, sample prefetch)",
                f"{base}/cds-services/her2-order-sign",
                request_body("order-sign", sign["patient_id"], sign["prefetch"], order),
            ),
        }
        results = []
        for call in args.calls:
            name, url, body = calls[call]
            asyncio.run(run_level(url, sign_tokens(key, url, 20), body, 2, 5, proc))  # warm both workers
        if args.concurrency:
            print("\nclosed loop\n")
            print("| call | clients | requests | req/s | p50 ms | p99 ms | server CPU ms/call | errors |")
            print("|---|---|---|---|---|---|---|---|")
        for call in args.calls:
            name, url, body = calls[call]
            for level in args.concurrency:
                tokens = sign_tokens(key, url, int(args.duration * 600))
                r = asyncio.run(run_level(url, tokens, body, level, args.duration, proc))
                r["call"] = name
                results.append(r)
                print(
                    f"| {name} | {level} | {r['requests']} | {r['rps']:.1f} | {r['p50_ms']:.1f} | "
                    f"{r['p99_ms']:.1f} | {r['server_cpu_ms_per_call']:.2f} | "
                    f"{r['errors']} {r['error_kinds'] if r['errors'] else ''}|",
                    flush=True,
                )
        if args.rates:
            print("\nopen loop (fixed arrival rate)\n")
            print(
                "| call | offered req/s | answered | answered req/s | p50 ms | p99 ms "
                "| server CPU ms/call | errors |"
            )
            print("|---|---|---|---|---|---|---|---|")
        for call in args.calls:
            name, url, body = calls[call]
            for rate in args.rates:
                tokens = sign_tokens(key, url, int(rate * args.duration))
                r = asyncio.run(run_rate(url, tokens, body, rate, args.duration, proc))
                r["call"] = name
                results.append(r)
                print(
                    f"| {name} | {rate:g} | {r['requests']} | {r['rps']:.1f} | {r['p50_ms']:.1f} | "
                    f"{r['p99_ms']:.1f} | {r['server_cpu_ms_per_call']:.2f} | "
                    f"{r['errors']} {r['error_kinds'] if r['errors'] else ''}|",
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
