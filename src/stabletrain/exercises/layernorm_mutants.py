"""Lesson 06's mutant catalogue: plausible wrong implementations, each with its misconception.

Imported by the grader and the project's tests only (never in a student's grading kernel).
``layernorm_backward`` is run on the cache of the ``layernorm_forward`` that sits beside it, so the
backward mutants here find the reference forward under that name in this module.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..normalization import layernorm_forward  # noqa: F401  (the forward the backward mutants are run with)
from ..residual import capstone_config
from .base import Mutant

# ----------------------------------------------------------------------------------------------
# layernorm_forward


def _ln(x, gamma, beta, eps=1e-5, axis=-1, ddof=0, eps_outside=False):
    mean = x.mean(axis=axis, keepdims=True)
    var = x.var(axis=axis, keepdims=True, ddof=ddof)
    std = np.sqrt(var) + eps if eps_outside else np.sqrt(var + eps)
    return ((x - mean) / std * gamma + beta).astype(x.dtype), {}


def _forward_batch_axis(x, gamma, beta, eps=1e-5):
    return _ln(x, gamma, beta, eps, axis=0)


def _forward_unbiased(x, gamma, beta, eps=1e-5):
    return _ln(x, gamma, beta, eps, ddof=1)


def _forward_eps_outside(x, gamma, beta, eps=1e-5):
    return _ln(x, gamma, beta, eps, eps_outside=True)


def _forward_no_eps(x, gamma, beta, eps=1e-5):
    mean = x.mean(axis=-1, keepdims=True)
    with np.errstate(all="ignore"):
        return ((x - mean) / x.std(axis=-1, keepdims=True) * gamma + beta).astype(x.dtype), {}


def _forward_all_axes(x, gamma, beta, eps=1e-5):
    return ((x - x.mean()) / np.sqrt(x.var() + eps) * gamma + beta).astype(x.dtype), {}


def _forward_no_centering(x, gamma, beta, eps=1e-5):
    return (x / np.sqrt(x.var(axis=-1, keepdims=True) + eps) * gamma + beta).astype(x.dtype), {}


def _forward_swapped_affine(x, gamma, beta, eps=1e-5):
    return _ln(x, beta, gamma, eps)


def _forward_float64(x, gamma, beta, eps=1e-5):
    x = x.astype(np.float64)
    mean = x.mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(x.var(axis=-1, keepdims=True) + eps) * gamma + beta, {}


FORWARD = {
    "batch_axis": Mutant(_forward_batch_axis, "statistics over the batch axis (axis 0) — that is batch norm; "
                         "layer norm averages over the features of each sample (the last axis)"),
    "unbiased": Mutant(_forward_unbiased, "the unbiased variance (dividing by D - 1): layer norm uses the biased "
                       "variance, dividing by D, like torch.nn.LayerNorm"),
    "eps_outside": Mutant(_forward_eps_outside, "eps added to the standard deviation instead of to the variance: "
                          "it belongs inside the square root, sqrt(var + eps)"),
    "no_eps": Mutant(_forward_no_eps, "eps left out: a constant row divides 0 by 0"),
    "all_axes": Mutant(_forward_all_axes, "one mean and variance for the whole array: each row needs its own"),
    "no_centering": Mutant(_forward_no_centering, "dividing by the standard deviation without subtracting the mean"),
    "swapped_affine": Mutant(_forward_swapped_affine, "gamma and beta swapped: y = gamma * x_hat + beta"),
    "float64": Mutant(_forward_float64, "the output promoted to float64: keep the input's dtype"),
}

# ----------------------------------------------------------------------------------------------
# layernorm_backward (run with the reference forward's cache: x_hat, inv_std, gamma)


def _bw_parts(dout, cache):
    x_hat, inv_std, gamma = cache["x_hat"], cache["inv_std"], cache["gamma"]
    leading = tuple(range(dout.ndim - 1))
    return x_hat, inv_std, gamma, leading, dout * gamma


def _backward_no_mean_term(dout, cache):
    x_hat, inv_std, gamma, leading, dxh = _bw_parts(dout, cache)
    dx = inv_std * (dxh - x_hat * (dxh * x_hat).mean(-1, keepdims=True))
    return dx, (dout * x_hat).sum(leading), dout.sum(leading)


def _backward_no_variance_term(dout, cache):
    x_hat, inv_std, gamma, leading, dxh = _bw_parts(dout, cache)
    dx = inv_std * (dxh - dxh.mean(-1, keepdims=True))
    return dx, (dout * x_hat).sum(leading), dout.sum(leading)


def _backward_constant_stats(dout, cache):
    x_hat, inv_std, gamma, leading, dxh = _bw_parts(dout, cache)
    return dxh * inv_std, (dout * x_hat).sum(leading), dout.sum(leading)


def _backward_batch_axis_sums(dout, cache):
    x_hat, inv_std, gamma, leading, dxh = _bw_parts(dout, cache)
    dx = inv_std * (dxh - dxh.mean(0, keepdims=True) - x_hat * (dxh * x_hat).mean(0, keepdims=True))
    return dx, (dout * x_hat).sum(leading), dout.sum(leading)


def _backward_sums_for_means(dout, cache):
    x_hat, inv_std, gamma, leading, dxh = _bw_parts(dout, cache)
    dx = inv_std * (dxh - dxh.sum(-1, keepdims=True) - x_hat * (dxh * x_hat).sum(-1, keepdims=True))
    return dx, (dout * x_hat).sum(leading), dout.sum(leading)


def _backward_first_axis_only(dout, cache):
    x_hat, inv_std, gamma, leading, dxh = _bw_parts(dout, cache)
    dx = inv_std * (dxh - dxh.mean(-1, keepdims=True) - x_hat * (dxh * x_hat).mean(-1, keepdims=True))
    return dx, (dout * x_hat).sum(0), dout.sum(0)


def _backward_no_gamma(dout, cache):
    x_hat, inv_std, gamma, leading, _ = _bw_parts(dout, cache)
    dxh = dout
    dx = inv_std * (dxh - dxh.mean(-1, keepdims=True) - x_hat * (dxh * x_hat).mean(-1, keepdims=True))
    return dx, (dout * x_hat).sum(leading), dout.sum(leading)


BACKWARD = {
    "no_mean_term": Mutant(_backward_no_mean_term, "the backward pass misses the mean terms: the mean depends on "
                           "every x_j, so dx subtracts the row mean of d x_hat"),
    "no_variance_term": Mutant(_backward_no_variance_term, "the backward pass misses the variance term: the "
                               "variance depends on every x_j, so dx subtracts x_hat * mean(d x_hat * x_hat)"),
    "constant_stats": Mutant(_backward_constant_stats, "the mean and variance treated as constants: "
                             "dx = dout * gamma / std leaves out how they depend on x"),
    "batch_axis_sums": Mutant(_backward_batch_axis_sums, "the sums of the backward pass over the batch axis (batch "
                              "norm's); layer norm's run over the features of each row"),
    "sums_for_means": Mutant(_backward_sums_for_means, "sums where the formula has means: with the factor s/D "
                             "outside, dx = (s/D)(D dx_hat - sum dx_hat - x_hat sum dx_hat x_hat); written with "
                             "s alone in front, the two correction terms are row means, not row sums"),
    "first_axis_only": Mutant(_backward_first_axis_only, "dgamma and dbeta summed over axis 0 only: sum over every "
                              "leading axis, so they come out of shape (D,)"),
    "no_gamma": Mutant(_backward_no_gamma, "gamma left out of dx: d x_hat = dout * gamma"),
}

# ----------------------------------------------------------------------------------------------
# LayerNorm module


class _LN(nn.Module):
    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, device=None, dtype=None,
                 *, dims=None, ddof=0, detach=False, weight_shape=None, names=("weight", "bias"),
                 always_bias=False, eps_outside=False, as_buffers=False):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.shape, self.eps, self.dims, self.ddof, self.detach = shape, eps, dims, ddof, detach
        self.eps_outside, self.names = eps_outside, names
        pshape = weight_shape(shape) if weight_shape else shape
        w, b = torch.ones(pshape, dtype=dtype), torch.zeros(pshape, dtype=dtype)
        self.has_w = elementwise_affine
        self.has_b = elementwise_affine and (bias or always_bias)
        register = (lambda n, t: self.register_buffer(n, t)) if as_buffers else \
            (lambda n, t: self.register_parameter(n, nn.Parameter(t)))
        if self.has_w:
            register(names[0], w)
        if self.has_b:
            register(names[1], b)

    def forward(self, x):
        dims = self.dims if self.dims is not None else tuple(range(x.dim() - len(self.shape), x.dim()))
        mean = x.mean(dim=dims, keepdim=True)
        var = x.var(dim=dims, keepdim=True, correction=self.ddof)
        if self.detach:
            mean, var = mean.detach(), var.detach()
        std = var.sqrt() + self.eps if self.eps_outside else torch.sqrt(var + self.eps)
        out = (x - mean) / std
        if self.has_w:
            out = out * getattr(self, self.names[0])
        if self.has_b:
            out = out + getattr(self, self.names[1])
        return out


def _module(**options):
    def make(normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, device=None, dtype=None):
        return _LN(normalized_shape, eps, elementwise_affine, bias, device, dtype, **options)

    return make


MODULE = {
    "batch_axis": Mutant(_module(dims=(0,)), "statistics over the batch axis: layer norm normalizes each sample "
                         "over its own features"),
    "unbiased": Mutant(_module(ddof=1), "the unbiased variance: torch.nn.LayerNorm divides by D"),
    "detached_stats": Mutant(_module(detach=True), "the mean and variance detached from the graph: the outputs are "
                             "right but the gradient with respect to the input is not"),
    "last_axis_only": Mutant(_module(dims=(-1,)), "statistics over the last axis only, whatever normalized_shape "
                             "says: normalize over all of its trailing dims"),
    "weight_shape": Mutant(_module(weight_shape=lambda s: (1, *s)), "weight and bias of shape (1, D): their shape "
                           "is normalized_shape, so that torch's state_dict loads"),
    "gamma_beta_names": Mutant(_module(names=("gamma", "beta")), "parameters named gamma and beta: torch's "
                               "state_dict keys are weight and bias"),
    "bias_always": Mutant(_module(always_bias=True), "bias=False ignored: without it the module has no bias"),
    "buffers": Mutant(_module(as_buffers=True), "weight and bias registered as buffers: they must be nn.Parameters "
                      "so that the optimizer trains them"),
    "eps_outside": Mutant(_module(eps_outside=True), "eps added to the standard deviation: it goes inside the "
                          "square root"),
}

# ----------------------------------------------------------------------------------------------
# residual_block


def _block_always_post(x, branch, norm, placement="pre", branch_scale=1.0):
    if placement == "none":
        return x + branch_scale * branch(x)
    return norm(x + branch_scale * branch(x))


def _block_always_pre(x, branch, norm, placement="pre", branch_scale=1.0):
    if placement == "none":
        return x + branch_scale * branch(x)
    return x + branch_scale * branch(norm(x))


def _block_scale_whole(x, branch, norm, placement="pre", branch_scale=1.0):
    if placement == "pre":
        return branch_scale * (x + branch(norm(x)))
    if placement == "post":
        return norm(branch_scale * (x + branch(x)))
    return branch_scale * (x + branch(x))


def _block_scale_ignored(x, branch, norm, placement="pre", branch_scale=1.0):
    if placement == "pre":
        return x + branch(norm(x))
    if placement == "post":
        return norm(x + branch(x))
    return x + branch(x)


def _block_norm_skip(x, branch, norm, placement="pre", branch_scale=1.0):
    if placement == "pre":
        h = norm(x)
        return h + branch_scale * branch(h)
    if placement == "post":
        return norm(x + branch_scale * branch(x))
    return x + branch_scale * branch(x)


def _block_post_norm_branch(x, branch, norm, placement="pre", branch_scale=1.0):
    if placement == "pre":
        return x + branch_scale * branch(norm(x))
    if placement == "post":
        return x + branch_scale * norm(branch(x))
    return x + branch_scale * branch(x)


def _block_scale_input(x, branch, norm, placement="pre", branch_scale=1.0):
    if placement == "pre":
        return x + branch(branch_scale * norm(x))
    if placement == "post":
        return norm(x + branch(branch_scale * x))
    return x + branch(branch_scale * x)


def _block_none_normalizes(x, branch, norm, placement="pre", branch_scale=1.0):
    if placement == "post":
        return norm(x + branch_scale * branch(x))
    return x + branch_scale * branch(norm(x))


BLOCK = {
    "post_for_pre": Mutant(_block_always_post, "post-norm where pre-norm was asked: pre-norm normalizes the "
                           "branch's input and leaves the stream alone, x + f(norm(x))"),
    "pre_for_post": Mutant(_block_always_pre, "pre-norm where post-norm was asked: post-norm normalizes the sum, "
                           "norm(x + f(x))"),
    "scale_whole": Mutant(_block_scale_whole, "the branch scale applied to the skip path too: only the branch is "
                          "scaled, x + alpha * f(...)"),
    "scale_ignored": Mutant(_block_scale_ignored, "branch_scale ignored"),
    "scale_input": Mutant(_block_scale_input, "the branch's input scaled instead of its output: alpha multiplies "
                          "what the branch adds to the stream, x + alpha * f(...); f(alpha * z) differs from "
                          "alpha * f(z) as soon as f has a bias"),
    "normalized_skip": Mutant(_block_norm_skip, "the normalized x carried on the skip path: pre-norm adds the "
                              "branch to the raw x, so the stream is never normalized"),
    "norm_inside_branch": Mutant(_block_post_norm_branch, "post-norm applied to the branch's output only: "
                                 "it normalizes the sum x + f(x)"),
    "none_normalizes": Mutant(_block_none_normalizes, "placement='none' still normalizes: without a norm the "
                              "block is x + alpha * f(x)"),
}

# ----------------------------------------------------------------------------------------------
# residual_stream_variance


def _alpha2(depth, scaling, how="sqrt"):
    if scaling == "zero_gamma":
        return 0.0
    if scaling == "gpt2":
        return 1.0 / depth if how == "sqrt" else (1.0 / depth**2 if how == "1/L" else 1.0 / math.sqrt(depth))
    return 1.0


def _variance(depth, branch_gain=1.0, input_variance=1.0, placement="pre", scaling="none", *, how="sqrt",
              pre_geometric=False, none_additive=False, post_grows=False, skip_zero=False):
    a2 = _alpha2(depth, scaling, how)
    layers = np.arange(depth + 1, dtype=np.float64)
    if placement == "none" and not none_additive or placement == "pre" and pre_geometric:
        v = input_variance * (1 + a2 * branch_gain) ** layers
    elif placement in ("none", "pre") or post_grows:
        v = input_variance + layers * a2 * branch_gain
    else:
        v = np.ones(depth + 1)
        v[0] = input_variance
    return v[1:] if skip_zero else v


def _variance_mutant(**options):
    def fn(depth, branch_gain=1.0, input_variance=1.0, placement="pre", scaling="none"):
        return _variance(depth, branch_gain, input_variance, placement, scaling, **options)

    return fn


VARIANCE = {
    "one_over_depth": Mutant(_variance_mutant(how="1/L"), "the branch scaled by 1/L instead of 1/sqrt(L): GPT-2 "
                             "scales by 1/sqrt(L), so that L blocks add L * (1/L) = 1 unit of variance in all"),
    "scale_not_squared": Mutant(_variance_mutant(how="not squared"), "the branch scale not squared: scaling a "
                                "signal by alpha multiplies its variance by alpha**2"),
    "pre_geometric": Mutant(_variance_mutant(pre_geometric=True), "pre-norm treated as multiplicative: the branch "
                            "sees a normalized input, so each block adds a fixed alpha**2 * gain"),
    "none_additive": Mutant(_variance_mutant(none_additive=True), "without a norm each block adds a fixed amount: "
                            "the branch sees the whole stream, so it adds alpha**2 * gain * v_l and v grows "
                            "geometrically"),
    "post_grows": Mutant(_variance_mutant(post_grows=True), "post-norm's stream still growing: the norm at the "
                         "end of every block resets the variance to 1"),
    "zero_gamma_ignored": Mutant(lambda depth, branch_gain=1.0, input_variance=1.0, placement="pre", scaling="none":
                                 _variance(depth, branch_gain, input_variance, placement,
                                           "none" if scaling == "zero_gamma" else scaling),
                                 "a zero-initialised last gamma ignored: the branch outputs 0 at initialization, "
                                 "so the stream keeps its input variance"),
    "no_input_entry": Mutant(_variance_mutant(skip_zero=True), "the variance before the first block (l = 0) left "
                             "out: return depth + 1 values"),
}

# ----------------------------------------------------------------------------------------------
# capstone_config


def _config(**changes):
    config = {**capstone_config(), **changes}
    return lambda: dict(config)


CAPSTONE = {
    "defaults": Mutant(_config(init="default", residual=False, norm="none", scaling="none", clip=None),
                       "the defaults: a deep plain network with PyTorch's default initialization does not train "
                       "(block 1's gradient is 10^-10 of block 50's)"),
    "plain_with_norm": Mutant(_config(residual=False), "normalization and initialization without residual "
                              "connections: fifty random layers make every input look alike at the top, and the "
                              "loss stays at ln 3 — the skip connections carry the input forward"),
    "residual_no_norm": Mutant(_config(norm="none", clip=None), "residual connections with Kaiming's init and no "
                               "normalization: each block doubles the stream's variance (2^50) and the loss "
                               "overflows at once"),
    "clipped_every_step": Mutant(_config(init="default", norm="none", clip=1.0), "Section 5's network kept alive "
                                 "by clipping at 1: the clip acts on almost every step, which is a smaller learning "
                                 "rate in disguise; fix the stream's growth (normalization) instead"),
    "max_norm_too_small": Mutant(_config(clip=1.0), "max_norm below the typical gradient norm: clipping then acts on "
                                 "most steps; pick it above the norms of a healthy run (Lesson 4)"),
    "no_safety_net": Mutant(_config(clip=None), "Section 7's pre-norm network without a safety net: it trains, "
                            "but its gradient norm spikes (to 4.5-21, above 6 on most seeds) unclipped, and the "
                            "loss jumps back up with it; clipping at a max_norm above the typical norm (about 1.3) "
                            "and below the spikes is what stops them (Lesson 4)"),
    "net_above_the_spikes": Mutant(_config(clip=20.0), "a safety net above the spikes: they reach 4.5-21, so "
                                   "max_norm 20 almost never acts and they go through as if there were no clip; "
                                   "put max_norm near a high quantile of a healthy run's gradient norms (Lesson 4)"),
    "post_norm": Mutant(_config(placement="post"), "post-norm at depth: its skip path passes through every block's "
                        "norm and keeps 2^(-L/2) of the signal, so the inputs look alike at the top and the loss "
                        "stays at ln 3; pre-norm keeps the skip path clean"),
}
