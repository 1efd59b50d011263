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


# GELU's tanh approximation (Hendrycks & Gimpel 2016), as in GPT-2 and BERT:
# ½·z·(1 + tanh(u)) with u = √(2/π)·(z + 0.044715·z³). Since 1 + tanh(u) = 2σ(2u), it is z·σ(2u),
# which keeps its left tail where 1 + tanh(u) would cancel to 0. u is computed in float64 with z
# clipped to ±1e100, where σ(2u) and σ′(2u) are already exactly 0 or 1 (no overflow of z³).
_GELU_TANH_C = math.sqrt(2.0 / math.pi)
_GELU_TANH_A = 0.044715
_GELU_TANH_CLIP = 1e100


def _gelu_tanh_inner(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(2u, z·d(2u)/dz) in float64, u = √(2/π)(z + 0.044715 z³), z clipped to ±1e100 (no effect)."""
    zc = np.clip(z.astype(np.float64), -_GELU_TANH_CLIP, _GELU_TANH_CLIP)
    two_u = 2 * _GELU_TANH_C * zc * (1 + _GELU_TANH_A * zc * zc)
    return two_u, 2 * _GELU_TANH_C * zc * (1 + 3 * _GELU_TANH_A * zc * zc)


def gelu_tanh(z: ArrayLike) -> np.ndarray:
    """GELU's tanh approximation ½·z·(1 + tanh(√(2/π)(z + 0.044715 z³))) = z·σ(2u).

    Matches ``torch.nn.functional.gelu(x, approximate='tanh')``; within 5e−4 of the exact GELU.
    """
    z = _as_float_array(z)
    two_u, _ = _gelu_tanh_inner(z)
    return np.asarray(_times_decaying(z, sigmoid(two_u)), dtype=z.dtype)


#: SELU's constants (Klambauer et al. 2017), as ``torch.nn.functional.selu``: the pair that makes
#: mean 0 and variance 1 a fixed point of a layer with zero-mean, unit-norm weights
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def selu(z: ArrayLike) -> np.ndarray:
    """Scaled ELU: λ·z for z > 0, λ·α·(e^z − 1) otherwise (λ ≈ 1.0507, α ≈ 1.6733)."""
    z = _as_float_array(z)
    return np.asarray(SELU_SCALE * elu(z, alpha=SELU_ALPHA), dtype=z.dtype)


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


def gelu_tanh_grad(z: ArrayLike) -> np.ndarray:
    """d/dz z·σ(2u) = σ(2u) + z·σ′(2u)·2u′, with 2u′ = 2√(2/π)(1 + 3·0.044715 z²)."""
    z = _as_float_array(z)
    two_u, z_slope = _gelu_tanh_inner(z)
    return np.asarray(sigmoid(two_u) + _times_decaying(z_slope, sigmoid_grad(two_u)), dtype=z.dtype)


def selu_grad(z: ArrayLike) -> np.ndarray:
    """λ for z > 0, λ·α·e^z for z ≤ 0 (so λα at z = 0, as PyTorch)."""
    z = _as_float_array(z)
    return np.asarray(SELU_SCALE * elu_grad(z, alpha=SELU_ALPHA), dtype=z.dtype)


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
        "gelu_tanh": Activation("gelu_tanh", gelu_tanh, gelu_tanh_grad, partial(F.gelu, approximate="tanh")),
        "selu": Activation("selu", selu, selu_grad, F.selu),
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


# --------------------------------------------------------------------------- lesson 02's graded functions

#: the activations of ``activation_and_grad``, with PyTorch's default parameters (LeakyReLU slope
#: 0.01, ELU α = 1; "gelu" is the exact erf form, "gelu_tanh" its tanh approximation)
GRADED_ACTIVATIONS: tuple[str, ...] = ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "gelu_tanh", "silu")


def activation_and_grad(name: str, z: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """``(f(z), f′(z))`` for an activation of :data:`GRADED_ACTIVATIONS`, shape and dtype of ``z`` kept.

    Derivatives follow PyTorch's autograd, at the kinks too: ReLU′(0) = 0, LeakyReLU′(0) = 0.01,
    ELU′(0) = 1. Both stay finite for any finite z (no overflow of e^{−z} for large |z|).
    """
    if name not in GRADED_ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {', '.join(GRADED_ACTIVATIONS)}")
    act = ACTIVATIONS[name]
    z = _as_float_array(z)
    return act.f(z), act.grad(z)


def _slope_ratio_from_output(activation: str, a: np.ndarray) -> np.ndarray:
    """f′(z) / max f′ as a function of the output a = f(z) (what a forward hook sees)."""
    if activation == "sigmoid":  # σ′ = σ(1 − σ) = a(1 − a), largest 1/4 at a = 1/2
        return 4 * a * (1 - a)
    if activation == "tanh":  # tanh′ = 1 − tanh² = 1 − a², largest 1 at a = 0
        return 1 - a * a
    if activation == "relu":  # 1 where a > 0; a = 0 on the flat side (z ≤ 0)
        return (a > 0).astype(np.float64)
    if activation == "leaky_relu":  # 1 for z > 0, 0.01 for z ≤ 0; a has z's sign
        return np.where(a > 0, 1.0, 0.01)
    if activation == "elu":  # e^z = a + 1 for z ≤ 0 (α = 1), 1 for z > 0
        return np.where(a > 0, 1.0, a + 1)
    raise ValueError(f"saturation_fraction knows sigmoid, tanh, relu, leaky_relu and elu, got {activation!r} "
                     "(GELU and SiLU are not monotonic: their slope is not a function of their output)")


def saturation_fraction(a: ArrayLike | torch.Tensor, activation: str, tol: float = 0.06) -> float:
    """The fraction of the entries of ``a = f(z)`` where the activation is saturated: f′(z) < tol·max f′.

    The slope is computed from the output, as PyTorch's backward of sigmoid and tanh does:
    σ′ = a(1 − a) (largest ¼), tanh′ = 1 − a² (for tol = 0.06: |a| > 0.9695, Karpathy's rule of
    thumb |a| > 0.97), ReLU′ = 0 where a = 0, LeakyReLU′ = 0.01 where a ≤ 0 (below tol: saturated),
    ELU′ = a + 1 where a ≤ 0. ``a``: a numpy array or a tensor of any shape; returns a Python float.
    """
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    values = np.asarray(a, dtype=np.float64)
    if values.size == 0:
        raise ValueError("a has no entries")
    return float(np.mean(_slope_ratio_from_output(activation, values) < tol))


#: the modules whose units ``count_dead_neurons`` and ``recycle_dead_units_`` look at
RELU_FAMILY: tuple[type[torch.nn.Module], ...] = (torch.nn.ReLU, torch.nn.LeakyReLU)


def count_dead_neurons(model: torch.nn.Module, data: torch.Tensor) -> int:
    """The number of dead units of ``model`` on ``data``.

    A unit is one output of an ``nn.ReLU`` or ``nn.LeakyReLU`` module (one column of its
    (N, features) input), and it is dead on ``data`` when its input — the pre-activation — is ≤ 0
    for every example: ReLU then outputs 0 and passes no gradient (ReLU′(0) = 0). Each *call* of
    such a module is a layer of its own (one ``nn.ReLU`` object may serve several layers). The
    forward pass runs without autograd; the hooks are removed afterwards, and the model is
    otherwise untouched.
    """
    alive_per_call: list[torch.Tensor] = []

    def hook(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        z = inputs[0]  # an in-place ReLU has overwritten it with max(z, 0): still > 0 exactly where z > 0
        alive_per_call.append((z > 0).reshape(z.shape[0], -1).any(dim=0))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, RELU_FAMILY)]
    try:
        with torch.no_grad():
            model(data)
    finally:
        for handle in handles:
            handle.remove()
    return int(sum(int((~alive).sum()) for alive in alive_per_call))


def recycle_dead_units_(model: torch.nn.Sequential, data: torch.Tensor,
                        generator: torch.Generator | None = None) -> int:
    """Re-initialise the dead ReLU units of ``model`` in place, keeping the function it computes.

    ``model`` is an ``nn.Sequential`` of ``nn.Linear`` layers, each but the last followed by an
    ``nn.ReLU``. For every hidden unit j of Linear layer l that is dead on ``data`` (its
    pre-activation ≤ 0 for every example), as ReDo does (Sokar et al. 2023):

    - its incoming weights (row j of layer l's weight) are drawn afresh from nn.Linear's default
      U(−1/√fan_in, 1/√fan_in), and its bias is set to 0 — a zero row would leave the
      pre-activation at exactly 0, where ReLU′ = 0, and the unit dead;
    - its outgoing weights (column j of the next Linear's weight) are set to 0, so the network's
      output on any input is unchanged, and training decides how much of the new unit to use.

    The parameters are changed in place (an optimizer holding them keeps working); the last Linear
    (the outputs) is never touched. Returns the number of units recycled.
    """
    modules = list(model)
    linears = [i for i, m in enumerate(modules) if isinstance(m, torch.nn.Linear)]
    dead: dict[int, torch.Tensor] = {}
    with torch.no_grad():
        h = data
        for i, module in enumerate(modules):
            h = module(h)
            if i in linears[:-1]:
                dead[i] = (h <= 0).all(dim=0)  # before the ReLU, which may work in place
        recycled = 0
        for i, nxt in zip(linears[:-1], linears[1:]):
            mask = dead[i]
            k = int(mask.sum())
            if k == 0:
                continue
            layer, following = modules[i], modules[nxt]
            bound = 1.0 / math.sqrt(layer.in_features)
            fresh = torch.rand(k, layer.in_features, generator=generator, dtype=layer.weight.dtype)
            layer.weight[mask] = (2 * fresh - 1) * bound
            if layer.bias is not None:
                layer.bias[mask] = 0.0
            following.weight[:, mask] = 0.0
            recycled += k
    return recycled


def variance_preserving_gain(activation: str, second_moment: Callable[[str, float], float], q: float = 1.0) -> float:
    """The gain g with which a layer keeps its pre-activation variance at q.

    Pre-activations z ~ N(0, q) go through f; the next layer, with weights of variance g²/fan_in,
    produces pre-activations of variance g²·E[f(z)²] (the second moment, not the variance: the
    mean of f(z) counts too). Keeping it at q gives g = √(q / E[f(z)²]), E taken at std √q.
    ``second_moment(activation, sigma)`` computes E[f(z)²] for z ~ N(0, σ²).
    """
    if not (isinstance(q, (int, float)) and math.isfinite(q) and q > 0):
        raise ValueError(f"q must be a positive variance, got {q!r}")
    return math.sqrt(q / float(second_moment(activation, math.sqrt(q))))
