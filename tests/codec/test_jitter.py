"""Jitter buffer: ordering properties under any arrival order, recovery, adaptation, counters.

Packets here are valid Opus TOC bytes (SILK-WB, 20 ms) followed by a tag naming their sequence
number, which is all the buffer looks at; decoding is covered by test_stream.py.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from codec.frame import VoiceFrame
from codec.jitter import JitterBuffer, JitterConfig, PlayoutItem, PlayoutKind

FRAME = 960  # 20 ms at 48 kHz
TOC_20MS = bytes([9 << 3])


def packet(seq: int) -> bytes:
    return TOC_20MS + seq.to_bytes(2, "big")


def message(
    seq: int,
    burst: int = 7,
    base_ts: int = 0,
    fec: bool = False,
    red: bool = False,
    end: bool = False,
    base_seq: int = 0,
    count: int = 1,
    red2: bool = False,
) -> VoiceFrame:
    first = seq * count
    return VoiceFrame(
        burst=burst,
        seq=(base_seq + seq) & 0xFFFF,
        timestamp=(base_ts + first * FRAME) & 0xFFFFFFFF,
        frame_ms=20,
        packets=tuple(packet(first + i) for i in range(count)),
        start=seq == 0,
        end=end,
        fec=fec,
        redundant=packet(first - 1) if red and seq > 0 else None,
        redundant2=packet(first - count - 1) if red and red2 and seq > 1 else None,
    )


def play_out(
    buffer: JitterBuffer, arrivals: list[tuple[float, VoiceFrame]], until: float
) -> list[PlayoutItem]:
    """Deliver (time, frame) arrivals and pull every 20 ms until `until`; return burst items."""
    pending = sorted(arrivals, key=lambda a: a[0])
    items = []
    now = 0.0
    index = 0
    while now < until:
        while index < len(pending) and pending[index][0] <= now:
            buffer.push(pending[index][1], pending[index][0])
            index += 1
        item = buffer.pull(now)
        if item.kind is not PlayoutKind.SILENCE:
            items.append(item)
        now += item.duration / 48000
    return items


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[int, set[int], list[float], list[int], bool, bool, bool]:
    count = draw(st.integers(3, 40))
    lost = set(draw(st.lists(st.integers(0, count - 1), max_size=count // 2)))
    delays = draw(st.lists(st.floats(0.0, 0.15), min_size=count, max_size=count))
    duplicated = draw(st.lists(st.integers(0, count - 1), max_size=5))
    use_red = draw(st.booleans())
    use_red2 = use_red and draw(st.booleans())
    return count, lost, delays, duplicated, use_red, use_red2, draw(st.booleans())


@given(scenarios())
@settings(max_examples=150, deadline=None)
def test_any_arrival_order_plays_in_order_once_with_plc_exactly_where_missing(
    scenario: tuple[int, set[int], list[float], list[int], bool, bool, bool],
) -> None:
    count, lost, delays, duplicated, use_red, use_red2, use_fec = scenario
    # A delay floor above the worst network delay: no packet can be late, so what is missing
    # at playout is exactly what was lost.
    buffer = JitterBuffer(JitterConfig(min_delay_ms=200, max_delay_ms=400))
    arrivals = []
    for seq in range(count):
        frame = message(seq, fec=use_fec, red=use_red, red2=use_red2, end=seq == count - 1)
        if seq not in lost:
            arrivals.append((seq * 0.02 + delays[seq], frame))
        if seq in duplicated and seq not in lost:
            arrivals.append((seq * 0.02 + delays[seq] + 0.01, frame))
    if count - 1 in lost:  # the END must come through, as its own empty marker
        end_marker = VoiceFrame(7, count, count * FRAME, 20, (), end=True)
        arrivals.append((count * 0.02 + 0.05, end_marker))
    items = play_out(buffer, arrivals, until=count * 0.02 + 1.5)

    def next_available(seq: int) -> bool:  # with its FEC: RED2 copies are coded without
        return seq not in lost or (use_red and seq + 1 < count and seq + 1 not in lost)

    def arrives(seq: int) -> bool:
        return seq < count and seq not in lost

    assert [item.timestamp for item in items] == [seq * FRAME for seq in range(count)]
    for seq, item in enumerate(items):
        if seq not in lost:
            assert item.kind is PlayoutKind.NORMAL and item.packet == packet(seq)
        elif (use_red and arrives(seq + 1)) or (use_red2 and arrives(seq + 2)):
            # A RED copy, or for a double loss the RED2 copy two messages later.
            assert item.kind is PlayoutKind.RED and item.packet == packet(seq)
        elif use_fec and seq + 1 < count and next_available(seq + 1):
            # FEC from the next packet, which may itself be a RED copy (two-deep protection).
            assert item.kind is PlayoutKind.FEC and item.packet == packet(seq + 1)
        else:
            assert item.kind is PlayoutKind.EXPAND and item.packet is None
    stats = buffer.stats()
    assert stats.bursts_ended == 1
    assert stats.late_discarded == 0
    assert stats.duplicates == sum(1 for s in set(duplicated) if s not in lost)


@given(
    st.lists(st.floats(0.0, 0.3), min_size=5, max_size=60),
    st.lists(st.booleans(), min_size=60, max_size=60),
)
@settings(max_examples=150, deadline=None)
def test_with_a_small_delay_late_packets_are_dropped_never_replayed(
    delays: list[float], quiet: list[bool]
) -> None:
    """Whatever arrives late, output timestamps only increase and no packet plays twice."""
    buffer = JitterBuffer(JitterConfig(max_delay_ms=40))
    count = len(delays)
    pending = sorted((seq * 0.02 + d, seq) for seq, d in enumerate(delays))
    played: list[int] = []
    stamps: list[int] = []
    now, index, tick = 0.0, 0, 0
    while now < count * 0.02 + 2.0:
        while index < len(pending) and pending[index][0] <= now:
            seq = pending[index][1]
            buffer.push(message(seq, end=seq == count - 1), pending[index][0])
            index += 1
        item = buffer.pull(now, quiet=quiet[tick % len(quiet)])
        tick += 1
        if item.timestamp is not None:
            stamps.append(item.timestamp)
        if item.kind is PlayoutKind.NORMAL:
            assert item.packet is not None
            played.append(int.from_bytes(item.packet[1:], "big"))
            assert item.timestamp == played[-1] * FRAME
        now += item.duration / 48000
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert len(set(played)) == len(played)
    stats = buffer.stats()
    assert stats.packets_played + stats.late_discarded <= count
    assert stats.late_discarded == count - stats.packets_played or stats.bursts_timed_out


def test_fec_recovers_from_the_next_packet() -> None:
    buffer = JitterBuffer(JitterConfig(min_delay_ms=60))
    arrivals = [(s * 0.02, message(s, fec=True, end=s == 4)) for s in (0, 1, 3, 4)]
    items = play_out(buffer, arrivals, 1.0)
    assert [i.kind for i in items] == [PlayoutKind.NORMAL] * 2 + [
        PlayoutKind.FEC,
        PlayoutKind.NORMAL,
        PlayoutKind.NORMAL,
    ]
    assert items[2].packet == packet(3) and items[2].timestamp == 2 * FRAME
    assert buffer.stats().fec_recovered == 1


def test_red_copy_restores_the_lost_packet_and_primary_wins_if_it_comes() -> None:
    buffer = JitterBuffer(JitterConfig(min_delay_ms=80))
    arrivals = [(s * 0.02, message(s, red=True, end=s == 3)) for s in (0, 2, 3)]
    arrivals.append((0.05, message(1, red=True)))  # primary of 1 comes after 2's RED copy
    items = play_out(buffer, arrivals, 1.0)
    assert [i.kind for i in items] == [PlayoutKind.NORMAL] * 4
    buffer = JitterBuffer(JitterConfig(min_delay_ms=80))
    arrivals = [(s * 0.02, message(s, red=True, end=s == 3)) for s in (0, 2, 3)]
    items = play_out(buffer, arrivals, 1.0)
    assert [i.kind for i in items][1] is PlayoutKind.RED
    assert buffer.stats().red_recovered == 1


def test_red2_copy_fills_a_double_loss_and_yields_to_better_copies() -> None:
    buffer = JitterBuffer(JitterConfig(min_delay_ms=100))
    arrivals = [(s * 0.02, message(s, red=True, red2=True, end=s == 5)) for s in (0, 1, 4, 5)]
    items = play_out(buffer, arrivals, 1.0)
    # 2 and 3 lost: 4 carries 3 (RED) and 2 (RED2).
    assert [i.kind for i in items] == [PlayoutKind.NORMAL] * 2 + [PlayoutKind.RED] * 2 + [
        PlayoutKind.NORMAL
    ] * 2
    assert [i.packet for i in items] == [packet(n) for n in range(6)]
    stats = buffer.stats()
    assert (stats.red_recovered, stats.red2_recovered) == (2, 1)
    # A late RED copy (in 3) or primary beats the RED2 copy already stored for that slot.
    for late in (message(3, red=True, red2=True), message(2, red=True, red2=True)):
        buffer = JitterBuffer(JitterConfig(min_delay_ms=100))
        arrivals = [(s * 0.02, message(s, red=True, red2=True, end=s == 5)) for s in (0, 1, 4, 5)]
        arrivals.append((0.09, late))
        items = play_out(buffer, arrivals, 1.0)
        assert buffer.stats().red2_recovered == 0
        assert [i.packet for i in items] == [packet(n) for n in range(6)]


def test_red2_copy_is_placed_before_the_previous_message_of_the_same_length() -> None:
    buffer = JitterBuffer(JitterConfig(min_delay_ms=150))
    arrivals = [(s * 0.06, message(s, count=3, red=True, red2=True, end=s == 3)) for s in (0, 3)]
    items = play_out(buffer, arrivals, 2.0)
    # Messages 1 and 2 (packets 3..8) lost: 3 carries 8 (RED) and 5 (RED2), the others conceal.
    kinds = {int.from_bytes(i.packet[1:], "big"): i.kind for i in items if i.packet}
    assert kinds[8] is PlayoutKind.RED and kinds[5] is PlayoutKind.RED
    assert [i.timestamp for i in items] == [n * FRAME for n in range(12)]
    assert sum(1 for i in items if i.kind is PlayoutKind.EXPAND) == 4


def test_multi_packet_messages_and_wrapping_counters() -> None:
    buffer = JitterBuffer(JitterConfig(min_delay_ms=100))
    base_ts = 0xFFFFFFFF - 5 * FRAME  # the timestamp wraps inside the burst
    arrivals = [
        (at, message(s, base_ts=base_ts, base_seq=0xFFFE, count=3, end=s == 3))
        for s, at in ((0, 0.0), (2, 0.10), (1, 0.11), (3, 0.18))  # 1 overtaken by 2
    ]
    items = play_out(buffer, arrivals, 2.0)
    assert [i.packet for i in items] == [packet(n) for n in range(12)]
    assert [i.timestamp for i in items] == [(base_ts + n * FRAME) % (1 << 32) for n in range(12)]
    assert buffer.stats().reordered == 3


def test_duplicates_late_and_malformed_are_counted() -> None:
    buffer = JitterBuffer(JitterConfig(max_delay_ms=0))
    buffer.push(message(0), 0.0)
    buffer.push(message(0), 0.001)
    assert buffer.pull(0.0).kind is PlayoutKind.NORMAL
    buffer.push(message(2), 0.04)
    assert buffer.pull(0.02).kind is PlayoutKind.EXPAND  # 1 missing, 2 here: lost
    buffer.push(message(1), 0.05)  # too late
    buffer.push(VoiceFrame(7, 3, 3 * FRAME, 20, (bytes([0x4B]),)), 0.06)  # code 3, no count
    stats = buffer.stats()
    assert (stats.duplicates, stats.late_discarded, stats.malformed) == (1, 1, 1)
    assert stats.concealed == 1


def test_target_delay_follows_the_jitter_quantile_and_relaxes() -> None:
    rng = np.random.default_rng(5)
    buffer = JitterBuffer()
    seq = 0
    for seq in range(500):
        buffer.push(message(seq), seq * 0.02 + float(rng.uniform(0, 0.04)))
    assert 30 <= buffer.target_delay_ms <= 45  # the 0.95 quantile of U(0, 40 ms)
    for later in range(seq + 1, seq + 1500):
        buffer.push(message(later), later * 0.02 + 0.0)
    assert buffer.target_delay_ms <= 5  # forgotten once the network calmed down


def test_a_new_listener_starts_with_a_safe_delay_until_it_has_measured() -> None:
    buffer = JitterBuffer(JitterConfig(start_delay_ms=60, start_samples=50))
    assert buffer.target_delay_ms == 60
    for seq in range(50):
        buffer.push(message(seq), seq * 0.02)
    # A perfectly regular network needs only the histogram's resolution (1 ms) and the margin.
    assert buffer.target_delay_ms == 3


def test_burst_start_waits_for_the_target_delay() -> None:
    buffer = JitterBuffer(JitterConfig(min_delay_ms=60))
    buffer.push(message(0), 1.0)
    assert buffer.pull(1.02).kind is PlayoutKind.SILENCE
    assert buffer.pull(1.04).kind is PlayoutKind.SILENCE
    item = buffer.pull(1.06)
    assert item.kind is PlayoutKind.NORMAL and item.burst_start


def test_burst_ends_by_timeout_and_by_a_new_talker() -> None:
    buffer = JitterBuffer(JitterConfig(burst_timeout_ms=200, start_delay_ms=0))
    buffer.push(message(0), 0.0)
    assert buffer.pull(0.02).burst_start
    kinds = []
    now = 0.04
    while True:
        item = buffer.pull(now)
        now += 0.02
        if item.ended:
            assert item.ended == (7,) and item.kind is PlayoutKind.SILENCE
            break
        kinds.append(item.kind)
    assert set(kinds) == {PlayoutKind.EXPAND} and 9 <= len(kinds) <= 11
    assert buffer.stats().bursts_timed_out == 1
    buffer.push(message(1), now)  # a straggler of the finished burst
    assert buffer.stats().late_discarded == 1
    buffer.push(message(0, burst=8), now)
    buffer.push(message(1, burst=8), now)
    item = buffer.pull(now)
    assert item.burst == 8 and item.burst_start
    buffer.push(message(0, burst=9), now + 0.01)  # another talker, while 8 runs dry
    buffer.pull(now + 0.02)
    item = buffer.pull(now + 0.04)
    assert item.ended == (8,) and item.burst == 9 and item.burst_start


def test_dtx_gap_is_comfort_noise_not_loss_and_delay_is_trimmed_there() -> None:
    buffer = JitterBuffer()
    for seq in range(3):
        buffer.push(message(seq), seq * 0.02)
    # The sender skipped 10 DTX frames: seq 3 carries a timestamp 13 frames on.
    buffer.push(VoiceFrame(7, 3, 13 * FRAME, 20, (packet(13),)), 13 * 0.02)
    now = 0.3  # the sound card starts late: playout runs 300 ms behind
    items: list[PlayoutItem] = []
    while len(items) < 20:
        item = buffer.pull(now)
        items.append(item)
        now += 0.02
        if item.packet == packet(13):
            break
    kinds = [i.kind for i in items]
    assert kinds[:3] == [PlayoutKind.NORMAL] * 3 and kinds[-1] is PlayoutKind.NORMAL
    assert set(kinds[3:-1]) == {PlayoutKind.CNG}
    assert buffer.stats().concealed == 0 and buffer.stats().expand_frames == 0
    assert len(kinds[3:-1]) < 10  # the late playout was caught up inside the gap


def test_accelerate_only_via_drop_and_only_when_droppable() -> None:
    buffer = JitterBuffer()
    for seq in range(6):
        buffer.push(message(seq), 0.0)
    assert buffer.pull(0.5).burst_start  # a burst's first packet is never dropped
    # 500 ms late, far above the target, but one quiet output is no pause between talk spurts.
    assert not buffer.pull(0.52, quiet=True).droppable
    buffer = JitterBuffer(JitterConfig(shrink_after_quiet=1))
    for seq in range(6):
        buffer.push(message(seq), 0.0)
    assert buffer.pull(0.5).burst_start
    second = buffer.pull(0.52, quiet=True)
    assert second.droppable and second.timestamp == FRAME
    buffer.drop(second)
    assert buffer.stats().accelerate == 1
    assert buffer.pull(0.52).timestamp == 2 * FRAME
    assert not buffer.pull(0.54, quiet=False).droppable  # not quiet: never
    plain = JitterBuffer()
    plain.push(message(0), 0.0)
    item = plain.pull(0.0)
    assert not item.droppable
