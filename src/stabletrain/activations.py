"""Activation functions, their derivatives, and their moments under a Gaussian input.

Every function here is a numpy ufunc-style map: it takes an array of any shape and returns an array
of the same shape and the same floating dtype (float16/32/64; integer and boolean inputs become
float64). They are written to stay finite where the mathematics is finite: ``sigmoid(-1000)`` is
``0`` without an overflow warning, ``gelu(-inf)`` is ``0`` rather than ``nan``. NaN in gives NaN
out, derivatives included.

Conventions follow PyTorch (``torch.sigmoid``, ``torch.tanh``, ``torch.relu``, and
``torch.nn.functional.leaky_relu``, ``elu``, ``gelu``, ``silu``): the derivative of ReLU at 0 is 0,
of LeakyReLU at 0 is ``negative_slope``, of ELU at 0 is ``alpha``; GELU is the exact (erf) form.

The moments ``first_moment`` (E[f(z)]), ``second_moment`` (E[f(z)²]) and
``derivative_second_moment`` (E[f′(z)²]) for z ~ N(0, σ²) drive the variance propagation of
``stabletrain.variance``. They use closed forms for piecewise-linear activations and adaptive
quadrature otherwise.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike
from scipy.integrate import quad
from scipy.special import erfc

_SQRT_2 = math.sqrt(2.0)
_SQRT_2PI = math.sqrt(2.0 * math.pi)


def _as_float_array(z: ArrayLike) -> np.ndarray:
    """``z`` as an ndarray of real floats: floating dtypes kept, bool/integers made float64."""
    arr = np.asarray(z)
    if arr.dtype.kind in "biu":
        return arr.astype(np.float64)
    if arr.dtype.kind != "f":
        raise TypeError(f"expected real numbers, got an array of dtype {arr.dtype}")
    return arr


def _check_real(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    return float(value)


def _times_decaying(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a·b where b decays faster than a grows: b == 0 gives 0 even when a is ±inf (the limit)."""
    with np.errstate(invalid="ignore"):
        product = a * b
    return np.where(b == 0, np.zeros_like(product), product)


def _keep_nan(z: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out`` with NaN wherever ``z`` is NaN (derivatives of NaN are NaN)."""
    return np.where(np.isnan(z), z, out)


# --------------------------------------------------------------------------- activations


def linear(z: ArrayLike) -> np.ndarray:
    """Identity, f(z) = z."""
    return _as_float_array(z).copy()


def sigmoid(z: ArrayLike) -> np.ndarray:
    """Logistic sigmoid σ(z) = 1 / (1 + e^{−z}), in (0, 1).

    Evaluated through e = e^{−|z|} ∈ (0, 1], which never overflows:
    σ(z) = 1/(1 + e) for z ≥ 0 and e/(1 + e) for z < 0.
    """
    z = _as_float_array(z)
    e = np.exp(-np.abs(z))
    return np.asarray(np.where(z >= 0, 1 / (1 + e), e / (1 + e)), dtype=z.dtype)


def tanh(z: ArrayLike) -> np.ndarray:
    """Hyperbolic tangent tanh(z) = (e^z − e^{−z}) / (e^z + e^{−z}) = 2σ(2z) − 1, in (−1, 1)."""
    z = _as_float_array(z)
    return np.asarray(np.tanh(z), dtype=z.dtype)


def relu(z: ArrayLike) -> np.ndarray:
    """Rectified linear unit, max(z, 0)."""
    z = _as_float_array(z)
    return np.asarray(np.maximum(z, 0), dtype=z.dtype)


def leaky_relu(z: ArrayLike, negative_slope: float = 0.01) -> np.ndarray:
    """z for z > 0, negative_slope·z otherwise (``torch.nn.functional.leaky_relu``)."""
    s = _check_real("negative_slope", negative_slope)
    z = _as_float_array(z)
    return np.asarray(np.where(z > 0, z, z * s), dtype=z.dtype)


def elu(z: ArrayLike, alpha: float = 1.0) -> np.ndarray:
    """Exponential linear unit: z for z > 0, α·(e^z − 1) otherwise (via expm1, no overflow)."""
    a = _check_real("alpha", alpha)
    z = _as_float_array(z)
    return np.asarray(np.where(z > 0, z, a * np.expm1(np.minimum(z, 0))), dtype=z.dtype)


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    """Φ(z) = ½·erfc(−z/√2), accurate in both tails (no 1 + erf(z) cancellation)."""
    return 0.5 * erfc(-z / _SQRT_2)


def _normal_pdf(z: np.ndarray) -> np.ndarray:
    """φ(z) = e^{−z²/2} / √(2π)."""
    return np.exp(-0.5 * z * z) / _SQRT_2PI


def gelu(z: ArrayLike) -> np.ndarray:
    """Gaussian error linear unit, exact form: z·Φ(z) = ½·z·(1 + erf(z/√2)).

    Matches ``torch.nn.functional.gelu(x, approximate='none')``; Φ is evaluated with erfc, so the
    left tail (e.g. gelu(−10) ≈ −7.6e−23) keeps its relative precision where 1 + erf underflows.
    """
    z = _as_float_array(z)
    return np.asarray(_times_decaying(z, _normal_cdf(z)), dtype=z.dtype)


def silu(z: ArrayLike) -> np.ndarray:
    """Sigmoid linear unit (swish), z·σ(z)."""
    z = _as_float_array(z)
    return np.asarray(_times_decaying(z, sigmoid(z)), dtype=z.dtype)


# --------------------------------------------------------------------------- derivatives


def linear_grad(z: ArrayLike) -> np.ndarray:
    """d/dz z = 1 (NaN stays NaN)."""
    z = _as_float_array(z)
    return np.asarray(_keep_nan(z, np.ones_like(z)), dtype=z.dtype)


def sigmoid_grad(z: ArrayLike) -> np.ndarray:
    """σ′(z) = σ(z)·(1 − σ(z)) = e/(1 + e)² with e = e^{−|z|} (σ′ is even; no cancellation)."""
    z = _as_float_array(z)
    e = np.exp(-np.abs(z))
    return np.asarray(e / (1 + e) ** 2, dtype=z.dtype)


def tanh_grad(z: ArrayLike) -> np.ndarray:
    """tanh′(z) = 1 − tanh²(z) = sech²(z) = 4e/(1 + e)² with e = e^{−2|z|} (no cancellation)."""
    z = _as_float_array(z)
    e = np.exp(-2 * np.abs(z))
    return np.asarray(4 * e / (1 + e) ** 2, dtype=z.dtype)


def relu_grad(z: ArrayLike) -> np.ndarray:
    """1 for z > 0, 0 for z ≤ 0 (PyTorch's choice at the kink z = 0)."""
    z = _as_float_array(z)
    return np.asarray(np.heaviside(z, 0), dtype=z.dtype)


def leaky_relu_grad(z: ArrayLike, negative_slope: float = 0.01) -> np.ndarray:
    """1 for z > 0, negative_slope for z ≤ 0 (PyTorch's choice at z = 0)."""
    s = _check_real("negative_slope", negative_slope)
    z = _as_float_array(z)
    return np.asarray(_keep_nan(z, np.where(z > 0, 1.0, s)), dtype=z.dtype)


def elu_grad(z: ArrayLike, alpha: float = 1.0) -> np.ndarray:
    """1 for z > 0, α·e^z for z ≤ 0 (so α at z = 0, as PyTorch)."""
    a = _check_real("alpha", alpha)
    z = _as_float_array(z)
    out = np.where(z > 0, 1.0, a * np.exp(np.minimum(z, 0)))
    return np.asarray(_keep_nan(z, out), dtype=z.dtype)


def gelu_grad(z: ArrayLike) -> np.ndarray:
    """d/dz z·Φ(z) = Φ(z) + z·φ(z), φ the standard normal density."""
    z = _as_float_array(z)
    return np.asarray(_normal_cdf(z) + _times_decaying(z, _normal_pdf(z)), dtype=z.dtype)


def silu_grad(z: ArrayLike) -> np.ndarray:
    """d/dz z·σ(z) = σ(z) + z·σ′(z) = σ(z)·(1 + z·(1 − σ(z)))."""
    z = _as_float_array(z)
    return np.asarray(sigmoid(z) + _times_decaying(z, sigmoid_grad(z)), dtype=z.dtype)


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Activation:
    """An activation with its derivative and its PyTorch counterpart.

    Attributes:
        name: the registry key.
        f: numpy function, array → array of the same shape.
        grad: its derivative f′, same signature.
        torch_fn: the PyTorch function computing the same map on tensors.
        slopes: ``(a, b)`` when f is piecewise linear through the origin, f(z) = a·z for z > 0 and
            b·z for z < 0; this unlocks the closed-form moments. ``None`` otherwise.
    """

    name: str
    f: Callable[[ArrayLike], np.ndarray]
    grad: Callable[[ArrayLike], np.ndarray]
    torch_fn: Callable[[torch.Tensor], torch.Tensor]
    slopes: tuple[float, float] | None = None


#: name → Activation, read-only; PyTorch's default parameters (LeakyReLU slope 0.01, ELU α 1).
ACTIVATIONS: Mapping[str, Activation] = MappingProxyType(
    {
        "linear": Activation("linear", linear, linear_grad, torch.nn.Identity(), (1.0, 1.0)),
        "sigmoid": Activation("sigmoid", sigmoid, sigmoid_grad, torch.sigmoid),
        "tanh": Activation("tanh", tanh, tanh_grad, torch.tanh),
        "relu": Activation("relu", relu, relu_grad, torch.relu, (1.0, 0.0)),
        "leaky_relu": Activation(
            "leaky_relu", leaky_relu, leaky_relu_grad, F.leaky_relu, (1.0, 0.01)
        ),
        "elu": Activation("elu", elu, elu_grad, F.elu),
        "gelu": Activation("gelu", gelu, gelu_grad, F.gelu),
        "silu": Activation("silu", silu, silu_grad, F.silu),
    }
)


def get_activation(activation: str | Activation) -> Activation:
    """The registry entry for a name, or an ``Activation`` unchanged; ValueError if unknown."""
    if isinstance(activation, Activation):
        return activation
    if isinstance(activation, str):
        try:
            return ACTIVATIONS[activation]
        except KeyError:
            raise ValueError(
                f"unknown activation {activation!r}; known: {', '.join(ACTIVATIONS)}"
            ) from None
    raise TypeError(
        f"activation must be a name or an Activation, got {type(activation).__name__}: "
        f"{activation!r}"
    )


# --------------------------------------------------------------------------- Gaussian moments

# z = σ·x with x ~ N(0, 1); every built-in activation is smooth on each half-line, so integrating
# (−∞, 0] and [0, ∞) separately keeps quad fast and accurate even for kinked or stepped integrands.
_QUAD_EPSREL = 1e-10


def _gaussian_quad(g: Callable[[float], float], sigma: float) -> float:
    """E[g(z)] for z ~ N(0, σ²), σ > 0: ∫ g(σx)·φ(x) dx by adaptive quadrature on each half-line."""

    def integrand(x: float) -> float:
        weight = math.exp(-0.5 * x * x) / _SQRT_2PI
        return 0.0 if weight == 0.0 else float(g(sigma * x)) * weight

    total = 0.0
    for lo, hi in ((-math.inf, 0.0), (0.0, math.inf)):
        value, _ = quad(integrand, lo, hi, epsabs=0.0, epsrel=_QUAD_EPSREL, limit=200)
        total += value
    return total


def _gaussian_expectation(
    g: Callable[[float], float],
    sigma: ArrayLike,
    closed_form: Callable[[float], float] | None,
) -> float | np.ndarray:
    """E[g(z)], z ~ N(0, σ²), for each σ (σ = 0 gives g(0)); a float for a scalar σ."""
    s = np.asarray(sigma, dtype=np.float64)
    valid = np.isfinite(s) & (s >= 0)
    if not np.all(valid):
        bad = float(s.flat[np.flatnonzero(~valid)[0]])
        raise ValueError(f"sigma must be finite and >= 0, got {bad!r}")
    out = np.empty_like(s)
    for index, value in np.ndenumerate(s):
        if value == 0.0:
            out[index] = float(g(0.0))
        elif closed_form is not None:
            out[index] = closed_form(float(value))
        else:
            out[index] = _gaussian_quad(g, float(value))
    return float(out) if out.ndim == 0 else out


def _function_of(activation: str | Activation | Callable) -> tuple[Callable, Activation | None]:
    """(f, entry) for a name or Activation; (activation, None) for a bare callable."""
    if isinstance(activation, str | Activation):
        entry = get_activation(activation)
        return entry.f, entry
    if callable(activation):
        return activation, None
    raise TypeError(
        f"activation must be a name, an Activation or a callable, got {activation!r}"
    )


# Closed forms for f(z) = a·z (z > 0), b·z (z < 0) with z = σx, x ~ N(0, 1), from the half-normal
# moments E[x·1{x>0}] = 1/√(2π) and E[x²·1{x>0}] = P(x > 0) = ½.
def _piecewise_linear_mean(slopes: tuple[float, float], sigma: float) -> float:
    a, b = slopes
    return (a - b) * sigma / _SQRT_2PI


def _piecewise_linear_second_moment(slopes: tuple[float, float], sigma: float) -> float:
    a, b = slopes
    return 0.5 * (a * a + b * b) * sigma * sigma


def _piecewise_linear_derivative_second_moment(slopes: tuple[float, float], sigma: float) -> float:
    a, b = slopes
    return 0.5 * (a * a + b * b)


def first_moment(activation: str | Activation | Callable, sigma: ArrayLike) -> float | np.ndarray:
    """E[f(z)] for z ~ N(0, σ²).

    Closed form for piecewise-linear f with slopes (a, b): E[f(z)] = (a − b)·σ/√(2π), so ReLU's
    mean is σ/√(2π) and linear's is 0. Other activations and bare callables use quadrature.
    ``sigma``: σ ≥ 0, float or array (vectorised); σ = 0 gives f(0).
    """
    f, entry = _function_of(activation)
    slopes = None if entry is None else entry.slopes
    closed = None if slopes is None else partial(_piecewise_linear_mean, slopes)
    return _gaussian_expectation(f, sigma, closed)


def second_moment(activation: str | Activation | Callable, sigma: ArrayLike) -> float | np.ndarray:
    """E[f(z)²] for z ~ N(0, σ²): the second moment a layer hands to the next one.

    Closed forms, for f(z) = a·z (z > 0), b·z (z < 0): each half-line carries half of
    E[z²] = σ², so E[f(z)²] = (a² + b²)·σ²/2, giving linear σ², ReLU σ²/2 and LeakyReLU
    (1 + s²)·σ²/2. tanh, sigmoid, ELU, GELU, SiLU and bare callables use adaptive quadrature
    of ∫ f(σx)²·φ(x) dx on each half-line (relative precision ~1e−10, a few ms per σ).

    Args:
        activation: a name in ``ACTIVATIONS``, an ``Activation``, or a callable f (quadrature).
        sigma: the standard deviation σ ≥ 0, float or array of any shape; σ = 0 gives f(0)².

    Returns:
        a float for a scalar σ, else an array shaped like ``sigma``.
    """
    f, entry = _function_of(activation)
    slopes = None if entry is None else entry.slopes
    closed = None if slopes is None else partial(_piecewise_linear_second_moment, slopes)
    return _gaussian_expectation(lambda z: f(z) ** 2, sigma, closed)


def derivative_second_moment(activation: str | Activation, sigma: ArrayLike) -> float | np.ndarray:
    """E[f′(z)²] for z ~ N(0, σ²): the factor by which a layer scales the backward variance.

    Closed form for piecewise-linear f with slopes (a, b): (a² + b²)/2 for σ > 0 (each slope
    holds on half the mass), so 1 for linear, ½ for ReLU, (1 + s²)/2 for LeakyReLU. Otherwise
    quadrature of ∫ f′(σx)²·φ(x) dx. σ = 0 gives f′(0)² (0 for ReLU, by its convention at the
    kink). Needs the derivative, so ``activation`` is a name or an ``Activation``.
    """
    entry = get_activation(activation)
    closed = (
        None
        if entry.slopes is None
        else partial(_piecewise_linear_derivative_second_moment, entry.slopes)
    )
    return _gaussian_expectation(lambda z: entry.grad(z) ** 2, sigma, closed)
