"""Check every step between the ECU, this service and EMA.

Five checks, each with a status and, when not ``ok``, the exact step to fix it:
relay ports bound, ECU connections seen, what the EMA host name resolves to through
the system resolver (the LAN's DNS, where the rewrite lives), EMA reachable, and
each ECU's clock. ``/api/health`` and the web page show the same report.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .contract.constants import EMA_HOST
from .lan_dns import host_addresses, resolver_from_env
from .options import Mode
from .upstream import ADDRESS_FILE, is_local_address
from .web.routes import is_addon

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from .hub import Hub
    from .lan_dns import Resolve
    from .models import RelayCounters
    from .options import Options

DNS_TIMEOUT_S = 3.0
DNS_CACHE_S = 60.0
# Within this the ECU clock counts as right (uploads take a few seconds).
CLOCK_TOLERANCE_S = 300.0
DOCS = "https://github.com/apsystems-ecu-proxy/apsystems-ecu-proxy/blob/main/DOCS.md"


class Status(enum.StrEnum):
    """How one check came out."""

    OK = "ok"
    WAITING = "waiting"  # nothing to judge yet (no ECU has connected)
    WARNING = "warning"
    ERROR = "error"
    OFF = "off"  # does not apply in this mode


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the self-check."""

    status: Status
    summary: str
    fix: str | None = None
    link: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "status": self.status.value,
            "summary": self.summary,
            "fix": self.fix,
            "link": self.link,
            **self.facts,
        }


@dataclass(frozen=True, slots=True)
class Report:
    """The whole self-check."""

    ports: Check
    ecus: Check
    dns: Check
    ema: Check
    clock: Check

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON form of docs/api.md (``selfcheck`` in /api/health)."""
        return {
            "ports": self.ports.as_dict(),
            "ecus": self.ecus.as_dict(),
            "dns": self.dns.as_dict(),
            "ema": self.ema.as_dict(),
            "clock": self.clock.as_dict(),
        }


class SelfCheck:
    """Build the self-check report from what the service already knows."""

    def __init__(
        self,
        hub: Hub,
        options: Options,
        counters: Callable[[], RelayCounters],
        *,
        resolve: Resolve | None = None,
        is_local: Callable[[str], bool] = is_local_address,
        addresses: Callable[[], list[str]] = host_addresses,
        addon: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Prepare the checks; ``resolve`` defaults to ``resolver_from_env()``."""
        self._hub = hub
        self._options = options
        self._counters = counters
        self._resolve = resolve or resolver_from_env()
        self._is_local = is_local
        self._addresses = addresses
        self._addon = is_addon() if addon is None else addon
        self._clock = clock
        self._dns: tuple[float, Check] | None = None

    async def report(self) -> Report:
        """Run every check (the DNS answer is cached for a minute)."""
        snapshot = self._hub.snapshot()["ecus"]
        frames = self._hub.frames()
        return Report(
            ports=self._ports(),
            ecus=self._ecus(snapshot, frames),
            dns=await self._dns_check(bool(snapshot)),
            ema=await self._ema(snapshot),
            clock=_clock(snapshot),
        )

    def _ports(self) -> Check:
        try:
            listeners = self._counters().listeners
        except Exception as err:  # noqa: BLE001 - answer whatever the relay does
            return Check(Status.ERROR, f"relay state unavailable: {err}")
        bound = sorted(p for p, s in listeners.items() if s == "listening")
        failed = {str(p): s for p, s in sorted(listeners.items()) if s != "listening"}
        facts: dict[str, Any] = {"listening": bound, "failed": failed}
        if failed:
            names = ", ".join(f"{p} ({s})" for p, s in failed.items())
            return Check(
                Status.ERROR,
                f"ports not listening: {names}",
                "Free these ports (another add-on or program holds them) and "
                "restart the add-on.",
                f"{DOCS}#troubleshooting",
                facts,
            )
        if not bound:
            return Check(Status.ERROR, "no relay port is listening", facts=facts)
        return Check(
            Status.OK,
            f"listening on {', '.join(str(p) for p in bound)}",
            facts=facts,
        )

    def _ecus(self, snapshot: dict[str, Any], frames: list[dict[str, Any]]) -> Check:
        seen = _connections(frames)
        # ECUs known from the saved state but absent from the captured frames
        # (capture off, or seen before a restart): no address or port to show.
        listed = {c["ecu_id"] for c in seen}
        for ecu_id, ecu in sorted(snapshot.items()):
            if ecu_id not in listed:
                seen.append(
                    {
                        "ecu_id": ecu_id,
                        "peer": None,
                        "port": None,
                        "at": ecu["last_seen"],
                    }
                )
        if not seen:
            return Check(
                Status.WAITING,
                "no ECU has connected yet",
                f"Point {EMA_HOST} at this host in your LAN's DNS (or the "
                "router), then restart the ECU or wait up to 5 minutes for its next "
                "upload.",
                f"{DOCS}#point-the-ecu-at-home-assistant-dns-rewrite",
                {"seen": []},
            )
        latest = max((c for c in seen if c["at"]), key=lambda c: c["at"], default=None)
        summary = f"{len(seen)} ECU connection source(s) seen"
        if latest is not None and latest["peer"]:
            summary = (
                f"the ECU reaches this service: last from {latest['peer']} "
                f"on port {latest['port']}"
            )
        return Check(Status.OK, summary, facts={"seen": seen})

    async def _dns_check(self, ecu_seen: bool) -> Check:
        now = self._clock()
        if self._dns is not None and now - self._dns[0] < DNS_CACHE_S:
            check = self._dns[1]
        else:
            check = await self._resolve_check()
            self._dns = (now, check)
        if check.status is Status.WARNING and ecu_seen:
            # The host's own LAN address is unknown inside the add-on container,
            # but ECU traffic arriving proves the rewrite works.
            return Check(
                Status.OK,
                check.summary + "; ECU uploads arrive, so it reaches this host",
                facts=check.facts,
            )
        return check

    async def _resolve_check(self) -> Check:
        name = EMA_HOST
        ours = await asyncio.to_thread(self._addresses)
        facts: dict[str, Any] = {"host": name, "resolved": [], "host_addresses": ours}
        try:
            async with asyncio.timeout(DNS_TIMEOUT_S):
                resolved = await self._resolve(name)
        except (OSError, TimeoutError) as err:
            return Check(
                Status.ERROR,
                f"{name} does not resolve on this host: {err or 'timeout'}",
                f"Check this host's DNS server settings, then add the rewrite of "
                f"{name} to this host's address.",
                f"{DOCS}#point-the-ecu-at-home-assistant-dns-rewrite",
                facts,
            )
        facts["resolved"] = resolved
        local = [ip for ip in resolved if self._is_local(ip) or ip in ours]
        if local:
            return Check(
                Status.OK,
                f"{name} resolves to {', '.join(local)}, this host",
                facts=facts,
            )
        shown = ", ".join(resolved)
        public = [ip for ip in resolved if ipaddress.ip_address(ip).is_global]
        if public:
            return Check(
                Status.ERROR,
                f"{name} resolves to {shown}, EMA's public address: the DNS "
                "rewrite is not in place",
                f"Add a DNS rewrite {name} -> "
                f"{ours[0] if ours and not self._addon else 'this host'} in your "
                "LAN's DNS (AdGuard Home, Pi-hole or the router), then restart "
                "the ECU.",
                f"{DOCS}#point-the-ecu-at-home-assistant-dns-rewrite",
                facts,
            )
        if self._addon:
            return Check(
                Status.WARNING,
                f"{name} resolves to {shown}, a LAN address",
                f"Make sure {shown} is the address of your Home Assistant host.",
                f"{DOCS}#point-the-ecu-at-home-assistant-dns-rewrite",
                facts,
            )
        return Check(
            Status.ERROR,
            f"{name} resolves to {shown}, which is not this host "
            f"({', '.join(ours) or 'address unknown'})",
            f"Change the DNS rewrite of {name} to "
            f"{ours[0] if ours else 'this host'}, then restart the ECU.",
            f"{DOCS}#point-the-ecu-at-home-assistant-dns-rewrite",
            facts,
        )

    async def _ema(self, snapshot: dict[str, Any]) -> Check:
        if self._options.mode is Mode.CLOUDLESS:
            return Check(
                Status.OFF,
                "cloudless mode: uploads are answered here and not sent to EMA",
                facts={"address": None, "last_reply_at": None, "rtt_ms": None},
            )
        address = await asyncio.to_thread(_stored_address, self._options.data_dir)
        if address is None and _is_ip(self._options.ema_host):
            address = self._options.ema_host
        uploads = [
            ecu["upstream"]
            for ecu in snapshot.values()
            if ecu["upstream"]["result"] is not None
        ]
        latest = max(uploads, key=lambda u: u["at"], default=None)
        # The state keeps each ECU's newest upload only: a reply that came before
        # a later failure is not known any more.
        ok = [u for u in uploads if u["result"] == "ok"]
        last_ok = max(ok, key=lambda u: u["at"], default=None)
        facts = {
            "address": address,
            "last_result": latest["result"] if latest else None,
            "last_upload_at": latest["at"] if latest else None,
            "last_reply_at": last_ok["at"] if last_ok else None,
            "rtt_ms": last_ok["rtt_ms"] if last_ok else None,
        }
        if latest is None:
            return Check(
                Status.WAITING,
                "no upload relayed to EMA yet",
                facts=facts,
            )
        if latest["result"] == "ok":
            return Check(
                Status.OK,
                f"EMA ({address or self._options.ema_host}) answered in "
                f"{latest['rtt_ms']} ms",
                facts=facts,
            )
        return Check(
            Status.ERROR,
            f"the last upload to EMA failed: {latest['result']}"
            + (f" ({latest['detail']})" if latest.get("detail") else ""),
            "Check that this host reaches the internet and that the dns_resolvers "
            "option lists public DNS servers without the rewrite.",
            f"{DOCS}#troubleshooting",
            facts,
        )


def _connections(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the newest ECU connection per (peer, port) from captured frames."""
    latest: dict[tuple[str, int], dict[str, Any]] = {}
    for frame in frames:
        if frame["direction"] != "ecu_to_ema":
            continue
        key = (frame["peer"], frame["port"])
        ecu_id = frame["decoded"].get("ecu_id") or (
            latest[key]["ecu_id"] if key in latest else None
        )
        latest[key] = {
            "ecu_id": ecu_id,
            "peer": frame["peer"],
            "port": frame["port"],
            "at": frame["received_at"],
        }
    return sorted(latest.values(), key=lambda c: c["at"], reverse=True)


def _clock(snapshot: dict[str, Any]) -> Check:
    """Compare each ECU's record time with when we received it (local time)."""
    ecus: list[dict[str, Any]] = []
    worst: tuple[float, str] | None = None
    for ecu_id, ecu in sorted(snapshot.items()):
        if not ecu["last_record_at"] or not ecu["last_seen"]:
            continue
        ecu_time = datetime.fromisoformat(ecu["last_record_at"])
        seen = datetime.fromisoformat(ecu["last_seen"]).astimezone()
        skew = round((ecu_time - seen.replace(tzinfo=None)).total_seconds(), 1)
        ecus.append({"ecu_id": ecu_id, "skew_s": skew})
        if worst is None or abs(skew) > abs(worst[0]):
            worst = (skew, ecu_id)
    facts: dict[str, Any] = {"ecus": ecus}
    if worst is None:
        return Check(Status.WAITING, "no ECU record yet", facts=facts)
    skew, ecu_id = worst
    if abs(skew) <= CLOCK_TOLERANCE_S:
        return Check(
            Status.OK,
            f"ECU clocks agree with this host's (off by {abs(skew):.0f} s at most)",
            facts=facts,
        )
    hours = round(skew / 3600)
    if hours and abs(skew - hours * 3600) <= CLOCK_TOLERANCE_S:
        return Check(
            Status.WARNING,
            f"ECU {ecu_id} is {hours:+d} h off this host's time zone",
            "Set the ECU's time zone in the ECUapp to the one this host uses "
            "(daily energy resets at the ECU's midnight).",
            f"{DOCS}#self-check",
            facts,
        )
    return Check(
        Status.WARNING,
        f"ECU {ecu_id} clock is {skew:+.0f} s off",
        "Check the ECU's time settings in the ECUapp; it sets its clock from the "
        "internet, so a large offset means it cannot reach a time server.",
        f"{DOCS}#self-check",
        facts,
    )


def _stored_address(data_dir: Path) -> str | None:
    """Return EMA's last resolved address as the relay stored it, if any."""
    try:
        raw = json.loads((data_dir / ADDRESS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    address = raw.get("address") if isinstance(raw, dict) else None
    return address if isinstance(address, str) else None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
