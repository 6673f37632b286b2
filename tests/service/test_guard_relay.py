"""The command guard in the relay, over loopback, with a stand-in EMA.

EMA answers the ECU's poll with each kind of command. Allowed commands reach the
ECU byte for byte; a blocked one never does: the ECU gets exactly EMA's own "no more
commands" frame for its id and EMA gets nothing at all after the poll.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from stand_ins import (
    ACK,
    CAPTURE,
    ECU_HOST,
    EMA_HOST,
    EmaConnection,
    FakeEcu,
    RecordingListener,
    StandInEma,
    WatchedRelay,
    free_port_pair,
)

from ecu_proxy.cloudless import encode_no_more_commands
from ecu_proxy.contract.constants import GuardMode
from ecu_proxy.encoder import encode_control_poll
from ecu_proxy.guard import Guard, GuardSettings
from ecu_proxy.models import Direction
from ecu_proxy.options import Options
from ecu_proxy.upstream import UpstreamResolver

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

CONTROL = Path(__file__).resolve().parent.parent / "fixtures" / "vectors" / "control"
ECU_ID = "213000000017"
POLL = encode_control_poll(ECU_ID)


def ema_frame(name: str) -> bytes:
    """Return a published EMA frame, addressed to ECU_ID."""
    return (CONTROL / name).read_bytes().replace(b"123456789013", ECU_ID.encode())


# Every EMA -> ECU command among the shared frames, and whether it changes the plant.
COMMANDS = {
    "03_fwlog_EMA_A101-reply-cmd-A118.txt": False,
    "09_fwlog_EMA_A105-set-timezone.txt": True,
    "11_fwlog_EMA_A103-clear-inverters.txt": True,
    "12_fwlog_EMA_A103-add-2-inverters.txt": True,
    "14_fwlog_EMA_A111-all-on.txt": True,
    "17_fwlog_EMA_A112-clear-gfdi.txt": True,
    "19_fwlog_EMA_A132-set-protection17.txt": True,
    "23_fwdoc_EMA_A100-no-more-commands.txt": False,
    "24_vendordoc_EMA_A119-ecu-flag.txt": True,
    "28_vendordoc_EMA_A150.txt": True,
    "29_vendordoc_EMA_A108-custom-cmd.txt": True,
}


@dataclass
class Seen:
    """What the stand-in EMA received on one control connection."""

    poll: bytes = b""
    after: bytes = b""


@dataclass
class GuardHarness:
    """A relay with a guard, a stand-in EMA that answers polls with ``command``."""

    tmp_path: Path
    port: int = field(default_factory=free_port_pair)
    listener: RecordingListener = field(default_factory=RecordingListener)
    seen: list[Seen] = field(default_factory=list)
    relay: WatchedRelay | None = None
    ema: StandInEma | None = None
    guard: Guard | None = None

    async def start(
        self,
        command: bytes,
        settings: GuardSettings,
        *,
        pieces: int = 1,
    ) -> WatchedRelay:
        """Start EMA and the relay; EMA answers a poll with ``command``."""

        async def handler(conn: EmaConnection) -> None:
            first = await conn.read_frame()
            if not first.startswith(b"APS13"):
                await conn.send(ACK)  # a data upload: acknowledge it
                await conn.read_to_eof()
                return
            seen = Seen(poll=first)
            self.seen.append(seen)
            step = max(1, len(command) // pieces)
            for start in range(0, len(command), step):
                await conn.send(command[start : start + step])
            seen.after = await conn.read_to_eof()

        self.ema = StandInEma(self.port, handler=handler)
        await self.ema.start()
        options = Options(
            listen=ECU_HOST,
            ports=(self.port,),
            ema_host=EMA_HOST,
            data_dir=self.tmp_path,
            connect_timeout=5.0,
            idle_timeout=30.0,
        ).validate()
        upstream = UpstreamResolver(EMA_HOST, (), self.tmp_path, allow_local=True)
        self.guard = Guard(settings)
        self.relay = WatchedRelay(
            options, self.listener, upstream=upstream, cloudless=None, guard=self.guard
        )
        await self.relay.start()
        return self.relay

    async def ecu(self) -> FakeEcu:
        """Connect a fake ECU."""
        assert self.relay is not None
        return await FakeEcu.connect(self.relay.bound_ports[self.port])

    async def idle(self) -> None:
        """Wait until every connection is closed."""
        relay = self.relay
        assert relay is not None
        await relay.wait_until(lambda: relay.counters.active_connections == 0, 10)

    async def ema_done(self) -> None:
        """Wait until every EMA-side handler has finished."""
        assert self.ema is not None
        for _ in range(self.ema.accepted):
            conn = await self.ema.next_connection()
            await asyncio.wait_for(conn.closed.wait(), 10)

    async def close(self) -> None:
        """Stop everything."""
        if self.relay is not None:
            await self.relay.stop()
        if self.ema is not None:
            await self.ema.stop()


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[GuardHarness]:
    h = GuardHarness(tmp_path)
    yield h
    await h.close()


async def poll_once(harness: GuardHarness, size: int | None = None) -> bytes:
    """Poll as the ECU; return everything the relay sent back until it closed."""
    ecu = await harness.ecu()
    await ecu.send(POLL)
    if size is None:
        reply = await ecu.read_to_eof()
    else:
        reply = await ecu.read_exactly(size)
        await ecu.send(f"APS1300052A100AAA0{ECU_ID}A105201705221354500END\n".encode())
        await ecu.close()
    await harness.idle()
    await harness.ema_done()
    return reply


def test_ema_no_more_commands_is_the_published_frame() -> None:
    published = (CONTROL / "23_fwdoc_EMA_A100-no-more-commands.txt").read_bytes()
    assert encode_no_more_commands(ECU_ID) == published


@pytest.mark.parametrize("name", sorted(COMMANDS))
async def test_guard_off_forwards_every_command_byte_exact(
    harness: GuardHarness, name: str
) -> None:
    command = ema_frame(name)
    await harness.start(command, GuardSettings())
    assert await poll_once(harness, len(command)) == command
    assert harness.guard is not None
    assert harness.guard.counts.total == 0


@pytest.mark.parametrize("name", sorted(COMMANDS))
async def test_block_changes_blocks_exactly_the_plant_changing_commands(
    harness: GuardHarness, name: str
) -> None:
    command = ema_frame(name)
    await harness.start(command, GuardSettings(GuardMode.BLOCK_CHANGES))
    guard = harness.guard
    assert guard is not None
    if not COMMANDS[name]:
        assert await poll_once(harness, len(command)) == command
        assert guard.counts.total == 0
        return
    reply = await poll_once(harness)
    assert reply == encode_no_more_commands(ECU_ID)
    [seen] = harness.seen
    assert seen.poll == POLL
    assert seen.after == b""  # no forged acknowledgement, the connection closed
    assert guard.counts.total == 1
    assert guard.counts.by_ecu == {ECU_ID: 1}
    # The blocked frame is still published (as EMA sent it), with its verdict; the
    # answer the relay gave the ECU is not EMA's and is not published.
    assert [(e.direction, e.raw) for e in harness.listener.frames] == [
        (Direction.ECU_TO_EMA, POLL.removesuffix(b"\n")),
        (Direction.EMA_TO_ECU, command),
    ]
    event = harness.listener.frames[1]
    assert guard.take_verdict(event.connection_id, event.raw) is True
    assert guard.take_verdict(event.connection_id, event.raw) is False


async def test_a_command_in_pieces_is_held_until_whole_then_blocked(
    harness: GuardHarness,
) -> None:
    command = ema_frame("14_fwlog_EMA_A111-all-on.txt")
    await harness.start(command, GuardSettings(GuardMode.BLOCK_CHANGES), pieces=5)
    assert await poll_once(harness) == encode_no_more_commands(ECU_ID)
    assert harness.seen[0].after == b""


@pytest.mark.parametrize(
    ("name", "blocked"),
    [
        ("14_fwlog_EMA_A111-all-on.txt", True),
        ("09_fwlog_EMA_A105-set-timezone.txt", False),
    ],
)
async def test_block_listed_blocks_only_the_listed_actions(
    harness: GuardHarness, name: str, blocked: bool
) -> None:
    command = ema_frame(name)
    settings = GuardSettings(GuardMode.BLOCK_LISTED, ("switch_inverters",))
    await harness.start(command, settings)
    if blocked:
        assert await poll_once(harness) == encode_no_more_commands(ECU_ID)
    else:
        assert await poll_once(harness, len(command)) == command


async def test_other_connections_are_untouched_by_a_block(
    harness: GuardHarness,
) -> None:
    command = ema_frame("14_fwlog_EMA_A111-all-on.txt")
    await harness.start(command, GuardSettings(GuardMode.BLOCK_CHANGES))
    data_ecu = await harness.ecu()
    await data_ecu.send(CAPTURE)
    assert await data_ecu.read_exactly(len(ACK)) == ACK
    control = asyncio.create_task(poll_once_without_idle(harness))
    reply = await control
    await data_ecu.close()
    await harness.idle()
    await harness.ema_done()
    assert reply == encode_no_more_commands(ECU_ID)
    kinds: list[Any] = [(e.direction, e.raw[:14]) for e in harness.listener.frames]
    assert (Direction.ECU_TO_EMA, CAPTURE[:14]) in kinds
    assert (Direction.EMA_TO_ECU, ACK[:14]) in kinds
    assert harness.guard is not None
    assert harness.guard.counts.total == 1


async def poll_once_without_idle(harness: GuardHarness) -> bytes:
    """Poll on a second connection while another stays open."""
    ecu = await harness.ecu()
    await ecu.send(POLL)
    return await ecu.read_to_eof()


async def test_unknown_bytes_from_ema_pass_at_once(harness: GuardHarness) -> None:
    junk = b"HELLO-THIS-IS-NOT-A-FRAME"
    await harness.start(junk, GuardSettings(GuardMode.BLOCK_CHANGES))
    ecu = await harness.ecu()
    await ecu.send(POLL)
    assert await ecu.read_exactly(len(junk)) == junk
    await ecu.close()
    await harness.idle()
    assert harness.guard is not None
    assert harness.guard.counts.total == 0


async def test_half_a_frame_is_passed_on_when_ema_closes(
    harness: GuardHarness,
) -> None:
    half = ema_frame("14_fwlog_EMA_A111-all-on.txt")[:30]
    await harness.start(half, GuardSettings(GuardMode.BLOCK_CHANGES))
    ecu = await harness.ecu()
    await ecu.send(POLL)
    ecu.write_eof()  # EMA's handler then sees EOF and closes
    assert await ecu.read_to_eof() == half
    await harness.idle()
