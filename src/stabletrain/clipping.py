"""Gradient clipping: by value, by global norm, and adaptive unit-wise (AGC).

The answer key of lesson ``04_gradient_clipping``. ``clip_grad_value_``, ``clip_grad_norm_``,
``get_total_norm`` and ``clip_grads_with_norm_`` reproduce the semantics of their namesakes in
``torch.nn.utils`` (torch 2.13) with plain tensor operations; ``adaptive_clip_grad_`` follows
Brock et al. 2021 (NFNets) as implemented in ``timm.utils.agc``.

Every function takes ``parameters`` as a single tensor or an iterable of tensors (a generator is
consumed exactly once) and skips tensors whose ``.grad`` is None; those gradients stay None.
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Iterable

import torch
from torch import Tensor

TensorOrTensors = Tensor | Iterable[Tensor]

#: Added to the total norm before dividing, as in torch: coef = max_norm / (total + 1e-6).
_NORM_EPS = 1e-6
#: Floor on a unit's gradient norm in AGC's rescaling, as in NFNets: max(‖G_i‖, 1e-6).
_AGC_MIN_GRAD_NORM = 1e-6


def _as_list(tensors: TensorOrTensors) -> list[Tensor]:
    """Wrap a single tensor in a list; materialise any other iterable (consuming it once)."""
    if isinstance(tensors, Tensor):
        return [tensors]
    return list(tensors)


def _grads(parameters: list[Tensor]) -> list[Tensor]:
    """The existing gradients of ``parameters``, in order; ``grad=None`` ones are left out."""
    return [p.grad for p in parameters if p.grad is not None]


def clip_grad_value_(
    parameters: TensorOrTensors, clip_value: float, foreach: bool | None = None
) -> None:
    """Clamp every gradient element into ``[-clip_value, clip_value]`` in place.

    g ← min(max(g, -c), c) elementwise, for each gradient of any shape. NaN entries stay NaN.
    Each element is clipped independently, so the direction of the gradient vector can change
    (unlike norm clipping, which only rescales it).

    Args:
        parameters: a tensor or an iterable of tensors whose ``.grad`` is clipped.
        clip_value: c, the largest magnitude allowed.
        foreach: accepted for signature compatibility with torch and ignored.

    Returns:
        None.
    """
    c = float(clip_value)
    with torch.no_grad():
        for g in _grads(_as_list(parameters)):
            g.clamp_(min=-c, max=c)


def get_total_norm(
    tensors: TensorOrTensors,
    norm_type: float | str = 2.0,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
) -> Tensor:
    """The p-norm of the per-tensor p-norms: ``‖(‖t_1‖_p, …, ‖t_k‖_p)‖_p``.

    For p in (0, ∞] this equals the p-norm of all tensors flattened and concatenated, because
    ‖t‖_p^p = Σ|t_j|^p adds up across tensors (and max of maxes is the max). For p = 0 it does
    *not*: ‖t_i‖_0 counts the non-zero entries of t_i, and the outer ‖·‖_0 then counts the
    tensors that have at least one non-zero entry.

    Args:
        tensors: a tensor or an iterable of tensors of any shapes (consumed once).
        norm_type: p; ``float("inf")`` or ``"inf"`` for the max-norm.
        error_if_nonfinite: raise RuntimeError if the total is NaN or ±inf.
        foreach: accepted for signature compatibility with torch and ignored.

    Returns:
        A 0-dim tensor on the first tensor's device, with the promoted dtype of the tensors
        (mixed float32/float64 gives float64); ``tensor(0.)`` when there are no tensors.

    Raises:
        RuntimeError: if ``error_if_nonfinite`` and the total norm is not finite.
    """
    tensors = _as_list(tensors)
    p = float(norm_type)
    if not tensors:
        return torch.tensor(0.0)
    device = tensors[0].device
    with torch.no_grad():
        norms = [torch.linalg.vector_norm(t, p).to(device) for t in tensors]
        total = torch.linalg.vector_norm(torch.stack(norms), p)
    if error_if_nonfinite and not bool(torch.isfinite(total)):
        raise RuntimeError(
            f"The total norm of order {p} for gradients from `parameters` is non-finite "
            f"({total.item()}), so it cannot be clipped. To disable this error and scale the "
            "gradients by the non-finite norm anyway, set `error_if_nonfinite=False`"
        )
    return total


def clip_grads_with_norm_(
    parameters: TensorOrTensors,
    max_norm: float,
    total_norm: Tensor,
    foreach: bool | None = None,
) -> None:
    """Scale every gradient in place by ``coef = min(max_norm / (total_norm + 1e-6), 1)``.

    The coefficient is always multiplied in, never skipped: a total equal to max_norm is still
    scaled by max_norm / (max_norm + 1e-6). A NaN total makes every gradient NaN; an infinite
    total gives coef = 0, so finite entries become 0 and infinite ones NaN (0·inf). Each gradient
    keeps its dtype.

    Args:
        parameters: a tensor or an iterable of tensors whose ``.grad`` is scaled (consumed once).
        max_norm: the norm the gradients are scaled down to.
        total_norm: a tensor holding the precomputed total norm (see :func:`get_total_norm`).
        foreach: accepted for signature compatibility with torch and ignored.

    Raises:
        TypeError: if ``total_norm`` is not a tensor.
    """
    if not isinstance(total_norm, Tensor):
        raise TypeError(
            f"total_norm must be a Tensor (as returned by get_total_norm), "
            f"got {type(total_norm).__name__}: {total_norm!r}"
        )
    grads = _grads(_as_list(parameters))
    if not grads:
        return
    with torch.no_grad():
        coef = torch.clamp(float(max_norm) / (total_norm + _NORM_EPS), max=1.0)
        for g in grads:
            g.mul_(coef.to(g.device))


def clip_grad_norm_(
    parameters: TensorOrTensors,
    max_norm: float,
    norm_type: float | str = 2.0,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
) -> Tensor:
    """Rescale all gradients together so that their global p-norm is at most ``max_norm``.

    total = ‖(‖g_1‖_p, …, ‖g_k‖_p)‖_p      (one norm over *all* gradients, see get_total_norm)
    g_i ← g_i · min(max_norm / (total + 1e-6), 1)   for every i

    All gradients share one coefficient, so the direction of the full gradient is preserved.
    This is :func:`get_total_norm` followed by :func:`clip_grads_with_norm_`. An empty
    *generator* triggers a UserWarning (nothing will be clipped); an empty list does not.

    Args:
        parameters: a tensor or an iterable of tensors whose ``.grad`` is clipped (consumed once).
        max_norm: the largest total norm allowed; 0 zeroes every gradient.
        norm_type: p; ``float("inf")`` or ``"inf"`` for the max-norm.
        error_if_nonfinite: raise RuntimeError, before any gradient changes, if the total is
            NaN or ±inf. Otherwise non-finite totals propagate (see clip_grads_with_norm_).
        foreach: accepted for signature compatibility with torch and ignored.

    Returns:
        The total norm *before* clipping, a 0-dim tensor (``tensor(0.)`` when no gradients).
    """
    is_generator = isinstance(parameters, types.GeneratorType)
    parameters = _as_list(parameters)
    if is_generator and not parameters:
        warnings.warn(
            "`parameters` is an empty generator, no gradient clipping will occur.", stacklevel=2
        )
    total = get_total_norm(_grads(parameters), norm_type, error_if_nonfinite)
    clip_grads_with_norm_(parameters, max_norm, total)
    return total


def _unitwise_norm(x: Tensor, norm_type: float) -> Tensor:
    """Norm per output unit: over dims 1.. if ndim ≥ 2, shape (out, 1, …, 1); else of the whole."""
    if x.ndim <= 1:
        return torch.linalg.vector_norm(x, norm_type)
    return torch.linalg.vector_norm(x, norm_type, dim=tuple(range(1, x.ndim)), keepdim=True)


def adaptive_clip_grad_(
    parameters: TensorOrTensors,
    clip_factor: float = 0.01,
    eps: float = 1e-3,
    norm_type: float | str = 2.0,
) -> None:
    """Adaptive gradient clipping (AGC), unit-wise, in place (Brock et al. 2021, NFNets).

    A *unit* i is one output unit of a weight: the row W_i = W[i] of a Linear weight (out, in),
    the filter W[i] of a conv weight (out, in, *kernel) -- all dims except dim 0. A tensor with
    ndim ≤ 1 (bias, gain, scalar) is a single unit. With λ = clip_factor, for every unit:

        max_norm_i = λ · max(‖W_i‖_p, eps)
        G_i ← G_i                                   if ‖G_i‖_p < max_norm_i
        G_i ← G_i · max_norm_i / max(‖G_i‖_p, 1e-6)  otherwise

    i.e. the gradient is clipped where ‖G_i‖ / max(‖W_i‖, eps) ≥ λ, which bounds the relative
    update size per unit. ``eps`` keeps zero-initialised weights from freezing. This is the
    convention of ``timm.utils.agc.adaptive_clip_grad`` (clipping at equality is a no-op unless
    max_norm_i < 1e-6).

    Args:
        parameters: a tensor or an iterable of tensors whose ``.grad`` is clipped (consumed once);
            tensors with ``grad=None`` are skipped.
        clip_factor: λ ≥ 0, the largest allowed ratio ‖G_i‖ / max(‖W_i‖, eps).
        eps: ≥ 0, the floor on the weight norm.
        norm_type: p of the unit norms; ``float("inf")`` or ``"inf"`` allowed.

    Raises:
        ValueError: if ``clip_factor`` or ``eps`` is negative.
    """
    if not clip_factor >= 0:
        raise ValueError(f"clip_factor must be non-negative, got {clip_factor}")
    if not eps >= 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    p = float(norm_type)
    with torch.no_grad():
        for param in _as_list(parameters):
            g = param.grad
            if g is None:
                continue
            max_norm = _unitwise_norm(param.detach(), p).clamp(min=eps) * clip_factor
            grad_norm = _unitwise_norm(g, p)
            clipped = g * (max_norm / grad_norm.clamp(min=_AGC_MIN_GRAD_NORM))
            g.copy_(torch.where(grad_norm < max_norm, g, clipped))


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, micro_batches, max_norm: float, clip,
               scaler=None) -> Tensor:
    """One optimizer step with gradient clipping in the right place (lesson 04's training-loop exercise).

    The loss of each micro-batch ``(x, y)`` is ``mse_loss(model(x), y) / len(micro_batches)`` (so the
    accumulated gradient is the gradient of the mean). ``clip(model.parameters(), max_norm)`` is
    called exactly once, after the last backward pass and, with a ``GradScaler``, after
    ``scaler.unscale_(optimizer)`` — so it sees the true gradient of the whole step. Returns what
    ``clip`` returned: the norm before clipping (a tensor: no ``.item()``, no device sync).
    """
    optimizer.zero_grad()
    for x, y in micro_batches:
        loss = torch.nn.functional.mse_loss(model(x), y) / len(micro_batches)
        if scaler is None:
            loss.backward()
        else:
            scaler.scale(loss).backward()
    if scaler is not None:
        scaler.unscale_(optimizer)
    total = clip(model.parameters(), max_norm)
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)
        scaler.update()
    return total


def pick_max_norm(logged_norms, quantile: float = 0.9) -> float:
    """A clipping threshold from the gradient norms logged during a warm-up run: their ``quantile``
    (linear interpolation, as ``numpy.quantile``), leaving out NaN and inf (overflowed steps).
    Raises ValueError when no logged norm is finite."""
    values = torch.as_tensor(logged_norms, dtype=torch.float64).reshape(-1)
    finite = values[torch.isfinite(values)]
    if finite.numel() == 0:
        raise ValueError("no finite gradient norm in logged_norms")
    return float(torch.quantile(finite, quantile))
