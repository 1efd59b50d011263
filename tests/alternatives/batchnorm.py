"""Correct implementations of lesson 05's exercises written differently from the reference.

Pairs carry their partner as an attribute (``fn.batchnorm_forward``, ``fn.standardize_fit``,
``fn.BatchNorm1d``), as the runner looks for it; several use a cache or stats of their own design,
which the grader never sees — only the arrays they compute.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


def _pair(name, partner):
    def attach(fn):
        setattr(fn, name, partner)
        return fn

    return attach


# ----------------------------------------------------------------------------------------------
# standardize: a tuple instead of a dict; a class-like closure with loops


def _fit_tuple(x_train):
    mean = np.mean(x_train, axis=0)
    std = np.std(x_train, axis=0)
    std[std == 0] = 1.0
    return mean, std


@_pair("standardize_fit", _fit_tuple)
def standardize_apply_tuple(x, stats):
    mean, std = stats
    return (x - mean) / std


def _fit_loops(x_train):
    n, d = x_train.shape
    means, scales = [], []
    for j in range(d):
        column = [float(v) for v in x_train[:, j]]
        mu = math.fsum(column) / n
        var = math.fsum((v - mu) ** 2 for v in column) / n
        means.append(mu)
        scales.append(math.sqrt(var) if var > 0 else 1.0)
    return {"mu": np.array(means), "sigma": np.array(scales)}


@_pair("standardize_fit", _fit_loops)
def standardize_apply_loops(x, stats):
    out = np.empty_like(x, dtype=np.float64)
    for j in range(x.shape[1]):
        out[:, j] = (x[:, j] - stats["mu"][j]) / stats["sigma"][j]
    return out


def _fit_torch(x_train):
    t = torch.as_tensor(x_train, dtype=torch.float64)
    var, mean = torch.var_mean(t, dim=0, correction=0)
    return mean, torch.where(var > 0, var.sqrt(), torch.ones_like(var))


@_pair("standardize_fit", _fit_torch)
def standardize_apply_torch(x, stats):
    mean, std = stats
    return ((torch.as_tensor(x, dtype=torch.float64) - mean) / std).numpy()


# ----------------------------------------------------------------------------------------------
# batchnorm_forward: a CS231n-style cache; a staged cache with float64 sums


def batchnorm_forward_staged(x, gamma, beta, running_mean, running_var, training=True, momentum=0.1, eps=1e-5):
    if training:
        n = x.shape[0]
        mu = np.sum(x, axis=0) / n
        xmu = x - mu
        sq = xmu**2
        var = np.sum(sq, axis=0) / n
        sqrtvar = np.sqrt(var + eps)
        ivar = 1.0 / sqrtvar
        xhat = xmu * ivar
        out = gamma * xhat + beta
        np.multiply(running_mean, 1 - momentum, out=running_mean)
        np.add(running_mean, momentum * mu, out=running_mean)
        running_var *= 1 - momentum
        running_var += momentum * var * n / (n - 1)
        cache = ("train", xhat, gamma, xmu, ivar, sqrtvar, var, eps)
    else:
        ivar = 1.0 / np.sqrt(running_var + eps)
        xhat = (x - running_mean) * ivar
        out = gamma * xhat + beta
        cache = ("eval", xhat, gamma, ivar)
    return out, cache


def batchnorm_forward_inplace_slices(x, gamma, beta, running_mean, running_var, training=True, momentum=0.1,
                                     eps=1e-5):
    if not training:
        out = gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta
        return out, {"x": x, "gamma": gamma, "mean": running_mean.copy(), "var": running_var.copy(), "eps": eps,
                     "training": False}
    mean, var = x.mean(axis=0), x.var(axis=0)
    out = gamma * (x - mean) / np.sqrt(var + eps) + beta
    running_mean[:] = (1 - momentum) * running_mean + momentum * mean
    running_var[:] = (1 - momentum) * running_var + momentum * x.var(axis=0, ddof=1)
    return out, {"x": x, "gamma": gamma, "mean": mean, "var": var, "eps": eps, "training": True}


# ----------------------------------------------------------------------------------------------
# batchnorm_backward: the CS231n staged graph; the full Jacobian per feature. (Autograd is not an
# alternative: the exercise is the derivation, and the grade gives it no points — it is a mutant.)


@_pair("batchnorm_forward", batchnorm_forward_staged)
def batchnorm_backward_staged(dout, cache):
    if cache[0] == "eval":
        _, xhat, gamma, ivar = cache
        return dout * gamma * ivar, np.sum(dout * xhat, axis=0), np.sum(dout, axis=0)
    _, xhat, gamma, xmu, ivar, sqrtvar, var, eps = cache
    n = dout.shape[0]
    dbeta = np.sum(dout, axis=0)
    dgamma = np.sum(dout * xhat, axis=0)
    dxhat = dout * gamma
    divar = np.sum(dxhat * xmu, axis=0)
    dxmu1 = dxhat * ivar
    dsqrtvar = -1.0 / (sqrtvar**2) * divar
    dvar = 0.5 * 1.0 / np.sqrt(var + eps) * dsqrtvar
    dsq = 1.0 / n * np.ones_like(dout) * dvar
    dxmu2 = 2 * xmu * dsq
    dx1 = dxmu1 + dxmu2
    dmu = -1 * np.sum(dx1, axis=0)
    dx2 = 1.0 / n * np.ones_like(dout) * dmu
    return dx1 + dx2, dgamma, dbeta


@_pair("batchnorm_forward", batchnorm_forward_inplace_slices)
def batchnorm_backward_jacobian(dout, cache):
    """Feature by feature, the whole Jacobian d x_hat_j / d x_i = s (delta_ij - 1/M) - (s/M) x_hat_i x_hat_j
    (Section 3's derivation before it is summed), then dx = J^T (dout * gamma)."""
    x, gamma = cache["x"], cache["gamma"]
    m, c = x.shape
    dx = np.empty_like(x, dtype=np.float64)
    for j in range(c):
        s = 1.0 / math.sqrt(cache["var"][j] + cache["eps"])
        if cache["training"]:
            xhat = (x[:, j] - cache["mean"][j]) * s
            jac = s * (np.eye(m) - 1.0 / m) - (s / m) * np.outer(xhat, xhat)
        else:
            jac = s * np.eye(m)
        dx[:, j] = jac.T @ (dout[:, j] * gamma[j])
    xhat_all = (x - cache["mean"]) / np.sqrt(cache["var"] + cache["eps"])
    return dx, (dout * xhat_all).sum(axis=0), dout.sum(axis=0)


# ----------------------------------------------------------------------------------------------
# batchnorm_backward_alt: the closed form, written two ways


@_pair("batchnorm_forward", batchnorm_forward_staged)
def batchnorm_backward_alt_cs231n(dout, cache):
    if cache[0] == "eval":
        _, xhat, gamma, ivar = cache
        return dout * gamma * ivar, np.sum(dout * xhat, axis=0), np.sum(dout, axis=0)
    _, xhat, gamma, xmu, ivar, sqrtvar, var, eps = cache
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dx = (gamma * ivar / n) * (n * dout - dbeta - xhat * dgamma)
    return dx, dgamma, dbeta


@_pair("batchnorm_forward", batchnorm_forward_inplace_slices)
def batchnorm_backward_alt_means(dout, cache):
    x, gamma, mean, var, eps = cache["x"], cache["gamma"], cache["mean"], cache["var"], cache["eps"]
    s = 1 / np.sqrt(var + eps)
    xhat = (x - mean) * s
    g = dout * gamma
    dx = s * (g - g.mean(0) - xhat * (g * xhat).mean(0)) if cache["training"] else s * g
    return dx, np.einsum("nc,nc->c", dout, xhat), np.einsum("nc->c", dout)


# ----------------------------------------------------------------------------------------------
# BatchNorm1d: var_mean with flattened channels; moveaxis and a manual counter in a buffer


class BatchNorm1dFlat(nn.Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x):
        flat = x.transpose(0, 1).reshape(self.num_features, -1) if x.dim() == 3 else x.t()  # (C, M)
        if self.training:
            var, mean = torch.var_mean(flat, dim=1, correction=0)
            with torch.no_grad():
                self.num_batches_tracked += 1
                f = 1.0 / self.num_batches_tracked.item() if self.momentum is None else self.momentum
                m = flat.shape[1]
                self.running_mean.lerp_(mean.detach(), f)
                self.running_var.lerp_(var.detach() * m / (m - 1), f)
        else:
            mean, var = self.running_mean, self.running_var
        shape = (1, -1, 1) if x.dim() == 3 else (1, -1)
        scale = (self.weight / torch.sqrt(var + self.eps)).view(shape)
        return (x - mean.view(shape)) * scale + self.bias.view(shape)


class BatchNorm1dMoveaxis(nn.Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.long))

    def forward(self, x):
        h = torch.movedim(x, 1, -1)  # channels last: (N, C) or (N, L, C)
        if self.training:
            rows = h.reshape(-1, h.shape[-1])
            mean = rows.sum(0) / rows.shape[0]
            var = ((rows - mean) ** 2).sum(0) / rows.shape[0]
            self.num_batches_tracked.add_(1)
            f = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
            unbiased = var.detach() * rows.shape[0] / (rows.shape[0] - 1)
            self.running_mean.copy_((1 - f) * self.running_mean + f * mean.detach())
            self.running_var.copy_((1 - f) * self.running_var + f * unbiased)
        else:
            mean, var = self.running_mean, self.running_var
        y = (h - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias
        return torch.movedim(y, -1, 1)


# ----------------------------------------------------------------------------------------------
# fold_batchnorm: torch.addcmul/diag; a copy.deepcopy of the Linear


def fold_batchnorm_diag(linear, bn):
    with torch.no_grad():
        s = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        w = torch.diag(s) @ linear.weight
        b = linear.bias if linear.bias is not None else torch.zeros_like(s)
        out = nn.Linear(linear.in_features, linear.out_features, dtype=linear.weight.dtype)
        out.weight.copy_(w)
        out.bias.copy_(bn.bias + s * (b - bn.running_mean))
    return out


def fold_batchnorm_deepcopy(linear, bn):
    import copy

    folded = copy.deepcopy(linear)
    std = (bn.running_var + bn.eps).sqrt()
    with torch.no_grad():
        folded.weight.mul_((bn.weight / std).unsqueeze(1))
        if folded.bias is None:
            folded.bias = nn.Parameter(torch.zeros(linear.out_features, dtype=linear.weight.dtype))
        folded.bias.sub_(bn.running_mean).mul_(bn.weight / std).add_(bn.bias)
    return folded


# ----------------------------------------------------------------------------------------------
# train_bn_classifier: epochs of shuffled minibatches; set_to_none and explicit no_grad prediction


@_pair("BatchNorm1d", BatchNorm1dFlat)
def train_bn_classifier_epochs(model, x_train, y_train, x_test, steps=100, lr=0.1, batch_size=32, seed=0):
    torch.manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    done = 0
    while done < steps:
        order = torch.randperm(len(x_train))
        for start in range(0, len(x_train) - batch_size + 1, batch_size):
            if done == steps:
                break
            idx = order[start:start + batch_size]
            model.train()
            opt.zero_grad()
            nn.functional.cross_entropy(model(x_train[idx]), y_train[idx]).backward()
            opt.step()
            done += 1
    model.eval()
    with torch.no_grad():
        return model(x_test)


@_pair("BatchNorm1d", BatchNorm1dMoveaxis)
def train_bn_classifier_manual_sgd(model, x_train, y_train, x_test, steps=100, lr=0.1, batch_size=32, seed=0):
    g = torch.Generator().manual_seed(seed + 1)
    model.train()
    for _ in range(steps):
        idx = torch.randperm(len(x_train), generator=g)[:batch_size]
        loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
        grads = torch.autograd.grad(loss, list(model.parameters()))
        with torch.no_grad():
            for p, dp in zip(model.parameters(), grads):
                p -= lr * dp
    model.eval()
    with torch.inference_mode():
        return model(x_test).clone()


ALTERNATIVES = {
    "standardize_apply": [standardize_apply_tuple, standardize_apply_loops, standardize_apply_torch],
    "batchnorm_forward": [batchnorm_forward_staged, batchnorm_forward_inplace_slices],
    "batchnorm_backward": [batchnorm_backward_staged, batchnorm_backward_jacobian],
    "batchnorm_backward_alt": [batchnorm_backward_alt_cs231n, batchnorm_backward_alt_means],
    "BatchNorm1d": [BatchNorm1dFlat, BatchNorm1dMoveaxis],
    "fold_batchnorm": [fold_batchnorm_diag, fold_batchnorm_deepcopy],
    "train_bn_classifier": [train_bn_classifier_epochs, train_bn_classifier_manual_sgd],
}
