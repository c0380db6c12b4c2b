"""The SSRF guard: destination URLs may not reach loopback, private, link-local or metadata
addresses unless an operator allow-listed them.

The check runs when a destination is created or updated *and* for every connection a
delivery opens (DNS answers change): :func:`pinned_pool` resolves the host once,
checks every address, and connects to a checked address — the name is never resolved again
between the check and the connection (no DNS-rebinding window). The URL, the ``Host`` header
and TLS's SNI and certificate check keep the original name. Redirects are never followed.

>>> guard = UrlGuard(resolver=lambda host: ["93.184.216.34"])
>>> guard.check("https://example.com/hook")
>>> guard = UrlGuard(resolver=lambda host: ["10.1.2.3"])
>>> guard.check("https://internal.example/hook")
Traceback (most recent call last):
...
segflow.activate.exceptions.UnsafeUrlError: url: https://internal.example/hook resolves to 10.1.2.3 (private); add it to activate.allow_list to permit it
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

import httpcore
import httpx

from segflow.activate.exceptions import InvalidDestinationError, UnsafeUrlError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str], list[str]]

_REFUSED: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "unspecified"),
    ("127.0.0.0/8", "loopback"),
    ("10.0.0.0/8", "private"),
    ("172.16.0.0/12", "private"),
    ("192.168.0.0/16", "private"),
    ("100.64.0.0/10", "carrier-grade NAT"),
    ("169.254.0.0/16", "link-local / cloud metadata"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("198.18.0.0/15", "benchmarking"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("fc00::/7", "unique local (private)"),
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
    ("fd00:ec2::254/128", "cloud metadata"),
)
REFUSED_NETWORKS: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(net), why) for net, why in _REFUSED
)


def system_resolver(host: str) -> list[str]:
    """Every address ``host`` resolves to (IPv4 and IPv6), in the system's preference order."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise InvalidDestinationError("url", f"cannot resolve {host!r}: {exc}") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def refusal_reason(address: IPAddress) -> str | None:
    """Why ``address`` is refused, or ``None`` if it is a public address.

    >>> refusal_reason(ipaddress.ip_address("169.254.169.254"))
    'link-local / cloud metadata'
    >>> refusal_reason(ipaddress.ip_address("8.8.8.8")) is None
    True
    """
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for network, why in REFUSED_NETWORKS:
        if address.version == network.version and address in network:
            return why
    return None


class UrlGuard:
    """Checks URLs against the refused ranges and an allow-list of hosts and networks.

    ``allow_list`` entries are CIDR networks (``127.0.0.1/32``, ``10.0.0.0/8``), addresses, or
    host names (matched case-insensitively before resolution).
    """

    def __init__(self, allow_list: Iterable[str] = (), *, resolver: Resolver | None = None) -> None:
        self._networks: list[IPNetwork] = []
        self._hosts: set[str] = set()
        for entry in allow_list:
            try:
                self._networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                self._hosts.add(entry.strip().lower())
        self._resolve = resolver or system_resolver

    def check(self, url: str) -> None:
        """Raise :class:`UnsafeUrlError` if ``url`` may reach a refused address."""
        self.addresses(_host_of(url), url=url)

    def addresses(self, host: str, *, url: str | None = None) -> list[str]:
        """Resolve ``host`` once and return its addresses, each checked; raise
        :class:`UnsafeUrlError` if any is refused (an allow-listed name is not checked).

        >>> UrlGuard(resolver=lambda host: ["93.184.216.34"]).addresses("example.com")
        ['93.184.216.34']
        """
        try:
            found = [str(ipaddress.ip_address(host.strip("[]")))]
        except ValueError:
            found = self._resolve(host)
        if not found:
            raise InvalidDestinationError("url", f"{host!r} resolves to no address")
        if host.lower() in self._hosts:
            return found
        for text in found:
            address = ipaddress.ip_address(text.split("%", 1)[0])
            why = refusal_reason(address)
            if why is not None and not self._allowed(address):
                raise UnsafeUrlError(url or host, str(address), why)
        return found

    def _allowed(self, address: IPAddress) -> bool:
        return any(address.version == n.version and address in n for n in self._networks)


def _host_of(url: str) -> str:
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port
    except ValueError as exc:
        raise InvalidDestinationError("url", f"not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise InvalidDestinationError("url", "only http and https URLs are supported")
    if not host:
        raise InvalidDestinationError("url", "the URL has no host")
    return host


class PinnedBackend(httpcore.SyncBackend):
    """httpcore's network backend, connecting only to addresses :class:`UrlGuard` checked.

    httpcore asks it for a TCP connection to (host, port) of the URL; TLS is started on the
    returned stream with the URL's host name, so SNI and certificate checks are unchanged.
    """

    def __init__(self, guard: UrlGuard) -> None:
        self.guard = guard

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = self.guard.addresses(host, url=f"{host}:{port}")
        except InvalidDestinationError as exc:
            if isinstance(exc, UnsafeUrlError):
                raise
            raise httpcore.ConnectError(exc.message) from exc
        error: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in addresses:
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error


def pinned_pool(guard: UrlGuard, size: int = 10) -> httpcore.ConnectionPool:
    """An ``httpcore`` connection pool whose every connection goes through
    :class:`PinnedBackend`; no proxies (a proxy would resolve the name itself), and
    redirects are the caller's to follow (segflow never does).

    >>> with pinned_pool(UrlGuard()) as pool:
    ...     pool.request("POST", "http://127.0.0.1:9/hook")
    Traceback (most recent call last):
    ...
    segflow.activate.exceptions.UnsafeUrlError: url: 127.0.0.1:9 resolves to 127.0.0.1 (loopback); add it to activate.allow_list to permit it
    """
    return httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=size,
        max_keepalive_connections=size,
        keepalive_expiry=5.0,
        network_backend=PinnedBackend(guard),
    )
