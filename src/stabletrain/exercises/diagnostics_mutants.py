"""Lesson 00's mutant catalogue: plausible wrong implementations, each with its misconception and
what to do instead.

Imported by the grader and the project's tests only (never in a student's grading kernel).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .. import gradcheck
from .base import Mutant

# ----------------------------------------------------------------------------------------------
# rel_error


def _pair(x, y):
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError("shapes differ")
    return a, b


def _rel_no_floor(x, y):
    a, b = _pair(x, y)
    return float(np.max(np.abs(a - b) / (np.abs(a) + np.abs(b))))


def _rel_mean(x, y):
    a, b = _pair(x, y)
    return float(np.mean(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def _rel_max_denominator(x, y):
    a, b = _pair(x, y)
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.maximum(np.abs(a), np.abs(b)))))


def _rel_to_y(x, y):
    a, b = _pair(x, y)
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(b))))


def _rel_no_abs(x, y):
    a, b = _pair(x, y)
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, a + b)))


def _rel_broadcasts(x, y):
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def _rel_nanmax(x, y):
    a, b = _pair(x, y)
    return float(np.nanmax(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def _rel_elementwise(x, y):
    a, b = _pair(x, y)
    return np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))


def _rel_norms(x, y):
    a, b = _pair(x, y)
    return float(np.linalg.norm(a - b) / max(1e-8, np.linalg.norm(a) + np.linalg.norm(b)))


REL_ERROR: dict[str, Mutant] = {
    "no_floor": Mutant(_rel_no_floor, "dividing by |x| + |y| alone gives 0/0 = NaN where both gradients are 0 (a "
                       "zero-initialised bias, a dead unit); floor the denominator: max(1e-8, |x| + |y|)."),
    "mean": Mutant(_rel_mean, "averaging the elementwise errors lets one wrong entry hide among many right ones; "
                   "a gradient check reports the largest error, np.max."),
    "max_denominator": Mutant(_rel_max_denominator, "the denominator is |x| + |y| (CS231n's rel_error), not "
                              "max(|x|, |y|); the thresholds of the lesson (1e-7, 1e-4) are for |x| + |y|."),
    "relative_to_y": Mutant(_rel_to_y, "dividing by |y| only makes the error depend on the order of the arguments "
                            "and blow up where y is 0; divide by max(1e-8, |x| + |y|)."),
    "no_abs": Mutant(_rel_no_abs, "x + y can be 0 or negative when the gradients have opposite signs; the "
                     "denominator needs absolute values, |x| + |y|."),
    "broadcasts": Mutant(_rel_broadcasts, "arrays of different shapes (a transposed or flattened gradient) broadcast "
                         "into a matrix of unrelated differences; check x.shape == y.shape and raise ValueError."),
    "nanmax": Mutant(_rel_nanmax, "np.nanmax skips the NaN of a broken gradient, so the check passes; use np.max, "
                     "which returns NaN, and treat NaN as a failed check."),
    "elementwise": Mutant(_rel_elementwise, "rel_error returns one number, the largest elementwise error (np.max of "
                          "the array), not the array of errors."),
    "norms": Mutant(_rel_norms, "a relative error of whole vectors, ||x - y|| / (||x|| + ||y||), dilutes one wrong "
                    "entry among the right ones; take the elementwise errors and their max."),
}

# ----------------------------------------------------------------------------------------------
# numerical_gradient


def _coords(x):
    point = x if isinstance(x, np.ndarray) and x.dtype == np.float64 else np.array(x, dtype=np.float64)
    return point, np.zeros(point.shape)


def _ng_forward(f, x, h=1e-5):
    point, grad = _coords(x)
    for idx in np.ndindex(point.shape):
        old = point[idx]
        base = float(f(point))
        point[idx] = old + h
        plus = float(f(point))
        point[idx] = old
        grad[idx] = (plus - base) / h
    return grad


def _ng_over_h(f, x, h=1e-5):
    point, grad = _coords(x)
    for idx in np.ndindex(point.shape):
        old = point[idx]
        point[idx] = old + h
        plus = float(f(point))
        point[idx] = old - h
        minus = float(f(point))
        point[idx] = old
        grad[idx] = (plus - minus) / h
    return grad


def _ng_float32(f, x, h=1e-5):
    point = np.array(x, dtype=np.float32) if not (isinstance(x, np.ndarray) and x.dtype == np.float32) else x
    grad = np.zeros(point.shape, dtype=np.float32)
    for idx in np.ndindex(point.shape):
        old = point[idx]
        point[idx] = old + np.float32(h)
        plus = f(point)
        point[idx] = old - np.float32(h)
        minus = f(point)
        point[idx] = old
        grad[idx] = (plus - minus) / (2 * np.float32(h))
    return grad


def _ng_no_restore(f, x, h=1e-5):
    point, grad = _coords(x)
    for idx in np.ndindex(point.shape):
        old = point[idx]
        point[idx] = old + h
        plus = float(f(point))
        point[idx] = old - h
        minus = float(f(point))
        grad[idx] = (plus - minus) / (2 * h)
    return grad


def _ng_copy(f, x, h=1e-5):
    point = np.array(x, dtype=np.float64)  # always a copy: f reading x through a closure sees no probe
    grad = np.zeros(point.shape)
    for idx in np.ndindex(point.shape):
        old = point[idx]
        point[idx] = old + h
        plus = float(f(point))
        point[idx] = old - h
        minus = float(f(point))
        point[idx] = old
        grad[idx] = (plus - minus) / (2 * h)
    return grad


def _ng_fixed_h(f, x, h=1e-5):
    return gradcheck.numerical_gradient(f, x, 1e-5)


def _ng_all_at_once(f, x, h=1e-5):
    point, grad = _coords(x)
    ones = np.ones(point.shape)
    plus = float(f(point + h * ones))
    minus = float(f(point - h * ones))
    grad[...] = (plus - minus) / (2 * h)
    return grad


NUMERICAL_GRADIENT: dict[str, Mutant] = {
    "forward_difference": Mutant(_ng_forward, "a forward difference (f(x + h) - f(x)) / h has an error of order h "
                                 "(about 1e-5 here), larger than the bugs it must find; use centred differences, "
                                 "(f(x + h) - f(x - h)) / (2h), whose error is of order h²."),
    "divides_by_h": Mutant(_ng_over_h, "f(x + h) - f(x - h) spans 2h: divide by 2h, not h."),
    "float32": Mutant(_ng_float32, "differences taken in float32 lose to round-off: x + h is rounded and f(x ± h) "
                      "agree to 7 digits, so the quotient has only two or three right; copy x to float64 first "
                      "(np.array(x, dtype=np.float64)) and differentiate there."),
    "no_restore": Mutant(_ng_no_restore, "each probe must put its coordinate back (x[i] = old) before the next; "
                         "otherwise later probes are taken at a shifted point and x comes back changed."),
    "copies_x": Mutant(_ng_copy, "f may read x through a closure (CS231n's f = lambda _: loss(W)): perturb x itself, "
                       "in place, when it is a float64 array, and restore it; a copy leaves f's x untouched."),
    "fixed_step": Mutant(_ng_fixed_h, "use the step h you are given: near a kink a smaller h keeps both probes on "
                         "the same side, and a hard-coded 1e-5 straddles it."),
    "all_coordinates": Mutant(_ng_all_at_once, "moving every coordinate at once gives a directional derivative, one "
                              "number; a gradient needs one probe per coordinate, np.ndindex(x.shape)."),
}

# ----------------------------------------------------------------------------------------------
# grad_norms_per_layer


def _gn(model, fn):
    return {name: fn(p) for name, p in model.named_parameters() if p.grad is not None}


GRAD_NORMS: dict[str, Mutant] = {
    "squared": Mutant(lambda model: _gn(model, lambda p: p.grad.square().sum().item()),
                      "the norm is the square root of the sum of squares: torch.linalg.vector_norm(p.grad)."),
    "weights": Mutant(lambda model: _gn(model, lambda p: p.detach().norm().item()),
                      "the norm of the gradient p.grad, not of the parameter p: the weights are the data, the "
                      "gradient is what backward() wrote."),
    "std": Mutant(lambda model: _gn(model, lambda p: p.grad.std().item()),
                  "the spread of the gradient, grad.std(), is what makemore's histograms show; this function asks "
                  "for the 2-norm of the whole tensor."),
    "max_abs": Mutant(lambda model: _gn(model, lambda p: p.grad.abs().max().item()),
                      "the largest entry is the inf-norm; the 2-norm counts every entry: vector_norm(p.grad)."),
    "includes_none": Mutant(lambda model: {n: (0.0 if p.grad is None else p.grad.norm().item())
                                           for n, p in model.named_parameters()},
                            "a parameter without gradient (frozen or unused) has no norm, not a norm of 0: leave it "
                            "out, or a frozen layer looks like a vanished gradient."),
    "per_module": Mutant(lambda model: {n.rsplit(".", 1)[0]: math.sqrt(sum(p.grad.square().sum().item()
                                        for m, p in model.named_parameters() if m.rsplit(".", 1)[0] == n.rsplit(".", 1)[0]
                                        and p.grad is not None))
                                        for n, q in model.named_parameters() if q.grad is not None},
                         "one entry per parameter tensor, keyed by its name in model.named_parameters() "
                         "('0.weight', '0.bias'), not one per module."),
    "weights_only": Mutant(lambda model: {n: p.grad.norm().item() for n, p in model.named_parameters()
                                          if p.grad is not None and p.ndim >= 2},
                           "every parameter with a gradient counts, biases too: a bias's gradient is the sum of "
                           "the layer's activation gradients, a direct view of the backward signal."),
    "global": Mutant(lambda model: (lambda total: {n: total for n, p in model.named_parameters() if p.grad is not None})(
        math.sqrt(sum(p.grad.square().sum().item() for p in model.parameters() if p.grad is not None))),
        "one norm per parameter, each of its own gradient; the global norm of all of them is what "
        "clip_grad_norm_ returns."),
}

# ----------------------------------------------------------------------------------------------
# ActivationStats


class _Stats:
    """A configurable ActivationStats with one mistake switched on."""

    input_instead = per_element = strict_dead = sigmoid_raw = one_sided = keep_tensor = return_value = False
    overwrite = by_type = all_modules = remove_nothing = False

    def __init__(self, model, layer_types=(nn.Tanh, nn.Sigmoid, nn.ReLU), saturation_threshold=0.97):
        if isinstance(layer_types, type):
            layer_types = (layer_types,)
        self.t = saturation_threshold
        self.history, self._handles = {}, []
        for name, module in model.named_modules():
            chosen = bool(list(module.children())) is False if self.all_modules else isinstance(module, layer_types)
            if not chosen or (self.all_modules and not name):
                continue
            key = type(module).__name__ if self.by_type else name
            self.history.setdefault(key, [])
            self._handles.append(module.register_forward_hook(self._hook(key)))

    def _hook(self, key):
        def hook(module, inputs, output):
            h = inputs[0] if self.input_instead else output
            h = h if self.keep_tensor else h.detach()
            c = 2 * h - 1 if isinstance(module, nn.Sigmoid) and not self.sigmoid_raw else h
            sat = (c > self.t) if self.one_sided else (c.abs() > self.t)
            off = (h < 0) if self.strict_dead else (h <= 0)
            dead = off.float().mean() if self.per_element else off.reshape(h.shape[0], -1).all(dim=0).float().mean()
            value = (lambda v: v) if self.keep_tensor else (lambda v: v.item())
            record = {"mean": value(h.mean()), "std": value(h.std(correction=0)), "saturated": value(sat.float().mean()),
                      "dead": value(dead)}
            if self.overwrite:
                self.history[key] = [record]
            else:
                self.history[key].append(record)
            return h if self.return_value else None

        return hook

    def remove(self):
        if self.remove_nothing:
            return
        for handle in self._handles:
            handle.remove()


def _stats(**flags):
    return type("ActivationStats", (_Stats,), flags)


ACTIVATION_STATS: dict[str, Mutant] = {
    "records_input": Mutant(_stats(input_instead=True), "a forward hook receives (module, inputs, output): the "
                            "activation is output; inputs[0] is the pre-activation that went in."),
    "dead_per_element": Mutant(_stats(per_element=True), "a dead unit is one whose output is <= 0 for every example "
                               "of the batch, (h <= 0).all(dim=0); the fraction of zero entries (about half in a "
                               "healthy ReLU layer) is not the fraction of dead units."),
    "dead_strict": Mutant(_stats(strict_dead=True), "a ReLU outputs exactly 0 when it is off, so h < 0 is never true; "
                          "test h <= 0."),
    "sigmoid_unmapped": Mutant(_stats(sigmoid_raw=True), "a sigmoid saturates at 0 and at 1: map its output to "
                               "2h - 1 in [-1, 1] before testing |.| > threshold, or only the top end counts."),
    "one_sided": Mutant(_stats(one_sided=True), "tanh saturates at both ends: count |h| > threshold, not h > "
                        "threshold."),
    "keeps_graph": Mutant(_stats(keep_tensor=True), "storing h.mean() as a tensor keeps the batch's autograd graph "
                          "alive in every record (memory grows with every step); store floats: .item()."),
    "returns_value": Mutant(_stats(return_value=True), "a forward hook that returns a value replaces the module's "
                            "output; a hook that only records must return None."),
    "overwrites": Mutant(_stats(overwrite=True), "history[name] is a list with one record per forward call: append, "
                         "do not replace, or there is nothing to plot over training."),
    "by_type": Mutant(_stats(by_type=True), "key each layer by its name in model.named_modules() ('1', '3', "
                      "'block.act'): keyed by type, every Tanh of the model lands in one list."),
    "all_modules": Mutant(_stats(all_modules=True), "watch only the modules of layer_types (isinstance(module, "
                          "layer_types)); the Linear layers' outputs are pre-activations."),
    "remove_nothing": Mutant(_stats(remove_nothing=True), "keep the handles that register_forward_hook returns and "
                             "call handle.remove() on each in remove(); hooks left behind slow every later forward "
                             "pass and keep recording."),
}

# ----------------------------------------------------------------------------------------------
# train_and_log


def _logged(model):
    return {n: p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2}


def _train(model, optimizer, loss_fn, batches, ratio, zero_grad=True, clone=True, select=_logged):
    losses, ratios = [], {n: [] for n in select(model)}
    for x, y in batches:
        if zero_grad:
            optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        params = select(model)
        before = {n: (p.detach().clone() if clone else p.detach()) for n, p in params.items()}
        grads = {n: (None if p.grad is None else p.grad.detach().clone()) for n, p in params.items()}
        optimizer.step()
        losses.append(loss.item())
        lr = optimizer.param_groups[0]["lr"]
        for n, p in params.items():
            ratios[n].append(ratio(p.detach(), before[n], grads[n], lr))
    return losses, ratios


def _log10_std(after, before, grad, lr):
    with torch.no_grad():
        return math.log10(((after - before).std() / after.std()).item()) if (after - before).std() > 0 else -math.inf


TRAIN_AND_LOG: dict[str, Mutant] = {
    "lr_times_grad": Mutant(
        lambda m, o, f, b: _train(m, o, f, b, lambda a, w, g, lr: math.log10((lr * g).std().item() / a.std().item())),
        "-lr * grad is the update of plain SGD only; momentum, Adam and weight decay change it. Measure what "
        "optimizer.step() did: clone the weights before the step and subtract."),
    "aliased_before": Mutant(lambda m, o, f, b: _train(m, o, f, b, _log10_std, clone=False),
                             "p.detach() (and p.data) share memory with p: optimizer.step() changes them in place, so "
                             "before - after is 0 (log10 -> -inf); clone() the weights before the step."),
    "natural_log": Mutant(lambda m, o, f, b: _train(m, o, f, b, lambda a, w, g, lr: math.log(
        ((a - w).std() / a.std()).item())), "the reference line is at -3 in log10 (updates a thousandth of the "
        "weights); math.log is the natural logarithm: use math.log10."),
    "no_log": Mutant(lambda m, o, f, b: _train(m, o, f, b, lambda a, w, g, lr: ((a - w).std() / a.std()).item()),
                     "log the ratio's log10 (about -3 when healthy), so layers whose ratios differ by orders of "
                     "magnitude fit on one plot."),
    "norms": Mutant(lambda m, o, f, b: _train(m, o, f, b, lambda a, w, g, lr: math.log10(
        ((a - w).norm() / a.norm()).item())), "the ratio is of standard deviations, std(dW) / std(W): a norm also "
        "counts the weights' mean, which the step does not change in proportion."),
    "grad_to_data": Mutant(lambda m, o, f, b: _train(m, o, f, b, lambda a, w, g, lr: math.log10(
        (g.std() / a.std()).item())), "this is the update:data ratio: the change the step made, not the gradient "
        "(grad:data ignores the learning rate and the optimizer)."),
    "no_zero_grad": Mutant(lambda m, o, f, b: _train(m, o, f, b, _log10_std, zero_grad=False),
                           "backward() adds into .grad: call optimizer.zero_grad() at every step, or every step "
                           "uses the sum of all gradients so far."),
    "with_biases": Mutant(lambda m, o, f, b: _train(m, o, f, b, _log10_std, select=lambda model: {
        n: p for n, p in model.named_parameters() if p.requires_grad}),
        "log the weight matrices only (p.ndim >= 2), as makemore does: a bias starts at zero, where std(b) = 0 "
        "makes the ratio meaningless."),
    "frozen_too": Mutant(lambda m, o, f, b: _train(m, o, f, b, _log10_std, select=lambda model: {
        n: p for n, p in model.named_parameters() if p.ndim >= 2}),
        "a frozen weight (requires_grad=False) is not trained, so it has no update to log; select parameters "
        "with p.requires_grad."),
}
