"""Patient data for a hook call: prefetch first, the client's FHIR server for whatever is missing.

Prefetch semantics (SPEC §Prefetch Template): an absent key is fetched; ``null`` means "no data"
(never re-queried); an OperationOutcome means the client failed, so it is fetched; a paginated
Bundle has its ``next`` links followed. Fetches run in parallel with short timeouts, send the
lent access token only to the ``fhirServer`` origin, and never follow a link to another origin.
When any key cannot be had the call answers 412: an evaluation on partial data could miss an
alert or recommend on stale facts, which is worse than no card.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import httpx
import orjson

from cds.api.services import PATIENT_KEY, PATIENT_TOKEN
from cds.errors import BadPrefetch, DataUnavailable

JSON = dict[str, Any]
log = logging.getLogger("cds.api.fhir")


@dataclass(frozen=True)
class FhirAccess:
    """Where and how to fetch: the client's FHIR base URL and the lent bearer token, if any."""

    base: str | None
    token: str | None


def render_template(template: str, patient_id: str) -> str:
    """Fill the only token our templates use (``patient_id`` was validated as a FHIR id) and
    percent-encode each query value (``|`` in ``system|code`` tokens becomes ``%7C``)."""
    path, _, query = template.replace(PATIENT_TOKEN, patient_id).partition("?")
    if not query:
        return path
    pairs = [part.partition("=") for part in query.split("&")]
    return path + "?" + "&".join(f"{name}={quote(value, safe=',')}" for name, _, value in pairs)


def is_outcome(value: Any) -> bool:
    """Whether a prefetch or fetched value is an OperationOutcome (the client or server failed)."""
    return isinstance(value, dict) and value.get("resourceType") == "OperationOutcome"


def _next_link(bundle: JSON) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return str(link["url"])
    return None


def _bundle_resources(bundle: JSON, key: str) -> list[JSON]:
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise BadPrefetch(f"prefetch.{key}: Bundle.entry is not a list")
    out: list[JSON] = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise BadPrefetch(f"prefetch.{key}: a Bundle entry is not an object")
        resource = entry.get("resource")
        search = entry.get("search")
        if (isinstance(search, dict) and search.get("mode") == "outcome") or is_outcome(resource):
            continue  # informational OperationOutcome inside a searchset
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise BadPrefetch(f"prefetch.{key}: a Bundle entry has no FHIR resource")
        out.append(resource)
    return out


LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def fhir_server_allowed(url: str, allowed: tuple[str, ...]) -> bool:
    """Whether the service may fetch ``url`` (SSRF guard: a client names the server it wants us to call).

    With an allow-list, scheme, host and port must equal an entry and the path must start with its
    path. Without one, any https server, and plain http only to loopback (CDS Hooks requires https
    when production data is exchanged).
    """
    parts = urlsplit(url)
    if allowed:
        for entry in allowed:
            want = urlsplit(entry)
            if (parts.scheme, parts.hostname, parts.port) == (want.scheme, want.hostname, want.port) and (
                parts.path.rstrip("/") + "/"
            ).startswith(want.path.rstrip("/") + "/"):
                return True
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS)


class FhirFetcher:
    """Runs the templated queries against a client's FHIR server (one shared async HTTP client)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        timeout_seconds: float,
        max_pages: int,
        allowed_servers: tuple[str, ...] = (),
    ) -> None:
        self.client = client
        self.timeout = timeout_seconds
        self.max_pages = max_pages
        self.allowed_servers = allowed_servers

    async def _get(self, url: str, access: FhirAccess) -> Any:
        if not fhir_server_allowed(url, self.allowed_servers):
            raise DataUnavailable("fhirServer is not allowed by this service (--fhir-server; https required)")
        headers = {"Accept": "application/fhir+json"}
        if access.token:
            headers["Authorization"] = f"Bearer {access.token}"
        try:
            response = await self.client.get(url, headers=headers)
        except httpx.HTTPError as exc:
            raise DataUnavailable(f"FHIR server unreachable ({type(exc).__name__})") from exc
        if response.status_code == 404 and "?" not in url:
            return None  # a read that found nothing
        if response.status_code != 200:
            raise DataUnavailable(f"FHIR server answered {response.status_code}")
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise DataUnavailable("FHIR server answered with non-JSON") from exc

    async def follow(self, bundle: JSON, key: str, access: FhirAccess) -> list[JSON]:
        """All resources of a searchset Bundle, following ``next`` links on the fhirServer origin."""
        resources = _bundle_resources(bundle, key)
        url = _next_link(bundle)
        pages = 1
        while url is not None:
            if access.base is None:
                raise DataUnavailable(f"{key}: paginated prefetch and no fhirServer to fetch the rest")
            url = urljoin(access.base + "/", url)
            if urlsplit(url)[:2] != urlsplit(access.base)[:2]:
                raise DataUnavailable(f"{key}: next link points outside fhirServer")
            pages += 1
            if pages > self.max_pages:
                raise DataUnavailable(f"{key}: more than {self.max_pages} pages")
            page = await self._get(url, access)
            if not isinstance(page, dict) or page.get("resourceType") != "Bundle":
                raise DataUnavailable(f"{key}: next page is not a Bundle")
            resources += _bundle_resources(page, key)
            url = _next_link(page)
        return resources

    async def query(self, key: str, query: str, access: FhirAccess) -> list[JSON]:
        """Run one templated query; [] for no data, DataUnavailable when it cannot be answered."""
        if access.base is None:
            raise DataUnavailable(f"{key}: not prefetched and no fhirServer")
        value = await self._get(f"{access.base}/{query}", access)
        return await self.interpret(key, value, access, fetched=True)

    async def interpret(self, key: str, value: Any, access: FhirAccess, *, fetched: bool) -> list[JSON]:
        """Resources of one prefetch or fetched value."""
        if value is None:
            return []
        if is_outcome(value):
            raise DataUnavailable(f"{key}: OperationOutcome")
        if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
            if fetched:
                raise DataUnavailable(f"{key}: FHIR server answered with something that is not FHIR")
            raise BadPrefetch(f"prefetch.{key}: not a FHIR resource, Bundle or null")
        if value["resourceType"] == "Bundle":
            return await self.follow(value, key, access)
        return [value]

    async def gather(
        self, templates: dict[str, str], prefetch: dict[str, Any] | None, patient_id: str, access: FhirAccess
    ) -> dict[str, list[JSON]]:
        """Every template's resources: prefetch where usable, parallel fetches for the rest."""
        prefetch = prefetch or {}
        results: dict[str, list[JSON]] = {}
        to_fetch: list[str] = []
        pending: dict[str, Any] = {}
        for key in templates:
            if key not in prefetch:
                to_fetch.append(key)
            elif is_outcome(prefetch[key]):
                log.info("prefetch key %s is an OperationOutcome; fetching it", key)
                to_fetch.append(key)
            else:
                pending[key] = prefetch[key]
        if prefetch.get(PATIENT_KEY, 0) is None:
            raise DataUnavailable("prefetch.patient is null: the patient does not exist", origin=PATIENT_KEY)

        async def from_prefetch(key: str) -> tuple[str, list[JSON]]:
            try:
                return key, await self.interpret(key, pending[key], access, fetched=False)
            except DataUnavailable as exc:
                exc.origin = exc.origin or key  # which data was missing, for the caller to name
                raise

        async def from_server(key: str) -> tuple[str, list[JSON]]:
            try:
                return key, await self.query(key, render_template(templates[key], patient_id), access)
            except DataUnavailable as exc:
                exc.origin = exc.origin or key
                raise

        jobs = [from_prefetch(k) for k in pending] + [from_server(k) for k in to_fetch]
        try:
            done = await asyncio.wait_for(asyncio.gather(*jobs), timeout=self.timeout)
        except TimeoutError as exc:
            raise DataUnavailable(f"FHIR server did not answer within {self.timeout:g} s") from exc
        for key, resources in done:
            results[key] = resources
        if not results.get(PATIENT_KEY):
            raise DataUnavailable("no Patient resource", origin=PATIENT_KEY)
        return results
