"""Find EMA's real address without asking the (rewritten) local DNS.

The user points ``ecu.apsystemsema.com`` at this host in local DNS so that the ECU
talks to us. Resolving that name through the system resolver would therefore give
our own address back and the relay would connect to itself. This module asks public
resolvers instead, caches the answer, remembers the last good address on disk for
when DNS is not reachable, and refuses any address that belongs to this host.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

from .atomic import write_atomic

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

_LOGGER = logging.getLogger(__name__)

ADDRESS_FILE = "ema_address.json"
# After a failed lookup, reuse the fallback address this long before asking again.
FAILURE_RETRY_S = 30.0
DNS_TIMEOUT_S = 5.0


class UpstreamError(Exception):
    """EMA's address cannot be determined or must not be used."""


@dataclass(frozen=True, slots=True)
class _Cached:
    address: str
    expires: float  # time.monotonic()


def is_local_address(ip: str) -> bool:
    """Return True when ``ip`` is loopback, unspecified or bound on this host."""
    addr = ipaddress.ip_address(ip)
    if addr.is_loopback or addr.is_unspecified:
        return True
    family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((ip, 0))
    except OSError:
        return False
    return True


class UpstreamResolver:
    """Give the IP address of EMA to connect to, resolved through public DNS."""

    def __init__(
        self,
        ema_host: str,
        resolvers: Sequence[str],
        data_dir: Path,
        *,
        ttl: float = 300.0,
        allow_local: bool = False,
        dns_port: int = 53,
        dns_timeout: float = DNS_TIMEOUT_S,
    ) -> None:
        self._host = ema_host.rstrip(".")
        self._resolvers = tuple(resolvers)
        self._path = data_dir / ADDRESS_FILE
        self._ttl = ttl
        self._allow_local = allow_local
        self._dns_port = dns_port
        self._dns_timeout = dns_timeout
        self._cached: _Cached | None = None
        self._stored: str | None = None
        self._lock = asyncio.Lock()
        self._literal = _ip_literal(self._host)

    @property
    def host(self) -> str:
        """Return the configured EMA host name or IP."""
        return self._host

    async def address(self) -> str:
        """Return the IP to connect to; raise UpstreamError with a clear message."""
        if self._literal is not None:
            self._check_not_local(self._literal, f"ema_host {self._host}")
            return self._literal
        cached = self._cached
        if cached is not None and cached.expires > time.monotonic():
            return cached.address
        async with self._lock:
            cached = self._cached
            if cached is not None and cached.expires > time.monotonic():
                return cached.address
            return await self._refresh()

    async def _refresh(self) -> str:
        try:
            address = await self._resolve()
        except UpstreamError as err:
            fallback = self._fallback()
            if fallback is None:
                raise
            _LOGGER.warning(
                "%s; using the last known address %s of %s", err, fallback, self._host
            )
            self._cached = _Cached(
                fallback, time.monotonic() + min(self._ttl, FAILURE_RETRY_S)
            )
            return fallback
        self._cached = _Cached(address, time.monotonic() + self._ttl)
        if address != self._stored:
            self._remember(address)
        return address

    async def _resolve(self) -> str:
        if not self._resolvers:
            raise UpstreamError(f"cannot resolve {self._host}: no DNS resolvers set")
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(ip, self._dns_port) for ip in self._resolvers
        ]
        resolver.lifetime = self._dns_timeout
        resolver.timeout = self._dns_timeout / max(1, len(self._resolvers))
        servers = ", ".join(self._resolvers)
        try:
            answer = await resolver.resolve(self._host, dns.rdatatype.A, search=False)
        except dns.resolver.NXDOMAIN as err:
            raise UpstreamError(
                f"public DNS ({servers}) says {self._host} does not exist"
            ) from err
        except dns.resolver.NoAnswer as err:
            raise UpstreamError(
                f"public DNS ({servers}) has no IPv4 address for {self._host}"
            ) from err
        except dns.exception.Timeout as err:
            raise UpstreamError(
                f"cannot resolve {self._host}: no answer from DNS {servers}"
            ) from err
        except dns.exception.DNSException as err:
            raise UpstreamError(
                f"cannot resolve {self._host} through DNS {servers}: {err}"
            ) from err
        addresses = [rdata.to_text() for rdata in answer]
        # EMA is on the internet. A private or local answer means the resolver
        # carries the local rewrite: it points at the Home Assistant host, which
        # inside the container cannot be told apart from any other LAN address.
        usable: list[str] = [
            ip
            for ip in addresses
            if self._allow_local
            or (ipaddress.ip_address(ip).is_global and not is_local_address(ip))
        ]
        if not usable:
            raise UpstreamError(
                f"DNS {servers} gives {self._host} = {', '.join(addresses)}, a "
                "local address (probably your own rewrite); refusing to forward "
                "there, it would loop back - use resolvers without the rewrite"
            )
        return usable[0]

    def _check_not_local(self, ip: str, what: str) -> None:
        if not self._allow_local and is_local_address(ip):
            raise UpstreamError(
                f"{what} is an address of this host; refusing to forward to ourselves "
                "(that would be a loop) - set ema_host to EMA's public name or IP"
            )

    def _fallback(self) -> str | None:
        """Return the last good address (memory first, then disk), if usable."""
        if self._cached is not None:
            return self._cached.address
        try:
            raw = json.loads(self._path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            _LOGGER.warning("ignoring unreadable %s: %s", self._path, err)
            return None
        if not isinstance(raw, dict) or raw.get("host") != self._host:
            return None
        address = raw.get("address")
        if not isinstance(address, str) or _ip_literal(address) is None:
            _LOGGER.warning("ignoring %s: no valid address in it", self._path)
            return None
        if not self._allow_local and is_local_address(address):
            _LOGGER.warning("ignoring %s: %s is this host", self._path, address)
            return None
        return address

    def _remember(self, address: str) -> None:
        """Write the address to disk atomically (temp file, fsync, rename)."""
        record = {
            "host": self._host,
            "address": address,
            "resolved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        try:
            write_atomic(self._path, (json.dumps(record) + "\n").encode("utf-8"))
            self._stored = address
        except OSError as err:
            _LOGGER.warning("cannot store EMA address in %s: %s", self._path, err)


def _ip_literal(text: str) -> str | None:
    """Return the normalised IP when ``text`` is an IP literal, else None."""
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        return None
