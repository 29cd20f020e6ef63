"""The devices package's exception hierarchy."""


class DevicesError(Exception):
    """Base of every error the devices package raises on purpose."""
