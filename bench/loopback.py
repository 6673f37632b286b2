"""Helpers the benchmarks share for running peers on loopback addresses."""

import socket


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
