"""Activations, derivatives and Gaussian moments: checked against PyTorch, finite differences,
independent closed forms, Gauss–Hermite quadrature and Monte-Carlo."""

from __future__ import annotations

import dataclasses
import math
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import ndtr

from stabletrain import activations as A
from stabletrain.activations import (
    ACTIVATIONS,
    Activation,
    derivative_second_moment,
    first_moment,
    get_activation,
    second_moment,
)

NAMES = ["linear", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "silu", "gelu_tanh", "selu"]
EXTREMES = [-1000.0, -100.0, -40.0, -10.0, -1e-30, 0.0, 1e-30, 10.0, 40.0, 100.0, 1000.0]
# Agreement with torch's float64 result. A float32 input is compared with the float64 result too:
# torch's float32 gelu loses digits to the cancellation in 1 + erf(z/√2) for z ≲ −3.
TOL = {torch.float64: dict(rtol=1e-12, atol=1e-15), torch.float32: dict(rtol=2e-6, atol=1e-7)}
NP_DTYPE = {torch.float64: np.float64, torch.float32: np.float32}


def inputs(dtype: torch.dtype) -> torch.Tensor:
    rng = np.random.default_rng(0)
    z = np.concatenate([3 * rng.standard_normal(200), EXTREMES])
    if dtype == torch.float32:  # exp overflows float32 just above 88.7
        z = np.concatenate([z, [-89.0, -88.0, 88.0, 89.0]])
    return torch.tensor(z, dtype=dtype)


# --------------------------------------------------------------------------- values and derivatives


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", NAMES)
def test_matches_torch_on_random_and_extreme_inputs(name: str, dtype: torch.dtype) -> None:
    act = ACTIVATIONS[name]
    x = inputs(dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        ours = act.f(x.numpy())
    assert ours.dtype == NP_DTYPE[dtype]
    np.testing.assert_allclose(ours, act.torch_fn(x.double()).numpy(), **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", NAMES)
def test_derivative_matches_torch_autograd(name: str, dtype: torch.dtype) -> None:
    act = ACTIVATIONS[name]
    x = inputs(dtype)
    x64 = x.to(torch.float64, copy=True).requires_grad_(True)
    (expected,) = torch.autograd.grad(act.torch_fn(x64).sum(), x64)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        ours = act.grad(x.numpy())
    assert ours.dtype == NP_DTYPE[dtype]
    tol = dict(TOL[dtype])
    if name == "gelu_tanh":  # torch's ½(1 + tanh u) cancels in the left tail (errors ~1e-15 absolute); ours, σ(2u), does not
        tol["atol"] = max(tol["atol"], 1e-14)
    np.testing.assert_allclose(ours, expected.numpy(), **tol)


@pytest.mark.parametrize("name", NAMES)
def test_derivative_matches_centred_differences(name: str) -> None:
    act = ACTIVATIONS[name]
    rng = np.random.default_rng(1)
    z = 4 * rng.standard_normal(500)
    z = z[np.abs(z) > 1e-3]  # the kinks of relu, leaky_relu and elu sit at 0
    h = 1e-6
    numeric = (act.f(z + h) - act.f(z - h)) / (2 * h)
    # truncation ~h²·|f'''| ≈ 1e-12, rounding ~1e-16·|f|/h ≈ 1e-9 for |f| ≲ 15
    np.testing.assert_allclose(act.grad(z), numeric, rtol=1e-7, atol=1e-8)


def test_derivative_kink_conventions_follow_torch() -> None:
    assert A.relu_grad(0.0) == 0.0
    assert A.leaky_relu_grad(0.0) == 0.01
    assert A.leaky_relu_grad(0.0, negative_slope=0.3) == 0.3
    assert A.elu_grad(0.0, alpha=2.5) == 2.5
    assert A.gelu_grad(0.0) == 0.5
    assert A.silu_grad(0.0) == 0.5
    assert A.sigmoid_grad(0.0) == 0.25
    assert A.tanh_grad(0.0) == 1.0


@pytest.mark.parametrize("slope", [0.2, 0.0, -0.5, 1.5])
def test_leaky_relu_slope_matches_torch(slope: float) -> None:
    x = inputs(torch.float64).requires_grad_(True)
    y = F.leaky_relu(x, negative_slope=slope)
    (g,) = torch.autograd.grad(y.sum(), x)
    z = x.detach().numpy()
    np.testing.assert_allclose(A.leaky_relu(z, slope), y.detach().numpy(), rtol=1e-15)
    np.testing.assert_allclose(A.leaky_relu_grad(z, slope), g.numpy(), rtol=1e-15)


@pytest.mark.parametrize("alpha", [0.5, 2.0])
def test_elu_alpha_matches_torch(alpha: float) -> None:
    x = inputs(torch.float64).requires_grad_(True)
    y = F.elu(x, alpha=alpha)
    (g,) = torch.autograd.grad(y.sum(), x)
    z = x.detach().numpy()
    np.testing.assert_allclose(A.elu(z, alpha=alpha), y.detach().numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(A.elu_grad(z, alpha=alpha), g.numpy(), rtol=1e-12, atol=1e-15)


def test_tails_keep_relative_precision() -> None:
    z = np.array([-10.0, -20.0, -30.0])
    # torch's 1 + erf(z/√2) rounds to 0 here; z·Φ(z) with Φ from scipy's ndtr does not
    np.testing.assert_allclose(A.gelu(z), z * ndtr(z), rtol=1e-12)
    assert np.all(A.gelu(z) < 0)
    # sigmoid, its derivative and sech² where 1 − σ or 1 − tanh² would cancel to 0
    np.testing.assert_allclose(A.sigmoid(-z), 1 / (1 + np.exp(z)), rtol=1e-15)
    np.testing.assert_allclose(A.sigmoid_grad(z), np.exp(z) / (1 + np.exp(z)) ** 2, rtol=1e-14)
    np.testing.assert_allclose(A.tanh_grad(z / 2), 1 / np.cosh(z / 2) ** 2, rtol=1e-13)
    assert A.sigmoid_grad(40.0) > 0 and A.tanh_grad(20.0) > 0


LIMITS = {  # name: (f(-inf), f(+inf), f'(-inf), f'(+inf))
    "linear": (-np.inf, np.inf, 1.0, 1.0),
    "sigmoid": (0.0, 1.0, 0.0, 0.0),
    "tanh": (-1.0, 1.0, 0.0, 0.0),
    "relu": (0.0, np.inf, 0.0, 1.0),
    "leaky_relu": (-np.inf, np.inf, 0.01, 1.0),
    "elu": (-1.0, np.inf, 0.0, 1.0),
    "gelu": (0.0, np.inf, 0.0, 1.0),
    "silu": (0.0, np.inf, 0.0, 1.0),
    "gelu_tanh": (0.0, np.inf, 0.0, 1.0),
    "selu": (-A.SELU_SCALE * A.SELU_ALPHA, np.inf, 0.0, A.SELU_SCALE),
}


@pytest.mark.parametrize("name", NAMES)
def test_infinities_give_limits_and_nan_propagates(name: str) -> None:
    act = ACTIVATIONS[name]
    z = np.array([-np.inf, np.inf, np.nan])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value, grad = act.f(z), act.grad(z)
    lo, hi, dlo, dhi = LIMITS[name]
    np.testing.assert_array_equal(value, [lo, hi, np.nan])
    np.testing.assert_array_equal(grad, [dlo, dhi, np.nan])


@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_dtypes(name: str) -> None:
    act = ACTIVATIONS[name]
    for fn in (act.f, act.grad):
        for dtype in (np.float16, np.float32, np.float64):
            z = np.linspace(-3, 3, 24, dtype=dtype).reshape(2, 3, 4)
            out = fn(z)
            assert out.shape == (2, 3, 4) and out.dtype == dtype
            np.testing.assert_allclose(out, fn(z.astype(np.float64)), rtol=2e-3, atol=2e-3)
        assert fn(np.arange(-2, 3)).dtype == np.float64
        np.testing.assert_array_equal(fn(np.arange(-2, 3)), fn(np.arange(-2.0, 3.0)))
        assert fn(np.array([True, False])).dtype == np.float64
        assert fn(np.empty((0, 3))).shape == (0, 3)
        scalar = fn(0.5)
        assert np.shape(scalar) == () and float(scalar) == float(fn(np.array([0.5]))[0])
        with pytest.raises(TypeError, match="complex128"):
            fn(np.array([1 + 1j]))


def test_linear_returns_a_copy() -> None:
    z = np.array([1.0, -2.0])
    out = A.linear(z)
    out[0] = 5.0
    assert z[0] == 1.0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "0.1", None, True])
def test_bad_parameters_raise(bad: object) -> None:
    for fn in (A.leaky_relu, A.leaky_relu_grad):
        with pytest.raises(ValueError, match="negative_slope"):
            fn(np.zeros(2), negative_slope=bad)
    for fn in (A.elu, A.elu_grad):
        with pytest.raises(ValueError, match="alpha"):
            fn(np.zeros(2), alpha=bad)


# --------------------------------------------------------------------------- registry


def test_registry_contents() -> None:
    assert list(ACTIVATIONS) == NAMES
    for name, act in ACTIVATIONS.items():
        assert act.name == name and get_activation(name) is act
    with pytest.raises(TypeError):
        ACTIVATIONS["swish"] = ACTIVATIONS["silu"]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ACTIVATIONS["relu"].slopes = (1.0, 1.0)  # type: ignore[misc]


def test_get_activation_errors() -> None:
    custom = Activation("mine", np.sin, np.cos, torch.sin)
    assert get_activation(custom) is custom
    with pytest.raises(ValueError, match="'Relu'"):
        get_activation("Relu")
    with pytest.raises(TypeError, match="3"):
        get_activation(3)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- moments: closed forms

SIGMAS = np.array([1e-3, 0.1, 0.7, 1.0, 2.5, 30.0])


def test_piecewise_linear_closed_forms() -> None:
    s = SIGMAS
    np.testing.assert_allclose(second_moment("linear", s), s**2, rtol=1e-15)
    np.testing.assert_allclose(second_moment("relu", s), s**2 / 2, rtol=1e-15)
    np.testing.assert_allclose(second_moment("leaky_relu", s), (1 + 0.01**2) * s**2 / 2, rtol=1e-15)
    np.testing.assert_allclose(derivative_second_moment("relu", s), 0.5, rtol=1e-15)
    np.testing.assert_allclose(derivative_second_moment("leaky_relu", s), 0.50005, rtol=1e-15)
    np.testing.assert_allclose(derivative_second_moment("linear", s), 1.0, rtol=1e-15)
    np.testing.assert_allclose(first_moment("relu", s), s / math.sqrt(2 * math.pi), rtol=1e-15)
    np.testing.assert_allclose(first_moment("linear", s), 0.0, atol=0)


def test_quadrature_reproduces_piecewise_linear_closed_forms() -> None:
    # bare callables and slope-less Activations take the quadrature path, kinks and steps included
    s = np.array([1e-3, 0.5, 2.0, 40.0])
    np.testing.assert_allclose(second_moment(A.relu, s), s**2 / 2, rtol=1e-9)
    np.testing.assert_allclose(first_moment(A.relu, s), s / math.sqrt(2 * math.pi), rtol=1e-9)
    slope = 0.2
    leaky = Activation(
        "leaky_0.2",
        partial(A.leaky_relu, negative_slope=slope),
        partial(A.leaky_relu_grad, negative_slope=slope),
        partial(F.leaky_relu, negative_slope=slope),
    )
    np.testing.assert_allclose(second_moment(leaky, s), (1 + slope**2) * s**2 / 2, rtol=1e-9)
    np.testing.assert_allclose(derivative_second_moment(leaky, s), (1 + slope**2) / 2, rtol=1e-9)
    with_slopes = dataclasses.replace(leaky, slopes=(1.0, slope))
    np.testing.assert_allclose(second_moment(with_slopes, s), second_moment(leaky, s), rtol=1e-9)


def test_relu_closed_form_would_catch_a_wrong_factor() -> None:
    rng = np.random.default_rng(7)
    sigma = 1.3
    sq = A.relu(sigma * rng.standard_normal(1_000_000)) ** 2
    mc, se = sq.mean(), sq.std() / math.sqrt(sq.size)
    assert abs(second_moment("relu", sigma) - mc) < 5 * se
    assert abs(sigma**2 - mc) > 100 * se  # the factor-less σ² is hopelessly rejected


def elu_moments(sigma: float, alpha: float = 1.0) -> tuple[float, float, float]:
    """(E[elu], E[elu²], E[elu′²]) from E[e^{az}·1{z<0}] = e^{a²σ²/2}·Φ(−aσ), z ~ N(0, σ²)."""

    def tail(a: float) -> float:
        return math.exp(a * a * sigma * sigma / 2) * ndtr(-a * sigma)

    mean = sigma / math.sqrt(2 * math.pi) + alpha * (tail(1) - 0.5)
    second = sigma**2 / 2 + alpha**2 * (tail(2) - 2 * tail(1) + 0.5)
    derivative = 0.5 + alpha**2 * tail(2)
    return mean, second, derivative


@pytest.mark.parametrize("sigma", [0.05, 0.5, 1.0, 3.0])
def test_elu_moments_match_closed_form(sigma: float) -> None:
    mean, second, derivative = elu_moments(sigma)
    assert first_moment("elu", sigma) == pytest.approx(mean, rel=1e-9)
    assert second_moment("elu", sigma) == pytest.approx(second, rel=1e-9)
    assert derivative_second_moment("elu", sigma) == pytest.approx(derivative, rel=1e-9)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "gelu", "silu"])
@pytest.mark.parametrize("sigma", [0.3, 1.0])
def test_smooth_moments_match_gauss_hermite(name: str, sigma: float) -> None:
    # 200-node Gauss–Hermite is exact to ~1e-15 for these analytic integrands at σ ≤ 1
    x, w = np.polynomial.hermite_e.hermegauss(200)
    w = w / math.sqrt(2 * math.pi)
    act = ACTIVATIONS[name]
    z = sigma * x
    assert first_moment(name, sigma) == pytest.approx(w @ act.f(z), rel=1e-10, abs=1e-14)
    assert second_moment(name, sigma) == pytest.approx(w @ act.f(z) ** 2, rel=1e-10)
    assert derivative_second_moment(name, sigma) == pytest.approx(w @ act.grad(z) ** 2, rel=1e-10)


def test_symmetry_identities() -> None:
    s = np.array([0.2, 1.0, 5.0])
    np.testing.assert_allclose(first_moment("sigmoid", s), 0.5, rtol=1e-10)  # σ(z) + σ(−z) = 1
    np.testing.assert_allclose(first_moment("tanh", s), 0.0, atol=1e-10)  # odd
    # σ(z)² + σ(−z)² = 1 − 2σ(z)σ(−z) = 1 − 2σ′(z), and z, −z are equally likely:
    # E[σ(z)²] = ½ − E[σ′(z)]
    np.testing.assert_allclose(
        second_moment("sigmoid", s), 0.5 - first_moment(A.sigmoid_grad, s), rtol=1e-9
    )


def test_tanh_small_and_large_sigma_asymptotics() -> None:
    # tanh² = z² − (2/3)z⁴ + (17/45)z⁶ − …, E[z⁴] = 3σ⁴, E[z⁶] = 15σ⁶
    s = 1e-3
    assert second_moment("tanh", s) == pytest.approx(s**2 - 2 * s**4 + 17 / 3 * s**6, rel=1e-9)
    # E[sech²(z)] ≈ φ(0)/σ·∫sech² = 2/(σ√(2π)) for large σ, with an O(σ⁻³) correction
    s = 1000.0
    expected = 1 - 2 / (s * math.sqrt(2 * math.pi))
    assert second_moment("tanh", s) == pytest.approx(expected, rel=1e-8)
    expected = 4 / 3 / (s * math.sqrt(2 * math.pi))  # ∫sech⁴ = 4/3
    assert derivative_second_moment("tanh", s) == pytest.approx(expected, rel=1e-5)


# --------------------------------------------------------------------------- moments: Monte-Carlo


@pytest.mark.parametrize("name", NAMES)
def test_moments_match_monte_carlo(name: str) -> None:
    act = ACTIVATIONS[name]
    x = np.random.default_rng(11).standard_normal(1_000_000)
    for sigma in (0.5, 1.0, 3.0):
        z = sigma * x
        for moment, samples in (
            (first_moment, act.f(z)),
            (second_moment, act.f(z) ** 2),
            (derivative_second_moment, act.grad(z) ** 2),
        ):
            mc, se = samples.mean(), samples.std() / math.sqrt(samples.size)
            # 5 standard errors: a false alarm has probability ~6e-7 per check
            assert abs(moment(name, sigma) - mc) <= 5 * se + 1e-12, (moment.__name__, sigma)


# --------------------------------------------------------------------------- moments: interface


def test_sigma_zero_gives_values_at_zero() -> None:
    expected_f0 = {"sigmoid": 0.5}
    expected_df0 = {"linear": 1.0, "sigmoid": 0.25, "tanh": 1.0, "relu": 0.0, "leaky_relu": 0.01,
                    "elu": 1.0, "gelu": 0.5, "silu": 0.5, "gelu_tanh": 0.5, "selu": A.SELU_SCALE * A.SELU_ALPHA}
    for name in NAMES:
        f0 = expected_f0.get(name, 0.0)
        assert first_moment(name, 0.0) == f0
        assert second_moment(name, 0.0) == f0**2
        assert derivative_second_moment(name, 0.0) == expected_df0[name] ** 2


def test_vectorised_sigma() -> None:
    sigma = np.array([[0.0, 0.4, 1.0], [2.0, 3.0, 0.1]])
    for name in ("tanh", "relu"):
        for moment in (first_moment, second_moment, derivative_second_moment):
            out = moment(name, sigma)
            assert isinstance(out, np.ndarray) and out.shape == (2, 3)
            one_by_one = [[moment(name, float(v)) for v in row] for row in sigma]
            np.testing.assert_array_equal(out, one_by_one)
            scalar = moment(name, 0.4)
            assert isinstance(scalar, float)
    assert second_moment("tanh", [0.5, 1.0]).shape == (2,)
    assert second_moment("gelu", np.empty(0)).shape == (0,)


def test_callable_moments() -> None:
    # E[sin(z)²] = (1 − e^{−2σ²})/2 and E[cos(z)] = e^{−σ²/2}
    s = np.array([0.3, 1.0, 2.0])
    np.testing.assert_allclose(second_moment(np.sin, s), (1 - np.exp(-2 * s**2)) / 2, rtol=1e-9)
    np.testing.assert_allclose(first_moment(np.cos, s), np.exp(-(s**2) / 2), rtol=1e-9)


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_bad_sigma_raises(bad: float) -> None:
    for moment in (first_moment, second_moment, derivative_second_moment):
        with pytest.raises(ValueError, match=str(bad)):
            moment("tanh", bad)
        with pytest.raises(ValueError, match=str(bad)):
            moment("relu", np.array([1.0, bad]))


def test_bad_activation_raises() -> None:
    with pytest.raises(ValueError, match="'softplus'"):
        second_moment("softplus", 1.0)
    with pytest.raises(TypeError):
        second_moment(3, 1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Activation"):
        derivative_second_moment(np.sin, 1.0)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- lesson 02's graded functions


def test_activation_and_grad_is_the_registry_pair() -> None:
    z = np.linspace(-5, 5, 101, dtype=np.float32)
    for name in A.GRADED_ACTIVATIONS:
        f, d = A.activation_and_grad(name, z)
        assert f.dtype == d.dtype == np.float32
        np.testing.assert_array_equal(f, ACTIVATIONS[name].f(z))
        np.testing.assert_array_equal(d, ACTIVATIONS[name].grad(z))
    with pytest.raises(ValueError, match="swish"):
        A.activation_and_grad("swish", z)


def test_saturation_fraction_against_autograd_slopes() -> None:
    """The slope from the output equals autograd's slope from the input."""
    x = torch.randn(4000, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 3
    top = {"sigmoid": 0.25, "tanh": 1.0, "relu": 1.0, "leaky_relu": 1.0, "elu": 1.0}
    for name, biggest in top.items():
        z = x.clone().requires_grad_(True)
        out = ACTIVATIONS[name].torch_fn(z)
        (slope,) = torch.autograd.grad(out.sum(), z)
        want = float((slope < 0.06 * biggest).double().mean())
        assert A.saturation_fraction(out.detach(), name) == pytest.approx(want, abs=1 / 4000)
    with pytest.raises(ValueError, match="monotonic"):
        A.saturation_fraction(np.zeros(3), "gelu")


def test_count_dead_neurons_and_recycling() -> None:
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)  # nn.Linear's own init: the same network whatever ran before
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 5), torch.nn.ReLU(),
                                torch.nn.Linear(5, 2))
    x = torch.randn(40, 3, generator=gen)
    with torch.no_grad():
        model[0].bias[[1, 6]] = -100.0  # dead
        model[2].weight[3] = 0.0
        model[2].bias[3] = 0.0  # pre-activation exactly 0: dead too
    with torch.no_grad():
        z1 = model[0](x)
        z2 = model[2](torch.relu(z1))
    expected = int((z1 <= 0).all(0).sum() + (z2 <= 0).all(0).sum())
    assert expected >= 3 and A.count_dead_neurons(model, x) == expected
    assert not model[1]._forward_hooks and not model[3]._forward_hooks
    before = model(x).detach()
    params = list(model.parameters())
    assert A.recycle_dead_units_(model, x, generator=gen) == expected
    assert all(a is b for a, b in zip(params, model.parameters()))
    torch.testing.assert_close(model(x).detach(), before)
    dead1, dead2 = (z1 <= 0).all(0), (z2 <= 0).all(0)
    kept = ~dead2  # the rows of layer 2's own recycled units are redrawn whole
    assert (model[2].weight[kept][:, dead1] == 0).all() and (model[4].weight[:, dead2] == 0).all()
    assert model[0].bias[dead1].eq(0).all() and model[0].weight[dead1].abs().max() <= 1 / math.sqrt(3)
    assert A.count_dead_neurons(model, x) < expected


def test_variance_preserving_gain() -> None:
    assert A.variance_preserving_gain("relu", second_moment) == pytest.approx(math.sqrt(2))
    assert A.variance_preserving_gain("linear", second_moment, q=3.0) == pytest.approx(1.0)
    assert A.variance_preserving_gain("selu", second_moment) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError):
        A.variance_preserving_gain("relu", second_moment, q=0.0)
