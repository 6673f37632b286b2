"""Serve the web page and its assets, under Home Assistant Ingress or on its own.

As an add-on the page is only served to the Supervisor's ingress proxy, which has
already authenticated the Home Assistant user. Outside the Supervisor it is served
to anyone who knows the API token (HTTP Basic, the token as password), or to anyone
when no token is set. The page receives the token so that its scripts can open the
API's WebSocket, which asks for it.
"""

from __future__ import annotations

import base64
import binascii
import html
import os
import re
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

INGRESS_PEER = "172.30.32.2"
# What Home Assistant sends: /api/hassio_ingress/<token>; anything else is ignored.
_PREFIX = re.compile(r"^(/[A-Za-z0-9._~-]+)*$")
_TYPES = {
    ".html": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
    ".svg": "image/svg+xml",
}
_HEAD_MARK = "<!--head-->"
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'self'; form-action 'none'; frame-ancestors 'self'"
)
_REALM = 'Basic realm="APsystems ECU Proxy", charset="UTF-8"'


def load_assets() -> dict[str, bytes]:
    """Return the packaged static files by name."""
    folder = resources.files("ecu_proxy.web").joinpath("static")
    return {
        item.name: item.read_bytes()
        for item in folder.iterdir()
        if item.is_file() and os.path.splitext(item.name)[1] in _TYPES
    }


def is_addon(environ: Mapping[str, str] | None = None) -> bool:
    """Return whether the service runs as a Supervisor add-on."""
    env = os.environ if environ is None else environ
    return bool(env.get("SUPERVISOR_TOKEN"))


class PageAccess:
    """Decide who may load the page, and render it for them."""

    def __init__(
        self,
        token: str | None,
        token_ok: Callable[[Any], bool],
        *,
        addon: bool,
        ingress_peer: str = INGRESS_PEER,
        assets: dict[str, bytes] | None = None,
    ) -> None:
        """Keep the access rule and the assets (loaded once)."""
        self._token = token
        self._token_ok = token_ok
        self._addon = addon
        self._ingress_peer = ingress_peer
        self._assets = load_assets() if assets is None else assets

    def refusal(self, request: web.Request) -> web.Response | None:
        """Return the answer for a request that may not see the page, else None."""
        if self._addon:
            if request.remote == self._ingress_peer:
                return None
            return web.Response(
                status=403,
                text="Open this page from the Home Assistant sidebar.\n",
            )
        if not self._token:
            return None
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            if self._token_ok(decoded.partition(":")[2]):
                return None
        return web.Response(
            status=401,
            text="Log in with any user name and the add-on's api_token.\n",
            headers={"WWW-Authenticate": _REALM},
        )

    def index(self, request: web.Request) -> bytes:
        """Return index.html with the base URL and the token filled in."""
        prefix = request.headers.get("X-Ingress-Path", "").rstrip("/")
        if not _PREFIX.fullmatch(prefix):
            prefix = ""
        head = f'<base href="{html.escape(prefix)}/">'
        if self._token:
            head += f'<meta name="api-token" content="{html.escape(self._token)}">'
        page = self._assets["index.html"].decode("utf-8")
        return page.replace(_HEAD_MARK, head, 1).encode("utf-8")

    def asset(self, name: str) -> bytes | None:
        """Return a static file's bytes, or None if there is no such file."""
        return self._assets.get(name)


APP_KEY = web.AppKey("ecu_proxy_page_access", PageAccess)


def add_web_routes(
    app: web.Application,
    token: str | None,
    token_ok: Callable[[Any], bool],
    *,
    environ: Mapping[str, str] | None = None,
    ingress_peer: str = INGRESS_PEER,
) -> None:
    """Register ``/`` and ``/static/{name}`` on the API's application."""
    app[APP_KEY] = PageAccess(
        token, token_ok, addon=is_addon(environ), ingress_peer=ingress_peer
    )
    app.router.add_get("/", _index)
    app.router.add_get("/static/{name}", _static)


async def _index(request: web.Request) -> web.Response:
    access = request.app[APP_KEY]
    refused = access.refusal(request)
    if refused is not None:
        return refused
    return web.Response(
        body=access.index(request),
        content_type="text/html",
        charset="utf-8",
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": _CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


async def _static(request: web.Request) -> web.Response:
    access = request.app[APP_KEY]
    refused = access.refusal(request)
    if refused is not None:
        return refused
    name = request.match_info["name"]
    body = access.asset(name) if name != "index.html" else None
    if body is None:
        raise web.HTTPNotFound
    return web.Response(
        body=body,
        content_type=_TYPES[os.path.splitext(name)[1]],
        charset="utf-8",
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )
