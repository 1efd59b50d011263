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

from .. import clipping as reference
from .base import Case, Exercise, Mutant, describe_value, first_difference, raised, to_plain

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


# ----------------------------------------------------------------------------------------------

_NONE_MISCONCEPTION = ("a parameter whose .grad is None (it took no part in the loss) must be skipped, "
                       "not used: check `if p.grad is None: continue`.")
_SINGLE_MISCONCEPTION = ("`parameters` may be a single tensor: wrap it in a list first "
                         "(`if isinstance(parameters, torch.Tensor): parameters = [parameters]`); "
                         "iterating over a tensor walks its rows, which have no .grad.")

EXERCISES: dict[str, Exercise] = {
    "clip_grad_value_": Exercise(
        name="clip_grad_value_",
        reference=reference.clip_grad_value_,
        make_cases=_value_cases,
        run=_run,
        compare=_compare,
        mutants={
            "upper_only": Mutant(_value_upper_only, "clipping by value clamps both sides: every entry into "
                                 "[-clip_value, clip_value], so large negative entries are raised too."),
            "zero_to_c": Mutant(_value_to_zero_one_side, "the range is [-clip_value, clip_value], not "
                                "[0, clip_value]: negative gradients are legitimate."),
            "rescale": Mutant(_value_rescale, "clipping by value clamps each entry on its own; rescaling the whole "
                              "gradient so its largest entry is clip_value is a (max-)norm clip, a different method."),
            "no_none": Mutant(_value_no_none, _NONE_MISCONCEPTION),
            "no_single": Mutant(_value_no_single, _SINGLE_MISCONCEPTION),
        },
    ),
    "clip_grad_norm_": Exercise(
        name="clip_grad_norm_",
        reference=reference.clip_grad_norm_,
        make_cases=_norm_cases,
        run=_run,
        compare=_compare,
        mutants={
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
        },
    ),
    "adaptive_clip_grad_": Exercise(
        name="adaptive_clip_grad_",
        reference=reference.adaptive_clip_grad_,
        make_cases=_agc_cases,
        run=_run,
        compare=_compare,
        mutants={
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
        },
    ),
}
