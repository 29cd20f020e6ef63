"""The sound card's start-up: when a stream counts as running at its rate (no card needed)."""

from __future__ import annotations

from firmware_sim.audio import CHUNK, RATE, CardPace, wait_until_steady


def test_a_stream_is_steady_once_its_callbacks_keep_its_rate() -> None:
    pace = CardPace(RATE)
    # Opening: three periods asked for at once, then nothing for 1.6 s (PulseAudio's ALSA plugin).
    for _ in range(3):
        pace.record(0.0, CHUNK)
    assert not pace.steady(0.001)
    assert not pace.steady(1.0)
    now = 1.6
    settled_at = None
    while now < 2.2:
        pace.record(now, CHUNK)
        if settled_at is None and pace.steady(now):
            settled_at = now
        now += CHUNK / RATE
    # 0.75 of the 0.3 s window carried: the 12th period of the steady run.
    assert settled_at is not None and abs(settled_at - (1.6 + 11 * CHUNK / RATE)) < 1e-9
    # A stall ends it: a window without callbacks is not steady.
    assert not pace.steady(now + 0.3)


def test_a_burst_of_periods_is_not_a_pace() -> None:
    pace = CardPace(RATE)
    for _ in range(20):  # 400 ms of audio asked for within a millisecond
        pace.record(5.0, CHUNK)
    assert not pace.steady(5.001)
    assert not pace.steady(5.2)  # spread over less than half the window


class _Stream:
    def __init__(self, steady_from: float, clock: list[float]) -> None:
        self.steady_from = steady_from
        self.clock = clock
        self.started_at: float | None = None

    def steady(self) -> bool:
        return self.clock[0] >= self.steady_from

    def started(self) -> None:
        self.started_at = self.clock[0]


def test_the_card_is_ready_when_both_streams_are_steady() -> None:
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    mic, speaker = _Stream(1.7, clock), _Stream(2.1, clock)
    assert wait_until_steady([mic, speaker], 8.0, clock=lambda: clock[0], sleep=sleep)
    assert 2.1 <= clock[0] < 2.1 + CHUNK / RATE + 1e-9
    assert mic.started_at == speaker.started_at == clock[0]


def test_a_card_that_never_settles_is_given_up_on_at_the_deadline() -> None:
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    mic, speaker = _Stream(0.0, clock), _Stream(60.0, clock)
    assert not wait_until_steady([mic, speaker], 8.0, clock=lambda: clock[0], sleep=sleep)
    assert 8.0 <= clock[0] < 8.0 + CHUNK / RATE + 1e-9
    assert mic.started_at is None and speaker.started_at is None
