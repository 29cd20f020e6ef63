"""Errors of the incident subsystem."""

from __future__ import annotations


class IncidentError(Exception):
    """Base class of incident errors."""


class CategoryConfigError(IncidentError):
    """The categories file is not valid (what and where)."""


class TransitionError(IncidentError):
    """A transition not allowed from the incident's state or tier (HTTP 409)."""


class IncidentInputError(IncidentError):
    """An intake or transition with bad input (HTTP 422)."""


class UnknownIncidentError(IncidentError):
    """No incident with that id (HTTP 404)."""
