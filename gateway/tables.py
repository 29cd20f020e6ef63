"""Every table of the gateway on the store's shared `metadata`, complete.

The store owns `metadata` and its own tables; other parts (recordings, tracking) define theirs on
it in their own schema modules. This module, outside the store, imports all of them, so the store
never imports the parts that build on it. Alembic's environment and the schema-drift tests import
`metadata` from here.
"""

from gateway import command_store as _commands  # noqa: F401
from gateway.alarms import store as _alarms  # noqa: F401
from gateway.auth import schema as _auth  # noqa: F401
from gateway.incidents import schema as _incidents  # noqa: F401
from gateway.store import recordings as _recordings  # noqa: F401
from gateway.store.schema import metadata
from gateway.tracking import schema as _tracking  # noqa: F401

__all__ = ["metadata"]
