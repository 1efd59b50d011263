"""Exercises of lesson 04: ``clip_grad_value_``, ``clip_grad_norm_``, ``adaptive_clip_grad_``,
``train_step`` (clipping in a real training loop) and ``pick_max_norm``.

A clipping case describes parameters as plain data — for each one its data and its gradient (or
None) — plus how they are passed (a list, a tuple, a single tensor, a generator) and the
arguments. Running a case builds fresh tensors, calls the implementation and records the
gradients afterwards, whether each ``p.grad`` is still the tensor it was (clipping works in
place), the returned value and any exception.

A ``train_step`` case describes a small linear model, an optimizer, micro-batches, max_norm and
whether a ``torch.amp.GradScaler`` (CPU) is used; the case passes a recording ``clip`` function,
so the grade sees *when* clipping happened (the gradient norm it was called on, and how often),
not only the parameters afterwards.

Every case belongs to a group (``Case.group``): a graded cell earns its points in proportion to
the groups whose cases all pass, and a function that does nothing fails every group.
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
    originals = [p.grad for p in params]
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
    # in place: p.grad must still be the tensor the caller (and e.g. DDP's buckets) holds
    out["in_place"] = [p.grad is g for p, g in zip(params, originals)]
    return out


def _case(label: str, params: list[dict[str, Any]], args: list[Any], kwargs: dict[str, Any] | None = None, *,
          container: str = "list", graded_return: bool = False, tol: tuple[float, float] = (1e-5, 1e-7),
          group: str = "") -> Case:
    shapes = ", ".join(str(tuple(p["data"].shape)) for p in params)
    text = f"{label} [parameters of shapes {shapes} passed as a {container}"
    text += "".join(f", {a!r}" for a in args) + "".join(f", {k}={v!r}" for k, v in (kwargs or {}).items()) + "]"
    return Case(text, {"params": params, "args": list(args), "kwargs": dict(kwargs or {}), "container": container,
                       "graded_return": graded_return, "tol": list(tol)}, group)


# ----------------------------------------------------------------------------------------------
# Comparing


def _where(path: str, case: Case) -> str:
    if path.startswith(".grads["):
        i = int(path[len(".grads["):].split("]")[0])
        shape = tuple(case.inputs["params"][i]["data"].shape)
        return f"the gradient of parameter {i} (shape {shape}) afterwards"
    if path.startswith(".in_place"):
        i = int(path[len(".in_place["):].split("]")[0])
        return (f"whether p.grad of parameter {i} is still the same tensor object afterwards (clip it in place, "
                "e.g. p.grad.clamp_(...) or p.grad.mul_(...); do not assign a new tensor to p.grad)")
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
            out["returned"] = {k: ("any" if k == "dtype" else v) for k, v in out["returned"].items()}
    rtol, atol = case.inputs["tol"]
    diff = first_difference(got_, want_, rtol, atol)
    if diff is None:
        return None
    path, g, w = diff
    return f"{_where(path, case)}: expected {describe_value(w)}, got {describe_value(g)}."


# ----------------------------------------------------------------------------------------------
# clip_grad_value_

_V_CLAMP = "clamps every entry into [-clip_value, clip_value], in place"
_V_CONTAINERS = "parameters as a generator or a single tensor, and .grad that is None"
_V_SPECIAL = "NaN, inf, float64 and clip_value = 0"


def _explicit(data: list, grad: list | None, dtype: str = "float32") -> dict[str, Any]:
    return {"data": np.array(data, dtype=dtype), "grad": None if grad is None else np.array(grad, dtype=dtype)}


def _value_cases(level: str, seed: int) -> list[Case]:
    rng = np.random.default_rng([seed, 1])
    cases = [
        _case("worked example: [-3, 0.5, 2] clamped into [-1, 1] is [-1, 0.5, 1]",
              [_explicit([0.0, 0.0, 0.0], [-3.0, 0.5, 2.0])], [1.0], group=_V_CLAMP),
        _case("gradients beyond ±clip_value are clamped", [_param(rng, (4, 3), 2.0), _param(rng, (3,), 2.0)], [0.5],
              group=_V_CLAMP),
        _case("gradients inside the range are unchanged", [_param(rng, (5,), 0.01)], [1.0], group=_V_CLAMP),
        _case("a generator, with a parameter whose .grad is None",
              [_param(rng, (2, 3), 2.0), _param(rng, (3,), grad="none"), _param(rng, (4,), 2.0)], [0.5],
              container="generator", group=_V_CONTAINERS),
    ]
    if level == "hidden":
        nan_grad = _param(rng, (6,), 3.0)
        nan_grad["grad"][[1, 4]] = [np.nan, np.inf]
        cases += [
            _case("a parameter without gradient is skipped", [_param(rng, (2, 2), 3.0), _param(rng, (3,), grad="none")],
                  [1.0], group=_V_CONTAINERS),
            _case("a single tensor", [_param(rng, (3, 3), 2.0)], [0.1], container="single", group=_V_CONTAINERS),
            _case("a generator", [_param(rng, (2, 5), 2.0), _param(rng, (4,), 2.0)], [0.3], container="generator",
                  group=_V_CONTAINERS),
            _case("NaN stays NaN, inf is clamped", [nan_grad], [1.0], group=_V_SPECIAL),
            _case("float64 conv weights", [_param(rng, (2, 3, 3, 3), 1.0, "float64")], [0.25], tol=(1e-12, 0.0),
                  group=_V_SPECIAL),
            _case("clip_value=0 zeroes the gradients", [_param(rng, (3, 2))], [0.0], group=_V_SPECIAL),
        ]
    return cases


# ----------------------------------------------------------------------------------------------
# clip_grad_norm_

_N_GLOBAL = "one global norm, one coefficient for every gradient, the norm before clipping returned"
_N_EPS = "the 1e-6 in max_norm / (total + 1e-6)"
_N_ORDER = "norm_type: 1, 3, inf and 'inf'"
_N_CONTAINERS = "generators, single tensors, .grad that is None, mixed dtypes"
_N_NONFINITE = "NaN and inf gradients, error_if_nonfinite, max_norm = 0"


def _norm_cases(level: str, seed: int) -> list[Case]:
    rng = np.random.default_rng([seed, 2])
    ret = {"graded_return": True}
    exact = _param(rng, (3, 4), 1.0, "float64")
    exact["grad"] *= 5.0 / np.linalg.norm(exact["grad"])
    f64 = (1e-9, 0.0)
    cases = [
        _case("worked example: gradients [3, 0] and [4] have global norm 5; max_norm 1 scales both by 1/5 "
              "to [0.6, 0] and [0.8], and 5 is returned",
              [_explicit([0.0, 0.0], [3.0, 0.0]), _explicit([0.0], [4.0])], [1.0], group=_N_GLOBAL, **ret),
        _case("a large global norm is clipped to max_norm",
              [_param(rng, (4, 3), 1.0), _param(rng, (3,), 1.0)], [1.0], group=_N_GLOBAL, **ret),
        _case("a small global norm leaves the gradients unchanged",
              [_param(rng, (6,), 0.01), _param(rng, (2, 2), 0.01)], [10.0], group=_N_GLOBAL, **ret),
        _case("total norm exactly equal to max_norm is still scaled by max_norm / (total + 1e-6)",
              [exact], [5.0], tol=f64, group=_N_EPS, **ret),
        _case("the 1-norm", [_param(rng, (3, 3), 1.0), _param(rng, (5,), 1.0)], [2.0], {"norm_type": 1.0},
              group=_N_ORDER, **ret),
        _case("a generator, with a parameter whose .grad is None",
              [_param(rng, (3, 2), 2.0), _param(rng, (4,), grad="none"), _param(rng, (2,), 2.0)], [0.5],
              container="generator", group=_N_CONTAINERS, **ret),
    ]
    if level != "hidden":
        return cases
    nonfinite = _param(rng, (5,), 1.0)
    nonfinite["grad"][2] = np.inf
    with_nan = _param(rng, (4,), 1.0)
    with_nan["grad"][0] = np.nan
    cases += [
        _case("several parameters, each below max_norm but not together",
              [_param(rng, (8,), 0.3), _param(rng, (8,), 0.3), _param(rng, (8,), 0.3)], [1.0], group=_N_GLOBAL, **ret),
        _case("tiny float64 gradients: the 1e-6 in max_norm / (total + 1e-6) matters",
              [_param(rng, (3,), 1e-5, "float64"), _param(rng, (2, 2), 1e-5, "float64")], [1e-6], tol=f64,
              group=_N_EPS, **ret),
        _case("the inf-norm", [_param(rng, (3, 3), 2.0), _param(rng, (2,), 2.0)], [0.5], {"norm_type": math.inf},
              group=_N_ORDER, **ret),
        _case("the inf-norm given as the string 'inf'", [_param(rng, (4,), 2.0), _param(rng, (2, 2), 2.0)], [0.5],
              {"norm_type": "inf"}, group=_N_ORDER, **ret),
        _case("a 3-norm on conv-shaped gradients", [_param(rng, (2, 3, 3, 3), 1.0), _param(rng, (2,), 1.0)], [1.0],
              {"norm_type": 3.0}, group=_N_ORDER, **ret),
        _case("a parameter without gradient is skipped",
              [_param(rng, (3, 2), 2.0), _param(rng, (4,), grad="none"), _param(rng, (2,), 2.0)], [0.5],
              group=_N_CONTAINERS, **ret),
        _case("no gradients at all: return tensor(0.)", [_param(rng, (3,), grad="none")], [1.0],
              group=_N_CONTAINERS, **ret),
        _case("a single tensor", [_param(rng, (4, 4), 1.0)], [0.5], container="single", group=_N_CONTAINERS, **ret),
        _case("a generator", [_param(rng, (3, 3), 1.0), _param(rng, (3,), 1.0)], [0.5], container="generator",
              group=_N_CONTAINERS, **ret),
        _case("mixed float32 and float64 gradients",
              [_param(rng, (3, 3), 1.0, "float32"), _param(rng, (4,), 1.0, "float64")], [0.5],
              group=_N_CONTAINERS, **ret),
        _case("max_norm=0 zeroes the gradients", [_param(rng, (3, 2), 1.0)], [0.0], group=_N_NONFINITE, **ret),
        _case("an inf gradient without error_if_nonfinite", [nonfinite, _param(rng, (2,), 1.0)], [1.0],
              group=_N_NONFINITE, **ret),
        _case("a NaN gradient without error_if_nonfinite", [with_nan, _param(rng, (3,), 1.0)], [1.0],
              group=_N_NONFINITE, **ret),
        _case("a NaN gradient with error_if_nonfinite=True: raise before changing anything",
              [with_nan, _param(rng, (3,), 1.0)], [1.0], {"error_if_nonfinite": True}, group=_N_NONFINITE, **ret),
    ]
    return cases


# ----------------------------------------------------------------------------------------------
# adaptive_clip_grad_

_A_UNITS = "each unit (row, filter) against its own weights, with keepdim so shapes broadcast"
_A_EPS = "the eps floor for units whose weights are (near) zero"
_A_CONTAINERS = "generators, single tensors, .grad that is None"
_A_MORE = "conv filters, float64, default arguments"


def _agc_cases(level: str, seed: int) -> list[Case]:
    rng = np.random.default_rng([seed, 3])

    def layer(shape, grad_scale, dtype="float32", grad="normal"):
        p = _param(rng, shape, grad_scale, dtype, grad)
        p["data"] = (p["data"] * 0.1).astype(dtype)
        return p

    zero = layer((4, 3), 1e-3)
    zero["data"][:] = 0.0
    cases = [
        _case("worked example: rows of W with norms 5, 1, 1 and gradient norms 0.01, 0.5, 0.05 at λ = 0.1 — only "
              "row 1 is above its limit 0.1 and becomes [0.06, 0.08]",
              [_explicit([[3.0, 4.0], [0.6, 0.8], [0.0, 1.0]], [[0.0, 0.01], [0.3, 0.4], [0.05, 0.0]])], [],
              {"clip_factor": 0.1}, group=_A_UNITS),
        _case("rows whose gradient is large relative to their weights are clipped, others kept",
              [layer((6, 4), 0.01)], [], {"clip_factor": 0.05}, group=_A_UNITS),
        _case("a weight and its bias", [layer((3, 5), 0.01), layer((3,), 0.5)], [], {"clip_factor": 0.1},
              group=_A_UNITS),
        _case("zero weights: the unit norm is floored at eps", [zero], [], {"clip_factor": 0.5, "eps": 1e-3},
              group=_A_EPS),
        _case("a generator, with a parameter whose .grad is None",
              [layer((3, 2), 0.1), layer((2, 2), grad_scale=0, grad="none"), layer((3,), 0.1)], [],
              {"clip_factor": 0.01}, container="generator", group=_A_CONTAINERS),
    ]
    if level != "hidden":
        return cases
    small = layer((5, 3), 1e-5)
    small["data"][1:3] = 1e-5
    small["grad"][1:3] = 0.01
    mixed = layer((5, 4), 0.001)
    mixed["grad"][0] *= 100.0
    cases += [
        _case("tiny weights in some rows: floored at eps", [small], [], {"clip_factor": 0.1, "eps": 1e-3},
              group=_A_EPS),
        _case("conv filters are units over (in, kh, kw)", [layer((4, 2, 3, 3), 0.05)], [], {"clip_factor": 0.02},
              group=_A_MORE),
        _case("only the unit with the large gradient is clipped", [mixed], [], {"clip_factor": 0.01}, group=_A_UNITS),
        _case("a parameter without gradient is skipped", [layer((3, 3), 0.1), layer((3,), grad_scale=0, grad="none")],
              [], {"clip_factor": 0.01}, group=_A_CONTAINERS),
        _case("a single tensor", [layer((4, 4), 0.1)], [], {"clip_factor": 0.01}, container="single",
              group=_A_CONTAINERS),
        _case("a generator", [layer((3, 2), 0.1), layer((3,), 0.1)], [], {"clip_factor": 0.01}, container="generator",
              group=_A_CONTAINERS),
        _case("float64", [layer((5, 3), 0.05, "float64")], [], {"clip_factor": 0.02}, tol=(1e-10, 0.0), group=_A_MORE),
        _case("default clip_factor and eps", [layer((6, 5), 0.01)], [], group=_A_MORE),
    ]
    return cases


# ----------------------------------------------------------------------------------------------
# train_step: clipping in the right place of a training loop

_T_PLAIN = "one batch: zero_grad, backward, clip, step"
_T_ACCUM = "gradient accumulation: clip once, after the last micro-batch"
_T_AMP = "mixed precision: scaler.unscale_ before clipping, scaler.step and update after"


def _step_case(label: str, rng: np.random.Generator, group: str, *, micro: int = 1, max_norm: float = 0.5,
               scale: float | None = None, momentum: float = 0.0, overflow: bool = False) -> Case:
    n_in, n_out, n = 4, 3, 6
    inputs = {
        "weight": (0.5 * rng.normal(size=(n_out, n_in))).astype("float32"),
        "bias": (0.1 * rng.normal(size=(n_out,))).astype("float32"),
        "stale_grad": rng.normal(size=(n_out, n_in)).astype("float32"),  # left over from the previous step
        "batches": [((rng.normal(size=(n, n_in))).astype("float32"), (2.0 * rng.normal(size=(n, n_out))).astype("float32"))
                    for _ in range(micro)],
        "max_norm": max_norm, "lr": 0.1, "momentum": momentum, "scale": scale, "overflow": overflow,
    }
    shape = f"[{micro} micro-batch{'es' if micro > 1 else ''}, max_norm={max_norm:g}"
    shape += f", GradScaler(init_scale={scale:g})" if scale else ""
    shape += f", SGD(momentum={momentum:g})" if momentum else ""
    return Case(f"{label} {shape}]", inputs, group)


def _step_cases(level: str, seed: int) -> list[Case]:
    rng = np.random.default_rng([seed, 4])
    cases = [
        _step_case("one batch whose gradient is clipped", rng, _T_PLAIN),
        _step_case("three micro-batches", rng, _T_ACCUM, micro=3),
        _step_case("a loss scale of 1024", rng, _T_AMP, scale=1024.0),
    ]
    if level == "hidden":
        cases += [
            _step_case("one batch, SGD with momentum", rng, _T_PLAIN, momentum=0.9, max_norm=0.3),
            _step_case("one batch, a threshold above the gradient norm", rng, _T_PLAIN, max_norm=1e3),
            _step_case("four micro-batches", rng, _T_ACCUM, micro=4, max_norm=0.2),
            _step_case("two micro-batches and a loss scale", rng, _T_ACCUM, micro=2, scale=256.0),
            _step_case("a loss scale of 65536", rng, _T_AMP, scale=65536.0, max_norm=0.1),
            _step_case("an overflow (inf loss): the scaler skips the step and halves the scale", rng, _T_AMP,
                       scale=1024.0, overflow=True),
        ]
    return cases


def _recording_clip(seen: list[float]) -> Callable[..., torch.Tensor]:
    """A norm-clipping function (torch's formula) that records the global norm it was called on."""

    def clip(parameters, max_norm):
        params = [parameters] if isinstance(parameters, torch.Tensor) else list(parameters)
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            seen.append(0.0)
            return torch.tensor(0.0)
        total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        seen.append(float(total))
        coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        for g in grads:
            g.mul_(coef)
        return total

    return clip


class _SGD:
    """``torch.optim.SGD`` (momentum, no dampening or weight decay) in a few lines of Python.

    The cases use it instead of torch's class, whose first ``step()`` in a fresh process costs
    seconds of one-time setup — more than a grading cell's time limit on a loaded machine. Same
    interface for what a training step touches: ``param_groups``, ``state``, ``zero_grad`` and
    ``step``; ``torch.amp.GradScaler`` works with it.
    """

    def __init__(self, params: list[torch.Tensor], lr: float, momentum: float = 0.0) -> None:
        self.param_groups = [{"params": params, "lr": lr, "momentum": momentum}]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.param_groups[0]["params"]:
            if p.grad is not None:
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self, closure=None):
        group = self.param_groups[0]
        for p in group["params"]:
            if p.grad is None:
                continue
            g = p.grad
            if group["momentum"]:
                state = self.state.setdefault(p, {})
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = g.clone()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(g)
                g = state["momentum_buffer"]
            p.add_(g, alpha=-group["lr"])
        return None


def _step_run(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    inp = case.inputs
    model = torch.nn.Linear(inp["weight"].shape[1], inp["weight"].shape[0])
    with torch.no_grad():
        model.weight.copy_(torch.tensor(inp["weight"]))
        model.bias.copy_(torch.tensor(inp["bias"]))
    model.weight.grad = torch.tensor(inp["stale_grad"])
    optimizer = _SGD(list(model.parameters()), lr=inp["lr"], momentum=inp["momentum"])
    scaler = torch.amp.GradScaler("cpu", init_scale=inp["scale"]) if inp["scale"] else None
    batches = [(torch.tensor(x), torch.tensor(y)) for x, y in inp["batches"]]
    if inp["overflow"]:
        batches[-1] = (batches[-1][0] * math.inf, batches[-1][1])
    seen: list[float] = []
    out: dict[str, Any] = {"raised": None}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            returned = fn(model, optimizer, batches, inp["max_norm"], _recording_clip(seen), scaler=scaler)
        try:
            out["returned"] = float(returned)
        except (TypeError, ValueError, RuntimeError):
            out["returned"] = to_plain(returned)
    except Exception as exc:
        out.update(raised(exc))
    out["weight"] = model.weight.detach().numpy().copy()
    out["bias"] = model.bias.detach().numpy().copy()
    out["clip_calls"] = len(seen)
    out["norm_seen_by_clip"] = np.array(seen, dtype=np.float64)
    out["scale_after"] = None if scaler is None else float(scaler.get_scale())
    return out


_STEP_WHERE = {
    ".weight": "the weights after the step",
    ".bias": "the bias after the step",
    ".clip_calls": "how many times clip was called (once per optimizer step)",
    ".norm_seen_by_clip": "the gradient norm clip was called on (clip the full, unscaled gradient of the step)",
    ".scale_after": "the GradScaler's scale after the step (scaler.update() adjusts it)",
    ".returned": "the returned value (what clip returned: the norm before clipping)",
}


def _step_compare(case: Case, got: dict[str, Any], want: dict[str, Any]) -> str | None:
    if got.get("raised") is not None and want.get("raised") is None:
        return f"your function raised {got['raised']}: {got.get('message', '')}"
    got_ = {k: v for k, v in got.items() if k != "message"}
    want_ = {k: v for k, v in want.items() if k != "message"}
    diff = first_difference(got_, want_, 1e-4, 1e-6)
    if diff is None:
        return None
    path, g, w = diff
    where = next((text for key, text in _STEP_WHERE.items() if path.startswith(key)), path.lstrip("."))
    return f"{where}: expected {describe_value(w)}, got {describe_value(g)}."


# ----------------------------------------------------------------------------------------------
# pick_max_norm: a threshold from the gradient norms of a warm-up run

_P_QUANTILE = "the q-quantile of the logged norms (linear interpolation)"
_P_NONFINITE = "steps whose norm is NaN or inf (overflows) are left out"
_P_INPUTS = "lists, arrays and tensors; no finite norm at all raises ValueError"


def _pick_cases(level: str, seed: int) -> list[Case]:
    rng = np.random.default_rng([seed, 5])

    def norms(n, spikes=0, nonfinite=0):
        x = np.exp(rng.normal(0.0, 0.4, size=n))
        x[rng.choice(n, spikes, replace=False)] *= 50.0
        out = [float(v) for v in x]
        for i in rng.choice(n, nonfinite, replace=False):
            out[int(i)] = [math.nan, math.inf][int(i) % 2]
        return out

    def case(label, values, group, kind="list", **kwargs):
        text = f"{label} [{len(values)} logged norms as a {kind}" + "".join(f", {k}={v}" for k, v in kwargs.items())
        return Case(text + "]", {"norms": values, "kind": kind, "kwargs": kwargs}, group)

    cases = [
        case("worked example: the 0.9-quantile of 1, 2, ..., 11 is 10.0", [float(v) for v in range(1, 12)],
             _P_QUANTILE),
        case("a warm-up run with a few spikes", norms(200, spikes=4), _P_QUANTILE),
        case("a NaN and an inf among the norms", [1.0, 2.0, math.nan, 3.0, math.inf, 4.0], _P_NONFINITE),
    ]
    if level == "hidden":
        cases += [
            case("quantile=0.5 (the median)", norms(51), _P_QUANTILE, quantile=0.5),
            case("quantile=0.99", norms(300, spikes=6), _P_QUANTILE, quantile=0.99),
            case("overflowed steps in a long run", norms(120, spikes=2, nonfinite=5), _P_NONFINITE),
            case("a float32 tensor", norms(40), _P_INPUTS, kind="tensor"),
            case("a numpy array", norms(40, spikes=1), _P_INPUTS, kind="array"),
            case("no finite norm at all", [math.nan, math.inf, math.nan], _P_INPUTS),
        ]
    return cases


def _pick_run(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    values = case.inputs["norms"]
    kind = case.inputs["kind"]
    arg = torch.tensor(values, dtype=torch.float32) if kind == "tensor" else (
        np.array(values) if kind == "array" else list(values))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            returned = fn(arg, **case.inputs["kwargs"])
    except Exception as exc:
        return raised(exc)
    try:
        return {"raised": None, "returned": float(returned)}
    except (TypeError, ValueError, RuntimeError):
        return {"raised": None, "returned": to_plain(returned)}


def _pick_compare(case: Case, got: dict[str, Any], want: dict[str, Any]) -> str | None:
    if want["raised"] is not None:
        if got.get("raised") != want["raised"]:
            came = f"raised {got['raised']}" if got.get("raised") else f"returned {got.get('returned')!r}"
            return f"expected {want['raised']} (there is no finite norm to take a quantile of), but your function {came}."
        return None
    if got.get("raised") is not None:
        return f"your function raised {got['raised']}: {got.get('message', '')}"
    tol = 1e-5 if case.inputs["kind"] == "tensor" else 1e-9
    if first_difference(got.get("returned"), want["returned"], tol, 0.0) is None:
        return None
    return f"the returned max_norm: expected {want['returned']!r}, got {describe_value(got.get('returned'))}."


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
    "train_step": Exercise(
        name="train_step",
        reference="stabletrain.clipping:train_step",
        make_cases=_step_cases,
        run=_step_run,
        compare=_step_compare,
        mutants=f"{__name__}_mutants:STEP",
    ),
    "pick_max_norm": Exercise(
        name="pick_max_norm",
        reference="stabletrain.clipping:pick_max_norm",
        make_cases=_pick_cases,
        run=_pick_run,
        compare=_pick_compare,
        mutants=f"{__name__}_mutants:PICK",
    ),
}
