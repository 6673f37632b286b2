"""Guards in front of the API: a connection cap, a header timeout, Host/Origin checks.

The API listens on the LAN. A device there must not exhaust its descriptors with
half-sent requests, and a web page in a browser there must not reach it through a
rebinding name (a foreign ``Host``) or a cross-site request (a foreign ``Origin``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from aiohttp import web
from yarl import URL

from .lograte import RateLimitedLog

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from aiohttp.typedefs import Middleware

_LOGGER = logging.getLogger(__name__)
_LIMITED = RateLimitedLog(_LOGGER)

# Open API connections at once; far above what Home Assistant and a few browsers
# need, far below the descriptor limit the relay needs for ECU connections.
MAX_API_CONNECTIONS = 256
# Open API connections from one address: Home Assistant needs one, a browser a
# few; a single device cannot take every slot.
MAX_API_CONNECTIONS_PER_ADDRESS = 32
# Seconds a new connection has to deliver its first complete request head.
HEADER_TIMEOUT_S = 10.0
# Seconds an idle keep-alive connection stays open (aiohttp's default is an hour).
KEEPALIVE_TIMEOUT_S = 15.0
# The Supervisor's address on the hassio network: Ingress requests come from it
# carrying the browser's Origin, after the Supervisor has checked the user.
SUPERVISOR_IP = "172.30.32.2"
# The Supervisor's internal DNS zone: add-ons are reachable as <hostname>.<zone>.
HASSIO_DNS_ZONE = "local.hass.io"

type _Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ConnectionGuard:
    """Wrap aiohttp's protocol factory: cap open connections, time out slow heads.

    At the cap, the oldest connection still without a complete request head makes
    room for a new one, so half-sent requests cannot keep a real client out.
    """

    def __init__(
        self,
        factory: Callable[[], asyncio.Protocol],
        *,
        limit: int = MAX_API_CONNECTIONS,
        per_address: int = MAX_API_CONNECTIONS_PER_ADDRESS,
        header_timeout: float = HEADER_TIMEOUT_S,
    ) -> None:
        """Guard connections made by ``factory``."""
        self.factory = factory
        self.limit = limit
        self.per_address = per_address
        self.header_timeout = header_timeout
        self._open: dict[asyncio.BaseTransport, _GuardedProtocol] = {}
        self._by_address: dict[str, int] = {}
        self.refused = 0
        self.timed_out = 0

    @property
    def open_connections(self) -> int:
        """Return how many connections are open."""
        return len(self._open)

    def __call__(self) -> asyncio.Protocol:
        """Return the protocol for one new connection."""
        return _GuardedProtocol(self)

    def request_started(self, transport: asyncio.BaseTransport | None) -> None:
        """Note that a connection delivered a complete request head."""
        if transport is not None:
            guarded = self._open.get(transport)
            if guarded is not None:
                guarded.started()

    def admit(
        self, guarded: _GuardedProtocol, transport: asyncio.Transport, address: str
    ) -> bool:
        """Take a new connection in, making room if one waits; say if it was."""
        if self._by_address.get(address, 0) >= self.per_address:
            return self._refuse(f"{self.per_address} open from {address}")
        if len(self._open) >= self.limit:
            waiting = next((p for p in self._open.values() if p.waiting), None)
            if waiting is None:
                return self._refuse(f"{self.limit} open (the limit)")
            waiting.expire(displaced=True)
        self._open[transport] = guarded
        self._by_address[address] = self._by_address.get(address, 0) + 1
        return True

    def _refuse(self, why: str) -> bool:
        self.refused += 1
        _LIMITED.limited_warning(
            "api-connection-cap", "API connection refused: %s connections", why
        )
        return False

    def forget(self, transport: asyncio.BaseTransport, address: str) -> None:
        """Give a closed connection's place back."""
        if self._open.pop(transport, None) is not None:
            left = self._by_address.get(address, 1) - 1
            if left > 0:
                self._by_address[address] = left
            else:
                self._by_address.pop(address, None)

    def expired(self, peer: str, *, displaced: bool) -> None:
        """Count a connection that sent no complete request in time."""
        self.timed_out += 1
        if displaced:
            _LIMITED.limited_warning(
                "api-displaced",
                "API client %s had sent no complete request when a new connection "
                "needed its slot; closed",
                peer,
            )
            return
        _LIMITED.limited_warning(
            "api-header-timeout",
            "API client %s sent no complete request within %.0f s; closed",
            peer,
            self.header_timeout,
        )


class _GuardedProtocol(asyncio.Protocol):
    """Pass everything to aiohttp's protocol once the connection is admitted."""

    def __init__(self, guard: ConnectionGuard) -> None:
        self._guard = guard
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._address = "?"

    @property
    def waiting(self) -> bool:
        """Return whether the connection has yet to send a complete request head."""
        return self._timer is not None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tcp = cast("asyncio.Transport", transport)
        peer = tcp.get_extra_info("peername")
        self._address = str(peer[0]) if peer else "?"
        if not self._guard.admit(self, tcp, self._address):
            tcp.abort()
            return
        self._transport = tcp
        self._inner = self._guard.factory()
        self._timer = asyncio.get_running_loop().call_later(
            self._guard.header_timeout, self.expire
        )
        self._inner.connection_made(tcp)

    def started(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def expire(self, *, displaced: bool = False) -> None:
        """Close a connection that sent no complete request head in time."""
        self.started()
        if self._transport is not None:
            self._guard.expired(self._address, displaced=displaced)
            self._guard.forget(self._transport, self._address)
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.started()
        if self._transport is not None:
            self._guard.forget(self._transport, self._address)
        if self._inner is not None:
            self._inner.connection_lost(exc)


class GuardedSite(web.BaseSite):
    """A TCP site whose connections pass through a ConnectionGuard."""

    def __init__(
        self,
        runner: web.AppRunner,
        host: str,
        port: int,
        *,
        limit: int = MAX_API_CONNECTIONS,
        per_address: int = MAX_API_CONNECTIONS_PER_ADDRESS,
        header_timeout: float = HEADER_TIMEOUT_S,
    ) -> None:
        """Serve ``runner`` on ``host:port``."""
        super().__init__(runner)
        self._host = host
        self._port = port
        self._limit = limit
        self._per_address = per_address
        self._header_timeout = header_timeout
        self.guard: ConnectionGuard | None = None

    @property
    def name(self) -> str:
        """Return the URL this site serves."""
        return str(URL.build(scheme="http", host=self._host, port=self._port))

    async def start(self) -> None:
        """Bind and start accepting."""
        await super().start()
        server = self._runner.server
        assert server is not None
        self.guard = ConnectionGuard(
            cast("Callable[[], asyncio.Protocol]", server),
            limit=self._limit,
            per_address=self._per_address,
            header_timeout=self._header_timeout,
        )
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.guard, self._host, self._port, reuse_address=True
        )


@dataclass(frozen=True, slots=True)
class HostPolicy:
    """Which ``Host`` and ``Origin`` headers the API answers."""

    names: frozenset[str]  # lower case, no trailing dot
    suffixes: tuple[str, ...]  # ".local" and wildcards from allowed_hosts
    extra_names: frozenset[str]  # from allowed_hosts, also allowed as Origin
    extra_suffixes: tuple[str, ...]
    trusted_peers: frozenset[str] = frozenset({SUPERVISOR_IP})

    @classmethod
    def for_this_machine(
        cls, allowed_hosts: Iterable[str] = (), *, hostnames: Iterable[str] = ()
    ) -> HostPolicy:
        """Allow this machine's names plus ``allowed_hosts`` (``*.x`` = any under x)."""
        own = {"localhost", *hostnames} if hostnames else {"localhost", *_own_names()}
        names: set[str] = set()
        for raw_name in own:
            name = _normal(raw_name)
            if not name:
                continue
            short = name.split(".", 1)[0]
            names |= {name, short, f"{short}.local", f"{short}.{HASSIO_DNS_ZONE}"}
        extra_names: set[str] = set()
        extra_suffixes: list[str] = []
        for raw_entry in allowed_hosts:
            entry = _normal(raw_entry)
            if entry.startswith("*."):
                extra_suffixes.append(entry[1:])
            elif entry:
                extra_names.add(entry)
        return cls(
            names=frozenset(names | extra_names),
            suffixes=(".local", *extra_suffixes),
            extra_names=frozenset(extra_names),
            extra_suffixes=tuple(extra_suffixes),
        )

    def host_allowed(self, host: str) -> bool:
        """Return whether a ``Host`` value (with or without port) names us."""
        name = _host_part(host)
        if name is None:
            return False
        if _is_ip(name) or name in self.names:
            return True
        return name.endswith(self.suffixes) and not name.startswith(".")

    def origin_allowed(self, origin: str, host: str | None) -> bool:
        """Return whether a page at ``origin`` may use the API reached as ``host``."""
        try:
            url = URL(origin)
        except ValueError:
            return False
        if url.scheme not in ("http", "https") or not url.host:
            return False  # "null" (sandboxed pages, files) and other schemes
        name = _normal(url.host)
        if host is not None and name == _host_part(host):
            return True  # same site: a page served under the name used to reach us
        return name in self.extra_names or (
            bool(self.extra_suffixes) and name.endswith(self.extra_suffixes)
        )

    def refusal(self, request: web.Request) -> str | None:
        """Return why the request is refused, or None to let it through."""
        host = request.headers.get("Host")
        if host is not None and not self.host_allowed(host):
            return f"unknown Host {host[:80]!r}"
        origin = request.headers.get("Origin")
        if origin is None or request.remote in self.trusted_peers:
            return None
        if not self.origin_allowed(origin, host):
            return f"foreign Origin {origin[:80]!r}"
        return None


def guard_middleware(
    policy: HostPolicy, site: Callable[[], GuardedSite | None]
) -> Middleware:
    """Return middleware that marks requests started and refuses foreign ones."""

    @web.middleware
    async def middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
        current = site()
        if current is not None and current.guard is not None:
            current.guard.request_started(request.transport)
        reason = policy.refusal(request)
        if reason is not None:
            _LIMITED.limited_warning(
                f"api-forbidden-{request.remote}",
                "API request from %s refused: %s",
                request.remote,
                reason,
            )
            return web.json_response(
                {"error": "forbidden", "details": reason}, status=403
            )
        return await handler(request)

    return middleware


def _own_names() -> set[str]:
    names = {socket.gethostname(), os.environ.get("HOSTNAME", "")}
    with contextlib.suppress(OSError):  # a resolver failure must not stop the API
        names.add(socket.getfqdn())
    return {n for n in names if n}


def _normal(name: str) -> str:
    return name.strip().lower().rstrip(".")


def _host_part(host: str) -> str | None:
    """Return the lower-case name or address of a Host value, without the port."""
    host = host.strip()
    if host.startswith("["):  # [IPv6]:port
        end = host.find("]")
        return host[1:end].lower() if end > 0 else None
    if host.count(":") > 1:
        return host.lower()  # a bare IPv6 address
    name, _, port = host.partition(":")
    if port and not port.isdecimal():
        return None
    return _normal(name) or None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
