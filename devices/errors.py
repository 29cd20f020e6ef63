"""The devices package's exception hierarchy."""


class DevicesError(Exception):
    """Base of every error the devices package raises on purpose."""


class OrgError(DevicesError):
    """An organisation file is missing, unreadable or inconsistent."""


class UnknownUnitError(DevicesError):
    """A unit id (centre, area or grid) that the organisation does not have."""


class InvalidRoleError(DevicesError):
    """A role other than officer, guard or dispatcher."""


class InvalidDeviceIdError(DevicesError):
    """A device id that does not match ``^[A-Za-z0-9_-]{1,32}$``."""


class CredentialError(DevicesError):
    """A secret or stored password hash that cannot be used."""
