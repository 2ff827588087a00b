"""Where the server CPU of a warm CDS Hooks patient-view call goes, step by step, in-process.

    python bench/hooks_parts.py            # 300 prefetched resources, 200 calls

Builds the real app (JWT checks on, SQLite audit, as-of pinned), then runs the steps of
``POST /cds-services/her2-therapy-review`` one by one on the same body as bench/hooks_load.py
(the on-T-DM1 lab-history patient, 300 prefetched resources), each call with its own freshly
signed ES384 token: verify the JWT (with the replay store), read the request (JSON decode with the
duplicate-key check, request model), gather the prefetch, then in one worker thread, as the
service does, evaluate and render cards and hold back cards quieted by feedback (a database
read), write the audit record (the row and the issued cards, in the database) and the response
body, and free what the call decoded and built. CPU time of the process (``time.process_time``),
medians; uvicorn's HTTP handling is not included (bench/hooks_load.py measures the whole server).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anyio.to_thread
import orjson
from joserfc import jwt
from joserfc.jwk import ECKey

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.hooks_load import ISS, SAMPLE, build_prefetch, request_body  # noqa: E402
from cds import config  # noqa: E402
from cds.api import call as calls  # noqa: E402
from cds.api.app import create_app  # noqa: E402
from cds.api.audit import CallRecord, finish  # noqa: E402
from cds.api.settings import Settings, TrustedIssuer  # noqa: E402

SERVICE = "her2-therapy-review"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--resources", type=int, default=300)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hooks-parts-"))
    key = ECKey.generate_key("P-384", parameters={"kid": "bench-1"})
    (tmp / "jwks.json").write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    base = "http://bench.local"
    settings = Settings(
        as_of="2026-11-01",
        public_url=base,
        issuers=(TrustedIssuer.parse(f"{ISS}|{tmp / 'jwks.json'}"),),
        database_url=f"sqlite:///{tmp / 'b.db'}",
    )
    app = create_app(settings)
    count, pv = build_prefetch(SAMPLE, args.resources)
    body = request_body("patient-view", pv["patient_id"], pv["prefetch"], None)
    url = f"{base}/cds-services/{SERVICE}"

    def token() -> str:
        now = int(time.time())
        return jwt.encode(
            {"alg": "ES384", "typ": "JWT", "kid": key.kid},
            {"iss": ISS, "aud": url, "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex},
            key,
            algorithms=["ES384"],
        )

    steps: dict[str, list[float]] = {}

    def checked(rt: Any, service: Any, plan: Any, gathered: Any, request: Any, marks: list[float]) -> Any:
        """Evaluate, then hold back quieted cards: one worker thread, as cds.api.call.answer runs them."""
        rendered = calls.evaluate(rt, service, plan, gathered, request.hookInstance)
        marks.append(time.process_time())
        return calls.against_fatigue(rt, service, request.hook, rendered)

    async def run() -> None:
        async with app.router.lifespan_context(app):
            rt = app.state.runtime
            assert rt.verifier is not None
            config.tune_gc()  # what a `cds serve` worker does once it has loaded the rules
            service = rt.services[SERVICE]
            # the kept prefetches, as cds.api.call.answer passes them (versions that take them)
            kept = [rt.prefetched] if "kept" in inspect.signature(calls.read_request).parameters else []
            tokens = [token() for _ in range(args.calls + 20)]
            for number, bearer in enumerate(tokens):
                marks = [time.process_time()]
                claims = await rt.verifier.verify(f"Bearer {bearer}", (f"/cds-services/{SERVICE}",))
                marks.append(time.process_time())
                record = CallRecord("service", service.id, known_service=True)  # as cds.api.deps makes it
                request, hook, text = calls.read_request(body, service, record, *kept)
                marks.append(time.process_time())
                plan = hook.read(request.context, rt.library)
                gathered = await calls.gather(rt, request, plan.patient_id, claims.iss, text)
                marks.append(time.process_time())
                rendered = await anyio.to_thread.run_sync(
                    checked, rt, service, plan, gathered, request, marks
                )
                marks.append(time.process_time())
                await finish(rt, record, 200, rendered, None)
                orjson.dumps({"cards": rendered.cards})
                marks.append(time.process_time())
                del claims, record, request, hook, text, plan, gathered, rendered  # as the server drops them
                marks.append(time.process_time())
                if number >= 20:  # the first calls warm the memories, as an EHR's repeat calls do
                    names = ("JWT verify + replay store", "read request", "gather prefetch")
                    names += ("evaluate + cards", "feedback quieting (database)", "audit + response body")
                    names += ("free the call's objects",)
                    for name, start, end in zip(names, marks, marks[1:], strict=False):
                        steps.setdefault(name, []).append((end - start) * 1000)

    asyncio.run(run())
    total = [sum(parts) for parts in zip(*steps.values(), strict=True)]
    print(
        f"python bench/hooks_parts.py --calls {args.calls} --resources {args.resources}   ({count} resources)"
    )
    print("\n| step | CPU ms (median) |\n|---|---|")
    for name, values in steps.items():
        print(f"| {name} | {statistics.median(values):.2f} |")
    print(f"| **total** | **{statistics.median(total):.2f}** |")


if __name__ == "__main__":
    main()
