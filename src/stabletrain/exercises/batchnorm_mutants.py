"""Lesson 05's mutant catalogue: plausible wrong implementations, each with its misconception.

Imported by the grader and the project's tests only (never in a student's grading kernel). Each
mutant of a paired exercise carries its partner as an attribute (``fn.batchnorm_forward``,
``fn.standardize_fit``, ``fn.BatchNorm1d``), the reference's, so that the mutant is the only mistake.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .. import norm_modules, normalization
from .base import Mutant


def _with(partner: str, value):
    def attach(fn):
        setattr(fn, partner, value)
        return fn

    return attach


# ----------------------------------------------------------------------------------------------
# standardize_apply (with the reference standardize_fit unless the mutant needs its own)

_fit = _with("standardize_fit", normalization.standardize_fit)


def _mean_std_fit(ddof=0, eps=0.0, guard=True, axis=0):
    def fit(x_train):
        mean = x_train.mean(axis=axis, keepdims=axis == 1)
        std = x_train.std(axis=axis, ddof=ddof, keepdims=axis == 1)
        if guard:
            std = np.where(std > 0, std, 1.0)
        return {"mean": mean, "std": std + eps}

    return fit


def _apply(x, stats):
    return (x - stats["mean"]) / stats["std"]


def _own_statistics(x, stats):
    std = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)


def _copy(fn, fit):
    def apply(x, stats):
        return fn(x, stats)

    apply.standardize_fit = fit
    return apply


@_fit
def _centre_only(x, stats):
    return x - stats["mean"]


@_fit
def _divide_by_variance(x, stats):
    return (x - stats["mean"]) / stats["scale"] ** 2


@_with("standardize_fit", lambda x_train: (x_train.mean(axis=0), x_train.std(axis=0)))
def _divide_by_zero(x, stats):
    mean, std = stats
    with np.errstate(divide="ignore", invalid="ignore"):
        return (x - mean) / std


def _in_place_fit(x_train):
    x_train -= x_train.mean(axis=0)  # standardizes the caller's array as a side effect
    return normalization.standardize_fit(x_train + 0.0)


@_with("standardize_fit", lambda x_train: _in_place_fit(x_train))
def _modifies_input(x, stats):
    return normalization.standardize_apply(x, stats)


STANDARDIZE: dict[str, Mutant] = {
    "own_statistics": Mutant(_with("standardize_fit", normalization.standardize_fit)(_own_statistics),
                             "the test set must be transformed with the statistics of the TRAINING set; "
                             "recomputing mean and std on the data being transformed leaks test data and "
                             "changes what a feature value means (one test sample would become all zeros)."),
    "unbiased_std": Mutant(_copy(_apply, _mean_std_fit(ddof=1)),
                           "standardization divides by the biased standard deviation (divide by n, not n - 1), "
                           "so the standardized training set has variance exactly 1, as StandardScaler does."),
    "eps_not_guard": Mutant(_copy(_apply, _mean_std_fit(eps=1e-8, guard=False)),
                            "a constant feature (std 0) gets the scale 1, it is only centred; adding a tiny eps "
                            "to the std instead turns any test value that differs from the constant into a huge "
                            "number."),
    "divide_by_zero": Mutant(_divide_by_zero, "a feature that is constant on the training set has std 0: divide by "
                             "1 there (only centre it), never by 0 — 0/0 gives NaN."),
    "wrong_axis": Mutant(_copy(_apply, _mean_std_fit(axis=1)),
                         "statistics are per FEATURE, over the samples (axis 0), not per sample over its features."),
    "centre_only": Mutant(_centre_only, "standardizing also divides by the standard deviation, so every feature "
                          "ends up with variance 1, not only mean 0."),
    "divide_by_variance": Mutant(_divide_by_variance, "divide by the standard deviation, not the variance."),
    "returns_linear_unchanged": Mutant(lambda linear, bn: linear,
                                       "folding changes the weights: return a new Linear with weight s[:, None] * W "
                                       "and bias s * (b - running_mean) + beta, s = gamma / sqrt(running_var + eps); "
                                       "the given Linear alone skips batch norm."),
    "modifies_input": Mutant(_modifies_input, "standardize_fit must not change the array it is given (x_train -= "
                             "mean works in place on the caller's data); compute on a copy."),
}


# ----------------------------------------------------------------------------------------------
# batchnorm_forward


def _forward(x, gamma, beta, running_mean, running_var, training=True, momentum=0.1, eps=1e-5, *,
             reversed_momentum=False, biased_running=False, unbiased_out=False, axis=0, eps_outside=False,
             no_eps=False, eval_batch=False, rebind=False, eval_updates=False, bessel_size=False, std_running=False):
    n = x.shape[axis]
    use_batch = training or eval_batch
    if use_batch:
        mean = x.mean(axis=axis, keepdims=True)
        var = x.var(axis=axis, keepdims=True)
        out_var = var * n / (n - 1) if unbiased_out else var
    else:
        mean, out_var = running_mean, running_var
    if no_eps:
        with np.errstate(divide="ignore", invalid="ignore"):
            x_hat = (x - mean) / np.sqrt(out_var)
    elif eps_outside:
        x_hat = (x - mean) / (np.sqrt(out_var) + eps)
    else:
        x_hat = (x - mean) / np.sqrt(out_var + eps)
    out = gamma * x_hat + beta
    if training or eval_updates:
        batch_mean = x.mean(axis=0)
        batch_var = x.var(axis=0) if biased_running else x.var(axis=0, ddof=1)
        if bessel_size:  # the Bessel factor from x.size (N * C values), not from the N values per feature
            batch_var = x.var(axis=0) * x.size / (x.size - 1)
        if std_running:
            batch_var = np.sqrt(batch_var)
        keep, take = (momentum, 1 - momentum) if reversed_momentum else (1 - momentum, momentum)
        new_mean = keep * running_mean + take * batch_mean
        new_var = keep * running_var + take * batch_var
        if rebind:
            running_mean, running_var = new_mean, new_var  # only the local names change
        else:
            running_mean[:] = new_mean
            running_var[:] = new_var
    return out, {"x_hat": x_hat}


def _forward_mutant(**flags):
    def fn(x, gamma, beta, running_mean, running_var, training=True, momentum=0.1, eps=1e-5):
        return _forward(x, gamma, beta, running_mean, running_var, training, momentum, eps, **flags)

    return fn


FORWARD: dict[str, Mutant] = {
    "reversed_momentum": Mutant(_forward_mutant(reversed_momentum=True),
                                "PyTorch's momentum is the weight of the NEW batch: running = (1 - momentum) * "
                                "running + momentum * batch. CS231n's assignment uses the opposite convention "
                                "(momentum * running + (1 - momentum) * batch)."),
    "biased_running_var": Mutant(_forward_mutant(biased_running=True),
                                 "the running variance is updated with the UNBIASED batch variance (divide by "
                                 "N - 1), while the output uses the biased one (divide by N), as in PyTorch."),
    "unbiased_output": Mutant(_forward_mutant(unbiased_out=True),
                              "the output is normalized with the BIASED batch variance (divide by N); only the "
                              "running variance uses N - 1."),
    "wrong_axis": Mutant(_forward_mutant(axis=1),
                         "batch norm averages over the batch (axis 0), one mean and variance per feature; axis 1 "
                         "would average over the features of each sample (that is layer norm)."),
    "eps_outside_sqrt": Mutant(_forward_mutant(eps_outside=True),
                               "eps goes INSIDE the square root: (x - mean) / sqrt(var + eps). Outside, "
                               "sqrt(var) + eps barely protects a feature whose variance is tiny."),
    "no_eps": Mutant(_forward_mutant(no_eps=True),
                     "eps is there for features with zero variance: without it, 0 / 0 gives NaN."),
    "eval_uses_batch": Mutant(_forward_mutant(eval_batch=True),
                              "in evaluation (training=False) the RUNNING mean and variance replace the batch "
                              "statistics, so an output does not depend on the other samples of its batch."),
    "rebound_running_stats": Mutant(_forward_mutant(rebind=True),
                                    "the running statistics must be updated IN PLACE (running_mean *= 1 - m; "
                                    "running_mean += m * mean, or running_mean[:] = ...): `running_mean = ...` "
                                    "only rebinds a local name and the caller's arrays never change."),
    "eval_updates_running": Mutant(_forward_mutant(eval_updates=True),
                                   "evaluation must not change the running statistics: only training steps "
                                   "update them."),
    "bessel_from_size": Mutant(_forward_mutant(bessel_size=True),
                               "the unbiased variance divides by M - 1 with M the number of values PER FEATURE (the "
                               "batch size N here); x.size counts every entry of the (N, C) array, N * C."),
    "running_var_tracks_std": Mutant(_forward_mutant(std_running=True),
                                     "running_var averages the (unbiased) batch VARIANCE, not the standard "
                                     "deviation; evaluation takes the square root of running_var + eps itself."),
}


# ----------------------------------------------------------------------------------------------
# batchnorm_backward and batchnorm_backward_alt (on the reference forward's cache)

_forward_ref = _with("batchnorm_forward", normalization.batchnorm_forward)


def _unpack(cache):
    x, mean, inv_std, gamma = cache["x"], cache["mean"], cache["inv_std"], cache["gamma"]
    return x, x - mean, inv_std, gamma, cache["count"], cache["training"]


@_forward_ref
def _stats_constant(dout, cache):
    x, xc, s, gamma, m, training = _unpack(cache)
    return dout * gamma * s, (dout * xc * s).sum(0), dout.sum(0)


def _closed_form(dout, cache, *, count_offset=0, mean_term=True, variance_sign=-1.0, gamma=True):
    """The closed-form backward pass, with one term of it changed by the flags (the mutants below)."""
    x, xc, s, g, m, training = _unpack(cache)
    x_hat = xc * s
    dx_hat = dout * g if gamma else dout  # gamma=False: y = gamma * x_hat + beta forgotten
    dgamma, dbeta = (dout * x_hat).sum(0), dout.sum(0)
    if not training:
        return dx_hat * s, dgamma, dbeta
    m = m + count_offset
    mean_sum = dx_hat.sum(0) if mean_term else 0.0
    dx = s / m * (m * dx_hat - mean_sum + variance_sign * x_hat * (dx_hat * x_hat).sum(0))
    return dx, dgamma, dbeta


def _closed_mutant(**flags):
    @_forward_ref
    def batchnorm_backward(dout, cache):
        return _closed_form(dout, cache, **flags)

    return batchnorm_backward


_no_mean_path = _closed_mutant(mean_term=False)
_no_variance_path = _closed_mutant(variance_sign=0.0)
_n_minus_one = _closed_mutant(count_offset=-1)
_variance_sign = _closed_mutant(variance_sign=1.0)
_no_gamma = _closed_mutant(gamma=False)


@_forward_ref
def _dgamma_of_x(dout, cache):
    dx, _, dbeta = normalization.batchnorm_backward(dout, cache)
    return dx, (dout * cache["x"]).sum(0), dbeta


@_forward_ref
def _sums_over_features(dout, cache):
    dx, _, _ = normalization.batchnorm_backward(dout, cache)
    x, xc, s, gamma, m, training = _unpack(cache)
    return dx, (dout * xc * s).sum(1), dout.sum(1)


@_forward_ref
def _eval_like_training(dout, cache):
    x = cache["x"]
    mean = x.mean(0, keepdims=True)
    s = 1 / np.sqrt(x.var(0, keepdims=True) + 1e-5)
    x_hat = (x - mean) * s
    dx_hat = dout * cache["gamma"]
    m = x.shape[0]
    dx = s / m * (m * dx_hat - dx_hat.sum(0) - x_hat * (dx_hat * x_hat).sum(0))
    if cache["training"]:
        return normalization.batchnorm_backward(dout, cache)
    return dx, (dout * (x - cache["mean"]) * cache["inv_std"]).sum(0), dout.sum(0)


@_forward_ref
def _sums_without_gamma(dout, cache):
    x, xc, s, gamma, m, training = _unpack(cache)
    x_hat = xc * s
    dbeta, dgamma = dout.sum(0), (dout * x_hat).sum(0)
    if not training:
        return dout * gamma * s, dgamma, dbeta
    dx = s / m * (m * dout * gamma - dbeta - x_hat * dgamma)  # sum(dx_hat) is gamma * dbeta, not dbeta
    return dx, dgamma, dbeta


def _autograd_backward(dout, cache):
    x = torch.tensor(cache["x"], dtype=torch.float64, requires_grad=True)
    gamma = torch.tensor(cache["gamma"].reshape(-1), dtype=torch.float64, requires_grad=True)
    beta = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    if cache["training"]:  # a correct answer computed by autograd (the cases train with eps = 1e-5)
        mean = x.mean(0)
        inv_std = 1 / torch.sqrt(((x - mean) ** 2).mean(0) + 1e-5)
    else:  # the running statistics: constants
        mean, inv_std = torch.tensor(cache["mean"].reshape(-1)), torch.tensor(cache["inv_std"].reshape(-1))
    out = gamma * (x - mean) * inv_std + beta
    out.backward(torch.tensor(dout, dtype=torch.float64))
    return x.grad.numpy(), gamma.grad.numpy(), beta.grad.numpy()


_autograd_backward.batchnorm_forward = normalization.batchnorm_forward


def _backward_catalogue() -> dict[str, Mutant]:
    return {
        "stats_constant": Mutant(_stats_constant, "in training the batch mean and variance depend on every x: dx "
                                 "has two more terms than dout * gamma / sqrt(var + eps) (which is only right in "
                                 "evaluation, where they are constants)."),
        "no_mean_path": Mutant(_no_mean_path, "the batch mean depends on x too: dx needs the term "
                               "-(1/M) * sum(dx_hat) from the path through the mean."),
        "no_variance_path": Mutant(_no_variance_path, "the batch variance depends on x too: dx needs the term "
                                   "-(x_hat/M) * sum(dx_hat * x_hat) from the path through the variance."),
        "dgamma_of_x": Mutant(_dgamma_of_x, "gamma multiplies the NORMALIZED input: dgamma = sum(dout * x_hat), "
                              "not sum(dout * x)."),
        "sums_over_features": Mutant(_sums_over_features, "dgamma and dbeta sum over the batch (axis 0), one value "
                                     "per feature."),
        "n_minus_one": Mutant(_n_minus_one, "the output uses the biased variance (divide by M), so the closed form "
                              "has M, not M - 1."),
        "eval_like_training": Mutant(_eval_like_training, "in evaluation the forward pass used the running "
                                     "statistics, which do not depend on x: dx = dout * gamma / sqrt(running_var "
                                     "+ eps), with no batch terms."),
        "variance_sign": Mutant(_variance_sign, "check the sign of the variance term: dx = (s/M)(M dx_hat - "
                                "sum(dx_hat) - x_hat * sum(dx_hat * x_hat))."),
        "no_gamma": Mutant(_no_gamma, "the output is gamma * x_hat + beta, so the gradient reaching x_hat is "
                           "dx_hat = dout * gamma: every term of dx carries gamma."),
        "sums_without_gamma": Mutant(_sums_without_gamma,
                                     "in the closed form the sums are over dx_hat = dout * gamma: sum(dx_hat) = "
                                     "gamma * dbeta and sum(dx_hat * x_hat) = gamma * dgamma, not dbeta and dgamma."),
        "autograd": Mutant(_autograd_backward, "the backward pass is to be derived and written in numpy; letting "
                           "torch's autograd differentiate the forward pass skips the exercise (it earns no points)."),
    }


BACKWARD: dict[str, Mutant] = _backward_catalogue()
BACKWARD_ALT: dict[str, Mutant] = _backward_catalogue()


# ----------------------------------------------------------------------------------------------
# BatchNorm1d


class _ModuleMutant(norm_modules.BatchNorm1d):
    """The reference module with one thing changed."""

    reversed_momentum = biased_running = detach = unbiased_out = eval_batch = no_counter = only_dim0 = False
    none_as_default = std_running = False
    count_as = ""  # "rows": M = N even for (N, C, L); "numel": M = every value of the input

    def forward(self, input):
        dims = (0,) if input.dim() == 2 or self.only_dim0 else (0, 2)
        stat_shape = (1, -1) if input.dim() == 2 else (1, -1, 1)
        count = input.numel() // input.shape[1]
        if self.count_as:
            count = input.shape[0] if self.count_as == "rows" else input.numel()
        if self.training or self.eval_batch:
            mean = input.mean(dim=dims, keepdim=True)
            var = (input - mean).square().mean(dim=dims, keepdim=True)
            if self.detach:
                mean, var = mean.detach(), var.detach()
            if self.training:
                self._update(mean, var, count)
            if self.unbiased_out:
                var = var * count / (count - 1)
        else:
            mean, var = self.running_mean.view(stat_shape), self.running_var.view(stat_shape)
        out = (input - mean) * torch.rsqrt(var + self.eps)
        return out * self.weight.view(stat_shape) + self.bias.view(stat_shape)

    @torch.no_grad()
    def _update(self, mean, var, count):
        if not self.no_counter:
            self.num_batches_tracked.add_(1)
        if self.momentum is None:
            factor = 0.1 if self.none_as_default else 1.0 / float(self.num_batches_tracked)
        else:
            factor = self.momentum
        if self.reversed_momentum:
            factor = 1 - factor
        batch_var = var if self.biased_running else var * count / (count - 1)
        if self.std_running:
            batch_var = batch_var.sqrt()
        self.running_mean.mul_(1 - factor).add_(_per_channel(mean), alpha=factor)
        self.running_var.mul_(1 - factor).add_(_per_channel(batch_var), alpha=factor)


class _Leaking(_ModuleMutant):
    """Running statistics rebound to expressions of the batch statistics, outside no_grad."""

    def _update(self, mean, var, count):
        self.num_batches_tracked.add_(1)
        f = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean = (1 - f) * self.running_mean + f * _per_channel(mean)
        self.running_var = (1 - f) * self.running_var + f * _per_channel(var) * count / (count - 1)


class _StatsAsParameters(norm_modules.BatchNorm1d):
    """Running statistics as Parameters with requires_grad=False: in the state_dict, but parameters."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__(num_features, eps, momentum)
        del self._buffers["running_mean"], self._buffers["running_var"]
        self.running_mean = nn.Parameter(torch.zeros(num_features), requires_grad=False)
        self.running_var = nn.Parameter(torch.ones(num_features), requires_grad=False)


def _per_channel(t):
    return t.mean(dim=(0, 2)) if t.dim() == 3 else t.flatten()


def _module_mutant(name: str, **flags) -> type:
    return type(name, (_ModuleMutant,), flags)


class _NoCounterBuffer(nn.Module):
    """Running statistics as buffers, but no num_batches_tracked."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.steps = 0

    def forward(self, x):
        dims = (0,) if x.dim() == 2 else (0, 2)
        shape = (1, -1) if x.dim() == 2 else (1, -1, 1)
        if self.training:
            mean = x.mean(dim=dims, keepdim=True)
            var = (x - mean).square().mean(dim=dims, keepdim=True)
            m = x.numel() // x.shape[1]
            self.steps += 1
            f = 1 / self.steps if self.momentum is None else self.momentum
            with torch.no_grad():
                self.running_mean.mul_(1 - f).add_(f * mean.flatten())
                self.running_var.mul_(1 - f).add_(f * var.flatten() * m / (m - 1))
        else:
            mean, var = self.running_mean.view(shape), self.running_var.view(shape)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight.view(shape) + self.bias.view(shape)


class _PlainAttributes(_NoCounterBuffer):
    """Running statistics as plain tensor attributes: not buffers, so not in the state_dict."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__(num_features, eps, momentum)
        running_mean, running_var = self.running_mean, self.running_var
        del self._buffers["running_mean"], self._buffers["running_var"]
        self.running_mean, self.running_var = running_mean, running_var
        self.num_batches_tracked = torch.tensor(0)


MODULE: dict[str, Mutant] = {
    "reversed_momentum": Mutant(_module_mutant("ReversedMomentum", reversed_momentum=True),
                                "running = (1 - momentum) * running + momentum * batch: momentum weighs the NEW "
                                "batch (PyTorch), the opposite of CS231n's convention."),
    "biased_running_var": Mutant(_module_mutant("BiasedRunningVar", biased_running=True),
                                 "the running variance uses the UNBIASED batch variance (times M / (M - 1))."),
    "detached_statistics": Mutant(_module_mutant("Detached", detach=True),
                                  "the batch mean and variance are functions of the input: detaching them (or "
                                  "computing them under no_grad) drops two terms of the input's gradient."),
    "unbiased_output": Mutant(_module_mutant("UnbiasedOutput", unbiased_out=True),
                              "the output is normalized with the BIASED batch variance."),
    "eval_uses_batch": Mutant(_module_mutant("EvalBatch", eval_batch=True),
                              "after model.eval() the running statistics replace the batch statistics; "
                              "check self.training in forward."),
    "counter_not_incremented": Mutant(_module_mutant("FrozenCounter", no_counter=True),
                                      "num_batches_tracked counts the training steps: add 1 at every training "
                                      "forward pass (momentum=None needs it)."),
    "only_dim0_for_3d": Mutant(_module_mutant("OnlyDim0", only_dim0=True),
                               "for (N, C, L) inputs the statistics run over N and L, one pair per channel C."),
    "momentum_none_as_default": Mutant(_module_mutant("NoneAsDefault", none_as_default=True),
                                       "momentum=None means a cumulative average: the factor is "
                                       "1 / num_batches_tracked, so every batch counts equally."),
    "num_batches_tracked_missing": Mutant(_NoCounterBuffer, "torch's BatchNorm1d has three buffers: running_mean, "
                                          "running_var and num_batches_tracked (a long tensor); without the "
                                          "third, a torch state_dict does not load."),
    "not_buffers": Mutant(_PlainAttributes, "running statistics must be registered with register_buffer: plain "
                          "tensor attributes are missing from the state_dict and are not moved by .to()."),
    "stats_as_parameters": Mutant(_StatsAsParameters,
                                  "running statistics are buffers (register_buffer), not Parameters: even with "
                                  "requires_grad=False, model.parameters() hands them to the optimizer, where weight "
                                  "decay and momentum act on them."),
    "leaks_graph": Mutant(_Leaking, "update the running statistics in place under torch.no_grad() (or from "
                          "detached statistics): `self.running_mean = (1 - m) * self.running_mean + m * mean` "
                          "outside no_grad makes the buffer a node of the batch's graph, so it drags every earlier "
                          "batch's graph along and a backward pass through an evaluation output fails."),
    "count_rows": Mutant(_module_mutant("CountRows", count_as="rows"),
                         "for (N, C, L) inputs each channel has M = N * L values: the unbiased variance of the "
                         "running average uses M / (M - 1) with that M, not the number of rows N."),
    "count_numel": Mutant(_module_mutant("CountNumel", count_as="numel"),
                          "M counts the values of ONE channel (N, or N * L for (N, C, L) inputs): x.numel() counts "
                          "every channel too."),
    "running_var_tracks_std": Mutant(_module_mutant("RunningStd", std_running=True),
                                     "running_var averages the unbiased batch VARIANCE, not the standard deviation."),
}


# ----------------------------------------------------------------------------------------------
# fold_batchnorm


def _fold(linear, bn, *, use_bias=True, eps_inside=True, columns=False, beta=True, new=True, keep_none=False,
          scale_bias=True):
    with torch.no_grad():
        if eps_inside:
            s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        else:
            s = bn.weight / (torch.sqrt(bn.running_var) + bn.eps)
        b = linear.bias if (linear.bias is not None and use_bias) else torch.zeros_like(bn.running_mean)
        bias = (s if scale_bias else 1) * (b - bn.running_mean) + (bn.bias if beta else 0)
        target = nn.Linear(linear.in_features, linear.out_features,
                           bias=not (keep_none and linear.bias is None), dtype=linear.weight.dtype) if new else linear
        weight = linear.weight * (s[None, : linear.in_features] if columns else s[:, None])
        target.weight.copy_(weight)
        if target.bias is not None:
            target.bias.copy_(bias)
        return target


def _fold_mutant(**flags):
    def fold_batchnorm(linear, bn):
        return _fold(linear, bn, **flags)

    return fold_batchnorm


def _fold_columns(linear, bn):
    if linear.in_features != linear.out_features:
        raise RuntimeError("the scale does not match the columns")
    return _fold(linear, bn, columns=True)


FOLD: dict[str, Mutant] = {
    "without_linear_bias": Mutant(_fold_mutant(use_bias=False),
                                  "the Linear's own bias passes through batch norm too: b' = s * (b - running_mean) "
                                  "+ beta."),
    "eps_outside_sqrt": Mutant(_fold_mutant(eps_inside=False),
                               "s = gamma / sqrt(running_var + eps): eps goes inside the square root."),
    "scales_columns": Mutant(_fold_columns, "batch norm scales each OUTPUT feature: multiply row i of the weight "
                             "(weight * s[:, None]), not column i."),
    "without_beta": Mutant(_fold_mutant(beta=False), "the folded bias includes beta: b' = s * (b - running_mean) + "
                           "beta."),
    "bias_not_scaled": Mutant(_fold_mutant(scale_bias=False),
                              "batch norm scales (b - running_mean) too: b' = s * (b - running_mean) + beta, with s = "
                              "gamma / sqrt(running_var + eps); only beta is added unscaled."),
    "no_bias_when_none": Mutant(_fold_mutant(keep_none=True),
                                "the folded layer always needs a bias (beta - s * running_mean), even when the "
                                "Linear had none."),
    "returns_linear_unchanged": Mutant(lambda linear, bn: linear,
                                       "folding changes the weights: return a new Linear with weight s[:, None] * W "
                                       "and bias s * (b - running_mean) + beta, s = gamma / sqrt(running_var + eps); "
                                       "the given Linear alone skips batch norm."),
    "modifies_input": Mutant(_fold_mutant(new=False), "return a NEW Linear: folding into the given layer changes "
                             "the original model (its weights become the folded ones)."),
}


# ----------------------------------------------------------------------------------------------
# train_bn_classifier (with the reference BatchNorm1d)

_bn = _with("BatchNorm1d", norm_modules.BatchNorm1d)


def _loop(model, x_train, y_train, x_test, steps=100, lr=0.1, batch_size=32, seed=0, *, train_mode=True,
          eval_mode=True, zero_grad=True, eval_first=False, train_steps=True, full_batch=False, momentum=0.0):
    generator = torch.Generator().manual_seed(seed)
    params = list(model.parameters())
    buffers = [torch.zeros_like(p) for p in params]
    if eval_first:
        model.train()
        with torch.no_grad():
            model(x_test)  # a "quick look" in training mode updates the running statistics
    model.train(train_mode)
    for _ in range(steps if train_steps else 0):
        batch = torch.arange(len(x_train)) if full_batch else torch.randint(0, len(x_train), (batch_size,),
                                                                                  generator=generator)
        loss = nn.functional.cross_entropy(model(x_train[batch]), y_train[batch])
        if zero_grad:
            for p in params:
                p.grad = None
        loss.backward()
        with torch.no_grad():
            for p, buf in zip(params, buffers):
                buf.mul_(momentum).add_(p.grad)  # torch.optim.SGD's momentum buffer (dampening 0)
                p -= lr * buf
    if eval_mode:
        model.eval()
    with torch.no_grad():
        return model(x_test)


def _loop_mutant(**flags):
    @_bn
    def train_bn_classifier(model, x_train, y_train, x_test, steps=100, lr=0.1, batch_size=32, seed=0):
        return _loop(model, x_train, y_train, x_test, steps, lr, batch_size, seed, **flags)

    return train_bn_classifier


LOOP: dict[str, Mutant] = {
    "never_eval": Mutant(_loop_mutant(eval_mode=False),
                         "call model.eval() before predicting: in training mode batch norm normalizes the test "
                         "set with its own statistics (and updates the running ones)."),
    "trains_in_eval_mode": Mutant(_loop_mutant(train_mode=False),
                                  "call model.train() before the training steps: in evaluation mode batch norm uses "
                                  "running statistics that never get updated."),
    "no_zero_grad": Mutant(_loop_mutant(zero_grad=False),
                           "gradients accumulate in .grad: reset them at every step (optimizer.zero_grad(), or p.grad = None "
                           "for every parameter)."),
    "peeks_in_train_mode": Mutant(_loop_mutant(eval_first=True),
                                  "a forward pass in training mode, even under no_grad, updates the running "
                                  "statistics with that batch: switch to eval before looking at test data."),
    "no_training": Mutant(_loop_mutant(train_steps=False), "the model has to be trained for `steps` steps first."),
    "full_batch": Mutant(_loop_mutant(full_batch=True),
                         "every step trains on ONE minibatch of batch_size samples drawn at random: with the whole "
                         "training set at every step the batch statistics are the population's, so training and "
                         "evaluation mode agree and batch norm's minibatch behaviour is never exercised."),
    "momentum": Mutant(_loop_mutant(momentum=0.9),
                       "the exercise asks for plain SGD, p -= lr * p.grad with this step's gradient: SGD with "
                       "momentum 0.9 takes steps about ten times larger along a steady gradient."),
    "full_batch_momentum": Mutant(_loop_mutant(full_batch=True, momentum=0.9),
                                  "minibatches of batch_size, drawn at random at every step, and plain SGD: a full "
                                  "batch with momentum trains a different loop than the one asked for."),
}
