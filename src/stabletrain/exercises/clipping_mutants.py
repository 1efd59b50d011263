"""Lesson 04's mutant catalogue: plausible wrong implementations, each with its misconception.

Imported by the grader and the project's tests only (never in a student's grading kernel), since
some mutants are one argument away from a right answer.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .. import clipping as reference
from .base import Mutant

def _value_upper_only(parameters, clip_value):
    params = [parameters] if isinstance(parameters, torch.Tensor) else list(parameters)
    for p in params:
        if p.grad is not None:
            p.grad.clamp_(max=clip_value)


def _value_to_zero_one_side(parameters, clip_value):
    params = [parameters] if isinstance(parameters, torch.Tensor) else list(parameters)
    for p in params:
        if p.grad is not None:
            p.grad.clamp_(0.0, clip_value)


def _value_rescale(parameters, clip_value):
    params = [parameters] if isinstance(parameters, torch.Tensor) else list(parameters)
    for p in params:
        if p.grad is not None:
            peak = p.grad.abs().max()
            if peak > clip_value:
                p.grad.mul_(clip_value / peak)


def _value_no_none(parameters, clip_value):
    params = [parameters] if isinstance(parameters, torch.Tensor) else list(parameters)
    for p in params:
        p.grad.clamp_(-clip_value, clip_value)


def _value_no_single(parameters, clip_value):
    for p in parameters:
        if p.grad is not None:
            p.grad.clamp_(-clip_value, clip_value)


def _as_list(parameters: Any) -> list[torch.Tensor]:
    return [parameters] if isinstance(parameters, torch.Tensor) else list(parameters)


def _grads(parameters: Any) -> list[torch.Tensor]:
    return [p.grad for p in _as_list(parameters) if p.grad is not None]


def _p(norm_type: Any) -> float:
    return math.inf if norm_type == "inf" else float(norm_type)


def _norm_per_parameter(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    grads = _grads(parameters)
    norms = [torch.linalg.vector_norm(g, _p(norm_type)) for g in grads]
    for g, n in zip(grads, norms):
        g.mul_(torch.clamp(max_norm / (n + 1e-6), max=1.0))
    return torch.linalg.vector_norm(torch.stack(norms), _p(norm_type)) if norms else torch.tensor(0.0)


def _norm_global(parameters, norm_type):
    grads = _grads(parameters)
    if not grads:
        return grads, torch.tensor(0.0)
    norms = [torch.linalg.vector_norm(g, _p(norm_type)) for g in grads]
    return grads, torch.linalg.vector_norm(torch.stack(norms), _p(norm_type))


def _norm_no_epsilon(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    grads, total = _norm_global(parameters, norm_type)
    if total > max_norm:
        for g in grads:
            g.mul_(max_norm / total)
    return total


def _norm_returns_clipped(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    grads, total = _norm_global(parameters, norm_type)
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef)
    return total * coef


def _norm_unclamped(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    grads, total = _norm_global(parameters, norm_type)
    for g in grads:
        g.mul_(max_norm / (total + 1e-6))
    return total


def _norm_sum_of_norms(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    grads = _grads(parameters)
    total = sum((torch.linalg.vector_norm(g, _p(norm_type)) for g in grads), torch.tensor(0.0))
    for g in grads:
        g.mul_(torch.clamp(max_norm / (total + 1e-6), max=1.0))
    return total


def _norm_always_two(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    return reference.clip_grad_norm_(parameters, max_norm, 2.0, error_if_nonfinite)


def _norm_ignores_error_flag(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    return reference.clip_grad_norm_(parameters, max_norm, norm_type, False)


def _norm_generator_twice(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    total = reference.get_total_norm([p.grad for p in parameters if p.grad is not None], norm_type)
    reference.clip_grads_with_norm_(parameters, max_norm, total)  # a generator is empty by now
    return total


def _norm_crashes_on_none(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    params = _as_list(parameters)
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad, _p(norm_type)) for p in params]),
                                     _p(norm_type))
    for p in params:
        p.grad.mul_(torch.clamp(max_norm / (total + 1e-6), max=1.0))
    return total


def _unitwise(x: torch.Tensor, per_unit: bool = True) -> torch.Tensor:
    if x.ndim <= 1 or not per_unit:
        return torch.linalg.vector_norm(x)
    return torch.linalg.vector_norm(x, dim=tuple(range(1, x.ndim)), keepdim=True)


def _agc_with(parameters, clip_factor, eps, *, per_unit=True, floor=True, always=False, dim0=False):
    for p in _as_list(parameters):
        if p.grad is None:
            continue
        if dim0 and p.ndim > 1:
            w_norm = torch.linalg.vector_norm(p.detach(), dim=0, keepdim=True)
            g_norm = torch.linalg.vector_norm(p.grad, dim=0, keepdim=True)
        else:
            w_norm, g_norm = _unitwise(p.detach(), per_unit), _unitwise(p.grad, per_unit)
        max_norm = (w_norm.clamp(min=eps) if floor else w_norm) * clip_factor
        clipped = p.grad * (max_norm / g_norm.clamp(min=1e-6))
        p.grad.copy_(clipped if always else torch.where(g_norm < max_norm, p.grad, clipped))


def _agc_per_tensor(parameters, clip_factor=0.01, eps=1e-3):
    _agc_with(parameters, clip_factor, eps, per_unit=False)


def _agc_no_floor(parameters, clip_factor=0.01, eps=1e-3):
    _agc_with(parameters, clip_factor, eps, floor=False)


def _agc_always(parameters, clip_factor=0.01, eps=1e-3):
    _agc_with(parameters, clip_factor, eps, always=True)


def _agc_wrong_axis(parameters, clip_factor=0.01, eps=1e-3):
    _agc_with(parameters, clip_factor, eps, dim0=True)


def _agc_global_norm(parameters, clip_factor=0.01, eps=1e-3):
    params = [p for p in _as_list(parameters) if p.grad is not None]
    w = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.detach()) for p in params]))
    reference.clip_grad_norm_(params, float(w.clamp(min=eps) * clip_factor))


def _value_rebound(parameters, clip_value):
    for p in _as_list(parameters):
        if p.grad is not None:
            p.grad = p.grad.clamp(-clip_value, clip_value)  # a new tensor: whoever holds the old one sees nothing


def _value_not_in_place(parameters, clip_value):
    for p in _as_list(parameters):
        if p.grad is not None:
            g = p.grad
            g = g.clamp(-clip_value, clip_value)  # rebinds the local name only  # noqa: F841


def _norm_rebound(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    params = [p for p in _as_list(parameters) if p.grad is not None]
    if not params:
        return torch.tensor(0.0)
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad, _p(norm_type)) for p in params]),
                                     _p(norm_type))
    if error_if_nonfinite and not torch.isfinite(total):
        raise RuntimeError("non-finite total norm")
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for p in params:
        p.grad = p.grad * coef
    return total


def _agc_missing_keepdim(parameters, clip_factor=0.01, eps=1e-3):
    for p in _as_list(parameters):
        if p.grad is None:
            continue
        dims = tuple(range(1, p.ndim)) if p.ndim > 1 else None
        w_norm = torch.linalg.vector_norm(p.detach(), dim=dims)  # shape (out,): broadcasts along the LAST dim
        g_norm = torch.linalg.vector_norm(p.grad, dim=dims)
        limit = w_norm.clamp(min=eps) * clip_factor
        clipped = p.grad * (limit / g_norm.clamp(min=1e-6))
        p.grad.copy_(torch.where(g_norm < limit, p.grad, clipped))


def _agc_rebound(parameters, clip_factor=0.01, eps=1e-3):
    for p in _as_list(parameters):
        if p.grad is None:
            continue
        w_norm, g_norm = _unitwise(p.detach()), _unitwise(p.grad)
        limit = w_norm.clamp(min=eps) * clip_factor
        p.grad = torch.where(g_norm < limit, p.grad, p.grad * (limit / g_norm.clamp(min=1e-6)))


# ----------------------------------------------------------------------------------------------
# train_step


def _mse(model, batch, n):
    x, y = batch
    return torch.nn.functional.mse_loss(model(x), y) / n


def _backward(loss, scaler):
    (loss if scaler is None else scaler.scale(loss)).backward()


def _finish(optimizer, scaler):
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)
        scaler.update()


def _step_clip_before_backward(model, optimizer, micro_batches, max_norm, clip, scaler=None):
    optimizer.zero_grad()
    total = clip(model.parameters(), max_norm)
    for batch in micro_batches:
        _backward(_mse(model, batch, len(micro_batches)), scaler)
    if scaler is not None:
        scaler.unscale_(optimizer)
    _finish(optimizer, scaler)
    return total


def _step_clip_after_step(model, optimizer, micro_batches, max_norm, clip, scaler=None):
    optimizer.zero_grad()
    for batch in micro_batches:
        _backward(_mse(model, batch, len(micro_batches)), scaler)
    if scaler is not None:
        scaler.unscale_(optimizer)
    _finish(optimizer, scaler)
    return clip(model.parameters(), max_norm)


def _step_clip_per_micro_batch(model, optimizer, micro_batches, max_norm, clip, scaler=None):
    optimizer.zero_grad()
    total = None
    for batch in micro_batches:
        _backward(_mse(model, batch, len(micro_batches)), scaler)
        if scaler is None:
            total = clip(model.parameters(), max_norm)
    if scaler is not None:
        scaler.unscale_(optimizer)
        total = clip(model.parameters(), max_norm)
    _finish(optimizer, scaler)
    return total


def _step_clip_scaled(model, optimizer, micro_batches, max_norm, clip, scaler=None):
    optimizer.zero_grad()
    for batch in micro_batches:
        _backward(_mse(model, batch, len(micro_batches)), scaler)
    total = clip(model.parameters(), max_norm)  # under AMP these are still the scaled gradients
    _finish(optimizer, scaler)  # scaler.step unscales afterwards
    return total


def _step_no_zero_grad(model, optimizer, micro_batches, max_norm, clip, scaler=None):
    for batch in micro_batches:
        _backward(_mse(model, batch, len(micro_batches)), scaler)
    if scaler is not None:
        scaler.unscale_(optimizer)
    total = clip(model.parameters(), max_norm)
    _finish(optimizer, scaler)
    return total


def _step_sum_not_mean(model, optimizer, micro_batches, max_norm, clip, scaler=None):
    optimizer.zero_grad()
    for batch in micro_batches:
        _backward(_mse(model, batch, 1), scaler)
    if scaler is not None:
        scaler.unscale_(optimizer)
    total = clip(model.parameters(), max_norm)
    _finish(optimizer, scaler)
    return total


def _step_optimizer_step_under_scaler(model, optimizer, micro_batches, max_norm, clip, scaler=None):
    optimizer.zero_grad()
    for batch in micro_batches:
        _backward(_mse(model, batch, len(micro_batches)), scaler)
    if scaler is not None:
        scaler.unscale_(optimizer)
    total = clip(model.parameters(), max_norm)
    optimizer.step()  # skips the scaler's check for inf/NaN gradients
    if scaler is not None:
        scaler.update()
    return total


def _step_returns_nothing(model, optimizer, micro_batches, max_norm, clip, scaler=None):
    reference.train_step(model, optimizer, micro_batches, max_norm, clip, scaler)


# ----------------------------------------------------------------------------------------------
# pick_max_norm


def _finite(logged_norms) -> np.ndarray:
    x = np.asarray(torch.as_tensor(logged_norms, dtype=torch.float64)).reshape(-1)
    return x[np.isfinite(x)]


def _pick_max(logged_norms, quantile=0.9):
    return float(np.max(_finite(logged_norms)))


def _pick_mean(logged_norms, quantile=0.9):
    return float(np.mean(_finite(logged_norms)))


def _pick_keeps_nonfinite(logged_norms, quantile=0.9):
    return float(np.quantile(np.asarray(torch.as_tensor(logged_norms, dtype=torch.float64)), quantile))


def _pick_percent(logged_norms, quantile=0.9):
    return float(np.percentile(_finite(logged_norms), quantile))  # 0.9 read as 0.9 %, not 90 %


def _pick_fixed_quantile(logged_norms, quantile=0.9):
    return float(np.quantile(_finite(logged_norms), 0.9))


# ----------------------------------------------------------------------------------------------

_NONE_MISCONCEPTION = ("a parameter whose .grad is None (it took no part in the loss) must be skipped, "
                       "not used: check `if p.grad is None: continue`.")
_REBOUND_MISCONCEPTION = ("clipping works in place: write into the existing gradient (p.grad.clamp_(...), "
                          "p.grad.mul_(...), p.grad.copy_(...)) instead of assigning a new tensor to p.grad. The "
                          "optimizer would read a new p.grad, but the function's contract (the trailing _) is in "
                          "place: code that holds the gradient tensors — DistributedDataParallel's gradient "
                          "buckets, a list of grads kept for logging — never sees a rebound one, and each "
                          "rebinding allocates a new tensor.")
_NOT_IN_PLACE_MISCONCEPTION = ("`g = g.clamp(...)` makes a new tensor and rebinds the local name only: p.grad "
                               "is unchanged. Use the in-place form, g.clamp_(...).")
_SINGLE_MISCONCEPTION = ("`parameters` may be a single tensor: wrap it in a list first "
                         "(`if isinstance(parameters, torch.Tensor): parameters = [parameters]`); "
                         "iterating over a tensor walks its rows, which have no .grad.")

VALUE: dict[str, Mutant] = {
            "upper_only": Mutant(_value_upper_only, "clipping by value clamps both sides: every entry into "
                                 "[-clip_value, clip_value], so large negative entries are raised too."),
            "zero_to_c": Mutant(_value_to_zero_one_side, "the range is [-clip_value, clip_value], not "
                                "[0, clip_value]: negative gradients are legitimate."),
            "rescale": Mutant(_value_rescale, "clipping by value clamps each entry on its own; rescaling the whole "
                              "gradient so its largest entry is clip_value is a (max-)norm clip, a different method."),
            "no_none": Mutant(_value_no_none, _NONE_MISCONCEPTION),
            "no_single": Mutant(_value_no_single, _SINGLE_MISCONCEPTION),
            "rebound": Mutant(_value_rebound, _REBOUND_MISCONCEPTION),
            "not_in_place": Mutant(_value_not_in_place, _NOT_IN_PLACE_MISCONCEPTION),
        }

NORM: dict[str, Mutant] = {
            "per_parameter": Mutant(_norm_per_parameter, "the norm is global: one total norm over all gradients "
                                    "together (the norm of the per-parameter norms), and every gradient is "
                                    "scaled by the same coefficient. Clipping each parameter by its own norm "
                                    "changes the direction of the overall gradient."),
            "no_epsilon": Mutant(_norm_no_epsilon, "PyTorch always multiplies by clamp(max_norm / (total + 1e-6), "
                                 "max=1): the 1e-6 keeps the division safe, and a total equal to max_norm is "
                                 "still scaled slightly. Clipping only `if total > max_norm` by max_norm / total "
                                 "drops that epsilon."),
            "returns_clipped": Mutant(_norm_returns_clipped, "clip_grad_norm_ returns the total norm measured "
                                      "BEFORE clipping (useful for logging how large gradients really were)."),
            "unclamped": Mutant(_norm_unclamped, "the coefficient is clamped at 1: small gradients are never "
                                "scaled up, only large ones scaled down."),
            "sum_of_norms": Mutant(_norm_sum_of_norms, "the total is the p-norm of the per-parameter norms "
                                   "(e.g. sqrt of the sum of squared norms for p=2), not their plain sum."),
            "always_two": Mutant(_norm_always_two, "norm_type must be honoured: p=1 sums absolute values, "
                                 "p=inf takes the largest absolute value (also when given as the string 'inf')."),
            "ignores_error_flag": Mutant(_norm_ignores_error_flag, "with error_if_nonfinite=True a NaN or inf "
                                         "total norm must raise RuntimeError before any gradient is changed."),
            "generator_twice": Mutant(_norm_generator_twice, "a generator can be iterated only once: turn "
                                      "`parameters` into a list first, then compute the norm and scale."),
            "crashes_on_none": Mutant(_norm_crashes_on_none, _NONE_MISCONCEPTION),
            "rebound": Mutant(_norm_rebound, _REBOUND_MISCONCEPTION),
        }

AGC: dict[str, Mutant] = {
            "per_tensor": Mutant(_agc_per_tensor, "AGC is unit-wise: each output unit (a row of a Linear weight, "
                                 "a filter of a conv) is compared with its own weights, not the whole tensor."),
            "no_floor": Mutant(_agc_no_floor, "the weight norm is floored at eps (max(‖W_i‖, eps)): without it, "
                               "zero-initialised weights would force their gradients to zero forever."),
            "always": Mutant(_agc_always, "only units with ‖G_i‖ > λ·max(‖W_i‖, eps) are rescaled; the others keep "
                             "their gradient unchanged."),
            "wrong_axis": Mutant(_agc_wrong_axis, "a unit's norm is taken over every dimension except dim 0 "
                                 "(dim 0 indexes the output units); norming over dim 0 mixes units."),
            "global": Mutant(_agc_global_norm, "AGC compares each unit's gradient with that unit's weights, "
                             "not one global gradient norm with one global weight norm."),
            "missing_keepdim": Mutant(_agc_missing_keepdim, "the unit norms need keepdim=True: a norm over dims "
                                      "1.. without it has shape (out,), which broadcasts against the LAST dim of "
                                      "an (out, in) tensor — an error when out != in, and silently wrong when the "
                                      "matrix is square."),
            "rebound": Mutant(_agc_rebound, _REBOUND_MISCONCEPTION),
        }

STEP: dict[str, Mutant] = {
    "clip_before_backward": Mutant(_step_clip_before_backward, "clipping acts on the gradients that backward() "
                                   "has just computed: call it after the last backward(), not before (before, it "
                                   "clips nothing, or last step's leftovers)."),
    "clip_after_step": Mutant(_step_clip_after_step, "clip between backward() and optimizer.step(): after the "
                              "step, the raw gradient has already moved the weights."),
    "clip_per_micro_batch": Mutant(_step_clip_per_micro_batch, "with gradient accumulation, clip once, after the "
                                   "LAST micro-batch: clipping each partial sum bounds pieces, not the step, and "
                                   "changes the accumulated gradient's direction."),
    "clip_scaled": Mutant(_step_clip_scaled, "under mixed precision the gradients are multiplied by the loss "
                          "scale: call scaler.unscale_(optimizer) BEFORE clipping, or max_norm applies to "
                          "gradients thousands of times too large."),
    "no_zero_grad": Mutant(_step_no_zero_grad, "call optimizer.zero_grad() at the start of the step: backward() "
                           "adds to .grad, so last step's gradient would be added (and clipped) again."),
    "sum_not_mean": Mutant(_step_sum_not_mean, "divide each micro-batch's loss by the number of micro-batches, so "
                           "the accumulated gradient is that of the mean loss (and its norm is comparable to "
                           "max_norm whatever the accumulation)."),
    "optimizer_step_under_scaler": Mutant(_step_optimizer_step_under_scaler, "with a GradScaler, step with "
                                          "scaler.step(optimizer), which skips the step when the gradients "
                                          "overflowed (inf/NaN), then scaler.update()."),
    "returns_nothing": Mutant(_step_returns_nothing, "return the value clip returned (the norm before clipping) "
                              "so that the training loop can log it."),
}

PICK: dict[str, Mutant] = {
    "max": Mutant(_pick_max, "the largest logged norm is a spike itself: a threshold there never clips the "
                  "spikes it is meant for. Take the q-quantile."),
    "mean": Mutant(_pick_mean, "the mean of heavy-tailed norms is pulled up by the spikes; take the q-quantile "
                   "(np.quantile / torch.quantile)."),
    "keeps_nonfinite": Mutant(_pick_keeps_nonfinite, "NaN or inf norms (overflowed steps) must be left out "
                              "before taking the quantile: one NaN makes np.quantile return NaN."),
    "percent": Mutant(_pick_percent, "np.percentile takes a percentage (90), np.quantile a fraction (0.9): "
                      "percentile(x, 0.9) is the 0.9 % point, near the smallest norm."),
    "fixed_quantile": Mutant(_pick_fixed_quantile, "use the quantile argument; 0.9 is only its default."),
}
