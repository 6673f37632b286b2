"""The service's HTTP and WebSocket API (docs/api.md) on one aiohttp server.

The messages are the contract's (``contract/messages.py``), built by the hub and
document.py. It is longer than our usual 400 lines because the HTTP routes, the
WebSocket protocol and the byte budgets share one client bookkeeping: splitting
them would pass that state between modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from .api_guard import (
    HEADER_TIMEOUT_S,
    KEEPALIVE_TIMEOUT_S,
    MAX_API_CONNECTIONS,
    MAX_API_CONNECTIONS_PER_ADDRESS,
    GuardedSite,
    HostPolicy,
    guard_middleware,
)
from .contract.codec import encode
from .contract.constants import MIN_SCHEMA_VERSION, SCHEMA_VERSION, CloseCode, ErrorCode
from .contract.messages import (
    ErrorResult,
    ListenResult,
    Result,
    ServerInfo,
    StateResult,
)
from .frame_pages import FramePage, FramePager
from .hub import FRAME_BUFFER
from .lograte import RateLimitedLog
from .outbox import Event, Subscription
from .selfcheck import SelfCheck
from .web.routes import add_web_routes

if TYPE_CHECKING:
    from collections.abc import Callable

    from .hub import Hub
    from .models import RelayCounters
    from .mqtt import MqttStatus
    from .options import Options

_LOGGER = logging.getLogger(__name__)
_LIMITED = RateLimitedLog(_LOGGER)

HEARTBEAT_S = 55.0
CLIENT_QUEUE = 1024
CLOSE_TIMEOUT_S = 5.0
SHUTDOWN_TIMEOUT_S = 2.0
AUTH_TIMEOUT_S = 10.0
MAX_MESSAGE_BYTES = 64 * 1024
# Bytes of text one WebSocket client may have waiting; a full state document of
# the largest installation the state admits fits several times.
CLIENT_QUEUE_BYTES = 4 * 1024 * 1024
# Bytes of command results waiting for all WebSocket clients together (events are
# shared between clients; results are each client's own). A result being written
# is held about three times over (text, encoded, framed), so this stays small.
ALL_RESULTS_BYTES = 16 * 1024 * 1024
# HTTP answers are written in chunks; a client that takes longer than this to
# accept one is cut off, so a reader that never reads holds at most a chunk.
SEND_TIMEOUT_S = 30.0
# Results this small (errors, acknowledgements) are never refused for the budget
# of all clients; the client's own budget still bounds them.
SMALL_RESULT = 4096
SEND_CHUNK = 64 * 1024


class CommandError(Exception):
    """A command failed in a way the client should be told about."""

    def __init__(self, code: ErrorCode, details: str) -> None:
        """Create an error with a docs/api.md error code."""
        super().__init__(details)
        self.code = code
        self.details = details


@dataclass(eq=False, slots=True)
class _Client:
    """One WebSocket connection."""

    ws: web.WebSocketResponse
    sub: Subscription
    peer: str
    authenticated: bool
    transport: asyncio.BaseTransport | None = None
    writer: asyncio.Task[None] | None = None
    watcher: asyncio.Task[None] | None = None
    result_bytes: int = 0  # bytes of this client's own results not yet sent


# A handler's result: a contract object, ``{}``, or a page of frames already in JSON.
type _Handler = Callable[[_Client, dict[str, Any]], object]


def _dumps(message: object) -> str:
    return json.dumps(encode(message), separators=(",", ":"))


class ApiServer:
    """Serves the state over HTTP and pushes changes over WebSocket."""

    def __init__(
        self,
        hub: Hub,
        options: Options,
        *,
        counters: Callable[[], RelayCounters],
        mqtt: MqttStatus | None = None,
        client_queue: int = CLIENT_QUEUE,
        close_timeout: float = CLOSE_TIMEOUT_S,
        client_bytes: int = CLIENT_QUEUE_BYTES,
        all_results_bytes: int = ALL_RESULTS_BYTES,
        max_connections: int = MAX_API_CONNECTIONS,
        max_connections_per_address: int = MAX_API_CONNECTIONS_PER_ADDRESS,
        header_timeout: float = HEADER_TIMEOUT_S,
        send_timeout: float = SEND_TIMEOUT_S,
        policy: HostPolicy | None = None,
        pager: FramePager | None = None,
    ) -> None:
        """Prepare the server; ``start`` binds it."""
        self._hub = hub
        self._options = options
        self._counters = counters
        self._selfcheck = SelfCheck(hub, options, counters)
        self._mqtt = mqtt
        self._client_queue = client_queue
        self._close_timeout = close_timeout
        self._client_bytes = client_bytes
        self._all_results_bytes = all_results_bytes
        self._result_bytes = 0
        self._max_connections = max_connections
        self._per_address = max_connections_per_address
        self._header_timeout = header_timeout
        self._send_timeout = send_timeout
        self._policy = policy or HostPolicy.for_this_machine(options.allowed_hosts)
        self._pager = pager or FramePager()
        self._clients: set[_Client] = set()
        self._runner: web.AppRunner | None = None
        self._site: GuardedSite | None = None
        self._port = 0
        self._commands: dict[str, _Handler] = {
            "auth": self._cmd_auth,
            "start_listening": self._cmd_start_listening,
            "get_state": self._cmd_get_state,
            "get_frames": self._cmd_get_frames,
        }

    @property
    def port(self) -> int:
        """Return the bound port (after ``start``)."""
        return self._port

    @property
    def client_count(self) -> int:
        """Return how many WebSocket clients are connected."""
        return len(self._clients)

    @property
    def connection_count(self) -> int:
        """Return how many API connections are open."""
        guard = self._site.guard if self._site is not None else None
        return guard.open_connections if guard is not None else 0

    async def start(self) -> None:
        """Bind ``api_host:api_port`` (port 0 picks a free port)."""
        app = web.Application(
            client_max_size=MAX_MESSAGE_BYTES,
            middlewares=[guard_middleware(self._policy, lambda: self._site)],
        )
        app.router.add_get("/ws", self._ws)
        app.router.add_get("/api/state", self._state)
        app.router.add_get("/api/health", self._health)
        app.router.add_get("/api/frames", self._frames)
        add_web_routes(app, self._options.api_token, self._token_ok)
        # A client that stops reading mid-response must not hold up shutdown.
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
            keepalive_timeout=KEEPALIVE_TIMEOUT_S,
        )
        await runner.setup()
        site = GuardedSite(
            runner,
            self._options.api_host,
            self._options.api_port,
            limit=self._max_connections,
            per_address=self._per_address,
            header_timeout=self._header_timeout,
        )
        self._site = site
        try:
            await site.start()
        except OSError:
            self._site = None
            await runner.cleanup()
            raise
        self._runner = runner
        address = runner.addresses[0]
        self._port = int(address[1])
        _LOGGER.info("API listening on %s:%s", self._options.api_host, self._port)

    async def stop(self) -> None:
        """Close every WebSocket (1001) and stop serving."""
        clients = list(self._clients)
        await asyncio.gather(
            *(
                self._close(c, CloseCode.GOING_AWAY, "server shutting down")
                for c in clients
            )
        )
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None

    # --- HTTP --------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        token = self._options.api_token
        if not token:
            return True
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        return scheme.lower() == "bearer" and self._token_ok(given.strip())

    @staticmethod
    def _unauthorized() -> web.Response:
        return web.json_response(
            {"error": "unauthorized", "details": "Authorization: Bearer <token>"},
            status=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    async def _state(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return self._unauthorized()
        return await self._send_json(request, _dumps(self._hub.document()).encode())

    async def _frames(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return self._unauthorized()
        try:
            page = self._frame_page(
                _query_int(request, "limit"), _query_int(request, "before")
            )
        except (ValueError, CommandError):
            return web.json_response(
                {
                    "error": ErrorCode.INVALID_ARGS,
                    "details": f"limit must be an integer 1-{FRAME_BUFFER}, "
                    "before an integer",
                },
                status=400,
            )
        return await self._send_json(request, page.body)

    async def _send_json(self, request: web.Request, body: bytes) -> web.StreamResponse:
        """Send a JSON body in chunks; cut off a client that stops reading."""
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(body)
        view = memoryview(body)
        try:
            async with asyncio.timeout(self._send_timeout):
                await response.prepare(request)
            for start in range(0, len(view), SEND_CHUNK):
                async with asyncio.timeout(self._send_timeout):
                    await response.write(view[start : start + SEND_CHUNK])
        except TimeoutError:
            _LIMITED.limited_warning(
                "api-http-slow",
                "API client %s did not read its answer within %.0f s; closed",
                request.remote,
                self._send_timeout,
            )
            if request.transport is not None:
                request.transport.abort()
        return response

    def _frame_page(self, limit: int | None, before: int | None) -> FramePage:
        return self._pager.page(self._hub.captured(), _limit(limit), before)

    async def _health(self, request: web.Request) -> web.Response:
        try:
            counters = self._counters()
        except Exception as err:  # health must answer whatever the relay does
            _LOGGER.exception("Relay counters unavailable")
            body: dict[str, Any] = {
                "status": "degraded",
                "version": self._hub.version,
                "uptime_s": round(self._hub.uptime_s(), 1),
                "error": str(err),
                "clients": self.client_count,
            }
            return web.json_response(body, status=503)
        listeners = {str(p): s for p, s in sorted(counters.listeners.items())}
        healthy = bool(listeners) and all(s == "listening" for s in listeners.values())
        disk = self._hub.disk_problem
        body = {
            "status": "ok" if healthy and disk is None else "degraded",
            "disk_problem": disk,
            "version": self._hub.version,
            "uptime_s": round(self._hub.uptime_s(), 1),
            "listeners": listeners,
            "frames": {
                "relayed": counters.frames_relayed,
                "decoded": counters.frames_decoded,
                "invalid": counters.frames_invalid,
            },
            "connections": {
                "active": counters.active_connections,
                "total": counters.connections,
                "rejected": counters.rejected_connections,
            },
            "clients": self.client_count,
        }
        # Opt-in: it looks names up; it names ECUs and addresses, so token only.
        if "selfcheck" in request.query and self._authorized(request):
            body["selfcheck"] = (await self._selfcheck.report()).as_dict()
        if self._mqtt is not None:
            body["mqtt"] = self._mqtt.as_dict()  # MQTT trouble never degrades health
        return web.json_response(body, status=200 if healthy else 503)

    # --- WebSocket ---------------------------------------------------------------

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(
            heartbeat=HEARTBEAT_S, max_msg_size=MAX_MESSAGE_BYTES
        )
        await ws.prepare(request)
        client = _Client(
            ws=ws,
            sub=self._hub.subscribe(self._client_queue, self._client_bytes),
            peer=request.remote or "?",
            authenticated=not self._options.api_token,
            transport=request.transport,
        )
        self._clients.add(client)
        client.writer = asyncio.create_task(self._write(client), name="ws-writer")
        client.watcher = asyncio.create_task(
            self._watch_overflow(client), name="ws-overflow"
        )
        self._send(
            client,
            ServerInfo(
                server_id=self._hub.server_id,
                version=self._hub.version,
                schema_version=SCHEMA_VERSION,
                min_schema_version=MIN_SCHEMA_VERSION,
                requires_auth=not client.authenticated,
                mqtt_discovery=self._mqtt.discovery if self._mqtt is not None else None,
            ),
        )
        try:
            if not client.authenticated:
                # The first message must be `auth`, and soon.
                try:
                    async with asyncio.timeout(AUTH_TIMEOUT_S):
                        first = await ws.receive()
                except TimeoutError:
                    first = None
                if first is None or first.type is not WSMsgType.TEXT:
                    _LIMITED.limited_warning(
                        f"api-auth-{client.peer}",
                        "WebSocket client %s did not authenticate",
                        client.peer,
                    )
                    await self._close(
                        client, CloseCode.AUTH_FAILED, "authentication failed"
                    )
                    return ws
                if not await self._on_text(client, first.data):
                    return ws
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    if not await self._on_text(client, msg.data):
                        break
                elif msg.type is WSMsgType.BINARY:
                    self._send(
                        client,
                        _error(None, ErrorCode.INVALID_MESSAGE, "send JSON text"),
                    )
        finally:
            client.sub.close()
            self._clients.discard(client)
            self._result_bytes -= client.result_bytes
            client.result_bytes = 0
            client.writer.cancel()
            if client.sub.overflowed.is_set():
                # the watcher is closing the socket with 4002; let it finish
                with contextlib.suppress(asyncio.CancelledError):
                    await client.watcher
            else:
                client.watcher.cancel()
        return ws

    async def _on_text(self, client: _Client, text: str) -> bool:
        """Handle one text message; return False when the connection must end."""
        if client.sub.closed:
            # Being disconnected: answer nothing more, but keep the connection (and
            # what it holds, in the budgets) until the close is done.
            return True
        try:
            message = json.loads(text)
        except ValueError:
            message = None
        if not client.authenticated:
            if (
                isinstance(message, dict)
                and message.get("command") == "auth"
                and self._token_ok(message.get("token"))
            ):
                client.authenticated = True
                self._send(client, _result(message.get("message_id"), {}))
                return True
            _LIMITED.limited_warning(
                f"api-auth-{client.peer}",
                "WebSocket client %s failed to authenticate",
                client.peer,
            )
            await self._close(client, CloseCode.AUTH_FAILED, "authentication failed")
            return False
        if not isinstance(message, dict):
            self._send(
                client,
                _error(None, ErrorCode.INVALID_MESSAGE, "expected a JSON object"),
            )
            return True
        message_id = message.get("message_id")
        command = message.get("command")
        if not isinstance(message_id, str | int) or isinstance(message_id, bool):
            self._send(
                client,
                _error(None, ErrorCode.INVALID_MESSAGE, "message_id is required"),
            )
            return True
        if not isinstance(command, str):
            self._send(
                client,
                _error(message_id, ErrorCode.INVALID_MESSAGE, "command is required"),
            )
            return True
        handler = self._commands.get(command)
        if handler is None:
            self._send(
                client,
                _error(
                    message_id,
                    ErrorCode.UNKNOWN_COMMAND,
                    f"unknown command {command!r}",
                ),
            )
            return True
        try:
            # Handlers are synchronous: the result is queued before any event that
            # follows it, with no chance for the hub to publish in between.
            result = handler(client, message)
        except CommandError as err:
            self._send(client, _error(message_id, err.code, err.details))
        except Exception:
            _LIMITED.log(
                logging.ERROR, f"api-command-{command}", "Command %s failed", command
            )
            _LOGGER.debug("Command %s failed", command, exc_info=True)
            self._send(
                client,
                _error(message_id, ErrorCode.INTERNAL_ERROR, f"{command} failed"),
            )
        else:
            if isinstance(result, FramePage):
                # the page text is shared between clients; only the envelope is new,
                # and it is not built for a client that is over its budget anyway
                if self._admits(client, len(result.json), message_id):
                    self._send_text(client, _result_around(message_id, result.json))
            else:
                self._send(client, _result(message_id, result))
        return True

    def _send(self, client: _Client, message: object) -> None:
        """Queue a message for one client behind everything queued before it."""
        self._send_text(client, _dumps(message))

    def _admits(self, client: _Client, size: int, message_id: Any = None) -> bool:
        """Return whether a result of ``size`` may be queued for the client.

        A client already holding results beyond its share is disconnected; one
        holding none is told to retry when all clients together hold too much.
        """
        over_all = self._result_bytes + size > self._all_results_bytes
        if not client.result_bytes:
            if not over_all or size <= SMALL_RESULT:
                return True
            self._send_text(
                client,
                _dumps(_error(message_id, ErrorCode.BUSY, "too many answers waiting")),
            )
            return False
        if not over_all and client.sub.queued_bytes + size <= self._client_bytes:
            return True
        _LIMITED.limited_warning(
            "api-results-budget",
            "WebSocket client %s asks for more than the server holds for it "
            "(%d bytes waiting for all clients); disconnecting it",
            client.peer,
            self._result_bytes,
        )
        client.sub.close()
        client.sub.overflowed.set()
        return False

    def _send_text(self, client: _Client, text: str) -> None:
        size = len(text)
        if size > SMALL_RESULT and not self._admits(client, size):
            return
        if client.sub.send(text):
            client.result_bytes += size
            self._result_bytes += size

    def _token_ok(self, given: Any) -> bool:
        token = self._options.api_token
        if not token:
            return True
        return isinstance(given, str) and hmac.compare_digest(
            given.encode(), token.encode()
        )

    async def _write(self, client: _Client) -> None:
        """Send queued messages in order until the connection ends."""
        ws = client.ws
        while True:
            item = await client.sub.get()
            text = item.json if isinstance(item, Event) else item
            try:
                await ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return
            finally:
                if not isinstance(item, Event) and client.result_bytes:
                    client.result_bytes -= len(text)
                    self._result_bytes -= len(text)

    async def _watch_overflow(self, client: _Client) -> None:
        """Disconnect the client once its queue overflows (4002)."""
        await client.sub.overflowed.wait()
        _LIMITED.limited_warning(
            "api-ws-slow",
            "WebSocket client %s does not keep up; disconnecting it",
            client.peer,
        )
        await self._close(client, CloseCode.TOO_SLOW, "client too slow")

    async def _close(self, client: _Client, code: int, reason: str) -> None:
        """Stop the writer, then close with ``code`` (abort if the peer stalls)."""
        if client.writer is not None:
            client.writer.cancel()
        try:
            async with asyncio.timeout(self._close_timeout):
                await client.ws.close(code=code, message=reason.encode(), drain=False)
        except TimeoutError:
            # a peer that reads nothing never takes the close frame either
            if isinstance(client.transport, asyncio.Transport):
                client.transport.abort()
        except ConnectionError:
            pass

    # --- commands (synchronous; see _on_text) ------------------------------------

    def _cmd_auth(self, client: _Client, message: dict[str, Any]) -> dict[str, Any]:
        if not self._token_ok(message.get("token")):
            raise CommandError(ErrorCode.INVALID_ARGS, "wrong token")
        return {}

    def _cmd_start_listening(
        self, client: _Client, message: dict[str, Any]
    ) -> ListenResult:
        since = message.get("since")
        if since is not None and (
            isinstance(since, bool) or not isinstance(since, int)
        ):
            raise CommandError(ErrorCode.INVALID_ARGS, "since must be an integer")
        last_seq = self._hub.last_seq
        missed = self._hub.events_since(since) if since is not None else None
        client.sub.listen(last_seq)
        if missed is None:
            return ListenResult(last_seq, self._hub.document(), [])
        return ListenResult(last_seq, None, [e.message for e in missed])

    def _cmd_get_state(self, client: _Client, message: dict[str, Any]) -> StateResult:
        return StateResult(self._hub.document())

    def _cmd_get_frames(self, client: _Client, message: dict[str, Any]) -> FramePage:
        limit, before = message.get("limit"), message.get("before")
        for name, value in (("limit", limit), ("before", before)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int)
            ):
                raise CommandError(ErrorCode.INVALID_ARGS, f"{name} must be an integer")
        return self._frame_page(limit, before)


def _limit(value: int | None) -> int:
    if value is None:
        return FRAME_BUFFER
    if not 1 <= value <= FRAME_BUFFER:
        raise CommandError(ErrorCode.INVALID_ARGS, f"limit must be 1-{FRAME_BUFFER}")
    return value


def _query_int(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    return int(raw) if raw is not None else None


def _result_around(message_id: Any, result_json: str) -> str:
    """Return a success result message around an already serialised result."""
    head = _dumps(_result(message_id, None))
    return head.removesuffix(',"result":null}') + ',"result":' + result_json + "}"


def _result(message_id: Any, result: object) -> Result:
    return Result(message_id=message_id, result=result)


def _error(message_id: Any, code: ErrorCode, details: str) -> ErrorResult:
    return ErrorResult(message_id=message_id, error_code=code, details=details)
