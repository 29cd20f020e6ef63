"""The terminal <-> gateway contract of docs/protocol.md, as pure code both sides import.

Topics (builders, parsers, ACL patterns), id patterns, size limits, control messages and their
JSON, error and reason codes, floor keys, and the organisation that decides talkgroup membership
(§8). No network or database I/O; `codec/` keeps the voice-frame byte layout.
"""
