"""Who may load the page, how it learns its prefix and token, and its size budget."""

from __future__ import annotations

import base64
from importlib import resources
from typing import TYPE_CHECKING

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ecu_proxy.web.routes import add_web_routes

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

TOKEN = "page-token"
type Client = TestClient[web.Request, web.Application]
BUDGET_BYTES = 150 * 1024


def token_ok(given: object) -> bool:
    return given == TOKEN


async def client_for(token: str | None, **kwargs: object) -> Client:
    app = web.Application()
    add_web_routes(app, token, token_ok, **kwargs)  # type: ignore[arg-type]
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client


@pytest.fixture
async def clients() -> AsyncIterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        await client.close()


async def test_addon_refuses_everyone_but_the_ingress_proxy(
    clients: list[Client],
) -> None:
    addon = {"SUPERVISOR_TOKEN": "x"}
    refused = await client_for(None, environ=addon)
    clients.append(refused)
    for path in ("/", "/static/app.js"):
        response = await refused.get(path)
        assert response.status == 403
        assert "Home Assistant sidebar" in await response.text()
    # The same page for a request from the ingress address (loopback here).
    allowed = await client_for(TOKEN, environ=addon, ingress_peer="127.0.0.1")
    clients.append(allowed)
    response = await allowed.get(
        "/", headers={"X-Ingress-Path": "/api/hassio_ingress/abc"}
    )
    assert response.status == 200
    page = await response.text()
    assert '<base href="/api/hassio_ingress/abc/">' in page
    # HA already authenticated the user; the page gets the token for the WebSocket.
    assert f'<meta name="api-token" content="{TOKEN}">' in page
    assert response.headers["Cache-Control"] == "no-store"
    assert (await allowed.get("/static/app.js")).status == 200


async def test_standalone_page_is_behind_the_token(clients: list[Client]) -> None:
    client = await client_for(TOKEN, environ={})
    clients.append(client)
    response = await client.get("/")
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert TOKEN not in await response.text()
    wrong = base64.b64encode(b"me:nope").decode()
    assert (
        await client.get("/", headers={"Authorization": f"Basic {wrong}"})
    ).status == 401
    garbage = {"Authorization": "Basic ***"}
    assert (await client.get("/static/app.css", headers=garbage)).status == 401
    right = {
        "Authorization": "Basic " + base64.b64encode(f"me:{TOKEN}".encode()).decode()
    }
    response = await client.get("/", headers=right)
    assert response.status == 200
    assert '<base href="/">' in await response.text()
    css = await client.get("/static/app.css", headers=right)
    assert css.status == 200
    assert css.content_type == "text/css"


async def test_open_page_without_token_and_bad_prefixes(
    clients: list[Client],
) -> None:
    client = await client_for(None, environ={})
    clients.append(client)
    response = await client.get("/", headers={"X-Ingress-Path": '/x"><script>'})
    page = await response.text()
    assert '<base href="/">' in page
    assert "<script>" not in page.split("<title>")[0]
    assert "api-token" not in page
    for name in ("index.html", "nope.js", "..%2Fselfcheck.py"):
        assert (await client.get(f"/static/{name}")).status == 404


def test_page_and_assets_stay_within_budget() -> None:
    folder = resources.files("ecu_proxy.web").joinpath("static")
    files = [item for item in folder.iterdir() if item.is_file()]
    assert {f.name for f in files} >= {"index.html", "app.css", "app.js"}
    total = sum(len(f.read_bytes()) for f in files)
    assert total < BUDGET_BYTES, total
