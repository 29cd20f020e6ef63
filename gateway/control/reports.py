"""Receiver reports (§9.2): at most one forwarded per talker per window, the worst of it."""

from __future__ import annotations

from gateway.control.output import Output
from gateway.floors import FloorTable
from protocol.control import ReceiverReport
from protocol.keys import call_key

RR_WINDOW_S = 0.5  # at most one forwarded receiver report per talker per window (§9.2)


class ReceiverReportThrottle:
    def __init__(self, floors: FloorTable, out: Output, window_s: float = RR_WINDOW_S) -> None:
        self._floors = floors
        self._out = out
        self.window_s = window_s
        self._pending: dict[str, tuple[str, ReceiverReport]] = {}  # talker -> worst report
        self._sent: dict[str, float] = {}  # talker -> when a report last went out

    @property
    def waiting(self) -> bool:
        """Whether some report waits for its talker's window."""
        return bool(self._pending)

    def _target(self, reporter: str, report: ReceiverReport, now: float) -> str | None:
        """The talker a report is about: the holder of its burst, or the device that released
        it while the release tail lasts (§6; a listener's last report, sent on the burst's
        END, comes after the release). None for any other burst, and for one's own."""
        if report.tg is not None:
            floor = self._floors.talkgroups.get(report.tg)
        else:
            assert report.call is not None
            floor = self._floors.calls.get(call_key(reporter, report.call))
        if floor is None:
            return None
        talker = floor.holder if floor.burst == report.burst else None
        if talker is None:
            talker = floor.tail_talker(report.burst, now)
        if talker is None or talker == reporter:
            return None
        if report.call is not None and talker != report.call:
            return None
        return talker

    def _stale(self) -> None:
        rejected = self._out.counters.rejected
        rejected["stale_rr"] = rejected.get("stale_rr", 0) + 1

    def report(self, reporter: str, report: ReceiverReport, now: float) -> None:
        """Forward at most one report per talker per window: the worst of the window."""
        talker = self._target(reporter, report, now)
        if talker is None:
            self._stale()
            return
        pending = self._pending.get(talker)
        if pending is None or report.miss_score > pending[1].miss_score:
            self._pending[talker] = (reporter, report)
        self.flush(now, only=talker)

    def flush(self, now: float, only: str | None = None) -> None:
        """Forward the reports whose talker's window has passed."""
        for talker in [only] if only is not None else list(self._pending):
            if now - self._sent.get(talker, -self.window_s) < self.window_s:
                continue
            reporter, report = self._pending.pop(talker)
            if self._target(reporter, report, now) != talker:
                self._stale()  # the burst (and its tail) ended while the report waited
                continue
            self._sent[talker] = now
            fields = report.forward_fields()
            if report.call is not None:
                fields["call"] = reporter  # from the talker's side the call is with the reporter
            self._out.reply(talker, "rr", **fields, **{"from": reporter})
