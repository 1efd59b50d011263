"""Exercises of lesson 00: ``rel_error``, ``numerical_gradient``, ``grad_norms_per_layer``,
``ActivationStats`` and ``train_and_log`` (the update:data ratio in a real training loop).

- ``rel_error`` is called on plain arrays.
- ``numerical_gradient`` is graded on what it is for: each case hands it a function ``f`` and a
  point ``x`` and keeps the gradient it returns; the comparison then checks, with the lesson's
  rule (flag a backward pass when ``rel_error(analytic, numerical) >= tol``), a panel of backward
  passes the grader supplies — correct ones, which must pass, and planted bugs, which must be
  flagged (the grader's relative error floors its denominator at a thousandth of the gradient's
  largest entry, so that rounding noise at an exact zero is no bug): a relative error of about 1e-5
  (layer norm's epsilon dropped), an overflow that only float32
  inputs meet, a NaN at a kink, a ReLU probed closer to its kink than the default step. Running a
  case also records what ``f`` saw (how many coordinates each probe changed) and whether ``x`` was
  restored.
- ``grad_norms_per_layer`` and ``ActivationStats`` run on small ``torch.nn`` models built from the
  case's weights.
- ``train_and_log`` runs a real training loop on a small model with the case's optimizer (plain
  SGD, momentum, Adam, weight decay): the update a step makes is not ``-lr·grad`` for most of them.

No answer key is imported here: the backward passes and the models of the cases are fixtures of
the grader, not answers to an exercise.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .base import Case, Exercise, call_quietly, describe_value, first_difference, raised, to_plain

#: answer keys of this lesson besides stabletrain.gradcheck (switched off while grading)
REFERENCE_MODULES = ("diagnostics",)
#: torch's finite-difference Jacobians would answer numerical_gradient
TORCH_ANSWER_KEYS = {"torch.autograd.gradcheck": ("get_numerical_jacobian", "get_numerical_jacobian_wrt_specific_input",
                                                  "_get_numerical_jacobian")}


def _number(value: Any) -> float | None:
    """A returned scalar (Python, numpy or 0-d tensor) as a float; None for anything else."""
    if isinstance(value, bool):
        return None
    try:
        arr = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value, dtype=np.float64)
    except (TypeError, ValueError, RuntimeError):
        return None
    return float(arr) if arr.size == 1 and arr.ndim <= 1 else None


# ----------------------------------------------------------------------------------------------
# rel_error

_R_VALUE = "the largest elementwise |x - y| / max(1e-8, |x| + |y|)"
_R_ZERO = "safe at zero, and a NaN is not hidden"
_R_SHAPES = "scalars, lists and a refusal of different shapes"


def _rel_cases(level: str, seed: int) -> list[Case]:
    rng = np.random.default_rng([seed, 1])

    def case(label, x, y, group):
        return Case(label, {"x": x, "y": y}, group)

    a = rng.normal(size=(3, 4))
    b = a * (1 + 1e-3 * rng.normal(size=(3, 4)))
    b[1, 2] = a[1, 2] + 0.3
    cases = [
        case("worked example: rel_error([1, 2], [1, 2.2]) = 0.2 / 4.2 = 0.0476", np.array([1.0, 2.0]),
             np.array([1.0, 2.2]), _R_VALUE),
        case("two gradients with zeros in the same places: 0 / 0 must not give NaN", np.array([0.0, 1.0, 0.0]),
             np.array([0.0, 1.0 + 1e-9, 0.0]), _R_ZERO),
        case("a (3,) and a (3, 1) array: different shapes must raise ValueError", np.array([1.0, 2.0, 3.0]),
             np.array([[1.0], [2.0], [3.0]]), _R_SHAPES),
        # with a value beside the refusal, a function that raises ValueError for everything fails the group
        case("two lists of the same length: rel_error([1, 4], [1, 5]) = 1 / 9", [1.0, 4.0], [1.0, 5.0], _R_SHAPES),
    ]
    if level == "hidden":
        z = rng.normal(size=(4, 5))
        z[0, :2] = 0.0
        w = z.copy()
        w[3, 4] += 2e-4
        c = rng.normal(size=6)
        cases += [
            case("one entry off by 0.3 among 12 close ones: the max, not the mean", a, b, _R_VALUE),
            case("the same pair swapped: rel_error is symmetric", b, a, _R_VALUE),
            case("x = 1, y = -1: |x - y| / (|x| + |y|) = 1", np.array([1.0, 2.0]), np.array([-1.0, 2.0]), _R_VALUE),
            case("zeros in both and one small difference", z, w, _R_ZERO),
            case("all zeros", np.zeros((2, 3)), np.zeros((2, 3)), _R_ZERO),
            case("a NaN in one gradient: the error is NaN, not hidden", np.where(np.arange(6) == 2, np.nan, c), c,
                 _R_ZERO),
            case("two Python floats", 3.0, 3.3, _R_SHAPES),
            case("lists", [1.0, -2.0, 0.0], [1.0, -2.5, 0.0], _R_SHAPES),
            case("a transposed gradient, (2, 3) against (3, 2): ValueError", rng.normal(size=(2, 3)),
                 rng.normal(size=(3, 2)), _R_SHAPES),
        ]
    return cases


def _rel_run(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    x, y = case.inputs["x"], case.inputs["y"]
    copy = (lambda v: v.copy() if isinstance(v, np.ndarray) else list(v) if isinstance(v, list) else v)  # noqa: E731
    returned, error = call_quietly(fn, copy(x), copy(y))
    if error:
        return error
    value = _number(returned)
    if value is None:
        return {"raised": None, "returned": to_plain(returned), "scalar": False}
    return {"raised": None, "returned": value, "scalar": True}


def _rel_compare(case: Case, got: dict[str, Any], want: dict[str, Any]) -> str | None:
    if want.get("raised"):
        if got.get("raised") != want["raised"]:
            came = f"raised {got['raised']}" if got.get("raised") else f"returned {describe_value(got.get('returned'))}"
            return (f"expected {want['raised']} (arrays of different shapes would broadcast into a meaningless "
                    f"matrix of errors), but your function {came}.")
        return None
    if got.get("raised"):
        return f"your function raised {got['raised']}: {got.get('message', '')}"
    if got.get("scalar") != want.get("scalar"):
        return f"expected one number, the largest relative error; got {describe_value(got.get('returned'))}."
    if first_difference(got["returned"], want["returned"], 1e-6, 1e-12) is None:
        return None
    return f"the returned error: expected {describe_value(want['returned'])}, got {describe_value(got['returned'])}."


# ----------------------------------------------------------------------------------------------
# numerical_gradient: the fixtures (functions and backward passes, correct and buggy)

#: a backward pass is flagged when _rel_err(analytic, numerical) >= tol (or is NaN)
_TOL = {"float64": 1e-6, "float32": 1e-3}


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _linear_softmax(W, p):
    """Mean cross-entropy of a linear softmax classifier; ``W`` is (classes, features)."""
    P = _softmax(p["X"].astype(W.dtype) @ W.T)
    return -np.mean(np.log(P[np.arange(len(p["y"])), p["y"]]))


def _linear_softmax_grads(W, p):
    X = p["X"].astype(W.dtype)
    P = _softmax(X @ W.T)
    Y = np.eye(W.shape[0], dtype=W.dtype)[p["y"]]
    n = len(p["y"])
    return {"correct": (P - Y).T @ X / n,
            "forgot to divide by the batch size": (P - Y).T @ X,
            "forgot to subtract the one-hot target": P.T @ X / n}


def _tanh_layer(x, p):
    return np.sum(p["v"] * np.tanh(p["A"] @ x))


def _tanh_layer_grads(x, p):
    h = np.tanh(p["A"] @ x)
    return {"correct": p["A"].T @ (p["v"] * (1 - h**2)),
            "tanh' taken at the cached output: 1 - tanh(h)^2": p["A"].T @ (p["v"] * (1 - np.tanh(h) ** 2))}


_LN_EPS = 1e-5


def _layer_norm(x, p):
    mu = x.mean(axis=1, keepdims=True)
    var = x.var(axis=1, keepdims=True)
    return np.sum(p["w"] * (x - mu) / np.sqrt(var + _LN_EPS))


def _layer_norm_grads(x, p):
    mu = x.mean(axis=1, keepdims=True)
    var = x.var(axis=1, keepdims=True)
    xhat = (x - mu) / np.sqrt(var + _LN_EPS)
    g = p["w"]
    inner = g - g.mean(axis=1, keepdims=True) - xhat * (g * xhat).mean(axis=1, keepdims=True)
    return {"correct": inner / np.sqrt(var + _LN_EPS),
            "epsilon dropped from the backward pass: 1/sqrt(var) (a relative error of about 1e-5)": inner / np.sqrt(var)}


def _sigmoid_sum(x, p):
    s = np.empty_like(x)
    pos = x >= 0
    s[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    s[~pos] = e / (1.0 + e)
    return np.sum(p["w"].astype(x.dtype) * s)


def _sigmoid_sum_grads(x, p):
    w = p["w"].astype(x.dtype)
    s = np.empty_like(x)
    pos = x >= 0
    s[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    s[~pos] = e / (1.0 + e)
    naive = np.exp(-x) / (1.0 + np.exp(-x)) ** 2  # exp(-x) overflows in float32 for x < -88
    return {"correct": w * s * (1 - s), "sigmoid' as exp(-x)/(1 + exp(-x))^2 (overflows in float32)": w * naive}


def _l1_penalty(x, p):
    return np.sum(0.5 * p["a"] * x**2) + p["lam"] * np.sum(np.abs(x))


def _l1_penalty_grads(x, p):
    return {"correct": p["a"] * x + p["lam"] * np.sign(x),
            "d|x|/dx as x/|x| (NaN at the zero-initialised entries)": p["a"] * x + p["lam"] * x / np.abs(x)}


def _relu_sum(x, p):
    return np.sum(p["w"] * np.maximum(x, 0.0))


def _relu_sum_grads(x, p):
    return {"correct": p["w"] * (x > 0), "leaky slope 0.01 for x < 0 in a plain ReLU": p["w"] * np.where(x > 0, 1.0, 0.01)}


#: problem name -> (f(x, params), backward passes(x, params) -> {name: gradient}, what f computes)
_PROBLEMS: dict[str, tuple[Callable, Callable, str]] = {
    "linear_softmax": (_linear_softmax, _linear_softmax_grads, "mean cross-entropy of a linear softmax classifier, "
                       "x = W"),
    "tanh_layer": (_tanh_layer, _tanh_layer_grads, "sum(v * tanh(A @ x))"),
    "layer_norm": (_layer_norm, _layer_norm_grads, "sum(w * layer_norm(x)) over rows, eps = 1e-5"),
    "sigmoid_sum": (_sigmoid_sum, _sigmoid_sum_grads, "sum(w * sigmoid(x))"),
    "l1_penalty": (_l1_penalty, _l1_penalty_grads, "sum(a x^2 / 2) + lam * sum(|x|), some x exactly 0"),
    "relu_sum": (_relu_sum, _relu_sum_grads, "sum(w * relu(x))"),
}


#: the grader's relative error floors its denominator at this fraction of the gradient's largest entry
_FLOOR = 1e-3


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """The largest elementwise relative error, the denominator floored at 1/1000 of the largest entry
    (rather than at 1e-8): an entry that is 0 in one gradient and 1e-12 in the other, after
    rounding, is not a bug. NaN when either holds a NaN or an inf."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    with np.errstate(all="ignore"):
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
            return math.nan
        scale = max(float(np.abs(a).max(initial=0.0)), float(np.abs(b).max(initial=0.0)), 1e-300)
        return float(np.max(np.abs(a - b) / np.maximum(_FLOOR * scale, np.abs(a) + np.abs(b)), initial=0.0))


def _well_conditioned(grad: np.ndarray) -> bool:
    """No entry of the true gradient so small that round-off in f would decide its relative error."""
    nonzero = np.abs(grad[grad != 0])
    return nonzero.size > 0 and nonzero.min() > 1e-2 * np.abs(grad).max() and nonzero.min() > 1e-3


def _ng_case(label: str, problem: str, x: np.ndarray, params: dict[str, Any], group: str, *, h: float = 1e-5,
             closure: bool = False) -> Case:
    _, grads, what = _PROBLEMS[problem]
    with np.errstate(all="ignore"):
        backward = grads(x, params)
    dtype = str(x.dtype)
    text = (f"{label} [f = {what}; x of shape {x.shape}, {dtype}; h = {h:g}"
            f"{'; f reads x through a closure' if closure else ''}]")
    panel = {name: {"grad": np.asarray(g), "buggy": name != "correct"} for name, g in backward.items()}
    return Case(text, {"problem": problem, "x": x, "params": params, "h": h, "closure": closure,
                       "panel": panel, "tol": _TOL[dtype]}, group)


def _draw(rng: np.random.Generator, problem: str, make: Callable[[], tuple[np.ndarray, dict[str, Any]]]
          ) -> tuple[np.ndarray, dict[str, Any]]:
    """Draw ``(x, params)`` until the correct gradient is well conditioned (any seed works)."""
    for _ in range(100):
        x, params = make()
        with np.errstate(all="ignore"):
            correct = _PROBLEMS[problem][1](x.astype(np.float64), params)["correct"]
        if _well_conditioned(correct):
            return x, params
    raise RuntimeError(f"no well-conditioned draw for {problem}")  # pragma: no cover


def _softmax_draw(rng, dtype="float64"):
    def make():
        X = rng.normal(size=(8, 5))
        return (0.5 * rng.normal(size=(3, 5))).astype(dtype), {"X": X, "y": rng.integers(0, 3, size=8)}
    return _draw(rng, "linear_softmax", make)


def _tanh_draw(rng):
    def make():
        return rng.normal(size=6), {"A": rng.normal(size=(5, 6)) / 2.0, "v": rng.normal(size=5)}
    return _draw(rng, "tanh_layer", make)


def _layer_norm_draw(rng):
    def make():
        x = rng.normal(size=(3, 6)) * rng.uniform(0.3, 0.6, size=(3, 1)) + rng.normal(size=(3, 1))
        return x, {"w": rng.normal(size=(3, 6))}
    return _draw(rng, "layer_norm", make)


def _sigmoid_draw(rng, dtype="float32"):
    def make():
        x = rng.uniform(-3.0, 3.0, size=12)
        x[rng.choice(12, 3, replace=False)] = rng.uniform(-100.0, -90.0, size=3)
        w = rng.choice([-1.0, 1.0], size=12) * rng.uniform(0.5, 1.5, size=12)
        return x.astype(dtype), {"w": w}

    def conditioned():  # the large-negative entries have a gradient of ~1e-40: they are zeros here
        for _ in range(100):
            x, params = make()
            moderate = np.abs(x) < 10
            g = _PROBLEMS["sigmoid_sum"][1](x.astype(np.float64)[moderate], {"w": params["w"][moderate]})["correct"]
            if _well_conditioned(g):
                return x, params
        raise RuntimeError("no well-conditioned draw")  # pragma: no cover
    return conditioned()


def _l1_draw(rng):
    x = rng.choice([-1.0, 1.0], size=10) * rng.uniform(0.05, 1.0, size=10)
    x[rng.choice(10, 4, replace=False)] = 0.0
    return x, {"a": rng.uniform(0.5, 2.0, size=10), "lam": 0.1}


#: the ReLU case: points 3e-6 to 8e-6 from the kink, probed with h = 1e-6. Every probe of a centred
#: (x +- h) or five-point (x +- 2h) stencil stays on its side of the kink, while the default
#: h = 1e-5 straddles it (the mutant fixed_step: w (d + h) / 2h, 0.65 w to 0.9 w, flagged).
#: Not h = 1e-8 (the case's first version): there the rounding of f (|f| ~ 1, eps |f| / h ~ 3e-8)
#: against the floor of _rel_err (1e-3 of the largest entry) reached 1e-5 > tol on the entries whose
#: true gradient is 0, so a correct answer passed only when f(x + h) and f(x - h) were bit-identical
#: there and cancelled exactly: the centred quotient does, the five-point stencil
#: (-f2 + 8 f1 - 8 f-1 + f-2) / 12h, rounding 7 f, does not (flagged on 60 of 100 seeds). At h = 1e-6
#: the worst relative error of the correct backward pass is 1.2e-7 for the five-point stencil and
#: 3e-10 for centred differences (2000 seeds), tol 1e-6; tests/test_numerical_gradient_seeds.py.
_RELU_H, _RELU_NEAR = 1e-6, (3e-6, 8e-6)


def _relu_draw(rng):
    x = rng.choice([-1.0, 1.0], size=10) * rng.uniform(0.2, 1.0, size=10)
    near = rng.choice(10, 5, replace=False)
    x[near] = rng.choice([-1.0, 1.0], size=5) * rng.uniform(*_RELU_NEAR, size=5)
    x[near[0]], x[near[1]] = abs(x[near[0]]), -abs(x[near[1]])  # both sides of the kink
    return x, {"w": rng.choice([-1.0, 1.0], size=10) * rng.uniform(0.5, 1.5, size=10)}


_G_SMOOTH = "smooth functions in float64: correct backward passes pass, planted bugs are flagged (even a 1e-5 one)"
_G_FLOAT32 = "float32 inputs: differences taken in float64"
_G_KINK = "at and near kinks: centred differences, and the step h you are given"
_G_INPLACE = "x perturbed in place, one coordinate per probe, and restored (f may read x through a closure)"


def _ng_cases(level: str, seed: int) -> list[Case]:
    rng = np.random.default_rng([seed, 2])
    cube = np.array([1.0, 2.0])
    cases = [
        Case("worked example: f(x) = sum(x^3) at x = [1, 2]; the backward pass 3x^2 = [3, 12] must pass, "
             "the buggy 3x = [3, 6] must be flagged [h = 1e-5]",
             {"problem": "cube", "x": cube, "params": {}, "h": 1e-5, "closure": False, "tol": 1e-6,
              "panel": {"correct": {"grad": 3 * cube**2, "buggy": False},
                        "derivative of x^3 as 3x": {"grad": 3 * cube, "buggy": True}}}, _G_SMOOTH),
        _ng_case("layer norm: the correct backward pass passes, epsilon dropped (about 1e-5 relative) is flagged",
                 "layer_norm", *_layer_norm_draw(rng), _G_SMOOTH),
        _ng_case("sigmoid of float32 inputs, three of them below -88", "sigmoid_sum", *_sigmoid_draw(rng), _G_FLOAT32),
        _ng_case("an L1 penalty at zero-initialised entries (the kink of |x|)", "l1_penalty", *_l1_draw(rng), _G_KINK),
        _ng_case("CS231n style: f ignores its argument and reads W through a closure", "linear_softmax",
                 *_softmax_draw(rng), _G_INPLACE, closure=True),
    ]
    if level == "hidden":
        cases += [
            _ng_case("a linear softmax classifier", "linear_softmax", *_softmax_draw(rng), _G_SMOOTH),
            _ng_case("a tanh layer", "tanh_layer", *_tanh_draw(rng), _G_SMOOTH),
            _ng_case("layer norm, other rows", "layer_norm", *_layer_norm_draw(rng), _G_SMOOTH),
            _ng_case("a linear softmax classifier with float32 weights", "linear_softmax",
                     *_softmax_draw(rng, "float32"), _G_FLOAT32),
            _ng_case("sigmoid of float32 inputs, other draws", "sigmoid_sum", *_sigmoid_draw(rng), _G_FLOAT32),
            _ng_case("ReLU at points 3e-6 to 8e-6 from its kink, probed with h = 1e-6", "relu_sum",
                     *_relu_draw(rng), _G_KINK, h=_RELU_H),
            _ng_case("an L1 penalty, other zeros", "l1_penalty", *_l1_draw(rng), _G_KINK),
            _ng_case("a tanh layer read through a closure", "tanh_layer", *_tanh_draw(rng), _G_INPLACE, closure=True),
            _ng_case("layer norm read through a closure", "layer_norm", *_layer_norm_draw(rng), _G_INPLACE,
                     closure=True),
        ]
    return cases


def _cube(x, p):
    return np.sum(x**3)


def _ng_run(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    inp = case.inputs
    compute = _cube if inp["problem"] == "cube" else _PROBLEMS[inp["problem"]][0]
    params = inp["params"]
    x = np.array(inp["x"])  # a fresh copy, its dtype kept
    original = x.astype(np.float64)
    seen = {"calls": 0, "most_changed": 0, "largest_step": 0.0, "bad_argument": False}

    def watch(point: Any) -> None:
        seen["calls"] += 1
        arr = np.asarray(point, dtype=np.float64)
        if arr.shape != original.shape:
            seen["bad_argument"] = True
            return
        diff = np.abs(arr - original)
        moved = diff > 1e-12 * np.maximum(1.0, np.abs(original))  # more than the last bits
        seen["most_changed"] = max(seen["most_changed"], int(np.count_nonzero(moved)))
        seen["largest_step"] = max(seen["largest_step"], float(diff.max()))

    if inp["closure"]:
        def f(_ignored: Any) -> float:
            watch(x)
            return compute(x, params)
    else:
        def f(point: Any) -> float:
            watch(point)
            return compute(np.asarray(point), params)

    returned, error = call_quietly(fn, f, x, inp["h"])
    out: dict[str, Any] = {"raised": None} if error is None else dict(error)
    if error is None:
        try:
            grad = np.asarray(returned, dtype=np.float64)
        except (TypeError, ValueError):
            grad = None
        out["gradient"] = grad if grad is not None and grad.shape == original.shape else None
        if out["gradient"] is None:
            out["returned"] = to_plain(returned)
    # restored up to rounding: x[i] += h, ..., x[i] -= 2h, ..., x[i] += h may leave the last bit changed
    out["restored"] = bool(np.allclose(x.astype(np.float64), original, rtol=1e-12, atol=0.0, equal_nan=True))
    out.update(seen)
    return out


def _verdicts(case: Case, gradient: np.ndarray) -> dict[str, tuple[bool, float]]:
    """name -> (flagged, rel_error) of every backward pass of the case's panel, against ``gradient``."""
    out = {}
    for name, entry in case.inputs["panel"].items():
        err = _rel_err(entry["grad"], gradient)
        out[name] = (not err < case.inputs["tol"], err)
    return out


def _ng_compare(case: Case, got: dict[str, Any], want: dict[str, Any]) -> str | None:
    """The verdicts ``got``'s gradient gives on the case's panel of backward passes must be those of
    ``want``'s (the reference's verdicts are the truth: every bug flagged, every correct pass passed);
    then x restored, one coordinate per probe, and the values (which name a misconception)."""
    if got.get("raised") or want.get("raised"):
        if got.get("raised") == want.get("raised"):
            return None
        return f"your function raised {got['raised']}: {got.get('message', '')}"
    if (got.get("gradient") is None) != (want.get("gradient") is None):
        shape = np.shape(case.inputs["x"])
        return f"expected an array of the shape of x, {shape}; got {describe_value(got.get('returned'))}."
    if got.get("gradient") is None:
        return None
    tol = case.inputs["tol"]
    mine, theirs = _verdicts(case, got["gradient"]), _verdicts(case, want["gradient"])
    for name, entry in case.inputs["panel"].items():
        (flagged, err), expected = mine[name], theirs[name][0]
        if flagged == expected:
            continue
        if entry["buggy"] and not flagged:
            return (f"the planted bug '{name}' was not flagged: the relative error between its gradient and your "
                    f"numerical gradient is {err:.1e}, below the tolerance {tol:g}.")
        if not entry["buggy"] and flagged:
            return (f"the correct backward pass was flagged: the relative error between its gradient and your "
                    f"numerical gradient is {err:.1e}, not below the tolerance {tol:g} — your numerical gradient "
                    "is off.")
        return f"the verdict on the backward pass '{name}' differs (relative error {err:.1e}, tolerance {tol:g})."
    if got["restored"] != want["restored"]:
        return "x was changed by your function: put every coordinate back after its probe."
    if got["most_changed"] != want["most_changed"] and max(got["most_changed"], want["most_changed"]) > 1:
        return (f"a probe changed {got['most_changed']} coordinates of x at once; change one coordinate, "
                "evaluate f, and restore it before the next.")
    diff = first_difference(got["gradient"], want["gradient"], 1e-4, 1e-9)
    if diff is not None:
        return (f"your numerical gradient: expected about {describe_value(want['gradient'])}, "
                f"got {describe_value(got['gradient'])}.")
    return None


# ----------------------------------------------------------------------------------------------
# Models as plain data (grad_norms_per_layer, ActivationStats, train_and_log)

_ACTIVATIONS = {"tanh": "Tanh", "relu": "ReLU", "sigmoid": "Sigmoid"}


def _spec(rng: np.random.Generator, widths: tuple[int, ...], activations: tuple[str, ...], *, weight_gain: float = 1.0,
          bias_mean: float = 0.0, bias: bool = True, nested: bool = False, batch: int = 16,
          dtype: str = "float64") -> dict[str, Any]:
    """A feed-forward net: Linear layers of ``widths``, ``activations[i]`` after hidden layer ``i``."""
    weights = [(weight_gain * rng.normal(size=(o, i)) / math.sqrt(i)).astype(dtype)
               for i, o in zip(widths[:-1], widths[1:])]
    biases = [(bias_mean + 0.1 * rng.normal(size=o)).astype(dtype) for o in widths[1:]]
    return {"weights": weights, "biases": biases if bias else None, "activations": list(activations),
            "nested": nested, "x": rng.normal(size=(batch, widths[0])).astype(dtype), "dtype": dtype}


def _build(spec: dict[str, Any]):
    """``(model, linears)``: an ``nn.Sequential`` with the spec's weights; with ``nested`` each
    hidden (Linear, activation) pair is a Sequential of its own."""
    import torch
    from torch import nn

    from .rng import cpu_rng

    dtype = getattr(torch, spec["dtype"])
    blocks, linears = [], []
    with cpu_rng(0), torch.no_grad():  # nn.Linear's own init (overwritten) leaves the student's random state alone
        for i, w in enumerate(spec["weights"]):
            layer = nn.Linear(w.shape[1], w.shape[0], bias=spec["biases"] is not None, dtype=dtype)
            layer.weight.copy_(torch.from_numpy(w))
            if spec["biases"] is not None:
                layer.bias.copy_(torch.from_numpy(spec["biases"][i]))
            linears.append(layer)
            act = spec["activations"][i] if i < len(spec["activations"]) else None
            blocks.append([layer] if act is None else [layer, getattr(nn, _ACTIVATIONS[act])()])
    if spec["nested"]:
        model = nn.Sequential(*[nn.Sequential(*b) if len(b) > 1 else b[0] for b in blocks])
    else:
        model = nn.Sequential(*[m for b in blocks for m in b])
    return model, linears


def _describe_spec(spec: dict[str, Any]) -> str:
    widths = [spec["weights"][0].shape[1]] + [w.shape[0] for w in spec["weights"]]
    acts = "/".join(spec["activations"]) or "no activation"
    return (f"Linear widths {tuple(widths)}, {acts}{'' if spec['biases'] is not None else ', no biases'}"
            f"{', nested Sequentials' if spec['nested'] else ''}, {spec['dtype']}")


# ----------------------------------------------------------------------------------------------
# grad_norms_per_layer

_N_NORMS = "the 2-norm of each parameter's gradient, by its name"
_N_WHICH = "parameters without a gradient are left out"
_N_MORE = "nested modules, float32 and non-finite gradients"


def _gn_case(label: str, spec: dict[str, Any], group: str, *, frozen: tuple[int, ...] = (), unused: bool = False,
             scale: float = 1.0, poison: str | None = None) -> Case:
    extra = "".join([f"; Linear {sorted(frozen)} frozen (requires_grad=False)" if frozen else "",
                     "; an extra Linear the forward pass never uses" if unused else "",
                     f"; loss scaled by {scale:g}" if scale != 1 else "",
                     f"; one gradient entry set to {poison}" if poison else ""])
    return Case(f"{label} [{_describe_spec(spec)}{extra}]",
                {"spec": spec, "frozen": list(frozen), "unused": unused, "scale": scale, "poison": poison}, group)


def _gn_cases(level: str, seed: int) -> list[Case]:
    rng = np.random.default_rng([seed, 3])
    cases = [
        _gn_case("a tanh MLP after loss.backward(): one norm per weight and bias", _spec(rng, (4, 6, 5, 3), ("tanh",) * 2),
                 _N_NORMS),
        _gn_case("a frozen first layer: its parameters have no gradient", _spec(rng, (3, 5, 2), ("relu",)), _N_WHICH,
                 frozen=(0,)),
    ]
    if level == "hidden":
        cases += [
            _gn_case("a deeper ReLU MLP", _spec(rng, (5, 8, 8, 8, 2), ("relu",) * 3), _N_NORMS),
            _gn_case("a large loss", _spec(rng, (4, 6, 3), ("tanh",)), _N_NORMS, scale=1e3),
            _gn_case("no biases", _spec(rng, (3, 4, 4, 2), ("sigmoid",) * 2, bias=False), _N_NORMS),
            _gn_case("a layer the forward pass never uses has no gradient", _spec(rng, (4, 5, 3), ("tanh",)),
                     _N_WHICH, unused=True),
            _gn_case("two frozen layers", _spec(rng, (3, 4, 4, 4, 2), ("relu",) * 3), _N_WHICH, frozen=(0, 2)),
            _gn_case("nested Sequentials: names like '0.0.weight'", _spec(rng, (4, 5, 5, 3), ("tanh",) * 2, nested=True),
                     _N_MORE),
            _gn_case("float32", _spec(rng, (4, 6, 3), ("relu",), dtype="float32"), _N_MORE),
            _gn_case("an infinite gradient entry: that norm is inf", _spec(rng, (3, 4, 2), ("tanh",)), _N_MORE,
                     poison="inf"),
        ]
    return cases


def _forward_backward(case: Case):
    import torch
    from torch import nn

    inp = case.inputs
    model, linears = _build(inp["spec"])
    if inp.get("unused"):
        class WithUnused(nn.Module):
            """``body`` and a Linear ``unused`` that the forward pass never calls."""

            def __init__(self, body: nn.Module) -> None:
                super().__init__()
                self.body = body
                self.unused = nn.Linear(2, 2, dtype=linears[0].weight.dtype)

            def forward(self, x):
                return self.body(x)

        model = WithUnused(model)
    for i in inp.get("frozen", []):
        for p in linears[i].parameters():
            p.requires_grad_(False)
    out = model(torch.from_numpy(inp["spec"]["x"]))
    (inp.get("scale", 1.0) * out.square().mean()).backward()
    if inp.get("poison"):
        with torch.no_grad():
            linears[-1].weight.grad.view(-1)[0] = float(inp["poison"])
    return model


def _gn_run(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    from .rng import cpu_rng

    with cpu_rng(0):
        model = _forward_backward(case)
    returned, error = call_quietly(fn, model)
    if error:
        return error
    if not isinstance(returned, Mapping):
        return {"raised": None, "bad_return": f"expected a dict {{parameter name: norm}}, got {type(returned).__name__}"}
    norms = {}
    for name, value in returned.items():
        number = _number(value)
        norms[str(name)] = math.nan if number is None else number
        if number is None:
            return {"raised": None, "bad_return": f"the value for {name!r} is not a number: {type(value).__name__}"}
    names = sorted(norms)
    return {"raised": None, "names": names, "norms": np.array([norms[n] for n in names])}


def _gn_compare(case: Case, got: dict[str, Any], want: dict[str, Any]) -> str | None:
    if got.get("raised"):
        return f"your function raised {got['raised']}: {got.get('message', '')}"
    if got.get("bad_return"):
        return got["bad_return"]
    if got["names"] != want["names"]:
        missing = sorted(set(want["names"]) - set(got["names"]))
        extra = sorted(set(got["names"]) - set(want["names"]))
        return (f"the keys: expected the parameter names {want['names']}"
                + (f"; missing {missing}" if missing else "") + (f"; not expected {extra}" if extra else "") + ".")
    diff = first_difference(got["norms"], want["norms"], 1e-5, 1e-12)
    if diff is None:
        return None
    _, g, w = diff
    return f"the norms (keys in sorted order {want['names']}): expected {describe_value(w)}, got {describe_value(g)}."


# ----------------------------------------------------------------------------------------------
# ActivationStats

_S_STATS = "mean, std, % saturated and % dead of every watched layer, at every forward call"
_S_KINDS = "saturation of tanh and sigmoid, dead ReLU units, the threshold"
_S_HOOKS = "hooks: removable, outputs untouched, no autograd graph kept"
_S_WHICH = "the layers of the types asked for, by their names in the model"
_FIELDS = ("mean", "std", "saturated", "dead")
#: which fields are graded for which module: saturation for bounded activations, dead units for ReLU
_GRADED = {"Tanh": ("mean", "std", "saturated"), "Sigmoid": ("mean", "std", "saturated"),
           "ReLU": ("mean", "std", "dead")}


def _as_case(label: str, spec: dict[str, Any], group: str, *, calls: int = 2, kwargs: dict[str, Any] | None = None,
             grad: bool = False, rng: np.random.Generator | None = None) -> Case:
    xs = [spec["x"]] + [(1.5 * rng.normal(size=spec["x"].shape)).astype(spec["dtype"]) for _ in range(calls - 1)]
    kwargs = dict(kwargs or {})
    text = f"{label} [{_describe_spec(spec)}; {calls} forward calls"
    text += "".join(f", {k}={v}" for k, v in kwargs.items()) + (", with autograd on" if grad else "") + "]"
    return Case(text, {"spec": spec, "xs": xs, "kwargs": kwargs, "grad": grad}, group)


def _explicit_tanh_spec() -> dict[str, Any]:
    w = np.eye(4)
    x = np.array([[3.0, -3.0, 0.5, -0.5]] * 128)
    return {"weights": [w], "biases": [np.zeros(4)], "activations": ["tanh"], "nested": False, "x": x,
            "dtype": "float64"}


def _as_cases(level: str, seed: int) -> list[Case]:
    rng = np.random.default_rng([seed, 4])
    worked = _explicit_tanh_spec()
    cases = [
        Case("worked example: Linear = identity, then Tanh, on 128 rows [3, -3, 0.5, -0.5]: history['1'] gets one "
             "record per call, mean 0, std 0.7758, saturated 0.5 (tanh(3) = 0.995 > 0.97)",
             {"spec": worked, "xs": [worked["x"]], "kwargs": {}, "grad": False}, _S_STATS),
        _as_case("a tanh / ReLU MLP, two calls, then remove() and a third call", _spec(rng, (4, 32, 32, 3),
                 ("tanh", "relu"), batch=64), _S_STATS, rng=rng),
        _as_case("a sigmoid MLP with large weights: saturated at both ends", _spec(rng, (5, 32, 3), ("sigmoid",),
                 weight_gain=6.0, batch=64), _S_KINDS, rng=rng),
        _as_case("forward calls with autograd on", _spec(rng, (4, 16, 2), ("relu",), batch=64), _S_HOOKS, grad=True,
                 rng=rng),
    ]
    if level == "hidden":
        cases += [
            _as_case("three calls of a deeper mixed MLP", _spec(rng, (6, 32, 32, 32, 2), ("relu", "tanh", "sigmoid"),
                     batch=64), _S_STATS, calls=3, rng=rng),
            _as_case("a ReLU MLP with negative biases: dead units", _spec(rng, (5, 32, 32, 3), ("relu", "relu"),
                     bias_mean=-1.5, batch=64), _S_KINDS, rng=rng),
            _as_case("a tanh MLP with large weights: saturated units", _spec(rng, (5, 32, 32, 3), ("tanh", "tanh"),
                     weight_gain=4.0, batch=64), _S_KINDS, rng=rng),
            _as_case("another saturation threshold", _spec(rng, (5, 32, 3), ("tanh",), weight_gain=2.0, batch=64),
                     _S_KINDS, kwargs={"saturation_threshold": 0.9}, rng=rng),
            _as_case("a tanh / ReLU MLP trained with autograd on", _spec(rng, (4, 32, 32, 2), ("tanh", "relu"),
                     batch=64), _S_HOOKS, grad=True, calls=3, rng=rng),
            _as_case("only the ReLU layers of a mixed MLP", _spec(rng, (4, 32, 32, 32, 2), ("tanh", "relu", "relu"),
                     batch=64), _S_WHICH, kwargs={"layer_types": "ReLU"}, rng=rng),
            _as_case("tanh and sigmoid layers, nested in Sequentials", _spec(rng, (4, 32, 32, 2), ("tanh", "sigmoid"),
                     nested=True, batch=64), _S_WHICH, kwargs={"layer_types": ("Tanh", "Sigmoid")}, rng=rng),
            _as_case("float32", _spec(rng, (4, 32, 2), ("relu",), batch=64, dtype="float32"), _S_WHICH, rng=rng),
        ]
    return cases


def _read(record: Any, field: str) -> Any:
    if isinstance(record, Mapping):
        return record.get(field)
    return getattr(record, field, None)


def _as_run(cls: Callable[..., Any], case: Case) -> dict[str, Any]:
    import torch
    from torch import nn

    from .rng import cpu_rng

    inp = case.inputs
    spec = inp["spec"]
    with cpu_rng(0):
        model, _ = _build(spec)
    kwargs = dict(inp["kwargs"])
    if "layer_types" in kwargs:
        names = kwargs["layer_types"]
        kwargs["layer_types"] = getattr(nn, names) if isinstance(names, str) else tuple(getattr(nn, n) for n in names)
    xs = [torch.from_numpy(x) for x in inp["xs"]]
    with torch.no_grad():
        plain = [model(x) for x in xs]  # what the model computes without hooks
    stats, error = call_quietly(cls, model, **kwargs)
    if error:
        return error
    outputs = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for x in xs:
                if inp["grad"]:
                    out = model(x)
                    out.square().mean().backward()
                else:
                    with torch.no_grad():
                        out = model(x)
                outputs.append(out.detach())
            history = getattr(stats, "history", None)
            if not isinstance(history, Mapping):
                return {"raised": None, "bad_return": "expected an attribute history: a dict {layer name: list of "
                                                      f"records}}, got {type(history).__name__}"}
            lengths = {str(k): len(v) for k, v in history.items()}
            stats.remove()
            with torch.no_grad():
                model(xs[0])
            after = {str(k): len(v) for k, v in history.items()}
    except Exception as exc:
        return raised(exc)
    kinds = {name or type(m).__name__: type(m).__name__ for name, m in model.named_modules()}
    records, keeps_graph = {}, False
    for name, entries in history.items():
        rows = []
        for record in entries:
            row = {}
            for field in _GRADED.get(kinds.get(str(name), ""), _FIELDS[:2]):
                value = _read(record, field)
                keeps_graph |= bool(getattr(value, "requires_grad", False))
                number = _number(value)
                row[field] = math.nan if number is None else number
            rows.append(row)
        records[str(name)] = rows
    changed = any(not torch.equal(a, b) for a, b in zip(outputs, plain)) if len(outputs) == len(plain) else True
    if inp["grad"]:  # a hook that returns a detached output cuts the backward pass
        first = next(m for m in model.modules() if isinstance(m, nn.Linear))
        changed |= first.weight.grad is None
    hooks = sum(len(m._forward_hooks) for m in model.modules())
    return {"raised": None, "names": sorted(records), "records": {k: records[k] for k in sorted(records)},
            "calls": lengths, "calls_after_remove": after, "hooks_left": hooks, "keeps_graph": keeps_graph,
            "output_changed": bool(changed)}


def _as_compare(case: Case, got: dict[str, Any], want: dict[str, Any]) -> str | None:
    if got.get("raised") or want.get("raised"):
        if got.get("raised") == want.get("raised"):
            return None
        return f"your class raised {got['raised']}: {got.get('message', '')}"
    if got.get("bad_return") or want.get("bad_return"):
        return None if got.get("bad_return") == want.get("bad_return") else got.get("bad_return")
    if got["output_changed"] != want["output_changed"]:
        return ("the model's outputs changed while your hooks were in place: a forward hook that returns a value "
                "replaces the module's output; return None.")
    if got["names"] != want["names"]:
        return f"the keys of history: expected the layer names {want['names']}, got {got['names']}."
    if got["calls"] != want["calls"]:
        return (f"the number of records per layer after the forward calls: expected {want['calls']}, "
                f"got {got['calls']} (one record per layer per forward call).")
    for name in want["names"]:
        for call, (g, w) in enumerate(zip(got["records"][name], want["records"][name])):
            for field in w:
                if first_difference(g.get(field), w[field], 2e-3, 1e-6) is not None:
                    return (f"layer {name!r}, forward call {call + 1}: {field} expected {describe_value(w[field])}, "
                            f"got {describe_value(g.get(field))}.")
    if got["keeps_graph"] != want["keeps_graph"]:
        return ("a record holds a tensor that requires grad: each record keeps the batch's whole autograd graph "
                "alive; store floats (.item()).")
    if (got["calls_after_remove"], got["hooks_left"]) != (want["calls_after_remove"], want["hooks_left"]):
        return (f"after remove(), the model still has {got['hooks_left']} forward hooks and the layers got "
                f"{got['calls_after_remove']} records (expected {want['calls_after_remove']}): remove() must remove "
                "every hook.")
    return None


# ----------------------------------------------------------------------------------------------
# train_and_log

_T_UPDATE = "the update is what optimizer.step() did: momentum, Adam and weight decay"
_T_LOOP = "one step per batch: zero_grad, the loss before the step"
_T_WHICH = "weight matrices that train: requires_grad and ndim >= 2, by name"


def _tl_case(label: str, rng: np.random.Generator, group: str, optimizer: dict[str, Any], *, steps: int = 3,
             widths: tuple[int, ...] = (4, 8, 3), frozen: tuple[int, ...] = (), loss: str = "mse",
             offset: float = 0.3) -> Case:
    spec = _spec(rng, widths, ("tanh",) * (len(widths) - 2), batch=8)
    spec["weights"] = [w + offset for w in spec["weights"]]  # a mean that std ignores and a norm would not
    batches = []
    for _ in range(steps):
        x = rng.normal(size=(8, widths[0]))
        y = rng.integers(0, widths[-1], size=8) if loss == "cross_entropy" else rng.normal(size=(8, widths[-1]))
        batches.append((x, y))
    opt = ", ".join(f"{k}={v}" for k, v in optimizer.items() if k != "kind")
    text = (f"{label} [{_describe_spec(spec)}; {optimizer['kind']}({opt}); {steps} batches; {loss} loss"
            f"{f'; Linear {list(frozen)} frozen' if frozen else ''}]")
    return Case(text, {"spec": spec, "optimizer": optimizer, "batches": batches, "frozen": list(frozen),
                       "loss": loss}, group)


def _tl_cases(level: str, seed: int) -> list[Case]:
    rng = np.random.default_rng([seed, 5])
    sgd = {"kind": "SGD", "lr": 0.02}
    cases = [
        _tl_case("plain SGD (where the update is -lr * grad)", rng, _T_LOOP, sgd),
        _tl_case("Adam", rng, _T_UPDATE, {"kind": "Adam", "lr": 1e-3}),
        _tl_case("a frozen first layer is not logged", rng, _T_WHICH, sgd, frozen=(0,)),
    ]
    if level == "hidden":
        cases += [
            _tl_case("SGD with momentum 0.9", rng, _T_UPDATE, {"kind": "SGD", "lr": 0.02, "momentum": 0.9}),
            _tl_case("AdamW with weight decay 0.1", rng, _T_UPDATE, {"kind": "AdamW", "lr": 1e-3, "weight_decay": 0.1}),
            _tl_case("SGD with weight decay", rng, _T_UPDATE, {"kind": "SGD", "lr": 0.02, "weight_decay": 0.05}),
            _tl_case("five steps, cross-entropy", rng, _T_LOOP, sgd, steps=5, loss="cross_entropy"),
            _tl_case("a deeper model", rng, _T_LOOP, sgd, widths=(3, 6, 6, 2)),
            _tl_case("two frozen layers of three", rng, _T_WHICH, {"kind": "Adam", "lr": 1e-3}, widths=(3, 6, 6, 2),
                     frozen=(0, 2)),
        ]
    return cases


class _Optimizer:
    """``torch.optim.SGD``, ``Adam`` and ``AdamW`` in a few lines of Python, with their interface
    (``param_groups``, ``state``, ``zero_grad``, ``step``) and their arithmetic.

    The cases use them instead of torch's classes, whose first ``step()`` in a fresh process costs
    seconds of one-time setup under the grader's watch — more than a grading cell's time limit on a
    loaded machine (lesson 04's ``_SGD`` does the same).
    """

    def __init__(self, params, kind: str, lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.kind = kind
        self.__class__ = type(kind, (_Optimizer,), {})  # what type(optimizer).__name__ says
        self.param_groups = [{"params": list(params), "lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                              "betas": betas, "eps": eps}]
        self.state: dict = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.param_groups[0]["params"]:
            if p.grad is not None:
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_().zero_()

    def step(self, closure=None):
        import torch

        group = self.param_groups[0]
        lr, wd = group["lr"], group["weight_decay"]
        with torch.no_grad():
            for p in group["params"]:
                if p.grad is None:
                    continue
                g, state = p.grad, self.state.setdefault(p, {})
                if self.kind == "SGD":
                    if wd:
                        g = g.add(p, alpha=wd)
                    if group["momentum"]:
                        buf = state.get("momentum_buffer")
                        state["momentum_buffer"] = g = g.clone() if buf is None else buf.mul_(group["momentum"]).add_(g)
                    p.add_(g, alpha=-lr)
                    continue
                if self.kind == "AdamW":
                    p.mul_(1 - lr * wd)
                elif wd:
                    g = g.add(p, alpha=wd)
                (beta1, beta2), t = group["betas"], state.get("step", 0) + 1
                m = state.setdefault("exp_avg", torch.zeros_like(p)).lerp_(g, 1 - beta1)
                v = state.setdefault("exp_avg_sq", torch.zeros_like(p)).mul_(beta2).addcmul_(g, g, value=1 - beta2)
                state["step"] = t
                denom = (v.sqrt() / math.sqrt(1 - beta2**t)).add_(group["eps"])
                p.addcdiv_(m, denom, value=-lr / (1 - beta1**t))
        return None


def _tl_run(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    import torch

    from .rng import cpu_rng

    inp = case.inputs
    with cpu_rng(0):
        model, linears = _build(inp["spec"])
    for i in inp["frozen"]:
        linears[i].weight.requires_grad_(False)
    opt_spec = dict(inp["optimizer"])
    kind = opt_spec.pop("kind")
    optimizer = _Optimizer([p for p in model.parameters() if p.requires_grad], kind, **opt_spec)
    cross_entropy = inp["loss"] == "cross_entropy"
    batches = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in inp["batches"]]
    loss_fn = torch.nn.functional.cross_entropy if cross_entropy else torch.nn.functional.mse_loss
    returned, error = call_quietly(fn, model, optimizer, loss_fn, batches)
    out: dict[str, Any] = {"weights": [p.detach().numpy().copy() for p in model.parameters()]}
    if error:
        return {**out, **error}
    if not (isinstance(returned, (tuple, list)) and len(returned) == 2 and isinstance(returned[1], Mapping)):
        return {**out, "raised": None, "bad_return": "expected a pair (losses, ratios): a list of floats and a dict "
                                                     "{name: list of log10 ratios}"}
    losses, ratios = returned
    try:
        out["losses"] = np.array([_number(v) for v in losses], dtype=np.float64)
        out["names"] = sorted(str(k) for k in ratios)
        out["ratios"] = [np.array([_number(v) for v in ratios[k]], dtype=np.float64)
                         for k in sorted(ratios, key=str)]
    except (TypeError, ValueError):
        return {**out, "raised": None, "bad_return": "losses and each ratio list must hold numbers"}
    return {"raised": None, **out}


def _tl_compare(case: Case, got: dict[str, Any], want: dict[str, Any]) -> str | None:
    if got.get("raised"):
        return f"your function raised {got['raised']}: {got.get('message', '')}"
    if got.get("bad_return"):
        return got["bad_return"]
    if first_difference(got["weights"], want["weights"], 1e-6, 1e-9) is not None:
        return ("the parameters after training differ from one optimizer step per batch (zero_grad, loss, "
                "backward, step).")
    if first_difference(got["losses"], want["losses"], 1e-6, 1e-9) is not None:
        return (f"the losses: expected {describe_value(want['losses'])} (each step's loss, before its update), "
                f"got {describe_value(got['losses'])}.")
    if got["names"] != want["names"]:
        return f"the logged parameters: expected {want['names']}, got {got['names']}."
    for name, g, w in zip(want["names"], got["ratios"], want["ratios"]):
        if g.shape != w.shape:
            return f"{name!r}: expected one ratio per step ({w.size}), got {g.size}."
        # std(W) before or after the step, with or without Bessel's correction: all accepted
        with np.errstate(all="ignore"):
            slack = 0.005 + 0.5 * np.power(10.0, np.where(np.isfinite(w), w, -np.inf))
            ok = (np.abs(g - w) <= slack) | (g == w)
        if not np.all(ok):
            return (f"the log10 update:data ratios of {name!r}: expected {describe_value(w)}, "
                    f"got {describe_value(g)}.")
    return None


# ----------------------------------------------------------------------------------------------

#: the grader's own relative error, used in numerical_gradient's comparison: an answer key anywhere else
ANSWER_HELPERS: dict[str, tuple[str, ...]] = {"stabletrain.exercises.diagnostics:_rel_err": ("numerical_gradient",)}

EXERCISES: dict[str, Exercise] = {
    "rel_error": Exercise("rel_error", "stabletrain.gradcheck:rel_error", _rel_cases, _rel_run, _rel_compare,
                          f"{__name__}_mutants:REL_ERROR", deterministic=True),
    "numerical_gradient": Exercise("numerical_gradient", "stabletrain.gradcheck:numerical_gradient", _ng_cases,
                                   _ng_run, _ng_compare, f"{__name__}_mutants:NUMERICAL_GRADIENT", deterministic=True),
    "grad_norms_per_layer": Exercise("grad_norms_per_layer", "stabletrain.diagnostics:grad_norms_per_layer",
                                     _gn_cases, _gn_run, _gn_compare, f"{__name__}_mutants:GRAD_NORMS",
                                     deterministic=True),
    "ActivationStats": Exercise("ActivationStats", "stabletrain.diagnostics:ActivationStats", _as_cases, _as_run,
                                _as_compare, f"{__name__}_mutants:ACTIVATION_STATS", deterministic=True),
    "train_and_log": Exercise("train_and_log", "stabletrain.diagnostics:train_and_log", _tl_cases, _tl_run,
                              _tl_compare, f"{__name__}_mutants:TRAIN_AND_LOG", deterministic=True),
}
