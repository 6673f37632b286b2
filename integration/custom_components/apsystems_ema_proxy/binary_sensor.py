"""Binary sensors: ECU reporting and EMA upload, inverter online, EMA reachable."""

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import override

from homeassistant.components.binary_sensor import (
    BinarySensorDeviceClass,
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .contract.state import Ecu, Inverter, Upstream
from .coordinator import EmaProxyConfigEntry
from .entity import (
    EmaProxyEntity,
    EmaProxyServiceEntity,
    EntitySpec,
    async_add_dynamic_entities,
)
from .models import ProxyState

# Push platform: nothing to poll, no limit needed.
PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class EcuBinarySensorEntityDescription(BinarySensorEntityDescription):
    """Describes a binary sensor of an ECU."""

    value_fn: Callable[[Ecu], bool | None]


@dataclass(frozen=True, kw_only=True)
class InverterBinarySensorEntityDescription(BinarySensorEntityDescription):
    """Describes a binary sensor of an inverter."""

    value_fn: Callable[[Inverter], bool | None]


def _upload_ok(ecu: Ecu) -> bool | None:
    """Return whether the last upload reached EMA; None before the first one.

    In cloudless mode nothing is uploaded, so there is nothing to judge either.
    """
    if ecu.upstream.result in (None, "cloudless"):
        return None
    return ecu.upstream.result == "ok"


ECU_BINARY_SENSORS: tuple[EcuBinarySensorEntityDescription, ...] = (
    EcuBinarySensorEntityDescription(
        key="ema_upload",
        translation_key="ema_upload",
        device_class=BinarySensorDeviceClass.CONNECTIVITY,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=_upload_ok,
    ),
)

REPORTING_SENSOR = BinarySensorEntityDescription(
    key="reporting",
    translation_key="reporting",
    device_class=BinarySensorDeviceClass.CONNECTIVITY,
)

EMA_REACHABLE_SENSOR = BinarySensorEntityDescription(
    key="ema_reachable",
    translation_key="ema_reachable",
    device_class=BinarySensorDeviceClass.CONNECTIVITY,
)


def ema_reachable(ecus: Mapping[str, Ecu]) -> bool | None:
    """Return whether the newest upload of any ECU reached EMA.

    None before any upload and in cloudless mode, where nothing is uploaded.
    """
    uploads = [
        ecu.upstream
        for ecu in ecus.values()
        if ecu.upstream.result not in (None, "cloudless")
    ]
    if not uploads:
        return None
    newest = max(uploads, key=_upload_time)
    return newest.result == "ok"


def _upload_time(upstream: Upstream) -> datetime:
    return upstream.at or datetime.min.replace(tzinfo=UTC)


INVERTER_BINARY_SENSORS: tuple[InverterBinarySensorEntityDescription, ...] = (
    InverterBinarySensorEntityDescription(
        key="online",
        translation_key="online",
        device_class=BinarySensorDeviceClass.CONNECTIVITY,
        value_fn=lambda inverter: inverter.online,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: EmaProxyConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add binary sensors now and for whatever appears later."""
    coordinator = entry.runtime_data
    async_add_entities([EmaReachableBinarySensor(coordinator, EMA_REACHABLE_SENSOR)])
    async_add_dynamic_entities(coordinator, async_add_entities, _specs)


def _specs(state: ProxyState) -> Iterator[EntitySpec]:
    """Yield a binary sensor for every ECU and inverter in the state."""
    for ecu in state.ecus.values():
        for ecu_description in ECU_BINARY_SENSORS:
            yield EntitySpec(EcuBinarySensor, ecu_description, ecu.ecu_id)
        yield EntitySpec(EcuReportingBinarySensor, REPORTING_SENSOR, ecu.ecu_id)
        for inverter in ecu.inverters.values():
            for description in INVERTER_BINARY_SENSORS:
                yield EntitySpec(
                    InverterBinarySensor, description, ecu.ecu_id, inverter.id
                )


class EcuBinarySensor(EmaProxyEntity, BinarySensorEntity):
    """A binary sensor of an ECU."""

    entity_description: EcuBinarySensorEntityDescription

    @property
    @override
    def is_on(self) -> bool | None:
        """Read the ECU's value."""
        ecu = self.ecu
        return self.entity_description.value_fn(ecu) if ecu else None


class InverterBinarySensor(EmaProxyEntity, BinarySensorEntity):
    """A binary sensor of an inverter; off once the inverter stops reporting."""

    entity_description: InverterBinarySensorEntityDescription

    @property
    @override
    def is_on(self) -> bool | None:
        """Read the inverter's value; stale inverters are offline."""
        inverter = self.inverter_state
        if inverter is None:
            return None
        return self.entity_description.value_fn(inverter) is True and not self.stale


class EcuReportingBinarySensor(EmaProxyEntity, BinarySensorEntity):
    """On while the ECU uploads; the time of its last report is an attribute.

    The time changes with every upload, so it is an attribute (a state change
    would add a logbook entry per upload) and it is not recorded.
    """

    _unrecorded_attributes = frozenset({"last_report"})

    @property
    @override
    def is_on(self) -> bool:
        """Report on while data arrived within the no-data timeout."""
        return self.ecu is not None and not self.stale

    @property
    @override
    def extra_state_attributes(self) -> dict[str, str | None]:
        """Return when the ECU last reported."""
        last = ecu.last_seen if (ecu := self.ecu) is not None else None
        return {"last_report": last.isoformat() if last is not None else None}


class EmaReachableBinarySensor(EmaProxyServiceEntity, BinarySensorEntity):
    """Whether the service's newest upload to EMA got through."""

    @property
    @override
    def is_on(self) -> bool | None:
        """Judge by the newest upload of any ECU."""
        return ema_reachable(self.coordinator.data.ecus)
