"""Discovery and notifications against a stand-in Supervisor on 127.0.0.1."""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ecu_proxy.supervisor import (
    DISCOVERY_SERVICE,
    RESTART_NOTIFICATION_ID,
    DiscoveryInfo,
    SupervisorClient,
    SupervisorError,
    announce,
    api_health_probe,
    local_discovery_info,
    notify_restart_needed,
    supervisor_from_env,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

TOKEN = "supervisor-secret-token-1234"
API_TOKEN = "api-secret-token-5678"
INFO = DiscoveryInfo(
    host="1a2b3c4d-apsystems-ecu-proxy",
    port=8990,
    server_id="9f0c" * 8,
    token=API_TOKEN,
)


@dataclass
class FakeSupervisor:
    """Record requests; answer with scripted statuses, then 200."""

    statuses: list[int] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        auth = request.headers.get("Authorization", "")
        self.requests.append((request.path, auth, body))
        if self.statuses:
            status = self.statuses.pop(0)
            # A Supervisor error text that echoes the payload must not leak it.
            return web.json_response(
                {"result": "error", "message": f"boom {body}"}, status=status
            )
        return web.json_response({"result": "ok", "data": {"uuid": "abc"}})


@pytest.fixture
async def supervisor() -> AsyncIterator[tuple[FakeSupervisor, str]]:
    fake = FakeSupervisor()
    app = web.Application()
    app.router.add_post("/discovery", fake.handle)
    app.router.add_post(
        "/core/api/services/persistent_notification/create", fake.handle
    )
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield fake, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


class ReadyAfter:
    """An api_ready probe that turns true after a number of calls."""

    def __init__(self, false_calls: int) -> None:
        self.false_calls = false_calls
        self.calls = 0

    async def __call__(self) -> bool:
        self.calls += 1
        return self.calls > self.false_calls


async def test_discovery_posted_once_after_api_ready(
    supervisor: tuple[FakeSupervisor, str], session: aiohttp.ClientSession
) -> None:
    fake, url = supervisor
    client = SupervisorClient(session, token=TOKEN, base_url=url)
    ready = ReadyAfter(false_calls=2)

    assert await announce(client, INFO, ready, base_delay=0.001)

    assert ready.calls == 3
    assert fake.requests == [
        (
            "/discovery",
            f"Bearer {TOKEN}",
            {
                "service": "apsystems_ema_proxy",
                "config": {
                    "host": INFO.host,
                    "port": 8990,
                    "server_id": INFO.server_id,
                    "token": API_TOKEN,
                },
            },
        )
    ]


async def test_nothing_posted_while_api_not_ready(
    supervisor: tuple[FakeSupervisor, str],
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake, url = supervisor
    client = SupervisorClient(session, token=TOKEN, base_url=url)
    ready = ReadyAfter(false_calls=100)

    with caplog.at_level(logging.ERROR):
        assert not await announce(client, INFO, ready, attempts=4, base_delay=0.001)

    assert ready.calls == 4
    assert fake.requests == []
    assert "Gave up announcing" in caplog.text
    assert "the API never answered" in caplog.text


async def test_probe_exception_counts_as_not_ready(
    supervisor: tuple[FakeSupervisor, str], session: aiohttp.ClientSession
) -> None:
    fake, url = supervisor
    client = SupervisorClient(session, token=TOKEN, base_url=url)
    calls = 0

    async def flaky() -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionRefusedError("not yet")
        return True

    assert await announce(client, INFO, flaky, base_delay=0.001)
    assert calls == 2
    assert len(fake.requests) == 1


async def test_retries_after_supervisor_errors_and_hides_tokens(
    supervisor: tuple[FakeSupervisor, str],
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake, url = supervisor
    fake.statuses = [500, 500]
    client = SupervisorClient(session, token=TOKEN, base_url=url)

    with caplog.at_level(logging.DEBUG, logger="ecu_proxy"):
        assert await announce(client, INFO, ReadyAfter(0), base_delay=0.001)

    assert len(fake.requests) == 3
    assert all(req[0] == "/discovery" for req in fake.requests)
    assert "HTTP 500" in caplog.text
    assert "Announced the service to Home Assistant" in caplog.text
    assert TOKEN not in caplog.text
    assert API_TOKEN not in caplog.text


async def test_gives_up_after_attempts_without_leaking_tokens(
    supervisor: tuple[FakeSupervisor, str],
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake, url = supervisor
    fake.statuses = [403, 403, 403]
    client = SupervisorClient(session, token=TOKEN, base_url=url)

    with caplog.at_level(logging.DEBUG, logger="ecu_proxy"):
        sent = await announce(client, INFO, ReadyAfter(0), attempts=3, base_delay=0.001)

    assert not sent
    assert len(fake.requests) == 3
    assert "HTTP 403" in caplog.text
    assert "Gave up announcing" in caplog.text
    assert TOKEN not in caplog.text
    assert API_TOKEN not in caplog.text


async def test_unreachable_supervisor_raises_clear_error(
    session: aiohttp.ClientSession,
) -> None:
    with socket.socket() as sock:  # a free port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = SupervisorClient(session, token=TOKEN, base_url=f"http://127.0.0.1:{port}")

    with pytest.raises(SupervisorError, match="POST /discovery failed") as err:
        await client.post_discovery(INFO)
    assert TOKEN not in str(err.value)
    # Callers that catch aiohttp's errors handle Supervisor failures too.
    assert isinstance(err.value, aiohttp.ClientError)


async def test_notification_payload(
    supervisor: tuple[FakeSupervisor, str], session: aiohttp.ClientSession
) -> None:
    fake, url = supervisor
    client = SupervisorClient(session, token=TOKEN, base_url=url + "/")

    await client.notify("Title", "Body", "some_id")

    assert fake.requests == [
        (
            "/core/api/services/persistent_notification/create",
            f"Bearer {TOKEN}",
            {"title": "Title", "message": "Body", "notification_id": "some_id"},
        )
    ]


async def test_restart_notice_mentions_restart(
    supervisor: tuple[FakeSupervisor, str], session: aiohttp.ClientSession
) -> None:
    fake, url = supervisor
    client = SupervisorClient(session, token=TOKEN, base_url=url)

    assert await notify_restart_needed(client, "installed integration 0.1.0")

    (_path, _auth, body) = fake.requests[0]
    assert body["notification_id"] == RESTART_NOTIFICATION_ID
    assert "Restart Home Assistant" in body["message"]
    assert body["message"].startswith("installed integration 0.1.0")


async def test_restart_notice_failure_is_reported_not_raised(
    supervisor: tuple[FakeSupervisor, str],
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake, url = supervisor
    fake.statuses = [401]
    client = SupervisorClient(session, token=TOKEN, base_url=url)

    assert not await notify_restart_needed(client, "installed")
    assert "Could not show the restart notification" in caplog.text
    assert TOKEN not in caplog.text


async def test_health_probe_true_once_http_answers(
    session: aiohttp.ClientSession,
) -> None:
    app = web.Application()

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "degraded"}, status=503)

    app.router.add_get("/api/health", health)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        probe = api_health_probe(session, str(server.make_url("/api/health")))
        assert await probe()
    finally:
        await server.close()
    assert not await probe()


async def test_supervisor_from_env(session: aiohttp.ClientSession) -> None:
    assert supervisor_from_env(session, environ={}) is None
    assert supervisor_from_env(session, environ={"SUPERVISOR_TOKEN": " "}) is None
    client = supervisor_from_env(session, environ={"SUPERVISOR_TOKEN": TOKEN})
    assert isinstance(client, SupervisorClient)


async def test_supervisor_url_from_env(
    supervisor: tuple[FakeSupervisor, str], session: aiohttp.ClientSession
) -> None:
    fake, url = supervisor
    client = supervisor_from_env(
        session, environ={"SUPERVISOR_TOKEN": TOKEN, "SUPERVISOR_URL": url}
    )
    assert client is not None

    await client.post_discovery(INFO)

    assert fake.requests[0][1] == f"Bearer {TOKEN}"
    assert fake.requests[0][2]["service"] == DISCOVERY_SERVICE


def test_local_discovery_info_uses_hostname() -> None:
    info = local_discovery_info("ab" * 16, None)
    assert info == DiscoveryInfo(
        host=socket.gethostname(), port=8990, server_id="ab" * 16, token=None
    )
    assert info.as_config()["token"] is None
