"""Dispatcher accounts: roles and scope (pure), password hashing, the account store, sign-in
throttling and the audit trail."""
