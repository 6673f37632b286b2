"""Finding EMA's address: public DNS (stood in), cache, disk fallback, loop guard."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from typing import TYPE_CHECKING

import pytest
from stand_ins import ECU_HOST, StandInDns

from ecu_proxy.upstream import (
    ADDRESS_FILE,
    UpstreamError,
    UpstreamResolver,
    is_local_address,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

HOST = "ecu.ema.example"
# Public addresses (EMA lives on the internet); nothing here connects to them.
PUBLIC = "3.67.1.32"
OTHER_PUBLIC = "18.192.10.20"


@pytest.fixture
async def dns_server() -> AsyncIterator[StandInDns]:
    server = StandInDns({HOST: [PUBLIC]})
    await server.start()
    yield server
    server.stop()


def resolver_for(
    dns_server: StandInDns, data_dir: Path, **kwargs: float | bool
) -> UpstreamResolver:
    return UpstreamResolver(
        HOST,
        [ECU_HOST],
        data_dir,
        dns_port=dns_server.port,
        dns_timeout=float(kwargs.pop("dns_timeout", 2.0)),
        **kwargs,  # type: ignore[arg-type]
    )


def outbound_address() -> str:
    """Return this host's address on its default route (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        # Routing only (UDP connect sends nothing). Without a route the test
        # must fail rather than fall back to an address that is always local.
        sock.connect(("203.0.113.1", 9))
        address = str(sock.getsockname()[0])
    assert address != "0.0.0.0"
    return address


async def test_resolves_through_the_given_dns_and_remembers_on_disk(
    dns_server: StandInDns, tmp_path: Path
) -> None:
    resolver = resolver_for(dns_server, tmp_path)
    assert await resolver.address() == PUBLIC
    assert dns_server.queries == [HOST]
    stored = json.loads((tmp_path / ADDRESS_FILE).read_text())
    assert stored["host"] == HOST
    assert stored["address"] == PUBLIC
    assert sorted(os.listdir(tmp_path)) == [ADDRESS_FILE]  # no temp file left


async def test_answers_are_cached_for_the_ttl(
    dns_server: StandInDns, tmp_path: Path
) -> None:
    cached = resolver_for(dns_server, tmp_path)
    results = await asyncio.gather(*(cached.address() for _ in range(10)))
    assert results == [PUBLIC] * 10
    assert len(dns_server.queries) == 1

    uncached = resolver_for(dns_server, tmp_path, ttl=0.0)
    await uncached.address()
    dns_server.records[HOST] = [OTHER_PUBLIC]
    assert await uncached.address() == OTHER_PUBLIC
    assert len(dns_server.queries) == 3
    stored = json.loads((tmp_path / ADDRESS_FILE).read_text())
    assert stored["address"] == OTHER_PUBLIC


async def test_falls_back_to_the_last_good_address_in_memory(
    dns_server: StandInDns, tmp_path: Path
) -> None:
    resolver = resolver_for(dns_server, tmp_path, ttl=0.0)
    assert await resolver.address() == PUBLIC
    (tmp_path / ADDRESS_FILE).unlink()
    dns_server.mode = "servfail"
    assert await resolver.address() == PUBLIC


async def test_falls_back_to_the_address_stored_on_disk_after_a_restart(
    dns_server: StandInDns, tmp_path: Path
) -> None:
    assert await resolver_for(dns_server, tmp_path).address() == PUBLIC
    dns_server.mode = "silent"
    restarted = resolver_for(dns_server, tmp_path, dns_timeout=0.3)
    assert await restarted.address() == PUBLIC
    assert len(dns_server.queries) >= 2


async def test_no_dns_and_no_stored_address_is_a_clear_error(
    dns_server: StandInDns, tmp_path: Path
) -> None:
    dns_server.mode = "silent"
    resolver = resolver_for(dns_server, tmp_path, dns_timeout=0.3)
    with pytest.raises(UpstreamError, match=rf"cannot resolve {HOST}: no answer"):
        await resolver.address()


async def test_unknown_name_is_a_clear_error(
    dns_server: StandInDns, tmp_path: Path
) -> None:
    dns_server.records.clear()
    with pytest.raises(UpstreamError, match="does not exist"):
        await resolver_for(dns_server, tmp_path).address()


async def test_stored_address_of_another_host_is_not_used(
    dns_server: StandInDns, tmp_path: Path
) -> None:
    (tmp_path / ADDRESS_FILE).write_text(
        json.dumps({"host": "other.example", "address": OTHER_PUBLIC})
    )
    dns_server.mode = "servfail"
    with pytest.raises(UpstreamError, match=HOST):
        await resolver_for(dns_server, tmp_path).address()


async def test_corrupt_stored_address_is_ignored(
    dns_server: StandInDns, tmp_path: Path
) -> None:
    (tmp_path / ADDRESS_FILE).write_text("{not json")
    dns_server.mode = "servfail"
    with pytest.raises(UpstreamError):
        await resolver_for(dns_server, tmp_path).address()
    dns_server.mode = "answer"
    assert await resolver_for(dns_server, tmp_path).address() == PUBLIC


@pytest.mark.parametrize("answer", ["127.0.0.1", "192.168.1.10", "10.0.0.5"])
async def test_dns_answer_pointing_at_a_local_address_is_refused(
    dns_server: StandInDns, tmp_path: Path, answer: str
) -> None:
    # A resolver that carries the rewrite answers with the Home Assistant host's
    # LAN address, which the container cannot recognise as its own: any
    # non-public answer is refused.
    dns_server.records[HOST] = [answer]
    with pytest.raises(UpstreamError, match=r"local address.*loop back"):
        await resolver_for(dns_server, tmp_path).address()
    assert not (tmp_path / ADDRESS_FILE).exists()


async def test_ip_literals_skip_dns(tmp_path: Path) -> None:
    resolver = UpstreamResolver(PUBLIC, [], tmp_path)
    assert await resolver.address() == PUBLIC
    assert not (tmp_path / ADDRESS_FILE).exists()


@pytest.mark.parametrize("literal", ["127.0.0.1", "127.0.0.2", "::1", "0.0.0.0"])
async def test_ip_literal_of_this_host_is_refused(tmp_path: Path, literal: str) -> None:
    with pytest.raises(UpstreamError, match="loop"):
        await UpstreamResolver(literal, [], tmp_path).address()


async def test_local_addresses_can_be_allowed_for_tests(tmp_path: Path) -> None:
    resolver = UpstreamResolver("127.0.0.2", [], tmp_path, allow_local=True)
    assert await resolver.address() == "127.0.0.2"


def test_addresses_bound_on_this_host_count_as_local() -> None:
    assert is_local_address("127.0.0.2")
    assert is_local_address(outbound_address())
    assert not is_local_address(PUBLIC)


async def test_no_resolvers_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UpstreamError, match="no DNS resolvers"):
        await UpstreamResolver(HOST, [], tmp_path).address()
