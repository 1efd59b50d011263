"""Correct implementations of lesson 03's exercises that draw their numbers by other routes.

The statistical checks must accept every one of them: torch.rand scaled instead of uniform_,
torch.randn times a std, draws in float64 copied in, a QR in float64, an SVD instead of a QR,
rejection sampling for the truncated normal, `.data` assignment.
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


def xavier_uniform_rand(tensor, gain=1.0, generator=None):
    """torch.rand in [0, 1) mapped onto [-a, a]."""
    fan_in, fan_out = _fans(tensor)
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    u = torch.rand(tensor.shape, generator=generator, dtype=tensor.dtype)
    return _copy_in(tensor, (2 * u - 1) * a)


def xavier_uniform_data(tensor, gain=1.0, generator=None):
    """Draw in float64 and assign through .data (same tensor object, new values)."""
    fan_in, fan_out = _fans(tensor)
    a = gain * math.sqrt(3.0) * math.sqrt(2.0 / (fan_in + fan_out))
    tensor.data = torch.empty(tensor.shape, dtype=torch.float64).uniform_(-a, a, generator=generator).to(tensor.dtype)
    return tensor


def xavier_normal_randn(tensor, gain=1.0, generator=None):
    fan_in, fan_out = _fans(tensor)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return _copy_in(tensor, torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype) * std)


def xavier_normal_float64(tensor, gain=1.0, generator=None):
    fan_in, fan_out = _fans(tensor)
    var = gain**2 * 2.0 / (fan_in + fan_out)
    return _copy_in(tensor, torch.randn(tensor.shape, generator=generator, dtype=torch.float64) * var**0.5)


def _kaiming_std(tensor, a, mode, nonlinearity):
    if mode.lower() not in ("fan_in", "fan_out"):
        raise ValueError(f"unknown mode {mode}")
    fan_in, fan_out = _fans(tensor)
    fan = fan_in if mode.lower() == "fan_in" else fan_out
    return calculate_gain_table(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_rand(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    b = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return _copy_in(tensor, torch.rand(tensor.shape, generator=generator) * (2 * b) - b)


def kaiming_uniform_float64(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    std = _kaiming_std(tensor, a, mode, nonlinearity)
    u = torch.empty(tensor.shape, dtype=torch.float64).uniform_(-1.0, 1.0, generator=generator)
    return _copy_in(tensor, u * (3.0**0.5 * std))


def kaiming_normal_randn(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    std = _kaiming_std(tensor, a, mode, nonlinearity)
    return _copy_in(tensor, std * torch.randn(tensor.shape, generator=generator, dtype=torch.float64))


def kaiming_normal_box_muller(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """Normals by Box–Muller from uniforms."""
    std = _kaiming_std(tensor, a, mode, nonlinearity)
    n = tensor.numel()
    u1 = torch.rand(n, generator=generator, dtype=torch.float64).clamp_min(1e-300)
    u2 = torch.rand(n, generator=generator, dtype=torch.float64)
    z = torch.sqrt(-2 * torch.log(u1)) * torch.cos(2 * math.pi * u2)
    return _copy_in(tensor, (std * z).reshape(tensor.shape))


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


ALTERNATIVES = {
    "fan_in_and_fan_out": [fan_in_and_fan_out_numpy, fan_in_and_fan_out_loop],
    "calculate_gain": [calculate_gain_table],
    "xavier_uniform_": [xavier_uniform_rand, xavier_uniform_data],
    "xavier_normal_": [xavier_normal_randn, xavier_normal_float64],
    "kaiming_uniform_": [kaiming_uniform_rand, kaiming_uniform_float64],
    "kaiming_normal_": [kaiming_normal_randn, kaiming_normal_box_muller],
    "orthogonal_": [orthogonal_qr_float64, orthogonal_svd],
    "variance_scaling_": [variance_scaling_routes, variance_scaling_numpy_trunc],
    "init_model_": [init_model_uniform, init_model_apply],
}
