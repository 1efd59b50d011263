r"""Mean-field variance propagation through a deep MLP at initialization, predicted and measured.

The network. Width n = ``fan_in`` in every layer, no biases, depth L:

    h_0 = x,            entries iid, mean 0, variance ``input_var``
    y_l = W_l h_{l−1},  W_l of shape (n, n), entries iid, mean 0, variance ``weight_var``
    h_l = f(y_l),       l = 1..L

y_l is the pre-activation, h_l the post-activation (activation) of layer l.

Forward. An entry of y_l is y = Σ_j w_j·h_j, a sum of n independent products with E[w_j] = 0, so

    Var[y] = Σ_j E[w_j²]·E[h_j²] = n·Var[w]·E[h²].

It is the *second moment* E[h²] that enters, not Var[h]: with zero-mean weights the mean of h
does not cancel (He et al. 2015, §2.2). By the central limit theorem y_l is close to N(0, q_l),
and the pre-activation variances follow the recursion

    q_1 = n·weight_var·input_var                      (x plays the role of h_0)
    q_l = n·weight_var·E[f(z)²],  z ~ N(0, q_{l−1})   (l ≥ 2).

- linear: E[z²] = q, so q_l = (n·weight_var)^l·input_var: constant iff weight_var = 1/n
  (LeCun; Xavier's 2/(fan_in + fan_out) for a square layer), exploding or vanishing geometrically
  otherwise.
- ReLU zeroes the negative half of a symmetric z and keeps the positive half's second moment:
  E[relu(z)²] = q/2. So q_l = (n·weight_var/2)·q_{l−1}: Xavier's 1/n halves the variance at
  every layer, and Kaiming's weight_var = 2/fan_in is exactly what keeps it constant.
- tanh ≈ z near 0: with small weights the variance vanishes as for a linear net; at Xavier scale
  E[tanh(z)²] < q makes it shrink slowly.

The post-activation variance is Var[h_l] = E[f(z)²] − E[f(z)]², z ~ N(0, q_l) — what ``h.var()``
measures. It equals the second moment only for a zero-mean f (linear, tanh); for ReLU it is
q_l·(1/2 − 1/(2π)).

Backward. With g_l = ∂L/∂h_l, the chain rule gives δ_l = ∂L/∂y_l = g_l ⊙ f′(y_l) and
g_{l−1} = W_lᵀ δ_l: each entry of g_{l−1} sums fan_out = n products W_ij·δ_i. Treating the
backward W_l as independent of the forward quantities (exact at infinite width for Gaussian
weights, the usual "gradient independence" assumption),

    Var[δ_l]     = E[f′(y_l)²]·Var[g_l]
    Var[g_{l−1}] = n·weight_var·E[f′(y_l)²]·Var[g_l],  y_l ~ N(0, q_l).

For ReLU E[f′²] = 1/2 again, so weight_var = 2/fan_out (Kaiming, mode="fan_out") keeps the
gradient variance constant; here fan_out = fan_in = n.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from .activations import (
    Activation,
    derivative_second_moment,
    first_moment,
    get_activation,
    second_moment,
)

_WHICH = ("post", "pre")


def _check_int(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_variance(name: str, value: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_which(which: str) -> str:
    if which not in _WHICH:
        raise ValueError(f"which must be 'post' or 'pre', got {which!r}")
    return which


def _forward(
    depth: int, fan_in: int, weight_var: float, act: Activation, input_var: float
) -> tuple[np.ndarray, np.ndarray]:
    """(q, m2): q[l−1] = Var[y_l] and m2[l−1] = E[f(y_l)²] for l = 1..depth."""
    gain = fan_in * weight_var
    q = np.empty(depth)
    m2 = np.empty(depth)
    incoming = input_var  # E[h_0²]
    for i in range(depth):
        q[i] = gain * incoming  # Python floats: overflow gives inf, caught below
        if not math.isfinite(q[i]):
            raise OverflowError(
                f"predicted pre-activation variance overflows float64 at layer {i + 1} "
                f"(fan_in·weight_var = {gain!r}); use fewer layers or smaller weights"
            )
        m2[i] = incoming = float(second_moment(act, math.sqrt(q[i])))
    return q, m2


def predicted_activation_variance(
    depth: int,
    fan_in: int,
    weight_var: float,
    activation: str | Activation = "linear",
    input_var: float = 1.0,
    which: str = "post",
) -> np.ndarray:
    """Per-layer variance of a deep MLP's activations, by the mean-field recursion (module doc).

    Args:
        depth: number of layers L ≥ 1.
        fan_in: width n ≥ 1 of every layer.
        weight_var: Var[W_ij] ≥ 0 (Kaiming for ReLU: 2/fan_in; Xavier for a square layer: 1/fan_in).
        activation: a name in ``stabletrain.activations.ACTIVATIONS`` or an ``Activation``.
        input_var: variance of the iid zero-mean input entries (≥ 0).
        which: ``"post"`` (default) for Var[h_l] = E[f(z)²] − E[f(z)]², the activations' variance;
            ``"pre"`` for q_l = Var[y_l], the pre-activations' variance.

    Returns:
        float64 array of shape (depth,); entry l − 1 belongs to layer l = 1..depth.

    Raises:
        ValueError: depth or fan_in < 1, a negative or non-finite variance, an unknown activation
            name or ``which``.
        OverflowError: the predicted variance exceeds float64.
    """
    depth = _check_int("depth", depth, 1)
    fan_in = _check_int("fan_in", fan_in, 1)
    weight_var = _check_variance("weight_var", weight_var)
    input_var = _check_variance("input_var", input_var)
    which = _check_which(which)
    act = get_activation(activation)
    q, m2 = _forward(depth, fan_in, weight_var, act, input_var)
    if which == "pre":
        return q
    sigma = np.sqrt(q)
    mean = np.asarray(first_moment(act, sigma), dtype=np.float64)
    if act.slopes is not None:  # closed forms: Var = E[f²] − E[f]², exact
        return m2 - mean**2
    # E[(f − μ)²] by quadrature: E[f²] − μ² would cancel catastrophically when Var ≪ μ²
    # (a sigmoid fed a small signal: μ = ½, Var ≈ q/16)
    return np.array(
        [second_moment(lambda z, m=m: act.f(z) - m, s) for s, m in zip(sigma, mean, strict=True)]
    )


def predicted_gradient_variance(
    depth: int,
    fan_in: int,
    weight_var: float,
    activation: str | Activation = "linear",
    input_var: float = 1.0,
    output_grad_var: float = 1.0,
    which: str = "post",
) -> np.ndarray:
    """Per-layer variance of the backpropagated gradient, by the mean-field recursion (module doc).

    The loss gradient at the output, ∂L/∂h_L, has iid zero-mean entries of variance
    ``output_grad_var``; going backward, Var[g_{l−1}] = n·weight_var·E[f′(y_l)²]·Var[g_l] with
    y_l ~ N(0, q_l) from the forward recursion.

    Args:
        depth, fan_in, weight_var, activation, input_var: as ``predicted_activation_variance``.
        output_grad_var: Var[∂L/∂h_L] ≥ 0.
        which: ``"post"`` (default) for Var[∂L/∂h_l] (so the last entry is ``output_grad_var``);
            ``"pre"`` for Var[∂L/∂y_l] = E[f′(y_l)²]·Var[∂L/∂h_l], the δ_l that multiplies
            h_{l−1} in the weight gradient ∂L/∂W_l = δ_l h_{l−1}ᵀ.

    Returns:
        float64 array of shape (depth,); entry l − 1 belongs to layer l = 1..depth, so the array
        reads in forward order and the gradient flows from its end to its start.

    Raises:
        ValueError, OverflowError: as ``predicted_activation_variance``.
    """
    depth = _check_int("depth", depth, 1)
    fan_in = _check_int("fan_in", fan_in, 1)
    weight_var = _check_variance("weight_var", weight_var)
    input_var = _check_variance("input_var", input_var)
    output_grad_var = _check_variance("output_grad_var", output_grad_var)
    which = _check_which(which)
    act = get_activation(activation)
    q, _ = _forward(depth, fan_in, weight_var, act, input_var)
    d2 = np.asarray(derivative_second_moment(act, np.sqrt(q)), dtype=np.float64)
    g = np.empty(depth)
    g[-1] = output_grad_var
    for i in range(depth - 1, 0, -1):
        g[i - 1] = fan_in * weight_var * d2[i] * g[i]
    return g if which == "post" else d2 * g


def _measure(
    depth: int,
    fan_in: int,
    weight_var: float,
    activation: str | Activation,
    n_samples: int,
    n_networks: int,
    seed: int,
    input_var: float,
    output_grad_var: float | None,
    which: str,
) -> np.ndarray:
    """Per-layer variances averaged over ``n_networks`` random networks, shape (depth,).

    Each network draws, in order from one ``torch.Generator().manual_seed(seed)``: inputs x of
    shape (n_samples, fan_in), W_1..W_L, and, when ``output_grad_var`` is not None, an output
    gradient ∂L/∂h_L that autograd backpropagates. Samples are drawn in float32 and the network
    runs in float64 (deep vanishing signals stay above underflow) with the activation's
    PyTorch function; a layer's variance is pooled over all n_samples × fan_in entries of the
    tensor ``which`` names (h_l or y_l, or their gradients when ``output_grad_var`` is given).
    """
    depth = _check_int("depth", depth, 1)
    fan_in = _check_int("fan_in", fan_in, 1)
    weight_var = _check_variance("weight_var", weight_var)
    act = get_activation(activation)
    n_samples = _check_int("n_samples", n_samples, 2)
    n_networks = _check_int("n_networks", n_networks, 1)
    seed = _check_int("seed", seed, 0)
    input_var = _check_variance("input_var", input_var)
    backward = output_grad_var is not None
    if backward:
        output_grad_var = _check_variance("output_grad_var", output_grad_var)
    which = _check_which(which)

    gen = torch.Generator().manual_seed(seed)

    def gaussian(*shape: int, var: float) -> torch.Tensor:
        # float32 sampling is ~5x faster than float64 and statistically indistinguishable here
        sample = torch.randn(*shape, generator=gen, dtype=torch.float32)
        return sample.to(torch.float64) * math.sqrt(var)

    totals = np.zeros(depth)
    for _ in range(n_networks):
        h = gaussian(n_samples, fan_in, var=input_var).requires_grad_(backward)
        weights = [gaussian(fan_in, fan_in, var=weight_var) for _ in range(depth)]
        tensors: list[torch.Tensor] = []
        with torch.set_grad_enabled(backward):
            for w in weights:
                y = h @ w.T
                h = act.torch_fn(y)
                tensors.append(h if which == "post" else y)
                if backward:
                    tensors[-1].retain_grad()
            if backward:
                h.backward(gaussian(*h.shape, var=output_grad_var))
        totals += [(t.grad if backward else t).var().item() for t in tensors]
    return totals / n_networks


def measure_activation_variance(
    depth: int,
    fan_in: int,
    weight_var: float,
    activation: str | Activation = "linear",
    n_samples: int = 1000,
    seed: int = 0,
    input_var: float = 1.0,
    which: str = "post",
    n_networks: int = 1,
) -> np.ndarray:
    """Monte-Carlo counterpart of ``predicted_activation_variance``, shape (depth,).

    Samples a network with Gaussian weights of variance ``weight_var`` and ``n_samples`` Gaussian
    inputs of variance ``input_var``, and returns for each layer the variance of the n_samples ×
    fan_in entries of h_l (``which="post"``) or y_l (``"pre"``), averaged over ``n_networks``
    independent networks. Deterministic given ``seed``.

    One network is not the mean field: its per-layer gain fluctuates by O(1/√fan_in), and these
    fluctuations compound with depth. Where the inputs stay decorrelated (linear, tanh) the
    average over inputs smooths them out; ReLU makes all inputs' activations nearly parallel within
    a few layers, so one network's log-variance wanders with a spread of about √(5·depth/fan_in)
    (Hanin & Rolnick 2018) and matching the prediction takes an average over ``n_networks``.
    """
    return _measure(
        depth, fan_in, weight_var, activation, n_samples, n_networks, seed, input_var, None, which
    )


def measure_gradient_variance(
    depth: int,
    fan_in: int,
    weight_var: float,
    activation: str | Activation = "linear",
    n_samples: int = 1000,
    seed: int = 0,
    input_var: float = 1.0,
    output_grad_var: float = 1.0,
    which: str = "post",
    n_networks: int = 1,
) -> np.ndarray:
    """Monte-Carlo counterpart of ``predicted_gradient_variance``, shape (depth,).

    The networks and inputs of ``measure_activation_variance`` (same ``seed``, same draws), then a
    Gaussian output gradient ∂L/∂h_L of variance ``output_grad_var`` backpropagated by autograd.
    Returns, per layer, the variance of the entries of ∂L/∂h_l (``which="post"``) or ∂L/∂y_l
    (``"pre"``), averaged over ``n_networks`` networks.
    """
    return _measure(
        depth,
        fan_in,
        weight_var,
        activation,
        n_samples,
        n_networks,
        seed,
        input_var,
        _check_variance("output_grad_var", output_grad_var),
        which,
    )


def _moments(nonlinearity: str, q: float, param: float | None) -> tuple[float, float, float]:
    """(E[f(z)²], E[f(z)], E[f′(z)²]) for z ~ N(0, q): closed forms for linear, relu and leaky_relu."""
    if nonlinearity == "linear":
        return q, 0.0, 1.0
    if nonlinearity == "relu":
        s = 0.0
    elif nonlinearity == "leaky_relu":
        s = 0.01 if param is None else float(param)
    else:
        raise ValueError(f"nonlinearity must be linear, relu or leaky_relu, got {nonlinearity!r}")
    # f(z) = z for z > 0, s·z below: each half carries half of E[z²], and E[z⁺] = √(q/2π)
    return (1 + s * s) / 2 * q, (1 - s) * math.sqrt(q / (2 * math.pi)), (1 + s * s) / 2


def predict_layer_stds(widths, weight_vars, nonlinearity: str = "relu", param: float | None = None,
                       input_var: float = 1.0, output_grad_var: float = 1.0) -> tuple[list[float], list[float]]:
    """The mean-field std of every layer's activations and of their gradients, for any widths.

    The network: h_0 = x with iid zero-mean entries of variance ``input_var``, and for
    l = 1..L, y_l = W_l h_{l−1}, h_l = f(y_l), W_l of shape (widths[l], widths[l−1]) with iid
    zero-mean entries of variance ``weight_vars[l−1]``, no biases. Forward, each entry of y_l sums
    fan_in = widths[l−1] products, so q_l = Var[y_l] = widths[l−1]·Var[w_l]·E[h_{l−1}²] — the
    **second moment** of the layer's input (E[h_0²] = input_var) — and Var[h_l] = E[f(y)²] − E[f(y)]².
    Backward from ∂L/∂h_L with iid entries of variance ``output_grad_var``: each entry of
    ∂L/∂h_{l−1} = W_lᵀ(f′(y_l) ⊙ ∂L/∂h_l) sums fan_out = widths[l] products, so
    Var[∂L/∂h_{l−1}] = widths[l]·Var[w_l]·E[f′(y_l)²]·Var[∂L/∂h_l].

    Args:
        widths: [n_0, n_1, ..., n_L] (input size, then every layer's width); L ≥ 1.
        weight_vars: L variances, Var[w_l] for l = 1..L.
        nonlinearity: "linear", "relu" or "leaky_relu" (negative slope ``param``, 0.01 when None).

    Returns:
        (act_std, grad_std): two lists of L floats, entry l − 1 for layer l: the std of h_l and
        the std of ∂L/∂h_l (so grad_std[-1] = √output_grad_var).
    """
    widths, weight_vars = [int(n) for n in widths], [float(v) for v in weight_vars]
    if len(widths) < 2 or len(weight_vars) != len(widths) - 1:
        raise ValueError(f"need widths [n_0, ..., n_L] and L weight variances; got {len(widths)} widths and "
                         f"{len(weight_vars)} variances")
    depth = len(weight_vars)
    second, act_std, slope2 = float(input_var), [], []
    for layer in range(depth):
        q = widths[layer] * weight_vars[layer] * second
        second, mean, d2 = _moments(nonlinearity, q, param)
        act_std.append(math.sqrt(max(second - mean * mean, 0.0)))
        slope2.append(d2)
    grad_var = [0.0] * depth
    grad_var[-1] = float(output_grad_var)
    for layer in range(depth - 1, 0, -1):  # layer is the 0-based index of W_{layer+1}
        grad_var[layer - 1] = widths[layer + 1] * weight_vars[layer] * slope2[layer] * grad_var[layer]
    return act_std, [math.sqrt(v) for v in grad_var]
