"""Asyncio WebSocket client of the ECU proxy service API, free of Home Assistant."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
from typing import TYPE_CHECKING, Any, Final, Self
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from .contract.codec import ContractError, decode
from .contract.constants import (
    DEFAULT_API_PORT,
    MIN_SCHEMA_VERSION,
    SCHEMA_VERSION,
    CloseCode,
)
from .contract.messages import (
    Event,
    FramesPage,
    ListenResult,
    ServerInfo,
    StateResult,
    decode_event,
)
from .exceptions import (
    CannotConnect,
    ConnectionClosed,
    FailedCommand,
    IncompatibleSchema,
    InvalidAuth,
    InvalidMessage,
    NotConnected,
)
from .models import ProxyState

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from .contract.frames import Frame

LOGGER = logging.getLogger(__package__)

# The API schema versions this client understands: those of its contract.
MIN_SERVER_SCHEMA_VERSION: Final = MIN_SCHEMA_VERSION
MAX_SERVER_SCHEMA_VERSION: Final = SCHEMA_VERSION

_CLOSED_TYPES: Final = (
    aiohttp.WSMsgType.CLOSE,
    aiohttp.WSMsgType.CLOSING,
    aiohttp.WSMsgType.CLOSED,
)


def connect_error_text(err: BaseException) -> str:
    """Return why a connection attempt failed, without repeating the address."""
    if isinstance(err, TimeoutError):
        return "no answer in time"
    if isinstance(err, aiohttp.WSServerHandshakeError):
        return f"not the ECU proxy's WebSocket (HTTP {err.status})"
    if isinstance(err, aiohttp.ClientConnectorError):
        err = err.os_error
    if isinstance(err, OSError) and err.errno:
        return os.strerror(err.errno).lower()
    return str(err) or type(err).__name__


def build_url(host: str, port: int) -> str:
    """Return the WebSocket URL of a service at host and port."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"ws://{host}:{port}/ws"


def normalize_url(text: str) -> str:
    """Return a ws:// or wss:// URL ending in /ws; raise ValueError if unusable.

    Accepts ``host``, ``host:port``, ``http(s)://host:port`` and
    ``ws(s)://host:port/ws``; a bare host or ``host:port`` means the service's
    WebSocket, ``ws://host:8990/ws`` unless a port is given.
    """
    text = text.strip()
    bare = "://" not in text
    if bare:
        text = f"ws://{text}"
    parts = urlsplit(text)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(
        parts.scheme.lower()
    )
    if scheme is None:
        raise ValueError(f"unsupported scheme {parts.scheme!r}")
    try:
        port = parts.port
    except ValueError as err:
        raise ValueError(f"invalid port in {text!r}") from err
    if not parts.hostname:
        raise ValueError(f"no host in {text!r}")
    path = parts.path.rstrip("/")
    if not path:
        path = "/ws"
    netloc = parts.netloc
    if port is None:
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        netloc = f"{host}:{DEFAULT_API_PORT}" if bare else host
    return urlunsplit((scheme, netloc, path, "", ""))


def read[T](kind: type[T], data: Any, what: str) -> T:
    """Return a message of the contract; InvalidMessage says what did not match."""
    try:
        return decode(kind, data)
    except ContractError as err:
        raise InvalidMessage(f"{what}: {err}") from err


def check_schema(info: ServerInfo) -> None:
    """Raise IncompatibleSchema when the service's range misses the client's."""
    if (
        info.schema_version < MIN_SERVER_SCHEMA_VERSION
        or info.min_schema_version > MAX_SERVER_SCHEMA_VERSION
    ):
        raise IncompatibleSchema(
            info.schema_version,
            info.min_schema_version,
            MIN_SERVER_SCHEMA_VERSION,
            MAX_SERVER_SCHEMA_VERSION,
        )


class Client:
    """One WebSocket connection to the ECU proxy service."""

    def __init__(
        self,
        url: str,
        session: aiohttp.ClientSession,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        heartbeat: float | None = 60.0,
    ) -> None:
        """Remember where to connect; the caller owns the session.

        aiohttp pings the service after ``heartbeat`` seconds without traffic; a
        connection that does not answer within half that time counts as lost. 60 s
        gives a busy add-on 30 s to answer, and a dead link is still noticed within
        90 s, long before ECU data counts as missing (minutes).
        """
        self.url = url
        self._session = session
        self._token = token
        self._timeout = timeout
        self._heartbeat = heartbeat
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._listening = False
        self.server_info: ServerInfo | None = None

    def __repr__(self) -> str:
        """Return a short description without the token."""
        return f"<Client {self.url} connected={self.connected}>"

    @property
    def connected(self) -> bool:
        """Return True while the WebSocket is open."""
        return self._ws is not None and not self._ws.closed

    async def __aenter__(self) -> Self:
        """Connect on entering a context."""
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Disconnect on leaving a context."""
        await self.disconnect()

    async def connect(self) -> ServerInfo:
        """Open the WebSocket, read the greeting, check the schema and log in."""
        if self.connected:
            raise CannotConnect("already connected")
        try:
            async with asyncio.timeout(self._timeout):
                ws = await self._session.ws_connect(self.url, heartbeat=self._heartbeat)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as err:
            raise CannotConnect(connect_error_text(err)) from err
        except RuntimeError as err:
            if not self._session.closed:
                raise
            # Home Assistant closed its shared session: it is stopping.
            raise CannotConnect("the HTTP session is closed") from err
        try:
            greeting = await self._receive_setup(ws)
            if greeting.get("type") != "server_info":
                raise InvalidMessage("the service did not start with server_info")  # noqa: TRY301
            info = read(ServerInfo, greeting, "server_info")
            LOGGER.debug(
                "Connected to ECU proxy %s (version %s, schema %s..%s)",
                info.server_id,
                info.version,
                info.min_schema_version,
                info.schema_version,
            )
            check_schema(info)
            if self._token:
                await self._authenticate(ws, self._token)
            elif info.requires_auth:
                raise InvalidAuth("the service requires a token")  # noqa: TRY301
        except BaseException:
            await ws.close()
            raise
        self._ws = ws
        self._ids = itertools.count(1)
        self.server_info = info
        return info

    async def _receive_setup(self, ws: aiohttp.ClientWebSocketResponse) -> Any:
        """Receive one JSON message during the handshake."""
        try:
            async with asyncio.timeout(self._timeout):
                msg = await ws.receive()
        except TimeoutError as err:
            raise CannotConnect("the service did not answer in time") from err
        if msg.type in _CLOSED_TYPES:
            code = ws.close_code
            if code == CloseCode.AUTH_FAILED:
                raise InvalidAuth("the service rejected the token")
            if code == CloseCode.INCOMPATIBLE_SCHEMA:
                raise CannotConnect("the service closed: incompatible schema")
            raise CannotConnect(f"the service closed the connection ({code})")
        if msg.type is not aiohttp.WSMsgType.TEXT:
            raise CannotConnect(f"unexpected WebSocket message type {msg.type!r}")
        try:
            data = json.loads(msg.data)
        except ValueError as err:
            raise InvalidMessage("the service sent invalid JSON") from err
        if not isinstance(data, dict):
            raise InvalidMessage("the service sent a message that is not an object")
        return data

    async def _authenticate(
        self, ws: aiohttp.ClientWebSocketResponse, token: str
    ) -> None:
        """Send the auth command and wait for its result."""
        await ws.send_json({"message_id": "auth", "command": "auth", "token": token})
        reply = await self._receive_setup(ws)
        if reply.get("type") != "result" or reply.get("message_id") != "auth":
            raise InvalidMessage("the service did not answer the auth command")
        if reply.get("success") is not True:
            raise InvalidAuth(str(reply.get("details") or "authentication failed"))

    async def disconnect(self) -> None:
        """Close the WebSocket; pending commands fail with ConnectionClosed."""
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()
        self._fail_pending(ConnectionClosed("disconnected"))

    async def listen(
        self,
        on_start: Callable[[ListenResult], None],
        on_event: Callable[[Event], None],
        *,
        since: int | None = None,
    ) -> None:
        """Start listening and dispatch messages until the connection ends.

        ``on_start`` gets the ``start_listening`` result before any later event is
        passed to ``on_event``. Returns only by raising: ``ConnectionClosed`` when
        the service goes away, ``FailedCommand`` when it refuses to start.
        """
        ws = self._ws
        if ws is None or ws.closed:
            raise NotConnected("connect() first")
        start_id = str(next(self._ids))
        args: dict[str, Any] = {} if since is None else {"since": since}
        self._listening = True
        try:
            await ws.send_json(
                {"message_id": start_id, "command": "start_listening", **args}
            )
            while True:
                msg = await ws.receive()
                if msg.type in _CLOSED_TYPES or msg.type is aiohttp.WSMsgType.ERROR:
                    raise self._closed_error(ws)
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    LOGGER.warning("Ignoring a message that is not JSON")
                    continue
                if isinstance(data, dict):
                    self._dispatch(data, start_id, on_start, on_event)
        except (aiohttp.ClientError, OSError) as err:
            raise ConnectionClosed(f"connection lost: {err}") from err
        finally:
            self._listening = False
            self._fail_pending(ConnectionClosed("connection closed"))
            if self._ws is ws:
                self._ws = None
            await ws.close()

    def _closed_error(
        self, ws: aiohttp.ClientWebSocketResponse
    ) -> ConnectionClosed | InvalidAuth | IncompatibleSchema:
        """Map a close code to the error listen() raises."""
        code = ws.close_code
        if isinstance(ws.exception(), aiohttp.ServerTimeoutError):
            return ConnectionClosed("the service stopped answering pings")
        if code == CloseCode.AUTH_FAILED:
            return InvalidAuth("the service rejected the token")
        if code == CloseCode.INCOMPATIBLE_SCHEMA and self.server_info is not None:
            info = self.server_info
            return IncompatibleSchema(
                info.schema_version,
                info.min_schema_version,
                MIN_SERVER_SCHEMA_VERSION,
                MAX_SERVER_SCHEMA_VERSION,
            )
        if code == CloseCode.TOO_SLOW:
            return ConnectionClosed("the service dropped us as too slow", code)
        return ConnectionClosed(f"the service closed the connection ({code})", code)

    def _dispatch(
        self,
        data: dict[str, Any],
        start_id: str,
        on_start: Callable[[ListenResult], None],
        on_event: Callable[[Event], None],
    ) -> None:
        """Route one message to a waiting command or an event callback."""
        match data.get("type"):
            case "result":
                message_id = str(data.get("message_id"))
                if message_id == start_id:
                    if data.get("success") is not True:
                        raise FailedCommand(
                            "start_listening",
                            str(data.get("error_code")),
                            _str_or_none(data.get("details")),
                        )
                    on_start(read(ListenResult, data.get("result"), "start_listening"))
                    return
                future = self._pending.pop(message_id, None)
                if future is None or future.done():
                    LOGGER.debug("Ignoring a result nobody waits for: %s", message_id)
                    return
                if data.get("success") is True:
                    result = data.get("result")
                    future.set_result(result if isinstance(result, dict) else {})
                else:
                    future.set_exception(
                        FailedCommand(
                            "command",
                            str(data.get("error_code")),
                            _str_or_none(data.get("details")),
                        )
                    )
            case "event":
                try:
                    event = decode_event(data)
                except ContractError as err:
                    LOGGER.warning("Ignoring a malformed event: %s", err)
                    return
                if event is None:
                    LOGGER.debug("Ignoring unknown event %s", data.get("event"))
                    return
                on_event(event)
            case other:
                LOGGER.debug("Ignoring a message of type %s", other)

    def _fail_pending(self, err: Exception) -> None:
        """Fail every command still waiting for a result."""
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(err)

    async def async_send_command(self, command: str, **args: Any) -> dict[str, Any]:
        """Send a command and return its result; needs a running listen()."""
        ws = self._ws
        if ws is None or ws.closed or not self._listening:
            raise NotConnected(f"cannot send {command}: not listening")
        message_id = str(next(self._ids))
        future: asyncio.Future[dict[str, Any]] = (
            asyncio.get_running_loop().create_future()
        )
        self._pending[message_id] = future
        try:
            await ws.send_json({"message_id": message_id, "command": command, **args})
            async with asyncio.timeout(self._timeout):
                return await future
        except FailedCommand as err:
            raise FailedCommand(command, err.error_code, err.details) from None
        except TimeoutError as err:
            raise ConnectionClosed(f"{command}: no result in time") from err
        finally:
            self._pending.pop(message_id, None)

    async def get_state(self) -> ProxyState:
        """Return the service's current state document."""
        result = await self.async_send_command("get_state")
        return ProxyState.from_document(read(StateResult, result, "get_state").state)

    async def get_frames(self, limit: int | None = None) -> list[Frame]:
        """Return the last raw frames, newest last."""
        args = {} if limit is None else {"limit": limit}
        result = await self.async_send_command("get_frames", **args)
        return read(FramesPage, result, "get_frames").frames


def _str_or_none(value: Any) -> str | None:
    """Return a string value, anything else as None."""
    return value if isinstance(value, str) else None
