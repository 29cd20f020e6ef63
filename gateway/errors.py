"""The gateway's exception hierarchy."""


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """A setting, file or URL the gateway was given is not usable."""


class CredentialError(GatewayError):
    """A secret or stored password hash that cannot be used."""
