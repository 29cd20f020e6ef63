"""Size limits of the protocol (§2, §5), defined once."""

from typing import Final

MAX_JSON_BYTES: Final = 4096  # one control, status or beacon message
MAX_AFFILIATE_TGS: Final = 64  # talkgroup ids in one `affiliate`
MAX_FIELD_CHARS: Final = 256  # a string field of a control message, unless its own limit is set
MAX_STATUS_CODE_CHARS: Final = 32
MAX_STATUS_TEXT_CHARS: Final = 512
MAX_REASON_CHARS: Final = 256  # `reason` of a status message
MAX_REPORT_TEXT_CHARS: Final = 1000  # `text` of an incident `report` (§5.6)

# Per-device budgets (§5.1, §7): token buckets, a message costs one token; a bucket holds at
# most its burst and refills at its rate (tokens per second). Over budget, a message is refused
# and counted `rate_limited`.
CONTROL_RATE: Final = 20.0  # `ctrl/up` messages per second, sustained, per device
CONTROL_BURST: Final = 40
# `floor_release` and `sos` over the control budget are still handled, from this reserve:
# releasing must always work (a talker whose release were refused would keep the floor).
CONTROL_RESERVE_RATE: Final = 2.0
CONTROL_RESERVE_BURST: Final = 10
RATE_LIMITED_REPLY_INTERVAL_S: Final = 1.0  # at most one `error` `rate_limited` per device

# The reference terminal keeps this many beacons while offline (§5.5) and sends them all, up to
# 16 in flight, as soon as it reconnects: the beacon burst holds a full store and its window.
BEACON_STORE: Final = 2000
BEACON_WINDOW: Final = 16
BEACON_RATE: Final = 10.0  # beacon messages (gps, nmea, OwnTracks) per second, per device
BEACON_BURST: Final = BEACON_STORE + BEACON_WINDOW + 32  # 2048
