r"""Vanishing and exploding gradients in a deep MLP: the answer key of lesson ``01_vanishing_exploding``.

The network. Weights ``W_l`` of shape ``(n_l, n_{l-1})`` (PyTorch's ``(out, in)``), biases ``b_l``
of shape ``(n_l,)``, an elementwise activation ``f``, a batch of inputs ``x`` of shape ``(B, n_0)``:

.. math::

    h_0 = x, \qquad y_l = h_{l-1} W_l^\top + b_l, \qquad h_l = f(y_l), \qquad l = 1, \dots, L .

``y_l`` is layer l's *pre-activation*, ``h_l`` its *post-activation*. The loss's gradient at the
output, :math:`G = \partial\mathcal L/\partial h_L` of shape ``(B, n_L)``, is given (it is the
upstream gradient; equivalently the loss is :math:`\mathcal L = \sum G \odot h_L`).

Backward, by the chain rule, for :math:`l = L, \dots, 1` with :math:`g_L = G`:

.. math::

    \delta_l = g_l \odot f'(y_l), \qquad
    \frac{\partial \mathcal L}{\partial W_l} = \delta_l^\top h_{l-1}, \qquad
    g_{l-1} = \frac{\partial \mathcal L}{\partial h_{l-1}} = \delta_l W_l .

The per-layer gain. With iid weights of variance :math:`\sigma_w^2`, width n and
:math:`y_l \sim \mathcal N(0, q)`, each backward step multiplies the gradient's squared norm by

.. math:: r = n\,\sigma_w^2\,\mathbb E\!\left[f'(z)^2\right], \quad z \sim \mathcal N(0, q),

so :math:`\ln\|g\|` changes by :math:`\tfrac12\ln r` per layer travelled backward from the output
(:func:`log_grad_slope`): negative means vanishing, positive exploding.

The input-output Jacobian of one input :math:`x` (a vector) is the product

.. math:: J = \frac{\partial h_L}{\partial x} = D_L W_L \cdots D_1 W_1, \qquad D_l = \operatorname{diag} f'(y_l),

and its singular values (:func:`jacobian_singular_values`) say how much every direction of a
gradient is stretched or shrunk on its way back through all the layers.

:func:`grad_norm_monitor` is the same diagnosis on a real ``torch.nn`` model in a training loop.

Activations: ``"linear"``, ``"sigmoid"``, ``"tanh"``, ``"relu"`` (derivative 0 at 0, as PyTorch).
Everything here is float64 numpy, except :func:`grad_norm_monitor`, which reads a torch model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "ACTIVATION_NAMES",
    "activation_and_derivative",
    "mlp_forward",
    "backprop_grad_norms",
    "derivative_square_mean",
    "log_grad_slope",
    "jacobian_singular_values",
    "input_output_jacobian",
    "grad_norm_monitor",
]

ACTIVATION_NAMES: tuple[str, ...] = ("linear", "sigmoid", "tanh", "relu")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def activation_and_derivative(name: str, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(f(z), f'(z))`` for an activation named in :data:`ACTIVATION_NAMES`; ValueError otherwise."""
    z = np.asarray(z, dtype=np.float64)
    if name == "linear":
        return z.copy(), np.ones_like(z)
    if name == "sigmoid":
        s = _sigmoid(z)
        return s, s * (1.0 - s)
    if name == "tanh":
        t = np.tanh(z)
        return t, 1.0 - t**2
    if name == "relu":
        return np.maximum(z, 0.0), (z > 0).astype(np.float64)
    raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATION_NAMES}")


def mlp_forward(weights: Sequence[np.ndarray], biases: Sequence[np.ndarray], x: np.ndarray,
                activation: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Forward pass; returns ``(pre, post)``: ``pre[l-1] = y_l`` and ``post[l] = h_l`` (``post[0] = x``).

    Shapes: ``weights[l-1]`` (n_l, n_{l-1}), ``biases[l-1]`` (n_l,), ``x`` (B, n_0);
    ``y_l``, ``h_l`` (B, n_l). A 1-D ``x`` of shape (n_0,) is one input and stays 1-D.
    """
    if len(weights) != len(biases) or not weights:
        raise ValueError(f"need as many biases as weights (at least one layer), got {len(weights)} and {len(biases)}")
    h = np.asarray(x, dtype=np.float64)
    pre, post = [], [h]
    for W, b in zip(weights, biases):
        y = h @ np.asarray(W, dtype=np.float64).T + np.asarray(b, dtype=np.float64)
        h, _ = activation_and_derivative(activation, y)
        pre.append(y)
        post.append(h)
    return pre, post


def backprop_grad_norms(weights: Sequence[np.ndarray], biases: Sequence[np.ndarray], x: np.ndarray,
                        grad_output: np.ndarray, activation: str) -> tuple[np.ndarray, np.ndarray]:
    r"""Gradient norms at every layer of an MLP, by manual backpropagation (module docstring).

    Args:
        weights: L arrays, ``weights[l-1]`` of shape (n_l, n_{l-1}).
        biases: L arrays, ``biases[l-1]`` of shape (n_l,).
        x: the input batch, (B, n_0).
        grad_output: :math:`G = \partial\mathcal L/\partial h_L`, (B, n_L).
        activation: ``"linear"``, ``"sigmoid"``, ``"tanh"`` or ``"relu"``.

    Returns:
        ``(input_grad_norms, weight_grad_norms)``, two float64 arrays of shape (L,), in layer order
        (entry l-1 belongs to layer l):
        ``input_grad_norms[l-1]`` :math:`= \|\partial\mathcal L/\partial h_{l-1}\|_F`, the gradient
        arriving at layer l's input (entry 0 is the gradient with respect to ``x``);
        ``weight_grad_norms[l-1]`` :math:`= \|\partial\mathcal L/\partial W_l\|_F`.
    """
    pre, post = mlp_forward(weights, biases, x, activation)
    L = len(weights)
    input_norms, weight_norms = np.empty(L), np.empty(L)
    g = np.asarray(grad_output, dtype=np.float64)
    for l in range(L, 0, -1):  # noqa: E741 — l is the layer index of the lesson's formulas
        _, fprime = activation_and_derivative(activation, pre[l - 1])
        delta = g * fprime  # dL/dy_l
        weight_norms[l - 1] = np.linalg.norm(delta.T @ post[l - 1])  # dL/dW_l = delta^T h_{l-1}
        g = delta @ np.asarray(weights[l - 1], dtype=np.float64)  # dL/dh_{l-1}
        input_norms[l - 1] = np.linalg.norm(g)
    return input_norms, weight_norms


def derivative_square_mean(activation: str, preact_var: float) -> float:
    r""":math:`\mathbb E[f'(z)^2]` for :math:`z\sim\mathcal N(0, q)`, ``q = preact_var``.

    Closed forms for linear (1) and ReLU (½ for q > 0; f′(0)² = 0 for q = 0). For sigmoid and
    tanh, the trapezoid rule for :math:`\int f'(z)^2\,\varphi_q(z)\,dz` over
    :math:`|z| \le 14\sqrt q` on a grid fine enough for both the Gaussian and :math:`f'` — for a
    smooth integrand that decays like a Gaussian, the trapezoid rule converges exponentially fast:
    about 1e-12 here. (Gauss–Hermite quadrature with ~100 nodes, a fine grid or ~10⁶ Monte-Carlo
    draws are all within the exercise's tolerance.)
    """
    if activation == "linear":
        return 1.0
    if activation == "relu":
        return 0.5 if preact_var > 0 else 0.0
    activation_and_derivative(activation, np.zeros(1))  # unknown names raise ValueError
    if preact_var == 0:
        return float(activation_and_derivative(activation, np.zeros(1))[1][0] ** 2)
    s = math.sqrt(preact_var)
    h = min(s, 1.0) / 25  # resolves the Gaussian (scale s) and f' (scale 1)
    points = min(int(28 * s / h) | 1, 2_000_001)
    z = np.linspace(-14 * s, 14 * s, points)
    _, fprime = activation_and_derivative(activation, z)
    density = np.exp(-0.5 * (z / s) ** 2) / (s * math.sqrt(2 * math.pi))
    return float(np.trapezoid(fprime**2 * density, z))


def log_grad_slope(weight_std: float, width: int, activation: str, preact_var: float = 1.0) -> float:
    r"""Predicted change of :math:`\ln\|g\|` per layer travelled backward from the output.

    .. math:: s = \tfrac12 \ln\!\left(n\,\sigma_w^2\,\mathbb E[f'(z)^2]\right), \quad z\sim\mathcal N(0, q)

    with ``n = width``, :math:`\sigma_w` = ``weight_std`` and ``q = preact_var``, the variance of
    the layer's pre-activations. Natural log; :math:`s < 0` vanishing, :math:`s > 0` exploding,
    and :math:`\ln\|g_{L-k}\| \approx \ln\|g_L\| + k\,s`. Returns a float (``-inf`` when the gain is 0).
    """
    d2 = derivative_square_mean(activation, float(preact_var))
    gain = width * weight_std**2 * d2
    return 0.5 * math.log(gain) if gain > 0 else -math.inf


def input_output_jacobian(weights: Sequence[np.ndarray], biases: Sequence[np.ndarray], x: np.ndarray,
                          activation: str) -> np.ndarray:
    r""":math:`J = D_L W_L \cdots D_1 W_1` at one input ``x`` of shape (n_0,); returns shape (n_L, n_0)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"x must be one input vector of shape (n_0,), got shape {x.shape}")
    pre, _ = mlp_forward(weights, biases, x, activation)
    J = np.eye(x.shape[0])
    for W, y in zip(weights, pre):
        _, fprime = activation_and_derivative(activation, y)
        J = fprime[:, None] * (np.asarray(W, dtype=np.float64) @ J)  # D_l W_l (product so far)
    return J


def jacobian_singular_values(weights: Sequence[np.ndarray], biases: Sequence[np.ndarray], x: np.ndarray,
                             activation: str) -> np.ndarray:
    r"""Singular values of the input-output Jacobian :math:`\partial h_L/\partial x` at one input.

    Args: as :func:`backprop_grad_norms`, except ``x`` is one input of shape (n_0,).

    Returns:
        float64 array of shape (min(n_L, n_0),), in descending order (as ``numpy.linalg.svd``).
    """
    return np.linalg.svd(input_output_jacobian(weights, biases, x, activation), compute_uv=False)


def grad_norm_monitor(model, low: float = 1e-4, high: float = 1e2) -> tuple[np.ndarray, list[str]]:
    """Per-layer gradient norms of a model after ``loss.backward()``, with a flag per layer.

    Args:
        model: a ``torch.nn.Module``; its layers are its ``torch.nn.Linear`` submodules, at any
            nesting depth, in the order of ``model.named_modules()`` (the order they are applied
            in for an ``nn.Sequential``).
        low, high: the thresholds of the flags.

    Returns:
        ``(norms, flags)``: ``norms`` a float64 array of shape (number of Linear layers,), entry i
        the Frobenius norm of layer i's **weight** gradient ``weight.grad`` (biases not included;
        0.0 when the gradient is None, as for a frozen layer); ``flags`` a list of the same length with
        ``"vanishing"`` where the norm is below ``low``, ``"exploding"`` where it is above ``high`` **or
        not finite** (NaN, inf), else ``"ok"``. (NaN compares False with everything, so a test
        ``n > high`` alone would call it ``"ok"``.) The gradients are only read.
    """
    import torch

    norms = []
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            grad = module.weight.grad
            norms.append(0.0 if grad is None else float(torch.linalg.vector_norm(grad.detach().double())))
    norms_array = np.array(norms, dtype=np.float64)
    flags = ["vanishing" if n < low else "ok" if n <= high else "exploding" for n in norms]
    return norms_array, flags
