"""Ask what the LAN's DNS answers for a name, and which addresses this host has.

The self-check's DNS step compares the two: the ECU finds EMA by name, so the name
must lead to this host. Tests and demos that cannot change the machine's DNS set
``HOSTS_ENV`` to a hosts-like file that answers instead of the system resolver.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

# A hosts-like file ("address name..." per line) answering the DNS check instead of
# the system resolver: for tests and demos that cannot change the machine's DNS.
HOSTS_ENV = "ECU_PROXY_SELFCHECK_HOSTS"

type Resolve = Callable[[str], Awaitable[list[str]]]


async def system_resolve(host: str) -> list[str]:
    """Return the addresses the system resolver gives for ``host``."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def hosts_resolver(path: Path) -> Resolve:
    """Return a resolver answering from a hosts-like file (read on every call)."""

    async def resolve(host: str) -> list[str]:
        text = await asyncio.to_thread(path.read_text, encoding="utf-8")
        found: list[str] = []
        for line in text.splitlines():
            words = line.split("#", 1)[0].split()
            if len(words) >= 2 and host.lower() in (w.lower() for w in words[1:]):
                found.append(words[0])
        if not found:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} is not in {path}")
        return found

    return resolve


def resolver_from_env(environ: Mapping[str, str] | None = None) -> Resolve:
    """Return the hosts-file resolver when HOSTS_ENV is set, else the system one."""
    env = os.environ if environ is None else environ
    path = env.get(HOSTS_ENV)
    return hosts_resolver(Path(path)) if path else system_resolve


def host_addresses() -> list[str]:
    """Return this host's addresses as far as it can tell without sending anything."""
    found: dict[str, None] = {}
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            found[str(info[4][0])] = None
    except OSError:
        pass
    # A UDP "connect" sends nothing; it only picks the address a route would use.
    for family, target in (
        (socket.AF_INET, "192.0.2.1"),
        (socket.AF_INET6, "2001:db8::1"),
    ):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.connect((target, 9))
                found[str(sock.getsockname()[0])] = None
        except OSError:
            continue
    return [
        ip for ip in found if not ipaddress.ip_address(ip.split("%")[0]).is_loopback
    ]
