"""Listen on the relay ports, admit ECU connections and publish decoded frames.

Every admitted ECU connection becomes a ``Session`` (``session``), which pipes it
byte for byte to the same port on EMA, or to a responder in cloudless mode. The
relay is the session's host (``SessionHost``): it keeps the counters, decodes each
frame the session cuts (``decode_frame`` never raises: a frame it cannot read comes
back invalid, so a decoder bug can never touch forwarding), hands it to the
listener and reports upstream results.

Which connections are taken, how long one may go without completing a frame and how
many frames of it are decoded is decided in ``admission``; acknowledgements wait for
the record to be on disk in ``durability``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING

from ecu_proxy.admission import Admission, Limits
from ecu_proxy.decoder import decode_frame
from ecu_proxy.durability import HOLD_BOUND, AckGate
from ecu_proxy.frame_tap import FrameTap
from ecu_proxy.lograte import RateLimitedLog
from ecu_proxy.models import (
    DecodedFrame,
    Direction,
    FrameEvent,
    FrameKind,
    RelayCounters,
    RelayListener,
    UpstreamReport,
    UpstreamResult,
)
from ecu_proxy.session import Session
from ecu_proxy.session_host import SessionMode
from ecu_proxy.sides import EcuSide, EmaUnreachableError, connect_ema

if TYPE_CHECKING:
    from collections.abc import Callable

    from ecu_proxy.cloudless import CloudlessResponder
    from ecu_proxy.durability import DurableLedger
    from ecu_proxy.guard import Guard
    from ecu_proxy.options import Options
    from ecu_proxy.sides import Side
    from ecu_proxy.upstream import UpstreamResolver

_LOGGER = logging.getLogger(__name__)

# Distinct ids outside allowed_ecu_ids that get a log line; beyond this, silence.
MAX_IGNORED_IDS = 64


class Relay:
    """Listen on the relay ports and pipe each ECU connection to EMA."""

    def __init__(
        self,
        options: Options,
        listener: RelayListener,
        *,
        upstream: UpstreamResolver | None,
        cloudless: CloudlessResponder | None,
        guard: Guard | None = None,
        ledger: DurableLedger | None = None,
        limits: Limits | None = None,
    ) -> None:
        if cloudless is None and upstream is None:
            raise ValueError("the relay needs an upstream resolver or a responder")
        self.counters = RelayCounters()
        self.peak_write_buffer = 0
        self.framer_errors = 0
        self._options = options
        self._listener = listener
        self._upstream = upstream
        self._cloudless = cloudless
        self._guard = guard
        self._allowed = frozenset(options.allowed_ecu_ids)
        self._ledger = ledger
        # Warnings a LAN device can trigger at will are folded, with counts.
        self.log = RateLimitedLog(_LOGGER)
        self.admission = Admission(limits or Limits.from_options(options))
        self.frames_skipped_bytes = 0
        self.late_acks = 0
        # Seconds an acknowledgement may wait for the disk (see durability).
        self.hold_bound = HOLD_BOUND
        self._servers: list[asyncio.Server] = []
        self._bound: dict[int, int] = {}
        self._sessions: set[Session] = set()
        self._ids = itertools.count(1)
        self._ignored_ids: set[str] = set()
        self._outage_since: float | None = None
        self._stopping = False

    @property
    def connect_timeout(self) -> float:
        """Return the seconds EMA has to accept a connection and to answer."""
        return self._options.connect_timeout

    @property
    def bound_ports(self) -> dict[int, int]:
        """Return configured port -> actually bound port, for listening ports."""
        return dict(self._bound)

    @property
    def buffered_bytes(self) -> int:
        """Return the bytes now waiting in the relay's write buffers."""
        return sum(s.flow.buffered_bytes() for s in self._sessions)

    @property
    def paused_connections(self) -> int:
        """Return how many connections have reading paused for backpressure."""
        return sum(1 for s in self._sessions if s.flow.backpressured)

    async def start(self) -> None:
        """Bind every relay port; a port that fails is recorded, the rest start."""
        loop = asyncio.get_running_loop()
        for port in self._options.all_ports:
            try:
                server = await loop.create_server(
                    partial(EcuSide, self._accept),
                    host=self._options.listen,
                    port=port,
                    reuse_address=True,
                    backlog=max(128, self._options.max_connections),
                )
            except OSError as err:
                text = f"error: {err.strerror or err}"
                self.counters.listeners[port] = text
                _LOGGER.error(
                    "Cannot listen on %s port %d: %s",
                    self._options.listen,
                    port,
                    err.strerror or err,
                )
                continue
            self._servers.append(server)
            self._bound[port] = server.sockets[0].getsockname()[1]
            self.counters.listeners[port] = "listening"
            _LOGGER.info(
                "Relay listening on %s port %d", self._options.listen, self._bound[port]
            )

    async def stop(self) -> None:
        """Stop listening, close open connections and wait for their handlers."""
        self._stopping = True
        for server in self._servers:
            server.close()
        sessions = list(self._sessions)
        for session in sessions:
            session.abort("relay stopping")
        if sessions:
            await asyncio.gather(*(s.done for s in sessions), return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        self._bound.clear()
        for port in list(self.counters.listeners):
            self.counters.listeners[port] = "stopped"

    def _accept(self, side: Side, transport: asyncio.Transport) -> None:
        local = transport.get_extra_info("sockname")
        peer = transport.get_extra_info("peername")
        port = int(local[1]) if local else 0
        peer_host = str(peer[0]) if peer else "?"
        peer_port = int(peer[1]) if peer else 0
        if self._stopping:  # accepted in the last loop turn before stop()
            transport.abort()
            return
        mode = (
            SessionMode.CLOUDLESS
            if self._cloudless is not None
            else SessionMode.FORWARD
        )
        conn_id = next(self._ids)
        tap = FrameTap(
            self.admission,
            peer_host,
            conn_id,
            on_skipped=partial(self._skipped, peer_host, conn_id),
            on_failure=self._framer_failed,
        )
        gate = self._guard.gate(conn_id) if self._guard is not None else None
        session = Session(
            self,
            conn_id,
            transport,
            (peer_host, peer_port),
            port,
            mode,
            tap=tap,
            command_gate=gate,
        )
        refusal = self.admission.admit(session)
        if refusal is not None:
            self.counters.rejected_connections += 1
            self.log.limited_warning(
                "rejected",
                "Rejecting connection from %s:%d on port %d: %s",
                peer_host,
                peer_port,
                port,
                refusal,
            )
            transport.abort()
            return
        side.session = session
        self._sessions.add(session)
        self.counters.connections += 1
        self.counters.active_connections += 1
        session.begin()

    # -- what sessions may ask (the SessionHost protocol) ---------------------

    def session_closed(self, session: Session) -> None:
        """Forget a session whose connections are both closed."""
        self.admission.release(session)
        self._sessions.discard(session)
        self.counters.active_connections -= 1

    def publish(
        self, session: Session, raw: bytes, direction: Direction
    ) -> DecodedFrame:
        """Decode a frame, count it, hand it to the listener and return it."""
        frame = self._decode(raw, direction)
        self._publish(session, raw, frame, direction)
        return frame

    def _decode(self, raw: bytes, direction: Direction) -> DecodedFrame:
        self.counters.frames_relayed += 1
        frame = decode_frame(raw, direction)
        if frame.kind is FrameKind.INVALID:
            self.counters.frames_invalid += 1
        else:
            self.counters.frames_decoded += 1
        return frame

    def _allowed_id(self, ecu_id: str | None) -> bool:
        if not self._allowed or ecu_id in self._allowed:
            return True
        key = ecu_id or "(unknown)"
        if key not in self._ignored_ids and len(self._ignored_ids) < MAX_IGNORED_IDS:
            self._ignored_ids.add(key)
            _LOGGER.info(
                "ECU %s is not in allowed_ecu_ids: relaying its traffic unchanged "
                "but not publishing it",
                key,
            )
        return False

    def _publish(
        self, session: Session, raw: bytes, frame: DecodedFrame, direction: Direction
    ) -> None:
        # EMA's replies carry other digits where an ECU id would be: they belong
        # to the connection's ECU.
        ecu_id = (
            session.ecu_id
            if direction is Direction.EMA_TO_ECU
            else frame.ecu_id or session.ecu_id
        )
        if not self._allowed_id(ecu_id):
            return
        event = FrameEvent(
            connection_id=session.conn_id,
            port=session.port,
            peer=session.peer_host,
            direction=direction,
            raw=raw,
            frame=frame,
            received_at=datetime.now(UTC),
        )
        try:
            self._listener.frame_received(event)
        except Exception:
            _LOGGER.exception("Listener failed on a frame; relaying continues")

    def report(
        self,
        session: Session,
        result: UpstreamResult,
        *,
        rtt_ms: float | None = None,
        detail: str | None = None,
    ) -> None:
        """Report how the upstream answered an upload."""
        if not self._allowed_id(session.ecu_id):
            return
        report = UpstreamReport(
            ecu_id=session.ecu_id,
            port=session.port,
            result=result,
            at=datetime.now(UTC),
            rtt_ms=rtt_ms,
            detail=detail,
        )
        try:
            self._listener.upstream_result(report)
        except Exception:
            _LOGGER.exception("Listener failed on an upstream report")

    async def open_upstream(self, session: Session) -> str:
        """Open EMA's side of a session; return how it went, or raise why not."""
        assert self._upstream is not None
        try:
            note = await connect_ema(
                session, self._upstream.address, self._options.connect_timeout
            )
        except EmaUnreachableError as err:
            self._ema_unreachable(str(err))
            raise
        self._ema_reachable()
        return note

    def _ema_unreachable(self, reason: str) -> None:
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            _LOGGER.warning(
                "EMA is unreachable (%s): uploads are decoded locally and closed "
                "without a reply, so the ECU keeps them and sends them again later",
                reason,
            )
        else:
            _LOGGER.debug("EMA still unreachable: %s", reason)

    def _ema_reachable(self) -> None:
        if self._outage_since is not None:
            _LOGGER.info(
                "EMA is reachable again after %.0f s",
                time.monotonic() - self._outage_since,
            )
            self._outage_since = None

    def track_buffer(self, transport: asyncio.WriteTransport) -> None:
        """Note a write buffer's size after a write."""
        size = transport.get_write_buffer_size()
        self.peak_write_buffer = max(self.peak_write_buffer, size)

    def _skipped(self, peer_host: str, conn_id: int, count: int) -> None:
        """Note bytes relayed without decoding (frame budget spent)."""
        self.frames_skipped_bytes += count
        self.log.limited_warning(
            f"budget {peer_host}",
            "%s sends more frames than the relay decodes: %d bytes of connection "
            "#%d relayed unchanged without decoding",
            peer_host,
            count,
            conn_id,
        )

    def _late_ack(self) -> None:
        self.late_acks += 1

    def ack_gate(self, write: Callable[[bytes], None]) -> AckGate:
        """Return a gate holding acknowledgements until the record is durable."""
        return AckGate(self._ledger, write, self._late_ack, self.hold_bound, self.log)

    def _framer_failed(self) -> None:
        self.framer_errors += 1

    def cloudless_reply(self, frame: DecodedFrame) -> bytes | None:
        """Return the responder's reply to a frame, or None for no reply."""
        assert self._cloudless is not None
        try:
            return self._cloudless.reply_for(frame)
        except Exception:
            _LOGGER.exception("Cloudless responder failed; not answering this frame")
            return None
