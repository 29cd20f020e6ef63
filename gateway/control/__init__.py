"""The gateway's control plane, sans-I/O (see `gateway.control.plane`), split by job:

- `presence`: each device's state and battery (§4)
- `affiliation`: who listens to which talkgroup (§5.5), and active SOS alarms (§8)
- `commands`: commands to terminals and their acks, who is stunned (§5.4)
- `reports`: receiver-report throttling (§9.2)
- `calls`: private calls' floors and their numbering (§6)
- `timers`: floor wake-ups
- `announce`: floor events into protocol messages and stored events
- `output`: the shared outbox and event list

The floors themselves are owned by `gateway.floors.FloorTable` (`ControlPlane.floors`).
"""

from gateway.control.calls import CALL_IDLE_S, MAX_RETIRED_CALLS
from gateway.control.plane import ControlPlane
from gateway.control.presence import Presence
from gateway.control.reports import RR_WINDOW_S

__all__ = ["CALL_IDLE_S", "MAX_RETIRED_CALLS", "RR_WINDOW_S", "ControlPlane", "Presence"]
