"""Exercises of lesson 05: standardization, batch norm forward/backward, ``BatchNorm1d``, folding, a loop.

Every case is plain data chosen by the grader; running a case builds fresh arrays, tensors or
modules from it, calls the implementation and records what came back (and what it did to the
buffers it was given) as plain arrays.

Some exercises come in pairs whose hand-over is the student's own design: ``standardize_apply``
gets the ``stats`` of the student's ``standardize_fit``, and ``batchnorm_backward`` (and
``batchnorm_backward_alt``) get the ``cache`` of the student's ``batchnorm_forward``; the module
exercises build the student's ``BatchNorm1d``. The runner finds that partner next to the checked
function — as an attribute of the same name (``fn.batchnorm_forward = ...``, how the project's
tests pair functions) or in the namespace where the function was defined (the notebook). Only
the arrays the pair computes (``dx``, ``dgamma``, ``dbeta``) ever reach the grader; the cache and
the stats never leave the student's kernel.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..threads import single_thread
from .base import Case, Exercise, describe_value, first_difference, raised
from .rng import seed_cpu

#: answer keys switched off in grading kernels (see exercises/guard.py): torch's own batch norm
#: and its fusion helpers, which fold batch norm into a Linear or a conv.
# torch.batch_norm (C) is not listed: torch's own BatchNorm layers call it through F.batch_norm, so
# blocking it would break them in every grading kernel; F.batch_norm is watched while a check runs,
# and the static scan names any `.batch_norm` a solution cell uses.
TORCH_ANSWER_KEYS = {
    "torch.nn.functional": ("batch_norm",),
    "torch.nn.utils.fusion": ("fuse_linear_bn_eval", "fuse_linear_bn_weights", "fuse_conv_bn_eval",
                              "fuse_conv_bn_weights"),
}
REFERENCE_MODULES = ("normalization", "norm_modules")

# ----------------------------------------------------------------------------------------------
# Shared helpers


def _partner(fn: Callable[..., Any], name: str) -> Any:
    """The student's ``name`` that goes with ``fn``: an attribute of ``fn``, else a global of the
    namespace ``fn`` was defined in, else of ``__main__`` (a notebook)."""
    found = getattr(fn, name, None)
    if found is None:
        found = getattr(fn, "__globals__", {}).get(name)
    if found is None:
        found = getattr(sys.modules.get("__main__"), name, None)
    if found is None:
        raise NameError(f"{name} is not defined: run its cell first (this check uses your {name})")
    return found


def _array(value: Any) -> Any:
    """A returned value as a float64 array, or a description of what it was instead."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, (np.ndarray, np.generic, float, int)) and not isinstance(value, bool):
        array = np.asarray(value)
        if array.dtype.kind in "biuf":
            return array.astype(np.float64)
    return {"kind": "other", "type": type(value).__name__}


def _tensor(value: Any) -> Any:
    return None if value is None else _array(value)


def _where(path: str) -> str:
    path = path.lstrip(".")
    return path.replace("[", " [").replace(".", " → ") or "the result"


def _compare(case: Case, got: dict[str, Any], want: dict[str, Any]) -> str | None:
    """Exceptions first (raised where the reference did not, or not where it did), then values."""
    if want.get("raised") is not None:
        if got.get("raised") != want["raised"]:
            came = f"raised {got['raised']}" if got.get("raised") else "returned normally"
            return f"expected {want['raised']} (as the reference raises here), but your code {came}."
        return None
    if got.get("raised") is not None:
        return f"your code raised {got['raised']}: {got.get('message', '')}"
    graded = case.inputs.get("graded")
    keep = (lambda k: k in graded) if graded else (lambda k: k not in ("raised", "message"))
    got_ = {k: v for k, v in got.items() if keep(k)}
    want_ = {k: v for k, v in want.items() if keep(k)}
    rtol, atol = case.inputs["tol"]
    diff = first_difference(got_, want_, rtol, atol)
    if diff is None:
        return None
    path, g, w = diff
    hint = case.inputs.get("hint", "")
    return f"{_where(path)}: expected {describe_value(w)}, got {describe_value(g)}.{hint}"


def _quietly(call: Callable[[], Any]) -> Any:
    """Call with warnings silenced (they are not wrong answers) and one torch thread: the tensors
    are tiny, and two threads on a busy machine make every small op many times slower."""
    with single_thread(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return call()


# ----------------------------------------------------------------------------------------------
# standardize_fit / standardize_apply


def _run_standardize(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    inputs = case.inputs
    try:
        fit = _partner(fn, "standardize_fit")
        x_train, x_test = inputs["x_train"].copy(), inputs["x_test"].copy()
        stats = _quietly(lambda: fit(x_train))
        out = {"train": _array(_quietly(lambda: fn(x_train, stats))),
               "test": _array(_quietly(lambda: fn(x_test, stats)))}
        out["train_input_after"] = _array(x_train)
        return {"raised": None, **out}
    except Exception as exc:
        return raised(exc)


def _standardize_cases(level: str, seed: int) -> list[Case]:
    rng = np.random.default_rng([seed, 51])
    tol = (1e-7, 1e-9)

    def data(n, m, d, spread=10.0):
        scales = np.exp(rng.uniform(-np.log(spread), np.log(spread), size=d))
        offsets = rng.uniform(-20, 20, size=d)
        return (rng.normal(size=(n, d)) * scales + offsets, rng.normal(size=(m, d)) * scales + offsets * 1.1)

    def case(label, x_train, x_test, group, graded):
        text = f"{label} [x_train {x_train.shape}, x_test {x_test.shape}]"
        return Case(text, {"x_train": x_train, "x_test": x_test, "graded": graded, "tol": tol}, group)

    worked_train = np.array([[1.0, 10.0], [3.0, 30.0], [5.0, 20.0]])
    worked_test = np.array([[3.0, 0.0]])
    a_train, a_test = data(50, 20, 4)
    cases = [
        case("worked example: x_train = [[1, 10], [3, 30], [5, 20]] has means [3, 20] and biased stds "
             "[1.633, 8.165]", worked_train, worked_test, "the training set gets mean 0 and variance 1", ["train"]),
        case("features on very different scales", a_train, a_test, "the training set gets mean 0 and variance 1",
             ["train"]),
        case("the test set is transformed with the TRAINING mean and std", a_train, a_test,
             "the test set uses the training statistics", ["test"]),
    ]
    if level != "hidden":
        return cases
    b_train, b_test = data(7, 1, 3)
    c_train, c_test = data(40, 15, 5)
    c_train[:, 2], c_test[:, 2] = 2.5, rng.normal(size=15)  # constant in training, not in the test set
    d_train, d_test = data(30, 10, 6, spread=1e3)
    d_train[:, [0, 4]] = 0.0
    d_test[:, [0, 4]] = 1.0
    cases += [
        case("a test set of one sample", b_train, b_test, "the test set uses the training statistics", ["test"]),
        case("a test set shifted away from the training set", d_train, d_test + 5.0,
             "the test set uses the training statistics", ["test"]),
        case("a feature constant on the training set is only centred (scale 1), in both sets", c_train, c_test,
             "constant features: centred, never divided by zero", ["train", "test"]),
        case("two all-zero training features and features spread over 6 orders of magnitude", d_train, d_test,
             "constant features: centred, never divided by zero", ["train", "test"]),
        case("the training array passed in is left unchanged", a_train, a_test,
             "the training set gets mean 0 and variance 1", ["train", "train_input_after"]),
    ]
    return cases


# ----------------------------------------------------------------------------------------------
# batchnorm_forward


def _run_forward(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    inputs = case.inputs
    running_mean, running_var = inputs["running_mean"].copy(), inputs["running_var"].copy()
    steps = []
    try:
        for call in inputs["calls"]:
            x = call["x"].copy()
            result = _quietly(lambda: fn(x, inputs["gamma"].copy(), inputs["beta"].copy(), running_mean, running_var,
                                         **call["kwargs"]))
            out = result[0] if isinstance(result, tuple) and len(result) == 2 else result
            steps.append({"out": _array(out), "running_mean": running_mean.copy(), "running_var": running_var.copy()})
    except Exception as exc:
        return {**raised(exc), "steps": steps}
    return {"raised": None, "steps": steps}


def _compare_forward(case: Case, got: dict[str, Any], want: dict[str, Any]) -> str | None:
    graded = case.inputs["graded"]
    pick = lambda out: {**out, "steps": [{k: v for k, v in s.items() if k in graded} for s in out.get("steps", [])]}  # noqa: E731
    if want.get("raised") is not None:
        return None if got.get("raised") == want["raised"] else f"expected {want['raised']}, got no such error."
    if got.get("raised") is not None:
        return f"your code raised {got['raised']}: {got.get('message', '')}"
    rtol, atol = case.inputs["tol"]
    diff = first_difference(pick(got)["steps"], pick(want)["steps"], rtol, atol)
    if diff is None:
        return None
    path, g, w = diff
    if not path.startswith("["):
        return f"expected {len(want['steps'])} calls to be recorded, got {len(got['steps'])}."
    step = int(path[1:].split("]")[0])
    what = path.split("].", 1)[-1] if "]." in path else "the output"
    call = case.inputs["calls"][step]
    mode = "training" if call["kwargs"].get("training", True) else "evaluation"
    after = " afterwards (updated in place in the arrays passed in)" if what.startswith("running") else ""
    return (f"call {step + 1} ({mode}): {what}{after}: expected {describe_value(w)}, "
            f"got {describe_value(g)}.")


def _forward_cases(level: str, seed: int) -> list[Case]:
    rng = np.random.default_rng([seed, 52])
    tol = (1e-6, 1e-9)

    def setup(c, zero_stats=False):
        gamma = rng.uniform(0.5, 2.0, size=c)
        beta = rng.normal(size=c)
        rm = np.zeros(c) if zero_stats else rng.normal(size=c)
        rv = np.ones(c) if zero_stats else rng.uniform(0.5, 2.0, size=c)
        return gamma, beta, rm, rv

    def batch(n, c, loc=2.0, scale=3.0):
        return rng.normal(loc, scale, size=(n, c))

    def case(label, group, calls, params, graded, momentum=None, eps=None, defaults=False):
        gamma, beta, rm, rv = params
        full = []
        for x, training in calls:
            kwargs = {} if defaults else {"training": training}
            if not defaults and momentum is not None:
                kwargs["momentum"] = momentum
            if not defaults and eps is not None:
                kwargs["eps"] = eps
            if defaults and not training:
                kwargs = {"training": False}
            full.append({"x": x, "kwargs": kwargs})
        shapes = ", ".join(f"{'train' if t else 'eval'} {x.shape}" for x, t in calls)
        text = f"{label} [{shapes}]"
        return Case(text, {"calls": full, "gamma": gamma, "beta": beta, "running_mean": rm, "running_var": rv,
                           "graded": graded, "tol": tol}, group)

    out_group = "training: normalized with the batch mean and the biased batch variance"
    run_group = "training: running statistics updated in place, PyTorch's convention"
    eval_group = "evaluation: the running statistics are used and nothing is updated"
    worked = np.array([[1.0, 2.0], [3.0, 6.0], [5.0, 10.0], [7.0, 14.0]])
    cases = [
        case("worked example: gamma = 1, beta = 0, running stats 0 and 1, momentum 0.1; x = [[1, 2], [3, 6], "
             "[5, 10], [7, 14]]: batch means [4, 8], biased variances [5, 20], unbiased [6.667, 26.667], so "
             "running_mean -> [0.4, 0.8] and running_var -> [1.567, 3.567]",
             run_group, [(worked, True)], (np.ones(2), np.zeros(2), np.zeros(2), np.ones(2)),
             ["out", "running_mean", "running_var"], momentum=0.1),
        case("random batch, gamma and beta", out_group, [(batch(16, 5), True)], setup(5), ["out"], momentum=0.1),
        case("running statistics after one step: new = (1 - momentum) * old + momentum * batch, with the "
             "unbiased batch variance", run_group, [(batch(8, 4), True)], setup(4), ["running_mean", "running_var"],
             momentum=0.1),
        case("evaluation with given running statistics", eval_group, [(batch(6, 3), False)], setup(3),
             ["out", "running_mean", "running_var"], momentum=0.1),
    ]
    if level != "hidden":
        return cases
    tiny = batch(12, 4)
    tiny[:, 1] = 0.7 + 1e-3 * rng.normal(size=12)  # variance ~1e-6, below eps = 1e-5
    tiny[:, 3] = -1.25  # zero variance
    cases += [
        case("three steps with momentum 0.3, then evaluation", run_group,
             [(batch(10, 3), True), (batch(10, 3, loc=-1.0), True), (batch(10, 3, loc=4.0), True),
              (batch(5, 3), False)], setup(3), ["out", "running_mean", "running_var"], momentum=0.3),
        case("a batch of two samples: the unbiased variance is twice the biased one", run_group,
             [(batch(2, 6), True)], setup(6), ["out", "running_mean", "running_var"], momentum=0.1),
        case("the default momentum (0.1) and eps (1e-5), train then eval", run_group,
             [(batch(9, 4), True), (batch(9, 4), True), (batch(4, 4), False)], setup(4),
             ["out", "running_mean", "running_var"], defaults=True),
        case("a feature with variance 1e-6 and one with zero variance: eps goes inside the square root",
             "a feature with tiny or zero variance: eps inside the square root", [(tiny, True)], setup(4),
             ["out"], momentum=0.1, eps=1e-5),
        case("eps = 1e-3 on a feature with tiny variance", "a feature with tiny or zero variance: eps inside the "
             "square root", [(tiny, True)], setup(4), ["out"], momentum=0.1, eps=1e-3),
        case("evaluation twice in a row changes nothing, even with momentum 1", eval_group,
             [(batch(7, 5), False), (batch(3, 5), False)], setup(5), ["out", "running_mean", "running_var"],
             momentum=1.0),
        case("evaluation after one training step uses the updated running statistics", eval_group,
             [(batch(20, 3), True), (batch(4, 3, loc=-3.0), False)], setup(3), ["out", "running_mean", "running_var"],
             momentum=0.1),
        case("many features, few samples", out_group, [(batch(5, 12), True)], setup(12), ["out"], momentum=0.1),
    ]
    return cases


# ----------------------------------------------------------------------------------------------
# batchnorm_backward / batchnorm_backward_alt


_BACKWARD_HINT = (" (This check runs your backward pass on the cache of your own batchnorm_forward: if "
                  "batchnorm_forward fails its checks, fix it first.)")

_AUTOGRAD = ("your backward pass let autograd differentiate (torch recorded a graph while it ran): this exercise "
             "is the derivation, so write dx, dgamma and dbeta from the formulas of Section 3 with numpy "
             "operations. Autograd does this work in the BatchNorm1d module of Section 4.")


class _AutogradWatch:
    """Notices autograd at work while a backward pass runs: a graph being recorded saves tensors for
    its own backward, which ``saved_tensors_hooks`` reports (``torch.func``'s transforms refuse to
    run under the hooks, which counts too)."""

    def __init__(self) -> None:
        self.used = False

    def _pack(self, tensor: Any) -> Any:
        self.used = True
        return tensor

    def call(self, fn: Callable[[], Any]) -> Any:
        try:
            with torch.autograd.graph.saved_tensors_hooks(self._pack, _unpack):
                return fn()
        except RuntimeError as exc:
            if "saved tensor hooks" not in str(exc):
                raise
            self.used = True
            return None


def _unpack(tensor: Any) -> Any:
    return tensor


def _run_backward(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    inputs = case.inputs
    watch = _AutogradWatch()
    try:
        forward = _partner(fn, "batchnorm_forward")
        rm, rv = inputs["running_mean"].copy(), inputs["running_var"].copy()
        result = _quietly(lambda: forward(inputs["x"].copy(), inputs["gamma"].copy(), inputs["beta"].copy(), rm, rv,
                                          training=inputs["training"], momentum=0.1, eps=inputs["eps"]))
        if not (isinstance(result, tuple) and len(result) == 2):
            raise TypeError("batchnorm_forward must return (out, cache)")
        grads = _quietly(lambda: watch.call(lambda: fn(inputs["dout"].copy(), result[1])))
        if watch.used:
            return {"raised": None, "autograd": True}
        if not (isinstance(grads, tuple) and len(grads) == 3):
            raise TypeError(f"expected (dx, dgamma, dbeta), got {type(grads).__name__}")
    except Exception as exc:
        return {**raised(exc), "autograd": watch.used}
    return {"raised": None, "autograd": False, "dx": _array(grads[0]), "dgamma": _array(grads[1]),
            "dbeta": _array(grads[2])}


def _compare_backward(case: Case, got: dict[str, Any], want: dict[str, Any]) -> str | None:
    """Autograd first (it earns nothing, whatever the values), then the values."""
    if bool(got.get("autograd")) != bool(want.get("autograd")):
        return _AUTOGRAD if got.get("autograd") else "computed without autograd, unlike this implementation."
    if got.get("autograd"):
        return None
    return _compare(case, got, want)


def _backward_cases(level: str, seed: int) -> list[Case]:
    rng = np.random.default_rng([seed, 53])
    tol = (1e-6, 1e-9)

    def case(label, group, n, c, graded, training=True, eps=1e-5, tiny=False, loc=1.0, scale=2.0):
        x = rng.normal(loc, scale, size=(n, c))
        if tiny:
            x[:, 0] = 0.3 + 1e-3 * rng.normal(size=n)
        inputs = {"x": x, "gamma": rng.uniform(0.5, 2.0, size=c), "beta": rng.normal(size=c),
                  "running_mean": rng.normal(size=c), "running_var": rng.uniform(0.5, 2.0, size=c),
                  "dout": rng.normal(size=(n, c)), "training": training, "eps": eps, "graded": graded, "tol": tol,
                  "hint": _BACKWARD_HINT}
        mode = "training" if training else "evaluation"
        return Case(f"{label} [x {(n, c)}, {mode}, eps={eps:g}]", inputs, group)

    dx_group = "dx in training: through the batch mean and variance"
    param_group = "dgamma and dbeta"
    cases = [
        case("dx of a small batch", dx_group, 4, 3, ["dx"]),
        case("dgamma = sum(dout * x_hat), dbeta = sum(dout) over the batch", param_group, 6, 5, ["dgamma", "dbeta"]),
    ]
    if level != "hidden":
        return cases
    cases += [
        case("dx of a larger batch", dx_group, 32, 8, ["dx"]),
        case("dx of a batch of two", dx_group, 2, 5, ["dx"]),
        case("dx with a feature of variance ~1e-6 (eps matters)", dx_group, 16, 4, ["dx"], tiny=True),
        case("dgamma and dbeta, more features than samples", param_group, 3, 9, ["dgamma", "dbeta"]),
        case("evaluation: mean and variance are constants, dx = dout * gamma / sqrt(running_var + eps)",
             "evaluation: the running statistics are constants", 8, 4, ["dx", "dgamma", "dbeta"], training=False),
        case("eps = 0.1 in evaluation", "evaluation: the running statistics are constants", 5, 3, ["dx"],
             training=False, eps=0.1),
    ]
    return cases


# ----------------------------------------------------------------------------------------------
# BatchNorm1d (a torch.nn.Module)


def _run_module(cls: Callable[..., Any], case: Case) -> dict[str, Any]:
    inputs = case.inputs
    record: dict[str, Any] = {"raised": None, "steps": []}
    try:
        seed_cpu(0)
        module = _quietly(lambda: cls(inputs["num_features"], **inputs["kwargs"]))
        if inputs["state"] is not None:
            module.load_state_dict({k: torch.tensor(v) for k, v in inputs["state"].items()})
        for step in inputs["program"]:
            module.train(step["mode"] == "train")
            x = torch.tensor(step["x"], requires_grad=step["dout"] is not None)
            out = _quietly(lambda: module(x))
            entry = {"out": _tensor(out)}
            if step["dout"] is not None:
                for p in module.parameters():
                    p.grad = None
                (out * torch.tensor(step["dout"])).sum().backward()
                params = dict(module.named_parameters())
                entry["dx"] = _tensor(x.grad)
                entry["dweight"] = _tensor(getattr(params.get("weight"), "grad", None))
                entry["dbias"] = _tensor(getattr(params.get("bias"), "grad", None))
            record["steps"].append(entry)
        buffers = dict(module.named_buffers())
        record["buffer_history"] = sorted(name for name, b in buffers.items()
                                          if isinstance(b, torch.Tensor) and (b.requires_grad or b.grad_fn is not None))
        state = module.state_dict()
        record["state_dict_keys"] = sorted(state)
        record["parameters"] = sorted(name for name, _ in module.named_parameters())
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            record[name] = _tensor(state.get(name))
    except Exception as exc:
        record.update(raised(exc))
    return record


def _compare_module(case: Case, got: dict[str, Any], want: dict[str, Any]) -> str | None:
    if want.get("raised") is not None:
        return None if got.get("raised") == want["raised"] else f"expected {want['raised']}, got no such error."
    if got.get("raised") is not None:
        return f"your module raised {got['raised']}: {got.get('message', '')}"
    graded = case.inputs["graded"]
    rtol, atol = case.inputs["tol"]
    steps = lambda out: [{k: v for k, v in s.items() if k in graded} for s in out.get("steps", [])]  # noqa: E731
    diff = first_difference(steps(got), steps(want), rtol, atol)
    if diff is not None:
        path, g, w = diff
        if not path.startswith("["):
            return f"expected {len(want['steps'])} forward passes, got {len(got.get('steps', []))}."
        index = int(path[1:].split("]")[0])
        what = {"out": "the output", "dx": "the gradient with respect to the input",
                "dweight": "weight.grad", "dbias": "bias.grad"}.get(path.split("].", 1)[-1].split(" ")[0], path)
        mode = case.inputs["program"][index]["mode"]
        return f"forward pass {index + 1} ({mode} mode): {what}: expected {describe_value(w)}, got {describe_value(g)}."
    if "buffer_history" in graded and got.get("buffer_history") != want.get("buffer_history"):
        return (f"after the training steps the buffers {got.get('buffer_history')} carry autograd history (they are "
                "results of the graph, not plain tensors): update them in place under torch.no_grad().")
    for key in ("state_dict_keys", "parameters", "running_mean", "running_var", "num_batches_tracked"):
        if key not in graded:
            continue
        diff = first_difference(got.get(key), want.get(key), rtol, atol)
        if diff is not None:
            label = {"state_dict_keys": "the state_dict keys", "parameters": "the parameter names"}.get(
                key, f"the buffer {key}")
            return f"{label} after the forward passes: expected {describe_value(want.get(key))}, got {describe_value(got.get(key))}."
    return None


def _module_cases(level: str, seed: int) -> list[Case]:
    rng = np.random.default_rng([seed, 54])
    tol = (1e-4, 1e-5)

    def x(*shape, loc=1.0, scale=2.0):
        return rng.normal(loc, scale, size=shape).astype(np.float32)

    def pair(c):
        """Two samples at least 1 apart in every channel: two close values make s = 1/sqrt(var + eps) large
        and dx a float32 cancellation (x_hat = ±1, so dx is nearly 0), which no tolerance grades fairly."""
        gap = rng.uniform(1.0, 3.0, size=c) * rng.choice([-1.0, 1.0], size=c)
        centre = rng.normal(1.0, 2.0, size=c)
        return np.stack([centre + gap / 2, centre - gap / 2]).astype(np.float32)

    def step(mode, array, grad=False):
        return {"mode": mode, "x": array, "dout": rng.normal(size=array.shape).astype(np.float32) if grad else None}

    def torch_state(c):
        return {"weight": rng.uniform(0.5, 2, c).astype(np.float32), "bias": rng.normal(size=c).astype(np.float32),
                "running_mean": rng.normal(size=c).astype(np.float32),
                "running_var": rng.uniform(0.5, 2, c).astype(np.float32),
                "num_batches_tracked": np.array(int(rng.integers(1, 1000)), dtype=np.int64)}

    def case(label, group, c, program, graded, kwargs=None, state=None):
        shapes = ", ".join(f"{s['mode']} {s['x'].shape}" for s in program)
        args = "".join(f", {k}={v!r}" for k, v in (kwargs or {}).items())
        return Case(f"{label} [BatchNorm1d({c}{args}); {shapes}]",
                    {"num_features": c, "kwargs": dict(kwargs or {}), "state": state, "program": program,
                     "graded": graded, "tol": tol}, group)

    buffers = ["state_dict_keys", "parameters", "running_mean", "running_var", "num_batches_tracked"]
    cases = [
        case("training: output normalized with the batch statistics", "training: the output", 4,
             [step("train", x(16, 4))], ["out"]),
        case("torch's buffers and state_dict keys after two training steps", "buffers and state_dict", 3,
             [step("train", x(8, 3)), step("train", x(8, 3, loc=-2.0))], buffers),
        case("evaluation uses the running statistics and changes nothing", "evaluation mode", 3,
             [step("train", x(10, 3)), step("eval", x(4, 3)), step("eval", x(6, 3))], ["out", *buffers]),
        case("gradients flow through the batch mean and variance", "gradients", 5,
             [step("train", x(12, 5), grad=True)], ["out", "dx", "dweight", "dbias"]),
        case("three training steps with backward passes, then a backward pass through an evaluation output",
             "running statistics updated outside the autograd graph", 3,
             [step("train", x(8, 3), grad=True), step("train", x(8, 3, loc=2.0), grad=True),
              step("train", x(8, 3), grad=True), step("eval", x(5, 3), grad=True)], ["out", "buffer_history"]),
    ]
    if level != "hidden":
        return cases
    loaded = torch_state(4)
    cases += [
        case("(N, C, L) input: statistics over N and L", "(N, C, L) inputs", 3,
             [step("train", x(4, 3, 5)), step("train", x(4, 3, 5)), step("eval", x(2, 3, 7))], ["out", *buffers]),
        case("(N, C, L) gradients", "(N, C, L) inputs", 2, [step("train", x(3, 2, 6), grad=True)],
             ["out", "dx", "dweight", "dbias"]),
        case("momentum=None: a cumulative average over the batches seen", "momentum=None and other arguments", 3,
             [step("train", x(6, 3)), step("train", x(6, 3, loc=3.0)), step("train", x(6, 3, loc=-2.0)),
              step("eval", x(4, 3))], ["out", *buffers], {"momentum": None}),
        case("eps=0.5 and momentum=0.5", "momentum=None and other arguments", 4,
             [step("train", x(5, 4, scale=0.3)), step("eval", x(3, 4))], ["out", *buffers],
             {"eps": 0.5, "momentum": 0.5}),
        case("loads a torch.nn.BatchNorm1d state_dict and matches it in evaluation",
             "loads torch.nn.BatchNorm1d's state_dict", 4, [step("eval", x(5, 4), grad=True)],
             ["out", "dx", "dweight", "dbias", *buffers], state=loaded),
        case("loads a torch.nn.BatchNorm1d state_dict, then trains one step",
             "loads torch.nn.BatchNorm1d's state_dict", 4, [step("train", x(9, 4))], ["out", *buffers],
             state=torch_state(4)),
        case("a batch of two, gradients included", "gradients", 3, [step("train", pair(3), grad=True)],
             ["out", "dx", "dweight", "dbias", "running_var"]),
    ]
    return cases


# ----------------------------------------------------------------------------------------------
# fold_batchnorm


def _run_fold(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    inputs = case.inputs
    dtype = getattr(torch, inputs["dtype"])
    try:
        w = torch.tensor(inputs["weight"], dtype=dtype)
        linear = torch.nn.Linear(w.shape[1], w.shape[0], bias=inputs["bias"] is not None, dtype=dtype)
        bn = torch.nn.BatchNorm1d(w.shape[0], eps=inputs["eps"], dtype=dtype)
        with torch.no_grad():
            linear.weight.copy_(w)
            if inputs["bias"] is not None:
                linear.bias.copy_(torch.tensor(inputs["bias"], dtype=dtype))
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(bn, name).copy_(torch.tensor(inputs["bn"][name], dtype=dtype))
        bn.eval()
        before = {k: v.clone() for k, v in [*linear.state_dict().items(), *(("bn." + k, v) for k, v in bn.state_dict().items())]}
        folded = _quietly(lambda: fn(linear, bn))
        if not isinstance(folded, torch.nn.Linear):
            return {"raised": None, "is_linear": False}
        with torch.no_grad():
            out = folded(torch.tensor(inputs["x"], dtype=dtype))
        after = {k: v for k, v in [*linear.state_dict().items(), *(("bn." + k, v) for k, v in bn.state_dict().items())]}
        unchanged = all(torch.equal(before[k], after[k]) for k in before)
    except Exception as exc:
        return raised(exc)
    return {"raised": None, "is_linear": True, "out": _tensor(out), "weight": _tensor(folded.weight),
            "bias": _tensor(folded.bias), "inputs_unchanged": bool(unchanged)}


def _fold_cases(level: str, seed: int) -> list[Case]:
    rng = np.random.default_rng([seed, 55])

    def case(label, group, n_in, n_out, graded, bias=True, eps=1e-5, tiny=False, dtype="float32"):
        tol = (1e-9, 1e-10) if dtype == "float64" else (1e-4, 1e-5)
        rv = rng.uniform(0.2, 3.0, n_out)
        if tiny:
            rv[0] = 1e-7
        inputs = {"weight": rng.normal(size=(n_out, n_in)) / np.sqrt(n_in),
                  "bias": rng.normal(size=n_out) if bias else None,
                  "bn": {"weight": rng.uniform(0.5, 2.0, n_out), "bias": rng.normal(size=n_out),
                         "running_mean": rng.normal(size=n_out), "running_var": rv},
                  "eps": eps, "x": rng.normal(size=(7, n_in)), "dtype": dtype, "graded": graded, "tol": tol}
        desc = f"Linear({n_in}, {n_out}{'' if bias else ', bias=False'}) then BatchNorm1d({n_out}, eps={eps:g})"
        return Case(f"{label} [{desc}, {dtype}]", inputs, group)

    main = "the folded layer computes bn(linear(x)) in evaluation mode"
    cases = [
        case("the folded Linear gives the output of the two layers", main, 5, 4, ["is_linear", "out"]),
        case("the folded weight and bias", main, 3, 6, ["is_linear", "weight", "bias"]),
        case("the original layers are left unchanged", "the original layers are left unchanged", 4, 3,
             ["is_linear", "out", "inputs_unchanged"]),
    ]
    if level != "hidden":
        return cases
    cases += [
        case("a Linear without bias: the folded layer needs one", "a Linear without bias", 4, 5,
             ["is_linear", "out", "weight", "bias"], bias=False),
        # float64: with running_var 1e-7, s = gamma / sqrt(1e-7 + 1e-5) is ~300 and the folded bias and outputs
        # of that feature are differences of terms ~1e3; in float32 one rounding of them (6e-5) exceeds atol
        # 1e-5 whenever the result lies near 0, so correct foldings that round differently failed on about
        # 1 seed in 2000 (the instructor's own reached 0.7 of the tolerance). eps's place is what is graded.
        case("a running variance of 1e-7: eps inside the square root", main, 3, 3, ["out", "weight", "bias"],
             tiny=True, dtype="float64"),
        case("eps = 0.1", main, 6, 2, ["out", "weight", "bias"], eps=0.1),
        case("float64 layers stay float64", main, 5, 5, ["is_linear", "out", "weight", "bias"], dtype="float64"),
        case("a Linear without bias, original layers unchanged", "a Linear without bias", 3, 4,
             ["out", "inputs_unchanged"], bias=False),
    ]
    return cases


# ----------------------------------------------------------------------------------------------
# train_bn_classifier: batch norm inside a real training loop, graded on behaviour

_WIDTH = 32


def _spiral_data(rng: np.random.Generator, n_per_class: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    r = np.tile(np.linspace(0.05, 1.0, n_per_class), classes)
    labels = np.repeat(np.arange(classes), n_per_class)
    t = 4.0 * labels + 4.0 * r + 0.2 * rng.normal(size=r.shape)
    x = np.stack([r * np.sin(t), r * np.cos(t)], axis=1) * 3.0 + np.array([1.5, -0.5])
    return x.astype(np.float32), labels.astype(np.int64)


def _build_classifier(bn_class: Callable[..., Any], weights: list[np.ndarray]) -> torch.nn.Sequential:
    """Linear -> BN -> ReLU -> Linear -> BN -> ReLU -> Linear, with the case's Linear weights."""
    sizes = [(w.shape[1], w.shape[0]) for w in weights[::2]]
    layers: list[torch.nn.Module] = []
    for i, (n_in, n_out) in enumerate(sizes):
        layers.append(torch.nn.Linear(n_in, n_out))
        if i < len(sizes) - 1:
            layers += [bn_class(n_out), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers)
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for i, linear in enumerate(linears):
            linear.weight.copy_(torch.tensor(weights[2 * i]))
            linear.bias.copy_(torch.tensor(weights[2 * i + 1]))
    return model


class _LoopProbe:
    """What a training loop did, step by step: the batch size and mode of every forward pass of the
    model (a forward pre-hook), and the first Linear layer's weight before each of them together with
    every gradient autograd computed for it (a tensor hook), so the grader can tell plain SGD
    (``Δw = −lr · g`` of this step) from momentum or from gradients left to accumulate."""

    MOMENTUM = 0.9  # the usual value, the one a loop copied from elsewhere brings along

    def __init__(self, model: torch.nn.Module) -> None:
        self.weight = next(m for m in model if isinstance(m, torch.nn.Linear)).weight
        self.passes: list[tuple[bool, int]] = []
        self.snapshots: list[torch.Tensor] = []
        self.grads: list[torch.Tensor] = []
        model.register_forward_pre_hook(self._forward)
        self.weight.register_hook(self._gradient)

    def _forward(self, module: torch.nn.Module, args: tuple) -> None:
        rows = args[0].shape[0] if args and isinstance(args[0], torch.Tensor) and args[0].dim() else -1
        self.passes.append((bool(module.training), int(rows)))
        self.snapshots.append(self.weight.detach().to(torch.float64, copy=True))

    def _gradient(self, grad: torch.Tensor) -> None:
        self.grads.append(grad.detach().to(torch.float64, copy=True))

    def update_residuals(self, lr: float) -> list[float] | None:
        """``Σ_t ‖Δw_t + lr · u_t‖ / Σ_t ‖lr · u_t‖`` over the training steps, for u_t the step's own
        gradient (plain SGD), the sum of all gradients so far (never reset) and the momentum buffer:
        near 0 (float32 rounding, ~1e-5) for the rule the loop follows, of order 1 for the others.
        None when the forward passes and gradients do not pair up one to one."""
        steps = [i for i, (training, _) in enumerate(self.passes) if training]
        if not steps or len(self.grads) != len(steps):
            return None
        weights = torch.stack([*self.snapshots, self.weight.detach().to(torch.float64)]).flatten(1)
        index = torch.tensor(steps)
        delta = weights[index + 1] - weights[index]  # (T, weights): what each training step changed
        grads = torch.stack(self.grads).flatten(1)
        powers = self.MOMENTUM ** torch.arange(len(steps), dtype=torch.float64)
        # the momentum buffer b_t = sum_k 0.9^(t-k) g_k, as one lower-triangular matrix product
        mix = torch.tril(powers[:, None] / powers[None, :])
        rules = (grads, grads.cumsum(0), mix @ grads)  # this step's gradient, never reset, momentum
        return [float((delta + lr * u).norm(dim=1).sum() / (lr * u.norm(dim=1).sum() + 1e-30)) for u in rules]


def _run_loop(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    inputs = case.inputs
    try:
        bn_class = _partner(fn, "BatchNorm1d")
        seed_cpu(0)
        model = _build_classifier(bn_class, inputs["weights"])
        probe = _LoopProbe(model)
        logits = _quietly(lambda: fn(model, torch.tensor(inputs["x_train"]), torch.tensor(inputs["y_train"]),
                                     torch.tensor(inputs["x_test"]), **inputs["kwargs"]))
        state = {k: _tensor(v) for k, v in model.state_dict().items()}
        residuals = _quietly(lambda: probe.update_residuals(inputs["kwargs"]["lr"]))
    except Exception as exc:
        return raised(exc)
    train_rows = sorted({rows for training, rows in probe.passes if training})
    return {"raised": None, "logits": _tensor(logits), "state": state, "train_rows": train_rows,
            "update_residuals": residuals, "last_pass_training": bool(probe.passes and probe.passes[-1][0])}


def _loop_verdict(case: Case, out: dict[str, Any]) -> tuple[str, str] | None:
    """``(kind, explanation)`` of what is wrong with a loop's outputs, or None when they are right.

    Behaviour, not digits: the loop trained (the weights moved), in training mode, once per step;
    reached the loss threshold; and returned the outputs that torch's own BatchNorm1d layers,
    loaded with the trained state, give in evaluation mode."""
    if out.get("raised") is not None:
        return "raised", f"your code raised {out['raised']}: {out.get('message', '')}"
    inputs = case.inputs
    logits = out.get("logits")
    n_test, classes = len(inputs["x_test"]), inputs["weights"][-1].shape[0]
    if not isinstance(logits, np.ndarray) or logits.shape != (n_test, classes):
        return "shape", f"expected logits of shape {(n_test, classes)} for x_test, got {describe_value(logits)}."
    reference = _build_classifier(torch.nn.BatchNorm1d, inputs["weights"])
    state = out.get("state") or {}
    try:
        reference.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
    except Exception as exc:
        return "state", ("the trained model's state_dict does not load into torch.nn.BatchNorm1d layers "
                         f"({type(exc).__name__}); check the BatchNorm1d exercise first.")
    first = np.asarray(state.get("0.weight"))
    if first.shape == inputs["weights"][0].shape and np.array_equal(first, inputs["weights"][0]):
        return "untrained", "the weights did not change: the model was not trained."
    steps = inputs["kwargs"]["steps"]
    counts = sorted({int(v) for k, v in state.items() if k.endswith("num_batches_tracked")})
    if counts != [steps]:
        last = " (the test forward pass too)" if out.get("last_pass_training") else ""
        return f"counts {counts}{last}", (
            f"the batch-norm layers counted {counts} training batches{last}, expected {steps}: call model.train() "
            "before the training steps, run exactly one training-mode forward pass per step, and "
            "evaluate only after model.eval().")
    batch_size = inputs["kwargs"]["batch_size"]
    rows = out.get("train_rows") or []
    residuals = out.get("update_residuals")
    if rows != [batch_size]:
        if residuals is not None and residuals[2] < _UPDATE_TOL <= residuals[0]:
            return "batch, momentum", (
                f"the training-mode forward passes had {rows} rows and each step followed a momentum buffer: the "
                f"exercise asks for minibatches of batch_size = {batch_size} drawn at random at every step, and "
                "plain SGD (p -= lr * p.grad). A full batch removes the train/eval difference the exercise is about.")
        return "batch", (f"the training-mode forward passes had {rows} rows, expected minibatches of batch_size = "
                         f"{batch_size} at every step. A full batch (or any other size) changes what is trained: "
                         "with the whole training set every step, the batch statistics barely change and equal the "
                         "running ones, so the train/eval difference this exercise is about disappears.")
    if residuals is None:
        return "pairing", ("expected exactly one backward pass per training step (one gradient of the first layer's "
                           "weight for each training-mode forward pass).")
    plain, accumulated, momentum = residuals
    if not plain < _UPDATE_TOL:
        if accumulated < _UPDATE_TOL:
            return "accumulates", ("each step moved the weights by -lr times the SUM of all gradients so far: the "
                                   "gradients were never reset, so they accumulate in .grad.")
        if momentum < _UPDATE_TOL:
            return "momentum", ("each step moved the weights by -lr times a momentum buffer (0.9), not by -lr times "
                                "this step's gradient: the exercise asks for plain SGD.")
        return "update", (f"a step moved the first layer's weight by something other than -lr * grad (relative "
                          f"difference up to {plain:.2g}): use plain SGD with lr = {inputs['kwargs']['lr']} — no "
                          "momentum, no weight decay, no other optimizer.")
    reference.eval()
    with torch.no_grad():
        expected = _quietly(lambda: reference(torch.tensor(inputs["x_test"]))).numpy().astype(np.float64)
        train_loss = _quietly(lambda: torch.nn.functional.cross_entropy(reference(torch.tensor(inputs["x_train"])),
                                                                        torch.tensor(inputs["y_train"])).item())
    if not np.allclose(logits, expected, rtol=1e-3, atol=1e-4):
        return "not eval", ("the returned test outputs are not the model's outputs in evaluation mode (with the "
                            "running statistics): call model.eval() before the test forward pass. Expected "
                            f"{describe_value(expected)}, got {describe_value(logits)}.")
    if not train_loss < inputs["threshold"]:
        return "loss", (f"after training, the loss on the training set (evaluation mode) is {train_loss:.3f}, "
                        f"expected below {inputs['threshold']}: are the steps taken (zero_grad, backward, step)?")
    return None


#: largest relative difference between the updates and -lr * grad that still counts as plain SGD
#: (float32 rounding of the weights gives 1e-5 to 1e-4; momentum or an accumulated gradient gives ~1)
_UPDATE_TOL = 1e-2


def _compare_loop(case: Case, got: dict[str, Any], want: dict[str, Any]) -> str | None:
    """Against the reference (whose verdict is None): ``got``'s problem. Against a mutant's outputs
    (used to name a misconception): None when ``got`` goes wrong in the same way."""
    mine, theirs = _loop_verdict(case, got), _loop_verdict(case, want)
    if theirs is None:
        return None if mine is None else mine[1]
    return None if mine is not None and mine[0] == theirs[0] else "goes wrong differently"


def _loop_cases(level: str, seed: int) -> list[Case]:
    rng = np.random.default_rng([seed, 56])

    def case(label, n_per_class, classes, steps, lr, batch_size, threshold):
        x_train, y_train = _spiral_data(rng, n_per_class, classes)
        x_test, _ = _spiral_data(rng, 20, classes)
        sizes = [(2, _WIDTH), (_WIDTH, _WIDTH), (_WIDTH, classes)]
        weights = []
        for n_in, n_out in sizes:
            weights += [(rng.normal(size=(n_out, n_in)) * np.sqrt(2.0 / n_in)).astype(np.float32),
                        np.zeros(n_out, dtype=np.float32)]
        kwargs = {"steps": steps, "lr": lr, "batch_size": batch_size, "seed": int(rng.integers(2**31))}
        return Case(f"{label} [spirals, {classes} classes, {len(x_train)} training points, {steps} steps of "
                    f"batch {batch_size}, lr={lr}; loss threshold {threshold}]",
                    {"x_train": x_train, "y_train": y_train, "x_test": x_test, "weights": weights, "kwargs": kwargs,
                     "threshold": threshold}, "trains in training mode, predicts in evaluation mode")

    # thresholds: correct loops stay below about 40 % of them (measured over 20 seeds and three loops);
    # a loop without zero_grad ends above them in the 3- and 4-class cases.
    cases = [case("a 3-layer MLP with your BatchNorm1d", 60, 3, 150, 0.2, 32, 0.5)]
    if level == "hidden":
        cases += [case("two classes, small batches", 50, 2, 150, 0.2, 16, 0.45),
                  case("four classes, larger batches", 50, 4, 200, 0.2, 64, 0.9)]
    return cases


# ----------------------------------------------------------------------------------------------


class _BehaviourExercise(Exercise):
    """An exercise graded on behaviour whose mutants are costly to run (each trains a network):
    a misconception is looked for only when the loop ran and returned something to judge, never
    for an exception (an unanswered exercise, a missing partner)."""

    def diagnose(self, case: Case, got: dict[str, Any]) -> str | None:
        verdict = _loop_verdict(case, got)
        if verdict is None or verdict[0] in ("raised", "shape", "state"):
            return None
        return super().diagnose(case, got)


def _exercise(name: str, reference: str, make_cases, run, compare, mutants: str,
              kind: type[Exercise] = Exercise) -> Exercise:
    return kind(name=name, reference=reference, make_cases=make_cases, run=run, compare=compare,
                mutants=f"{__name__}_mutants:{mutants}")


EXERCISES: dict[str, Exercise] = {
    "standardize_apply": _exercise("standardize_apply", "stabletrain.normalization:standardize_apply",
                                   _standardize_cases, _run_standardize, _compare, "STANDARDIZE"),
    "batchnorm_forward": _exercise("batchnorm_forward", "stabletrain.normalization:batchnorm_forward",
                                   _forward_cases, _run_forward, _compare_forward, "FORWARD"),
    "batchnorm_backward": _exercise("batchnorm_backward", "stabletrain.normalization:batchnorm_backward",
                                    _backward_cases, _run_backward, _compare_backward, "BACKWARD"),
    "batchnorm_backward_alt": _exercise("batchnorm_backward_alt", "stabletrain.normalization:batchnorm_backward_alt",
                                        _backward_cases, _run_backward, _compare_backward, "BACKWARD_ALT"),
    "BatchNorm1d": _exercise("BatchNorm1d", "stabletrain.norm_modules:BatchNorm1d", _module_cases, _run_module,
                             _compare_module, "MODULE"),
    "fold_batchnorm": _exercise("fold_batchnorm", "stabletrain.norm_modules:fold_batchnorm", _fold_cases, _run_fold,
                                _compare, "FOLD"),
    "train_bn_classifier": _exercise("train_bn_classifier", "stabletrain.norm_modules:train_bn_classifier",
                                     _loop_cases, _run_loop, _compare_loop, "LOOP", _BehaviourExercise),
}
