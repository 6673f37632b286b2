"""Helpers the benchmarks share for running peers on loopback addresses."""

import dataclasses
import socket

from ecu_proxy.admission import Limits
from ecu_proxy.options import Options


def free_port(first: str, *others: str) -> int:
    """Return a port free on every given loopback address.

    The relay forwards to the same port number on the EMA host, so the stand-in EMA
    and the relay (and socat) need one port that is free on all their addresses.
    """
    while True:
        with socket.socket() as probe:
            probe.bind((first, 0))
            port = int(probe.getsockname()[1])
        free = True
        for host in others:
            with socket.socket() as other:
                try:
                    other.bind((host, port))
                except OSError:
                    free = False
        if free:
            return port


def unthrottled(options: Options) -> Limits:
    """Return admission limits that never refuse or skip work in a benchmark.

    The benchmarks send thousands of frames a second from one address; with the
    default frame budget the relay would skip decoding most of them and look faster
    than it is.
    """
    many = 1_000_000
    return dataclasses.replace(
        Limits.from_options(options),
        per_address=options.max_connections,
        reserved=0,
        frame_burst=many,
        frame_rate=many,
        shared_burst=many,
        shared_rate=many,
    )
