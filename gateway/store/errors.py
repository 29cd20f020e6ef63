"""Errors of the gateway's database layer."""

from gateway.errors import GatewayError


class StoreError(GatewayError):
    """The database could not be opened, migrated, read or written."""


class DeviceExistsError(StoreError):
    """A device with that id (or one differing only in case) is already provisioned."""


class UnknownDeviceError(StoreError):
    """No device with that id is provisioned."""


class InvalidDeviceError(StoreError):
    """A bad device id, unknown unit, bad role or bad name."""
