"""Where FHIR fallback requests may connect: public addresses only, checked at connect time.

A CDS client names the FHIR server we call (``fhirServer``), so a request is an SSRF risk: the
allow-list (cds.api.fhir) limits the URLs, and this module limits the *addresses*. The host is
resolved once per connection, every address it resolves to must be public (not loopback, private,
link-local, CGNAT, multicast, reserved or unspecified; IPv4-mapped IPv6 checked as IPv4), and the
connection goes to one of exactly those checked addresses. There is no second lookup between check
and connect, so DNS rebinding cannot swap in an internal address; TLS still verifies the
certificate against the URL's host name (httpcore sends it as SNI). ``allow_private`` lifts the
address rule for deployments whose EHR FHIR server is on an internal network (and for tests).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable

import anyio
import httpcore
import httpx

Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (the system resolver), in resolver order, deduplicated."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for info in infos:
        seen[str(info[4][0])] = None
    return list(seen)


def address_problem(address: str) -> str | None:
    """Why ``address`` is not a public unicast address, or None when it is."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return "not unicast"
    if ip.is_private or not ip.is_global:
        return "private"
    return None


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that resolves, checks and pins the address of every connection."""

    def __init__(self, *, allow_private: bool, resolver: Resolver = resolve) -> None:
        self.allow_private = allow_private
        self.resolver = resolver
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self.resolver(host, port)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}") from exc
        if not addresses:
            raise httpcore.ConnectError(f"{host} has no address")
        if not self.allow_private:
            for address in addresses:
                problem = address_problem(address)
                if problem:
                    raise httpcore.ConnectError(f"{host} resolves to a {problem} address; refused")
        last: Exception | None = None
        for address in addresses:  # pinned: connect to the checked addresses only
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except httpcore.ConnectError as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not used for FHIR fetches")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_transport(
    *, allow_private: bool, max_connections: int = 64, resolver: Resolver = resolve
) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose connections go through ``GuardedBackend`` (no proxies from the
    environment: a proxy would connect on our behalf and bypass the address check)."""
    transport = httpx.AsyncHTTPTransport(
        trust_env=False, limits=httpx.Limits(max_connections=max_connections)
    )
    pool = transport._pool
    assert isinstance(pool, httpcore.AsyncConnectionPool)  # httpx builds one without a proxy
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=pool._ssl_context,
        max_connections=max_connections,
        network_backend=GuardedBackend(allow_private=allow_private, resolver=resolver),
    )
    return transport
