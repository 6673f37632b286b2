"""Errors raised by the ECU proxy client."""

from __future__ import annotations


class ProxyClientError(Exception):
    """Base class of every error the client raises."""


class TransportError(ProxyClientError):
    """The connection to the service failed or broke."""


class CannotConnect(TransportError):
    """The service could not be reached or did not greet us."""


class ConnectionClosed(TransportError):
    """The service closed an established connection."""

    def __init__(self, message: str, code: int | None = None) -> None:
        """Keep the WebSocket close code next to the message."""
        super().__init__(message)
        self.code = code


class NotConnected(ProxyClientError):
    """A command was sent while no connection was open."""


class InvalidAuth(ProxyClientError):
    """The service rejected the token, or needs one and none was given."""


class InvalidMessage(ProxyClientError):
    """The service sent something that does not follow the API."""


class IncompatibleSchema(ProxyClientError):
    """The service's API schema range does not overlap the client's."""

    def __init__(
        self,
        server_schema: int,
        server_min_schema: int,
        client_min_schema: int,
        client_max_schema: int,
    ) -> None:
        """Record both ranges so callers can tell which side to update."""
        super().__init__(
            f"service speaks schema {server_min_schema}..{server_schema}, "
            f"client supports {client_min_schema}..{client_max_schema}"
        )
        self.server_schema = server_schema
        self.server_min_schema = server_min_schema
        self.client_min_schema = client_min_schema
        self.client_max_schema = client_max_schema

    @property
    def service_too_old(self) -> bool:
        """Return True when the service, not the client, needs an update."""
        return self.server_schema < self.client_min_schema


class FailedCommand(ProxyClientError):
    """The service answered a command with an error."""

    def __init__(self, command: str, error_code: str, details: str | None) -> None:
        """Keep the service's error code and details."""
        super().__init__(f"{command} failed: {error_code} ({details or 'no details'})")
        self.command = command
        self.error_code = error_code
        self.details = details
