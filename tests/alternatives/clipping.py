"""Correct implementations of lesson 04's exercises written differently from the reference.

They draw on other operations, loop orders and containers, as students' correct answers do; the
exercise checks must accept every one of them.
"""

from __future__ import annotations

import math

import torch


def _params(parameters):
    return [parameters] if isinstance(parameters, torch.Tensor) else list(parameters)


def clip_grad_value_masked(parameters, clip_value):
    """Masked assignment instead of clamp (NaN compares False, so it stays NaN)."""
    for p in _params(parameters):
        if p.grad is None:
            continue
        g = p.grad
        g[g > clip_value] = clip_value
        g[g < -clip_value] = -clip_value


def clip_grad_value_where(parameters, clip_value):
    """torch.where into .data, one side at a time."""
    for p in filter(lambda q: q.grad is not None, _params(parameters)):
        g = p.grad
        g.data = torch.where(g > clip_value, torch.full_like(g, clip_value), g)
        g.data = torch.where(g < -clip_value, torch.full_like(g, -clip_value), g.data)


def clip_grad_norm_flat(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """One flat vector of every gradient (equal to the norm of norms for p in (0, inf])."""
    params = _params(parameters)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    p = math.inf if norm_type in ("inf", math.inf) else float(norm_type)
    dtype = torch.float64 if any(g.dtype == torch.float64 for g in grads) else grads[0].dtype
    flat = torch.cat([g.reshape(-1).to(dtype) for g in grads])
    total = flat.abs().max() if p == math.inf else flat.abs().pow(p).sum().pow(1.0 / p)
    if error_if_nonfinite and not torch.isfinite(total):
        raise RuntimeError(f"the total norm of order {norm_type} is non-finite")
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef.to(g.dtype))
    return total


def clip_grad_norm_loops(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Norm of per-parameter norms, then min(1, ·) in Python; a list copied from any iterable."""
    params = list(_params(parameters))
    grads = [p.grad for p in params if p.grad is not None]
    if len(grads) == 0:
        return torch.tensor(0.0)
    inf = norm_type == "inf" or norm_type == float("inf")
    norms = torch.stack([torch.linalg.vector_norm(g, float("inf") if inf else norm_type) for g in grads])
    total = norms.max() if inf else torch.linalg.vector_norm(norms, norm_type)
    if error_if_nonfinite and (torch.isnan(total) or torch.isinf(total)):
        raise RuntimeError("non-finite norm")
    coef = max_norm / (total + 1e-6)
    coef = torch.minimum(coef, torch.ones_like(coef))
    for g in grads:
        g.mul_(coef)
    return total


def adaptive_clip_grad_rows(parameters, clip_factor=0.01, eps=1e-3):
    """Row-by-row loop over output units."""
    for p in _params(parameters):
        if p.grad is None:
            continue
        w = p.detach().reshape(p.shape[0], -1) if p.ndim > 1 else p.detach().reshape(1, -1)
        g = p.grad.reshape(w.shape)  # a view: writing into it writes p.grad
        for i in range(w.shape[0]):
            limit = clip_factor * max(float(w[i].norm()), eps)
            norm = float(g[i].norm())
            if norm > limit:
                g[i] *= limit / max(norm, 1e-6)


def adaptive_clip_grad_vectorised(parameters, clip_factor=0.01, eps=1e-3):
    """Flatten each parameter to (units, fan) and scale with one min(1, ·)."""
    for p in _params(parameters):
        if p.grad is None:
            continue
        shape = (p.shape[0], -1) if p.ndim > 1 else (1, -1)
        w, g = p.detach().reshape(shape), p.grad.reshape(shape)
        limit = clip_factor * w.norm(dim=1, keepdim=True).clamp(min=eps)
        norm = g.norm(dim=1, keepdim=True)
        scale = torch.where(norm > limit, limit / norm.clamp(min=1e-6), torch.ones_like(norm))
        p.grad.copy_((g * scale).reshape(p.grad.shape))


def train_step_explicit(model, optimizer, micro_batches, max_norm, clip, scaler=None):
    """set_to_none=False, the losses summed first and one backward; the scaler's own enabled path."""
    optimizer.zero_grad(set_to_none=False)
    n = len(micro_batches)
    loss = sum(torch.nn.functional.mse_loss(model(x), y, reduction="mean") for x, y in micro_batches) / n
    if scaler is not None:
        loss = scaler.scale(loss)
    loss.backward()
    if scaler is not None:
        scaler.unscale_(optimizer)
    norm = clip(list(model.parameters()), max_norm=max_norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    return norm


def pick_max_norm_numpy(logged_norms, quantile=0.9):
    """numpy: nanquantile after turning inf into NaN."""
    import numpy as np

    x = np.asarray(logged_norms.tolist() if isinstance(logged_norms, torch.Tensor) else logged_norms, dtype=float)
    x = np.where(np.isfinite(x), x, np.nan)
    if np.isnan(x).all():
        raise ValueError("no finite norm")
    return float(np.nanquantile(x, quantile))


def pick_max_norm_sorted(logged_norms, quantile=0.9):
    """By hand: sort the finite norms and interpolate between neighbours."""
    xs = sorted(float(v) for v in logged_norms if math.isfinite(float(v)))
    if not xs:
        raise ValueError("no finite gradient norms")
    pos = quantile * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (pos - lo) * (xs[hi] - xs[lo])


ALTERNATIVES = {
    "train_step": [train_step_explicit],
    "pick_max_norm": [pick_max_norm_numpy, pick_max_norm_sorted],
    "clip_grad_value_": [clip_grad_value_masked, clip_grad_value_where],
    "clip_grad_norm_": [clip_grad_norm_flat, clip_grad_norm_loops],
    "adaptive_clip_grad_": [adaptive_clip_grad_rows, adaptive_clip_grad_vectorised],
}
