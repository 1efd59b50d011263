"""Exercises of lesson 04: ``clip_grad_value_``, ``clip_grad_norm_``, ``adaptive_clip_grad_``.

A case describes parameters as plain data — for each one its data and its gradient (or None) —
plus how they are passed (a list, a tuple, a single tensor, a generator) and the arguments.
Running a case builds fresh tensors, calls the implementation and records the gradients
afterwards, the returned value and any exception.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .base import Case, Exercise, describe_value, first_difference, raised, to_plain

# ----------------------------------------------------------------------------------------------
# Building and running cases


def _param(rng: np.random.Generator, shape: tuple[int, ...], scale: float = 1.0, dtype: str = "float32",
           grad: str = "normal") -> dict[str, Any]:
    data = rng.normal(0.0, 1.0, size=shape).astype(dtype)
    g = None if grad == "none" else (rng.normal(0.0, scale, size=shape)).astype(dtype)
    return {"data": data, "grad": g}


def _build(specs: list[dict[str, Any]]) -> list[torch.Tensor]:
    params = []
    for spec in specs:
        p = torch.tensor(spec["data"]).requires_grad_(True)
        if spec["grad"] is not None:
            p.grad = torch.tensor(spec["grad"])
        params.append(p)
    return params


def _pass_as(params: list[torch.Tensor], container: str) -> Any:
    if container == "single":
        return params[0]
    if container == "generator":
        return (p for p in params)
    if container == "tuple":
        return tuple(params)
    return list(params)


def _run(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    inputs = case.inputs
    params = _build(inputs["params"])
    out: dict[str, Any] = {"raised": None, "returned": None}
    try:
        with warnings.catch_warnings():  # warnings are not wrong answers; keep the checks' output clean
            warnings.simplefilter("ignore")
            returned = fn(_pass_as(params, inputs["container"]), *inputs["args"], **inputs["kwargs"])
        if inputs["graded_return"]:
            out["returned"] = to_plain(returned)
    except Exception as exc:  # the implementation's error is part of its behaviour
        out.update(raised(exc))
    out["grads"] = [None if p.grad is None else p.grad.detach().numpy().copy() for p in params]
    out["grad_dtypes"] = [None if p.grad is None else str(p.grad.dtype).replace("torch.", "") for p in params]
    return out


def _case(label: str, params: list[dict[str, Any]], args: list[Any], kwargs: dict[str, Any] | None = None, *,
          container: str = "list", graded_return: bool = False, tol: tuple[float, float] = (1e-5, 1e-7)) -> Case:
    shapes = ", ".join(str(tuple(p["data"].shape)) for p in params)
    text = f"{label} [parameters of shapes {shapes} passed as a {container}"
    text += "".join(f", {a!r}" for a in args) + "".join(f", {k}={v!r}" for k, v in (kwargs or {}).items()) + "]"
    return Case(text, {"params": params, "args": list(args), "kwargs": dict(kwargs or {}), "container": container,
                       "graded_return": graded_return, "tol": list(tol)})


# ----------------------------------------------------------------------------------------------
# Comparing


def _where(path: str, case: Case) -> str:
    if path.startswith(".grads["):
        i = int(path[len(".grads["):].split("]")[0])
        shape = tuple(case.inputs["params"][i]["data"].shape)
        return f"the gradient of parameter {i} (shape {shape}) afterwards"
    if path.startswith(".grad_dtypes"):
        return "the dtype of a gradient afterwards (clipping works in place and keeps each dtype)"
    if path.startswith(".returned"):
        return "the returned value" + (" (its shape)" if "shape" in path else "")
    return path.lstrip(".") or "the result"


def _compare(case: Case, got: dict[str, Any], want: dict[str, Any]) -> str | None:
    if want["raised"] is not None:
        if got.get("raised") != want["raised"]:
            came = f"raised {got['raised']}" if got.get("raised") else "returned normally"
            return f"expected {want['raised']} (as PyTorch raises here), but your function {came}."
    elif got.get("raised") is not None:
        return f"your function raised {got['raised']}: {got.get('message', '')}"
    strip = lambda out: {k: v for k, v in out.items() if k not in ("message",)}  # noqa: E731
    got_, want_ = strip(got), strip(want)
    for out in (got_, want_):  # the dtype of the returned norm is not graded, its value is
        if isinstance(out.get("returned"), dict):
            out["returned"] = {k: v for k, v in out["returned"].items() if k != "dtype"}
    rtol, atol = case.inputs["tol"]
    diff = first_difference(got_, want_, rtol, atol)
    if diff is None:
        return None
    path, g, w = diff
    return f"{_where(path, case)}: expected {describe_value(w)}, got {describe_value(g)}."


# ----------------------------------------------------------------------------------------------
# clip_grad_value_


def _value_cases(level: str, seed: int) -> list[Case]:
    rng = np.random.default_rng([seed, 1])
    cases = [
        _case("gradients beyond ±clip_value are clamped", [_param(rng, (4, 3), 2.0), _param(rng, (3,), 2.0)], [0.5]),
        _case("gradients inside the range are unchanged", [_param(rng, (5,), 0.01)], [1.0]),
    ]
    if level == "hidden":
        nan_grad = _param(rng, (6,), 3.0)
        nan_grad["grad"][[1, 4]] = [np.nan, np.inf]
        cases += [
            _case("a parameter without gradient is skipped", [_param(rng, (2, 2), 3.0), _param(rng, (3,), grad="none")], [1.0]),
            _case("a single tensor", [_param(rng, (3, 3), 2.0)], [0.1], container="single"),
            _case("a generator", [_param(rng, (2, 5), 2.0), _param(rng, (4,), 2.0)], [0.3], container="generator"),
            _case("NaN stays NaN, inf is clamped", [nan_grad], [1.0]),
            _case("float64 conv weights", [_param(rng, (2, 3, 3, 3), 1.0, "float64")], [0.25], tol=(1e-12, 0.0)),
            _case("clip_value=0 zeroes the gradients", [_param(rng, (3, 2))], [0.0]),
        ]
    return cases


# ----------------------------------------------------------------------------------------------
# clip_grad_norm_


def _norm_cases(level: str, seed: int) -> list[Case]:
    rng = np.random.default_rng([seed, 2])
    ret = {"graded_return": True}
    cases = [
        _case("a large global norm is clipped to max_norm",
              [_param(rng, (4, 3), 1.0), _param(rng, (3,), 1.0)], [1.0], **ret),
        _case("a small global norm leaves the gradients unchanged",
              [_param(rng, (6,), 0.01), _param(rng, (2, 2), 0.01)], [10.0], **ret),
        _case("the 1-norm", [_param(rng, (3, 3), 1.0), _param(rng, (5,), 1.0)], [2.0], {"norm_type": 1.0}, **ret),
    ]
    if level != "hidden":
        return cases
    nonfinite = _param(rng, (5,), 1.0)
    nonfinite["grad"][2] = np.inf
    with_nan = _param(rng, (4,), 1.0)
    with_nan["grad"][0] = np.nan
    exact = _param(rng, (3, 4), 1.0, "float64")
    exact["grad"] *= 5.0 / np.linalg.norm(exact["grad"])
    f64 = (1e-9, 0.0)
    cases += [
        _case("several parameters, each below max_norm but not together",
              [_param(rng, (8,), 0.3), _param(rng, (8,), 0.3), _param(rng, (8,), 0.3)], [1.0], **ret),
        _case("a parameter without gradient is skipped",
              [_param(rng, (3, 2), 2.0), _param(rng, (4,), grad="none"), _param(rng, (2,), 2.0)], [0.5], **ret),
        _case("no gradients at all", [_param(rng, (3,), grad="none")], [1.0], **ret),
        _case("a single tensor", [_param(rng, (4, 4), 1.0)], [0.5], container="single", **ret),
        _case("a generator", [_param(rng, (3, 3), 1.0), _param(rng, (3,), 1.0)], [0.5], container="generator", **ret),
        _case("the inf-norm", [_param(rng, (3, 3), 2.0), _param(rng, (2,), 2.0)], [0.5], {"norm_type": math.inf}, **ret),
        _case("the inf-norm given as the string 'inf'", [_param(rng, (4,), 2.0), _param(rng, (2, 2), 2.0)], [0.5],
              {"norm_type": "inf"}, **ret),
        _case("a 3-norm on conv-shaped gradients", [_param(rng, (2, 3, 3, 3), 1.0), _param(rng, (2,), 1.0)], [1.0],
              {"norm_type": 3.0}, **ret),
        _case("tiny float64 gradients: the 1e-6 in max_norm / (total + 1e-6) matters",
              [_param(rng, (3,), 1e-5, "float64"), _param(rng, (2, 2), 1e-5, "float64")], [1e-6], tol=f64, **ret),
        _case("total norm exactly equal to max_norm is still scaled by max_norm / (total + 1e-6)",
              [exact], [5.0], tol=f64, **ret),
        _case("mixed float32 and float64 gradients",
              [_param(rng, (3, 3), 1.0, "float32"), _param(rng, (4,), 1.0, "float64")], [0.5], **ret),
        _case("max_norm=0 zeroes the gradients", [_param(rng, (3, 2), 1.0)], [0.0], **ret),
        _case("an inf gradient without error_if_nonfinite", [nonfinite, _param(rng, (2,), 1.0)], [1.0], **ret),
        _case("a NaN gradient without error_if_nonfinite", [with_nan, _param(rng, (3,), 1.0)], [1.0], **ret),
        _case("a NaN gradient with error_if_nonfinite=True: raise before changing anything",
              [with_nan, _param(rng, (3,), 1.0)], [1.0], {"error_if_nonfinite": True}, **ret),
    ]
    return cases


# ----------------------------------------------------------------------------------------------
# adaptive_clip_grad_


def _agc_cases(level: str, seed: int) -> list[Case]:
    rng = np.random.default_rng([seed, 3])

    def layer(shape, grad_scale, dtype="float32", grad="normal"):
        p = _param(rng, shape, grad_scale, dtype, grad)
        p["data"] = (p["data"] * 0.1).astype(dtype)
        return p

    cases = [
        _case("rows whose gradient is large relative to their weights are clipped, others kept",
              [layer((6, 4), 0.01)], [], {"clip_factor": 0.05}),
        _case("a weight and its bias", [layer((3, 5), 0.01), layer((3,), 0.5)], [], {"clip_factor": 0.1}),
    ]
    if level != "hidden":
        return cases
    zero = layer((4, 3), 1e-4)
    zero["data"][:] = 0.0
    mixed = layer((5, 4), 0.001)
    mixed["grad"][0] *= 100.0
    cases += [
        _case("zero weights: the unit norm is floored at eps", [zero], [], {"clip_factor": 0.5, "eps": 1e-3}),
        _case("conv filters are units over (in, kh, kw)", [layer((4, 2, 3, 3), 0.05)], [], {"clip_factor": 0.02}),
        _case("only the unit with the large gradient is clipped", [mixed], [], {"clip_factor": 0.01}),
        _case("a parameter without gradient is skipped", [layer((3, 3), 0.1), layer((3,), grad_scale=0, grad="none")],
              [], {"clip_factor": 0.01}),
        _case("a single tensor", [layer((4, 4), 0.1)], [], {"clip_factor": 0.01}, container="single"),
        _case("a generator", [layer((3, 2), 0.1), layer((3,), 0.1)], [], {"clip_factor": 0.01}, container="generator"),
        _case("float64", [layer((5, 3), 0.05, "float64")], [], {"clip_factor": 0.02}, tol=(1e-10, 0.0)),
        _case("default clip_factor and eps", [layer((6, 6), 0.01)], []),
    ]
    return cases


# ----------------------------------------------------------------------------------------------

EXERCISES: dict[str, Exercise] = {
    "clip_grad_value_": Exercise(
        name="clip_grad_value_",
        reference="stabletrain.clipping:clip_grad_value_",
        make_cases=_value_cases,
        run=_run,
        compare=_compare,
        mutants=f"{__name__}_mutants:VALUE",
    ),
    "clip_grad_norm_": Exercise(
        name="clip_grad_norm_",
        reference="stabletrain.clipping:clip_grad_norm_",
        make_cases=_norm_cases,
        run=_run,
        compare=_compare,
        mutants=f"{__name__}_mutants:NORM",
    ),
    "adaptive_clip_grad_": Exercise(
        name="adaptive_clip_grad_",
        reference="stabletrain.clipping:adaptive_clip_grad_",
        make_cases=_agc_cases,
        run=_run,
        compare=_compare,
        mutants=f"{__name__}_mutants:AGC",
    ),
}
