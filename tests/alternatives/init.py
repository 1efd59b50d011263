"""Correct implementations of lesson 03's exercises written differently from the reference.

The statistical checks must accept every one of them: torch.rand scaled instead of uniform_,
torch.randn times a std, draws in float64 copied in, a QR in float64, an SVD's polar factor instead
of a QR, rejection sampling for the truncated normal; an init_model_ that skips norm layers by
isinstance or calls torch.nn.init.kaiming_normal_; the mapping by table or through the std
formulas; the prediction vectorised; the bug found without hooks; the output bias from raw counts.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


def _shape(tensor_or_shape):
    return tuple(tensor_or_shape.shape) if isinstance(tensor_or_shape, torch.Tensor) else tuple(tensor_or_shape)


def fan_in_and_fan_out_numpy(tensor_or_shape):
    """numpy products (numpy ints come back) and a list instead of a tuple."""
    shape = _shape(tensor_or_shape)
    if len(shape) < 2:
        raise ValueError("need at least 2 dimensions")
    field = np.prod(shape[2:], dtype=np.int64)
    return [shape[1] * field, shape[0] * field]


def fan_in_and_fan_out_loop(tensor_or_shape):
    dims = list(torch.Size(_shape(tensor_or_shape)))
    if len(dims) <= 1:
        raise ValueError(f"fans need 2 or more dimensions, got {len(dims)}")
    field = 1
    for k in dims[2:]:
        field *= k
    return dims[1] * field, dims[0] * field


def calculate_gain_table(nonlinearity, param=None):
    table = {"tanh": 5.0 / 3.0, "relu": 2.0**0.5, "selu": 0.75}
    if nonlinearity in ("linear", "sigmoid") or nonlinearity.startswith(("conv1d", "conv2d", "conv3d", "conv_transpose")):
        if nonlinearity.startswith("conv") and nonlinearity not in (
                "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"):
            raise ValueError(nonlinearity)
        return 1
    if nonlinearity == "leaky_relu":
        s = 0.01 if param is None else param
        if isinstance(s, bool) or not isinstance(s, (int, float)):
            raise ValueError(f"bad slope {param!r}")
        return (2.0 / (1.0 + s * s)) ** 0.5
    if nonlinearity in table:
        return table[nonlinearity]
    raise ValueError(f"unsupported nonlinearity {nonlinearity}")


def _fans(t):
    field = math.prod(t.shape[2:])
    if t.ndim < 2:
        raise ValueError("need at least 2 dimensions")
    return t.shape[1] * field, t.shape[0] * field


def _copy_in(tensor, values):
    with torch.no_grad():
        tensor.copy_(values)
    return tensor


def _orthogonal_from(tensor, gain, generator, decompose):
    if tensor.ndim < 2:
        raise ValueError("orthogonal_ needs a matrix")
    rows = tensor.shape[0]
    cols = tensor.numel() // rows
    a = torch.randn(rows, cols, generator=generator, dtype=torch.float64)
    q = decompose(a)
    return _copy_in(tensor, (gain * q).reshape(tensor.shape))


def orthogonal_qr_float64(tensor, gain=1.0, generator=None):
    """A complete QR in float64 of the tall orientation, signs fixed by diag(R)."""

    def decompose(a):
        tall = a if a.shape[0] >= a.shape[1] else a.T
        q, r = torch.linalg.qr(tall)
        q = q * torch.sign(torch.diag(r))
        return q if a.shape[0] >= a.shape[1] else q.T

    return _orthogonal_from(tensor, gain, generator, decompose)


def orthogonal_svd(tensor, gain=1.0, generator=None):
    """The polar factor U·Vᵀ of a Gaussian matrix: Haar distributed too, no sign fix needed."""

    def decompose(a):
        u, _, vh = torch.linalg.svd(a, full_matrices=False)
        return u @ vh

    return _orthogonal_from(tensor, gain, generator, decompose)


def variance_scaling_routes(tensor, scale=1.0, mode="fan_in", distribution="normal", generator=None):
    """torch.rand for the uniform, rejection sampling for the truncated normal, randn for the normal."""
    fan_in, fan_out = _fans(tensor)
    try:
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[mode]
    except KeyError:
        raise ValueError(f"unknown mode {mode!r}") from None
    var = scale / n
    shape = tensor.shape
    if distribution == "uniform":
        b = math.sqrt(3 * var)
        values = (torch.rand(shape, generator=generator, dtype=torch.float64) - 0.5) * (2 * b)
    elif distribution == "normal":
        values = torch.randn(shape, generator=generator, dtype=torch.float64) * math.sqrt(var)
    elif distribution == "truncated_normal":
        z = torch.randn(shape, generator=generator, dtype=torch.float64)
        outside = z.abs() > 2
        while outside.any():  # redraw until every value lies within ±2
            z[outside] = torch.randn(int(outside.sum()), generator=generator, dtype=torch.float64)
            outside = z.abs() > 2
        values = z * (math.sqrt(var) / 0.87962566103423978)
    else:
        raise ValueError(f"unknown distribution {distribution!r}")
    return _copy_in(tensor, values)


def variance_scaling_numpy_trunc(tensor, scale=1.0, mode="fan_in", distribution="normal", generator=None):
    """The truncation's std computed, not copied: Var of N(0,1) cut at ±2 from its density."""
    from statistics import NormalDist

    if mode not in ("fan_in", "fan_out", "fan_avg") or distribution not in ("normal", "uniform", "truncated_normal"):
        raise ValueError("bad mode or distribution")
    fan_in, fan_out = _fans(tensor)
    n = fan_in if mode == "fan_in" else fan_out if mode == "fan_out" else (fan_in + fan_out) / 2
    std = math.sqrt(scale / n)
    with torch.no_grad():
        if distribution == "uniform":
            return tensor.uniform_(-std * 3**0.5, std * 3**0.5, generator=generator)
        if distribution == "normal":
            return tensor.normal_(0, std, generator=generator)
        nd = NormalDist()
        mass = nd.cdf(2) - nd.cdf(-2)
        trunc_var = 1 - 2 * 2 * nd.pdf(2) / mass
        sigma = std / math.sqrt(trunc_var)
        u = torch.rand(tensor.shape, generator=generator, dtype=torch.float64) * mass + nd.cdf(-2)
        z = torch.special.ndtri(u)
        return tensor.copy_(z * sigma)


def init_model_uniform(model, nonlinearity):
    """A uniform distribution with the right variance, biases filled with 0 via fill_."""
    gain = 1.0 if nonlinearity == "selu" else calculate_gain_table(nonlinearity)
    for _, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            fan_in, _ = _fans(module.weight)
            b = gain * math.sqrt(3.0 / fan_in)
            with torch.no_grad():
                module.weight.uniform_(-b, b)
                if module.bias is not None:
                    module.bias.fill_(0.0)
    return model


def init_model_apply(model, nonlinearity):
    """model.apply with a per-module function and torch.randn."""
    gain2 = {"relu": 2.0, "tanh": 25 / 9, "selu": 1.0, "linear": 1.0, "sigmoid": 1.0,
             "leaky_relu": 2 / (1 + 0.01**2)}[nonlinearity]

    def init(m):
        if type(m) in (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d):
            fan_in = m.weight[0].numel()
            with torch.no_grad():
                m.weight.copy_(torch.randn_like(m.weight) * math.sqrt(gain2 / fan_in))
                if m.bias is not None:
                    m.bias.mul_(0)

    model.apply(init)
    return model


def _gain_table2(nonlinearity, param=None):
    return calculate_gain_table(nonlinearity, param) ** 2


def as_variance_scaling_table(initializer, **kwargs):
    """A lookup table for Keras, and torch's arguments read with defaults from a dict."""
    keras = {"GlorotUniform": (1, "fan_avg", "uniform"), "GlorotNormal": (1, "fan_avg", "truncated_normal"),
             "HeUniform": (2, "fan_in", "uniform"), "HeNormal": (2, "fan_in", "truncated_normal"),
             "LecunUniform": (1, "fan_in", "uniform"), "LecunNormal": (1, "fan_in", "truncated_normal")}
    if initializer in keras:
        return keras[initializer]
    args = {"gain": 1.0, "a": 0, "mode": "fan_in", "nonlinearity": "leaky_relu", **kwargs}
    dist = "uniform" if initializer.endswith("uniform") else "normal"
    if initializer in ("xavier_uniform", "xavier_normal"):
        return args["gain"] * args["gain"], "fan_avg", dist
    if initializer in ("kaiming_uniform", "kaiming_normal"):
        mode = args["mode"].lower()
        if mode not in ("fan_in", "fan_out"):
            raise ValueError(f"bad mode {args['mode']!r}")
        return [_gain_table2(args["nonlinearity"], args["a"]), mode, dist]  # a list is fine too
    if initializer == "nn.Linear":
        return 1 / 3, "fan_in", "uniform"
    raise ValueError(f"not a variance-scaling initializer: {initializer}")


def as_variance_scaling_via_std(initializer, **kwargs):
    """Through the std formula of each initializer, for a unit fan: scale = (std·√fan)²."""
    if initializer.startswith(("Glorot", "He", "Lecun")):
        family = {"Glorot": (1.0, "fan_avg"), "He": (2.0, "fan_in"), "Lecun": (1.0, "fan_in")}
        name = next(k for k in family if initializer.startswith(k))
        if initializer not in (name + "Normal", name + "Uniform"):
            raise ValueError(initializer)
        return (*family[name], "truncated_normal" if initializer.endswith("Normal") else "uniform")
    if initializer == "nn.Linear":
        bound = 1.0  # U(±1/√fan_in) times √fan_in
        return bound**2 / 3, "fan_in", "uniform"
    family, _, dist = initializer.partition("_")
    if family not in ("xavier", "kaiming") or dist not in ("uniform", "normal"):
        raise ValueError(initializer)
    if family == "xavier":
        std_at_average_fan_1 = kwargs.get("gain", 1.0)  # gain·√(2/(n + n)) with n = 1
        return std_at_average_fan_1**2, "fan_avg", dist
    mode = kwargs.get("mode", "fan_in")
    if mode.lower() not in ("fan_in", "fan_out"):
        raise ValueError(mode)
    a, nl = kwargs.get("a", 0), kwargs.get("nonlinearity", "leaky_relu")
    slope = (0.01 if a is None else a) if nl == "leaky_relu" else None
    gain2 = 2 / (1 + slope**2) if nl == "leaky_relu" else {"relu": 2.0, "tanh": 25 / 9, "selu": 9 / 16}.get(nl, 1.0)
    if nl not in ("leaky_relu", "relu", "tanh", "selu", "linear", "sigmoid") and not nl.startswith("conv"):
        raise ValueError(nl)
    return gain2, mode.lower(), dist


def predict_layer_stds_numpy(widths, weight_vars, nonlinearity="relu", param=None, input_var=1.0, output_grad_var=1.0):
    """Vectorised gains with numpy; the moments of the activations written per activation."""
    s = {"linear": 1.0, "relu": 0.0, "leaky_relu": 0.01 if param is None else param}[nonlinearity]
    widths, v = np.asarray(widths, dtype=float), np.asarray(weight_vars, dtype=float)
    keep = 1.0 if nonlinearity == "linear" else (1 + s * s) / 2  # E[f(z)²]/q and E[f'(z)²]
    mean = 0.0 if nonlinearity == "linear" else (1 - s) / np.sqrt(2 * np.pi)  # E[f(z)]/√q
    q = input_var * np.cumprod(widths[:-1] * v * np.r_[1.0, np.full(len(v) - 1, keep)])
    act = np.sqrt(q * keep - q * mean**2)
    back = widths[2:] * v[1:] * keep  # factor from layer l+1 to l
    grad = output_grad_var * np.r_[np.cumprod(back[::-1])[::-1], 1.0]
    return list(act), list(np.sqrt(grad))


def predict_layer_stds_monte_carlo_free_loop(widths, weight_vars, nonlinearity="relu", param=None, input_var=1.0,
                                             output_grad_var=1.0):
    """A plain loop that stores variances and takes square roots at the end, with erf-free moments."""
    slope = 1.0 if nonlinearity == "linear" else 0.0 if nonlinearity == "relu" else (0.01 if param is None else param)
    m2_per_q = (1 + slope**2) / 2
    mean_per_sqrt_q = (1 - slope) * (2 * math.pi) ** -0.5
    variances, second = [], input_var
    for n, v in zip(widths[:-1], weight_vars):
        q = n * v * second
        second = m2_per_q * q
        variances.append(second - mean_per_sqrt_q**2 * q)
    grads = [output_grad_var]
    for l in range(len(weight_vars) - 1, 0, -1):
        grads.insert(0, grads[0] * widths[l + 1] * weight_vars[l] * m2_per_q)
    return [x**0.5 for x in variances], [g**0.5 for g in grads]


def find_init_bug_hooks_per_module(model, x):
    """Hooks that store statistics in a dict keyed by module; the odd layer by its distance from the mean log-gain
    of the others (leave-one-out)."""
    stats = {}

    def hook(module, inputs, output):
        stats[module] = (float((inputs[0] ** 2).mean()), float((output**2).mean()))

    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    handles = [m.register_forward_hook(hook) for m in linears]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    logs = np.log([stats[m][1] / stats[m][0] for m in linears])
    scores = [abs(logs[i] - np.delete(logs, i).mean()) for i in range(len(logs))]
    i = int(np.argmax(scores))
    return i, ("too small" if logs[i] < np.delete(logs, i).mean() else "too large")


def find_init_bug_manual_forward(model, x):
    """No hooks: walk the Sequential's leaves in order, applying each and measuring around every Linear."""
    leaves = [m for m in model.modules() if len(list(m.children())) == 0]
    h, gains = x, []
    with torch.no_grad():
        for m in leaves:
            out = m(h)
            if isinstance(m, nn.Linear):
                gains.append(out.pow(2).mean().item() / h.pow(2).mean().item())
            h = out
    logs = np.log(gains)
    median = np.median(logs)
    i = int(np.argmax(np.abs(logs - median)))
    return (i, "too large") if logs[i] > median else (i, "too small")


def init_output_layer_counts(model, y):
    """log of raw counts (softmax ignores the constant), weights multiplied by 0."""
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last = m
    counts = torch.zeros(last.out_features)
    for label in y.tolist():
        counts[label] += 1
    with torch.no_grad():
        last.weight.mul_(0.0)
        last.bias.copy_(counts.log())
    return model


def init_output_layer_tiny_weights(model, y):
    """Karpathy's other recipe: weights scaled by 1e-4 instead of zeroed, bias = ln p via numpy."""
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    p = np.bincount(y.numpy(), minlength=last.out_features) / len(y)
    with torch.no_grad():
        last.weight.mul_(1e-4)
        last.bias.copy_(torch.from_numpy(np.log(p)))
    return model


def init_model_skip_norms(model, nonlinearity):
    """Every module with a weight of 2+ dimensions, except norm layers (isinstance with a tuple), via
    model.modules(); Kaiming's normal drawn with the lesson's own formula."""
    gain2 = 1.0 if nonlinearity == "selu" else _gain_table2(nonlinearity)
    norms = (nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d)
    for m in model.modules():
        if isinstance(m, norms) or getattr(m, "weight", None) is None or m.weight.dim() < 2:
            continue
        fan_in = m.weight[0].numel()
        with torch.no_grad():
            m.weight.normal_(0.0, math.sqrt(gain2 / fan_in))
            if m.bias is not None:
                m.bias.zero_()
    return model


def init_model_torch_kaiming(model, nonlinearity):
    """torch.nn.init.kaiming_normal_ inside init_model_: "your initializers from above are welcome", and so are
    torch's (SELU through nonlinearity='linear', as torch's docs say)."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            if nonlinearity == "selu":
                nn.init.kaiming_normal_(m.weight, nonlinearity="linear")
            elif nonlinearity == "leaky_relu":
                nn.init.kaiming_normal_(m.weight, a=0.01, nonlinearity="leaky_relu")
            else:
                nn.init.kaiming_normal_(m.weight, nonlinearity=nonlinearity)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


ALTERNATIVES = {
    "fan_in_and_fan_out": [fan_in_and_fan_out_numpy, fan_in_and_fan_out_loop],
    "calculate_gain": [calculate_gain_table],
    "orthogonal_": [orthogonal_qr_float64, orthogonal_svd],
    "variance_scaling_": [variance_scaling_routes, variance_scaling_numpy_trunc],
    "as_variance_scaling": [as_variance_scaling_table, as_variance_scaling_via_std],
    "predict_layer_stds": [predict_layer_stds_numpy, predict_layer_stds_monte_carlo_free_loop],
    "init_model_": [init_model_uniform, init_model_apply, init_model_skip_norms, init_model_torch_kaiming],
    "find_init_bug": [find_init_bug_hooks_per_module, find_init_bug_manual_forward],
    "init_output_layer_": [init_output_layer_counts, init_output_layer_tiny_weights],
}
