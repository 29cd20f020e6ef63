"""The jitter buffer's playout clock: it must not lock onto packet arrivals.

A listener's sound card pulls every 20 ms at a phase of its own against the talker's packets.
Whatever that phase, a packet that arrives within the measured jitter is never late; a late
packet raises the target; and a too-large delay (the start delay of a new listener) is shrunk
only in pauses between talk spurts, never by dropping or concealing speech.

Packets are valid Opus TOC bytes plus a tag (see test_jitter.py); "speech" and "silence" are
labels of the simulated talker, and the simulated player drops a droppable packet only if it is
silence, as codec.stream.VoicePlayer does by the decoded level.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codec.jitter import JitterBuffer, JitterConfig, PlayoutKind
from tests.codec.test_jitter import FRAME, message, packet

PACKET_S = 0.02
NETWORK_S = 0.040  # base network delay
PHASES_MS = [step * 0.5 for step in range(41)]  # talker/listener phase offsets 0-20 ms


@dataclass
class Listening:
    """What a simulated listener heard."""

    kinds: dict[int, PlayoutKind] = field(default_factory=dict)  # packet number -> how played
    dropped: list[int] = field(default_factory=list)
    quiet_before_drop: list[int] = field(default_factory=list)  # quiet outputs before each drop
    delays_ms: list[float] = field(default_factory=list)  # playout delay after each burst packet


def talk(count: int, spurt: int = 0, pause: int = 0) -> list[bool]:
    """Which of `count` packets are speech: spurts of `spurt` packets then `pause` silent ones
    (spurt 0: all speech)."""
    if not spurt:
        return [True] * count
    return [(n % (spurt + pause)) < spurt for n in range(count)]


def listen(
    buffer: JitterBuffer,
    arrivals: list[tuple[float, int, int]],
    speech: list[bool],
    pull_phase: float,
    bursts: dict[int, int],
) -> Listening:
    """Play `arrivals` (time, burst, seq) with pulls every 20 ms from `pull_phase`.

    `bursts` maps a burst id to its first packet number; packet numbers index `speech`.
    """
    pending = sorted(arrivals)
    last_seq = {burst: max(s for _, b, s in pending if b == burst) for burst in bursts}
    heard = Listening()
    quiet, quiet_run = True, 0
    now, index = pull_phase, 0
    until = pending[-1][0] + 1.5
    while now < until:
        while index < len(pending) and pending[index][0] <= now:
            at, burst, seq = pending[index]
            end = seq == last_seq[burst]
            buffer.push(message(seq, burst=burst, base_ts=bursts[burst] * FRAME, end=end), at)
            index += 1
        item = buffer.pull(now, quiet=quiet)
        number = None
        if item.timestamp is not None and item.burst is not None:
            number = item.timestamp // FRAME
        if item.droppable and number is not None and not speech[number]:
            buffer.drop(item)  # the player hears that this packet is quiet
            heard.kinds[number] = item.kind
            heard.dropped.append(number)
            heard.quiet_before_drop.append(quiet_run)
            item = buffer.pull(now, quiet=True)
            number = None if item.timestamp is None else item.timestamp // FRAME
        if number is not None:
            heard.kinds.setdefault(number, item.kind)
            heard.delays_ms.append(buffer.current_delay_ms)
        if item.kind in (PlayoutKind.NORMAL, PlayoutKind.RED):
            quiet = number is not None and not speech[number]
        elif item.kind is PlayoutKind.SILENCE:
            quiet = True
        quiet_run = quiet_run + 1 if quiet else 0
        now += item.duration / 48000
    return heard


def arrivals_of(
    count: int, offset_s: float, jitter: list[float], burst: int = 7, first: int = 0
) -> list[tuple[float, int, int]]:
    return [
        ((first + seq) * PACKET_S + NETWORK_S + offset_s + jitter[seq], burst, seq)
        for seq in range(count)
    ]


@pytest.mark.parametrize("phase_ms", PHASES_MS)
def test_constant_phase_offset_never_makes_a_packet_late(phase_ms: float) -> None:
    """A regular network at any phase: no late packet, nothing concealed, from the start."""
    count = 300
    buffer = JitterBuffer()
    speech = talk(count, spurt=40, pause=10)
    heard = listen(buffer, arrivals_of(count, phase_ms / 1000, [0.0] * count), speech, 0.0, {7: 0})
    stats = buffer.stats()
    assert stats.late_discarded == 0 and stats.concealed == 0 and stats.expand_frames == 0
    assert all(heard.kinds[n] is PlayoutKind.NORMAL for n in range(count) if n not in heard.dropped)
    assert min(heard.delays_ms) >= 0  # never played before a packet could have come


@given(
    phase_ms=st.sampled_from(PHASES_MS),
    jitter_ms=st.floats(0.0, 2.0),
    seed=st.integers(0, 2**16),
    pull_phase_ms=st.floats(0.0, 19.9),
)
@settings(max_examples=120, deadline=None, derandomize=True)
def test_small_jitter_at_any_phase_plays_every_packet(
    phase_ms: float, jitter_ms: float, seed: int, pull_phase_ms: float
) -> None:
    """Zero loss and up to 2 ms of jitter, two bursts (a new listener, then warm): after the
    start, no packet is late or concealed, whatever the talker/listener phase."""
    count = 250
    rng = np.random.default_rng(seed)
    draws = [float(rng.uniform(0, jitter_ms / 1000)) for _ in range(2 * count)]
    second_start = count + 60  # 1.2 s of silence between the bursts
    arrivals = arrivals_of(count, phase_ms / 1000, draws[:count])
    arrivals += arrivals_of(count, phase_ms / 1000, draws[count:], burst=8, first=second_start)
    speech = talk(second_start + count, spurt=30, pause=8)
    buffer = JitterBuffer()
    heard = listen(buffer, arrivals, speech, pull_phase_ms / 1000, {7: 0, 8: second_start})
    stats = buffer.stats()
    assert stats.late_discarded == 0
    assert stats.concealed == 0 and stats.expand_frames == 0
    assert stats.bursts_ended == 2
    played = {n for n, kind in heard.kinds.items() if kind is PlayoutKind.NORMAL}
    expected = set(range(count)) | set(range(second_start, second_start + count))
    assert played == expected  # dropped ones included: the buffer handed them out
    assert stats.target_delay_ms <= 1 + 2 + jitter_ms + 1  # bucket + margin + jitter, not more


def test_first_burst_shrinks_its_start_delay_only_in_pauses() -> None:
    """A new listener starts at the start delay; once it has measured the network it gets
    down to the small target, by dropping silence in pauses between talk spurts only."""
    count = 400
    speech = talk(count, spurt=45, pause=12)
    buffer = JitterBuffer()
    heard = listen(buffer, arrivals_of(count, 0.0073, [0.0] * count), speech, 0.0, {7: 0})
    stats = buffer.stats()
    assert heard.delays_ms[0] >= JitterConfig().start_delay_ms
    assert stats.accelerate >= 2 and heard.dropped  # ... which was shrunk
    assert heard.delays_ms[-1] < 30
    assert all(not speech[n] for n in heard.dropped)
    assert min(heard.quiet_before_drop) >= JitterConfig().shrink_after_quiet
    assert stats.concealed == 0 and stats.expand_frames == 0 and stats.late_discarded == 0
    assert all(heard.kinds[n] is PlayoutKind.NORMAL for n in range(count) if speech[n])


def test_first_burst_without_pauses_keeps_its_start_delay() -> None:
    """All speech, no pause: nothing is dropped, the burst plays at the start delay."""
    count = 300
    speech = talk(count)
    buffer = JitterBuffer()
    heard = listen(buffer, arrivals_of(count, 0.0121, [0.0] * count), speech, 0.0, {7: 0})
    assert buffer.stats().accelerate == 0 and not heard.dropped
    assert min(heard.delays_ms) >= JitterConfig().start_delay_ms
    assert all(kind is PlayoutKind.NORMAL for kind in heard.kinds.values())
    assert len(heard.kinds) == count


def late_listener(delay_s: float, config: JitterConfig | None = None) -> JitterBuffer:
    """Packets 0-49 arrive on time, 50 comes `delay_s` late (after its slot was concealed),
    the rest on time; pulls 10 ms after each arrival. Returns the buffer at t = 1.6 s."""
    buffer = JitterBuffer(config or JitterConfig(start_samples=0))
    arrivals = sorted((seq * PACKET_S + (delay_s if seq == 50 else 0.0), seq) for seq in range(80))
    now, index = 0.01, 0
    while now < 1.6:
        while index < len(arrivals) and arrivals[index][0] <= now:
            buffer.push(message(arrivals[index][1]), arrivals[index][0])
            index += 1
        buffer.pull(now)
        now += PACKET_S
    return buffer


@pytest.mark.parametrize(
    ("delay_ms", "target_ms"),
    [
        (0.0, 3.0),  # on time: the histogram's 1 ms bucket + 2 ms margin
        (15.0, 17.0),  # late: the target covers its delay plus the margin
        (30.0, 32.0),
        (60.0, 62.0),
        (150.0, 152.0),
        (400.0, 3.0),  # 400 ms is an outage, not jitter: no raise
    ],
)
def test_a_late_packet_raises_the_target(delay_ms: float, target_ms: float) -> None:
    buffer = late_listener(delay_ms / 1000)
    stats = buffer.stats()
    assert stats.late_discarded == (1 if delay_ms > 10 else 0)
    # The floor has decayed a little since the packet came (half-life 5 s).
    assert stats.target_delay_ms == pytest.approx(target_ms, rel=0.15)
    assert stats.target_delay_ms <= target_ms + 1e-6


def test_the_raise_fades_and_the_band_never_drops_below_the_target() -> None:
    buffer = late_listener(0.030, JitterConfig(start_samples=0, late_half_life_s=1.0))
    raised = buffer.target_delay_ms
    assert raised > 15  # 32 ms, 0.6 s (0.6 half-lives) ago
    # Keep the network regular for 3 more seconds: three half-lives later it is back down.
    for seq in range(80, 230):
        buffer.push(message(seq), seq * PACKET_S)
        buffer.pull(seq * PACKET_S + 0.01, quiet=True)
    assert buffer.target_delay_ms < raised / 4
    assert buffer.stats().current_delay_ms >= buffer.target_delay_ms


def test_after_a_raise_the_delay_grows_in_a_pause_and_the_same_delay_is_on_time() -> None:
    """Every 10th packet 25 ms late: the first is late, the buffer grows (in quiet) and the
    later ones make it."""
    buffer = JitterBuffer(JitterConfig(start_samples=0))
    arrivals = sorted(
        (seq * PACKET_S + (0.025 if seq % 10 == 5 and seq > 40 else 0.0), seq) for seq in range(300)
    )
    now, index, played = 0.01, 0, 0
    while now < 6.5:
        while index < len(arrivals) and arrivals[index][0] <= now:
            buffer.push(message(arrivals[index][1]), arrivals[index][0])
            index += 1
        item = buffer.pull(now, quiet=played % 25 > 20)  # short pauses now and then
        played += item.kind is PlayoutKind.NORMAL
        now += item.duration / 48000
    stats = buffer.stats()
    assert stats.late_discarded == 1
    assert stats.preemptive_expand >= 1  # grown where it was quiet
    assert stats.target_delay_ms >= 25


def test_late_red_copies_and_stragglers_of_ended_bursts_raise_nothing() -> None:
    buffer = JitterBuffer(JitterConfig(start_samples=0))
    for seq in range(3):
        buffer.push(message(seq, red=True, end=seq == 2), seq * PACKET_S)
    now = 0.01
    while not buffer.pull(now).ended:
        now += PACKET_S
    before = buffer.target_delay_ms
    buffer.push(message(1, red=True), now)  # a straggler of the ended burst
    assert buffer.late_discarded == 1 and buffer.target_delay_ms == before
    targets = []
    for red in (True, False):
        other = JitterBuffer(JitterConfig(start_samples=0))
        other.push(message(0, burst=9), 0.0)
        assert other.pull(0.01).packet == packet(0)
        assert other.pull(0.03).kind is PlayoutKind.EXPAND  # 1 missing and nothing after it
        other.push(message(2, burst=9, red=red), 0.045)  # with RED: carries 1, too late
        assert other.late_discarded == 0
        targets.append(other.target_delay_ms)
    # The same but for one packet of lookahead: a protected stream that lost a packet.
    assert targets[0] == pytest.approx(targets[1] + 20)


def _two_bursts(first_delay_s: float, second_first: int) -> tuple[JitterBuffer, Listening]:
    """Burst 7 (packets 0-99), then burst 8 whose packets carry timestamps from `second_first`
    on but leave at packet times 160-259. Every third message is 30 ms late, and burst 8's
    first four messages are `first_delay_s` late (it starts in a spike of network delay). The
    sound card takes 10 ms periods while idle."""
    buffer = JitterBuffer(JitterConfig(start_samples=0, idle_tick_ms=10))
    jitter = [0.03 if n % 3 == 2 else 0.0 for n in range(100)]
    arrivals = arrivals_of(100, 0.0, jitter) + arrivals_of(
        100, 0.0, [first_delay_s] * 4 + jitter[4:], 8, 160
    )
    shift = second_first - 160  # the second talker's clock against the first one's (packets)
    arrivals = [(at - (shift * PACKET_S if b == 8 else 0.0), b, s) for at, b, s in arrivals]
    speech = talk(second_first + 100, spurt=40, pause=10)
    return buffer, listen(buffer, arrivals, speech, 0.0, {7: 0, 8: second_first})


def test_a_new_burst_starts_from_the_least_delay_of_the_bursts_before_it() -> None:
    """The first messages of a burst may be delayed by the network; measured from them alone,
    that delay would stay in the burst's audio until its first pause. A talker on the same
    clock is measured from the least delay already seen: the second burst plays with the
    first one's delay from its first packet on."""
    _, heard = _two_bursts(0.03, 160)
    end_of_first, start_of_second = heard.delays_ms[80:100], heard.delays_ms[100:125]
    assert len(heard.delays_ms) == 200
    assert max(start_of_second) <= max(end_of_first) + 0.5
    second = [heard.kinds[n] for n in range(160, 260)]
    assert all(kind is PlayoutKind.NORMAL for kind in second)  # nothing late, nothing lost


def test_a_burst_on_another_clock_is_measured_from_its_own_messages() -> None:
    """A talker whose timestamps are 2 s off (another clock): nothing from the earlier bursts
    applies, its burst plays whole from its own first message as a new listener's would."""
    for second_first in (60, 260):  # its clock 2 s behind, 2 s ahead
        _, heard = _two_bursts(0.0, second_first)
        played = [n for n in heard.kinds if n >= second_first]
        assert len(played) == 100
        assert all(heard.kinds[n] is PlayoutKind.NORMAL for n in played)


def test_protection_lookahead_covers_a_lower_quantile_of_the_next_message() -> None:
    """While a lossy stream carries RED, the target covers `protected_quantile` of the next
    message's arrival (relative delay + one packet), not the primary quantile plus a packet."""
    config = JitterConfig(start_samples=0, quantile=0.95, protected_quantile=0.5)
    buffer = JitterBuffer(config)
    rng = np.random.default_rng(3)
    delays = np.abs(rng.normal(0.0, 0.020, 400))
    delays[0] = 0.0
    for seq, delay in enumerate(delays):
        if seq % 10 == 5:
            continue  # lost: the buffer learns the stream is lossy
        buffer.push(message(seq, red=True), seq * PACKET_S + float(delay))
        buffer.pull(seq * PACKET_S + float(delay))
    relative = delays - delays.min()
    median = float(np.quantile(relative, 0.5)) * 1000.0
    p95 = float(np.quantile(relative, 0.95)) * 1000.0
    target = buffer.target_delay_ms
    assert target >= max(p95 + 2.0, median + 22.0) - 4.0  # histogram forgetting, 1 ms buckets
    assert target < p95 + 22.0 - 4.0  # not the primary quantile plus a packet


@pytest.mark.parametrize("lossy", [False, True])
def test_waiting_in_a_pause_for_a_missing_packet_stays_within_the_target_on_a_lossy_stream(
    lossy: bool,
) -> None:
    """In a pause the buffer runs dry: from the next packet on, the network delays everything
    60 ms more. On a clean stream a missing packet is more likely late than lost, so the
    buffer holds its place (concealing) and plays it; on a
    lossy stream it is more likely lost, so the buffer waits only while the delay is below the
    target — the wait would otherwise stay in every later packet's delay."""
    config = JitterConfig(start_samples=0)
    buffer = JitterBuffer(config)
    sent = [seq for seq in range(60) if not (lossy and seq % 10 == 5)]
    arrivals = {seq: seq * PACKET_S + 0.001 for seq in sent}
    for seq in range(60, 120):  # a spike: from packet 60 on, 60 ms more network delay
        arrivals[seq] = seq * PACKET_S + 0.001 + 0.060
    now, kinds = 0.005, {}
    while now < 2.6:
        for seq in [s for s, at in arrivals.items() if at <= now]:
            buffer.push(message(seq), arrivals.pop(seq))
        item = buffer.pull(now, quiet=True)
        if item.timestamp is not None and item.kind is not PlayoutKind.EXPAND:
            kinds[item.timestamp // FRAME] = item.kind
        now += item.duration / 48000
    if lossy:
        assert 60 not in kinds and buffer.current_delay_ms < buffer.target_delay_ms + 20.0
    else:
        assert kinds[60] is PlayoutKind.NORMAL and buffer.stats().late_discarded == 0
