"""Size limits of the protocol (§2, §5), defined once."""

from typing import Final

MAX_JSON_BYTES: Final = 4096  # one control, status or beacon message
MAX_AFFILIATE_TGS: Final = 64  # talkgroup ids in one `affiliate`
MAX_FIELD_CHARS: Final = 256  # a string field of a control message, unless its own limit is set
MAX_STATUS_CODE_CHARS: Final = 32
MAX_STATUS_TEXT_CHARS: Final = 512
MAX_REASON_CHARS: Final = 256  # `reason` of a status message
