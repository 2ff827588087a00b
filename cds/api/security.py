"""JWT client authentication (SPEC §Trusting CDS Clients; best-practice validation order).

1. the unverified ``iss`` must be on the allow-list (else we would not know which keys to use);
2. the header must name an asymmetric algorithm we accept (``none`` and HMAC are refused, which
   also blocks key-confusion attacks) and a ``kid``; keys are never fetched from a URL a token
   names: with a JWKS URL configured, a ``jku``, if sent, must equal it; with keys pinned from a
   file the ``jku`` is ignored (EHRs such as the reference sandbox always send one, and an
   air-gapped site cannot reach it), and the pinned keys decide;
3. the signature must verify with that issuer's key for ``kid`` (a pinned set must hold the kid);
4. ``aud`` must be this endpoint's URL (trailing slashes ignored, nothing else normalized), ``exp``
   in the future, ``iat``/``nbf`` not in the future, lifetime ``exp - iat`` at most the configured
   maximum (default 5 minutes: the sandbox and Inferno sign for exactly 5 minutes; it also bounds
   how long a stolen token and the replay store live);
5. ``jti`` must be new (checked last so forged tokens cannot fill the replay store).
Any failure is a bare 401; the reason is logged at debug level only, without the token.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import orjson
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from cds.api.settings import TrustedIssuer
from cds.errors import Unauthorized

log = logging.getLogger("cds.api.security")

ALLOWED_ALGORITHMS = ("ES384", "RS384", "ES256", "RS256", "ES512", "RS512")


class ReplayStore(Protocol):
    """Remembers ``jti`` values until their token expires (shared by all workers)."""

    def remember(self, issuer: str, jti: str, expires: int) -> bool:
        """True if the jti is new (and is now remembered), False if it was seen before."""
        ...


@dataclass(frozen=True)
class Claims:
    """The verified claims a request may use for logging and audit (never the token itself)."""

    iss: str
    jti: str
    tenant: str | None


def _b64json(segment: str) -> Any:
    padded = segment + "=" * (-len(segment) % 4)
    return orjson.loads(base64.urlsafe_b64decode(padded.encode("ascii")))


class KeyCache:
    """JWK Sets per trusted issuer: files read at start, URLs fetched lazily and re-fetched after
    ``ttl`` seconds or, at most once a minute, when an unknown ``kid`` appears (key rotation)."""

    def __init__(self, issuers: tuple[TrustedIssuer, ...], client: httpx.AsyncClient, ttl: int) -> None:
        self.issuers = {i.iss: i for i in issuers}
        self.client = client
        self.ttl = ttl
        self._sets: dict[str, tuple[KeySet, float]] = {}
        self._lock = asyncio.Lock()
        for issuer in issuers:
            if not issuer.jwks_is_url:
                self._sets[issuer.iss] = (
                    KeySet.import_key_set(orjson.loads(Path(issuer.jwks).read_bytes())),
                    float("inf"),
                )

    async def _fetch(self, issuer: TrustedIssuer) -> KeySet:
        response = await self.client.get(issuer.jwks, headers={"Accept": "application/json"})
        response.raise_for_status()
        return KeySet.import_key_set(orjson.loads(response.content))

    async def key_set(self, issuer: TrustedIssuer, kid: str) -> KeySet:
        """The issuer's key set, refreshed if stale or if it lacks ``kid``."""
        now = time.monotonic()
        cached = self._sets.get(issuer.iss)
        if cached is not None:
            keys, fetched = cached
            fresh = fetched == float("inf") or now - fetched < self.ttl
            has_kid = any(k.kid == kid for k in keys.keys)
            if fresh and (has_kid or not issuer.jwks_is_url or now - fetched < 60):
                return keys
        async with self._lock:
            try:
                keys = await self._fetch(issuer)
            except (httpx.HTTPError, ValueError, JoseError) as exc:
                if cached is not None:
                    return cached[0]
                raise Unauthorized(f"JWKS of {issuer.iss} unavailable: {type(exc).__name__}") from exc
            self._sets[issuer.iss] = (keys, now)
            return keys


class JwtVerifier:
    """Checks a bearer JWT against the allow-list and the endpoint it was sent to."""

    def __init__(
        self, keys: KeyCache, replay: ReplayStore, *, base_url: str, skew: int, max_lifetime: int
    ) -> None:
        self.keys = keys
        self.base_url = base_url.rstrip("/")
        self.replay = replay
        self.skew = skew
        self.max_lifetime = max_lifetime

    async def verify(self, authorization: str | None, paths: tuple[str, ...]) -> Claims:
        """Verified claims, or Unauthorized; ``aud`` must be our base URL (or the issuer's) + a path."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:  # RFC 7235: the scheme is case-insensitive
            raise Unauthorized("no bearer token")
        parts = token.split(".")
        if len(parts) != 3:
            raise Unauthorized("not a compact JWS")
        try:
            header = _b64json(parts[0])
            unverified = _b64json(parts[1])
        except (ValueError, UnicodeError) as exc:
            raise Unauthorized("undecodable header or payload") from exc
        if not isinstance(header, dict) or not isinstance(unverified, dict):
            raise Unauthorized("header or payload is not an object")
        alg, kid, iss = header.get("alg"), header.get("kid"), unverified.get("iss")
        if alg not in ALLOWED_ALGORITHMS:
            raise Unauthorized(f"algorithm {alg!r} not accepted")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("no kid")
        if "typ" in header and str(header["typ"]).upper() != "JWT":
            raise Unauthorized("typ is not JWT")
        issuer = self.keys.issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise Unauthorized("issuer not trusted")
        if issuer.jwks_is_url and "jku" in header and header["jku"] != issuer.jwks:
            raise Unauthorized("jku is not the configured JWKS URL of this issuer")
        keys = await self.keys.key_set(issuer, kid)
        if not any(k.kid == kid for k in keys.keys):
            raise Unauthorized("no key with this kid")
        try:
            verified = jwt.decode(token, keys, algorithms=[alg])
        except (JoseError, ValueError, KeyError) as exc:
            raise Unauthorized(f"signature: {type(exc).__name__}") from exc
        claims = verified.claims
        base = issuer.audience_base or self.base_url
        expected = {base + path for path in paths}
        self._check_claims(claims, expected)
        jti = claims["jti"]
        if not self.replay.remember(issuer.iss, jti, int(claims["exp"])):
            raise Unauthorized("jti replayed")
        tenant = claims.get("tenant")
        return Claims(iss=issuer.iss, jti=jti, tenant=tenant if isinstance(tenant, str) else None)

    def _check_claims(self, claims: dict[str, Any], audiences: set[str]) -> None:
        now = time.time()
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if not any(isinstance(a, str) and a.rstrip("/") in audiences for a in auds):
            raise Unauthorized("aud is not this endpoint")
        exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf")
        if not isinstance(exp, int | float) or isinstance(exp, bool) or exp < now - self.skew:
            raise Unauthorized("expired or no exp")
        if not isinstance(iat, int | float) or isinstance(iat, bool) or iat > now + self.skew:
            raise Unauthorized("no iat or iat in the future")
        if exp - iat > self.max_lifetime:
            raise Unauthorized("token lifetime (exp - iat) above the maximum")
        if nbf is not None and (not isinstance(nbf, int | float) or nbf > now + self.skew):
            raise Unauthorized("not yet valid")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 0 < len(jti) <= 256:
            raise Unauthorized("no jti")
