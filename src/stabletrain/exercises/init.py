r"""Exercises of lesson 03 on single tensors and formulas: fans, gains, ``variance_scaling_`` (the
general form of every Xavier, Kaiming and LeCun initializer), ``as_variance_scaling`` (the mapping
from each PyTorch and Keras name to it), ``orthogonal_`` and ``predict_layer_stds`` (the mean-field
recursion for any widths). The exercises on whole models are in :mod:`.init_models`.

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
With n = 4096 (every statistical case but one) the band is ±14.6 % (normal), ±9.2 % (uniform),
±12.1 % (truncated). Every catalogued mistake that only the variance reveals lands at least 6 of its own
standard deviations outside the band on some case (``tests/test_init_lab.py`` measures it), so it is
rejected at every seed. A grading runs fewer than 100 such checks, so a
correct submission loses a point less than once in a million gradings.

Uniform vs normal: a uniform fill must stay within its bound b = √3σ and reach within 25/n·b of
it (P(all |w| below) = (1 − 25/n)ⁿ < e⁻²⁵); a normal fill must exceed the level that n draws
exceed with probability 1 − 10⁻⁹ (2.8σ for n = 4096), which no uniform of the same variance
can; a truncated normal stays within ±2σ/0.8796 and reaches near it (checked first: where the cut
sits tells ±2σ from ±2·std), piles no mass on the edge (clamping a normal would), and — on one
large case of 512 × 512 weights — keeps the normal's shape inside the cut: 40.1 % of the weights
within ±σ/2 (a wrap-around with ``torch.fmod`` puts 41.6 % there and misses the band by 9 of its
own standard deviations).

Haar: every entry of a Haar-distributed orthogonal matrix is symmetric about 0, so over D draws of
a 2×2 matrix each entry's count of negative values is Binomial(D, ½); D = 320 and an exact binomial
band (:func:`sign_band`) reject raw QR (Q₁₁ always negative), signs taken from Q, and an SVD's U
without a sign fix (Q₁₁ negative in 81.5 % of draws) at every seed, for the cost of 320 tiny QRs.
"""

from __future__ import annotations

import functools
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


#: a truncated normal's shape: the share of |w| < σ/2 (σ the untruncated normal's std) is
#: (2Φ(½) − 1)/(2Φ(2) − 1); a wrap-around "truncation" (fmod) piles the tails near 0 instead
TRUNCATED_SMALL = (2 * NormalDist().cdf(0.5) - 1) / (2 * NormalDist().cdf(2.0) - 1)
Z_SHAPE = 6.3  # Bernstein: P(|share − p| > 6.3·√(p(1−p)/n)) < 1e-8 (tests/test_init_lab.py)
SHAPE_CASE = (512, 512)  # 262 144 weights: the fmod wrap-around misses both bands by ≥ 7 of its own sds
SHAPE_MIN_N = 2**16  # the share check runs on cases this large only (below, it cannot tell a wrap-around)
HAAR_DRAWS = 320  # draws of a 2×2 orthogonal matrix in the Haar case


def fraction_band(n: int, p: float = TRUNCATED_SMALL) -> float:
    """Half-width of the accepted band for a share of n draws whose probability is p."""
    return Z_SHAPE * math.sqrt(p * (1 - p) / n)


@functools.cache
def sign_band(draws: int = HAAR_DRAWS, entries: int = 4, alpha: float = 1e-9) -> float:
    """The accepted |count − draws/2| for the number of negative draws of one entry: a Haar
    matrix's entries are symmetric about 0, so the count is Binomial(draws, ½), and a deviation
    beyond the band has probability at most alpha/entries (exact binomial tail)."""
    half = draws / 2
    for low in range(int(half) + 1):  # counts ≤ low or ≥ draws − low are rejected
        tail = 2 * sum(math.comb(draws, i) for i in range(low + 1)) / 2.0**draws
        if tail > alpha / entries:
            return half - low  # low − 1 was the last rejected count: accept |count − half| ≤ half − low
    return half


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
               generator: int | None = None, draws: int = 1, gain: float | None = None, haar: bool = False,
               summary: bool = False) -> Case:
    """``kind``: "uniform", "normal", "truncated_normal", "any" (a distribution checked only by its
    moments), "orthogonal", or None (nothing statistical: the generator and error cases).
    ``summary``: the runner sends :func:`summarize`'s numbers instead of the values (a large case)."""
    kwargs = dict(kwargs or {})
    shown = "".join(f", {a!r}" for a in args) + "".join(f", {k}={v!r}" for k, v in kwargs.items())
    extra = ", as an nn.Parameter" if param else ""
    extra += f", {dtype}" if dtype != "float32" else ""
    extra += f", generator seeded {generator}" if generator is not None else ""
    extra += f", {draws} draws" if draws > 1 else ""
    text = f"{label} [shape {tuple(shape)}{shown}{extra}]"
    return Case(text, {"shape": list(shape), "args": list(args), "kwargs": kwargs, "dtype": dtype, "param": param,
                       "generator": generator, "draws": draws, "summary": summary,
                       "expect": {"kind": kind, "var": var, "gain": gain, "haar": haar}}, group)


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
        _init_case(f"the signs of diag(R) are corrected, so that Q is uniformly (Haar) distributed: over "
                   f"{HAAR_DRAWS} draws of a 2×2 matrix each entry is negative about half of the time", [2, 2],
                   "Haar distributed: the sign correction Q·sign(diag R)", kind="orthogonal", gain=1.0,
                   draws=HAAR_DRAWS, haar=True),
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
        _init_case(f"truncated_normal on a large weight: its shape inside ±2σ is the normal's (about "
                   f"{TRUNCATED_SMALL:.1%} of the weights within ±σ/2)", list(SHAPE_CASE), dists,
                   kwargs={"scale": 2.0, "distribution": "truncated_normal"}, kind="truncated_normal",
                   var=_scaling_var(list(SHAPE_CASE), 2.0), summary=True),
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
    """``fn(tensor, *args, **kwargs)``; the caller silences warnings (once for all draws of a case:
    every Python call here is traced by the answer-key watch, 320 times in the Haar case)."""
    kwargs = dict(inputs["kwargs"])
    if generator is not None:
        kwargs["generator"] = torch.Generator().manual_seed(generator)
    return fn(tensor, *inputs["args"], **kwargs)


def _values(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def _run_init(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    inputs = case.inputs
    out: dict[str, Any] = {"raised": None}
    # the global RNG is seeded from the case (gradings repeat exactly) and restored afterwards
    seed = _seed_of(case.label)
    with single_thread(), cpu_rng(seed), warnings.catch_warnings():
        warnings.simplefilter("ignore")
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
            if inputs.get("summary"):  # a large case: the numbers every check reads, not 262 144 values
                out["summaries"] = [summarize(_values(t), inputs["expect"]["var"]) for t in tensors]
            else:
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


def summarize(w: np.ndarray, var: float) -> dict[str, Any]:
    """The numbers every check of a fill reads, from its values (float64): their count, whether all
    are finite, mean, mean square, largest |w|, how many lie within 1e-6 (relative) of it, and how
    many within ±σ/2 of 0, σ = √var/0.8796 (a truncated normal's parameter). A large case sends
    these instead of its values: they are what the grader would compute, at a 1/20 000 of the size."""
    w = np.asarray(w, dtype=np.float64).ravel()
    if w.size == 0 or not np.all(np.isfinite(w)):
        return {"n": int(w.size), "finite": False, "mean": 0.0, "m2": 0.0, "peak": 0.0, "at_peak": 0, "small": 0}
    a = np.abs(w)
    peak = float(a.max())
    return {"n": int(w.size), "finite": True, "mean": float(w.mean()), "m2": float(np.mean(w * w)), "peak": peak,
            "at_peak": int(np.count_nonzero(a >= peak * (1 - 1e-6))),
            "small": int(np.count_nonzero(a < 0.5 * math.sqrt(var) / TRUNCATED_STD))}


def _check_moments(s: dict[str, Any], var: float, kind: str) -> Finding | None:
    n = s["n"]
    sd = math.sqrt(var)
    mean = s["mean"]
    if abs(mean) > mean_band(n) * sd:
        return ("mean", mean / sd, f"the mean of the {n} weights is {_fmt(mean)}, but weights must be centred on 0 "
                f"(accepted: |mean| ≤ {_fmt(mean_band(n) * sd)}).")
    ratio = s["m2"] / var
    band = variance_band(n, kind if kind in KURTOSIS else "any")
    if abs(ratio - 1.0) > band:
        return ("variance", ratio, f"the variance of the weights is {_fmt(ratio * var)}, expected {_fmt(var)} — off "
                f"by a factor {_fmt(ratio)} (a correct initializer lands within ±{band:.1%} at every draw).")
    return None


def _check_shape_of_distribution(s: dict[str, Any], var: float, kind: str) -> Finding | None:
    n, sd, peak = s["n"], math.sqrt(var), s["peak"]
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
        if peak < edge * (1 - 100.0 / n):  # the statistic, E[w²]/max|w|², tells where the cut sits in the normal
            return ("short of the truncation", s["m2"] / max(peak, 1e-300) ** 2,
                    f"a normal truncated at ±2σ = ±{_fmt(edge)} (σ = std/0.8796 = {_fmt(sd / TRUNCATED_STD)}) comes "
                    f"close to its edges in {n} draws, but the largest |weight| is {_fmt(peak)} "
                    f"({_fmt(peak / sd)} target stds).")
        at_edge = s["at_peak"]
        if at_edge > 6:
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
    draws = 3 if inputs["generator"] is not None else inputs["draws"]
    if inputs.get("summary"):
        return _assess_summaries(case, out.get("summaries"), draws)
    values = out.get("values") or []
    if len(values) != draws or any(not isinstance(v, np.ndarray) or v.shape != tuple(inputs["shape"])
                                   for v in values):
        return ("malformed", 0.0, "the recorded values are malformed.")
    if not all(np.all(np.isfinite(v)) for v in values):
        return ("not in place", 0.0, _NOT_IN_PLACE_MESSAGE)
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
            return _check_haar(np.stack(values))
        return None
    if kind is not None:
        for v in values:
            found = _check_fill(summarize(v, expect["var"]), expect["var"], kind)
            if found:
                return found
    return None


_NOT_IN_PLACE_MESSAGE = ("after your function, the tensor still holds its old values (NaN here) in some entries: fill "
                         "it in place (tensor.uniform_(...), tensor.normal_(...), tensor.copy_(...)) rather than "
                         "creating a new tensor.")


def _check_fill(s: dict[str, Any], var: float, kind: str) -> Finding | None:
    """The first check a fill's summary fails: for a truncated normal where the cut is, then the
    moments, then the shape inside the cut; for the others the moments, then the range."""
    if kind == "truncated_normal":
        return _check_shape_of_distribution(s, var, kind) or _check_moments(s, var, kind) or _check_small_share(s, var)
    return _check_moments(s, var, kind) or _check_shape_of_distribution(s, var, kind)


_SUMMARY_KEYS = {"n": int, "finite": bool, "mean": float, "m2": float, "peak": float, "at_peak": int, "small": int}


def _assess_summaries(case: Case, summaries: Any, draws: int) -> Finding | None:
    """_assess_init for a case whose runner sent :func:`summarize`'s numbers."""
    size = math.prod(case.inputs["shape"])
    if (not isinstance(summaries, list) or len(summaries) != draws
            or any(not isinstance(s, dict) or set(s) != set(_SUMMARY_KEYS) or s["n"] != size for s in summaries)):
        return ("malformed", 0.0, "the recorded values are malformed.")
    if not all(s["finite"] for s in summaries):
        return ("not in place", 0.0, _NOT_IN_PLACE_MESSAGE)
    expect = case.inputs["expect"]
    for s in summaries:
        found = _check_fill(s, expect["var"], expect["kind"])
        if found:
            return found
    return None


def _check_haar(draws: np.ndarray) -> Finding | None:
    """Each entry of a Haar-distributed orthogonal matrix is symmetric about 0: over the draws, it
    is negative about half of the time (:func:`sign_band`). QR's sign convention (and an SVD's)
    makes some entry negative (or positive) far more often."""
    count, band = len(draws), sign_band(len(draws), draws[0].size)
    negative = (draws < 0).sum(axis=0)
    deviation = np.abs(negative - count / 2)
    worst = np.unravel_index(int(np.argmax(deviation)), negative.shape)
    if deviation[worst] > band:
        share = float(negative[worst]) / count
        return ("not Haar", share, f"entry {tuple(int(i) for i in worst)} of Q was negative in {int(negative[worst])} "
                f"of {count} draws; for a uniformly (Haar) distributed orthogonal matrix every entry is negative "
                f"half of the time (accepted: {count / 2 - band:.0f} to {count / 2 + band:.0f}). A decomposition's "
                "sign convention biases Q: multiply Q's columns by the signs of diag(R).")
    return None


def _check_small_share(s: dict[str, Any], var: float) -> Finding | None:
    """A normal N(0, σ²) truncated at ±2σ puts TRUNCATED_SMALL of its mass within ±σ/2 (checked on
    cases of at least SHAPE_MIN_N weights)."""
    if s["n"] < SHAPE_MIN_N:
        return None
    sigma = math.sqrt(var) / TRUNCATED_STD
    share, band = s["small"] / s["n"], fraction_band(s["n"])
    if abs(share - TRUNCATED_SMALL) > band:
        return ("shape inside the cut", share, f"{share:.2%} of the weights lie within ±σ/2 = ±{_fmt(0.5 * sigma)}; a "
                f"normal truncated at ±2σ has {TRUNCATED_SMALL:.2%} there (accepted: ±{band:.2%}). The values "
                "inside the cut must keep the normal's shape: redraw the ones outside, or sample the truncated "
                "distribution by inverse CDF.")
    return None


def _same_finding(got: Finding | None, want: Finding) -> bool:
    """Whether ``got`` fails like ``want`` (a mutant's output) does: same check, similar statistic."""
    if got is None or got[0] != want[0]:
        return False
    if got[0].startswith(("variance", "not orthogonal")):  # the same factor, within the noise of two samples
        return abs(math.log(max(got[1], 1e-300) / max(want[1], 1e-300))) < 0.12
    if got[0] == "short of the truncation":  # where the cut sits: E[w²]/max² is 0.193 at ±2σ, 0.219 at ±2·std
        return abs(math.log(max(got[1], 1e-300) / max(want[1], 1e-300))) < 0.06
    if got[0] in ("not Haar", "shape inside the cut"):  # the share, within the noise of two samples
        return abs(got[1] - want[1]) < 0.1 if got[0] == "not Haar" else abs(got[1] - want[1]) < 0.01
    if got[0].startswith("mean"):
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
# as_variance_scaling: every named initializer as (scale, mode, distribution)


def _mapping_case(label: str, name: str, group: str, **kwargs: Any) -> Case:
    shown = f"as_variance_scaling({name!r}" + "".join(f", {k}={v!r}" for k, v in kwargs.items()) + ")"
    return Case(f"{label} [{shown}]", {"name": name, "kwargs": kwargs}, group)


def _mapping_cases(level: str, seed: int) -> list[Case]:
    kaiming, xavier = "PyTorch's Kaiming: scale = gain², the mode in any case", "PyTorch's Xavier: gain², fan_avg"
    keras, bad = "Keras's names: their normals are truncated", "not a case, or a bad mode: ValueError"
    cases = [
        _mapping_case("kaiming_normal_'s defaults (leaky_relu with a = 0: ReLU's gain √2)", "kaiming_normal", kaiming),
        _mapping_case("Xavier with tanh's gain", "xavier_uniform", xavier, gain=5 / 3),
        _mapping_case("Keras's HeNormal", "HeNormal", keras),
    ]
    if level == "hidden":
        cases += [
            _mapping_case("mode in capitals, as torch accepts it", "kaiming_normal", kaiming, mode="FAN_OUT",
                          nonlinearity="relu"),
            _mapping_case("tanh", "kaiming_uniform", kaiming, nonlinearity="tanh"),
            _mapping_case("leaky_relu with slope a = 0.2", "kaiming_normal", kaiming, a=0.2),
            _mapping_case("a = √5 (what nn.Linear uses)", "kaiming_uniform", kaiming, a=math.sqrt(5)),
            _mapping_case("the slope a is read for leaky_relu only", "kaiming_uniform", kaiming, a=3.0,
                          nonlinearity="relu"),
            _mapping_case("Fan_In in mixed case", "kaiming_uniform", kaiming, mode="Fan_In", nonlinearity="linear"),
            _mapping_case("nn.Linear's default weight init", "nn.Linear", kaiming),
            _mapping_case("xavier_normal_ with its default gain", "xavier_normal", xavier),
            _mapping_case("xavier_normal_ with gain √2", "xavier_normal", xavier, gain=math.sqrt(2)),
            _mapping_case("Keras's GlorotNormal (Keras's default for many layers is GlorotUniform)", "GlorotNormal",
                          keras),
            _mapping_case("Keras's GlorotUniform", "GlorotUniform", keras),
            _mapping_case("Keras's HeUniform", "HeUniform", keras),
            _mapping_case("Keras's LecunNormal (for SELU)", "LecunNormal", keras),
            _mapping_case("Keras's LecunUniform", "LecunUniform", keras),
            _mapping_case("mode 'fan_avg' is not a Kaiming mode", "kaiming_normal", bad, mode="fan_avg"),
            _mapping_case("orthogonal init is not a case: its entries are not independent", "orthogonal", bad),
        ]
    return cases


def _run_mapping(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    out: dict[str, Any] = {"raised": None, "returned": None}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out["returned"] = _plain_result(fn(case.inputs["name"], **case.inputs["kwargs"]))
    except Exception as exc:  # the implementation's error is part of its behaviour
        out.update(raised(exc))
    return out


def _triple(value: Any) -> tuple[float, str, str] | None:
    """(scale, mode, distribution) from a recorded return value, or None if it is not one."""
    if not isinstance(value, dict) or value.get("kind") != "sequence" or len(value.get("items", [])) != 3:
        return None
    scale, mode, dist = value["items"]
    if not isinstance(scale, float) or not isinstance(mode, str) or not isinstance(dist, str):
        return None
    return scale, mode, dist


def _compare_mapping(case: Case, got: dict[str, Any], want: dict[str, Any]) -> str | None:
    problem = _compare_raised(got, want)
    if problem is not None or want["raised"] is not None:
        return problem
    expected, returned = _triple(want["returned"]), _triple(got.get("returned"))
    if returned is None:
        return (f"expected a tuple (scale, mode, distribution) like {expected!r}, got "
                f"{describe_value(got.get('returned'))}.")
    scale, mode, dist = returned
    if not math.isclose(scale, expected[0], rel_tol=1e-6, abs_tol=1e-12):
        return f"expected scale {_fmt(expected[0])}, got {_fmt(scale)}."
    if (mode, dist) != expected[1:]:
        return f"expected mode {expected[1]!r} and distribution {expected[2]!r}, got {mode!r} and {dist!r}."
    return None


# ----------------------------------------------------------------------------------------------
# predict_layer_stds: the mean-field recursion for any widths, forward and backward


def _predict_case(label: str, widths: list[int], weight_vars: list[float], group: str, **kwargs: Any) -> Case:
    shown = "".join(f", {k}={v!r}" for k, v in kwargs.items())
    return Case(f"{label} [widths {widths}{shown}]", {"widths": widths, "weight_vars": weight_vars, "kwargs": kwargs},
                group)


def _predict_cases(level: str, seed: int) -> list[Case]:
    relu, linear = "ReLU: the next layer sees E[h²], not Var[h]", "linear layers, forward and backward"
    fans, leaky = "backward: each gradient sums over fan_out", "leaky_relu's slope, the input and output variances"
    kaiming = lambda widths: [2.0 / n for n in widths[:-1]]  # noqa: E731
    cases = [
        _predict_case("a linear net with LeCun's 1/fan_in", [16, 64, 32, 8], [1 / 16, 1 / 64, 1 / 32], linear,
                      nonlinearity="linear"),
        _predict_case("a ReLU net with Kaiming's 2/fan_in", [32, 64, 16, 48], kaiming([32, 64, 16, 48]), relu,
                      nonlinearity="relu"),
    ]
    if level == "hidden":
        cases += [
            _predict_case("ReLU with Xavier's 1/fan_in: the variance halves at every layer", [64] * 6, [1 / 64] * 5,
                          relu, nonlinearity="relu"),
            _predict_case("ReLU with PyTorch's default 1/(3·fan_in)", [8, 128, 32, 256, 16],
                          [1 / 24, 1 / 384, 1 / 96, 1 / 768], relu, nonlinearity="relu"),
            _predict_case("fan_out differs from fan_in at every layer", [10, 200, 20, 400, 5, 100],
                          [2 / 10, 2 / 200, 2 / 20, 2 / 400, 2 / 5], fans, nonlinearity="relu"),
            _predict_case("a linear net with Xavier's 2/(fan_in + fan_out)", [16, 64, 128, 4],
                          [2 / 80, 2 / 192, 2 / 132], fans, nonlinearity="linear"),
            _predict_case("one layer", [50, 20], [0.1], fans, nonlinearity="relu", output_grad_var=4.0),
            _predict_case("leaky_relu with slope 0.2", [32, 32, 64, 16], [0.05, 0.02, 0.07], leaky,
                          nonlinearity="leaky_relu", param=0.2),
            _predict_case("leaky_relu with its default slope 0.01", [20, 40, 80], [0.1, 0.05], leaky,
                          nonlinearity="leaky_relu"),
            _predict_case("input variance 3 and output-gradient variance 0.5", [24, 48, 12, 36], kaiming([24, 48, 12, 36]),
                          leaky, nonlinearity="relu", input_var=3.0, output_grad_var=0.5),
        ]
    return cases


def _run_predict(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    out: dict[str, Any] = {"raised": None, "returned": None}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            act, grad = fn(list(case.inputs["widths"]), list(case.inputs["weight_vars"]), **case.inputs["kwargs"])
        out["act"] = np.asarray([float(v) for v in act], dtype=np.float64)
        out["grad"] = np.asarray([float(v) for v in grad], dtype=np.float64)
    except Exception as exc:  # the implementation's error is part of its behaviour
        out.update(raised(exc))
    return out


def _compare_predict(case: Case, got: dict[str, Any], want: dict[str, Any]) -> str | None:
    problem = _compare_raised(got, want)
    if problem is not None or want["raised"] is not None:
        return problem
    depth = len(case.inputs["weight_vars"])
    for key, noun in (("act", "activation std (of h_l)"), ("grad", "gradient std (of ∂L/∂h_l)")):
        values = got.get(key)
        if not isinstance(values, np.ndarray) or values.shape != (depth,):
            return (f"expected two lists of {depth} numbers (one per layer), got a {noun} list of "
                    f"{'?' if not isinstance(values, np.ndarray) else values.size} numbers.")
        close = np.isclose(values, want[key], rtol=1e-6, atol=1e-300)
        if not close.all():
            layer = int(np.argmin(close)) + 1
            return (f"the {noun} at layer {layer} should be {_fmt(want[key][layer - 1])}, got "
                    f"{_fmt(values[layer - 1])} (expected per layer: {', '.join(_fmt(v) for v in want[key])}).")
    return None


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
    "variance_scaling_": _exercise("variance_scaling_", _scaling_cases, _run_init, _compare_init, "SCALING"),
    "as_variance_scaling": _exercise("as_variance_scaling", _mapping_cases, _run_mapping, _compare_mapping,
                                     "MAPPING"),
    "orthogonal_": _exercise("orthogonal_", _orthogonal_cases, _run_init, _compare_init, "ORTHOGONAL"),
    "predict_layer_stds": Exercise(name="predict_layer_stds", reference="stabletrain.variance:predict_layer_stds",
                                   make_cases=_predict_cases, run=_run_predict, compare=_compare_predict,
                                   mutants=f"{_MUTANTS}:PREDICT", deterministic=True),
}
