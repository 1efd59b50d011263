"""The statistics the benchmarks print: a bar is judged by them, so they are tested like code."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_lesson_cost import ratio_interval  # noqa: E402


def _pairs(ratio: float, n: int, seed: int) -> tuple[list[float], list[float]]:
    """``n`` lesson-04 costs drifting like a shared machine (±20 %) and a lesson costing ``ratio`` of each,
    with 5 % noise of its own."""
    rng = np.random.default_rng(seed)
    theirs = 2.2 * rng.uniform(0.8, 1.2, n)
    mine = theirs * ratio * rng.normal(1.0, 0.05, n)
    return mine.tolist(), theirs.tolist()


def test_the_interval_holds_the_true_ratio_about_95_times_in_100():
    held = 0
    for seed in range(200):
        low, high = ratio_interval(*_pairs(0.97, 36, seed), resamples=2000)
        assert low < high
        held += low <= 0.97 <= high
    assert 0.88 * 200 <= held <= 0.99 * 200, held  # a percentile bootstrap on 36 pairs: near, a little under, 95 %


def test_the_interval_narrows_with_more_pairs_and_separates_a_real_difference():
    few = ratio_interval(*_pairs(0.95, 12, 1))
    many = ratio_interval(*_pairs(0.95, 400, 1))
    assert many[1] - many[0] < (few[1] - few[0]) / 3
    assert many[1] < 1.0  # 5 % cheaper is resolved by 400 pairs
    even = ratio_interval(*_pairs(1.0, 400, 2))
    assert even[0] < 1.0 < even[1]
