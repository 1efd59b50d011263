"""Every quantitative sentence of lesson 05's prose (and instructor notes), checked over its seeds.

Each experiment runs once per module (the lab caches its results); the whole file takes about
20 s on one idle core. When a claim stops holding on every seed, change the claim in the lesson.
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys

import numpy as np
import pytest

import stabletrain
from stabletrain.lessons import batchnorm_lab as lab
from stabletrain.threads import single_thread


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with single_thread():
        yield


@pytest.fixture(scope="module")
def standardization():
    return lab.standardization_experiment()


@pytest.fixture(scope="module")
def sweep():
    return lab.sweep_experiment()


@pytest.fixture(scope="module")
def grads():
    return lab.gradient_norm_experiment()


@pytest.fixture(scope="module")
def sizes():
    return lab.batch_size_experiment()


def test_every_experiment_runs_over_five_seeds(standardization, sweep, grads, sizes):
    assert len(lab.SEEDS) >= 5
    assert standardization.raw.shape[0] == sweep.final["bn"].shape[0] == len(lab.SEEDS)
    assert all(v.shape[0] == len(lab.SEEDS) for v in grads.norms.values())
    assert sizes.eval_mode["bn"].shape[0] == len(lab.SEEDS)


# ----------------------------------------------------------------------------------------------
# Section 1: standardizing the inputs


def test_raw_features_keep_more_than_40_percent_after_100_steps(standardization):
    kept = standardization.raw[:, 100] / standardization.raw[:, 0]
    assert np.all(kept > 0.40)
    assert 0.48 <= kept.min() and kept.max() < 0.72  # instructor note: 48–71 %


def test_standardized_excess_loss_below_1e_8_after_10_steps(standardization):
    assert np.all(standardization.standardized[:, 10] < 1e-8)


def test_condition_numbers(standardization):
    assert np.all(standardization.condition_raw > 1e9)
    assert np.all(standardization.condition_standardized < 2)
    assert standardization.condition_raw.min() > 2.7e9  # instructor note: minimum 2.8e9
    assert 1.55 < standardization.condition_standardized.min() and standardization.condition_standardized.max() < 1.95


def test_slowest_component_shrinks_by_one_minus_one_over_kappa():
    """The derivation: at step 1/lambda_max the error along the smallest eigenvector shrinks by 1 - 1/kappa."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 3)) * np.array([1.0, 3.0, 10.0])
    h = a.T @ a / len(a)
    evals, evecs = np.linalg.eigh(h)
    e = evecs[:, 0]  # error along the slowest direction
    after = e - (1 / evals[-1]) * (h @ e)
    assert np.allclose(after, (1 - evals[0] / evals[-1]) * e)


# ----------------------------------------------------------------------------------------------
# Section 2: a batch of two


def test_batch_of_two_gives_plus_minus_one():
    rng = np.random.default_rng(1)
    for _ in range(5):
        pair = rng.normal(0, 5, size=(2, 6))
        out, _ = stabletrain.batchnorm_forward(pair, np.ones(6), np.zeros(6), np.zeros(6), np.ones(6))
        half = np.abs(pair[0] - pair[1]) / 2
        assert np.allclose(np.abs(out), half / np.sqrt(half**2 + 1e-5))  # the formula of Section 2
        assert np.all(np.sign(out[0]) == np.sign(pair[0] - pair[1]))  # only which one is larger survives


# ----------------------------------------------------------------------------------------------
# Section 3: timing. The ratio depends on the memory allocator more than on the arithmetic: the
# graph version makes more temporary arrays, and fresh memory costs page faults. glibc's allocator
# adapts as a process runs, so one process measured 15-20x and a long-running test worker 1.85x.
# Each regime is pinned here in a fresh process of its own (glibc's tunables; elsewhere they are
# ignored and the test is skipped).

_TIMING = """
import numpy as np, stabletrain
from stabletrain.lessons import batchnorm_lab as lab
rng = np.random.default_rng(0)
x, dout = rng.normal(size=(256, 512)), rng.normal(size=(256, 512))
_, cache = stabletrain.batchnorm_forward(x, np.ones(512), np.zeros(512), np.zeros(512), np.ones(512))
lab.time_call(stabletrain.batchnorm_backward, dout, cache)  # warm: the allocator settles into its regime
graph = lab.time_call(stabletrain.batchnorm_backward, dout, cache, repeat=7, number=5)
closed = lab.time_call(stabletrain.batchnorm_backward_alt, dout, cache, repeat=7, number=5)
print(graph / closed)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the allocator regimes are set with glibc's tunables")
@pytest.mark.parametrize("regime, malloc, floor", [
    ("memory reused (a long-running kernel)", {"MALLOC_MMAP_THRESHOLD_": "33554432",
                                               "MALLOC_TRIM_THRESHOLD_": "134217728"}, 1.4),  # measured 1.7-2.4
    ("fresh memory for every temporary", {"MALLOC_MMAP_THRESHOLD_": "65536"}, 4.0),  # measured ~7
])
def test_closed_form_backward_is_faster_whatever_the_allocator_does(regime, malloc, floor):
    """The instructor note: about 2x with memory reused, about 7x with fresh memory."""
    env = {**os.environ, **malloc, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", _TIMING], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    ratio = float(done.stdout.split()[-1])
    assert ratio > floor, f"{regime}: graph / closed form = {ratio:.2f}"


# ----------------------------------------------------------------------------------------------
# Section 7: the heat maps


def _index(values, value):
    return list(values).index(value)


def test_without_bn_small_scales_stay_at_chance(sweep):
    plain = sweep.final["plain"]
    for scale in (0.25, 0.5):
        assert np.all(np.abs(plain[:, _index(sweep.scales, scale)] - math.log(3)) < 0.03)


def test_without_bn_scale_4_always_diverges(sweep):
    assert np.all(np.isinf(sweep.final["plain"][:, _index(sweep.scales, 4.0)]))


def test_without_bn_only_the_kaiming_scale_trains_at_most_learning_rates(sweep):
    med = sweep.median("plain")
    trains = (med < 1.0).sum(axis=1)  # learning rates at which the median run got below chance
    majority = len(sweep.lrs) // 2 + 1
    for i, scale in enumerate(sweep.scales):
        assert (trains[i] >= majority) == (scale == 1.0), (scale, trains[i])
    i1, i2 = _index(sweep.scales, 1.0), _index(sweep.scales, 2.0)
    assert round(med[i1, _index(sweep.lrs, 0.1)], 2) == 0.32  # instructor note
    assert round(med[i2, _index(sweep.lrs, 0.01)], 2) == 0.48
    assert np.isinf(sweep.final["plain"][:, i2, _index(sweep.lrs, 0.01)]).sum() == 2


def test_with_bn_every_cell_trains_on_every_seed(sweep):
    assert np.all(sweep.final["bn"] < 0.8)
    assert sweep.final["bn"].max() > 0.7  # instructor note: worst 0.74
    best = np.unravel_index(sweep.median("bn").argmin(), sweep.median("bn").shape)
    assert (sweep.scales[best[0]], sweep.lrs[best[1]]) == (2.0, 0.1)
    assert round(sweep.median("bn").min(), 2) == 0.34


# ----------------------------------------------------------------------------------------------
# Section 7: gradient norms


def test_without_bn_weight_scales_differ_by_twelve_orders(grads):
    small, large = grads.norms["plain", 0.5], grads.norms["plain", 2.0]
    assert np.all(large / small > 1e12)


def test_with_bn_weight_scales_agree_within_a_factor(grads):
    stacked = np.stack([grads.norms["bn", s] for s in (0.5, 1.0, 2.0)])
    spread = stacked.max(axis=0) / stacked.min(axis=0)
    assert np.all(spread < 2.5)
    assert spread.max() < 2.3  # instructor note


def test_with_bn_the_gradient_grows_towards_the_input(grads):
    for scale in (0.5, 1.0, 2.0):
        v = grads.norms["bn", scale]
        ratio = v[:, 1] / v[:, -2]  # second layer / last hidden layer
        assert np.all(ratio > 25)
        assert ratio.min() > 30 and ratio.max() < 65  # instructor note: 30–64


# ----------------------------------------------------------------------------------------------
# Section 7: batch size


def test_train_eval_disagreement_at_batch_2_and_64(sizes):
    dis = sizes.disagreement["bn"]
    b2, b64 = _index(sizes.batch_sizes, 2), _index(sizes.batch_sizes, 64)
    assert np.all(dis[:, b2] >= 0.3)
    assert dis[:, b2].min() >= 1 / 3 - 1e-6 and dis[:, b2].max() < 0.52  # "a third to a half", 33–51 %
    assert np.all(dis[:, b64] <= 0.11)
    assert dis[:, b64].min() >= 0.07  # instructor note: 7–10 %
    assert np.all(sizes.disagreement["plain"] == 0)  # the control: the same in both modes


def test_test_accuracy_at_batch_2_and_64(sizes):
    b2, b64 = _index(sizes.batch_sizes, 2), _index(sizes.batch_sizes, 64)
    bn, plain = sizes.test_accuracy["bn"], sizes.test_accuracy["plain"]
    assert np.all(bn[:, b2] <= 0.6)
    assert np.all(bn[:, b2] < plain[:, b2])
    assert np.all(bn[:, b64] >= 0.97)
    assert 0.48 < bn[:, b2].min() and bn[:, b64].max() <= 0.99 + 1e-6  # instructor note
    assert 0.74 < plain[:, b2].min() and plain[:, b2].max() < 0.93
    assert 0.96 < plain[:, b64].min() and plain[:, b64].max() < 0.99


# ----------------------------------------------------------------------------------------------
# Section 8: the explorer's instructor note


def test_running_mean_reaches_90_and_99_percent():
    assert 1 - 0.9**22 >= 0.9 > 1 - 0.9**21
    assert 1 - 0.9**44 >= 0.99 > 1 - 0.9**43


def test_explorer_train_mode_standardizes_and_eval_at_zero_batches_is_identity():
    explorer = lab.BatchNormExplorer()
    y, _, _ = explorer.output(1.0, 0.0, "train", 0)
    assert np.allclose(y.mean(0), 0, atol=1e-9) and np.allclose(y.std(0), 1, atol=1e-4)
    y0, _, _ = explorer.output(1.0, 0.0, "eval", 0)
    assert np.allclose(y0, explorer.x, rtol=1e-5)
    assert np.allclose(explorer.locs, [3, -1, 0.5]) and np.allclose(explorer.scales, [2, 0.5, 4])
