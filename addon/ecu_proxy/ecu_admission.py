"""Which ECUs and inverters the state tracks, so forged records cannot grow it.

Anyone on the LAN can upload records under any ECU id with any inverters. A real
ECU uploads every few minutes with the same inverters each time; a forger sending
random ids produces ids seen once. So:

* an ECU or inverter is *confirmed* once it was in two counted records;
* the tables are capped (ECUs in total, inverters per ECU and in total), and when
  a cap is reached an *unconfirmed* entry makes room, never a confirmed one;
* one sender (IP address) holds at most a few unconfirmed ECUs and a few ECUs in
  all: its own flood churns through its own slots and cannot push out, or keep
  out, an ECU of another address.

Confirmed entries stay until the state is reset: a forger who sends each id twice
from many addresses can still fill the ECU table; ``allowed_ecu_ids`` closes that.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from .lograte import RateLimitedLog

if TYPE_CHECKING:
    from collections.abc import Callable, Container, Mapping, Sequence
    from datetime import datetime

    from .models import Inverter

_LOGGER = logging.getLogger(__name__)
_LIMITED = RateLimitedLog(_LOGGER)

# Records an ECU or inverter must have been in to count as real.
CONFIRMING_RECORDS = 2
# More ECUs than any installation has.
MAX_ECUS = 32
# Unconfirmed ECUs one sender address may hold at once.
MAX_UNCONFIRMED_PER_PEER = 4
# ECUs one sender address may hold at all: every real ECU has its own address.
MAX_ECUS_PER_PEER = 8
# Inverters per ECU. The ECU-R firmware sizes its buffers for 100 inverters; the
# other models' limits are not documented (ECU-C and ECU-3 may allow more), so the
# cap leaves room for the largest of them.
MAX_INVERTERS_PER_ECU = 256
# Inverters over all ECUs: bounds the state document and the state file.
MAX_INVERTERS_TOTAL = 1024


class Tracked(Protocol):
    """What admission needs to know of an ECU or inverter."""

    @property
    def records(self) -> int:
        """Return how many counted records it was in."""

    @property
    def last_seen(self) -> datetime | None:
        """Return when it was last in a record."""


class TrackedEcu(Tracked, Protocol):
    """An ECU with its inverters."""

    @property
    def inverters(self) -> Mapping[str, Tracked]:
        """Return the inverters by id."""


def confirmed(entry: Tracked) -> bool:
    """Return whether the entry was in enough records to count as real."""
    return entry.records >= CONFIRMING_RECORDS


def _age_key(entry: Tracked) -> float:
    # never-seen first, then the longest unseen
    seen = entry.last_seen
    return seen.timestamp() if seen is not None else float("-inf")


class Admission:
    """Keeps the ECU and inverter tables within their caps."""

    def __init__(
        self,
        *,
        max_ecus: int = MAX_ECUS,
        max_unconfirmed_per_peer: int = MAX_UNCONFIRMED_PER_PEER,
        max_ecus_per_peer: int = MAX_ECUS_PER_PEER,
        max_inverters_per_ecu: int = MAX_INVERTERS_PER_ECU,
        max_inverters_total: int = MAX_INVERTERS_TOTAL,
    ) -> None:
        """Use the given caps."""
        self.max_ecus = max_ecus
        self.max_unconfirmed_per_peer = max_unconfirmed_per_peer
        self.max_ecus_per_peer = max_ecus_per_peer
        self.max_inverters_per_ecu = max_inverters_per_ecu
        self.max_inverters_total = max_inverters_total
        # Sender of each ECU's first record since start (restored ECUs have none).
        self._peers: dict[str, str] = {}
        self._inverter_total: int | None = None
        # Per ECU: inverters not yet confirmed, oldest first (the eviction order).
        self._fresh: dict[str, dict[str, None]] = {}

    def forget(self, ecu_id: str) -> None:
        """Drop what is known about an ECU that left the table."""
        self._peers.pop(ecu_id, None)
        self._fresh.pop(ecu_id, None)
        self._inverter_total = None

    def room_for_ecu(
        self, ecus: Mapping[str, TrackedEcu], ecu_id: str, peer: str | None
    ) -> tuple[bool, list[str]]:
        """Say whether a new ECU may enter, and which ECUs must leave for it."""
        evict: list[str] = []
        if peer is not None:
            own = [e for e, p in self._peers.items() if p == peer and e in ecus]
            unconfirmed = [e for e in own if not confirmed(ecus[e])]
            if unconfirmed and (
                len(unconfirmed) >= self.max_unconfirmed_per_peer
                or len(own) >= self.max_ecus_per_peer
            ):
                evict.append(min(unconfirmed, key=lambda e: _age_key(ecus[e])))
            elif len(own) >= self.max_ecus_per_peer:
                _LIMITED.limited_warning(
                    f"too-many-ecus-{peer}",
                    "Ignoring ECU %s: %s already sent records of %d confirmed ECUs",
                    ecu_id,
                    peer,
                    len(own),
                )
                return False, []
        if len(ecus) - len(evict) >= self.max_ecus:
            victim = self._unconfirmed_victim(ecus, exclude=evict)
            if victim is None:
                _LIMITED.limited_warning(
                    "too-many-ecus",
                    "Ignoring ECU %s: already tracking %d confirmed ECUs (set "
                    "allowed_ecu_ids to choose which)",
                    ecu_id,
                    self.max_ecus,
                )
                return False, []
            evict.append(victim)
        for gone in evict:
            _LIMITED.limited_info(
                "ecu-evicted",
                "Forgetting ECU %s (seen in one record only) to make room for %s",
                gone,
                ecu_id,
            )
        return True, evict

    def admitted(self, ecu_id: str, peer: str | None) -> None:
        """Note the sender of a newly admitted ECU."""
        if peer is not None:
            self._peers[ecu_id] = peer

    def _unconfirmed_victim(
        self, ecus: Mapping[str, TrackedEcu], exclude: Container[str]
    ) -> str | None:
        """Pick the unconfirmed ECU of the sender holding most; the oldest of them."""
        by_peer: dict[str | None, list[str]] = {}
        for ecu_id, ecu in ecus.items():
            if ecu_id not in exclude and not confirmed(ecu):
                by_peer.setdefault(self._peers.get(ecu_id), []).append(ecu_id)
        if not by_peer:
            return None
        crowd = max(by_peer.values(), key=len)
        return min(crowd, key=lambda e: _age_key(ecus[e]))

    def admit_blocks(
        self,
        ecus: Mapping[str, TrackedEcu],
        ecu_id: str,
        blocks: Sequence[Inverter],
        add: Callable[[Inverter], None],
        remove: Callable[[str, str], None],
    ) -> tuple[list[Inverter], list[str]]:
        """Return a record's blocks to track and the ids new to the ECU.

        ``add`` creates the inverter of a new block; ``remove`` drops the
        (ECU, inverter) that makes room for it.
        """
        known = ecus[ecu_id].inverters
        kept: list[Inverter] = []
        added: list[str] = []
        ids: set[str] = set()
        full = False  # once no room is left, none appears later in the record
        for block in blocks:
            if block.id in ids:
                continue  # a block repeated within one record counts once
            ids.add(block.id)
            if block.id in known:
                kept.append(block)
                continue
            if full:
                continue
            room, victim = self.room_for_inverter(ecus, ecu_id, block.id, ids)
            if not room:
                full = True
                continue
            if victim is not None:
                remove(*victim)
            add(block)
            added.append(block.id)
            kept.append(block)
        return kept, added

    def room_for_inverter(
        self,
        ecus: Mapping[str, TrackedEcu],
        ecu_id: str,
        inv_id: str,
        in_record: Container[str],
    ) -> tuple[bool, tuple[str, str] | None]:
        """Say whether a new inverter may enter, and which (ECU, inverter) leaves.

        ``in_record`` holds the ids of the record being applied: they stay.
        """
        ecu = ecus[ecu_id]
        total = self._total(ecus)
        victim: tuple[str, str] | None = None
        if len(ecu.inverters) >= self.max_inverters_per_ecu:
            victim = self._fresh_victim(ecus, ecu_id, in_record)
        elif total >= self.max_inverters_total:
            victim = self._fresh_victim(ecus, ecu_id, in_record)
            for other in sorted(self._fresh, key=lambda e: -len(self._fresh[e])):
                if victim is not None:
                    break
                if other != ecu_id and other in ecus:
                    victim = self._fresh_victim(ecus, other, in_record)
        else:
            self._inverter_total = total + 1
            self._fresh_of(ecus, ecu_id)[inv_id] = None
            return True, None
        if victim is None:
            _LIMITED.limited_warning(
                f"too-many-inverters-{ecu_id}",
                "ECU %s: ignoring inverter %s: already tracking %d inverters "
                "(%d over all ECUs) seen in more than one record",
                ecu_id,
                inv_id,
                len(ecu.inverters),
                total,
            )
            return False, None
        # one leaves, one enters: the total stays
        self._fresh_of(ecus, ecu_id)[inv_id] = None
        return True, victim

    def _fresh_of(self, ecus: Mapping[str, TrackedEcu], ecu_id: str) -> dict[str, None]:
        """Return the ECU's unconfirmed inverters, oldest first (built on first use)."""
        fresh = self._fresh.get(ecu_id)
        if fresh is None:
            inverters = ecus[ecu_id].inverters
            ids = [i for i, inv in inverters.items() if not confirmed(inv)]
            ids.sort(key=lambda i: _age_key(inverters[i]))
            fresh = self._fresh[ecu_id] = dict.fromkeys(ids)
        return fresh

    def _fresh_victim(
        self, ecus: Mapping[str, TrackedEcu], ecu_id: str, in_record: Container[str]
    ) -> tuple[str, str] | None:
        """Take the ECU's oldest unconfirmed inverter not in the current record."""
        fresh = self._fresh_of(ecus, ecu_id)
        inverters = ecus[ecu_id].inverters
        stale: list[str] = []
        found: str | None = None
        for inv_id in fresh:  # oldest first; confirmed or gone ones are dropped
            inv = inverters.get(inv_id)
            if inv is None or confirmed(inv):
                stale.append(inv_id)
            elif inv_id not in in_record:
                found = inv_id
                break
        for inv_id in stale:
            del fresh[inv_id]
        if found is None:
            return None
        del fresh[found]
        return ecu_id, found

    def _total(self, ecus: Mapping[str, TrackedEcu]) -> int:
        if self._inverter_total is None:
            self._inverter_total = sum(len(e.inverters) for e in ecus.values())
        return self._inverter_total

    def recount(self) -> None:
        """Forget the cached inverter total (after tables changed elsewhere)."""
        self._inverter_total = None
