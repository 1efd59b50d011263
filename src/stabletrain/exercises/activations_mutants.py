"""Lesson 02's mutant catalogue: plausible wrong implementations, each with its misconception and
what to do instead.

Imported by the grader and the project's tests only (never in a student's grading kernel), since
most mutants are the answer key with one thing changed.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.integrate import quad
from scipy.special import erf, ndtr
from torch import nn

from .. import activations as reference
from .base import Mutant

# ----------------------------------------------------------------------------------------------
# activation_and_grad


def _grad_with(name: str, z, **override):
    """The reference's (f, f′), with the pair of one activation replaced by ``override[name]``."""
    if name in override:
        z = np.asarray(z)
        return override[name](z)
    return reference.activation_and_grad(name, z)


def _naive_sigmoid(z):
    e = np.exp(-z)  # overflows for z < −88.7 (float32) or −709.8 (float64)
    s = 1 / (1 + e)
    return s.astype(z.dtype), (e / (1 + e) ** 2).astype(z.dtype)


def _naive_tanh(z):
    t = (np.exp(z) - np.exp(-z)) / (np.exp(z) + np.exp(-z))
    return t.astype(z.dtype), (1 - t * t).astype(z.dtype)


def _tanh_no_square(z):
    t = np.tanh(z)
    return t, (1 - t).astype(z.dtype)


def _relu_one_at_zero(z):
    return np.maximum(z, 0).astype(z.dtype), (z >= 0).astype(z.dtype)


def _leaky_one_at_zero(z):
    return np.where(z > 0, z, 0.01 * z).astype(z.dtype), np.where(z >= 0, 1, 0.01).astype(z.dtype)


def _elu_slope_is_function(z):
    f = np.where(z > 0, z, np.expm1(np.minimum(z, 0))).astype(z.dtype)
    return f, np.where(z > 0, 1, np.expm1(np.minimum(z, 0))).astype(z.dtype)


def _gelu_phi_only(z):
    f, _ = reference.activation_and_grad("gelu", z)
    return f, ndtr(z).astype(z.dtype)


def _gelu_wrong_erf(z):
    phi = 0.5 * (1 + erf(z / 2))  # z/2 where Φ needs z/√2
    slope = phi + z * np.exp(-z * z / 4) / (2 * math.sqrt(math.pi))
    return (z * phi).astype(z.dtype), slope.astype(z.dtype)


def _gelu_tanh_is_exact(z):
    return reference.activation_and_grad("gelu", z)


def _gelu_tanh_no_chain(z):
    c = math.sqrt(2 / math.pi)
    zd = z.astype(np.float64)
    t = np.tanh(c * (zd + 0.044715 * zd ** 3))
    f = 0.5 * zd * (1 + t)
    slope = 0.5 * (1 + t) + 0.5 * zd * (1 - t * t) * c  # misses (1 + 3·0.044715 z²)
    return f.astype(z.dtype), slope.astype(z.dtype)


def _silu_no_product(z):
    f, _ = reference.activation_and_grad("silu", z)
    return f, reference.sigmoid(z)


def _float64_constants(z):
    return np.maximum(z, 0).astype(z.dtype), np.where(z > 0, 1.0, 0.0)


def _leaky_float64_constants(z):
    return np.where(z > 0, z, 0.01 * z).astype(z.dtype), np.where(z > 0, 1.0, 0.01)


_KNOWN = {name: None for name in reference.GRADED_ACTIVATIONS}


def _grad_key_error(name, z):
    _KNOWN[name]  # a dict lookup: KeyError for an unknown name
    return reference.activation_and_grad(name, z)


def _grad_mutant(**override):
    return lambda name, z: _grad_with(name, z, **override)


# ----------------------------------------------------------------------------------------------
# saturation_fraction


def _values(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def _sat_with(a, activation, tol=0.06, **slopes):
    a = _values(a)
    if activation in slopes:
        return float(np.mean(slopes[activation](a) < tol))
    return reference.saturation_fraction(a, activation, tol)


def _sat_mutant(**slopes):
    return lambda a, activation, tol=0.06: _sat_with(a, activation, tol, **slopes)


def _sat_tanh_one_sided(a, activation, tol=0.06):
    a = _values(a)
    if activation == "tanh":
        return float(np.mean(a > math.sqrt(1 - tol)))
    return reference.saturation_fraction(a, activation, tol)


def _sat_count(a, activation, tol=0.06):
    return reference.saturation_fraction(a, activation, tol) * _values(a).size


def _sat_fixed_tol(a, activation, tol=0.06):
    return reference.saturation_fraction(a, activation, 0.06)


def _sat_per_unit(a, activation, tol=0.06):
    a = _values(a)
    ratio = reference._slope_ratio_from_output(activation, a)
    per_unit = (ratio < tol).reshape(a.shape[0], -1).all(axis=0) if a.ndim > 1 else ratio < tol
    return float(np.mean(per_unit))


# ----------------------------------------------------------------------------------------------
# count_dead_neurons


def _count_with(model, data, *, kinds=reference.RELU_FAMILY, test=lambda z, out: z <= 0, reduce="all",
                per_module=False, walk="modules", remove=True, result="count", eval_mode=False):
    records, keyed = [], {}

    def hook(module, inputs, output):
        z = inputs[0].detach()
        off = test(z, output.detach()).reshape(z.shape[0], -1)
        if reduce == "all":
            dead = off.all(dim=0)
        elif reduce == "any":
            dead = off.any(dim=0)
        else:  # per entry
            dead = off.reshape(-1)
        if per_module:
            keyed[module] = dead
        else:
            records.append(dead)

    modules = model.modules() if walk == "modules" else model.children()
    handles = [m.register_forward_hook(hook) for m in modules if isinstance(m, kinds)]
    if eval_mode:
        model.eval()
    with torch.no_grad():
        model(data)
    if remove:
        for h in handles:
            h.remove()
    found = list(keyed.values()) if per_module else records
    count = int(sum(int(d.sum()) for d in found))
    if result == "fraction":
        return count / max(1, sum(d.numel() for d in found))
    return count


# ----------------------------------------------------------------------------------------------
# second_moment


def _moment_with(activation, sigma, **override):
    if activation in override:
        values = [override[activation](float(s)) for s in np.atleast_1d(np.asarray(sigma, dtype=np.float64))]
        return values[0] if np.ndim(sigma) == 0 else np.array(values)
    return reference.second_moment(activation, sigma)


def _moment_mutant(**override):
    return lambda activation, sigma: _moment_with(activation, sigma, **override)


def _moment_all(rule):
    """A second_moment whose every activation follows ``rule(f, sigma)``."""
    def moment(activation, sigma):
        f = reference.ACTIVATIONS[activation].f
        values = [rule(f, float(s), activation) for s in np.atleast_1d(np.asarray(sigma, dtype=np.float64))]
        return values[0] if np.ndim(sigma) == 0 else np.array(values)

    return moment


def _variance_rule(f, s, activation):
    return float(reference.second_moment(activation, s) - reference.first_moment(activation, s) ** 2)


def _std_as_variance_rule(f, s, activation):
    return float(reference.second_moment(activation, math.sqrt(s)))


def _monte_carlo_rule(f, s, activation):
    x = np.random.default_rng(0).standard_normal(100_000)
    return float(np.mean(f(s * x) ** 2))


def _hermgauss_rule(f, s, activation):
    x, w = np.polynomial.hermite.hermgauss(80)  # physicists': weight e^(−x²)
    return float(np.sum(w * f(s * x) ** 2) / math.sqrt(2 * math.pi))  # the probabilists' normalisation


def _few_nodes_rule(f, s, activation):
    slopes = reference.ACTIVATIONS[activation].slopes
    if slopes is not None:
        return 0.5 * (slopes[0] ** 2 + slopes[1] ** 2) * s * s
    x, w = np.polynomial.hermite_e.hermegauss(12)
    return float(np.sum(w * f(s * x) ** 2) / math.sqrt(2 * math.pi))


def _derivative_rule(f, s, activation):
    return float(reference.derivative_second_moment(activation, s))


def _density_rule(f, s, activation):
    """∫ f(z)² · e^(−z²/2σ²)/(σ√(2π)) dz over z: the density divides by σ, so σ = 0 gives nan."""
    if s == 0:
        return math.nan  # 0/0 in the density
    density = lambda z: math.exp(-z * z / (2 * s * s)) / (s * math.sqrt(2 * math.pi))  # noqa: E731
    return float(sum(quad(lambda z: float(f(z)) ** 2 * density(z), lo, hi, epsrel=1e-11, limit=200)[0]
                     for lo, hi in ((-math.inf, 0.0), (0.0, math.inf))))


def _moment_scalar_only(activation, sigma):
    return float(np.atleast_1d(reference.second_moment(activation, sigma))[0])


# ----------------------------------------------------------------------------------------------
# variance_preserving_gain


def _gain_q_as_sigma(activation, second_moment, q=1.0):
    return math.sqrt(q / second_moment(activation, q))


def _gain_no_sqrt(activation, second_moment, q=1.0):
    return q / second_moment(activation, math.sqrt(q))


def _gain_inverted(activation, second_moment, q=1.0):
    return math.sqrt(second_moment(activation, math.sqrt(q)) / q)


def _gain_at_one(activation, second_moment, q=1.0):
    return math.sqrt(1.0 / second_moment(activation, 1.0))


def _gain_no_q(activation, second_moment, q=1.0):
    return math.sqrt(1.0 / second_moment(activation, math.sqrt(q)))


# ----------------------------------------------------------------------------------------------
# recycle_dead_units_


def _recycle_with(model, data, *, test="le", reduce="all", layers="hidden", incoming="fresh", outgoing="columns",
                  bias="zero", which="dead", in_place=True, returns=True, freeze=False):
    modules = list(model)
    linears = [i for i, m in enumerate(modules) if isinstance(m, nn.Linear)]
    targets = linears if layers == "all" else linears[:-1]
    masks = {}
    with torch.no_grad():
        h = data
        for i, module in enumerate(modules):
            h = module(h)
            if i in targets:
                off = (h <= 0) if test == "le" else (h < 0)
                masks[i] = off.all(dim=0) if reduce == "all" else off.any(dim=0)
        count = 0
        for i in targets:
            mask = masks[i]
            if not mask.any():
                continue
            layer = modules[i]
            if which == "layer":
                mask = torch.ones_like(mask)
            k, fan_in = int(mask.sum()), layer.in_features
            if incoming == "zero":
                fresh = torch.zeros(k, fan_in)
            elif incoming == "randn":
                fresh = torch.randn(k, fan_in)
            else:
                fresh = (torch.rand(k, fan_in) * 2 - 1) / math.sqrt(fan_in)
            if in_place:
                layer.weight[mask] = fresh
                if bias == "zero":
                    layer.bias[mask] = 0.0
            else:
                w = layer.weight.detach().clone()
                w[mask] = fresh
                b = layer.bias.detach().clone()
                if bias == "zero":
                    b[mask] = 0.0
                layer.weight = nn.Parameter(w)
                layer.bias = nn.Parameter(b)
            following = next((modules[j] for j in linears if j > i), None)
            if following is not None:
                if outgoing == "columns":
                    if in_place:
                        following.weight[:, mask] = 0.0
                    else:
                        w = following.weight.detach().clone()
                        w[:, mask] = 0.0
                        following.weight = nn.Parameter(w)
                elif outgoing == "rows":
                    following.weight[mask] = 0.0  # unit j's row of the next layer: the wrong unit (or an IndexError)
            count += k
    if freeze:  # requires_grad switched off to write into the weights, and never switched back on
        for parameter in model.parameters():
            parameter.requires_grad_(False)
    return count if returns else None


def _recycle(**kw):
    return lambda model, data: _recycle_with(model, data, **kw)


# ----------------------------------------------------------------------------------------------
# The catalogue

_OVERFLOW = ("e^(−z) overflows for large negative z (e^1000 = inf in float64, e^89 = inf in float32), and inf/inf "
             "= nan: compute the sigmoid from e^(−|z|), which never overflows (σ = 1/(1 + e) for z ≥ 0, e/(1 + e) "
             "for z < 0), and its slope as σ(1 − σ).")

GRAD: dict[str, Mutant] = {
    "naive_sigmoid": Mutant(_grad_mutant(sigmoid=_naive_sigmoid), _OVERFLOW),
    "naive_tanh": Mutant(_grad_mutant(tanh=_naive_tanh), "(e^z − e^(−z))/(e^z + e^(−z)) overflows for |z| > 710 "
                         "(inf/inf = nan): use np.tanh, which is finite everywhere, and tanh′ = 1 − tanh²."),
    "tanh_no_square": Mutant(_grad_mutant(tanh=_tanh_no_square), "tanh′(z) = 1 − tanh(z)², squared: 1 − tanh(z) "
                             "is not the slope (it is 2 for very negative z)."),
    "relu_one_at_zero": Mutant(_grad_mutant(relu=_relu_one_at_zero), "PyTorch's ReLU′(0) = 0: the slope is 1 only "
                               "for z > 0, strictly (z >= 0 gives 1 at the kink)."),
    "leaky_one_at_zero": Mutant(_grad_mutant(leaky_relu=_leaky_one_at_zero), "PyTorch's LeakyReLU′(0) is the "
                                "negative slope, 0.01: the slope is 1 only for z > 0, strictly."),
    "elu_slope_is_function": Mutant(_grad_mutant(elu=_elu_slope_is_function), "for z ≤ 0 ELU is e^z − 1, so its "
                                    "slope is e^z (α·e^z), not e^z − 1; at z = 0 both sides give 1."),
    "gelu_phi_only": Mutant(_grad_mutant(gelu=_gelu_phi_only), "product rule: d/dz [z·Φ(z)] = Φ(z) + z·φ(z), with "
                            "φ(z) = e^(−z²/2)/√(2π) the normal density; Φ(z) alone forgets the second term."),
    "gelu_wrong_erf": Mutant(_grad_mutant(gelu=_gelu_wrong_erf), "the normal CDF is Φ(z) = ½(1 + erf(z/√2)): the "
                             "argument of erf is z/√2, not z/2."),
    "gelu_tanh_is_exact": Mutant(_grad_mutant(gelu_tanh=_gelu_tanh_is_exact), "'gelu_tanh' is the tanh "
                                 "approximation ½z(1 + tanh(√(2/π)(z + 0.044715 z³))) (PyTorch's "
                                 "approximate='tanh'); it differs from the exact z·Φ(z) by up to about 5e-4."),
    "gelu_tanh_no_chain": Mutant(_grad_mutant(gelu_tanh=_gelu_tanh_no_chain), "chain rule: the inner "
                                 "u = √(2/π)(z + 0.044715 z³) has u′ = √(2/π)(1 + 3·0.044715 z²); the slope is "
                                 "½(1 + tanh u) + ½ z (1 − tanh² u) u′."),
    "silu_no_product": Mutant(_grad_mutant(silu=_silu_no_product), "product rule: d/dz [z·σ(z)] = σ(z) + "
                              "z·σ(z)(1 − σ(z)); σ(z) alone forgets the second term."),
    "float64_constants": Mutant(_grad_mutant(relu=_float64_constants, leaky_relu=_leaky_float64_constants),
                                "keep z's dtype: np.where(z > 0, 1.0, 0.0) is a float64 array even for a float32 "
                                "z; add .astype(z.dtype)."),
    "unknown_key_error": Mutant(_grad_key_error, "an unknown name must raise ValueError naming the known ones; a "
                                "dict lookup raises KeyError — catch it (or test `name in ...`) and raise "
                                "ValueError."),
}

SATURATION: dict[str, Mutant] = {
    "sigmoid_like_tanh": Mutant(_sat_mutant(sigmoid=lambda a: 1 - a * a), "the sigmoid's output lies in (0, 1) and "
                                "its slope is σ′ = a(1 − a), largest (¼) at a = ½; 1 − a² is tanh's slope."),
    "sigmoid_absolute": Mutant(_sat_mutant(sigmoid=lambda a: a * (1 - a)), "compare the slope with the "
                               "activation's largest slope: σ′ ≤ ¼, so the sigmoid is saturated where "
                               "a(1 − a) < tol·¼, i.e. 4a(1 − a) < tol."),
    "activation_applied_again": Mutant(_sat_mutant(tanh=lambda a: 1 - np.tanh(a) ** 2,
                                                   sigmoid=lambda a: 4 * reference.sigmoid(a) * (1 - reference.sigmoid(a))),
                                       "a is already the activation's output: tanh′ = 1 − a² and σ′ = a(1 − a) "
                                       "directly, without applying tanh or σ to a again."),
    "tanh_one_sided": Mutant(_sat_tanh_one_sided, "tanh saturates at both ends: |a| close to 1, negative outputs "
                             "near −1 as well as positive ones near +1 (1 − a² < tol covers both)."),
    "relu_strict": Mutant(_sat_mutant(relu=lambda a: np.where(a < 0, 0.0, 1.0)),
                          "ReLU's output on its flat side is exactly 0, never negative: its slope is 0 where a == 0 "
                          "(test a <= 0, not a < 0)."),
    "elu_exp_of_output": Mutant(_sat_mutant(elu=lambda a: np.where(a > 0, 1.0, np.exp(a))), "a is ELU's output "
                                "e^z − 1 for z ≤ 0, so the slope e^z is a + 1 — not e^a."),
    "leaky_never_saturated": Mutant(_sat_mutant(leaky_relu=lambda a: np.ones_like(a)), "Leaky ReLU's slope on its "
                                    "negative side is 0.01, below tol times its largest slope (1): those entries "
                                    "count as saturated (what Leaky ReLU avoids is a slope of exactly 0)."),
    "count_not_fraction": Mutant(_sat_count, "return the fraction of saturated entries (a mean between 0 and 1), "
                                 "not their count."),
    "tol_ignored": Mutant(_sat_fixed_tol, "use the tol argument; 0.06 is only its default."),
    "per_unit": Mutant(_sat_per_unit, "saturation is counted per entry (per example and unit): the share of all "
                       "entries of a whose slope is small, not the share of units saturated on every example."),
}

DEAD: dict[str, Mutant] = {
    "per_entry": Mutant(lambda model, data: _count_with(model, data, reduce="entry"), "a unit is dead when it is off "
                        "for EVERY example: reduce over the batch (.all(dim=0)) and count units, not the "
                        "(example, unit) entries that are ≤ 0."),
    "any_example": Mutant(lambda model, data: _count_with(model, data, reduce="any"), "a unit that is off for some "
                          "examples and on for others is alive (it learns from those): dead means off for every "
                          "example, .all(dim=0), not .any(dim=0)."),
    "strict": Mutant(lambda model, data: _count_with(model, data, test=lambda z, out: z < 0), "PyTorch's ReLU′(0) = "
                     "0: a unit whose pre-activation is exactly 0 on every example (zero weights and bias) gets no "
                     "gradient either — test z <= 0, not z < 0."),
    "output_zero": Mutant(lambda model, data: _count_with(model, data, test=lambda z, out: out == 0), "test the "
                          "pre-activation (the module's input) z <= 0: a Leaky ReLU's output on its flat side is "
                          "negative, not 0, so testing the output for 0 never finds its inactive units."),
    "relu_only": Mutant(lambda model, data: _count_with(model, data, kinds=nn.ReLU), "count the units of "
                        "nn.LeakyReLU modules too (isinstance(m, (nn.ReLU, nn.LeakyReLU)))."),
    "linear_outputs": Mutant(lambda model, data: _count_with(model, data, kinds=nn.Linear, test=lambda z, out: out <= 0),
                             "only units that feed a ReLU can be dead; the last Linear's outputs are the "
                             "network's outputs (logits), which may be negative for every example: hook the "
                             "activation modules, not the Linear layers."),
    "per_module": Mutant(lambda model, data: _count_with(model, data, per_module=True), "one activation module may "
                         "be called after several layers (one nn.ReLU object reused in forward): record every "
                         "call as its own layer, not one entry per module (a dict keyed by module keeps only the "
                         "last call)."),
    "top_level": Mutant(lambda model, data: _count_with(model, data, walk="children"), "walk every submodule with "
                        "model.modules(): model.children() (or iterating an nn.Sequential) sees only the top "
                        "level and misses activations inside nested blocks."),
    "hooks_left": Mutant(lambda model, data: _count_with(model, data, remove=False), "remove every hook you "
                         "registered (handle.remove(), in a finally block): left behind, each call adds more hooks "
                         "and the model keeps running them."),
    "fraction": Mutant(lambda model, data: _count_with(model, data, result="fraction"), "return the number of dead "
                       "units (an int), not their fraction."),
    "eval_left": Mutant(lambda model, data: _count_with(model, data, eval_mode=True), "counting must leave the "
                        "model as it was: if you switch to model.eval(), switch back with model.train(was_training)."),
}

MOMENT: dict[str, Mutant] = {
    "variance": Mutant(_moment_all(_variance_rule), "the second moment E[f(z)²], not the variance E[f²] − E[f]²: "
                       "the next layer's pre-activation variance is n·Var[w]·E[h²], and the mean of h counts too "
                       "(He et al. 2015)."),
    "sigma_as_variance": Mutant(_moment_all(_std_as_variance_rule), "sigma is the standard deviation: z = σ·x with "
                                "x ~ N(0, 1), so E[z²] = σ², not σ."),
    "relu_quarter": Mutant(_moment_mutant(relu=lambda s: s * s / 4, leaky_relu=lambda s: (1 + 1e-4) * s * s / 4),
                           "ReLU keeps the positive half of z: E[relu(z)²] = E[z²·1{z > 0}] = σ²/2 — half the "
                           "second moment, not a quarter (it halves the mass, not each value)."),
    "leaky_slope_not_squared": Mutant(_moment_mutant(leaky_relu=lambda s: (1 + 0.01) * s * s / 2), "squares: "
                                      "E[leaky(z)²] = (1 + s²)·σ²/2 with s = 0.01, not (1 + s)·σ²/2."),
    "monte_carlo": Mutant(_moment_all(_monte_carlo_rule), "a Monte-Carlo estimate is accurate to about 1/√N (0.3 % "
                          "at N = 10⁵): integrate instead — the closed form where there is one, "
                          "scipy.integrate.quad on each half-line otherwise."),
    "hermgauss_physicists": Mutant(_moment_all(_hermgauss_rule), "np.polynomial.hermite.hermgauss (physicists') "
                                   "integrates against e^(−x²): use z = σ√2·x and divide by √π — or use "
                                   "hermite_e.hermegauss (probabilists', weight e^(−x²/2)) with z = σx and "
                                   "divide by √(2π)."),
    "few_nodes": Mutant(_moment_all(_few_nodes_rule), "a few Gauss–Hermite nodes cannot follow a kink (SELU's at 0) "
                        "or a steep function (tanh at large σ): integrate each half-line separately "
                        "(scipy.integrate.quad), or use many more nodes and check them against quad."),
    "derivative": Mutant(_moment_all(_derivative_rule), "E[f′(z)²] is the backward factor (lesson 1); the forward "
                         "second moment is E[f(z)²], of the activation itself."),
    "nan_at_zero": Mutant(_moment_all(_density_rule), "at σ = 0, z is exactly 0: return f(0)² (¼ for the sigmoid) "
                          "instead of dividing by σ."),
    "scalar_only": Mutant(_moment_scalar_only, "sigma may be an array: return an array with one value per σ (loop, "
                          "or np.vectorize)."),
}

GAIN: dict[str, Mutant] = {
    "q_as_sigma": Mutant(_gain_q_as_sigma, "q is a variance: second_moment takes the standard deviation, "
                         "second_moment(activation, math.sqrt(q))."),
    "no_sqrt": Mutant(_gain_no_sqrt, "the gain multiplies the std of the weights (Var[W] = g²/fan_in): "
                      "g = √(q / E[f(z)²]); q / E[f(z)²] is g²."),
    "inverted": Mutant(_gain_inverted, "the next variance is g²·E[f(z)²]; keeping it at q needs "
                       "g² = q / E[f(z)²], not E[f(z)²] / q."),
    "at_one": Mutant(_gain_at_one, "take E[f(z)²] at the variance q the layer receives (std √q): tanh and the "
                     "sigmoid are not homogeneous, so the gain that holds q = 1 does not hold other q."),
    "no_q": Mutant(_gain_no_q, "keeping the variance at q means g²·E[f(z)²] = q: the numerator is q, not 1."),
}

RECYCLE: dict[str, Mutant] = {
    "zero_incoming": Mutant(_recycle(incoming="zero"), "a unit with zero incoming weights and zero bias has "
                            "pre-activation exactly 0, where ReLU′ = 0: it stays dead. Draw fresh weights, "
                            "U(−1/√fan_in, 1/√fan_in) as nn.Linear does."),
    "keep_outgoing": Mutant(_recycle(outgoing="keep"), "set the recycled unit's outgoing weights (its column in the "
                            "next Linear) to 0, so the network computes the same outputs right after recycling; "
                            "training then decides how much of the new unit to use."),
    "zero_next_rows": Mutant(_recycle(outgoing="rows"), "the next layer's weight has shape (out, in): unit j's "
                             "outgoing weights are column j, next.weight[:, j], not row j (that is a unit of the "
                             "next layer)."),
    "whole_layer": Mutant(_recycle(which="layer"), "recycle only the dead units; the live ones keep their weights "
                          "(re-initialising a whole layer throws away what it learned)."),
    "any_example": Mutant(_recycle(reduce="any"), "a unit is dead only if it is off for every example of data "
                          "(.all(dim=0)); a unit off for some examples is alive and keeps its weights."),
    "strict": Mutant(_recycle(test="lt"), "ReLU′(0) = 0: a unit whose pre-activation is exactly 0 on every "
                     "example is dead too — test <= 0, not < 0."),
    "new_parameters": Mutant(_recycle(in_place=False), "work in place (under torch.no_grad(), index-assign into "
                             "layer.weight and layer.bias): assigning new nn.Parameters leaves the optimizer "
                             "updating the old ones, so the recycled units never train."),
    "unscaled": Mutant(_recycle(incoming="randn"), "draw the fresh weights as nn.Linear does, "
                       "U(−1/√fan_in, 1/√fan_in): torch.randn gives std 1, √(3·fan_in) times too large."),
    "bias_kept": Mutant(_recycle(bias="keep"), "reset the bias too (to 0): a dead unit's bias is usually what "
                        "pushed it below 0, and fresh weights with the old bias are still off."),
    "output_layer_too": Mutant(_recycle(layers="all"), "only hidden units (followed by a ReLU) can be dead; the last "
                               "Linear's outputs are the network's outputs and must not be touched."),
    "returns_nothing": Mutant(_recycle(returns=False), "return the number of units recycled, so that a training "
                              "loop can log it."),
    "frozen": Mutant(_recycle(freeze=True), "write into the weights under torch.no_grad(); switching requires_grad "
                     "off (and not back on) leaves every parameter without a gradient, so nothing trains any more."),
}
