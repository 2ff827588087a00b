"""Patient data for a hook call: prefetch first, the client's FHIR server for whatever is missing.

Prefetch semantics (SPEC §Prefetch Template): an absent key is fetched; ``null`` means "no data"
(never re-queried); an OperationOutcome means the client failed, so it is fetched; a paginated
Bundle has its ``next`` links followed. Fetches run in parallel with short timeouts, send the
lent access token only to the ``fhirServer`` origin, and never follow a link to another origin.
When any key cannot be had the call answers 412: an evaluation on partial data could miss an
alert or recommend on stale facts, which is worse than no card.

Confinement (the client names the server we call, so every fetch is an SSRF risk):
* a URL is fetched only if it lies under a FHIR base URL allowed for the calling issuer (its own
  list, or the list for every issuer); no list, no fetch. Scheme, host and port (default ports
  normalized) must be equal and the path must start with the base's path segments. Paths with
  dot segments (also percent-encoded), encoded slashes or backslashes, double encoding, empty
  segments or user info are refused, never normalized into something allowed;
* connections go to public addresses only, checked and pinned at connect time (cds.api.netguard);
* each response is streamed with a byte cap and a resource cap, and the whole call has its own
  byte and resource budget, enforced while reading (a server streaming without end is cut off);
* the 412 body says only that the data could not be obtained; why is logged at debug level.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, quote, unquote, urljoin, urlsplit

import httpx
import orjson

from cds.api.netguard import guarded_transport
from cds.api.services import PATIENT_KEY, PATIENT_TOKEN
from cds.api.settings import Settings
from cds.errors import BadPrefetch, DataUnavailable
from cds.fhir.parse import MED_TYPES

JSON = dict[str, Any]
log = logging.getLogger("cds.api.fhir")


@dataclass(frozen=True)
class FhirAccess:
    """Where and how to fetch: the client's FHIR base URL, the lent bearer token, if any, and the
    verified issuer of the call (whose FHIR servers may be fetched)."""

    base: str | None
    token: str | None
    issuer: str | None = None


@dataclass(frozen=True)
class FetchLimits:
    """Caps on what FHIR fallback fetches may bring in, per response and per call."""

    response_bytes: int = 8 * 1024 * 1024
    response_resources: int = 10_000
    call_bytes: int = 32 * 1024 * 1024
    call_resources: int = 20_000


@dataclass
class _Call:
    """One call's fetch context: where it may fetch and what is left of its budget."""

    access: FhirAccess
    allowed: tuple[str, ...]
    bytes_left: int
    resources_left: int
    limits: FetchLimits = field(repr=False, default_factory=FetchLimits)
    requests: int = 0  # HTTP requests sent (0: the data came from the prefetch alone)

    def take_resources(self, count: int, key: str) -> None:
        if count > self.limits.response_resources:
            raise DataUnavailable(
                f"{key}: a response held more than {self.limits.response_resources} resources"
            )
        self.resources_left -= count
        if self.resources_left < 0:
            raise DataUnavailable(f"{key}: the call fetched more than {self.limits.call_resources} resources")


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


# Medications named by medicationReference but not sent are read from fhirServer, up to this many
# per call (more distinct Medication resources than that is not a chart, it is an attack).
REFERENCED_MEDICATIONS = "referencedMedications"
MAX_MEDICATION_READS = 50
# a relative literal reference, optionally versioned (read as a FHIR vread)
_MEDICATION_READ = re.compile(r"(Medication/[A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?")


def missing_medications(results: dict[str, list[JSON]]) -> list[str]:
    """``Medication/<id>`` references (optionally versioned) of the medication records that no
    received resource (nor a contained one) answers, sorted: what a read must bring in."""
    present: set[str] = set()
    wanted: dict[str, str] = {}  # reference as written -> Medication/<id>
    for resources in results.values():
        for resource in resources:
            rtype = resource.get("resourceType")
            if rtype == "Medication" and isinstance(resource.get("id"), str):
                present.add(f"Medication/{resource['id']}")
            if rtype in MED_TYPES:
                ref = resource.get("medicationReference")
                target = ref.get("reference") if isinstance(ref, dict) else None
                if isinstance(target, str) and (match := _MEDICATION_READ.fullmatch(target)):
                    wanted[target] = match.group(1)
    return sorted(reference for reference, plain in wanted.items() if plain not in present)


DEFAULT_PORTS = {"http": 80, "https": 443}
_PERCENT = re.compile(r"%[0-9a-fA-F]{2}")


def url_problem(url: str) -> str | None:
    """Why ``url`` is not a plain http(s) URL whose path means what it says, or None."""
    if "\\" in url or any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        return "backslash, space or control character"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "unparseable URL"
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return "not an http(s) URL with a host"
    if "@" in parts.netloc:
        return "user info in the URL"
    if port == 0:
        return "port 0"
    path = parts.path
    decoded = unquote(path)
    if re.search(r"%2f|%5c|%00", path, re.IGNORECASE) or _PERCENT.search(decoded):
        return "encoded separator or double encoding in the path"
    segments = decoded.split("/")[1:]
    if any(seg in (".", "..") for seg in segments):
        return "dot segment in the path"
    if "" in segments[:-1]:
        return "empty segment in the path"
    return None


def _origin(parts: SplitResult) -> tuple[str, str, int]:
    return parts.scheme, (parts.hostname or "").lower(), parts.port or DEFAULT_PORTS[parts.scheme]


def _segments(path: str) -> list[str]:
    return [seg for seg in path.split("/") if seg]


def fhir_server_allowed(url: str, allowed: tuple[str, ...]) -> bool:
    """Whether the service may fetch ``url``: a well-formed URL under one of the ``allowed`` bases.

    Origins compare with default ports normalized; the base's path segments must be a prefix of
    the URL's. No allowed base: nothing is fetched.
    """
    if url_problem(url):
        return False
    parts = urlsplit(url)
    for entry in allowed:
        want = urlsplit(entry)
        base = _segments(want.path)
        if _origin(parts) == _origin(want) and _segments(parts.path)[: len(base)] == base:
            return True
    return False


@dataclass(frozen=True)
class FetchPolicy:
    """Which FHIR bases each issuer's calls may fetch, plus the bases every call may fetch."""

    every_issuer: tuple[str, ...] = ()
    by_issuer: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def allowed_for(self, issuer: str | None) -> tuple[str, ...]:
        """The bases a call authenticated as ``issuer`` (None in --insecure-dev) may fetch."""
        own = next((bases for iss, bases in self.by_issuer if iss == issuer), ())
        return self.every_issuer + own

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchPolicy:
        """--fhir-server for every issuer, --issuer-fhir-server per issuer."""
        return cls(settings.fhir_servers, tuple((i.iss, i.fhir_servers) for i in settings.issuers))


class FhirFetcher:
    """Runs the templated queries against a client's FHIR server (one guarded async HTTP client)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        timeout_seconds: float,
        max_pages: int,
        policy: FetchPolicy | None = None,
        limits: FetchLimits | None = None,
    ) -> None:
        self.client = client
        self.timeout = timeout_seconds
        self.max_pages = max_pages
        self.policy = policy or FetchPolicy()
        self.limits = limits or FetchLimits()

    @classmethod
    def from_settings(cls, settings: Settings) -> FhirFetcher:
        """A fetcher with its own HTTP client: public addresses only unless --fhir-allow-private,
        no redirects, no proxy from the environment; close it with ``aclose``."""
        timeout = httpx.Timeout(
            settings.fhir_timeout_seconds,
            connect=min(settings.fhir_connect_timeout_seconds, settings.fhir_timeout_seconds),
        )
        client = httpx.AsyncClient(
            timeout=timeout,
            limits=httpx.Limits(max_connections=settings.fhir_max_connections),
            follow_redirects=False,
            trust_env=False,
            transport=guarded_transport(allow_private=settings.fhir_allow_private),
        )
        limits = FetchLimits(
            settings.fhir_max_response_bytes,
            settings.fhir_max_response_resources,
            settings.fhir_max_call_bytes,
            settings.fhir_max_call_resources,
        )
        return cls(
            client,
            timeout_seconds=settings.fhir_timeout_seconds,
            max_pages=settings.fhir_max_pages,
            policy=FetchPolicy.from_settings(settings),
            limits=limits,
        )

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.client.aclose()

    async def _get(self, url: str, call: _Call) -> Any:
        call.requests += 1
        if not fhir_server_allowed(url, call.allowed):
            raise DataUnavailable(
                f"fetch refused: not under an allowed FHIR base ({url_problem(url) or 'not listed'})"
            )
        headers = {"Accept": "application/fhir+json"}
        if call.access.token:
            headers["Authorization"] = f"Bearer {call.access.token}"
        cap = self.limits.response_bytes
        try:
            async with self.client.stream("GET", url, headers=headers) as response:
                if response.status_code == 404 and "?" not in url:
                    return None  # a read that found nothing
                if response.status_code != 200:
                    raise DataUnavailable(f"FHIR server answered {response.status_code}")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > min(cap, call.bytes_left):
                    raise DataUnavailable(f"FHIR response declared {declared} bytes, above the cap")
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    call.bytes_left -= len(chunk)
                    if size > cap:
                        raise DataUnavailable(f"FHIR response above {cap} bytes")
                    if call.bytes_left < 0:
                        raise DataUnavailable(
                            f"FHIR fetches of the call above {self.limits.call_bytes} bytes"
                        )
                    chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise DataUnavailable(f"FHIR server unreachable ({type(exc).__name__}: {exc})") from exc
        try:
            return orjson.loads(b"".join(chunks))
        except orjson.JSONDecodeError as exc:
            raise DataUnavailable("FHIR server answered with non-JSON") from exc

    async def follow(self, bundle: JSON, key: str, call: _Call, *, fetched: bool) -> list[JSON]:
        """All resources of a searchset Bundle, following ``next`` links on the fhirServer origin."""
        access = call.access
        resources = _bundle_resources(bundle, key)
        if fetched:
            call.take_resources(len(resources), key)
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
            page = await self._get(url, call)
            if not isinstance(page, dict) or page.get("resourceType") != "Bundle":
                raise DataUnavailable(f"{key}: next page is not a Bundle")
            more = _bundle_resources(page, key)
            call.take_resources(len(more), key)
            resources += more
            url = _next_link(page)
        return resources

    async def query(self, key: str, query: str, call: _Call) -> list[JSON]:
        """Run one templated query; [] for no data, DataUnavailable when it cannot be answered."""
        if call.access.base is None:
            raise DataUnavailable(f"{key}: not prefetched and no fhirServer")
        value = await self._get(f"{call.access.base}/{query}", call)
        return await self.interpret(key, value, call, fetched=True)

    async def interpret(self, key: str, value: Any, call: _Call, *, fetched: bool) -> list[JSON]:
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
            return await self.follow(value, key, call, fetched=fetched)
        if fetched:
            call.take_resources(1, key)
        return [value]

    async def gather(
        self, templates: dict[str, str], prefetch: dict[str, Any] | None, patient_id: str, access: FhirAccess
    ) -> dict[str, list[JSON]]:
        """Every template's resources: prefetch where usable, parallel fetches for the rest."""
        results, _ = await self.gather_noting_source(templates, prefetch, patient_id, access)
        return results

    async def gather_noting_source(
        self, templates: dict[str, str], prefetch: dict[str, Any] | None, patient_id: str, access: FhirAccess
    ) -> tuple[dict[str, list[JSON]], bool]:
        """``gather``, and whether the result is a function of ``prefetch`` alone (given the templates).

        True when no HTTP request was sent (no key fetched, no page followed, no Medication read)
        and no medicationReference is left unresolved: then neither ``patient_id`` (it only fills
        the templates fetched) nor ``access`` (it only matters for a request, and for whether the
        missing Medications are read) had any effect."""
        try:
            return await self._gather(templates, prefetch, patient_id, access)
        except DataUnavailable as exc:
            log.debug("412: %s", exc.detail)
            raise

    async def _gather(
        self, templates: dict[str, str], prefetch: dict[str, Any] | None, patient_id: str, access: FhirAccess
    ) -> tuple[dict[str, list[JSON]], bool]:
        call = _Call(
            access,
            self.policy.allowed_for(access.issuer),
            self.limits.call_bytes,
            self.limits.call_resources,
            self.limits,
        )
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
                return key, await self.interpret(key, pending[key], call, fetched=False)
            except DataUnavailable as exc:
                exc.origin = exc.origin or key  # which data was missing, for the caller to name
                raise

        async def from_server(key: str) -> tuple[str, list[JSON]]:
            try:
                return key, await self.query(key, render_template(templates[key], patient_id), call)
            except DataUnavailable as exc:
                exc.origin = exc.origin or key
                raise

        async def all_or_nothing() -> list[tuple[str, list[JSON]]]:
            tasks = [asyncio.ensure_future(from_prefetch(k)) for k in pending]
            tasks += [asyncio.ensure_future(from_server(k)) for k in to_fetch]
            try:
                return await asyncio.gather(*tasks)
            finally:  # one failure ends the call: stop the other fetches (and their reading)
                for task in tasks:
                    task.cancel()

        try:
            done = await asyncio.wait_for(all_or_nothing(), timeout=self.timeout)
        except TimeoutError as exc:
            raise DataUnavailable(f"FHIR server did not answer within {self.timeout:g} s") from exc
        for key, resources in done:
            results[key] = resources
        if not results.get(PATIENT_KEY):
            raise DataUnavailable("no Patient resource", origin=PATIENT_KEY)
        wanted = missing_medications(results)
        if wanted and access.base is not None:
            try:
                found = await asyncio.wait_for(self._read_medications(wanted, call), timeout=self.timeout)
            except TimeoutError:
                found = []  # the records stay unresolved: each is skipped and raises gap.unreadable-data
            results[REFERENCED_MEDICATIONS] = found
        return results, call.requests == 0 and not wanted

    async def _read_medications(self, references: list[str], call: _Call) -> list[JSON]:
        """Read each referenced Medication (a FHIR ``read``; prefetch templates may not ``_include``).
        One that cannot be read is left out: its records are then reported unreadable, never guessed."""
        base = call.access.base

        async def read(reference: str) -> JSON | None:
            try:
                value = await self._get(f"{base}/{reference}", call)
            except DataUnavailable as exc:
                log.debug("referenced %s not read: %s", reference, exc.detail)
                return None
            match = _MEDICATION_READ.fullmatch(reference)
            plain = match.group(1) if match else None
            ok = isinstance(value, dict) and f"{value.get('resourceType')}/{value.get('id')}" == plain
            if ok:
                call.take_resources(1, REFERENCED_MEDICATIONS)
            return value if ok else None

        found = await asyncio.gather(*(read(r) for r in references[:MAX_MEDICATION_READS]))
        return [m for m in found if m is not None]
