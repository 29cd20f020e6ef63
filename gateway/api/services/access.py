"""Access decisions for the API's services: the caller's scope (gateway.auth.scope) applied to
resources; out of scope is :class:`ForbiddenError`, which the app answers with 403."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gateway.auth.scope import Action, Scope
from gateway.auth.store import Account


class ForbiddenError(Exception):
    """The signed-in account may not do this, or not on this resource (403)."""


@dataclass(frozen=True, slots=True)
class SignedIn:
    """Who is calling: the account, its scope, and how it proved itself."""

    account: Account
    scope: Scope
    via: Literal["session", "bearer"]

    def require(self, action: Action, in_scope: bool = True, what: str = "") -> None:
        """Raise ForbiddenError unless `action` is allowed on a resource (not) in scope."""
        if not self.scope.may(action):
            raise ForbiddenError(f"role {self.account.role} may not {action}")
        if not in_scope:
            raise ForbiddenError(f"{what or 'that'} is outside the scope of {self.account.role}")
