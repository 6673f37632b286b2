"""Custom integrations shipped with the APsystems ECU Proxy."""
