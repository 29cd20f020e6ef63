"""Patrol tracking: beacon ingest (native, OwnTracks, NMEA), filters, storage, live positions,
replay, geofences, checkpoints and alarms (docs/protocol.md §7 and §10)."""
