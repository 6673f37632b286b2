"""The self-check's verdicts, fed through the hub as the relay would feed it."""

from __future__ import annotations

import dataclasses
import json
import socket
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from records import ECU_ID, inverter, record

from ecu_proxy.decoder import decode_frame
from ecu_proxy.encoder import encode_data_record
from ecu_proxy.hub import Hub
from ecu_proxy.lan_dns import HOSTS_ENV, hosts_resolver
from ecu_proxy.models import (
    DecodedFrame,
    Direction,
    FrameEvent,
    RelayCounters,
    UpstreamReport,
    UpstreamResult,
)
from ecu_proxy.options import Mode, Options
from ecu_proxy.selfcheck import SelfCheck, Status
from ecu_proxy.service import Service
from ecu_proxy.upstream import ADDRESS_FILE

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

ECU_PEER = "192.168.1.50"


class Resolver:
    """A resolver answering from a table and counting its calls."""

    def __init__(self, answer: list[str] | None) -> None:
        self.answer = answer
        self.calls = 0

    async def __call__(self, host: str) -> list[str]:
        self.calls += 1
        assert host == "ecu.apsystemsema.com"
        if self.answer is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.answer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def local_record(offset: timedelta = timedelta(0)) -> tuple[DecodedFrame, datetime]:
    """Return a record stamped ``offset`` from now (local clock) and when it arrived."""
    arrived = datetime.now(UTC).replace(microsecond=0)
    ecu_time = arrived.astimezone().replace(tzinfo=None) + offset
    built = record(inverter("07"))
    return dataclasses.replace(built, timestamp=ecu_time), arrived


def feed(hub: Hub, frame: DecodedFrame, at: datetime, port: int = 8995) -> None:
    raw = encode_data_record(frame).rstrip(b"\n")
    hub.frame_received(
        FrameEvent(1, port, ECU_PEER, Direction.ECU_TO_EMA, raw, decode_frame(raw), at)
    )


def upload(hub: Hub, result: UpstreamResult, detail: str | None = None) -> None:
    hub.upstream_result(
        UpstreamReport(ECU_ID, 8995, result, datetime.now(UTC), 41.5, detail)
    )


def counters(**listeners: str) -> RelayCounters:
    result = RelayCounters()
    result.listeners = {int(p[1:]): s for p, s in listeners.items()}
    return result


def make(
    tmp_path: Path,
    *,
    answer: tuple[str, ...] | None = ("192.168.1.10",),
    addon: bool = False,
    listeners: RelayCounters | None = None,
    **changes: Any,
) -> tuple[Hub, SelfCheck, Resolver, Clock]:
    options = Options(data_dir=tmp_path).replace(**changes)
    hub = Hub(options, server_id="s", version="0")
    resolver = Resolver(None if answer is None else list(answer))
    clock = Clock()
    check = SelfCheck(
        hub,
        options,
        lambda: listeners or counters(p8995="listening", p8996="listening"),
        resolve=resolver,
        is_local=lambda ip: ip == "192.168.1.10",
        addresses=lambda: ["192.168.1.10"],
        addon=addon,
        clock=clock,
    )
    return hub, check, resolver, clock


async def test_fresh_install_waits_for_the_ecu(tmp_path: Path) -> None:
    _, check, _, _ = make(tmp_path)
    report = (await check.report()).as_dict()
    assert report["ports"]["status"] == "ok"
    assert report["ports"]["listening"] == [8995, 8996]
    assert report["ecus"]["status"] == "waiting"
    assert report["ecus"]["seen"] == []
    assert "DNS" in report["ecus"]["fix"]
    assert report["dns"]["status"] == "ok"
    assert report["ema"]["status"] == "waiting"
    assert report["clock"]["status"] == "waiting"


async def test_port_in_use_is_an_error_with_the_fix(tmp_path: Path) -> None:
    bad = counters(p8995="listening", p8996="error: address in use")
    _, check, _, _ = make(tmp_path, listeners=bad)
    ports = (await check.report()).ports
    assert ports.status is Status.ERROR
    assert ports.facts["failed"] == {"8996": "error: address in use"}
    assert ports.fix is not None
    assert "restart" in ports.fix


async def test_ecu_seen_names_its_address_port_and_time(tmp_path: Path) -> None:
    hub, check, _, _ = make(tmp_path)
    frame, at = local_record()
    feed(hub, frame, at, port=8996)
    upload(hub, UpstreamResult.OK)
    report = (await check.report()).as_dict()
    assert report["ecus"]["status"] == "ok"
    assert report["ecus"]["seen"] == [
        {"ecu_id": ECU_ID, "peer": ECU_PEER, "port": 8996, "at": at.isoformat()}
    ]
    assert report["clock"]["status"] == "ok"
    assert report["clock"]["ecus"] == [{"ecu_id": ECU_ID, "skew_s": 0.0}]
    assert report["ema"]["status"] == "ok"
    assert report["ema"]["rtt_ms"] == 41.5


async def test_ecu_known_from_state_without_captured_frames(tmp_path: Path) -> None:
    hub, check, _, _ = make(tmp_path, capture_frames=False)
    frame, at = local_record()
    feed(hub, frame, at)
    seen = (await check.report()).ecus.facts["seen"]
    assert seen == [
        {"ecu_id": ECU_ID, "peer": None, "port": None, "at": at.isoformat()}
    ]


@pytest.mark.parametrize(
    ("offset", "status", "words"),
    [
        (timedelta(seconds=-40), "ok", "off by 40 s at most"),
        (timedelta(hours=-2, seconds=-30), "warning", "-2 h off"),
        (timedelta(minutes=17), "warning", "+1020 s off"),
    ],
)
async def test_clock_skew(
    tmp_path: Path, offset: timedelta, status: str, words: str
) -> None:
    hub, check, _, _ = make(tmp_path)
    frame, at = local_record(offset)
    feed(hub, frame, at)
    clock = (await check.report()).clock
    assert clock.status.value == status
    assert words in clock.summary


async def test_dns_answers(tmp_path: Path) -> None:
    _, check, _, _ = make(tmp_path, answer=("3.120.1.1",))
    dns = (await check.report()).dns
    assert dns.status is Status.ERROR
    assert "rewrite is not in place" in dns.summary
    assert dns.fix is not None
    assert "192.168.1.10" in dns.fix
    assert dns.link is not None
    assert dns.link.endswith("#point-the-ecu-at-home-assistant-dns-rewrite")

    _, check, _, _ = make(tmp_path, answer=("192.168.1.77",))
    dns = (await check.report()).dns
    assert dns.status is Status.ERROR
    assert "not this host (192.168.1.10)" in dns.summary

    _, check, _, _ = make(tmp_path, answer=None)
    dns = (await check.report()).dns
    assert dns.status is Status.ERROR
    assert "does not resolve" in dns.summary


async def test_dns_in_the_addon_trusts_ecu_traffic(tmp_path: Path) -> None:
    # Inside the add-on's container the host's LAN address is not visible.
    hub, check, _, _ = make(tmp_path, answer=("192.168.1.77",), addon=True)
    assert (await check.report()).dns.status is Status.WARNING
    frame, at = local_record()
    feed(hub, frame, at)
    dns = (await check.report()).dns
    assert dns.status is Status.OK
    assert "ECU uploads arrive" in dns.summary


async def test_dns_answer_is_cached_for_a_minute(tmp_path: Path) -> None:
    _, check, resolver, clock = make(tmp_path)
    await check.report()
    await check.report()
    assert resolver.calls == 1
    clock.now += 61
    await check.report()
    assert resolver.calls == 2


async def test_ema_failure_and_stored_address(tmp_path: Path) -> None:
    (tmp_path / ADDRESS_FILE).write_text(
        json.dumps({"host": "ecu.apsystemsema.com", "address": "3.120.1.1"}),
        encoding="utf-8",
    )
    hub, check, _, _ = make(tmp_path)
    frame, at = local_record()
    feed(hub, frame, at)
    upload(hub, UpstreamResult.OK)
    ema = (await check.report()).ema
    assert ema.status is Status.OK
    assert ema.facts["address"] == "3.120.1.1"
    assert ema.facts["last_reply_at"] == ema.facts["last_upload_at"] is not None
    upload(hub, UpstreamResult.UNREACHABLE, "connection refused")
    ema = (await check.report()).ema
    assert ema.status is Status.ERROR
    assert "unreachable (connection refused)" in ema.summary
    assert ema.facts["last_result"] == "unreachable"
    assert ema.facts["last_reply_at"] is None


async def test_ema_off_in_cloudless_mode(tmp_path: Path) -> None:
    _, check, _, _ = make(tmp_path, mode=Mode.CLOUDLESS)
    assert (await check.report()).ema.status is Status.OFF


async def test_hosts_file_resolver(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text(
        "# comment\n10.0.0.1 other\n10.0.0.2 x ECU.apsystemsema.com # rewrite\n",
        encoding="utf-8",
    )
    resolve = hosts_resolver(path)
    assert await resolve("ecu.apsystemsema.com") == ["10.0.0.2"]
    with pytest.raises(socket.gaierror):
        await resolve("missing.example")


@pytest.fixture
async def service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Service]:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 ecu.apsystemsema.com\n", encoding="utf-8")
    monkeypatch.setenv(HOSTS_ENV, str(hosts))
    options = Options(
        listen="127.0.0.1",
        ports=(0,),
        api_host="127.0.0.1",
        api_port=0,
        data_dir=tmp_path,
        mode=Mode.CLOUDLESS,
        api_token="tok",
    )
    running = Service(options)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


async def test_health_carries_the_selfcheck_on_request_with_the_token(
    service: Service,
) -> None:
    url = f"http://127.0.0.1:{service.api_port}/api/health"
    auth = {"Authorization": "Bearer tok"}
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers=auth) as response:
            assert "selfcheck" not in await response.json()
        async with http.get(url + "?selfcheck") as response:
            assert "selfcheck" not in await response.json()
        async with http.get(url + "?selfcheck=1", headers=auth) as response:
            body = await response.json()
    check = body["selfcheck"]
    assert set(check) == {"ports", "ecus", "dns", "ema", "clock"}
    assert check["dns"]["status"] == "ok"
    assert check["dns"]["resolved"] == ["127.0.0.1"]
    assert check["ema"]["status"] == "off"
    assert check["ecus"]["status"] == "waiting"
