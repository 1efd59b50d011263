"""Correct implementations of lesson 00's exercises written differently from the reference.

They use other operations, loop orders and containers, as students' correct answers do; the
exercise checks must accept every one of them.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

# ----------------------------------------------------------------------------------------------
# rel_error


def rel_error_added_floor(x, y):
    """The floor added rather than taken as a max (identical except below 1e-8)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"shapes {x.shape} and {y.shape} differ")
    return float((np.abs(x - y) / (np.abs(x) + np.abs(y) + 1e-8)).max())


def rel_error_torch(x, y):
    """With torch tensors, returning a Python float."""
    a, b = torch.as_tensor(np.asarray(x, dtype=np.float64)), torch.as_tensor(np.asarray(y, dtype=np.float64))
    if a.shape != b.shape:
        raise ValueError("x and y must have the same shape")
    return ((a - b).abs() / torch.clamp(a.abs() + b.abs(), min=1e-8)).max().item()


def rel_error_loop(x, y):
    """One element at a time (a NaN propagates through max())."""
    a, b = np.array(x, dtype=float), np.array(y, dtype=float)
    if a.shape != b.shape:
        raise ValueError("different shapes")
    worst = 0.0
    for u, v in zip(a.ravel(), b.ravel()):
        e = abs(u - v) / max(1e-8, abs(u) + abs(v))
        if math.isnan(e):
            return math.nan
        worst = max(worst, e)
    return worst


# ----------------------------------------------------------------------------------------------
# numerical_gradient


def numerical_gradient_flat(f, x, h=1e-5):
    """A flat view of x, restoring each coordinate by arithmetic (the last bit may change)."""
    point = x if isinstance(x, np.ndarray) and x.dtype == np.float64 else np.array(x, dtype=np.float64)
    flat = point.reshape(-1)  # a view: writing to it writes to point
    grad = np.empty(flat.size)
    for i in range(flat.size):
        flat[i] += h
        plus = f(point)
        flat[i] -= 2 * h
        minus = f(point)
        flat[i] += h
        grad[i] = (plus - minus) / (2 * h)
    return grad.reshape(point.shape)


def numerical_gradient_nditer(f, x, h=1e-5):
    """CS231n's np.nditer loop."""
    x64 = x if isinstance(x, np.ndarray) and x.dtype == np.float64 else x.astype(np.float64)
    grad = np.zeros_like(x64)
    it = np.nditer(x64, flags=["multi_index"], op_flags=["readwrite"])
    while not it.finished:
        ix = it.multi_index
        old = x64[ix]
        x64[ix] = old + h
        fxph = float(f(x64))
        x64[ix] = old - h
        fxmh = float(f(x64))
        x64[ix] = old
        grad[ix] = (fxph - fxmh) / (2 * h)
        it.iternext()
    return grad


def numerical_gradient_five_point(f, x, h=1e-5):
    """A fourth-order stencil: (-f(x+2h) + 8f(x+h) - 8f(x-h) + f(x-2h)) / 12h."""
    point = x if isinstance(x, np.ndarray) and x.dtype == np.float64 else np.asarray(x, dtype=np.float64).copy()
    grad = np.zeros(point.shape, dtype=np.float64)
    for idx in np.ndindex(*point.shape):
        old = point[idx]
        values = []
        for k in (2, 1, -1, -2):
            point[idx] = old + k * h
            values.append(float(f(point)))
        point[idx] = old
        grad[idx] = (-values[0] + 8 * values[1] - 8 * values[2] + values[3]) / (12 * h)
    return grad


# ----------------------------------------------------------------------------------------------
# grad_norms_per_layer


def grad_norms_per_layer_numpy(model):
    out = {}
    for name, p in model.named_parameters():
        if p.grad is None:
            continue
        g = p.grad.detach().cpu().numpy().astype(np.float64)
        out[name] = float(np.sqrt(np.sum(g * g)))
    return out


def grad_norms_per_layer_tensors(model):
    """0-d tensors instead of floats, from torch.linalg.norm of the flattened gradient."""
    return {n: torch.linalg.norm(p.grad.flatten()) for n, p in model.named_parameters() if p.grad is not None}


def grad_norms_per_layer_state(model):
    """Through a dict of the parameters, in any order."""
    params = dict(model.named_parameters())
    return {name: params[name].grad.norm(2).item() for name in sorted(params) if params[name].grad is not None}


# ----------------------------------------------------------------------------------------------
# ActivationStats


class ActivationStatsClosure:
    """Hooks made by a closure; the unbiased std; dead units from the batch maximum."""

    def __init__(self, model, layer_types=(nn.Tanh, nn.Sigmoid, nn.ReLU), saturation_threshold=0.97):
        self.history = {}
        self.handles = []
        for name, module in model.named_modules():
            if isinstance(module, layer_types):
                self.history[name] = []
                self.handles.append(module.register_forward_hook(self._make_hook(name, saturation_threshold)))

    def _make_hook(self, name, t):
        def hook(module, inputs, output):
            with torch.no_grad():
                h = output.detach().float()
                c = 2 * h - 1 if isinstance(module, nn.Sigmoid) else h
                self.history[name].append({
                    "mean": h.mean().item(),
                    "std": h.std().item(),  # unbiased: within 0.1 % at these batch sizes
                    "saturated": (c.abs() > t).float().mean().item(),
                    "dead": (h.reshape(len(h), -1).amax(dim=0) <= 0).float().mean().item(),
                })
        return hook

    def remove(self):
        while self.handles:
            self.handles.pop().remove()


class ActivationStatsRecords:
    """Records as small objects with attributes, numpy statistics, and a context manager."""

    class Record:
        def __init__(self, **fields):
            self.__dict__.update(fields)

    def __init__(self, model, layer_types=(nn.Tanh, nn.Sigmoid, nn.ReLU), saturation_threshold=0.97):
        types = layer_types if isinstance(layer_types, tuple) else (layer_types,)
        watched = [(n, m) for n, m in model.named_modules() if type(m) in types or isinstance(m, types)]
        self.history = {n: [] for n, _ in watched}
        self._threshold = saturation_threshold
        self._handles = [m.register_forward_hook(self._record) for _, m in watched]
        self._names = {id(m): n for n, m in watched}

    def _record(self, module, inputs, output):
        h = output.detach().cpu().numpy().astype(np.float64)
        centred = 2 * h - 1 if isinstance(module, nn.Sigmoid) else h
        units = h.reshape(h.shape[0], -1)
        self.history[self._names[id(module)]].append(self.Record(
            mean=float(h.mean()), std=float(h.std()), saturated=float(np.mean(np.abs(centred) > self._threshold)),
            dead=float(np.mean(np.all(units <= 0, axis=0)))))

    def remove(self):
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


# ----------------------------------------------------------------------------------------------
# train_and_log


def train_and_log_state_dict(model, optimizer, loss_fn, batches):
    """Snapshots with copy.deepcopy of the state dict; the ratio against the weights before the step."""
    names = [n for n, p in model.named_parameters() if p.requires_grad and p.dim() > 1]
    losses, ratios = [], {n: [] for n in names}
    for x, y in batches:
        before = copy.deepcopy(model.state_dict())
        optimizer.zero_grad(set_to_none=False)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
        after = model.state_dict()
        for n in names:
            ratios[n].append(math.log10(float((after[n] - before[n]).std() / before[n].std())))
    return losses, ratios


def train_and_log_vectors(model, optimizer, loss_fn, batches):
    """Numpy copies, float64 statistics."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad and len(p.shape) >= 2}
    losses, ratios = [], {n: [] for n in params}
    for x, y in batches:
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        before = {n: p.detach().numpy().copy() for n, p in params.items()}
        optimizer.step()
        losses.append(loss.item())
        for n, p in params.items():
            now = p.detach().numpy()
            ratios[n].append(float(np.log10(np.std(now - before[n]) / np.std(now))))
    return losses, ratios


ALTERNATIVES = {
    "rel_error": [rel_error_added_floor, rel_error_torch, rel_error_loop],
    "numerical_gradient": [numerical_gradient_flat, numerical_gradient_nditer, numerical_gradient_five_point],
    "grad_norms_per_layer": [grad_norms_per_layer_numpy, grad_norms_per_layer_tensors, grad_norms_per_layer_state],
    "ActivationStats": [ActivationStatsClosure, ActivationStatsRecords],
    "train_and_log": [train_and_log_state_dict, train_and_log_vectors],
}
