"""Exercises of lesson 06: layer norm (numpy and module), residual blocks, the residual stream, and
the course's capstone.

- ``layernorm_forward(x, gamma, beta, eps=1e-5) -> (out, cache)``: statistics over the last axis.
- ``layernorm_backward(dout, cache) -> (dx, dgamma, dbeta)``: run on the cache of the *student's
  own* ``layernorm_forward`` (the one defined beside it: a cache is the student's design); only
  the three arrays come back.
- ``LayerNorm``: a ``torch.nn.Module`` class, graded on its parameters, state_dict keys, outputs
  after loading a state_dict, and gradients.
- ``residual_block(x, branch, norm, placement, branch_scale)``: pre-norm, post-norm, none.
- ``residual_stream_variance(depth, branch_gain, input_variance, placement, scaling)``.
- ``capstone_config()``: a plain-data configuration of a deep network and its training; graded by
  behaviour — the grader trains it, in its own process, on five seeds and asks for a loss below a
  threshold on at least four.

Running a case builds fresh inputs from plain data, calls the implementation and records plain
outputs; nothing here imports an answer key (the capstone's trainer is imported by ``compare``,
which runs in the grader's process or in a student's own session, never in a grading kernel).
"""

from __future__ import annotations

import functools
import json
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .base import Case, Exercise, describe_value, first_difference, raised, to_plain

#: answer keys switched off in grading kernels (see stabletrain.exercises.guard)
# torch.layer_norm (C) is not listed: nn.LayerNorm calls it through F.layer_norm, so blocking it would
# break torch's own layer in every grading kernel; F.layer_norm is watched while a check runs, and the
# static scan names any `.layer_norm` a solution cell uses.
TORCH_ANSWER_KEYS = {"torch.nn.functional": ("layer_norm",)}
REFERENCE_MODULES = ("residual", "normalization", "norm_modules")

_TOL = {"float32": (1e-4, 1e-5), "float64": (1e-9, 1e-11)}


def _arr(rng: np.random.Generator, shape: tuple[int, ...], scale: float = 1.0, loc: float = 0.0,
         dtype: str = "float64") -> np.ndarray:
    return (loc + scale * rng.normal(size=shape)).astype(dtype)


def _shape_text(a: np.ndarray) -> str:
    return f"{tuple(a.shape)} {a.dtype}"


def _compare_outputs(case: Case, got: dict[str, Any], want: dict[str, Any], where: Callable[[str], str]) -> str | None:
    if want.get("raised") is not None:
        if got.get("raised") != want["raised"]:
            came = f"raised {got['raised']}" if got.get("raised") else "returned normally"
            return f"expected {want['raised']} here, but your code {came}."
        return None
    if got.get("raised") is not None:
        return f"your code raised {got['raised']}: {got.get('message', '')}"
    strip = lambda out: {k: v for k, v in out.items() if k != "message"}  # noqa: E731
    rtol, atol = case.inputs["tol"]
    diff = first_difference(strip(got), strip(want), rtol, atol)
    if diff is None:
        return None
    path, g, w = diff
    return f"{where(path)}: expected {describe_value(w)}, got {describe_value(g)}."


def _plain_array(value: Any) -> Any:
    """An array (or tensor) as a float numpy array; anything else as to_plain describes it."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy().copy()
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return value.copy()
    return to_plain(value)


# ----------------------------------------------------------------------------------------------
# layernorm_forward


def _ln_case(label: str, group: str, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
             eps: float | None = None) -> Case:
    kwargs = {} if eps is None else {"eps": eps}
    text = f"{label} [x {_shape_text(x)}" + (f", eps={eps}" if eps is not None else "") + "]"
    return Case(text, {"x": x, "gamma": gamma, "beta": beta, "kwargs": kwargs, "tol": list(_TOL[str(x.dtype)])},
                group)


def _ln_params(rng: np.random.Generator, d: int, dtype: str = "float64") -> tuple[np.ndarray, np.ndarray]:
    return _arr(rng, (d,), 0.5, 1.0, dtype), _arr(rng, (d,), 0.5, 0.0, dtype)


def _forward_cases(level: str, seed: int) -> list[Case]:
    rng = np.random.default_rng([seed, 61])
    rows = _arr(rng, (4, 6), 1.0) * np.array([[0.5], [2.0], [10.0], [0.1]]) + np.array([[3.0], [-1.0], [0.0], [5.0]])
    cases = [
        _ln_case("each row of a 2-D batch is normalized on its own", "rows of a batch", rows, *_ln_params(rng, 6)),
        _ln_case("a 3-D input (batch, tokens, features): statistics over the last axis", "any leading shape",
                 _arr(rng, (2, 3, 5), 2.0, 1.0), *_ln_params(rng, 5)),
    ]
    if level != "hidden":
        return cases
    small = _arr(rng, (3, 8), 1e-3, 0.5)
    constant = np.full((2, 4), 3.0)
    constant[1] = _arr(rng, (4,), 1.0)
    cases += [
        _ln_case("a single row (batch of one): nothing to average over the batch", "rows of a batch",
                 _arr(rng, (1, 7), 3.0, 2.0), *_ln_params(rng, 7)),
        _ln_case("float32 input, float32 output", "rows of a batch", _arr(rng, (5, 16), 1.0, 0.0, "float32"),
                 *_ln_params(rng, 16, "float32")),
        _ln_case("a 1-D input is one row", "any leading shape", _arr(rng, (9,), 1.5), *_ln_params(rng, 9)),
        _ln_case("a 4-D input", "any leading shape", _arr(rng, (2, 2, 3, 4), 1.0, -2.0), *_ln_params(rng, 4)),
        _ln_case("rows of tiny variance: eps sits inside the square root", "eps and constant rows", small,
                 *_ln_params(rng, 8), eps=1e-5),
        _ln_case("a large eps", "eps and constant rows", _arr(rng, (3, 5), 0.3), *_ln_params(rng, 5), eps=0.1),
        _ln_case("a constant row gives exactly beta", "eps and constant rows", constant, *_ln_params(rng, 4)),
    ]
    return cases


def _run_forward(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    inputs = case.inputs
    x = inputs["x"].copy()
    out: dict[str, Any] = {"raised": None}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = fn(x, inputs["gamma"].copy(), inputs["beta"].copy(), **inputs["kwargs"])
        if not (isinstance(result, tuple) and len(result) == 2):
            out["out"] = {"kind": "other", "type": "not an (out, cache) pair"}
        else:
            out["out"] = _plain_array(result[0])
    except Exception as exc:
        out.update(raised(exc))
    out["x_unchanged"] = bool(np.array_equal(x, inputs["x"]))
    return out


def _forward_where(path: str) -> str:
    if path.startswith(".out"):
        return "the normalized output" + (" (its shape)" if "shape" in path else "")
    if path.startswith(".x_unchanged"):
        return "x after the call (the forward pass must not change its input)"
    return path.lstrip(".") or "the result"


def _compare_forward(case: Case, got: dict[str, Any], want: dict[str, Any]) -> str | None:
    problem = _compare_outputs(case, got, want, _forward_where)
    if problem is None and isinstance(got.get("out"), np.ndarray) and got["out"].dtype != want["out"].dtype:
        return f"the output's dtype: expected {want['out'].dtype} (the input's), got {got['out'].dtype}."
    return problem


# ----------------------------------------------------------------------------------------------
# layernorm_backward (on the student's own cache)


def _backward_case(label: str, group: str, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, dout: np.ndarray,
                   eps: float = 1e-5) -> Case:
    return Case(f"{label} [x {_shape_text(x)}]",
                {"x": x, "gamma": gamma, "beta": beta, "dout": dout, "eps": eps, "tol": list(_TOL[str(x.dtype)])},
                group)


def _backward_cases(level: str, seed: int) -> list[Case]:
    rng = np.random.default_rng([seed, 62])
    x2 = _arr(rng, (4, 5), 2.0, 1.0)
    x3 = _arr(rng, (2, 3, 6), 1.0, -1.0)
    cases = [
        _backward_case("a 2-D batch", "gradients of a 2-D batch", x2, *_ln_params(rng, 5), _arr(rng, (4, 5))),
        _backward_case("a 3-D input: dgamma and dbeta sum over every leading axis", "any leading shape", x3,
                       *_ln_params(rng, 6), _arr(rng, (2, 3, 6))),
    ]
    if level != "hidden":
        return cases
    x = _arr(rng, (3, 7), 1.5, 0.5)
    g, b = _ln_params(rng, 7)
    const_dout = np.repeat(_arr(rng, (3, 1)), 7, axis=1) / g  # d x_hat constant along each row
    x_hat = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    cases += [
        _backward_case("dout that only shifts every row: dx must be 0 (the mean term)", "the mean and variance terms",
                       x, g, b, const_dout),
        _backward_case("dout that only rescales every row: dx is 0 up to eps (the variance term)",
                       "the mean and variance terms", x, g, b, x_hat / g),
        _backward_case("a random dout on rows of different scales", "the mean and variance terms",
                       _arr(rng, (4, 6), 1.0) * np.array([[0.1], [1.0], [5.0], [30.0]]), *_ln_params(rng, 6),
                       _arr(rng, (4, 6))),
        _backward_case("a single row", "gradients of a 2-D batch", _arr(rng, (1, 5), 2.0), *_ln_params(rng, 5),
                       _arr(rng, (1, 5))),
        _backward_case("float32", "gradients of a 2-D batch", _arr(rng, (6, 8), 1.0, 0.0, "float32"),
                       *_ln_params(rng, 8, "float32"), _arr(rng, (6, 8), 1.0, 0.0, "float32")),
        _backward_case("a 4-D input", "any leading shape", _arr(rng, (2, 2, 2, 5), 1.0), *_ln_params(rng, 5),
                       _arr(rng, (2, 2, 2, 5))),
        _backward_case("rows of tiny variance: eps matters", "the mean and variance terms", _arr(rng, (3, 4), 1e-3),
                       *_ln_params(rng, 4), _arr(rng, (3, 4))),
    ]
    return cases


def _run_backward(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    inputs = case.inputs
    out: dict[str, Any] = {"raised": None}
    try:
        forward = getattr(fn, "__globals__", {}).get("layernorm_forward")
        if forward is None:
            raise NameError("layernorm_backward is checked with your layernorm_forward's cache: "
                            "define layernorm_forward beside it")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, cache = forward(inputs["x"].copy(), inputs["gamma"].copy(), inputs["beta"].copy(), eps=inputs["eps"])
            result = fn(inputs["dout"].copy(), cache)
        if not (isinstance(result, tuple) and len(result) == 3):
            out["grads"] = {"kind": "other", "type": "not a (dx, dgamma, dbeta) triple"}
        else:
            out["grads"] = [_plain_array(r) for r in result]
    except Exception as exc:
        out.update(raised(exc))
    return out


def _backward_where(path: str) -> str:
    names = {".grads[0]": "dx", ".grads[1]": "dgamma", ".grads[2]": "dbeta"}
    for prefix, name in names.items():
        if path.startswith(prefix):
            return name + (" (its shape)" if "shape" in path else "")
    return "the returned (dx, dgamma, dbeta)"


def _compare_backward(case: Case, got: dict[str, Any], want: dict[str, Any]) -> str | None:
    return _compare_outputs(case, got, want, _backward_where)


# ----------------------------------------------------------------------------------------------
# LayerNorm (a torch.nn.Module class)


def _module_case(label: str, group: str, args: list[Any], kwargs: dict[str, Any], x: np.ndarray,
                 load: dict[str, np.ndarray] | None, dout: np.ndarray | None) -> Case:
    """``dout=None``: the case checks parameters, state_dict and outputs, not gradients."""
    call = ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()])
    text = f"{label} [LayerNorm({call}) on x {_shape_text(x)}" + (", after load_state_dict" if load else "") + "]"
    return Case(text, {"args": args, "kwargs": kwargs, "x": x, "load": load, "dout": dout,
                       "tol": list(_TOL[str(x.dtype)])}, group)


def _module_cases(level: str, seed: int) -> list[Case]:
    rng = np.random.default_rng([seed, 63])

    def state(shape, bias=True, dtype="float32"):
        s = {"weight": _arr(rng, shape, 0.5, 1.0, dtype)}
        if bias:
            s["bias"] = _arr(rng, shape, 0.5, 0.0, dtype)
        return s

    f32 = "float32"
    cases = [
        _module_case("a fresh LayerNorm: weight (ones) and bias (zeros) of shape (D,)", "parameters and state_dict",
                     [6], {}, _arr(rng, (4, 6), 2.0, 1.0, f32), None, None),
        _module_case("outputs and gradients after loading torch's state_dict", "outputs and gradients",
                     [5], {}, _arr(rng, (3, 5), 1.0, -1.0, f32), state((5,)), _arr(rng, (3, 5), 1.0, 0.0, f32)),
    ]
    if level != "hidden":
        return cases
    cases += [
        _module_case("a 3-D input (batch, tokens, features)", "outputs and gradients", [4], {},
                     _arr(rng, (2, 3, 4), 1.0, 0.5, f32), state((4,)), _arr(rng, (2, 3, 4), 1.0, 0.0, f32)),
        _module_case("a batch of one", "outputs and gradients", [7], {}, _arr(rng, (1, 7), 3.0, 0.0, f32),
                     state((7,)), _arr(rng, (1, 7), 1.0, 0.0, f32)),
        _module_case("rows of tiny variance with eps=1e-3", "outputs and gradients", [5], {"eps": 1e-3},
                     _arr(rng, (3, 5), 0.01, 1.0, f32), state((5,)), _arr(rng, (3, 5), 1.0, 0.0, f32)),
        _module_case("float64", "outputs and gradients", [6], {"dtype": "float64"},
                     _arr(rng, (3, 6), 1.0, 0.0, "float64"), state((6,), dtype="float64"),
                     _arr(rng, (3, 6), 1.0, 0.0, "float64")),
        _module_case("normalized_shape given as a list", "parameters and state_dict", [[5]], {},
                     _arr(rng, (2, 5), 1.0, 0.0, f32), None, None),
        _module_case("normalized_shape (3, 4): statistics over the last two axes", "several normalized axes",
                     [(3, 4)], {}, _arr(rng, (2, 3, 4), 1.0, 0.5, f32), state((3, 4)),
                     _arr(rng, (2, 3, 4), 1.0, 0.0, f32)),
        _module_case("elementwise_affine=False: no parameters at all", "options", [5], {"elementwise_affine": False},
                     _arr(rng, (3, 5), 2.0, 0.0, f32), None, None),
        _module_case("bias=False: a weight and no bias", "options", [5], {"bias": False},
                     _arr(rng, (3, 5), 2.0, 0.0, f32), state((5,), bias=False), None),
    ]
    return cases


def _run_module(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    inputs = case.inputs
    out: dict[str, Any] = {"raised": None}
    kwargs = dict(inputs["kwargs"])
    if "dtype" in kwargs:
        kwargs["dtype"] = getattr(torch, kwargs["dtype"])
    args = list(inputs["args"])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = fn(*args, **kwargs)
            out["parameters"] = [[name, list(p.shape)] for name, p in module.named_parameters()]
            out["state_dict"] = [[key, list(v.shape)] for key, v in module.state_dict().items()]
            if inputs["load"] is not None:
                module.load_state_dict({k: torch.tensor(v) for k, v in inputs["load"].items()})
            else:
                out["initial"] = {name: p.detach().numpy().copy() for name, p in module.named_parameters()}
            x = torch.tensor(inputs["x"], requires_grad=True)
            y = module(x)
            out["output"] = _plain_array(y)
            if inputs["dout"] is None:
                return out
            (y * torch.tensor(inputs["dout"])).sum().backward()
            out["x_grad"] = _plain_array(x.grad)
            out["param_grads"] = {name: None if p.grad is None else p.grad.numpy().copy()
                                  for name, p in module.named_parameters()}
    except Exception as exc:
        out.update(raised(exc))
    return out


def _module_where(path: str) -> str:
    if path.startswith(".parameters"):
        return "the parameters (name and shape, in order, from named_parameters())"
    if path.startswith(".state_dict"):
        return "the state_dict keys and shapes"
    if path.startswith(".initial"):
        return "the initial value of a parameter (" + path.split(".")[2] + ")"
    if path.startswith(".output"):
        return "the module's output" + (" (its shape)" if "shape" in path else "")
    if path.startswith(".x_grad"):
        return "the gradient with respect to the input"
    if path.startswith(".param_grads"):
        return "the gradient of a parameter (" + path.split(".")[2] + ")"
    return path.lstrip(".") or "the result"


def _compare_module(case: Case, got: dict[str, Any], want: dict[str, Any]) -> str | None:
    return _compare_outputs(case, got, want, _module_where)


# ----------------------------------------------------------------------------------------------
# residual_block


def _branch_and_norm(inputs: dict[str, Any]) -> tuple[Callable, Callable]:
    """The case's branch, ``relu(z @ W1 + b1) @ W2 + b2``, and norm, an RMS norm with a gain (not a
    layer norm, so that a block that adds its own normalization, or calls the wrong one, shows).
    The biases matter: without them the branch is positively homogeneous, ``branch(a z) = a
    branch(z)`` for ``a > 0``, and scaling the branch's input could not be told from scaling its
    output."""
    w1, b1, w2, b2, gain = (torch.tensor(inputs[k]) for k in ("w1", "b1", "w2", "b2", "gain"))

    def branch(z):
        return torch.relu(z @ w1 + b1) @ w2 + b2

    def norm(z):
        return z / torch.sqrt((z * z).mean(dim=-1, keepdim=True) + 1e-6) * gain

    return branch, norm


def _block_case(label: str, group: str, rng: np.random.Generator, shape: tuple[int, ...], placement: str,
                branch_scale: float | None) -> Case:
    d = shape[-1]
    kwargs = {"placement": placement}
    if branch_scale is not None:
        kwargs["branch_scale"] = branch_scale
    x = _arr(rng, shape, 2.0, 0.5)
    inputs = {"x": x, "w1": _arr(rng, (d, d), math.sqrt(2 / d)), "b1": _arr(rng, (d,), 0.5),
              "w2": _arr(rng, (d, d), math.sqrt(1 / d)), "b2": _arr(rng, (d,), 0.5, 0.5),
              "gain": _arr(rng, (d,), 0.3, 1.5), "kwargs": kwargs, "tol": list(_TOL["float64"])}
    call = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return Case(f"{label} [x {_shape_text(x)}, {call}]", inputs, group)


def _block_cases(level: str, seed: int) -> list[Case]:
    rng = np.random.default_rng([seed, 64])
    cases = [
        _block_case("pre-norm (placement='pre')", "pre-norm", rng, (4, 6), "pre", None),
        _block_case("post-norm (placement='post')", "post-norm", rng, (4, 6), "post", None),
    ]
    if level != "hidden":
        return cases
    cases += [
        _block_case("pre-norm with the branch scaled by 1/sqrt(16)", "branch scale", rng, (3, 5), "pre", 0.25),
        _block_case("post-norm with a branch scale", "branch scale", rng, (3, 5), "post", 0.5),
        _block_case("no norm (placement='none')", "no norm", rng, (3, 5), "none", None),
        _block_case("no norm with a branch scale", "no norm", rng, (3, 5), "none", 0.3),
        _block_case("pre-norm on a 3-D input", "pre-norm", rng, (2, 3, 4), "pre", 0.7),
        _block_case("post-norm on a 3-D input", "post-norm", rng, (2, 3, 4), "post", 1.0),
    ]
    return cases


def _run_block(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    inputs = case.inputs
    branch, norm = _branch_and_norm(inputs)
    out: dict[str, Any] = {"raised": None}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out["output"] = _plain_array(fn(torch.tensor(inputs["x"]), branch, norm, **inputs["kwargs"]))
    except Exception as exc:
        out.update(raised(exc))
    return out


def _compare_block(case: Case, got: dict[str, Any], want: dict[str, Any]) -> str | None:
    return _compare_outputs(case, got, want,
                            lambda p: "the block's output" + (" (its shape)" if "shape" in p else ""))


# ----------------------------------------------------------------------------------------------
# residual_stream_variance


def _variance_case(label: str, group: str, **kwargs: Any) -> Case:
    call = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return Case(f"{label} [residual_stream_variance({call})]", {"kwargs": kwargs, "tol": [1e-9, 1e-12]}, group)


def _variance_cases(level: str, seed: int) -> list[Case]:
    rng = np.random.default_rng([seed, 65])
    gain = float(np.round(rng.uniform(0.5, 2.0), 3))
    depth = int(rng.integers(6, 13))
    cases = [
        _variance_case("pre-norm: each block adds the branch's variance", "pre-norm grows linearly",
                       depth=4, branch_gain=1.0),
        _variance_case("no norm: each block multiplies the variance", "no norm grows geometrically",
                       depth=4, branch_gain=1.0, placement="none"),
        _variance_case("GPT-2's scaling of the branch", "the fixes: 1/sqrt(L) and zero gamma",
                       depth=4, branch_gain=1.0, scaling="gpt2"),
    ]
    if level != "hidden":
        return cases
    cases += [
        _variance_case("pre-norm, another gain and input variance", "pre-norm grows linearly",
                       depth=depth, branch_gain=gain, input_variance=2.5),
        _variance_case("no norm, another gain and input variance", "no norm grows geometrically",
                       depth=depth, branch_gain=gain, input_variance=0.5, placement="none"),
        _variance_case("post-norm: the norm resets the variance to 1", "post-norm",
                       depth=depth, branch_gain=gain, input_variance=3.0, placement="post"),
        _variance_case("post-norm with GPT-2 scaling", "post-norm",
                       depth=5, branch_gain=gain, input_variance=0.2, placement="post", scaling="gpt2"),
        _variance_case("GPT-2 scaling, deeper", "the fixes: 1/sqrt(L) and zero gamma",
                       depth=4 * depth, branch_gain=gain, input_variance=1.5, scaling="gpt2"),
        _variance_case("GPT-2 scaling without a norm", "the fixes: 1/sqrt(L) and zero gamma",
                       depth=depth, branch_gain=gain, placement="none", scaling="gpt2"),
        _variance_case("zero-initialised last gamma: the branches start silent", "the fixes: 1/sqrt(L) and zero gamma",
                       depth=depth, branch_gain=gain, input_variance=1.7, scaling="zero_gamma"),
        _variance_case("a single block", "pre-norm grows linearly", depth=1, branch_gain=gain),
    ]
    return cases


def _run_variance(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    out: dict[str, Any] = {"raised": None}
    try:
        result = fn(**case.inputs["kwargs"])
        try:
            out["variance"] = np.asarray(result, dtype=np.float64).copy()
        except (TypeError, ValueError):
            out["variance"] = to_plain(result)
    except Exception as exc:
        out.update(raised(exc))
    return out


def _compare_variance(case: Case, got: dict[str, Any], want: dict[str, Any]) -> str | None:
    def where(path: str) -> str:
        if "shape" in path:
            return "the shape of the result (one variance for each of l = 0, 1, ..., depth)"
        return "the predicted variances for l = 0, 1, ..., depth"

    return _compare_outputs(case, got, want, where)


# ----------------------------------------------------------------------------------------------
# capstone_config: graded by behaviour


#: what a configuration may say (see stabletrain.lessons.residual_lab.CapstoneConfig)
CAPSTONE_KEYS = {
    "init": ("default", "kaiming", "xavier", "small"),
    "residual": (True, False),
    "norm": ("none", "layer"),
    "placement": ("pre", "post"),
    "scaling": ("none", "gpt2", "zero_gamma"),
    "clip": "None or a number > 0 (max_norm for the global gradient norm)",
}
#: the task (see capstone_verdict): STEPS steps on SEEDS seeds. A seed trains stably if the mean loss of its
#: last 10 steps is below LOSS[level], clipping acts on at most CLIP of its steps (Lesson 4: clipping is for
#: rare spikes) and no seed diverges; the visible check asks PASS["visible"] of its seeds 0-4 and a median
#: loss below VISIBLE_MEDIAN, the grader PASS["hidden"] of five of its own (the median seed), with the looser
#: LOSS["hidden"], so that passing the visible check predicts the grade. On every seed, no step may apply a
#: gradient of global norm above SPIKE (after clipping): this network's typical norm is 1.2-1.4, and without
#: a safety net its norm spikes to 4.5-21 (above 6 on 70-95 % of seeds), and the loss jumps back up with it
#: (Lesson 4; Section 7). With max_norm <= SPIKE the condition holds by construction, on every seed and CPU.
#: The rates (benchmarks/capstone_rule_06.py): the grader fails no taught configuration and passes at most
#: 0.1 % of sets of one without a safety net; a passing visible check precedes a failing grade on at most
#: 0.6 % of sets for every configuration measured (0 for Section 7's pre-norm run, 9.8 % before this rule).
CAPSTONE_STEPS, CAPSTONE_SEEDS, CAPSTONE_CLIP, CAPSTONE_SPIKE = 100, 5, 0.15, 6.0
CAPSTONE_LOSS = {"visible": 0.25, "hidden": 0.35}
CAPSTONE_PASS, CAPSTONE_VISIBLE_MEDIAN = {"visible": 4, "hidden": 3}, 0.15


def _capstone_cases(level: str, seed: int) -> list[Case]:
    seeds = list(range(CAPSTONE_SEEDS)) if level == "visible" else \
        [int(s) for s in np.random.default_rng([seed, 66]).integers(100, 2**31 - 1, CAPSTONE_SEEDS)]
    text = (f"on seeds {seeds}, at least {CAPSTONE_PASS[level]} of {CAPSTONE_SEEDS} seeds train to a loss below "
            f"{CAPSTONE_LOSS[level]} (mean of the last 10 of {CAPSTONE_STEPS} steps) with clipping on at most "
            f"{CAPSTONE_CLIP:.0%} of their steps, none diverges, and on no seed does a step apply a gradient of norm "
            f"above {CAPSTONE_SPIKE:g} (a spike that no safety net stopped)"
            + (f"; the median seed's loss is below {CAPSTONE_VISIBLE_MEDIAN}" if level == "visible" else ""))
    return [Case(text, {"seeds": seeds, "level": level}, "trains stably")]


def _run_capstone(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    out: dict[str, Any] = {"raised": None}
    try:
        config = fn()
        if not isinstance(config, dict):
            out["config"] = {"kind": "other", "type": type(config).__name__}
        else:
            plain = {}
            for key, value in config.items():
                if isinstance(value, (bool, int, float, str)) or value is None:
                    plain[str(key)] = value
                elif isinstance(value, np.generic):
                    plain[str(key)] = value.item()
                else:
                    plain[str(key)] = {"kind": "other", "type": type(value).__name__}
            out["config"] = plain
    except Exception as exc:
        out.update(raised(exc))
    return out


def capstone_problem(config: Any) -> str | None:
    """What is wrong with a configuration's form (unknown keys or values), or None."""
    if not isinstance(config, dict):
        return "capstone_config() must return a dict."
    unknown = sorted(set(config) - set(CAPSTONE_KEYS))
    if unknown:
        return f"unknown keys {unknown}; the keys are {sorted(CAPSTONE_KEYS)}."
    for key, allowed in CAPSTONE_KEYS.items():
        if key not in config:
            return f"the key {key!r} is missing."
        value = config[key]
        if key == "clip":
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or value <= 0):
                return f"clip must be None or a number > 0, got {value!r}."
        elif value not in allowed or type(value) is not type(allowed[0]):
            return f"{key} must be one of {list(allowed)}, got {value!r}."
    return None


def capstone_verdict(summary: dict[str, list], level: str) -> str | None:
    """The capstone's decision rule on a :func:`stabletrain.lessons.residual_lab.capstone_summary`:
    None if the configuration passes, else what failed, in words a student can act on.

    1. No seed may diverge.
    2. No seed may take an unchecked spike: no step applies a gradient of global norm above
       CAPSTONE_SPIKE (after clipping). Lesson 4: a run whose loss jumps back up is not stable, and
       the safety net exists to stop the step that makes it jump. This network's typical gradient
       norm is 1.2-1.4; without clipping it spikes to 4.5-21 (above 6 on 70-95 % of seeds; pre-norm
       without clipping, zero gamma without clipping alike), and the loss jumps with it (Section 7
       prints the jumps). A bound on the loss's jumps cannot tell the runs apart: the reference's
       loss jumps too (largest rise after step 30: 0.11-1.9, median 0.49; without clipping 0.19-2.4,
       median 0.77), because a clip at 5 bounds the step, not the rise of a chaotic loss. With
       ``max_norm`` <= CAPSTONE_SPIKE the condition holds by construction, on every seed and every
       CPU, so it asks every seed.
    3. A seed trains stably if its last-10 loss is below CAPSTONE_LOSS[level] and clipping acts on at
       most CAPSTONE_CLIP of its steps; ``"visible"`` (the student's seeds 0-4) asks this of 4 of the 5
       seeds, with the loss below 0.25 and a median last-10 loss below CAPSTONE_VISIBLE_MEDIAN;
       ``"hidden"`` (the grader's seeds) of 3 (the median seed), below 0.35. The visible rule is the
       stricter, so that a configuration that passes it passes the grader's seeds too; one seed may
       miss, since a taught configuration's single seeds end above 0.25 about once in 50 seed-runs on
       some CPU (the error rates: benchmarks/capstone_rule_06.py).
    """
    seeds, last10, clipped = summary["seeds"], np.array(summary["last10"]), np.array(summary["clipped"])
    diverged = [(s, k) for s, k in zip(seeds, summary["diverged_at"]) if k is not None]
    if diverged:
        where = ", ".join(f"seed {s} at step {k}" for s, k in diverged)
        return (f"the loss diverged ({where}): the updates are too large for this network — look at what makes the "
                f"stream's variance and the gradients grow (Sections 5 and 6).")
    typical = float(np.median(summary["grad_norm"]))
    spikes = [(s, k, g) for s, k, g in zip(seeds, summary["max_step_at"], summary["max_step_norm"])
              if not g <= CAPSTONE_SPIKE]
    if spikes:
        where = ", ".join(f"seed {s}: {g:.3g} at step {k}" for s, k, g in spikes)
        return (f"a gradient spike went through unclipped ({where}; the typical gradient norm is {typical:.2g}, and "
                f"no step may apply more than {CAPSTONE_SPIKE:g}): a step that large makes the loss jump back up, "
                f"as Section 7's pre-norm runs do — a run whose loss jumps is not stable (Lesson 4). That is what "
                f"the safety net is for: clip the global gradient norm at a max_norm above the typical norm and "
                f"below the spikes.")
    need, threshold = CAPSTONE_PASS[level], CAPSTONE_LOSS[level]
    clip_ok, loss_ok = clipped <= CAPSTONE_CLIP, last10 < threshold
    median_ok = level != "visible" or float(np.median(last10)) < CAPSTONE_VISIBLE_MEDIAN
    if int(np.sum(clip_ok & loss_ok)) >= need and median_ok:
        return None
    if int(np.sum(clip_ok)) < need:
        shown = ", ".join(f"{v:.0%}" for v in clipped)
        return (f"clipping acted on {shown} of the steps on seeds {seeds} (at most {CAPSTONE_CLIP:.0%} allowed on "
                f"{need} of {len(seeds)} seeds): clipping is a safety net for rare spikes (Lesson 4), not a way to "
                f"train — the median gradient norm is {typical:.2g}, so either "
                f"max_norm sits below the typical norm or the network makes the gradients large.")
    shown = ", ".join(f"{v:.3f}" for v in last10)
    return (f"the loss after {CAPSTONE_STEPS} steps (mean of the last 10) is {shown} on seeds {seeds}: expected "
            f"{need} of {len(seeds)} seeds below {threshold}"
            + (f" and the median below {CAPSTONE_VISIBLE_MEDIAN}" if level == "visible" else "")
            + " — the network trains too slowly or not at all "
            f"(Sections 5 and 7 show which diagnostics tell why).")


@functools.lru_cache(maxsize=64)
def _capstone_summary(config_json: str, seeds: tuple[int, ...]) -> str:
    from stabletrain.lessons.residual_lab import CapstoneConfig, capstone_summary  # grader side only

    return json.dumps(capstone_summary(CapstoneConfig(**json.loads(config_json)), seeds=seeds, steps=CAPSTONE_STEPS))


def _compare_capstone(case: Case, got: dict[str, Any], want: dict[str, Any]) -> str | None:
    if got.get("raised") is not None:
        return f"capstone_config() raised {got['raised']}: {got.get('message', '')}"
    config = got.get("config")
    if isinstance(want.get("config"), dict) and config == want["config"]:
        return None  # the same configuration as the one compared against (the reference, a known mistake)
    problem = capstone_problem(config)
    if problem:
        return problem
    summary = json.loads(_capstone_summary(json.dumps(config, sort_keys=True), tuple(case.inputs["seeds"])))
    return capstone_verdict(summary, case.inputs.get("level", "hidden"))


# ----------------------------------------------------------------------------------------------

_M = f"{__name__}_mutants"

EXERCISES: dict[str, Exercise] = {
    "layernorm_forward": Exercise("layernorm_forward", "stabletrain.normalization:layernorm_forward",
                                  _forward_cases, _run_forward, _compare_forward, f"{_M}:FORWARD"),
    "layernorm_backward": Exercise("layernorm_backward", "stabletrain.normalization:layernorm_backward",
                                   _backward_cases, _run_backward, _compare_backward, f"{_M}:BACKWARD"),
    "LayerNorm": Exercise("LayerNorm", "stabletrain.norm_modules:LayerNorm",
                          _module_cases, _run_module, _compare_module, f"{_M}:MODULE"),
    "residual_block": Exercise("residual_block", "stabletrain.residual:residual_block",
                               _block_cases, _run_block, _compare_block, f"{_M}:BLOCK"),
    "residual_stream_variance": Exercise("residual_stream_variance", "stabletrain.residual:residual_stream_variance",
                                         _variance_cases, _run_variance, _compare_variance, f"{_M}:VARIANCE"),
    "capstone_config": Exercise("capstone_config", "stabletrain.residual:capstone_config",
                                _capstone_cases, _run_capstone, _compare_capstone, f"{_M}:CAPSTONE"),
}
