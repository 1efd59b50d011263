"""Every quantitative sentence of lesson 05's prose (and instructor notes), checked on every run.

Each experiment of the lab runs under every variant of ``claims_support.runs``: native kernels on
the lesson's seeds 0–4 and the held-back seeds 5–14, and on seeds 0–4 the avx2 and default CPU
kernels and a 1e-6 jitter of the initial weights (docs/LESSON_STANDARD.md §4). A claim holds on
all of them with a margin; each docstring quotes the sentence and says what was measured over all
runs (30 runs per seed-level statistic: 15 native + 3 × 5). Deterministic facts (closed forms,
float64 arithmetic on fixed inputs, torch conventions) are checked once and say so.

All variants together cost about 55 s of CPU with a cold cache (the subprocesses' torch imports
included); set ``STABLETRAIN_CLAIMS_CACHE`` to keep them between sessions.
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys

import numpy as np
import pytest

import claims_support as claims
import stabletrain
from stabletrain.lessons import batchnorm_lab as lab
from stabletrain.threads import single_thread

# one worker computes this lesson's experiments while the other runs other tests (make test: --dist loadgroup)
pytestmark = pytest.mark.xdist_group("claims-05")

_LAB = "stabletrain.lessons.batchnorm_lab:"
CHANCE = math.log(3)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with single_thread():
        yield


@pytest.fixture(scope="module")
def standardization() -> list[claims.Run]:
    return claims.runs(_LAB + "standardization_experiment")


@pytest.fixture(scope="module")
def sweep() -> list[claims.Run]:
    return claims.runs(_LAB + "sweep_experiment")


@pytest.fixture(scope="module")
def grads() -> list[claims.Run]:
    return claims.runs(_LAB + "gradient_norm_experiment")


@pytest.fixture(scope="module")
def sizes() -> list[claims.Run]:
    return claims.runs(_LAB + "batch_size_experiment")


def _index(values, value):
    return list(values).index(value)


def test_every_experiment_runs_over_the_lessons_seeds_and_every_variant(standardization, sweep, grads, sizes):
    assert lab.SEEDS == claims.LESSON_SEEDS
    for runs in (standardization, sweep, grads, sizes):
        assert [r.variant for r in runs] == list(claims.VARIANTS)
        assert runs[0].seeds == claims.LESSON_SEEDS + claims.HELD_BACK_SEEDS
    for run in standardization:
        assert run.result.raw.shape[0] == len(run.seeds)
    for run in sweep:
        assert run.result.final["bn"].shape[0] == len(run.seeds)
    for run in grads:
        assert all(v.shape[0] == len(run.seeds) for v in run.result.norms.values())
    for run in sizes:
        assert run.result.eval_mode["bn"].shape[0] == len(run.seeds)


# ----------------------------------------------------------------------------------------------
# Section 1: standardizing the inputs


def test_raw_features_keep_more_than_15_percent_after_100_steps(standardization):
    """"With raw features, gradient descent at the step 1/λ_max still holds more than 15 % of its
    initial excess loss after 100 steps on every seed."  Measured over all runs: 23–75 % (seed 14
    lowest, 23.2 %); the instructor note says 23–75 %. Gradient descent starts at w = 0, so the
    jitter variant equals the native one here."""
    for run in standardization:
        kept = run.result.raw[:, 100] / run.result.raw[:, 0]
        assert np.all(kept > 0.15), (run.label, kept)
        assert kept.max() < 0.9, (run.label, kept)  # instructor note: 23–75 %


def test_standardized_excess_loss_below_1e_6_after_10_steps(standardization):
    """"standardized, the excess loss is below 10⁻⁶ after 10 steps and below 10⁻¹² after 20".
    Measured: at most 9.8e-8 after 10 steps (seed 5), 1.2e-13 after 20."""
    for run in standardization:
        assert np.all(run.result.standardized[:, 10] < 1e-6), run.label
        assert np.all(run.result.standardized[:, 20] < 1e-12), run.label


def test_condition_numbers(standardization):
    """"above 10⁹ raw, below 2.5 standardized, on every seed".  Measured: raw 2.5e9–4.0e9,
    standardized 1.48–2.04 (seed 5 the largest). Instructor note: "2.5–4 × 10⁹ raw against
    1.5–2.0 standardized"."""
    for run in standardization:
        raw, std = run.result.condition_raw, run.result.condition_standardized
        assert np.all(raw > 1e9) and np.all(std < 2.5), run.label
        assert 2e9 < raw.min() and raw.max() < 5e9, run.label
        assert 1.2 < std.min(), run.label


def test_slowest_component_shrinks_by_one_minus_one_over_kappa():
    """The derivation: at step 1/lambda_max the error along the smallest eigenvector shrinks by
    1 - 1/kappa, and 2/lambda_max is the stability limit (|1 - eta lambda_max| = 1 there). Float64
    linear algebra on fixed inputs: deterministic, no variants."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 3)) * np.array([1.0, 3.0, 10.0])
    h = a.T @ a / len(a)
    evals, evecs = np.linalg.eigh(h)
    e = evecs[:, 0]  # error along the slowest direction
    after = e - (1 / evals[-1]) * (h @ e)
    assert np.allclose(after, (1 - evals[0] / evals[-1]) * e)
    top = evecs[:, -1]
    assert np.allclose(top - (2 / evals[-1]) * (h @ top), -top)  # 2/lambda_max: the top direction flips sign


# ----------------------------------------------------------------------------------------------
# Section 2: a batch of two (deterministic: float64 on fixed inputs)


def test_batch_of_two_gives_beta_plus_minus_gamma():
    """"training-mode batch norm outputs β ± γ — only which sample is larger survives"."""
    rng = np.random.default_rng(1)
    for _ in range(5):
        pair = rng.normal(0, 5, size=(2, 6))
        gamma, beta = rng.uniform(0.5, 2, 6), rng.normal(size=6)
        out, _ = stabletrain.batchnorm_forward(pair, gamma, beta, np.zeros(6), np.ones(6))
        half = np.abs(pair[0] - pair[1]) / 2
        assert np.allclose(np.abs(out - beta), gamma * half / np.sqrt(half**2 + 1e-5))  # Section 2's formula
        assert np.all(np.sign(out[0] - beta) == np.sign(pair[0] - pair[1]))  # only which one is larger survives


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


def test_without_bn_small_scales_stay_at_chance_on_almost_every_run(sweep):
    """"Without batch norm, weight scale 0.25 stays at the chance loss at every learning rate on
    every seed, and 0.5 on almost every run".  A run "stays at chance" when its final loss is within
    0.03 of ln 3. Measured: scale 0.25 at most 0.014 away on all 30 × 5 runs; scale 0.5 left chance
    on 1 of the 150 runs (native seed 5, lr 0.3: 0.94) and on none of the other 75 × 3 runs. The
    test allows up to 5 % of the runs of each variant at scale 0.5."""
    for run in sweep:
        plain = run.result.final["plain"]
        assert np.all(np.abs(plain[:, _index(run.result.scales, 0.25)] - CHANCE) < 0.03), run.label
        left = np.abs(plain[:, _index(run.result.scales, 0.5)] - CHANCE) >= 0.03
        assert left.mean() <= 0.05, (run.label, left.sum())


def test_without_bn_scale_4_always_diverges(sweep):
    """"at weight scale 4 every run diverges at every learning rate" — on all 30 × 5 runs."""
    for run in sweep:
        assert np.all(np.isinf(run.result.final["plain"][:, _index(run.result.scales, 4.0)])), run.label


def test_without_bn_only_a_narrow_band_trains(sweep):
    """"Without batch norm only a narrow band trains: the Kaiming scale at learning rates up to 0.3,
    and weight scale 2 at the smallest learning rate; every other cell stays at chance or
    diverges."  Measured medians: Kaiming 0.84–0.89, 0.56–0.57, 0.32–0.41, 0.64–0.88 and 1.10–1.11
    at lr 0.01 … 1; scale 2, lr 0.01: 0.47–0.53; every cell outside the band at 1.098 or more (or
    diverged). Instructor note: "median 0.3–0.4 at lr 0.1", "about 0.5 at scale 2, lr 0.01, where
    some seeds diverge (2 of 5 in each 5-seed run, 3 of 15 natively)"."""
    band = {(1.0, lr) for lr in (0.01, 0.03, 0.1, 0.3)} | {(2.0, 0.01)}
    for run in sweep:
        s = run.result
        med = s.median("plain")
        for i, scale in enumerate(s.scales):
            for j, lr in enumerate(s.lrs):
                if (scale, lr) not in band:
                    assert med[i, j] > 1.05, (run.label, scale, lr, med[i, j])
        i1, i2 = _index(s.scales, 1.0), _index(s.scales, 2.0)
        assert med[i1, _index(s.lrs, 0.03)] < 0.7 and med[i1, _index(s.lrs, 0.1)] < 0.5, run.label
        assert 0.25 < med[i1, _index(s.lrs, 0.1)], run.label  # instructor note: 0.3–0.4
        assert 0.35 < med[i2, _index(s.lrs, 0.01)] < 0.65, run.label  # about 0.5
        diverged = np.isinf(s.final["plain"][:, i2, _index(s.lrs, 0.01)]).sum()
        assert 0 < diverged < len(run.seeds), (run.label, diverged)  # some seeds, not all


def test_with_bn_every_cell_trains(sweep):
    """"With batch norm all 25 cells train: every cell's median final loss is below 0.85 (chance is
    1.10), and almost every run ends below 0.8."  Measured: largest median 0.64–0.71; runs above
    0.8: 1 of 125 (default kernels, seed 4 at weight scale 0.25 and lr 1: 0.91), none of the other
    625 (an AVX-512 Intel machine saw 0.82 in that corner too; with the generic kernels exported for
    the whole session, 1 of 125 jittered runs reached 0.83). The test allows 5 % of the runs.
    Instructor note: "the best 0.32–0.37, at lr 0.1 (0.3 with the generic kernels on seeds 0–14);
    the noisiest cell is weight scale 0.25 at lr 1"."""
    for run in sweep:
        s = run.result
        bn, med = s.final["bn"], s.median("bn")
        assert np.all(med < 0.85), (run.label, med.max())
        assert (bn >= 0.8).mean() <= 0.05, (run.label, (bn >= 0.8).sum())
        best = np.unravel_index(med.argmin(), med.shape)
        assert s.lrs[best[1]] in (0.1, 0.3) and 0.25 < med.min() < 0.45, (run.label, best, med.min())


# ----------------------------------------------------------------------------------------------
# Section 7: gradient norms (float64, at initialization)


def test_without_bn_weight_scales_differ_by_eleven_orders(grads):
    """"the gradient norms at weight scales 0.5 and 2 differ by about twelve orders of magnitude
    (more than 10¹¹ at every layer on every seed)".  Measured: 1.0e12 to 4.1e13 over all runs."""
    for run in grads:
        small, large = run.result.norms["plain", 0.5], run.result.norms["plain", 2.0]
        assert np.all(large / small > 1e11), run.label


def test_with_bn_weight_scales_agree_within_a_factor_of_3(grads):
    """"With batch norm, the three weight scales give gradient norms within a factor of 3 of each
    other at every layer, on every seed."  Measured: largest spread 2.22 over all runs."""
    for run in grads:
        stacked = np.stack([run.result.norms["bn", s] for s in (0.5, 1.0, 2.0)])
        spread = stacked.max(axis=0) / stacked.min(axis=0)
        assert np.all(spread < 3), (run.label, spread.max())


def test_with_bn_the_gradient_grows_towards_the_input(grads):
    """"the second layer's gradient is more than 25 times the last hidden layer's on every seed";
    instructor note "30–95×".  Measured: 30.6–93.5 over all runs."""
    for run in grads:
        for scale in (0.5, 1.0, 2.0):
            v = run.result.norms["bn", scale]
            ratio = v[:, 1] / v[:, -2]  # second layer / last hidden layer
            assert np.all(ratio > 25), (run.label, scale, ratio.min())
            assert ratio.max() < 120, (run.label, scale, ratio.max())


# ----------------------------------------------------------------------------------------------
# Section 7: batch size


def test_train_eval_disagreement_at_batch_2_and_64(sizes):
    """"At batch 2, between a fifth and two thirds of the training points (about 40 % on a typical
    seed) change their predicted class … At batch 64 about a tenth (below 15 % on every seed)."
    Measured over all runs: 27–59 % at batch 2 (medians per variant 38–44 %), 7.0–10.2 % at batch 64.
    The control never changes (0 on every run)."""
    for run in sizes:
        s = run.result
        dis = s.disagreement["bn"]
        b2, b64 = _index(s.batch_sizes, 2), _index(s.batch_sizes, 64)
        assert np.all((0.2 < dis[:, b2]) & (dis[:, b2] < 0.7)), (run.label, dis[:, b2])
        assert 0.3 < np.median(dis[:, b2]) < 0.55, run.label
        assert np.all(dis[:, b64] < 0.15) and np.all(dis[:, b64] > 0.03), (run.label, dis[:, b64])
        assert np.all(s.disagreement["plain"] == 0), run.label  # the control: the same in both modes


def test_test_accuracy_at_batch_2_and_64(sizes):
    """"with batch norm it is more than 0.1 below the control's at batch 2 on every seed, and above
    0.95 at batch 64".  Measured: the control leads by 0.16–0.60 at batch 2; BN reaches 0.977–0.993
    at batch 64. Instructor note: "with BN 0.38–0.71 at batch 2 and 0.98–0.99 at batch 64; without
    0.75–0.97 and 0.97–0.98"."""
    for run in sizes:
        s = run.result
        b2, b64 = _index(s.batch_sizes, 2), _index(s.batch_sizes, 64)
        bn, plain = s.test_accuracy["bn"], s.test_accuracy["plain"]
        assert np.all(plain[:, b2] - bn[:, b2] > 0.1), (run.label, (plain - bn)[:, b2])
        assert np.all(bn[:, b64] > 0.95), (run.label, bn[:, b64])
        assert 0.25 < bn[:, b2].min() and bn[:, b2].max() < 0.9, run.label  # instructor note
        assert 0.6 < plain[:, b2].min() and 0.95 < plain[:, b64].min(), run.label


# ----------------------------------------------------------------------------------------------
# Section 8: the explorer's instructor note (deterministic)


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


# ----------------------------------------------------------------------------------------------
# Section 7: what batch 2 does, recalibration


def test_at_batch_2_the_network_learns_almost_nothing(sizes):
    """"At batch 2 … its training-mode loss stays within 0.15 of the chance level ln 3 on every seed,
    while the control reaches below 0.6 … the evaluation-mode loss is hardly better than chance
    (within 0.3 of ln 3)."  Measured over all runs: training mode at most 0.091 from ln 3 (1.007–1.12),
    evaluation mode at most 0.224 (0.875–1.104), the control 0.225–0.478."""
    for run in sizes:
        s = run.result
        b2 = _index(s.batch_sizes, 2)
        assert np.all(np.abs(s.train_mode["bn"][:, b2] - CHANCE) < 0.15), run.label
        assert np.all(np.abs(s.eval_mode["bn"][:, b2] - CHANCE) < 0.3), run.label
        assert np.all(s.eval_mode["plain"][:, b2] < 0.6), run.label


def test_from_batch_8_on_training_mode_loss_lies_above_evaluation_mode(sizes):
    """"From batch 8 on, the training-mode loss lies above the evaluation-mode loss by more than 0.05
    on every seed" (and the figure's alt text). Measured: at least 0.10 over all runs (at batch 4 the
    gap falls to 0.023 on one run; at batch 2 it has either sign)."""
    for run in sizes:
        s = run.result
        b8 = _index(s.batch_sizes, 8)
        gap = s.train_mode["bn"][:, b8:] - s.eval_mode["bn"][:, b8:]
        assert np.all(gap > 0.05), (run.label, gap.min())


def test_recalibration_does_not_rescue_batch_2(sizes):
    """"[the batch-2 networks with recalibrated statistics] stay more than 0.1 below the control's
    [test accuracy] on every seed … At batch 64 recalibration changes little (test accuracy above 0.95
    either way)."  Measured: the control leads by 0.143 or more; recalibrated accuracy at batch 64
    0.963 or more."""
    for run in sizes:
        s = run.result
        b2, b64 = _index(s.batch_sizes, 2), _index(s.batch_sizes, 64)
        assert np.all(s.test_accuracy["plain"][:, b2] - s.recalibrated_accuracy[:, b2] > 0.1), run.label
        assert np.all(s.recalibrated_accuracy[:, b64] > 0.95), run.label


def test_a_pair_keeps_only_its_order_in_training_mode():
    """The cell under the batch-size figure: moving a pair and stretching it leaves training-mode logits
    unchanged (eps = 1e-9; the cell asserts < 1e-3), evaluation mode does not (the cell asserts a
    difference above 0.3). Float64 on fixed inputs, checked on 20 initializations: training mode at
    most 3.2e-6, evaluation mode at least 0.74 (over 40)."""
    from torch import nn
    import torch

    a, b = torch.tensor([1.0, -0.8], dtype=torch.float64), torch.tensor([-0.6, 0.9], dtype=torch.float64)
    centre = torch.tensor([40.0, -25.0], dtype=torch.float64)
    same, far = torch.stack([a, b]), torch.stack([centre + 7 * (a - b) / 2, centre - 7 * (a - b) / 2])
    for seed in range(20):
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Linear(2, 32), nn.BatchNorm1d(32, eps=1e-9), nn.ReLU(), nn.Linear(32, 32),
                            nn.BatchNorm1d(32, eps=1e-9), nn.ReLU(), nn.Linear(32, 3)).double()
        with torch.no_grad():
            assert (net(same) - net(far)).abs().max().item() < 1e-3
            net.eval()
            assert (net(same) - net(far)).abs().max().item() > 0.3


# ----------------------------------------------------------------------------------------------
# Section 7: scale invariance meets SGD


@pytest.fixture(scope="module")
def weight_norms() -> list[claims.Run]:
    return claims.runs(_LAB + "weight_norm_experiment")


def test_the_gradient_is_orthogonal_and_the_norm_only_grows(weight_norms):
    """"The gradient is orthogonal to the weight to within |cos| < 1e-3 at every step, and the
    Pythagoras identity holds to within 1 %. Without weight decay the norm grows at every step on
    every seed — by a few per cent here."  Measured over all runs: |cos| ≤ 2.1e-4, identity error
    ≤ 0.50 %, growth 3.2–4.7 % in 300 steps (tested: 1–10 %)."""
    for run in weight_norms:
        r = run.result
        assert r.max_cosine < 1e-3 and r.max_identity_error < 0.01, run.label
        n = r.norms[0.0]
        assert np.all(np.diff(n, axis=1) > 0), run.label
        growth = n[:, -1] / n[:, 0]
        assert np.all((1.01 < growth) & (growth < 1.1)), (run.label, growth)


def test_weight_decay_keeps_the_effective_step_up(weight_norms):
    """"With λ = 0.02 the norm falls to about 40 % of its start within 300 steps (between 30 % and
    50 % on every seed), so the step its direction sees ends 5 to 9 times larger"; answer 5 repeats
    "5 to 9".  Measured: 0.382–0.414 of the start; effective-step ratio 6.4–7.3."""
    for run in weight_norms:
        r = run.result
        shrink = r.norms[r.weight_decay][:, -1] / r.norms[r.weight_decay][:, 0]
        assert np.all((0.3 < shrink) & (shrink < 0.5)), (run.label, shrink)
        ratio = r.effective_lr(r.weight_decay)[:, -1] / r.effective_lr(0.0)[:, -1]
        assert np.all((5 < ratio) & (ratio < 9)), (run.label, ratio)


def test_small_weights_see_a_larger_step():
    """"weights 4 times smaller see a step 16 times larger" — lr/||W||², arithmetic."""
    assert (1 / 0.25) ** 2 == 16


# ----------------------------------------------------------------------------------------------
# Section 7: batch norm at the end of residual branches


@pytest.fixture(scope="module")
def streams() -> list[claims.Run]:
    return claims.runs(_LAB + "residual_stream_experiment")


def test_residual_stream_grows_by_one_per_block_with_bn_branches(streams):
    """"the variance after 32 blocks is close to 1 + 32 = 33 (within 20 % on every seed), so the last
    branch adds about 3 % of the stream. Without it, each block multiplies the variance by nearly 2
    (between 1.6 and 2.2 on every seed)."  Measured over all runs: Var(x_32)/33 = 0.918–1.095 (so the
    last share 2.8–3.3 %); per-block factor without BN 1.77–1.97."""
    for run in streams:
        r = run.result
        v = r.variance["bn"][:, -1]
        assert np.all(np.abs(v / (r.blocks + 1) - 1) < 0.2), (run.label, v)
        share = r.branch_share()[:, -1]
        assert np.all((0.02 < share) & (share < 0.04)), (run.label, share)
        plain = r.variance["plain"]
        growth = (plain[:, -1] / plain[:, 0]) ** (1 / r.blocks)
        assert np.all((1.6 < growth) & (growth < 2.2)), (run.label, growth)


# ----------------------------------------------------------------------------------------------
# Deterministic facts of the new sections: BatchNorm2d, the running variance of answer 3, freezing


def test_batchnorm2d_is_batchnorm1d_over_flattened_positions():
    """"for x of shape (N, C, H, W) the statistics run over M = N H W values per channel": torch's
    BatchNorm2d equals the course's BatchNorm1d on (N, C, H·W), outputs and running statistics."""
    import torch

    images = 1.0 + 2.0 * torch.randn(8, 3, 5, 6, generator=torch.Generator().manual_seed(0))
    bn2d, bn1d = torch.nn.BatchNorm2d(3), stabletrain.BatchNorm1d(3)
    assert torch.allclose(bn2d(images), bn1d(images.flatten(2)).view_as(images), atol=1e-5)
    assert torch.allclose(bn2d.running_var, bn1d.running_var) and torch.allclose(bn2d.running_mean, bn1d.running_mean)


def test_answer_3_biased_running_variance_is_10_percent_low_in_the_long_run_1_percent_after_one_step():
    """Answer 3: with batches of 10, a running variance fed the biased variance settles 10 % below
    PyTorch's (9/10) and differs by about 1 % after the first step (momentum 0.1, start 1, batch
    variance near 1). Closed form, checked with torch's BatchNorm1d on fixed batches."""
    import torch

    bn = torch.nn.BatchNorm1d(1)
    mine = torch.ones(1)
    g = torch.Generator().manual_seed(0)
    first = None
    for step in range(400):
        x = torch.randn(10, 1, generator=g)
        bn(x)
        mine = 0.9 * mine + 0.1 * x.var(0, correction=0)
        if step == 0:
            first = (bn.running_var - mine).abs().item() / bn.running_var.item()
    assert 0.005 < first < 0.015
    same_batch = torch.nn.BatchNorm1d(1)
    biased = torch.ones(1)
    x = torch.randn(10, 1, generator=g)
    for _ in range(300):  # one batch forever: the ratio is exactly (M - 1) / M once the start is forgotten
        same_batch(x)
        biased = 0.9 * biased + 0.1 * x.var(0, correction=0)
    assert abs((biased / same_batch.running_var).item() - 0.9) < 1e-6


def test_model_train_unfreezes_batchnorm():
    """The freezing cell: model.train() puts every submodule back in training mode (a torch
    convention), so a freeze must follow it; requires_grad is untouched by train()."""
    import torch
    from torch import nn

    model = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4))
    model[1].eval()
    model[1].requires_grad_(False)
    model.train()
    assert model[1].training and not model[1].weight.requires_grad
