"""Lesson 03's mutant catalogue: plausible wrong initializers, each with its misconception.

Imported by the grader and the project's tests only (never in a student's grading kernel).
Every mutant is proven rejected by ``tests/test_exercise_catalogue.py`` at every seed tried.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import init as reference
from .base import Mutant

_TRUNC = 0.87962566103423978


# ----------------------------------------------------------------------------------------------
# Building blocks


def _fans(t, receptive_field=True, swapped=False):
    shape = tuple(t.shape if isinstance(t, torch.Tensor) else t)
    if len(shape) < 2:
        raise ValueError("fewer than 2 dimensions")
    field = math.prod(shape[2:]) if receptive_field else 1
    fan_in, fan_out = shape[1] * field, shape[0] * field
    return (fan_out, fan_in) if swapped else (fan_in, fan_out)


def _fill(t, std, dist, generator=None, *, no_grad=True, in_place=True, sqrt3=True, trunc="correct"):
    """Fill ``t`` with a zero-mean ``dist`` ("uniform", "normal", "truncated_normal") of std ``std``."""
    gen = generator

    def draw(x):
        if dist == "uniform":
            b = (math.sqrt(3.0) if sqrt3 else 1.0) * std
            return x.uniform_(-b, b, generator=gen)
        if dist == "normal":
            return x.normal_(0.0, std, generator=gen)
        sigma = std / _TRUNC if trunc != "uncorrected" else std
        if trunc == "clamp":
            return x.normal_(0.0, sigma, generator=gen).clamp_(-2 * sigma, 2 * sigma)
        edge = math.erf(2 / math.sqrt(2))
        return x.uniform_(-edge, edge, generator=gen).erfinv_().mul_(math.sqrt(2) * sigma)

    if not in_place:
        with torch.no_grad():
            return draw(torch.empty_like(t))
    if no_grad:
        with torch.no_grad():
            return draw(t)
    return draw(t)


def _not_in_place(reference_fn):
    """The same distribution, drawn into a new tensor that is returned (the argument is untouched)."""

    def mutant(tensor, *args, **kwargs):
        return reference_fn(torch.empty_like(tensor.detach()), *args, **kwargs)

    return mutant


def _ignores_generator(reference_fn):
    def mutant(tensor, *args, generator=None, **kwargs):
        return reference_fn(tensor, *args, **kwargs)

    return mutant


def _without_no_grad(reference_fn):
    """Calls the reference on the tensor, but as if torch.no_grad() were missing."""

    def mutant(tensor, *args, **kwargs):
        if tensor.requires_grad:
            tensor.uniform_(-1, 1)  # raises: a leaf that requires grad cannot be changed in place
        return reference_fn(tensor, *args, **kwargs)

    return mutant


_NOT_IN_PLACE = ("an initializer fills the tensor it is given, in place (tensor.uniform_, tensor.normal_, "
                 "tensor.copy_) and returns that same tensor: a model holds a reference to its weight, so a new "
                 "tensor would never reach it.")
_NO_GRAD = ("a layer's weight is an nn.Parameter that requires grad, and autograd forbids changing such a leaf in "
            "place: do the filling inside `with torch.no_grad():`.")
_GENERATOR = ("every random number must come from the `generator` argument when one is given (pass "
              "generator=generator to torch.rand / tensor.normal_ ...), so that a seeded generator reproduces "
              "the weights.")
_SQRT3 = ("U(-b, b) has variance b²/3, not b²: for a standard deviation s the bound is b = √3·s "
          "(Xavier: √(6/(fan_in + fan_out)), Kaiming: gain·√(3/fan)).")
_VAR_AS_STD = ("the formula gives a variance (e.g. 2/(fan_in + fan_out)); the std passed to normal_ — and the "
               "uniform bound √3·std — need its square root.")
_NO_FIELD = ("for a conv weight (out, in, k₁, k₂, …) every output sums over in·k₁·k₂·… inputs: fan_in = "
             "in·receptive field and fan_out = out·receptive field, where the receptive field is the product of "
             "the kernel dimensions.")


# ----------------------------------------------------------------------------------------------
# fan_in_and_fan_out


def _fans_swapped(tensor_or_shape):
    return _fans(tensor_or_shape, swapped=True)


def _fans_no_field(tensor_or_shape):
    return _fans(tensor_or_shape, receptive_field=False)


def _fans_field_on_fan_in_only(tensor_or_shape):
    shape = tuple(tensor_or_shape.shape if isinstance(tensor_or_shape, torch.Tensor) else tensor_or_shape)
    if len(shape) < 2:
        raise ValueError("fewer than 2 dimensions")
    return shape[1] * math.prod(shape[2:]), shape[0]


def _fans_tensor_only(tensor_or_shape):
    shape = tensor_or_shape.shape  # a tuple or list has no .shape
    if len(shape) < 2:
        raise ValueError("fewer than 2 dimensions")
    return shape[1] * math.prod(shape[2:]), shape[0] * math.prod(shape[2:])


def _fans_no_error(tensor_or_shape):
    shape = tuple(tensor_or_shape.shape if isinstance(tensor_or_shape, torch.Tensor) else tensor_or_shape)
    if len(shape) < 2:
        return (shape[0], shape[0]) if shape else (1, 1)
    return _fans(shape)


FANS: dict[str, Mutant] = {
    "swapped": Mutant(_fans_swapped, "a weight of nn.Linear has shape (out_features, in_features): fan_in, the "
                      "number of inputs each output sums over, is shape[1], and fan_out is shape[0]."),
    "no_receptive_field": Mutant(_fans_no_field, _NO_FIELD),
    "field_on_fan_in_only": Mutant(_fans_field_on_fan_in_only, "the receptive field multiplies both fans: each "
                                   "input feeds out·k₁·k₂ outputs, so fan_out = out·receptive field too."),
    "tensor_only": Mutant(_fans_tensor_only, "the argument may be a tensor or a shape (torch.Size, tuple, list): "
                          "take `tensor.shape` only when it is a tensor."),
    "no_error": Mutant(_fans_no_error, "a bias or a scalar has no fan_in / fan_out: with fewer than 2 dimensions "
                       "raise ValueError, as PyTorch does."),
}


# ----------------------------------------------------------------------------------------------
# calculate_gain


def _gain_with(**changes):
    def gain(nonlinearity, param=None):
        if nonlinearity in changes:
            value = changes[nonlinearity]
            return value(param) if callable(value) else value
        return reference.calculate_gain(nonlinearity, param)

    return gain


def _gain_unknown_one(nonlinearity, param=None):
    try:
        return reference.calculate_gain(nonlinearity, param)
    except ValueError:
        return 1.0


_TANH = ("tanh's gain is 5/3: tanh(z) ≈ z near 0 but it saturates, so E[tanh(z)²] < Var[z]; 5/3 is the "
         "empirical factor that makes up for it (it is neither ReLU's √2 nor 1).")

GAIN: dict[str, Mutant] = {
    "tanh_sqrt2": Mutant(_gain_with(tanh=math.sqrt(2)), _TANH),
    "tanh_one": Mutant(_gain_with(tanh=1.0), _TANH),
    "leaky_slope_ignored": Mutant(_gain_with(leaky_relu=lambda p: math.sqrt(2 / (1 + 0.01**2))),
                                  "leaky_relu's gain depends on its negative slope s = param: √(2/(1 + s²)), with "
                                  "s = 0.01 only when param is None."),
    "leaky_no_square": Mutant(_gain_with(leaky_relu=lambda p: math.sqrt(2 / (1 + (0.01 if p is None else p)))),
                              "leaky_relu keeps s·z for z < 0, whose second moment is s²·Var[z]/2: the gain is "
                              "√(2/(1 + s²)), with the slope squared."),
    "relu_two": Mutant(_gain_with(relu=2.0), "the gain multiplies the std, so it is the square root of the factor "
                       "the variance needs: ReLU halves the second moment, so gain² = 2 and gain = √2."),
    "selu_one": Mutant(_gain_with(selu=1.0), "PyTorch's gain for selu is 3/4."),
    "unknown_one": Mutant(_gain_unknown_one, "an unknown nonlinearity (names are case-sensitive) raises "
                          "ValueError instead of silently getting gain 1."),
}


# ----------------------------------------------------------------------------------------------
# Xavier


def _xavier(dist, *, field=True, avg=True, fan_in_only=False, var_as_std=False, gain_on_var=False, sqrt3=True):
    def init(tensor, gain=1.0, generator=None):
        fan_in, fan_out = _fans(tensor, receptive_field=field)
        n = fan_in if fan_in_only else ((fan_in + fan_out) / 2 if avg else fan_in + fan_out)
        var = (gain if gain_on_var else gain**2) / n
        return _fill(tensor, var if var_as_std else math.sqrt(var), dist, generator, sqrt3=sqrt3)

    return init


def _xavier_catalogue(dist: str, other: str, reference_fn) -> dict[str, Mutant]:
    out = {
        f"{other}_instead": Mutant(_xavier(other), f"xavier_{dist}_ draws from a {dist} distribution: "
                                   + ("U(-a, a) with a = gain·√(6/(fan_in + fan_out)), bounded."
                                      if dist == "uniform" else "N(0, std²) with std = gain·√(2/(fan_in + "
                                      "fan_out)), unbounded.")),
        "fan_in_only": Mutant(_xavier(dist, fan_in_only=True), "Xavier averages the two conditions: Var = 2/(fan_in "
                              "+ fan_out), the compromise between forward (1/fan_in) and backward (1/fan_out); "
                              "1/fan_in alone is LeCun's init."),
        "sum_not_average": Mutant(_xavier(dist, avg=False), "the compromise uses the average of the fans, "
                                  "(fan_in + fan_out)/2: Var = 2/(fan_in + fan_out), with the 2."),
        "variance_as_std": Mutant(_xavier(dist, var_as_std=True), _VAR_AS_STD),
        "no_receptive_field": Mutant(_xavier(dist, field=False), _NO_FIELD),
        "gain_on_variance": Mutant(_xavier(dist, gain_on_var=True), "the gain multiplies the std (so gain² the "
                                   "variance): std = gain·√(2/(fan_in + fan_out))."),
        "not_in_place": Mutant(_not_in_place(reference_fn), _NOT_IN_PLACE),
        "no_no_grad": Mutant(_without_no_grad(reference_fn), _NO_GRAD),
        "ignores_generator": Mutant(_ignores_generator(reference_fn), _GENERATOR),
    }
    if dist == "uniform":
        out["missing_sqrt3"] = Mutant(_xavier(dist, sqrt3=False), _SQRT3)
    return out


XAVIER_UNIFORM = _xavier_catalogue("uniform", "normal", reference.xavier_uniform_)
XAVIER_NORMAL = _xavier_catalogue("normal", "uniform", reference.xavier_normal_)


# ----------------------------------------------------------------------------------------------
# Kaiming


def _kaiming(dist, *, field=True, mode_ignored=False, swapped=False, slope_ignored=False, gain_table=None,
             var_as_std=False, sqrt3=True, check_mode=True):
    def init(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
        if check_mode and mode.lower() not in ("fan_in", "fan_out"):
            raise ValueError(f"Mode {mode} not supported")
        fan_in, fan_out = _fans(tensor, receptive_field=field, swapped=swapped)
        fan = fan_in if (mode_ignored or mode.lower() == "fan_in") else fan_out
        if gain_table is not None:
            gain = gain_table.get(nonlinearity, None)
            gain = reference.calculate_gain(nonlinearity, a) if gain is None else gain
        else:
            gain = reference.calculate_gain(nonlinearity, None if slope_ignored else a)
        var = gain**2 / fan
        return _fill(tensor, var if var_as_std else math.sqrt(var), dist, generator, sqrt3=sqrt3)

    return init


def _kaiming_catalogue(dist: str, other: str, reference_fn) -> dict[str, Mutant]:
    out = {
        f"{other}_instead": Mutant(_kaiming(other), f"kaiming_{dist}_ draws from a {dist} distribution: "
                                   + ("U(-b, b) with b = gain·√(3/fan), bounded." if dist == "uniform"
                                      else "N(0, std²) with std = gain/√fan, unbounded.")),
        "mode_ignored": Mutant(_kaiming(dist, mode_ignored=True), "mode chooses the fan: 'fan_in' keeps the forward "
                               "signal's variance, 'fan_out' the backward gradient's; with mode='fan_out' divide "
                               "by fan_out."),
        "fans_swapped": Mutant(_kaiming(dist, swapped=True), "for a weight of shape (out, in, ...) fan_in = "
                               "in·receptive field (shape[1]) and fan_out = out·receptive field (shape[0])."),
        "slope_ignored": Mutant(_kaiming(dist, slope_ignored=True), "`a` is leaky_relu's negative slope and enters "
                                "the gain √(2/(1 + a²)): nn.Linear's default, a = √5, gives gain² = 1/3."),
        "relu_gain_for_all": Mutant(_kaiming(dist, gain_table={"tanh": math.sqrt(2), "linear": math.sqrt(2)}),
                                    "the gain depends on the nonlinearity: √2 is ReLU's; tanh needs 5/3 and a "
                                    "linear layer 1 (use calculate_gain(nonlinearity, a))."),
        "tanh_one": Mutant(_kaiming(dist, gain_table={"tanh": 1.0}), _TANH),
        "variance_as_std": Mutant(_kaiming(dist, var_as_std=True), _VAR_AS_STD),
        "no_receptive_field": Mutant(_kaiming(dist, field=False), _NO_FIELD),
        "no_mode_check": Mutant(_kaiming(dist, check_mode=False), "a mode other than 'fan_in' or 'fan_out' is an "
                                "error (ValueError), not silently fan_out."),
        "not_in_place": Mutant(_not_in_place(reference_fn), _NOT_IN_PLACE),
        "no_no_grad": Mutant(_without_no_grad(reference_fn), _NO_GRAD),
        "ignores_generator": Mutant(_ignores_generator(reference_fn), _GENERATOR),
    }
    if dist == "uniform":
        out["missing_sqrt3"] = Mutant(_kaiming(dist, sqrt3=False), _SQRT3)
    return out


KAIMING_UNIFORM = _kaiming_catalogue("uniform", "normal", reference.kaiming_uniform_)
KAIMING_NORMAL = _kaiming_catalogue("normal", "uniform", reference.kaiming_normal_)


# ----------------------------------------------------------------------------------------------
# orthogonal_


def _orthogonal(*, sign="r", gain_power=1, method="qr"):
    def init(tensor, gain=1.0, generator=None):
        if tensor.ndim < 2:
            raise ValueError("Only tensors with 2 or more dimensions are supported")
        rows = tensor.size(0)
        cols = tensor.numel() // rows
        with torch.no_grad():
            a = tensor.new_empty((rows, cols)).normal_(0.0, 1.0, generator=generator)
            if method == "rows":
                q = a / a.norm(dim=1, keepdim=True)
            elif method == "gaussian":
                q = a / math.sqrt(max(rows, cols))
            else:
                if rows < cols:
                    a = a.T
                q, r = torch.linalg.qr(a)
                if sign == "r":
                    q = q * torch.diagonal(r).sign()
                elif sign == "q":
                    q = q * torch.diagonal(q).sign()
                if rows < cols:
                    q = q.T
            tensor.view_as(q).copy_(q)
            tensor.mul_(gain**gain_power)
        return tensor

    return init


ORTHOGONAL: dict[str, Mutant] = {
    "no_sign_correction": Mutant(_orthogonal(sign=None), "QR's sign convention (R's diagonal has a fixed sign "
                                 "pattern) biases Q: multiply each column of Q by the sign of the matching "
                                 "diagonal entry of R, q * torch.diagonal(r).sign(), to make Q uniformly (Haar) "
                                 "distributed."),
    "sign_from_q": Mutant(_orthogonal(sign="q"), "the sign correction uses the diagonal of R, not of Q: making "
                          "Q's own diagonal positive biases it the other way."),
    "no_gain": Mutant(_orthogonal(gain_power=0), "multiply the orthogonal matrix by `gain`: then QᵀQ = gain²·I."),
    "gain_squared": Mutant(_orthogonal(gain_power=2), "the gain multiplies the matrix once (QᵀQ = gain²·I), it is "
                           "not squared first."),
    "normalised_rows": Mutant(_orthogonal(method="rows"), "unit-norm rows are not enough: the rows (or columns) "
                              "must also be orthogonal to each other; a QR decomposition of a Gaussian matrix "
                              "gives both."),
    "scaled_gaussian": Mutant(_orthogonal(method="gaussian"), "a Gaussian matrix scaled by 1/√n is only "
                              "approximately orthogonal; take the Q of its QR decomposition."),
    "not_in_place": Mutant(_not_in_place(reference.orthogonal_), _NOT_IN_PLACE),
    "no_no_grad": Mutant(_without_no_grad(reference.orthogonal_), _NO_GRAD),
    "ignores_generator": Mutant(_ignores_generator(reference.orthogonal_), _GENERATOR),
}


# ----------------------------------------------------------------------------------------------
# variance_scaling_


def _scaling(*, mode_ignored=False, avg_sum=False, trunc="correct", sqrt3=True, var_as_std=False,
             scale_as_std=False, dist_ignored=False, check=True):
    def init(tensor, scale=1.0, mode="fan_in", distribution="normal", generator=None):
        if check and mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"bad mode {mode!r}")
        if check and distribution not in ("normal", "truncated_normal", "uniform"):
            raise ValueError(f"bad distribution {distribution!r}")
        fan_in, fan_out = _fans(tensor)
        if mode_ignored or mode not in ("fan_out", "fan_avg"):
            n = fan_in
        elif mode == "fan_out":
            n = fan_out
        else:
            n = fan_in + fan_out if avg_sum else (fan_in + fan_out) / 2
        var = scale / n
        std = var if var_as_std else (scale / math.sqrt(n) if scale_as_std else math.sqrt(var))
        dist = "normal" if dist_ignored or distribution not in ("uniform", "truncated_normal") else distribution
        return _fill(tensor, std, dist, generator, sqrt3=sqrt3, trunc=trunc)

    return init


SCALING: dict[str, Mutant] = {
    "mode_ignored": Mutant(_scaling(mode_ignored=True), "mode picks n in Var = scale/n: fan_in, fan_out, or the "
                           "average (fan_in + fan_out)/2 for 'fan_avg'."),
    "fan_avg_sum": Mutant(_scaling(avg_sum=True), "'fan_avg' divides by the average of the fans, "
                          "(fan_in + fan_out)/2, not their sum."),
    "truncated_uncorrected": Mutant(_scaling(trunc="uncorrected"), "cutting a normal at ±2σ removes its tails and "
                                    "shrinks the std to 0.8796·σ: draw with σ = std/0.87962566 so that the "
                                    "truncated values have the intended variance (Keras's VarianceScaling does; "
                                    "TensorFlow 1's truncated_normal_initializer does not)."),
    "truncated_by_clamping": Mutant(_scaling(trunc="clamp"), "truncating means redrawing values beyond ±2σ (or "
                                    "sampling the truncated distribution directly, e.g. by inverse CDF); clamping "
                                    "piles 4.6% of the mass onto the two edges."),
    "missing_sqrt3": Mutant(_scaling(sqrt3=False), _SQRT3),
    "variance_as_std": Mutant(_scaling(var_as_std=True), "scale/n is the variance: the std is √(scale/n)."),
    "scale_as_std": Mutant(_scaling(scale_as_std=True), "scale multiplies the variance, so the std is "
                           "√(scale/n), not scale/√n (e.g. He: scale = 2, std = √(2/fan_in))."),
    "distribution_ignored": Mutant(_scaling(dist_ignored=True), "distribution chooses the shape: 'uniform' is "
                                   "U(-b, b) with b = √(3·scale/n), 'truncated_normal' a normal cut at ±2σ."),
    "no_argument_checks": Mutant(_scaling(check=False), "an unknown mode or distribution is an error "
                                 "(ValueError), not a silent default."),
    "not_in_place": Mutant(_not_in_place(reference.variance_scaling_), _NOT_IN_PLACE),
    "no_no_grad": Mutant(_without_no_grad(reference.variance_scaling_), _NO_GRAD),
    "ignores_generator": Mutant(_ignores_generator(reference.variance_scaling_), _GENERATOR),
}


# ----------------------------------------------------------------------------------------------
# init_model_

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _model(*, modules="all", types=_LAYERS, var="kaiming", bias=True, fan="in", returns=True, every_param=False):
    def init_model_(model, nonlinearity):
        walk = [m for _, m in model.named_modules()] if modules == "all" else model.children()
        gain2 = 1.0 if nonlinearity == "selu" else reference.calculate_gain(nonlinearity) ** 2
        if var == "selu_gain":
            gain2 = reference.calculate_gain(nonlinearity) ** 2
        with torch.no_grad():
            if every_param:
                for p in model.parameters():
                    if p.ndim >= 2:
                        p.normal_(0.0, math.sqrt(gain2 / _fans(p)[0]))
                    else:
                        p.zero_()
                return model
            for m in walk:
                if isinstance(m, types):
                    fan_in, fan_out = _fans(m.weight)
                    n = {"kaiming": fan_in if fan == "in" else fan_out, "selu_gain": fan_in,
                         "xavier": (fan_in + fan_out) / 2}[var]
                    m.weight.normal_(0.0, math.sqrt(gain2 / n))
                    if bias and m.bias is not None:
                        m.bias.zero_()
        return model if returns else None

    return init_model_


def _model_does_nothing(model, nonlinearity):
    return model


MODEL: dict[str, Mutant] = {
    "xavier": Mutant(_model(var="xavier"), "for ReLU-family nets the forward condition is Var[w] = gain²/fan_in "
                     "(Kaiming, mode='fan_in'); Xavier's 2/(fan_in + fan_out) is a compromise meant for tanh-like "
                     "units without the ReLU factor."),
    "fan_out": Mutant(_model(fan="out"), "keep the forward signal: divide by fan_in (the inputs each unit sums), "
                      "not fan_out."),
    "children_only": Mutant(_model(modules="children"), "model.children() lists only the top level; "
                            "model.apply(fn) and model.named_modules() visit every nested module, so nested "
                            "Linear layers are found."),
    "linear_only": Mutant(_model(types=(nn.Linear,)), "Conv layers need the same treatment: their fan_in counts "
                          "the receptive field (in·kh·kw)."),
    "bias_kept": Mutant(_model(bias=False), "set every bias to 0: PyTorch's default bias is random, "
                        "U(±1/√fan_in), and adds variance the derivation does not account for."),
    "selu_gain": Mutant(_model(var="selu_gain"), "SELU's fixed point needs LeCun's Var[w] = 1/fan_in; "
                        "calculate_gain('selu') = 3/4 would shrink it (torch's docs: use nonlinearity='linear' "
                        "with SELU)."),
    "returns_none": Mutant(_model(returns=False), "return the model, so that `model = init_model_(model, ...)` "
                           "works."),
    "every_parameter": Mutant(_model(every_param=True), "only Linear and Conv layers are re-initialised; a "
                              "LayerNorm's weight is a scale that starts at 1 and must stay so."),
    "pytorch_default": Mutant(_model_does_nothing, "PyTorch's default init of nn.Linear / nn.Conv is "
                              "kaiming_uniform_ with a = √5, i.e. Var[w] = 1/(3·fan_in): six times too small for "
                              "ReLU. Initialise every layer yourself."),
}
