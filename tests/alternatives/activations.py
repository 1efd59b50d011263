"""Correct implementations of lesson 02's exercises written differently from the reference.

They use other formulas, libraries, loop orders and containers, as students' correct answers do;
the exercise checks must accept every one of them.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.integrate import quad
from scipy.special import erf, expit
from torch import nn

_C = math.sqrt(2 / math.pi)


def activation_and_grad_textbook(name, z):
    """The formulas of the lesson's table, one branch each, the slopes from the outputs."""
    z = np.asarray(z)
    dt = z.dtype
    if name == "sigmoid":
        s = expit(z)
        return s, (s * (1 - s)).astype(dt)
    if name == "tanh":
        t = np.tanh(z)
        return t, (1 - t * t).astype(dt)
    if name == "relu":
        return np.maximum(z, 0), (z > 0).astype(dt)
    if name == "leaky_relu":
        return np.where(z > 0, z, z * dt.type(0.01)), np.where(z > 0, 1, 0.01).astype(dt)
    if name == "elu":
        neg = np.minimum(z, 0)
        return np.where(z > 0, z, np.expm1(neg)), np.where(z > 0, 1, np.exp(neg)).astype(dt)
    if name == "gelu":
        zd = z.astype(np.float64)
        phi = 0.5 * (1 + erf(zd / math.sqrt(2)))
        return (zd * phi).astype(dt), (phi + zd * np.exp(-zd * zd / 2) / math.sqrt(2 * math.pi)).astype(dt)
    if name == "gelu_tanh":
        zd = np.clip(z.astype(np.float64), -1e6, 1e6)
        t = np.tanh(_C * (zd + 0.044715 * zd ** 3))
        f = 0.5 * z.astype(np.float64) * (1 + t)
        slope = 0.5 * (1 + t) + 0.5 * zd * (1 - t * t) * _C * (1 + 3 * 0.044715 * zd * zd)
        return f.astype(dt), slope.astype(dt)
    if name == "silu":
        s = expit(z)
        return z * s, (s * (1 + z * (1 - s))).astype(dt)
    raise ValueError(f"unknown activation {name!r}")


def activation_and_grad_torch(name, z):
    """Everything in float64 torch, cast back: torch.where, torch.special, and the sigmoid written out."""
    known = ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "gelu_tanh", "silu")
    if name not in known:
        raise ValueError(f"{name!r} is not one of {known}")
    dtype = np.asarray(z).dtype
    x = torch.from_numpy(np.asarray(z, dtype=np.float64))
    e = torch.exp(-x.abs())
    sig = torch.where(x >= 0, 1 / (1 + e), e / (1 + e))
    if name == "sigmoid":
        f, d = sig, sig * (1 - sig)
    elif name == "tanh":
        f = torch.tanh(x)
        d = 1 - f * f
    elif name == "relu":
        f, d = x.clamp(min=0), (x > 0).double()
    elif name == "leaky_relu":
        f, d = torch.where(x > 0, x, 0.01 * x), torch.where(x > 0, torch.ones_like(x), torch.full_like(x, 0.01))
    elif name == "elu":
        f, d = torch.where(x > 0, x, torch.expm1(x.clamp(max=0))), torch.where(x > 0, 1.0, torch.exp(x.clamp(max=0)))
    elif name == "gelu":
        cdf = torch.special.ndtr(x)
        f, d = x * cdf, cdf + x * torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    elif name == "gelu_tanh":
        xc = x.clamp(-1e6, 1e6)
        two_u = 2 * _C * (xc + 0.044715 * xc ** 3)
        s2 = torch.sigmoid(two_u)
        f = torch.where(s2 == 0, torch.zeros_like(x), x * s2)
        d = s2 + torch.nan_to_num(xc * s2 * (1 - s2) * 2 * _C * (1 + 3 * 0.044715 * xc * xc))
    else:  # silu
        f = torch.where(sig == 0, torch.zeros_like(x), x * sig)
        d = sig + torch.where(sig == 0, torch.zeros_like(x), x * sig * (1 - sig))
    return f.numpy().astype(dtype), d.numpy().astype(dtype)


def saturation_fraction_thresholds(a, activation, tol=0.06):
    """The same rule as thresholds on the output: |a| > √(1 − tol) for tanh, and so on."""
    if isinstance(a, torch.Tensor):
        a = a.detach().numpy()
    a = np.asarray(a, dtype=np.float64).ravel()
    if activation == "tanh":
        saturated = np.abs(a) > math.sqrt(1 - tol)
    elif activation == "sigmoid":
        saturated = np.abs(2 * a - 1) > math.sqrt(1 - tol)  # 4a(1 − a) = 1 − (2a − 1)²
    elif activation == "relu":
        saturated = a <= 0
    elif activation == "leaky_relu":
        saturated = a <= 0 if 0.01 < tol else np.zeros_like(a, dtype=bool)
    elif activation == "elu":
        saturated = (a <= 0) & (a + 1 < tol)
    else:
        raise ValueError(activation)
    return float(saturated.sum() / a.size)


def saturation_fraction_torch(a, activation, tol=0.06):
    """Slopes from the output with torch, in float64."""
    t = torch.as_tensor(a, dtype=torch.float64)
    slope = {"sigmoid": lambda: 4 * t * (1 - t), "tanh": lambda: 1 - t ** 2, "relu": lambda: (t > 0).double(),
             "leaky_relu": lambda: torch.where(t > 0, torch.ones_like(t), torch.full_like(t, 0.01)),
             "elu": lambda: torch.where(t > 0, torch.ones_like(t), t + 1)}[activation]()
    return (slope < tol).double().mean().item()


def count_dead_neurons_pre_hooks(model, data):
    """Forward pre-hooks that see the activation's input, an explicit counter, model mode restored."""
    counts = []
    handles = []

    def pre_hook(module, args):
        z = args[0]
        counts.append(int((~(z > 0).any(dim=0)).sum()))

    for m in model.modules():
        if type(m) in (nn.ReLU, nn.LeakyReLU):
            handles.append(m.register_forward_pre_hook(pre_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(data)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return sum(counts)


def count_dead_neurons_max(model, data):
    """The largest pre-activation per unit over the batch, ≤ 0 means dead; hooks as a context."""
    maxima = []

    def hook(module, inputs, output):
        z = inputs[0].detach()
        maxima.append(z.reshape(len(z), -1).max(dim=0).values)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.ReLU, nn.LeakyReLU))]
    try:
        model(data)
    finally:
        for h in handles:
            h.remove()
    return int(sum((m <= 0).sum().item() for m in maxima))


_PIECEWISE = {"linear": (1.0, 1.0), "relu": (1.0, 0.0), "leaky_relu": (1.0, 0.01)}
_SELU = (1.0507009873554805, 1.6732632423543772)


def _f(name):
    lam, alpha = _SELU
    return {
        "sigmoid": lambda z: expit(z),
        "tanh": math.tanh,
        "elu": lambda z: z if z > 0 else math.expm1(z),
        "selu": lambda z: lam * z if z > 0 else lam * alpha * math.expm1(z),
        "gelu": lambda z: z * 0.5 * math.erfc(-z / math.sqrt(2)),
        "silu": lambda z: z * expit(z),
    }[name]


def second_moment_quad(activation, sigma):
    """Closed forms for piecewise-linear f; scipy's quad over z on each half-line with the N(0, σ²) density."""
    sig = np.asarray(sigma, dtype=np.float64)
    out = np.empty(sig.shape)
    for idx, s in np.ndenumerate(sig):
        if activation in _PIECEWISE:
            a, b = _PIECEWISE[activation]
            out[idx] = (a * a + b * b) * s * s / 2
        elif s == 0:
            out[idx] = _f(activation)(0.0) ** 2
        else:
            f = _f(activation)
            density = lambda z: math.exp(-0.5 * (z / s) ** 2) / (s * math.sqrt(2 * math.pi))  # noqa: E731
            out[idx] = sum(quad(lambda z: f(z) ** 2 * density(z), lo, hi, epsabs=0, epsrel=1e-12, limit=200)[0]
                           for lo, hi in ((-np.inf, 0), (0, np.inf)))
    return float(out) if out.ndim == 0 else out


def second_moment_closed_forms(activation, sigma):
    """ELU and SELU in closed form with Φ; for the smooth rest, quad over x ~ N(0, 1) with z = σx, on
    each half-line."""
    from scipy.special import ndtr

    def one(s):
        if activation in _PIECEWISE:
            a, b = _PIECEWISE[activation]
            return (a * a + b * b) * s * s / 2
        if activation in ("elu", "selu"):
            lam, alpha = (1.0, 1.0) if activation == "elu" else _SELU
            # E[z²; z > 0] = s²/2; E[(e^z − 1)²; z < 0] = e^{2s²}Φ(−2s) − 2e^{s²/2}Φ(−s) + ½
            neg = math.exp(2 * s * s) * ndtr(-2 * s) - 2 * math.exp(s * s / 2) * ndtr(-s) + 0.5
            return lam * lam * (s * s / 2 + alpha * alpha * neg)
        f = _f(activation)
        if s == 0:
            return f(0.0) ** 2
        phi = lambda x: math.exp(-x * x / 2) / math.sqrt(2 * math.pi)  # noqa: E731
        return sum(quad(lambda x: f(s * x) ** 2 * phi(x), lo, hi, epsrel=1e-12, limit=200)[0]
                   for lo, hi in ((-np.inf, 0), (0, np.inf)))

    if np.ndim(sigma) == 0:
        return one(float(sigma))
    return np.array([one(float(s)) for s in np.asarray(sigma)])


def variance_preserving_gain_plain(activation, second_moment, q=1.0):
    std = q ** 0.5
    return (q / second_moment(activation, std)) ** 0.5


def recycle_dead_units_loop(model, data):
    """Unit by unit, with torch.nn.init on a one-row view and masks collected first."""
    layers = [m for m in model if isinstance(m, nn.Linear)]
    with torch.no_grad():
        dead, h = [], data
        for layer in layers[:-1]:
            z = layer(h)
            dead.append([j for j in range(z.shape[1]) if bool((z[:, j] <= 0).all())])
            h = torch.relu(z)
        count = 0
        for i, units in enumerate(dead):
            layer, nxt = layers[i], layers[i + 1]
            for j in units:
                nn.init.kaiming_uniform_(layer.weight[j:j + 1], a=math.sqrt(5))  # nn.Linear's U(±1/√fan_in)
                layer.bias[j] = 0.0
                nxt.weight[:, j] = 0.0
                count += 1
    return count


def recycle_dead_units_data(model, data):
    """Masks first, then .data writes, fresh weights from uniform_."""
    modules = list(model)
    hidden = [(i, m) for i, m in enumerate(modules) if isinstance(m, nn.Linear)][:-1]
    masks = {}
    x = data
    for i, m in enumerate(modules):
        x = m(x).detach()
        if any(i == j for j, _ in hidden):
            masks[i] = (x <= 0).all(0)
    total = 0
    for (i, layer), nxt in zip(hidden, [m for m in modules if isinstance(m, nn.Linear)][1:]):
        mask = masks[i]
        n = int(mask.sum())
        if n:
            bound = 1 / math.sqrt(layer.weight.shape[1])
            layer.weight.data[mask] = torch.empty(n, layer.weight.shape[1]).uniform_(-bound, bound)
            layer.bias.data[mask] = 0
            nxt.weight.data[:, mask] = 0
        total += n
    return total


def recycle_dead_units_deepest_first(model, data):
    """Masks first, then the layers from the last hidden one back to the first."""
    layers = [m for m in model if isinstance(m, nn.Linear)]
    with torch.no_grad():
        masks, h = [], data
        for layer in layers[:-1]:
            z = layer(h)
            masks.append((z <= 0).all(dim=0))
            h = z.clamp(min=0)
        for i in reversed(range(len(masks))):
            mask = masks[i]
            if mask.any():
                layer = layers[i]
                bound = layer.in_features ** -0.5
                layer.weight[mask] = (torch.rand(int(mask.sum()), layer.in_features) * 2 - 1) * bound
                layer.bias[mask] = 0
                layers[i + 1].weight[:, mask] = 0
    return int(sum(int(m.sum()) for m in masks))


ALTERNATIVES = {
    "activation_and_grad": [activation_and_grad_textbook, activation_and_grad_torch],
    "saturation_fraction": [saturation_fraction_thresholds, saturation_fraction_torch],
    "count_dead_neurons": [count_dead_neurons_pre_hooks, count_dead_neurons_max],
    "second_moment": [second_moment_quad, second_moment_closed_forms],
    "variance_preserving_gain": [variance_preserving_gain_plain],
    "recycle_dead_units_": [recycle_dead_units_loop, recycle_dead_units_data, recycle_dead_units_deepest_first],
}
