"""The protocol package's exception hierarchy."""


class ProtocolError(Exception):
    """Base of every error the protocol package raises on purpose."""


class InvalidIdError(ProtocolError, ValueError):
    """Not a device, talkgroup or unit id of protocol §2."""


class OrgError(ProtocolError):
    """An organisation file or value that does not describe a valid organisation."""


class UnknownUnitError(ProtocolError):
    """A unit id (centre, area or grid) the organisation does not have."""


class InvalidRoleError(ProtocolError):
    """A device role other than officer, guard or dispatcher."""
