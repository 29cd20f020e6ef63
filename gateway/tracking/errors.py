"""The tracking package's exceptions: one root, a branch per concern."""

from __future__ import annotations

from gateway.errors import GatewayError


class TrackingError(GatewayError):
    """Anything the tracking package refuses."""


class BeaconError(TrackingError):
    """A beacon payload could not be turned into a position."""

    reason = "malformed"


class BeaconEncodingError(BeaconError):
    """Not UTF-8 / not JSON / not an object / too large."""

    reason = "bad_json"


class BeaconFieldError(BeaconError):
    """A field is missing, of the wrong type or out of range."""

    reason = "bad_field"


class BeaconVersionError(BeaconError):
    reason = "bad_version"


class NmeaError(BeaconError):
    """An NMEA sentence failed to parse (checksum, syntax, unsupported talker)."""

    reason = "bad_nmea"


class UnknownSourceError(BeaconError):
    """The topic maps to no provisioned device (an OwnTracks user/device nobody mapped)."""

    reason = "unknown_device"


class GeofenceError(TrackingError):
    """A geofence definition is invalid (self-intersecting polygon, negative radius...)."""


class UnknownGeofenceError(GeofenceError):
    pass


class CheckpointError(TrackingError):
    """A checkpoint or shift definition is invalid."""


class UnknownCheckpointError(CheckpointError):
    pass


class HistoryError(TrackingError):
    """A replay/export request is invalid (empty range, unknown format...)."""


class TrackingStoreError(TrackingError):
    """Reading or writing tracking tables failed."""
