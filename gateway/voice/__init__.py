"""Dispatcher voice from the console: talking as an account's talker identity, listening to
talkgroups, spoken text and uploaded WAV files (docs/protocol.md §12)."""
