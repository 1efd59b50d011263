r"""Exercises of lesson 03: fans, gains, the Xavier / Kaiming / orthogonal initializers,
``variance_scaling_`` and ``init_model_``.

Random initializers are graded by what must hold whatever the draw, never by comparing draws:
running a case fills a fresh tensor (a NaN sentinel, so an initializer that does not work in place
is seen) and records its values as plain arrays; :func:`_compare`, in the grader's process,
computes every statistic from those values. So a student cannot fake a statistic, and a correct
implementation drawing its numbers by any route (``torch.rand`` scaled, ``torch.randn`` times a
std, a QR in float64) passes.

The confidence bands (derived in the lesson and proven in ``tests/test_init_lab.py``)
-------------------------------------------------------------------------------------
For n iid zero-mean draws of variance σ² and kurtosis κ = E[w⁴]/σ⁴, the mean square
m₂ = Σw²/n has mean σ² and variance σ⁴(κ − 1)/n. A case passes its variance check when

    |m₂/σ² − 1| ≤ 1.1 · Z · √((κ − 1)/n),   Z = 6,

(κ = 3 for a normal, 9/5 for a uniform, 2.3655 for a normal truncated at ±2σ; the 10 % margin
covers the skew of χ²). For the normal, m₂/σ² ~ χ²_n/n exactly, and for the bounded uniform and
truncated normal Bernstein's inequality bounds the tail: each check fails a correct
implementation with probability < 10⁻⁸. The mean check |mean| ≤ 6.5·σ/√n has the same bound.
With n = 4096 (every statistical case) the band is ±14.6 % (normal), ±9.2 % (uniform), ±12.1 %
(truncated). Every catalogued mistake that only the variance reveals lands at least 6 of its own
standard deviations outside the band on some case (``tests/test_init_lab.py`` measures it), so it is
rejected at every seed. A grading runs fewer than 100 such checks, so a
correct submission loses a point less than once in a million gradings.

Uniform vs normal: a uniform fill must stay within its bound b = √3σ and reach within 25/n·b of
it (P(all |w| below) = (1 − 25/n)ⁿ < e⁻²⁵); a normal fill must exceed the level that n draws
exceed with probability 1 − 10⁻⁹ (2.8σ for n = 4096), which no uniform of the same variance
can; a truncated normal stays within ±2σ/0.8796 and reaches near it, and piles no mass on the edge
(clamping a normal would).
"""

from __future__ import annotations

import math
import warnings
import zlib
from collections.abc import Callable
from contextlib import contextmanager
from statistics import NormalDist
from typing import Any

import numpy as np
import torch
from torch import nn

from ..threads import single_thread
from .base import Case, Exercise, describe_value, first_difference, raised, to_plain
from .rng import cpu_rng

#: the statistical answer keys are torch's own: switched off in grading kernels
TORCH_ANSWER_KEYS = {
    "torch.nn.init": ("calculate_gain", "trunc_normal_", "xavier_uniform_", "xavier_normal_",
                      "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "_calculate_fan_in_and_fan_out",
                      "_calculate_correct_fan", "_no_grad_trunc_normal_"),
}
REFERENCE_MODULES = ("init", "variance")

#: z of every check: two-sided normal tail 2·Φ(−6) ≈ 2·10⁻⁹ (mean: 6.5, for Bernstein's bound)
Z = 6.0
Z_MEAN = 6.5
SKEW_MARGIN = 1.1
KURTOSIS = {"uniform": 1.8, "normal": 3.0, "truncated_normal": 2.3655367171296495, "any": 3.0}
TRUNCATED_STD = 0.87962566103423978  # std of a unit normal truncated to [-2, 2]
N = 4096  # entries in a statistical case: halving it from 8192 halved what a grading kernel sends


def variance_band(n: int, kind: str) -> float:
    """Half-width of the accepted band for m₂/σ² with n draws of a ``kind`` distribution."""
    return SKEW_MARGIN * Z * math.sqrt((KURTOSIS[kind] - 1.0) / n)


def mean_band(n: int) -> float:
    """Half-width of the accepted band for mean/σ with n draws."""
    return Z_MEAN / math.sqrt(n)


def normal_reach(n: int) -> float:
    """The level (in σ) that the largest |w| of n normal draws exceeds with probability 1 − 10⁻⁹."""
    # P(all n below t) = (1 − 2Φ(−t))ⁿ ≤ exp(−2nΦ(−t)) = 1e-9  ⇒  Φ(−t) = 10.36 / n
    return -NormalDist().inv_cdf(-math.log(1e-9) / (2 * n))


# ----------------------------------------------------------------------------------------------
# Fans and gains written out for the cases (the grader's expectations; no answer key imported)


def _fans(shape: list[int]) -> tuple[int, int]:
    field = math.prod(shape[2:])
    return shape[1] * field, shape[0] * field


_GAIN2 = {"linear": 1.0, "conv1d": 1.0, "conv2d": 1.0, "conv3d": 1.0, "conv_transpose1d": 1.0,
          "conv_transpose2d": 1.0, "conv_transpose3d": 1.0, "sigmoid": 1.0, "tanh": 25.0 / 9, "relu": 2.0,
          "selu": 9.0 / 16}


def _gain2(nonlinearity: str, param: float | None = None) -> float:
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return 2.0 / (1.0 + slope**2)
    return _GAIN2[nonlinearity]


# ----------------------------------------------------------------------------------------------
# Deterministic exercises: fan_in_and_fan_out, calculate_gain


def _plain_result(value: Any) -> Any:
    """Numbers as floats, sequences as lists: a tuple (3, 5), a list [3, 5] and (3.0, 5.0) agree."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, (bool, np.bool_)):
        return {"kind": "bool", "value": bool(value)}
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return {"kind": "sequence", "items": [_plain_result(v) for v in value]}
    return to_plain(value)


def _run_value(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    inputs = case.inputs
    arg = inputs["arg"]
    if inputs.get("as") == "tensor":
        arg = torch.zeros(arg)
    elif inputs.get("as") == "size":
        arg = torch.Size(arg)
    elif inputs.get("as") == "tuple":
        arg = tuple(arg)
    out: dict[str, Any] = {"raised": None, "returned": None}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out["returned"] = _plain_result(fn(arg, *inputs.get("args", [])))
    except Exception as exc:  # the implementation's error is part of its behaviour
        out.update(raised(exc))
    return out


def _compare_value(case: Case, got: dict[str, Any], want: dict[str, Any]) -> str | None:
    problem = _compare_raised(got, want)
    if problem is not None or want["raised"] is not None:
        return problem
    diff = first_difference(got.get("returned"), want["returned"], 1e-6, 1e-9)
    if diff is None:
        return None
    _, g, w = diff
    show = lambda v: describe_value(v) if not isinstance(v, dict) or "items" not in v else (  # noqa: E731
        "(" + ", ".join(describe_value(i) for i in v["items"]) + ")")
    return f"expected {show(want['returned'])}, got {show(got.get('returned'))}."


def _compare_raised(got: dict[str, Any], want: dict[str, Any]) -> str | None:
    if want["raised"] is not None:
        if got.get("raised") != want["raised"]:
            came = f"raised {got['raised']}" if got.get("raised") else "returned normally"
            return f"expected {want['raised']} (as PyTorch raises here), but your function {came}."
        return None
    if got.get("raised") is not None:
        return f"your function raised {got['raised']}: {got.get('message', '')}"
    return None


def _fan_case(label: str, shape: list[int], as_: str, group: str) -> Case:
    return Case(f"{label} [{as_} of shape {tuple(shape)}]", {"arg": list(shape), "as": as_}, group)


def _fan_cases(level: str, seed: int) -> list[Case]:
    lin, conv, kinds = "Linear weights (out, in)", "conv weights: the receptive field counts", "shapes given as a torch.Size, tuple or list"
    cases = [
        _fan_case("a Linear weight: fan_in = in, fan_out = out", [5, 3], "tensor", lin),
        _fan_case("a Conv2d weight (out, in, kh, kw)", [16, 3, 3, 3], "tensor", conv),
    ]
    if level == "hidden":
        errors = "fewer than 2 dimensions raise ValueError"
        cases += [
            _fan_case("a tall Linear weight", [256, 17], "tensor", lin),
            _fan_case("a Conv1d weight", [8, 4, 5], "tensor", conv),
            _fan_case("a Conv3d weight", [4, 2, 3, 1, 2], "tensor", conv),
            _fan_case("a torch.Size", [6, 9, 2, 2], "size", kinds),
            _fan_case("a tuple", [7, 11], "tuple", kinds),
            _fan_case("a list", [3, 5, 2], "list", kinds),
            _fan_case("a bias (1 dimension) has no fans", [7], "tensor", errors),
            _fan_case("a scalar shape has no fans", [], "size", errors),
        ]
    return cases


def _gain_case(label: str, name: str, group: str, *param: Any) -> Case:
    shown = f"calculate_gain({name!r}" + "".join(f", {p!r}" for p in param) + ")"
    return Case(f"{label} [{shown}]", {"arg": name, "args": list(param)}, group)


def _gain_cases(level: str, seed: int) -> list[Case]:
    ident, relu_tanh, leaky = "linear, conv and sigmoid: gain 1", "relu √2 and tanh 5/3", "leaky_relu and its negative slope"
    cases = [
        _gain_case("a linear layer", "linear", ident),
        _gain_case("ReLU halves the second moment", "relu", relu_tanh),
        _gain_case("tanh", "tanh", relu_tanh),
        _gain_case("leaky_relu with its default slope 0.01", "leaky_relu", leaky),
    ]
    if level == "hidden":
        cases += [
            _gain_case("conv layers count as linear", "conv2d", ident),
            _gain_case("transposed conv layers count as linear", "conv_transpose3d", ident),
            _gain_case("sigmoid", "sigmoid", ident),
            _gain_case("leaky_relu with slope 0.2", "leaky_relu", leaky, 0.2),
            _gain_case("leaky_relu with slope √5 (nn.Linear's default init)", "leaky_relu", leaky, math.sqrt(5)),
            _gain_case("leaky_relu with an int slope", "leaky_relu", leaky, 1),
            _gain_case("leaky_relu with param=None", "leaky_relu", leaky, None),
            _gain_case("selu", "selu", "selu 3/4"),
            _gain_case("the param is ignored for relu", "relu", relu_tanh, 0.5),
            _gain_case("an unknown nonlinearity", "gelu", "an unknown name raises ValueError"),
            _gain_case("names are case-sensitive", "ReLU", "an unknown name raises ValueError"),
        ]
    return cases


# ----------------------------------------------------------------------------------------------
# Random initializers: cases


def _init_case(label: str, shape: list[int], group: str, *, args: tuple = (), kwargs: dict | None = None,
               kind: str | None = None, var: float | None = None, dtype: str = "float32", param: bool = False,
               generator: int | None = None, draws: int = 1, gain: float | None = None, haar: bool = False) -> Case:
    """``kind``: "uniform", "normal", "truncated_normal", "any" (a distribution checked only by its
    moments), "orthogonal", or None (nothing statistical: the generator and error cases)."""
    kwargs = dict(kwargs or {})
    shown = "".join(f", {a!r}" for a in args) + "".join(f", {k}={v!r}" for k, v in kwargs.items())
    extra = ", as an nn.Parameter" if param else ""
    extra += f", {dtype}" if dtype != "float32" else ""
    extra += f", generator seeded {generator}" if generator is not None else ""
    extra += f", {draws} draws" if draws > 1 else ""
    text = f"{label} [shape {tuple(shape)}{shown}{extra}]"
    return Case(text, {"shape": list(shape), "args": list(args), "kwargs": kwargs, "dtype": dtype, "param": param,
                       "generator": generator, "draws": draws,
                       "expect": {"kind": kind, "var": var, "gain": gain, "haar": haar}}, group)


def _xavier_var(shape: list[int], gain: float = 1.0) -> float:
    fan_in, fan_out = _fans(shape)
    return gain**2 * 2.0 / (fan_in + fan_out)


def _xavier_cases(kind: str) -> Callable[[str, int], list[Case]]:
    def cases(level: str, seed: int) -> list[Case]:
        core, conv = "Var = 2·gain²/(fan_in + fan_out)", "conv weights: the receptive field counts"
        out = [
            _init_case("a Linear weight (out=128, in=32)", [128, 32], core, kind=kind, var=_xavier_var([128, 32])),
            _init_case("a Conv2d weight", [32, 8, 4, 4], conv, kind=kind, var=_xavier_var([32, 8, 4, 4])),
        ]
        if level != "hidden":
            return out
        gain, rest = "the gain multiplies the std", "in place on an nn.Parameter, float64, the generator"
        out += [
            _init_case("a wide Linear weight", [16, 256], core, kind=kind, var=_xavier_var([16, 256])),
            _init_case("a Conv1d weight", [64, 16, 4], conv, kind=kind, var=_xavier_var([64, 16, 4])),
            _init_case("gain 2", [32, 128], gain, args=(2.0,), kind=kind, var=_xavier_var([32, 128], 2.0)),
            _init_case("tanh's gain given as a keyword", [128, 32], gain, kwargs={"gain": 5 / 3}, kind=kind,
                       var=_xavier_var([128, 32], 5 / 3)),
            _init_case("an nn.Parameter that requires grad (wrap the fill in torch.no_grad())", [128, 32], rest,
                       param=True, kind=kind, var=_xavier_var([128, 32])),
            _init_case("float64 stays float64", [32, 128], rest, dtype="float64", kind=kind, var=_xavier_var([32, 128])),
            _init_case("the same generator seed gives the same weights, another seed others", [16, 8], rest,
                       generator=1000 + seed % 1000),
            _init_case("a 1-D tensor has no fans", [10], "fewer than 2 dimensions raise ValueError"),
        ]
        return out

    return cases


def _kaiming_var(shape: list[int], a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu") -> float:
    fan_in, fan_out = _fans(shape)
    return _gain2(nonlinearity, a) / (fan_in if mode == "fan_in" else fan_out)


def _kaiming_cases(kind: str) -> Callable[[str, int], list[Case]]:
    def cases(level: str, seed: int) -> list[Case]:
        core, mode = "defaults: Var = 2/fan_in (leaky_relu, a = 0)", "mode='fan_out' uses fan_out"
        conv = "conv weights: the receptive field counts"
        out = [
            _init_case("default arguments on a Linear weight (out=128, in=32)", [128, 32], core, kind=kind,
                       var=_kaiming_var([128, 32])),
            _init_case("relu, fan_out, on a Conv2d weight", [32, 8, 4, 4], conv,
                       kwargs={"mode": "fan_out", "nonlinearity": "relu"}, kind=kind,
                       var=_kaiming_var([32, 8, 4, 4], 0, "fan_out", "relu")),
        ]
        if level != "hidden":
            return out
        gains, rest = "the gain of each nonlinearity (tanh 5/3, leaky_relu's slope a)", \
            "in place on an nn.Parameter, float64, the generator"
        out += [
            _init_case("a wide Linear weight", [16, 256], core, kind=kind, var=_kaiming_var([16, 256])),
            _init_case("relu on a Conv1d weight", [64, 16, 4], conv, kwargs={"nonlinearity": "relu"}, kind=kind,
                       var=_kaiming_var([64, 16, 4], 0, "fan_in", "relu")),
            _init_case("fan_out on a Linear weight", [32, 128], mode, kwargs={"mode": "fan_out"}, kind=kind,
                       var=_kaiming_var([32, 128], 0, "fan_out")),
            _init_case("fan_out with relu", [128, 32], mode, kwargs={"mode": "fan_out", "nonlinearity": "relu"},
                       kind=kind, var=_kaiming_var([128, 32], 0, "fan_out", "relu")),
            _init_case("tanh", [128, 32], gains, kwargs={"nonlinearity": "tanh"}, kind=kind,
                       var=_kaiming_var([128, 32], 0, "fan_in", "tanh")),
            _init_case("a = √5, nn.Linear's default: Var = 1/(3·fan_in)", [128, 32], gains, args=(math.sqrt(5),),
                       kind=kind, var=_kaiming_var([128, 32], math.sqrt(5))),
            _init_case("leaky_relu with slope a = 1 (a linear layer)", [32, 128], gains, kwargs={"a": 1.0},
                       kind=kind, var=_kaiming_var([32, 128], 1.0)),
            _init_case("linear", [128, 32], gains, kwargs={"nonlinearity": "linear"}, kind=kind,
                       var=_kaiming_var([128, 32], 0, "fan_in", "linear")),
            _init_case("an nn.Parameter that requires grad (wrap the fill in torch.no_grad())", [128, 32], rest,
                       param=True, kind=kind, var=_kaiming_var([128, 32])),
            _init_case("float64 stays float64", [32, 128], rest, dtype="float64", kwargs={"nonlinearity": "relu"},
                       kind=kind, var=_kaiming_var([32, 128], 0, "fan_in", "relu")),
            _init_case("the same generator seed gives the same weights, another seed others", [16, 8], rest,
                       generator=2000 + seed % 1000),
            _init_case("an unknown mode", [16, 8], "a bad mode raises ValueError", kwargs={"mode": "fan_avg"}),
        ]
        return out

    return cases


def _orthogonal_cases(level: str, seed: int) -> list[Case]:
    core, shapes = "QᵀQ = I for a tall or square matrix", "wide matrices (QQᵀ = I), conv weights and the gain"
    out = [
        _init_case("a square matrix", [64, 64], core, kind="orthogonal", gain=1.0),
        _init_case("a tall matrix: orthonormal columns", [128, 32], core, kind="orthogonal", gain=1.0),
    ]
    if level != "hidden":
        return out
    rest = "in place on an nn.Parameter, float64, the generator"
    out += [
        _init_case("a wide matrix: orthonormal rows, times the gain", [32, 128], shapes, args=(2.0,),
                   kind="orthogonal", gain=2.0),
        _init_case("a Conv2d weight, viewed as (out, in·kh·kw)", [16, 4, 3, 3], shapes, kind="orthogonal", gain=1.0),
        _init_case("a tall matrix with gain √2", [96, 48], shapes, kwargs={"gain": math.sqrt(2)},
                   kind="orthogonal", gain=math.sqrt(2)),
        _init_case("the signs of diag(R) are corrected, so that Q is uniformly (Haar) distributed: the traces of "
                   "32 draws must sum to about 0", [32, 32], "Haar distributed: the sign correction Q·sign(diag R)",
                   kind="orthogonal", gain=1.0, draws=32, haar=True),
        _init_case("an nn.Parameter that requires grad (wrap the fill in torch.no_grad())", [64, 48], rest,
                   param=True, kind="orthogonal", gain=1.0),
        _init_case("float64 stays float64", [48, 64], rest, dtype="float64", kind="orthogonal", gain=1.0),
        _init_case("the same generator seed gives the same matrix, another seed another", [16, 8], rest,
                   generator=3000 + seed % 1000),
        _init_case("a 1-D tensor", [10], "fewer than 2 dimensions raise ValueError"),
    ]
    return out


def _scaling_var(shape: list[int], scale: float = 1.0, mode: str = "fan_in") -> float:
    fan_in, fan_out = _fans(shape)
    return scale / {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]


def _scaling_cases(level: str, seed: int) -> list[Case]:
    core, modes = "Var = scale/fan_in, normal (the defaults)", "modes: fan_in, fan_out, fan_avg"
    dists = "distributions: uniform and truncated_normal (with the 0.8796 correction)"
    out = [
        _init_case("the defaults: LeCun normal", [128, 32], core, kind="normal", var=_scaling_var([128, 32])),
        _init_case("scale 2, fan_avg, uniform (Glorot uniform, gain √2)", [128, 32], dists,
                   kwargs={"scale": 2.0, "mode": "fan_avg", "distribution": "uniform"}, kind="uniform",
                   var=_scaling_var([128, 32], 2.0, "fan_avg")),
    ]
    if level != "hidden":
        return out
    rest = "in place on an nn.Parameter, float64, the generator"
    bad = "a bad mode or distribution raises ValueError"
    out += [
        _init_case("scale 2 (He normal, untruncated)", [32, 128], core, args=(2.0,), kind="normal",
                   var=_scaling_var([32, 128], 2.0)),
        _init_case("a Conv2d weight", [32, 8, 4, 4], core, kind="normal", var=_scaling_var([32, 8, 4, 4])),
        _init_case("fan_out", [32, 128], modes, kwargs={"mode": "fan_out"}, kind="normal",
                   var=_scaling_var([32, 128], 1.0, "fan_out")),
        _init_case("fan_avg (Glorot normal)", [16, 256], modes, kwargs={"mode": "fan_avg"}, kind="normal",
                   var=_scaling_var([16, 256], 1.0, "fan_avg")),
        _init_case("fan_avg on a Conv1d weight, scale 3", [64, 16, 4], modes, args=(3.0, "fan_avg"), kind="normal",
                   var=_scaling_var([64, 16, 4], 3.0, "fan_avg")),
        _init_case("truncated_normal, scale 2 (Keras' HeNormal)", [128, 32], dists,
                   kwargs={"scale": 2.0, "distribution": "truncated_normal"}, kind="truncated_normal",
                   var=_scaling_var([128, 32], 2.0)),
        _init_case("truncated_normal, fan_avg, on a Conv2d weight", [32, 8, 4, 4], dists,
                   args=(1.0, "fan_avg", "truncated_normal"), kind="truncated_normal",
                   var=_scaling_var([32, 8, 4, 4], 1.0, "fan_avg")),
        _init_case("uniform, fan_out, scale 3", [32, 128], dists, args=(3.0, "fan_out", "uniform"), kind="uniform",
                   var=_scaling_var([32, 128], 3.0, "fan_out")),
        _init_case("an nn.Parameter that requires grad (wrap the fill in torch.no_grad())", [128, 32], rest,
                   param=True, kind="normal", var=_scaling_var([128, 32])),
        _init_case("float64 stays float64", [32, 128], rest, dtype="float64",
                   kwargs={"distribution": "truncated_normal"}, kind="truncated_normal", var=_scaling_var([32, 128])),
        _init_case("the same generator seed gives the same weights, another seed others", [16, 8], rest,
                   kwargs={"distribution": "uniform"}, generator=4000 + seed % 1000),
        _init_case("an unknown mode", [16, 8], bad, kwargs={"mode": "fan_sum"}),
        _init_case("an unknown distribution", [16, 8], bad, kwargs={"distribution": "gaussian"}),
    ]
    return out


# ----------------------------------------------------------------------------------------------
# Random initializers: running


def _fresh(inputs: dict[str, Any]) -> torch.Tensor:
    dtype = getattr(torch, inputs["dtype"])
    t = torch.full(inputs["shape"], math.nan, dtype=dtype)  # a sentinel: an initializer must overwrite it
    return nn.Parameter(t) if inputs["param"] else t


def _call(fn: Callable[..., Any], tensor: torch.Tensor, inputs: dict[str, Any], generator: int | None) -> Any:
    kwargs = dict(inputs["kwargs"])
    if generator is not None:
        kwargs["generator"] = torch.Generator().manual_seed(generator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(tensor, *inputs["args"], **kwargs)


def _values(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def _run_init(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    inputs = case.inputs
    out: dict[str, Any] = {"raised": None}
    # the global RNG is seeded from the case (gradings repeat exactly) and restored afterwards
    seed = _seed_of(case.label)
    with single_thread(), cpu_rng(seed):
        try:
            tensors, same = [], []
            if inputs["generator"] is not None:
                seeds = [inputs["generator"], inputs["generator"], inputs["generator"] + 1]
            else:
                seeds = [None] * inputs["draws"]
            for g in seeds:
                t = _fresh(inputs)
                returned = _call(fn, t, inputs, g)
                same.append(returned is t)
                tensors.append(t)
            out["same_object"] = all(same)
            out["values"] = [_values(t) for t in tensors]
            out["dtype"] = str(tensors[0].dtype).replace("torch.", "")
            out["shape"] = list(tensors[0].shape)
            out["is_parameter"] = isinstance(tensors[0], nn.Parameter)
        except Exception as exc:  # the implementation's error is part of its behaviour
            out.update(raised(exc))
    return out


def _seed_of(label: str) -> int:
    """The global RNG's seed for a case: fixed by its label, so gradings repeat exactly."""
    return zlib.crc32(label.encode())


# ----------------------------------------------------------------------------------------------
# Random initializers: comparing (in the grader's process, from the recorded values)


def _fmt(x: float) -> str:
    return f"{x:.4g}"


Finding = tuple[str, float, str]  # (which check failed, the statistic, the message for the student)


def _check_moments(w: np.ndarray, var: float, kind: str) -> Finding | None:
    n = w.size
    sd = math.sqrt(var)
    mean = float(w.mean())
    if abs(mean) > mean_band(n) * sd:
        return ("mean", mean / sd, f"the mean of the {n} weights is {_fmt(mean)}, but weights must be centred on 0 "
                f"(accepted: |mean| ≤ {_fmt(mean_band(n) * sd)}).")
    ratio = float(np.mean(w**2)) / var
    band = variance_band(n, kind if kind in KURTOSIS else "any")
    if abs(ratio - 1.0) > band:
        return ("variance", ratio, f"the variance of the weights is {_fmt(ratio * var)}, expected {_fmt(var)} — off "
                f"by a factor {_fmt(ratio)} (a correct initializer lands within ±{band:.1%} at every draw).")
    return None


def _check_shape_of_distribution(w: np.ndarray, var: float, kind: str) -> Finding | None:
    n, sd, peak = w.size, math.sqrt(var), float(np.abs(w).max())
    if kind == "uniform":
        bound = math.sqrt(3.0 * var)
        if peak > bound * (1 + 1e-5):
            return ("beyond the uniform bound", 0.0, f"a uniform fill U(-b, b) with this variance has b = √3·std = "
                    f"{_fmt(bound)}, but a weight reached {_fmt(peak)}: the values are not uniform on [-b, b].")
        if peak < bound * (1 - 25.0 / n):
            return ("short of the uniform bound", 0.0, f"a uniform fill U(-b, b) with this variance has b = √3·std "
                    f"= {_fmt(bound)} and {n} draws come close to it, but the largest |weight| is {_fmt(peak)}.")
    elif kind == "normal":
        reach = normal_reach(n)
        if peak < reach * sd:
            return ("no normal tails", 0.0, f"{n} draws from a normal distribution with std {_fmt(sd)} reach beyond "
                    f"{reach:.2f}·std = {_fmt(reach * sd)}, but the largest |weight| is {_fmt(peak)}: the values "
                    "are not normal (bounded, like a uniform or truncated fill?).")
    elif kind == "truncated_normal":
        edge = 2.0 * sd / TRUNCATED_STD
        if peak > edge * (1 + 1e-5):
            return ("beyond the truncation", 0.0, f"a normal N(0, σ²) truncated at ±2σ, σ = std/0.8796 = "
                    f"{_fmt(sd / TRUNCATED_STD)}, stays within ±{_fmt(edge)}, but a weight reached {_fmt(peak)}.")
        if peak < edge * (1 - 100.0 / n):
            return ("short of the truncation", 0.0, f"a normal truncated at ±2σ = ±{_fmt(edge)} comes close to its "
                    f"edges in {n} draws, but the largest |weight| is {_fmt(peak)}.")
        at_edge = int(np.sum(np.abs(w) >= peak * (1 - 1e-6)))
        if at_edge > 3:
            return ("mass on the edge", 0.0, f"{at_edge} weights sit exactly at ±{_fmt(peak)}: values beyond ±2σ "
                    "must be redrawn (or drawn from the truncated distribution), not clamped onto the edge.")
    return None


def _check_orthogonal(m: np.ndarray, gain: float) -> Finding | None:
    rows = m.shape[0]
    q = m.reshape(rows, -1).astype(np.float64)
    small = q.T @ q if q.shape[0] >= q.shape[1] else q @ q.T
    which = "QᵀQ" if q.shape[0] >= q.shape[1] else "QQᵀ"
    err = float(np.abs(small - gain**2 * np.eye(small.shape[0])).max())
    if err > 1e-3 * gain**2:
        scale = float(np.mean(np.diag(small))) / gain**2
        return ("not orthogonal", scale, f"{which} of the weight viewed as a ({q.shape[0]}, {q.shape[1]}) matrix "
                f"should be gain²·I = {_fmt(gain**2)}·I, but an entry is off by {_fmt(err)}.")
    return None


def _assess_init(case: Case, out: dict[str, Any]) -> Finding | None:
    """The first property that ``out`` (one run of an initializer) violates, or None."""
    inputs, expect = case.inputs, case.inputs["expect"]
    if not out.get("same_object"):
        return ("new object", 0.0, "your function must return the tensor it was given (the same object, filled in "
                "place), not a new tensor.")
    if out.get("shape") != inputs["shape"] or out.get("dtype") != inputs["dtype"]:
        return ("shape or dtype", 0.0, f"the tensor must keep its shape {tuple(inputs['shape'])} and dtype "
                f"{inputs['dtype']}; afterwards it had shape {tuple(out.get('shape') or ())} and dtype "
                f"{out.get('dtype')}.")
    values = out.get("values") or []
    draws = 3 if inputs["generator"] is not None else inputs["draws"]
    if len(values) != draws or any(not isinstance(v, np.ndarray) or v.shape != tuple(inputs["shape"])
                                   for v in values):
        return ("malformed", 0.0, "the recorded values are malformed.")
    if not all(np.all(np.isfinite(v)) for v in values):
        return ("not in place", 0.0, "after your function, the tensor still holds its old values (NaN here) in "
                "some entries: fill it in place (tensor.uniform_(...), tensor.normal_(...), tensor.copy_(...)) "
                "rather than creating a new tensor.")
    if inputs["generator"] is not None:
        first, again, other = values
        if not np.array_equal(first, again):
            return ("generator ignored", 0.0, "two calls with generators seeded alike gave different weights: draw "
                    "every random number from the `generator` argument (torch.rand(..., generator=generator), "
                    "tensor.normal_(..., generator=generator)).")
        if np.array_equal(first, other):
            return ("not random", 0.0, "generators with different seeds gave the same weights: the weights must "
                    "be random.")
        return None
    kind = expect["kind"]
    if kind == "orthogonal":
        for v in values:
            found = _check_orthogonal(v, expect["gain"])
            if found:
                return found
        if expect["haar"]:
            traces = [float(np.trace(v.reshape(v.shape[0], -1))) for v in values]
            total, limit = sum(traces), Z * math.sqrt(len(traces))
            if abs(total) > limit:
                return ("not Haar", total, f"the traces of {len(traces)} independent draws sum to {_fmt(total)}; "
                        "for Haar-distributed orthogonal matrices each trace has mean 0 and variance 1, so the sum "
                        f"should lie within ±{_fmt(limit)}. The QR decomposition's sign convention biases Q: "
                        "multiply Q's columns by the signs of diag(R).")
        return None
    if kind is not None:
        for v in values:
            w = v.astype(np.float64)
            found = _check_moments(w, expect["var"], kind) or _check_shape_of_distribution(w, expect["var"], kind)
            if found:
                return found
    return None


def _same_finding(got: Finding | None, want: Finding) -> bool:
    """Whether ``got`` fails like ``want`` (a mutant's output) does: same check, similar statistic."""
    if got is None or got[0] != want[0]:
        return False
    if got[0].startswith(("variance", "not orthogonal")):  # the same factor, within the noise of two samples
        return abs(math.log(max(got[1], 1e-300) / max(want[1], 1e-300))) < 0.12
    if got[0].startswith(("mean", "not Haar")):
        return math.copysign(1.0, got[1]) == math.copysign(1.0, want[1])
    return True


def _compare_statistically(assess: Callable[[Case, dict[str, Any]], Finding | None], case: Case,
                           got: dict[str, Any], want: dict[str, Any]) -> str | None:
    """Grading: ``got`` must have every property the case asks for (one-sample checks against the
    formula). ``want`` is the reference's run — which has them — except when the mutant catalogue
    asks whether ``got`` fails the way a mutant does; then they are compared finding by finding."""
    problem = _compare_raised(got, want)
    if problem is not None or want["raised"] is not None:
        return problem
    found = assess(case, got)
    wanted = assess(case, want)
    if wanted is None:
        return None if found is None else found[2]
    return None if _same_finding(found, wanted) else f"unlike the expected output ({wanted[0]})."


def _compare_init(case: Case, got: dict[str, Any], want: dict[str, Any]) -> str | None:
    return _compare_statistically(_assess_init, case, got, want)


# ----------------------------------------------------------------------------------------------
# init_model_: a whole model, graded by the statistics of each layer


@contextmanager
def _without_default_init() -> Any:
    """Build layers without running their ``reset_parameters``: it calls ``torch.nn.init``, which is
    this lesson's answer key and voids the check when it runs while a check is watched."""
    classes = (nn.Linear, nn.modules.conv._ConvNd)
    saved = [(cls, cls.__dict__["reset_parameters"]) for cls in classes]
    for cls in classes:
        cls.reset_parameters = lambda self: None
    try:
        yield
    finally:
        for cls, original in saved:
            cls.reset_parameters = original


def _default_like_init(model: nn.Module) -> None:
    """PyTorch's default for Linear/Conv, drawn here with torch.rand: U(±1/√fan_in) for weight and
    bias, so a function that changes nothing keeps Var[w] = 1/(3·fan_in) and fails."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)):
                bound = 1.0 / math.sqrt(m.weight[0].numel())
                m.weight.copy_((torch.rand(m.weight.shape) * 2 - 1) * bound)
                if m.bias is not None:
                    m.bias.copy_((torch.rand(m.bias.shape) * 2 - 1) * bound)


def _build_model(spec: dict[str, Any]) -> nn.Module:
    with _without_default_init():
        model = _layers(spec)
    _default_like_init(model)
    return model


def _layers(spec: dict[str, Any]) -> nn.Module:
    layers: list[nn.Module] = []
    act = {"relu": nn.ReLU, "tanh": nn.Tanh, "selu": nn.SELU, "leaky_relu": nn.LeakyReLU,
           "sigmoid": nn.Sigmoid, "linear": nn.Identity}[spec["nonlinearity"]]
    for layer in spec["layers"]:
        kind, *dims = layer
        if kind == "linear":
            layers.append(nn.Linear(*dims))
        elif kind == "conv2d":
            layers.append(nn.Conv2d(*dims))
        elif kind == "conv1d":
            layers.append(nn.Conv1d(*dims))
        elif kind == "layernorm":
            layers.append(nn.LayerNorm(*dims))
        elif kind == "flatten":
            layers.append(nn.Flatten())
        if kind in ("linear", "conv1d", "conv2d"):
            layers.append(act())
    if spec.get("nested"):
        half = len(layers) // 2
        return nn.Sequential(nn.Sequential(*layers[:half]), nn.Sequential(nn.Sequential(*layers[half:])))
    return nn.Sequential(*layers)


def _model_case(label: str, layers: list[list], nonlinearity: str, group: str, nested: bool = False) -> Case:
    spec = {"layers": layers, "nonlinearity": nonlinearity, "nested": nested}
    shown = ", ".join(f"{k[0]}{tuple(k[1:])}" for k in layers)
    return Case(f"{label} [{'nested ' if nested else ''}model: {shown}; init_model_(model, {nonlinearity!r})]",
                {"model": spec}, group)


def _model_cases(level: str, seed: int) -> list[Case]:
    # every weight holds N = 4096 values, and no layer has fan_in = fan_out (Xavier and fan_out would pass)
    cases = [
        _model_case("a ReLU MLP", [["linear", 32, 128], ["linear", 128, 32], ["linear", 32, 128]], "relu",
                    "ReLU MLP: Var[w] = 2/fan_in, biases 0"),
    ]
    if level == "hidden":
        cases += [
            _model_case("a tanh MLP", [["linear", 256, 16], ["linear", 16, 256]], "tanh",
                        "tanh: Var[w] = (5/3)²/fan_in"),
            _model_case("a conv net: conv layers are initialised too", [["conv2d", 8, 32, 4], ["flatten"],
                        ["linear", 128, 32]], "relu", "conv layers and nested models (visit every submodule)"),
            _model_case("a nested model with a LayerNorm, which keeps its own parameters",
                        [["linear", 32, 128], ["layernorm", 128], ["linear", 128, 32], ["linear", 32, 128]],
                        "leaky_relu", "conv layers and nested models (visit every submodule)", nested=True),
            _model_case("SELU: LeCun's Var[w] = 1/fan_in", [["linear", 128, 32], ["linear", 32, 128]], "selu",
                        "SELU: Var[w] = 1/fan_in (LeCun)"),
        ]
    return cases


def _run_model(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    spec = case.inputs["model"]
    out: dict[str, Any] = {"raised": None}
    with single_thread(), cpu_rng(_seed_of(case.label)):
        try:
            model = _build_model(spec)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                returned = fn(model, spec["nonlinearity"])
            out["same_object"] = returned is model
            out["layers"] = [
                {"type": type(m).__name__,
                 "weight": None if getattr(m, "weight", None) is None else _values(m.weight),
                 "bias": None if getattr(m, "bias", None) is None else _values(m.bias)}
                for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.LayerNorm))
            ]
        except Exception as exc:  # the implementation's error is part of its behaviour
            out.update(raised(exc))
    return out


def _model_weight_var(spec: dict[str, Any], shape: tuple[int, ...]) -> float:
    fan_in, _ = _fans(list(shape))
    nl = spec["nonlinearity"]
    return (1.0 if nl == "selu" else _gain2(nl)) / fan_in


def _assess_model(case: Case, out: dict[str, Any]) -> Finding | None:
    if not out.get("same_object"):
        return ("not returned", 0.0, "init_model_ must return the model it was given (so that "
                "`model = init_model_(model, ...)` works).")
    spec = case.inputs["model"]
    layers = out.get("layers") or []
    types = _reference_layers(spec)
    if [g.get("type") for g in layers] != [t for t, _ in types]:
        return ("layers changed", 0.0, "the model's layers changed: initialise the weights in place, do not "
                "replace modules.")
    for i, (g, (kind, shape)) in enumerate(zip(layers, types)):
        name = f"layer {i} ({kind}, weight shape {shape})"
        weight, bias = g.get("weight"), g.get("bias")
        if not isinstance(weight, np.ndarray) or weight.shape != shape:
            return ("malformed", 0.0, f"{name}: its weight is missing or has the wrong shape.")
        if kind == "LayerNorm":
            if not (np.all(weight == 1) and isinstance(bias, np.ndarray) and np.all(bias == 0)):
                return ("norm layer changed", 0.0, f"{name}: a LayerNorm is not a Linear or Conv layer; its weight "
                        "(1) and bias (0) must stay as they are.")
            continue
        found = _check_moments(weight.astype(np.float64), _model_weight_var(spec, shape), "any")
        if found:
            return (f"{found[0]} of layer {i}", found[1], f"{name}: {found[2]}")
        if not isinstance(bias, np.ndarray) or np.any(bias != 0):
            return ("bias", 0.0, f"{name}: every bias must be set to 0.")
    return None


def _reference_layers(spec: dict[str, Any]) -> list[tuple[str, tuple[int, ...]]]:
    """(type, weight shape) of every layer the runner records, in order, from the spec alone."""
    found = []
    for kind, *dims in spec["layers"]:
        if kind == "linear":
            found.append(("Linear", (dims[1], dims[0])))
        elif kind in ("conv1d", "conv2d"):
            found.append(("Conv" + kind[4:], (dims[1], dims[0]) + (dims[2],) * int(kind[4])))
        elif kind == "layernorm":
            found.append(("LayerNorm", (dims[0],)))
    return found


def _compare_model(case: Case, got: dict[str, Any], want: dict[str, Any]) -> str | None:
    return _compare_statistically(_assess_model, case, got, want)


# ----------------------------------------------------------------------------------------------

_MUTANTS = f"{__name__}_mutants"


def _exercise(name: str, make_cases: Callable[[str, int], list[Case]], run: Callable, compare: Callable,
              mutants: str) -> Exercise:
    # every runner here seeds its random numbers from the case: the reference's outputs can be remembered
    return Exercise(name=name, reference=f"stabletrain.init:{name}", make_cases=make_cases, run=run,
                    compare=compare, mutants=f"{_MUTANTS}:{mutants}", deterministic=True)


EXERCISES: dict[str, Exercise] = {
    "fan_in_and_fan_out": _exercise("fan_in_and_fan_out", _fan_cases, _run_value, _compare_value, "FANS"),
    "calculate_gain": _exercise("calculate_gain", _gain_cases, _run_value, _compare_value, "GAIN"),
    "xavier_uniform_": _exercise("xavier_uniform_", _xavier_cases("uniform"), _run_init, _compare_init,
                                 "XAVIER_UNIFORM"),
    "xavier_normal_": _exercise("xavier_normal_", _xavier_cases("normal"), _run_init, _compare_init,
                                "XAVIER_NORMAL"),
    "kaiming_uniform_": _exercise("kaiming_uniform_", _kaiming_cases("uniform"), _run_init, _compare_init,
                                  "KAIMING_UNIFORM"),
    "kaiming_normal_": _exercise("kaiming_normal_", _kaiming_cases("normal"), _run_init, _compare_init,
                                 "KAIMING_NORMAL"),
    "orthogonal_": _exercise("orthogonal_", _orthogonal_cases, _run_init, _compare_init, "ORTHOGONAL"),
    "variance_scaling_": _exercise("variance_scaling_", _scaling_cases, _run_init, _compare_init, "SCALING"),
    "init_model_": _exercise("init_model_", _model_cases, _run_model, _compare_model, "MODEL"),
}
