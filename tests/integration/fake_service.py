"""A stand-in for the ECU proxy service speaking docs/api.md on 127.0.0.1.

Every message it sends is built from the contract (``contract/``), so a test that
hands it an object the contract does not admit fails here, as it would against the
real service; ``push`` alone sends what it is given, for tests of malformed events.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from custom_components.apsystems_ema_proxy.contract.codec import decode, encode
from custom_components.apsystems_ema_proxy.contract.constants import (
    CloseCode,
    ErrorCode,
)
from custom_components.apsystems_ema_proxy.contract.messages import (
    EcuStatusData,
    EcuStatusEvent,
    EmaCommandData,
    EmaCommandEvent,
    ErrorResult,
    FramesPage,
    InverterAddedData,
    InverterAddedEvent,
    ListenResult,
    RecordData,
    RecordEvent,
    Result,
    ServerInfo,
    StateResult,
)
from custom_components.apsystems_ema_proxy.contract.state import (
    Document,
    Ecu,
    NewInverter,
    Upstream,
)

if TYPE_CHECKING:
    from custom_components.apsystems_ema_proxy.contract.frames import Frame

SERVER_ID = "9f0c2d4e6a8b4c1d9e0f1a2b3c4d5e6f"
UPSTREAM_KEYS = ("result", "at", "rtt_ms", "detail")
FIXTURES = Path(__file__).parent / "fixtures"


def capture_frames() -> list[Frame]:
    """Return the frames the real service lists after the capture."""
    text = (FIXTURES / "frames_capture.json").read_text()
    return decode(FramesPage, json.loads(text)).frames


class FakeService:
    """An aiohttp server with the service's WebSocket API and controllable state."""

    def __init__(
        self,
        state: dict[str, Any],
        *,
        token: str | None = None,
        server_id: str = SERVER_ID,
        schema_version: int = 1,
        min_schema_version: int = 1,
    ) -> None:
        self.state = copy.deepcopy(state)
        self.state["server_id"] = server_id
        self.token = token
        self.server_id = server_id
        self.schema_version = schema_version
        self.min_schema_version = min_schema_version
        self.seq = 0
        self.history: list[dict[str, Any]] = []
        self.history_floor = 0  # events with seq <= floor are forgotten
        self.frames: list[Frame] = capture_frames()
        self.commands: list[dict[str, Any]] = []
        self.listening: set[web.WebSocketResponse] = set()
        self.sockets: set[web.WebSocketResponse] = set()
        self.start_listening_fails = False
        self.mqtt_discovery: bool | None = None  # the greeting's optional key
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/ws", self._ws_handler)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        if not self.port:
            server = site._server
            assert isinstance(server, asyncio.Server)
            self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for ws in list(self.sockets):
            await ws.close(code=1001, message=b"going away")
        self.sockets.clear()
        self.listening.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Any) -> None:
        """Wait (at most 10 s) until predicate() is true, woken on every change."""
        async with asyncio.timeout(10), self._changed:
            await self._changed.wait_for(predicate)

    # ------------------------------------------------------------------ events

    async def push(self, event: str, data: dict[str, Any]) -> int:
        """Send an event as given (for malformed or unknown events)."""
        self.seq += 1
        message = {"type": "event", "seq": self.seq, "event": event, "data": data}
        return await self._send_event(message)

    async def _send_event(self, message: dict[str, Any]) -> int:
        self.history.append(message)
        for ws in list(self.listening):
            await ws.send_json(message)
        return self.seq

    async def record(self, ecu: dict[str, Any], *, late: bool = False) -> int:
        """Replace one ECU's state and push a record event for it."""
        self.state["ecus"][ecu["ecu_id"]] = copy.deepcopy(ecu)
        # A record event carries the ECU without its command list.
        entry = dataclasses.replace(decode(Ecu, ecu), commands=None)
        self.seq += 1
        data = RecordData(entry.ecu_id, entry, late)
        return await self._send_event(encode(RecordEvent(seq=self.seq, data=data)))

    async def inverter_added(self, ecu_id: str, inverter: dict[str, Any]) -> int:
        inverters = self.state["ecus"][ecu_id]["inverters"]
        inverters[inverter["id"]] = copy.deepcopy(inverter)
        data = InverterAddedData(ecu_id, decode(NewInverter, inverter))
        self.seq += 1
        return await self._send_event(
            encode(InverterAddedEvent(seq=self.seq, data=data))
        )

    async def ecu_status(self, ecu_id: str, upstream: dict[str, Any]) -> int:
        """Push an upload outcome; keys left out are null."""
        status = decode(Upstream, dict.fromkeys(UPSTREAM_KEYS) | upstream)
        self.state["ecus"][ecu_id]["upstream"] = encode(status)
        self.seq += 1
        data = EcuStatusData(ecu_id, status)
        return await self._send_event(encode(EcuStatusEvent(seq=self.seq, data=data)))

    async def ema_command(self, ecu_id: str, **fields: Any) -> int:
        """Push an ema_command event (docs/api.md) with defaults for a blocked A111."""
        data: dict[str, Any] = {
            "at": "2024-02-06T10:24:00+00:00",
            "ecu_id": ecu_id,
            "command": "A111",
            "inner_command": "A111",
            "action": "switch_inverters",
            "changes_plant": True,
            "parameters": {"scope": "all_off", "count": 0, "inverter_ids": []},
            "raw_text": None,
            "outcome": "blocked",
            "blocked": True,
            "guard": "block_changes",
            "answer": None,
            "blocked_count": 1,
        }
        data.update(fields)
        data["blocked"] = data["outcome"] == "blocked"
        command = decode(EmaCommandData, data)
        self.seq += 1
        return await self._send_event(
            encode(EmaCommandEvent(seq=self.seq, data=command))
        )

    # ------------------------------------------------------------------ protocol

    async def _ws_handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.add(ws)
        greeting = ServerInfo(
            server_id=self.server_id,
            version="0.1.0",
            schema_version=self.schema_version,
            min_schema_version=self.min_schema_version,
            requires_auth=self.token is not None,
            mqtt_discovery=self.mqtt_discovery,
        )
        await ws.send_json(encode(greeting))
        authed = self.token is None
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                self.commands.append(data)
                if not authed:
                    command, token = data.get("command"), data.get("token")
                    if command == "auth" and token == self.token:
                        authed = True
                        await self._result(ws, data, {})
                        continue
                    await ws.close(
                        code=CloseCode.AUTH_FAILED, message=b"authentication failed"
                    )
                    break
                await self._command(ws, data)
                await self._notify()
        finally:
            self.sockets.discard(ws)
            self.listening.discard(ws)
            await self._notify()
        return ws

    def _document(self) -> Document:
        return decode(Document, self.state)

    async def _result(
        self, ws: web.WebSocketResponse, data: dict[str, Any], result: object
    ) -> None:
        answer = Result(message_id=data.get("message_id"), result=result)
        await ws.send_json(encode(answer))

    async def _error(
        self, ws: web.WebSocketResponse, data: dict[str, Any], code: ErrorCode
    ) -> None:
        error = ErrorResult(
            message_id=data.get("message_id"),
            error_code=code,
            details=f"{code} for {data.get('command')}",
        )
        await ws.send_json(encode(error))

    async def _command(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        match data.get("command"):
            case "auth":
                await self._result(ws, data, {})
            case "start_listening":
                if self.start_listening_fails:
                    await self._error(ws, data, ErrorCode.INTERNAL_ERROR)
                    return
                since = data.get("since")
                result: Any
                if isinstance(since, int) and self.history_floor <= since <= self.seq:
                    # replayed as sent, malformed ones included
                    events = [e for e in self.history if e["seq"] > since]
                    result = {"last_seq": self.seq, "state": None, "events": events}
                else:
                    result = ListenResult(self.seq, self._document(), [])
                await self._result(ws, data, result)
                self.listening.add(ws)
            case "get_state":
                await self._result(ws, data, StateResult(self._document()))
            case "get_frames":
                limit = data.get("limit")
                frames = self.frames[-limit:] if isinstance(limit, int) else self.frames
                await self._result(ws, data, FramesPage(frames))
            case _:
                await self._error(ws, data, ErrorCode.UNKNOWN_COMMAND)
