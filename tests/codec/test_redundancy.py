"""RED2 budget: copies never push the stream above the cap and go to the largest packets."""

from __future__ import annotations

import numpy as np
import pytest

from codec.errors import CodecConfigError
from codec.redundancy import DeepRedundancyBudget

MESSAGE_S = 0.02


def run(sizes: list[int], copy_bytes: int = 20, cap: int = 32000) -> tuple[list[bool], float]:
    """Primary + RED copy of each packet, plus a RED2 copy when the budget wants one."""
    budget = DeepRedundancyBudget(cap, copy_bitrate=8000)
    chosen, bits = [], 0.0
    for size in sizes:
        wants = budget.wants(size)
        if wants:
            budget.made(copy_bytes)
        sent = wants and budget.affordable(copy_bytes)
        budget.sent(MESSAGE_S, 2 * size, copy_bytes if sent else 0)
        chosen.append(sent)
        bits += (2 * size + (copy_bytes if sent else 0)) * 8
    return chosen, bits / (len(sizes) * MESSAGE_S)


def test_copies_fit_under_the_cap_and_use_most_of_the_spare() -> None:
    rng = np.random.default_rng(4)
    sizes = [int(s) for s in rng.integers(20, 56, 3000)]  # VBR, mean 37.5 bytes: 15 kbit/s
    chosen, bitrate = run(sizes)
    assert 32000 - 500 < bitrate <= 32000  # the spare 2 kbit/s is used, never more
    share = sum(chosen) / len(chosen)
    assert share == pytest.approx(0.25, abs=0.04)  # 2 kbit/s of 8 kbit/s copies
    picked = np.array(sizes)[np.array(chosen)]
    assert picked.mean() > np.mean(sizes) + 8  # the largest packets get the copies


def test_no_spare_no_copies_and_silence_is_never_copied() -> None:
    chosen, bitrate = run([40] * 500)  # primary + RED already at the cap
    assert not any(chosen) and bitrate == 32000
    chosen, _ = run([10] * 500)  # tiny packets: not larger than a copy
    assert not any(chosen)


def test_a_burst_starts_with_an_empty_bucket() -> None:
    budget = DeepRedundancyBudget(32000, copy_bitrate=8000)
    for _ in range(200):
        budget.sent(MESSAGE_S, 60, 0)
    assert budget.affordable(20)
    budget.reset()
    assert not budget.affordable(20)


def test_bad_settings_rejected() -> None:
    with pytest.raises(CodecConfigError):
        DeepRedundancyBudget(0, 8000)
    with pytest.raises(CodecConfigError):
        DeepRedundancyBudget(32000, 8000, bucket_ms=0)
