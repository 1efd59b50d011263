"""Mean-field variance propagation: the recursion against closed forms, and prediction against
Monte-Carlo networks at fixed seeds.

Monte-Carlo tolerance: 10% per layer. At the settings below the largest per-layer deviation over
seeds 0–5 was 2–5%, so the tolerance is about twice the worst observed error while a missing
factor 1/2 (ReLU) or 2 per layer is off by orders of magnitude.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stabletrain import activations as A
from stabletrain.activations import Activation, derivative_second_moment, second_moment
from stabletrain.variance import (
    measure_activation_variance,
    measure_gradient_variance,
    predicted_activation_variance,
    predicted_gradient_variance,
)

RTOL = 0.10
RELU_POST = 0.5 - 1 / (2 * math.pi)  # Var[relu(z)] / Var[z]: E[relu²] = q/2, E[relu] = √(q/2π)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # the suite runs under pytest-xdist on 2 cores: intra-op threads would only contend
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def assert_within(measured: np.ndarray, predicted: np.ndarray, rtol: float = RTOL) -> None:
    ratio = measured / predicted
    assert np.all(np.abs(ratio - 1) < rtol), f"measured/predicted per layer: {np.round(ratio, 3)}"


# --------------------------------------------------------------------------- the recursion


def test_linear_closed_form() -> None:
    n, w, v, depth = 64, 1.7 / 64, 0.3, 12
    layers = np.arange(1, depth + 1)
    expected = (n * w) ** layers * v  # q_l = (n·w)^l · input_var
    for which in ("pre", "post"):
        predicted = predicted_activation_variance(depth, n, w, "linear", v, which=which)
        np.testing.assert_allclose(predicted, expected, rtol=1e-13)
    g = predicted_gradient_variance(depth, n, w, "linear", v, output_grad_var=2.0)
    np.testing.assert_allclose(g, 2.0 * (n * w) ** (depth - layers), rtol=1e-13)


@pytest.mark.parametrize("gain", [1.0, 2.0, 3.0])
def test_relu_closed_form(gain: float) -> None:
    n, depth, v = 100, 15, 1.5
    w = gain / n
    layers = np.arange(1, depth + 1)
    q = gain * v * (gain / 2) ** (layers - 1)  # q_1 = n·w·v, then ×(n·w/2) per layer
    args = (depth, n, w, "relu", v)
    np.testing.assert_allclose(predicted_activation_variance(*args, which="pre"), q)
    np.testing.assert_allclose(predicted_activation_variance(*args), q * RELU_POST)
    g = (gain / 2) ** (depth - layers)  # Var[g_{l−1}] = n·w·½·Var[g_l]
    np.testing.assert_allclose(predicted_gradient_variance(*args), g)
    np.testing.assert_allclose(predicted_gradient_variance(*args, which="pre"), g / 2)


def test_kaiming_keeps_relu_variance_constant() -> None:
    n = 300
    q = predicted_activation_variance(30, n, 2 / n, "relu", which="pre")
    np.testing.assert_allclose(q, 2.0, rtol=1e-14)  # q_1 = 2·input_var: x itself is not rectified
    np.testing.assert_allclose(predicted_gradient_variance(30, n, 2 / n, "relu"), 1.0, rtol=1e-14)


def test_recursion_uses_second_moment_of_each_layer() -> None:
    n, w, v = 50, 1.3 / 50, 0.8
    q = predicted_activation_variance(6, n, w, "tanh", v, which="pre")
    assert q[0] == pytest.approx(n * w * v, rel=1e-14)
    for i in range(1, 6):
        assert q[i] == pytest.approx(n * w * second_moment("tanh", math.sqrt(q[i - 1])), rel=1e-12)
    post = predicted_activation_variance(6, n, w, "tanh", v)
    np.testing.assert_allclose(post, second_moment("tanh", np.sqrt(q)), rtol=1e-9)
    g = predicted_gradient_variance(6, n, w, "tanh", v, output_grad_var=3.0)
    d2 = derivative_second_moment("tanh", np.sqrt(q))
    assert g[-1] == 3.0
    np.testing.assert_allclose(g[:-1], n * w * d2[1:] * g[1:], rtol=1e-13)


def test_sigmoid_post_variance_subtracts_the_mean() -> None:
    q = predicted_activation_variance(3, 10, 0.1, "sigmoid", which="pre")
    post = predicted_activation_variance(3, 10, 0.1, "sigmoid")
    # E[σ(z)] = ½ exactly, so Var = E[σ²] − ¼
    np.testing.assert_allclose(post, second_moment("sigmoid", np.sqrt(q)) - 0.25, rtol=1e-8)


def test_post_variance_keeps_precision_when_small_against_the_mean() -> None:
    # σ(z) − ½ = z/4 − z³/48 + …, so Var[σ(z)] = q/16 − q²/32 + O(q³) for z ~ N(0, q)
    # (E[σ²] − E[σ]² would lose ~1e−5 of it to rounding at q = 1e−10)
    for q in (1e-6, 1e-10):
        post = predicted_activation_variance(1, 10, 0.1, "sigmoid", input_var=q)
        assert post[0] == pytest.approx(q / 16 - q**2 / 32, rel=1e-9)


def test_tanh_with_small_weights_decays_like_a_linear_net() -> None:
    n = 512
    q = predicted_activation_variance(20, n, 0.5 / n, "tanh", which="pre")
    ratios = q[1:] / q[:-1]
    # tanh(z) ≈ z as q → 0, so the per-layer factor tends to the linear one, n·w = ½
    assert ratios[0] < 0.45 and ratios[-1] == pytest.approx(0.5, rel=1e-4)
    assert np.all(np.diff(ratios) > 0)


def test_custom_activation_and_depth_one() -> None:
    leaky = Activation(
        "leaky_0.3",
        partial(A.leaky_relu, negative_slope=0.3),
        partial(A.leaky_relu_grad, negative_slope=0.3),
        partial(F.leaky_relu, negative_slope=0.3),
    )
    c = (1 + 0.3**2) / 2
    q = predicted_activation_variance(4, 10, 0.2, leaky, which="pre")  # quadrature path
    np.testing.assert_allclose(q, 2.0 * (2.0 * c) ** np.arange(4), rtol=1e-8)
    assert predicted_gradient_variance(1, 10, 0.2, "tanh", output_grad_var=0.7).tolist() == [0.7]
    assert predicted_activation_variance(1, 10, 0.2, "linear", input_var=0.5).tolist() == [1.0]
    assert np.all(predicted_activation_variance(5, 10, 0.2, "tanh", input_var=0.0) == 0.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(depth=0), "depth.*0"),
        (dict(depth=2.0), "depth.*2.0"),
        (dict(depth=True), "depth.*True"),
        (dict(fan_in=0), "fan_in.*0"),
        (dict(weight_var=-1e-3), "weight_var.*-0.001"),
        (dict(weight_var=float("nan")), "weight_var.*nan"),
        (dict(input_var=-2.0), "input_var.*-2.0"),
        (dict(activation="Tanh"), "'Tanh'"),
        (dict(which="both"), "'both'"),
    ],
)
def test_invalid_arguments_raise(kwargs: dict, match: str) -> None:
    args = dict(depth=3, fan_in=8, weight_var=0.1, activation="tanh") | kwargs
    for fn in (predicted_activation_variance, predicted_gradient_variance):
        with pytest.raises(ValueError, match=match):
            fn(**args)
    with pytest.raises(ValueError, match=match):
        measure_activation_variance(**args, n_samples=4)
    with pytest.raises(ValueError, match=match):
        measure_gradient_variance(**args, n_samples=4)


def test_invalid_measurement_and_gradient_arguments_raise() -> None:
    with pytest.raises(ValueError, match="output_grad_var.*-1"):
        predicted_gradient_variance(3, 8, 0.1, output_grad_var=-1)
    with pytest.raises(ValueError, match="output_grad_var.*inf"):
        measure_gradient_variance(3, 8, 0.1, output_grad_var=float("inf"))
    with pytest.raises(ValueError, match="n_samples.*1"):
        measure_activation_variance(3, 8, 0.1, n_samples=1)
    with pytest.raises(ValueError, match="n_networks.*0"):
        measure_gradient_variance(3, 8, 0.1, n_networks=0)
    with pytest.raises(ValueError, match="seed.*-1"):
        measure_activation_variance(3, 8, 0.1, seed=-1)


def test_overflow_is_reported() -> None:
    with pytest.raises(OverflowError, match="layer"):
        predicted_activation_variance(2000, 10, 0.4, "linear")  # ×4 per layer


# --------------------------------------------------------------------------- Monte-Carlo


def test_measurement_is_deterministic_and_seeded() -> None:
    measure = partial(measure_gradient_variance, 4, 32, 1 / 32, "tanh", n_samples=16)
    a = measure(seed=3)
    np.testing.assert_array_equal(a, measure(seed=3))
    assert not np.array_equal(a, measure(seed=4))
    assert a.shape == (4,) and a.dtype == np.float64


# (activation, weight_var·fan_in): a single network of width 512, depth 20, 1000 inputs. Inputs stay
# decorrelated for these, so one network already averages its gain over many input directions.
SINGLE_NETWORK = [
    ("linear", 1.0),  # LeCun / Xavier for a square linear net: constant variance
    ("tanh", 0.5),  # small weights: the signal shrinks towards 0, where tanh ≈ linear
    ("tanh", 1.0),  # Xavier: slow decay from E[tanh²(z)] < Var[z]
]


@pytest.mark.parametrize("activation, gain", SINGLE_NETWORK)
def test_single_network_matches_prediction(activation: str, gain: float) -> None:
    n, depth = 512, 20
    args = (depth, n, gain / n, activation)
    forward = measure_activation_variance(*args, n_samples=1000)
    assert_within(forward, predicted_activation_variance(*args))
    backward = measure_gradient_variance(*args, n_samples=1000)
    assert_within(backward, predicted_gradient_variance(*args))


def test_pre_activation_and_input_scales_match_prediction() -> None:
    n, depth = 512, 12
    args = (depth, n, 1.0 / n, "tanh", 1000, 1, 2.5)  # n_samples=1000, seed=1, input_var=2.5
    kw = dict(which="pre")
    predicted = predicted_activation_variance(depth, n, 1.0 / n, "tanh", 2.5, **kw)
    assert_within(measure_activation_variance(*args, **kw), predicted)
    predicted = predicted_gradient_variance(depth, n, 1.0 / n, "tanh", 2.5, 0.3, **kw)
    assert_within(measure_gradient_variance(*args, output_grad_var=0.3, **kw), predicted)


# ReLU aligns all inputs' activations within a few layers, so one network's variance wanders with
# a log-spread of about √(5·depth/width) (≈ 0.44 at depth 10, width 256): average 128 networks.
RELU = dict(fan_in=256, depth=10, n_samples=16, n_networks=128)


@pytest.fixture(scope="module")
def relu_measured() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    n, depth = RELU["fan_in"], RELU["depth"]
    mc = dict(n_samples=RELU["n_samples"], n_networks=RELU["n_networks"])
    return {
        init: (
            measure_activation_variance(depth, n, gain / n, "relu", which="pre", **mc),
            measure_gradient_variance(depth, n, gain / n, "relu", **mc),
        )
        for init, gain in (("kaiming", 2.0), ("xavier", 1.0))
    }


def test_relu_kaiming_keeps_variance_constant(relu_measured) -> None:
    n, depth = RELU["fan_in"], RELU["depth"]
    forward, backward = relu_measured["kaiming"]
    assert_within(forward, predicted_activation_variance(depth, n, 2 / n, "relu", which="pre"))
    assert_within(forward, np.full(depth, 2.0))
    assert_within(backward, predicted_gradient_variance(depth, n, 2 / n, "relu"))
    assert_within(backward, np.ones(depth))


def test_relu_xavier_halves_variance_and_the_half_matters(relu_measured) -> None:
    n, depth = RELU["fan_in"], RELU["depth"]
    layers = np.arange(1, depth + 1)
    forward, backward = relu_measured["xavier"]
    assert_within(forward, predicted_activation_variance(depth, n, 1 / n, "relu", which="pre"))
    assert_within(forward, 0.5 ** (layers - 1))
    assert_within(backward, predicted_gradient_variance(depth, n, 1 / n, "relu"))
    assert_within(backward, 0.5 ** (depth - layers))
    # a predictor that forgets ReLU's ½ (E[relu(z)²] = q instead of q/2) predicts no decay at all
    forgetful = np.ones(depth)
    assert np.max(np.abs(forward / forgetful - 1)) > 0.9
    assert np.max(np.abs(backward / forgetful - 1)) > 0.9
