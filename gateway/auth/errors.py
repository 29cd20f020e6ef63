"""Errors of the accounts service."""

from gateway.errors import GatewayError


class AccountError(GatewayError):
    """Base of the accounts' errors."""


class InvalidAccountError(AccountError):
    """A bad account name, role or password."""


class AccountExistsError(AccountError):
    """An account of that name exists already."""


class UnknownAccountError(AccountError):
    """No account of that name."""
