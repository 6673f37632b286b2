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
    """Wrap aiohttp's protocol factory: cap open connections, time out slow heads."""

    def __init__(
        self,
        factory: Callable[[], asyncio.Protocol],
        *,
        limit: int = MAX_API_CONNECTIONS,
        header_timeout: float = HEADER_TIMEOUT_S,
    ) -> None:
        """Guard connections made by ``factory``."""
        self._factory = factory
        self.limit = limit
        self.header_timeout = header_timeout
        self._open: dict[asyncio.BaseTransport, _GuardedProtocol] = {}
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

    def _admit(self, guarded: _GuardedProtocol, transport: asyncio.Transport) -> bool:
        if len(self._open) >= self.limit:
            self.refused += 1
            _LIMITED.limited_warning(
                "api-connection-cap",
                "API connection refused: %d connections open (the limit)",
                self.limit,
            )
            return False
        self._open[transport] = guarded
        return True

    def _forget(self, transport: asyncio.BaseTransport | None) -> None:
        if transport is not None:
            self._open.pop(transport, None)

    def _expired(self, peer: str) -> None:
        self.timed_out += 1
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

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tcp = cast("asyncio.Transport", transport)
        if not self._guard._admit(self, tcp):
            tcp.abort()
            return
        self._transport = tcp
        self._inner = self._guard._factory()
        self._timer = asyncio.get_running_loop().call_later(
            self._guard.header_timeout, self._expire
        )
        self._inner.connection_made(tcp)

    def started(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        if self._transport is not None:
            peer = self._transport.get_extra_info("peername")
            self._guard._expired(str(peer[0]) if peer else "?")
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
        self._guard._forget(self._transport)
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
        header_timeout: float = HEADER_TIMEOUT_S,
    ) -> None:
        """Serve ``runner`` on ``host:port``."""
        super().__init__(runner)
        self._host = host
        self._port = port
        self._limit = limit
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
