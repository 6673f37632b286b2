"""A real Mosquitto broker for tests, a subscriber that records what arrives, and
data records to feed the hub with.

The broker listens on loopback only, on three free ports: anonymous, with a
password file, and TLS with a CA and server certificate made here.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import logging
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import aiomqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from records import received, record
from stand_ins import free_port

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from ecu_proxy.models import FrameEvent, Inverter

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
USERNAME = "proxy"
PASSWORD = "s3cret-pass"
READY_TIMEOUT = 15.0


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """Write a self-signed CA and a server certificate for 127.0.0.1/localhost."""
    now = dt.datetime.now(dt.UTC)
    ca_key, server_key = _key(), _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test MQTT CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = (
        folder / "ca.pem",
        folder / "server.pem",
        folder / "server.key",
    )
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(_pem(server_key))
    return ca_file, cert_file, key_file


@dataclass
class Mosquitto:
    """One Mosquitto process with an anonymous, a password and a TLS listener."""

    folder: Path
    port: int = 0
    auth_port: int = 0
    tls_port: int = 0
    ca_file: Path = field(init=False)
    _process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.ca_file, cert, key = make_certificates(self.folder)
        passwd = self.folder / "passwd"
        subprocess.run(
            [MOSQUITTO_PASSWD, "-c", "-b", str(passwd), USERNAME, PASSWORD],
            check=True,
            capture_output=True,
        )
        self._cert, self._key, self._passwd = cert, key, passwd

    def _write_config(self) -> Path:
        conf = self.folder / "mosquitto.conf"
        conf.write_text(
            "\n".join(
                [
                    "per_listener_settings true",
                    "user root",
                    "persistence true",
                    f"persistence_location {self.folder}/",
                    "log_dest stderr",
                    "log_type error",
                    "log_type warning",
                    f"listener {self.port} 127.0.0.1",
                    "allow_anonymous true",
                    f"listener {self.auth_port} 127.0.0.1",
                    "allow_anonymous false",
                    f"password_file {self._passwd}",
                    f"listener {self.tls_port} 127.0.0.1",
                    "allow_anonymous true",
                    f"cafile {self.ca_file}",
                    f"certfile {self._cert}",
                    f"keyfile {self._key}",
                    "",
                ]
            ),
            encoding="utf-8",
        )
        return conf

    def start(self) -> None:
        """Start the broker (on the same ports as before, if it ran already)."""
        for _ in range(5):
            if not self.port:
                self.port, self.auth_port, self.tls_port = (
                    free_port(),
                    free_port(),
                    free_port(),
                )
            conf = self._write_config()
            process = subprocess.Popen(
                [MOSQUITTO, "-c", str(conf)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            if self._wait_ready(process):
                self._process = process
                return
            process.kill()
            process.wait()
            self.port = 0  # another test took a port meanwhile: pick new ones
        raise RuntimeError("mosquitto did not start")

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            if all(
                self._accepts(p) for p in (self.port, self.auth_port, self.tls_port)
            ):
                return True
            time.sleep(0.02)
        return False

    @staticmethod
    def _accepts(port: int) -> bool:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=1),
        ):
            return True
        return False

    def stop(self) -> None:
        """Stop the broker; retained messages are saved for the next start."""
        if self._process is None:
            return
        self._process.terminate()
        self._process.wait(timeout=10)
        self._process = None

    def restart(self) -> None:
        """Stop and start again on the same ports."""
        self.stop()
        self.start()


@dataclass
class Received:
    """Every message a subscriber saw, in order, and the latest per topic."""

    messages: list[aiomqtt.Message] = field(default_factory=list)
    latest: dict[str, bytes] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def text(self, topic: str) -> str | None:
        """Return the latest payload of a topic as text, None if none came."""
        payload = self.latest.get(topic)
        return None if payload is None else payload.decode()

    async def wait_for(
        self, condition: Callable[[], bool], within: float = 20.0
    ) -> None:
        """Wait until ``condition`` holds after some message arrived."""
        async with asyncio.timeout(within):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def subscriber(
    port: int, topic: str = "#", **kwargs: object
) -> AsyncIterator[tuple[aiomqtt.Client, Received]]:
    """Subscribe to ``topic`` on the broker and record what arrives."""
    received = Received()
    async with aiomqtt.Client("127.0.0.1", port, **kwargs) as client:  # type: ignore[arg-type]
        await client.subscribe(topic, qos=1)

        async def collect() -> None:
            async for message in client.messages:
                received.messages.append(message)
                payload = message.payload
                assert isinstance(payload, bytes)
                received.latest[str(message.topic)] = payload
                received.changed.set()

        task = asyncio.create_task(collect())
        try:
            yield client, received
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class LogWatch(logging.Handler):
    """Count log lines containing a text and wake a waiter at a given count."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.DEBUG)
        self.text = text
        self.count = 0
        self._changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.count += 1
            self._changed.set()

    async def wait_count(self, count: int, within: float = 20.0) -> None:
        """Wait until ``count`` matching lines were logged."""
        async with asyncio.timeout(within):
            while self.count < count:
                self._changed.clear()
                await self._changed.wait()


@contextlib.contextmanager
def watch_log(logger: str, text: str) -> Iterator[LogWatch]:
    """Attach a LogWatch to ``logger`` (at DEBUG) for the duration."""
    log = logging.getLogger(logger)
    watch = LogWatch(text)
    level = log.level
    log.setLevel(logging.DEBUG)
    log.addHandler(watch)
    try:
        yield watch
    finally:
        log.removeHandler(watch)
        log.setLevel(level)


def data_record(
    *inverters: Inverter, at: dt.datetime | None = None, minute: int = 0
) -> FrameEvent:
    """Return a data record of ECU_ID with these inverters, received ``at``."""
    frame = record(
        *inverters,
        power_w=round(sum(i.power_w or 0 for i in inverters), 1),
        timestamp=dt.datetime(2024, 2, 6, 11, minute, 0),
        lifetime_energy_kwh=2127.9 + minute,
        ecu_model="ECU-R",
    )
    return received(frame, at)
