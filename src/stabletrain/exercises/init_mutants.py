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
        if trunc == "wrap":  # torch.fmod(randn, 2): values beyond ±2 wrap around towards 0
            return x.copy_(torch.fmod(torch.randn(x.shape, generator=gen, dtype=x.dtype), 2.0) * sigma)
        cut = 2 * std / sigma if trunc == "at_2_std" else 2.0  # ±2·std is ±1.76σ: the cut in σ units
        edge = math.erf(cut / math.sqrt(2))
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
            elif method == "svd_u":  # the left singular vectors of the tall orientation, signs as LAPACK left them
                tall = a if rows >= cols else a.T
                q = torch.linalg.svd(tall, full_matrices=False)[0]
                q = q if rows >= cols else q.T
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
    "svd_u_without_sign_fix": Mutant(_orthogonal(method="svd_u"), "an SVD's singular vectors carry a sign convention "
                                     "too: U alone is biased (for a 2×2 matrix its first entry is negative in about "
                                     "80 % of the draws). Fix the signs as for QR, or take the polar factor U·Vᵀ, "
                                     "which is Haar distributed whatever the signs."),
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
    "truncated_by_wrapping": Mutant(_scaling(trunc="wrap"), "torch.fmod(z, 2) does not truncate: it wraps the 4.6 % "
                                    "of draws beyond ±2 back towards 0, so the weights pile up near 0 (41.6 % "
                                    "within ±σ/2 instead of 40.1 %) and their variance is 3 % short. Redraw the "
                                    "values beyond ±2 (z[z.abs() > 2] = fresh draws, until none is left) or sample "
                                    "by inverse CDF."),
    "truncated_at_2_std": Mutant(_scaling(trunc="at_2_std"), "the cut is at ±2σ, where σ = std/0.8796 is the std of "
                                 "the normal you draw from — not at ±2·std of the result: cutting at ±2·std "
                                 "(= ±1.76σ) leaves 87 % of the variance and a largest weight of 2 std instead of "
                                 "2.27."),
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


# ----------------------------------------------------------------------------------------------
# as_variance_scaling


def _mapping(**changes):
    """The reference, with one thing changed: each change is (condition on the name, replacement)."""

    def mapping(initializer, **kwargs):
        if changes.get("case_sensitive") and kwargs.get("mode", "fan_in") not in ("fan_in", "fan_out") \
                and initializer.startswith("kaiming"):
            raise ValueError(f"Mode {kwargs['mode']} not supported")
        if changes.get("orthogonal_ok") and initializer == "orthogonal":
            return (1.0, "fan_in", "normal")
        scale, mode, dist = reference.as_variance_scaling(initializer, **kwargs)
        torch_kaiming = initializer in ("kaiming_uniform", "kaiming_normal")
        if changes.get("gain_not_squared") and (torch_kaiming or initializer.startswith("xavier")):
            scale = math.sqrt(scale)
        if changes.get("keras_untruncated") and dist == "truncated_normal":
            dist = "normal"
        if changes.get("xavier_two") and initializer.startswith("xavier"):
            scale *= 2
        if changes.get("xavier_fan_in") and (initializer.startswith("xavier") or initializer.startswith("Glorot")):
            mode = "fan_in"
        if changes.get("mode_as_given") and torch_kaiming:
            mode = kwargs.get("mode", "fan_in")
        if changes.get("slope_ignored") and torch_kaiming and kwargs.get("nonlinearity", "leaky_relu") == "leaky_relu":
            scale = reference.calculate_gain("leaky_relu") ** 2
        if changes.get("linear_is_he") and initializer == "nn.Linear":
            scale = 2.0
        if changes.get("always_relu") and torch_kaiming:
            scale = 2.0
        return scale, mode, dist

    return mapping


MAPPING: dict[str, Mutant] = {
    "gain_not_squared": Mutant(_mapping(gain_not_squared=True), "variance_scaling_'s scale multiplies the variance, "
                               "and a gain multiplies the std: scale = gain² (ReLU: 2, tanh: 25/9)."),
    "keras_normals_untruncated": Mutant(_mapping(keras_untruncated=True), "Keras's HeNormal, GlorotNormal and "
                                        "LecunNormal draw from a truncated normal (cut at ±2σ, std corrected); only "
                                        "PyTorch's kaiming_normal_ and xavier_normal_ are plain normals."),
    "xavier_scale_two": Mutant(_mapping(xavier_two=True), "Xavier's Var = 2·gain²/(fan_in + fan_out) is gain² over "
                               "the *average* fan (fan_in + fan_out)/2: scale gain², mode 'fan_avg' — the 2 is "
                               "already in the average."),
    "xavier_fan_in": Mutant(_mapping(xavier_fan_in=True), "Xavier (Glorot) averages the fans: mode 'fan_avg'; "
                            "fan_in alone is LeCun's (or Kaiming's) choice."),
    "mode_case_sensitive": Mutant(_mapping(case_sensitive=True), "torch reads kaiming's mode in any case "
                                  "(mode.lower()): 'FAN_OUT' and 'Fan_In' are valid; only names other than fan_in "
                                  "and fan_out raise ValueError."),
    "mode_not_lowercased": Mutant(_mapping(mode_as_given=True), "variance_scaling_ wants the mode spelled exactly "
                                  "'fan_in' or 'fan_out': pass mode.lower() on, as torch computes with it."),
    "slope_ignored": Mutant(_mapping(slope_ignored=True), "`a` is leaky_relu's negative slope and enters the gain: "
                            "gain² = 2/(1 + a²) (nn.Linear's a = √5 gives 1/3)."),
    "linear_default_is_he": Mutant(_mapping(linear_is_he=True), "nn.Linear's default is kaiming_uniform_ with "
                                   "a = √5: gain² = 2/(1 + 5) = 1/3, so Var = 1/(3·fan_in) — not He's 2/fan_in."),
    "gain_of_relu_always": Mutant(_mapping(always_relu=True), "the gain depends on the nonlinearity: "
                                  "calculate_gain(nonlinearity, a)² — 25/9 for tanh, 1 for linear, not always 2."),
    "orthogonal_is_a_case": Mutant(_mapping(orthogonal_ok=True), "orthogonal init is not a case of variance "
                                   "scaling: its entries are not independent draws (the rows are orthonormal); "
                                   "raise ValueError for it."),
}


# ----------------------------------------------------------------------------------------------
# predict_layer_stds


def _predict(*, variance_forward=False, backward_fan_in=False, no_slope=False, returns_var=False,
             second_moment_std=False, ignore_input_var=False):
    from ..variance import _moments

    def predict(widths, weight_vars, nonlinearity="relu", param=None, input_var=1.0, output_grad_var=1.0):
        depth = len(weight_vars)
        second = 1.0 if ignore_input_var else float(input_var)
        acts, slopes = [], []
        for layer in range(depth):
            q = widths[layer] * weight_vars[layer] * second
            m2, mean, d2 = _moments(nonlinearity, q, param)
            var = m2 - mean * mean
            acts.append(m2 if second_moment_std else var)
            second = var if variance_forward else m2
            slopes.append(1.0 if no_slope else d2)
        grad = [0.0] * depth
        grad[-1] = float(output_grad_var)
        for layer in range(depth - 1, 0, -1):
            fan = widths[layer] if backward_fan_in else widths[layer + 1]
            grad[layer - 1] = fan * weight_vars[layer] * slopes[layer] * grad[layer]
        if returns_var:
            return acts, grad
        return [math.sqrt(v) for v in acts], [math.sqrt(v) for v in grad]

    return predict


PREDICT: dict[str, Mutant] = {
    "variance_not_second_moment": Mutant(_predict(variance_forward=True), "the next layer's pre-activation variance "
                                         "is fan_in·Var[w]·E[h²]: the second moment of its input, not its variance "
                                         "(He et al. 2015, §2.2). ReLU outputs have a mean, so Var[h] < E[h²]."),
    "backward_sums_over_fan_in": Mutant(_predict(backward_fan_in=True), "backward, ∂L/∂h_{l−1} = W_lᵀ δ_l sums over "
                                        "the outputs each input feeds: fan_out of W_l = widths[l], not fan_in."),
    "no_derivative_factor": Mutant(_predict(no_slope=True), "the gradient passes f′(y_l) on the way down: "
                                   "Var[∂L/∂h_{l−1}] = fan_out·Var[w]·E[f′(y_l)²]·Var[∂L/∂h_l] (½ for ReLU)."),
    "variances_not_stds": Mutant(_predict(returns_var=True), "return standard deviations: the square roots of the "
                                 "variances the recursion gives."),
    "second_moment_as_std": Mutant(_predict(second_moment_std=True), "the std of h_l is √Var[h_l] = "
                                   "√(E[h²] − E[h]²); √E[h²] is too large for ReLU, whose outputs have mean √(q/2π)."),
    "input_variance_ignored": Mutant(_predict(ignore_input_var=True), "the recursion starts from the input: "
                                     "E[h_0²] = input_var."),
}


# ----------------------------------------------------------------------------------------------
# find_init_bug


def _layer_moments(model, x):
    """Per nn.Linear in forward order: (E[input²], E[output²], output std, weight var·fan_in)."""
    records = []

    def hook(module, inputs, output):
        records.append((inputs[0].double().pow(2).mean().item(), output.double().pow(2).mean().item(),
                        output.double().std().item(), module.weight.double().var().item() * module.in_features))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Linear)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return records


def _odd_one(values, flip=False, shift=0):
    logs = [math.log(max(v, 1e-300)) for v in values]
    median = sorted(logs)[len(logs) // 2]
    i = max(range(len(logs)), key=lambda k: abs(logs[k] - median))
    small = logs[i] < median
    return i + shift, ("too large" if small else "too small") if flip else ("too small" if small else "too large")


def _bug(how):
    def find_init_bug(model, x):
        records = _layer_moments(model, x)
        if how == "activation level":
            return _odd_one([r[2] for r in records])
        if how == "weights":
            return _odd_one([r[3] for r in records])
        if how == "first skipped":  # consecutive output stds: no ratio for the first layer
            ratios = [records[k][1] / records[k - 1][1] for k in range(1, len(records))]
            index, direction = _odd_one(ratios)
            return index + 1, direction
        gains = [r[1] / r[0] for r in records]
        if how == "flipped":
            return _odd_one(gains, flip=True)
        if how == "from one":
            return _odd_one(gains, shift=1)
        raise ValueError(how)

    return find_init_bug


BUG: dict[str, Mutant] = {
    "activation_level": Mutant(_bug("activation level"), "every layer after a bad one inherits its scale, so the "
                               "layer whose activations look most off is often not the culprit: compare each "
                               "layer's output with its own input — its gain E[y²]/E[x²] (fan_in·Var[w], 2 for "
                               "Kaiming) — and find the layer whose gain is unlike the others'."),
    "weights_only": Mutant(_bug("weights"), "a layer can be wrong in ways its weight variance does not show (here a "
                           "large bias); the gain E[y²]/E[x²] measured with forward hooks sees everything the layer "
                           "does to the signal."),
    "first_layer_skipped": Mutant(_bug("first skipped"), "the first layer has an input too: the data x. Measure "
                                  "every Linear layer's input and output (a forward hook receives both), the first "
                                  "one included."),
    "direction_flipped": Mutant(_bug("flipped"), "a layer whose gain is below the others' shrinks the signal: it is "
                                "'too small'; above, 'too large'."),
    "counted_from_one": Mutant(_bug("from one"), "count the Linear layers from 0, in the order the forward pass "
                               "runs them."),
}


# ----------------------------------------------------------------------------------------------
# init_output_layer_


def _output(*, bias="log", weights="zero", layer=-1, returns=True):
    def init_output_layer_(model, y):
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        target = linears[layer]
        counts = torch.bincount(y.flatten(), minlength=linears[-1].out_features).double()
        p = counts / counts.sum()
        with torch.no_grad():
            if weights == "zero":
                target.weight.zero_()
            if bias == "log":
                values = torch.log(p)
            elif bias == "p":
                values = p
            elif bias == "neg":
                values = -torch.log(p)
            else:
                values = torch.zeros_like(p)
            if target.bias.shape == values.shape:
                target.bias.copy_(values.to(target.bias.dtype))
        return model if returns else None

    return init_output_layer_


OUTPUT: dict[str, Mutant] = {
    "bias_is_p": Mutant(_output(bias="p"), "with zero weights the model predicts softmax(b); for softmax(b) = p the "
                        "bias is b = ln p (plus any constant), not p itself."),
    "bias_zero": Mutant(_output(bias="zero"), "a zero bias predicts every class with probability 1/C (loss ln C): "
                        "right for balanced classes only. With imbalanced labels set b = ln p, and the loss at init "
                        "is the labels' entropy H(p) < ln C."),
    "bias_negative_log": Mutant(_output(bias="neg"), "softmax(b) = p needs b = +ln p (frequent classes get the "
                                "larger logit), not −ln p."),
    "weights_kept": Mutant(_output(weights="kept"), "the bias alone does not set the prediction while the weights "
                           "still make the logits depend on the input: set the output layer's weights to 0 (the "
                           "layers below are random, so the symmetry is broken already)."),
    "first_layer": Mutant(_output(layer=0), "the output layer is the model's last nn.Linear (the one that makes "
                          "the logits); [m for m in model.modules() if isinstance(m, nn.Linear)][-1]."),
    "returns_none": Mutant(_output(returns=False), "return the model, so that `model = init_output_layer_(model, "
                           "y)` works."),
}
