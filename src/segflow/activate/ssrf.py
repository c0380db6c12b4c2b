"""The SSRF guard: destination URLs may not reach loopback, private, link-local or metadata
addresses unless an operator allow-listed them.

The check runs when a destination is created or updated *and* before every delivery (DNS
answers change). Every address a name resolves to must be acceptable.

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
    """Every address ``host`` resolves to (IPv4 and IPv6)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise InvalidDestinationError("url", f"cannot resolve {host!r}: {exc}") from exc
    return sorted({str(info[4][0]) for info in infos})


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
        host = _host_of(url)
        if host.lower() in self._hosts:
            return
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in self._resolve(host)]
        if not addresses:
            raise InvalidDestinationError("url", f"{host!r} resolves to no address")
        for address in addresses:
            why = refusal_reason(address)
            if why is not None and not self._allowed(address):
                raise UnsafeUrlError(url, str(address), why)

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
