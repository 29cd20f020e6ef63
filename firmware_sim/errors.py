"""The firmware simulator's exception hierarchy."""

from devices.errors import DevicesError


class SimError(DevicesError):
    """Base of every error the simulator raises on purpose."""


class RouteError(SimError):
    """A patrol route (GeoJSON or derived from a grid) that cannot be used."""


class ScenarioError(SimError):
    """A scenario file that is unreadable or inconsistent; names the file and the step."""


class AssertionFailed(SimError):
    """A scenario expectation did not hold."""


class EnvironmentError_(SimError):
    """The broker/gateway the simulator needs could not be started or reached."""


class AudioError(SimError):
    """No usable speech source or sound device."""
