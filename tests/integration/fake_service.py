"""A stand-in for the ECU proxy service speaking docs/api.md on 127.0.0.1."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

from aiohttp import WSMsgType, web

SERVER_ID = "9f0c2d4e6a8b4c1d9e0f1a2b3c4d5e6f"


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
        self.frames: list[dict[str, Any]] = []
        self.commands: list[dict[str, Any]] = []
        self.listening: set[web.WebSocketResponse] = set()
        self.sockets: set[web.WebSocketResponse] = set()
        self.start_listening_fails = False
        self.server_info_extra: dict[str, Any] = {}  # more greeting fields
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
        self.seq += 1
        message = {"type": "event", "seq": self.seq, "event": event, "data": data}
        self.history.append(message)
        for ws in list(self.listening):
            await ws.send_json(message)
        return self.seq

    async def record(self, ecu: dict[str, Any], *, late: bool = False) -> int:
        """Replace one ECU's state and push a record event for it."""
        self.state["ecus"][ecu["ecu_id"]] = copy.deepcopy(ecu)
        return await self.push(
            "record", {"ecu_id": ecu["ecu_id"], "ecu": copy.deepcopy(ecu), "late": late}
        )

    async def inverter_added(self, ecu_id: str, inverter: dict[str, Any]) -> int:
        inverters = self.state["ecus"][ecu_id]["inverters"]
        inverters[inverter["id"]] = copy.deepcopy(inverter)
        return await self.push(
            "inverter_added", {"ecu_id": ecu_id, "inverter": copy.deepcopy(inverter)}
        )

    async def ecu_status(self, ecu_id: str, upstream: dict[str, Any]) -> int:
        self.state["ecus"][ecu_id]["upstream"] = copy.deepcopy(upstream)
        return await self.push("ecu_status", {"ecu_id": ecu_id, "upstream": upstream})

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
        return await self.push("ema_command", data)

    # ------------------------------------------------------------------ protocol

    async def _ws_handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.add(ws)
        await ws.send_json(
            {
                "type": "server_info",
                "server_id": self.server_id,
                "version": "0.1.0",
                "schema_version": self.schema_version,
                "min_schema_version": self.min_schema_version,
                "requires_auth": self.token is not None,
                **self.server_info_extra,
            }
        )
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
                    await ws.close(code=4001, message=b"authentication failed")
                    break
                await self._command(ws, data)
                await self._notify()
        finally:
            self.sockets.discard(ws)
            self.listening.discard(ws)
            await self._notify()
        return ws

    async def _result(
        self, ws: web.WebSocketResponse, data: dict[str, Any], result: dict[str, Any]
    ) -> None:
        await ws.send_json(
            {
                "type": "result",
                "message_id": data.get("message_id"),
                "success": True,
                "result": result,
            }
        )

    async def _error(
        self, ws: web.WebSocketResponse, data: dict[str, Any], code: str
    ) -> None:
        await ws.send_json(
            {
                "type": "result",
                "message_id": data.get("message_id"),
                "success": False,
                "error_code": code,
                "details": f"{code} for {data.get('command')}",
            }
        )

    async def _command(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        match data.get("command"):
            case "auth":
                await self._result(ws, data, {})
            case "start_listening":
                if self.start_listening_fails:
                    await self._error(ws, data, "internal_error")
                    return
                since = data.get("since")
                result: dict[str, Any]
                if isinstance(since, int) and self.history_floor <= since <= self.seq:
                    events = [e for e in self.history if e["seq"] > since]
                    result = {"last_seq": self.seq, "state": None, "events": events}
                else:
                    result = {
                        "last_seq": self.seq,
                        "state": copy.deepcopy(self.state),
                        "events": [],
                    }
                await self._result(ws, data, result)
                self.listening.add(ws)
            case "get_state":
                await self._result(ws, data, {"state": copy.deepcopy(self.state)})
            case "get_frames":
                limit = data.get("limit")
                frames = self.frames[-limit:] if isinstance(limit, int) else self.frames
                await self._result(ws, data, {"frames": frames})
            case _:
                await self._error(ws, data, "unknown_command")
