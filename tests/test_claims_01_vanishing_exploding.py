"""Every quantitative sentence of lesson 01's prose, checked on the seeds the notebook uses.

Each test quotes the sentence it checks. The experiments are computed once per module (fixtures)
with the notebook's own calls, so a claim here is a claim about what a student sees.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stabletrain.lessons import vanishing_lab as lab
from stabletrain.vanishing import derivative_square_mean, log_grad_slope

LN10 = math.log(10)


@pytest.fixture(scope="module")
def sweep() -> lab.Sweep:
    return lab.gradient_sweep()


@pytest.fixture(scope="module")
def chain() -> dict[str, np.ndarray]:
    return lab.sigmoid_chain(depth=20)


@pytest.fixture(scope="module")
def spectra():
    return lab.jacobian_spectra()


@pytest.fixture(scope="module")
def training() -> lab.TrainingBatch:
    return lab.train_deep_batch(activation="relu", scales=(1.0, math.sqrt(2), 2.0), seeds=5, steps=100)


def _slopes(sweep, depth, activation, scale):
    """Per-seed slope of ln||g|| per layer travelled backward: (ln||g_0|| - ln||g_L||) / L."""
    v = sweep.log_norms[depth, activation, scale]
    return (v[:, 0] - v[:, -1]) / depth


# ---------------------------------------------------------------------------------------------- Section 1


def test_sigmoid_slope_at_most_a_quarter():
    """'σ'(z) ≤ 1/4, with equality only at z = 0'."""
    z = np.linspace(-30, 30, 600_001)
    s = 1 / (1 + np.exp(-z))
    d = s * (1 - s)
    assert d.max() == pytest.approx(0.25, abs=1e-15) and abs(z[d.argmax()]) < 1e-9
    assert np.all(d[np.abs(z) > 1e-3] < 0.25)


def test_gaussian_matrix_norm_about_two_and_bound_about_1e_minus_6(chain):
    """'a random n×n matrix has ‖W‖₂ ≈ 2, so the bound alone allows a shrinkage of 2^{-20} ≈ 10^{-6}'."""
    assert 2.0**-20 == pytest.approx(1e-6, rel=0.05)
    per_layer = chain["bound"] ** (1 / 20) * 4  # geometric mean of ||W_l||_2 per seed
    assert np.all((per_layer > 1.8) & (per_layer < 2.2))
    assert np.all((chain["bound"] > 1e-7) & (chain["bound"] < 1e-5))


def test_twenty_sigmoid_layers_shrink_below_four_to_the_minus_20(chain):
    """'On every seed the gradient at the input is below 4^{-20} ≈ 9×10^{-13} of the gradient at the
    output, though the bound allows about 10^{-6}' (and learning goal 2: 'more than 4^{-20} ≈ 10^{-12}')."""
    assert 0.25**20 == pytest.approx(9.09e-13, rel=1e-3)
    assert np.all(chain["ratio"] < 0.25**20)
    assert np.all(chain["ratio"] <= chain["bound"])


# ---------------------------------------------------------------------------------------------- Section 3


@pytest.mark.parametrize("seed", range(5))
def test_random_walk_mean_and_spread(seed):
    """'With n = 16 the drift is −0.032 per layer ... and the spread after 50 layers is about ±1.3 in
    ln, a factor of e^{1.3} ≈ 3.7 either way'; the measured walk follows the prediction."""
    mu, s2 = lab.random_walk_prediction(width=16, scale=1.0)
    assert mu == pytest.approx(-0.032, abs=5e-4) and mu == pytest.approx(-1 / 32, abs=1e-3)
    assert math.sqrt(50 * s2) == pytest.approx(1.3, abs=0.02) and math.exp(1.3) == pytest.approx(3.7, abs=0.05)
    walks = lab.random_walk(width=16, depth=50, samples=1000, scale=1.0, seed=seed)
    steps = np.diff(walks, axis=1)
    assert abs(steps.mean() - mu) < 4 * math.sqrt(s2 / steps.size)
    assert abs(steps.var() / s2 - 1) < 0.05
    assert walks[:, -1].std() == pytest.approx(math.sqrt(50 * s2), rel=0.1)


def test_random_walk_approximations():
    """'μ ≈ ½ln(nσ_w²) − 1/(2n), s² ≈ 1/(2n)' (n = 16, and wider)."""
    for n in (16, 64, 256):
        mu, s2 = lab.random_walk_prediction(width=n, scale=1.0)
        assert mu == pytest.approx(-1 / (2 * n), rel=0.05)
        assert s2 == pytest.approx(1 / (2 * n), rel=0.1)


# ---------------------------------------------------------------------------------------------- Section 4


def test_derivative_moments_and_flat_scales():
    """'1 for a linear layer, exactly ½ for ReLU ... near 1 and near 1/16 respectively for small q,
    smaller for large q'; 'ReLU is flat at c = √2, tanh near c = 1 for small q, and the sigmoid would
    need c ≈ 4'; the bridge table's '≤ 1/16' for the sigmoid."""
    assert derivative_square_mean("linear", 3.0) == 1.0 and derivative_square_mean("relu", 0.01) == 0.5
    assert derivative_square_mean("tanh", 1e-4) == pytest.approx(1.0, abs=1e-3)
    assert derivative_square_mean("sigmoid", 1e-4) == pytest.approx(1 / 16, rel=1e-3)
    for act in ("tanh", "sigmoid"):
        values = [derivative_square_mean(act, q) for q in (0.01, 0.1, 1.0, 4.0, 16.0)]
        assert np.all(np.diff(values) < 0)  # smaller for larger q
    assert all(derivative_square_mean("sigmoid", q) <= 1 / 16 for q in (1e-6, 0.5, 2.0, 50.0))
    n = 64
    assert log_grad_slope(math.sqrt(2) / 8, n, "relu", 2.0) == pytest.approx(0.0, abs=1e-12)
    assert log_grad_slope(1 / 8, n, "tanh", 1e-6) == pytest.approx(0.0, abs=1e-5)
    assert log_grad_slope(4 / 8, n, "sigmoid", 1e-6) == pytest.approx(0.0, abs=1e-5)


# ---------------------------------------------------------------------------------------------- Section 5


def test_sigmoid_vanishes_at_every_scale(sweep):
    """'The sigmoid's gradient vanishes at every scale tried: at 50 layers, by more than 10 orders of
    magnitude even at the best scale, c = 4.'"""
    medians = {c: np.median(_slopes(sweep, 50, "sigmoid", c)) for c in sweep.scales}
    assert max(medians, key=medians.get) == 4.0
    for c in sweep.scales:
        v = sweep.log_norms[50, "sigmoid", c]
        assert np.all((v[:, 0] - v[:, -1]) / LN10 < -10)


@pytest.mark.parametrize(("activation", "flat"), [("tanh", (1.0, 1.5)), ("relu", (1.5,))])
def test_one_flat_scale_and_geometric_on_either_side(sweep, activation, flat):
    """'Tanh and ReLU each have one scale near which the line is nearly flat — tanh at c = 1 to 1.5,
    ReLU at c = 1.5, next to Kaiming's √2 — and on either side of it the gradient vanishes or explodes'."""
    medians = np.array([np.median(_slopes(sweep, 50, activation, c)) for c in sweep.scales])
    best = sweep.scales[int(np.argmin(np.abs(medians)))]
    assert best in flat
    assert all(abs(np.median(_slopes(sweep, 50, activation, c))) < 0.1 for c in flat)
    assert np.all(np.diff(medians) > 0)  # monotone in c: vanishing below, exploding above
    assert medians[0] < -0.3 and medians[-1] > 0.3


def test_linear_control_flat_within_a_factor_of_three(sweep):
    """'The linear control stays flat within a factor of 3 at every depth.'"""
    for depth in sweep.depths:
        v = sweep.control[depth]
        assert np.all(np.abs(v - v[:, -1:]) < math.log(3))


def test_measured_slopes_match_prediction_within_003(sweep):
    """'Every measured slope lies within 0.03 per layer of the prediction (mean over the seeds), for
    every activation and scale' (the depth-50 figure)."""
    for (depth, act, c), v in sweep.log_norms.items():
        if depth != 50:
            continue
        measured = ((v[:, 0] - v[:, -1]) / 50).mean()
        assert abs(measured - lab.predicted_log_norms(50, act, c)[0] / 50) < 0.03, (act, c)


def test_relu_at_c1_loses_about_7_6_orders_over_50_layers(sweep):
    """'a slope of −0.35 (ReLU at c = 1) is e^{−0.35·50} ≈ 10^{−7.6} after 50 layers'."""
    assert -0.35 * 50 / LN10 == pytest.approx(-7.6, abs=0.05)
    assert np.median(_slopes(sweep, 50, "relu", 1.0)) == pytest.approx(-0.35, abs=0.03)
    assert log_grad_slope(1 / 8, 64, "relu") == pytest.approx(-0.3466, abs=1e-4)


def test_tanh_slope_depends_on_depth(sweep):
    """Question 3: 'For tanh at c = 1 the slope is close to 0 at depth 50 but clearly negative at depth 5'."""
    assert abs(np.median(_slopes(sweep, 50, "tanh", 1.0))) < 0.06
    assert np.all(_slopes(sweep, 5, "tanh", 1.0) < -0.15)


# ---------------------------------------------------------------------------------------------- Section 6


def test_orthogonal_linear_jacobian_is_an_isometry(spectra):
    """'The orthogonal linear network keeps every singular value at 1 (to 10^{-12}) at every depth.'"""
    for (act, c, kind, depth), values in spectra.items():
        if kind == "orthogonal":
            assert np.all(np.abs(values - 1) < 1e-12), depth


def test_gaussian_spectra_spread_and_relu_zeros(spectra):
    """'at 50 layers the largest and smallest singular values of the tanh network differ by more than
    12 orders of magnitude, and ReLU's Jacobian has exact zeros' (zero to rounding)."""
    tanh = spectra["tanh", 1.0, "gaussian", 50]
    assert np.all(np.log10(tanh[:, 0] / np.maximum(tanh[:, -1], 1e-300)) > 12)
    for (act, c, kind, depth), values in spectra.items():
        if act == "relu":
            assert np.all(values[:, -1] < 1e-12 * values[:, 0]), depth


# ---------------------------------------------------------------------------------------------- Section 7


def test_the_three_regimes_of_the_training_experiment(training):
    """'c = 1 (slope −0.35 per layer: vanishing), Kaiming's c = √2 (flat) and c = 2 (slope +0.35)';
    'At c = 1 ... after 100 steps the loss has barely left ln 3. At c = 2 ... every seed diverges to
    NaN. At Kaiming's c = √2 ... the loss of every seed falls below 0.95'; 'both the forward signal
    and the backward gradient shrink by e^{−0.35} per layer' (ReLU at c = 1: q halves per layer)."""
    assert log_grad_slope(1 / 8, 64, "relu") == pytest.approx(-0.35, abs=0.005)
    assert log_grad_slope(2 / 8, 64, "relu") == pytest.approx(0.35, abs=0.005)
    assert log_grad_slope(math.sqrt(2) / 8, 64, "relu") == pytest.approx(0.0, abs=1e-12)
    q = lab.preactivation_variances(10, "relu", 1.0)
    assert np.allclose(np.diff(0.5 * np.log(q)), -0.5 * math.log(2)) and 0.5 * math.log(2) == pytest.approx(0.35, abs=0.01)
    final = {c: training.final_loss(c) for c in training.scales}
    assert np.all(np.abs(final[1.0] - math.log(3)) < 0.05)
    assert np.all(np.isnan(training.losses[2, :, -1]))
    assert np.all(final[math.sqrt(2)] < 0.95)


def test_the_single_seed_loop_numbers():
    """Instructor notes of Section 7: the one-seed loop of the notebook (c = 1, √2, 2)."""
    from stabletrain.data import make_spirals
    from stabletrain.vanishing import grad_norm_monitor

    points, labels = make_spirals(50, classes=3, seed=0)
    results = {}
    with lab.single_thread(), torch.random.fork_rng():
        for c in (1.0, math.sqrt(2), 2.0):
            torch.manual_seed(0)
            sizes = [2] + [32] * 19 + [3]
            layers = []
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
                linear = torch.nn.Linear(a, b)
                torch.nn.init.normal_(linear.weight, std=c / math.sqrt(a))
                torch.nn.init.zeros_(linear.bias)
                layers += [linear, torch.nn.ReLU()] if i < 19 else [linear]
            model = torch.nn.Sequential(*layers)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
            first_flags, losses = None, []
            for _step in range(100):
                optimizer.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(points), labels)
                loss.backward()
                losses.append(loss.item())
                _, flags = grad_norm_monitor(model, low=1e-3, high=1e2)
                first_flags = first_flags or flags
                if not math.isfinite(loss.item()):
                    break
                optimizer.step()
            results[c] = (first_flags, losses)
    assert results[1.0][0].count("vanishing") == 20 and results[1.0][1][-1] > 1.05
    assert results[math.sqrt(2)][0].count("ok") == 20 and results[math.sqrt(2)][1][-1] < 0.95
    assert results[2.0][0].count("exploding") >= 18 and not math.isfinite(results[2.0][1][-1])
