"""Exercises of lesson 01: ``backprop_grad_norms``, ``log_grad_slope``, ``jacobian_singular_values``,
``grad_norm_monitor``.

A network case is plain data: a list of weight matrices ``(out, in)``, a list of biases, an input
and an activation name, drawn from a seeded numpy generator. The first three exercises are numpy
functions of such a network (or of a few numbers); running a case calls the implementation on
fresh copies and records what it returned. ``grad_norm_monitor`` is graded on behaviour: running
a case builds a small ``torch.nn`` model from the case's weights and trains it for a few steps of
SGD, calling the monitor after every ``backward()``; where the monitor flags a layer as exploding,
the loop rescales that layer's weight gradient to norm ``high`` (using the monitor's norm) before
the step, so what the loop does depends on the monitor. The loop keeps the gradient tensors while
the monitor runs and puts them back afterwards, so a monitor that calls ``model.zero_grad()`` after
reading does not crash the loop or cost the other groups their points; the cases of the group "the
monitor only reads the gradients" keep copies and report a monitor that clears or changes them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from .base import Case, Exercise, describe_value, first_difference, raised

#: answer keys of this lesson (switched off while grading; flagged by the static scan)
REFERENCE_MODULES = ("vanishing",)
#: autograd's Jacobians would answer exercise 3 without a manual product
TORCH_ANSWER_KEYS = {"torch.autograd.functional": ("jacobian",), "torch.func": ("jacrev", "jacfwd")}

# ----------------------------------------------------------------------------------------------
# Networks as plain data


def _network(rng: np.random.Generator, widths: tuple[int, ...], activation: str, weight_std: float | None = None,
             bias_std: float = 0.1, batch: int | None = 4, grad_std: float = 1.0) -> dict[str, Any]:
    """weights ``(n_l, n_{l-1})`` with std ``weight_std`` (default 1/sqrt(fan_in)), biases, x, G."""
    weights, biases = [], []
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        std = weight_std if weight_std is not None else 1.0 / math.sqrt(n_in)
        weights.append(rng.normal(0.0, std, size=(n_out, n_in)))
        biases.append(rng.normal(0.0, bias_std, size=n_out))
    x_shape = (widths[0],) if batch is None else (batch, widths[0])
    net = {"weights": weights, "biases": biases, "x": rng.normal(0.0, 1.0, size=x_shape), "activation": activation}
    if batch is not None:
        net["grad_output"] = rng.normal(0.0, grad_std, size=(batch, widths[-1]))
    return net


def _describe_net(net: dict[str, Any]) -> str:
    widths = [net["weights"][0].shape[1]] + [w.shape[0] for w in net["weights"]]
    return f"{net['activation']}, {len(net['weights'])} layers, widths {tuple(widths)}, x of shape {net['x'].shape}"


def _as_array(value: Any) -> np.ndarray | None:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return arr


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, dict[str, Any] | None]:
    """``(returned, None)`` or ``(None, raised(...))``; warnings silenced (they are not wrong answers)."""
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return fn(*args, **kwargs), None
    except Exception as exc:  # the implementation's error is part of its behaviour
        return None, raised(exc)


def _copies(net: dict[str, Any]) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    return [w.copy() for w in net["weights"]], [b.copy() for b in net["biases"]], net["x"].copy()


def _compare_outputs(case: Case, got: dict[str, Any], want: dict[str, Any], names: dict[str, str]) -> str | None:
    if want.get("raised"):
        return None if got.get("raised") == want["raised"] else f"expected {want['raised']} to be raised"
    if got.get("raised"):
        return f"your function raised {got['raised']}: {got.get('message', '')}"
    if got.get("bad_return"):
        return got["bad_return"]
    rtol, atol = case.inputs["tol"]
    for key, words in names.items():
        g, w = got.get(key), want[key]
        if isinstance(w, np.ndarray) and isinstance(g, np.ndarray) and g.shape == w.shape:
            finite = np.abs(w[np.isfinite(w)])
            scale = float(finite.max()) if finite.size else 0.0
            ok = np.isclose(g, w, rtol=rtol, atol=atol * scale, equal_nan=True) | (g == w)
            if ok.all():
                continue
            i = int(np.argmin(ok.ravel()))
            return (f"{words}: expected {describe_value(w)}, got {describe_value(g)} "
                    f"(first difference at index {i}: expected {w.ravel()[i]:.6g}, got {g.ravel()[i]:.6g}).")
        diff = first_difference(g, w, rtol, atol)
        if diff is not None:
            path, gv, wv = diff
            shape = " (its shape)" if "shape" in path else ""
            return f"{words}{shape}: expected {describe_value(wv)}, got {describe_value(gv)}."
    return None


# ----------------------------------------------------------------------------------------------
# Exercise 1: backprop_grad_norms


def _run_backprop(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    net = case.inputs["net"]
    weights, biases, x = _copies(net)
    returned, error = _call(fn, weights, biases, x, net["grad_output"].copy(), net["activation"])
    if error:
        return error
    if not isinstance(returned, (tuple, list)) or len(returned) != 2:
        return {"bad_return": "expected a pair (input_grad_norms, weight_grad_norms) of arrays of shape (L,), "
                              f"got {type(returned).__name__}"}
    out = {"input_grad_norms": _as_array(returned[0]), "weight_grad_norms": _as_array(returned[1])}
    if out["input_grad_norms"] is None or out["weight_grad_norms"] is None:
        return {"bad_return": "both returned values must be arrays (or lists) of numbers"}
    return out


def _compare_backprop(case: Case, got: dict[str, Any], want: dict[str, Any]) -> str | None:
    return _compare_outputs(case, got, want, {
        "input_grad_norms": "input_grad_norms, the norms ‖∂L/∂h_(l-1)‖ of the gradient arriving at each layer's input",
        "weight_grad_norms": "weight_grad_norms, the norms ‖∂L/∂W_l‖ of each layer's weight gradient",
    })


def _backprop_case(label: str, net: dict[str, Any], group: str) -> Case:
    return Case(f"{label} [{_describe_net(net)}]", {"net": net, "tol": [1e-5, 1e-12]}, group)


def _backprop_cases(level: str, seed: int) -> list[Case]:
    rng = np.random.default_rng([seed, 101])
    cases = [
        _backprop_case("a 2-layer sigmoid network", _network(rng, (3, 4, 2), "sigmoid", batch=2), "small networks"),
        _backprop_case("a 4-layer tanh network", _network(rng, (6, 6, 6, 6, 6), "tanh", weight_std=0.8),
                       "small networks"),
    ]
    if level == "hidden":
        cases += [
            _backprop_case("a deep sigmoid network: the gradient vanishes", _network(rng, (10,) * 9, "sigmoid"),
                           "deep sigmoid and tanh networks"),
            _backprop_case("a deep tanh network with large weights", _network(rng, (8,) * 7, "tanh", weight_std=0.9,
                                                                              bias_std=0.5),
                           "deep sigmoid and tanh networks"),
            _backprop_case("a ReLU network", _network(rng, (12,) * 6, "relu", weight_std=0.5), "ReLU and linear networks"),
            _backprop_case("a linear network", _network(rng, (7, 7, 7, 7), "linear", weight_std=0.6),
                           "ReLU and linear networks"),
            _backprop_case("layers of different widths (tanh)", _network(rng, (5, 9, 3, 7, 2), "tanh"),
                           "layers of different widths"),
            _backprop_case("layers of different widths (ReLU)", _network(rng, (4, 6, 8, 3), "relu"),
                           "layers of different widths"),
            _backprop_case("saturated sigmoid units: large biases and weights",
                           _network(rng, (6, 6, 6, 6), "sigmoid", weight_std=1.5, bias_std=2.0),
                           "saturation: large biases and weights"),
            _backprop_case("saturated tanh units: large biases and weights",
                           _network(rng, (5, 5, 5), "tanh", weight_std=1.5, bias_std=2.0),
                           "saturation: large biases and weights"),
            _backprop_case("one layer, one example", _network(rng, (4, 3), "sigmoid", batch=1),
                           "one layer, one example"),
        ]
    return cases


# ----------------------------------------------------------------------------------------------
# Exercise 2: log_grad_slope


def _run_slope(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    a = case.inputs["args"]
    returned, error = _call(fn, a["weight_std"], a["width"], a["activation"], a["preact_var"])
    if error:
        return error
    try:
        return {"slope": float(returned)}
    except (TypeError, ValueError):
        return {"bad_return": f"expected a number (a float), got {type(returned).__name__}"}


def _compare_slope(case: Case, got: dict[str, Any], want: dict[str, Any]) -> str | None:
    return _compare_outputs(case, got, want, {"slope": "the predicted slope of ln‖g‖ per layer (backward)"})


def _slope_case(label: str, activation: str, width: int, weight_std: float, preact_var: float, group: str) -> Case:
    args = {"weight_std": weight_std, "width": width, "activation": activation, "preact_var": preact_var}
    text = f"{label} [{activation}, width={width}, weight_std={weight_std:.4g}, preact_var={preact_var:.4g}]"
    return Case(text, {"args": args, "tol": [1e-4, 1e-3]}, group)


def _slope_cases(level: str, seed: int) -> list[Case]:
    rng = np.random.default_rng([seed, 102])

    def u(lo: float, hi: float) -> float:
        return float(round(rng.uniform(lo, hi), 4))

    n = int(rng.choice([64, 100, 128, 256]))
    cases = [
        _slope_case("ReLU with small weights: vanishing", "relu", 100, 0.08, 1.0, "visible examples"),
        _slope_case("sigmoid at weight_std = 1/sqrt(width)", "sigmoid", n, 1 / math.sqrt(n), 1.0, "visible examples"),
    ]
    if level == "hidden":
        cases += [
            _slope_case("a linear network", "linear", n, u(0.3, 0.7) / math.sqrt(n), u(0.5, 2.0),
                        "closed forms: linear and ReLU"),
            _slope_case("ReLU, any pre-activation variance", "relu", n, u(0.2, 0.9) / math.sqrt(n), u(2.0, 5.0),
                        "closed forms: linear and ReLU"),
            _slope_case("tanh, small pre-activations", "tanh", n, u(0.3, 0.6) / math.sqrt(n), u(0.25, 0.5),
                        "sigmoid and tanh: an expectation over z"),
            _slope_case("tanh, large pre-activations", "tanh", n, u(0.3, 0.6) / math.sqrt(n), u(2.5, 4.0),
                        "sigmoid and tanh: an expectation over z"),
            _slope_case("sigmoid, large pre-activations", "sigmoid", n, u(0.5, 0.9) / math.sqrt(n), u(2.5, 4.0),
                        "sigmoid and tanh: an expectation over z"),
            _slope_case("exploding: large ReLU weights", "relu", n, u(2.0, 3.0) / math.sqrt(n), u(0.5, 2.0),
                        "exploding settings (slope > 0)"),
            _slope_case("exploding: large tanh weights", "tanh", n, u(2.5, 4.0) / math.sqrt(n), u(0.25, 0.5),
                        "exploding settings (slope > 0)"),
        ]
    return cases


# ----------------------------------------------------------------------------------------------
# Exercise 3: jacobian_singular_values


def _run_jacobian(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    net = case.inputs["net"]
    weights, biases, x = _copies(net)
    returned, error = _call(fn, weights, biases, x, net["activation"])
    if error:
        return error
    values = _as_array(returned)
    if values is None:
        return {"bad_return": f"expected an array of singular values, got {type(returned).__name__}"}
    return {"singular_values": values}


#: singular values below this fraction of the largest are lost when JᵀJ is formed (√eps ≈ 1.5e-8, with room)
_GRAM_FLOOR = 1e-6


def _lost_in_the_gram_matrix(got: dict[str, Any], want: dict[str, Any]) -> bool:
    """Whether ``got`` is right except for singular values that are tiny next to the largest: what the
    square roots of the eigenvalues of JᵀJ give (its eigenvalues carry an error of eps·σ_max²)."""
    g, w = got.get("singular_values"), want.get("singular_values")
    if not isinstance(g, np.ndarray) or not isinstance(w, np.ndarray) or g.shape != w.shape or w.size == 0:
        return False
    top = float(np.abs(w).max())
    tiny = np.abs(w) < _GRAM_FLOOR * top
    if not tiny.any() or not np.allclose(g[~tiny], w[~tiny], rtol=1e-5, atol=1e-12 * top):
        return False
    rest = g[tiny]
    return bool(np.all(~np.isfinite(rest) | (np.abs(rest) < 10 * _GRAM_FLOOR * top)))


def _compare_jacobian(case: Case, got: dict[str, Any], want: dict[str, Any]) -> str | None:
    problem = _compare_outputs(case, got, want, {"singular_values": "the singular values of ∂h_L/∂x, largest first"})
    if problem and _lost_in_the_gram_matrix(got, want):
        problem += (" The large singular values are right and only the tiny ones (below about 1e-6 of the "
                    "largest) are off: that is what √(eigenvalues of JᵀJ) gives. Forming JᵀJ squares the "
                    "condition number, and its eigenvalues carry an error of about 1e-16·σ_max², so every "
                    "singular value below √(1e-16)·σ_max ≈ 1e-8·σ_max drowns in round-off. Take "
                    "np.linalg.svd(J, compute_uv=False) of J itself.")
    return problem


def _jacobian_case(label: str, net: dict[str, Any], group: str) -> Case:
    return Case(f"{label} [{_describe_net(net)}]", {"net": net, "tol": [1e-6, 1e-9]}, group)


def _jacobian_cases(level: str, seed: int) -> list[Case]:
    rng = np.random.default_rng([seed, 103])
    cases = [
        _jacobian_case("a 3-layer tanh network", _network(rng, (4, 4, 4, 4), "tanh", weight_std=0.9, batch=None),
                       "square networks"),
        _jacobian_case("a 2-layer sigmoid network", _network(rng, (3, 3, 3), "sigmoid", weight_std=1.2, batch=None),
                       "square networks"),
    ]
    if level == "hidden":
        cases += [
            _jacobian_case("a deep tanh network", _network(rng, (8,) * 9, "tanh", weight_std=0.5, bias_std=0.5,
                                                           batch=None), "deep networks"),
            _jacobian_case("a deep sigmoid network", _network(rng, (6,) * 8, "sigmoid", weight_std=0.8, bias_std=1.0,
                                                              batch=None), "deep networks"),
            _jacobian_case("a ReLU network", _network(rng, (10,) * 6, "relu", weight_std=0.5, batch=None),
                           "ReLU and linear networks"),
            _jacobian_case("a linear network", _network(rng, (5,) * 5, "linear", weight_std=0.7, batch=None),
                           "ReLU and linear networks"),
            _jacobian_case("wide to narrow (tanh)", _network(rng, (7, 5, 3), "tanh", batch=None),
                           "layers of different widths"),
            _jacobian_case("narrow to wide (sigmoid)", _network(rng, (3, 6, 8), "sigmoid", weight_std=1.5,
                                                                batch=None), "layers of different widths"),
            _jacobian_case("one layer", _network(rng, (5, 4), "tanh", weight_std=1.0, batch=None),
                           "one layer"),
        ]
    return cases


# ----------------------------------------------------------------------------------------------
# Exercise 4: grad_norm_monitor, graded by what a training loop does with it


_ACTIVATION_MODULES = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "ReLU"}


def _build_model(spec: dict[str, Any]):
    """``(model, linears)``: a float64 ``nn.Sequential`` with the case's weights (hidden layers Linear +
    activation, a last Linear; with ``nested``, each hidden (Linear, activation) pair is its own
    ``nn.Sequential``) and its Linear layers in order. Few Python calls: under the grader's watch
    (``guard.watched``) each one costs about twice as much."""
    import torch
    from torch import nn

    blocks, linears = [], []
    last = len(spec["weights"]) - 1
    for i, w in enumerate(spec["weights"]):
        layer = nn.Linear(w.shape[1], w.shape[0], bias=spec["bias"], dtype=torch.float64)
        linears.append(layer)
        blocks.append([layer] if i == last else [layer, getattr(nn, _ACTIVATION_MODULES[spec["activation"]])()])
    with torch.no_grad():
        for layer, w, b in zip(linears, spec["weights"], spec["biases"]):
            layer.weight.copy_(torch.from_numpy(w))
            if spec["bias"]:
                layer.bias.copy_(torch.from_numpy(b))
    for i in spec.get("frozen", ()):  # a frozen weight: no gradient, weight.grad stays None
        linears[i].weight.requires_grad_(False)
    if spec["nested"]:
        return nn.Sequential(*[nn.Sequential(*block) if len(block) > 1 else block[0] for block in blocks]), linears
    return nn.Sequential(*[module for block in blocks for module in block]), linears


def _touched(params: list, saved: list) -> str | None:
    """``"cleared"``, ``"changed"`` or None: what the monitor did to the gradients it was given."""
    import torch

    for p, before in zip(params, saved):
        now = p.grad
        if before is None:
            if now is not None:
                return "changed"
        elif now is None:
            return "cleared"
        elif not isinstance(now, torch.Tensor) or now.shape != before.shape:
            return "changed"
        elif not torch.equal(now, before) and not bool(((now == before) | (now.isnan() & before.isnan())).all()):
            return "changed"
    return None


def _run_monitor(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    import torch

    from .rng import cpu_rng

    spec = case.inputs["spec"]
    with cpu_rng(0):  # nn.Linear's init draws (overwritten): the student's random state stays as it was
        model, linears = _build_model(spec)
        x, y = torch.from_numpy(spec["x"]), torch.from_numpy(spec["y"])
        lr = spec["lr"]
        weights = [layer.weight for layer in linears]
        params = [p for layer in linears for p in (layer.weight, layer.bias) if p is not None]  # model.parameters()
        norms, flags, losses, clipped, touched = [], [], [], 0, None
        for step in range(spec["steps"]):
            for p in params:  # zero_grad (plain SGD by hand: torch.optim's first step imports torch._dynamo, seconds)
                p.grad = None
            loss = ((model(x) - y) ** 2).mean()
            loss.backward()
            losses.append(loss.item())
            # what backward() left: copies where the case checks that the monitor only reads, else the tensors
            # themselves (put back, they undo a zero_grad(), which sets .grad to None, at no cost)
            reads_only = spec.get("reads_only", False)
            saved = [None if p.grad is None else p.grad.clone() if reads_only else p.grad for p in params]
            returned, error = _call(fn, model, low=spec["low"], high=spec["high"])
            if reads_only and touched is None and (what := _touched(params, saved)):
                touched = [step, what]
            for p, grad in zip(params, saved):  # the loop steps with the gradients backward() left
                p.grad = grad
            if error:
                return error
            if not isinstance(returned, (tuple, list)) or len(returned) != 2:
                return {"bad_return": "expected a pair (norms, flags): an array of norms and a list of flags, "
                                      f"got {type(returned).__name__}"}
            step_norms = _as_array(returned[0])
            if step_norms is None or step_norms.ndim != 1:
                return {"bad_return": "norms must be a 1-D array (or list) of numbers, one per Linear layer"}
            try:
                step_flags = [str(f) for f in returned[1]]
            except TypeError:
                return {"bad_return": "flags must be a list of strings, one per Linear layer"}
            norms.append(step_norms)
            flags.append(step_flags)
            with torch.no_grad():
                if "exploding" in step_flags:  # the loop's guard: bring each exploding layer's gradient to norm `high`
                    clipped += 1
                    for weight, flag, norm in zip(weights, step_flags, step_norms):
                        if flag == "exploding" and weight.grad is not None and np.isfinite(norm) and norm > 0:
                            weight.grad.mul_(spec["high"] / float(norm))
                for p in params:
                    if p.grad is not None:
                        p -= lr * p.grad
    if len({n.shape for n in norms}) > 1:
        return {"bad_return": "norms must have the same length at every step (one entry per Linear layer)"}
    return {"norms": np.stack(norms), "flags": flags, "losses": np.array(losses), "clipped": clipped,
            "touched": touched}


def _compare_monitor(case: Case, got: dict[str, Any], want: dict[str, Any]) -> str | None:
    problem = _compare_outputs(case, got, want, {
        "norms": "the per-layer weight-gradient norms at every step (rows: steps, columns: Linear layers in order)",
    })
    if problem or "flags" not in got or "flags" not in want:  # an error or a malformed return: said above
        return problem
    for step, (g, w) in enumerate(zip(got["flags"], want["flags"])):
        if g != w:
            return f"the flags at step {step}: expected {w}, got {g}."
    if len(got["flags"]) != len(want["flags"]):
        return f"the loop ran {len(got['flags'])} steps, expected {len(want['flags'])}."
    if got["clipped"] != want["clipped"]:
        return (f"the training loop rescaled exploding layers at {got['clipped']} steps, expected "
                f"{want['clipped']}.")
    if case.inputs["spec"].get("reads_only") and got.get("touched") != want.get("touched"):
        if not got.get("touched"):
            return "the gradients after the monitor are the ones backward() left, expected them to be changed."
        step, what = got["touched"]
        if what == "cleared":
            return (f"your monitor cleared the gradients at step {step} (model.zero_grad(), or .grad = None): the "
                    "training loop steps with them after the monitor returns, so it would have nothing to step "
                    "with. A monitor only reads; zeroing belongs at the start of the next step, before backward().")
        return (f"your monitor changed the gradients at step {step}: a monitor only reads them (the loop put "
                "them back to grade the rest). Rescaling gradients is clipping (lesson 4), and it belongs to "
                "the training loop.")
    return _compare_outputs(case, got, want, {"losses": "the training losses"})


def _monitor_case(label: str, rng: np.random.Generator, widths: tuple[int, ...], activation: str, weight_std: float,
                  low: float, high: float, group: str, *, bias: bool = True, nested: bool = False, steps: int = 3,
                  lr: float = 0.1, batch: int = 16, frozen: tuple[int, ...] = (), nan_target: bool = False,
                  reads_only: bool = False) -> Case:
    net = _network(rng, widths, activation, weight_std=weight_std, bias_std=0.1 if bias else 0.0, batch=batch)
    for i, w in enumerate(net["weights"]):  # weight_std is relative to 1/sqrt(fan_in)
        net["weights"][i] = w / math.sqrt(w.shape[1])
    y = rng.normal(0.0, 1.0, size=(batch, widths[-1]))
    if nan_target:  # one corrupted target: the loss is NaN, and so is every gradient
        y[0, 0] = np.nan
    spec = {"weights": net["weights"], "biases": net["biases"], "x": net["x"], "y": y, "activation": activation,
            "bias": bias, "nested": nested, "steps": steps, "lr": lr, "low": low, "high": high,
            "frozen": list(frozen), "reads_only": reads_only}
    extras = [("" if bias else "no biases"), ("nested Sequentials" if nested else ""),
              (f"layer {frozen[0] + 1}'s weight frozen (requires_grad=False: its .grad stays None)" if frozen else ""),
              ("a NaN in the targets" if nan_target else ""),
              ("checks that the gradients are unchanged after your monitor" if reads_only else "")]
    text = (f"{label} [{activation}, {len(widths) - 1} Linear layers of widths {widths}, weights "
            f"{weight_std:g}/sqrt(fan_in){''.join(', ' + e for e in extras if e)}, "
            f"low={low:g}, high={high:g}, {steps} SGD steps]")
    return Case(text, {"spec": spec, "tol": [1e-6, 1e-12]}, group)


def _monitor_cases(level: str, seed: int) -> list[Case]:
    rng = np.random.default_rng([seed, 104])
    cases = [
        _monitor_case("a deep sigmoid network: the first layers vanish", rng, (8,) * 9, "sigmoid", 1.0, 1e-4, 1e2,
                      "visible examples"),
        _monitor_case("a ReLU network with large weights: exploding layers rescaled", rng, (8,) * 6, "relu", 3.0, 1e-6, 1e2,
                      "visible examples", lr=0.01),
        _monitor_case("a frozen first layer: its norm is 0.0 (vanishing)", rng, (6,) * 5, "tanh", 1.0, 1e-4, 1e2,
                      "visible examples", frozen=(0,), steps=1),
    ]
    if level == "hidden":
        cases += [
            _monitor_case("a tanh network, every layer ok", rng, (6, 10, 10, 10, 3), "tanh", 1.0, 1e-8, 1e8,
                          "norms per layer, in order", steps=1),
            _monitor_case("a sigmoid network of different widths", rng, (5, 12, 7, 9, 4, 2), "sigmoid", 2.0,
                          1e-8, 1e8, "norms per layer, in order", steps=1),
            _monitor_case("vanishing and exploding flags", rng, (8,) * 12, "sigmoid", 1.0, 1e-3, 1e-1,
                          "flags and what the loop does with them"),
            _monitor_case("exploding ReLU layers are rescaled", rng, (10,) * 8, "relu", 3.0,
                          1e-8, 50.0, "flags and what the loop does with them", lr=0.01),
            _monitor_case("NaN gradients are flagged exploding, not ok", rng, (6,) * 4, "tanh", 1.0, 1e-4, 1e2,
                          "flags and what the loop does with them", nan_target=True, steps=1),
            _monitor_case("layers nested in Sequentials", rng, (6,) * 6, "tanh", 1.5, 1e-8, 1e8,
                          "nested models, layers without bias, frozen layers", nested=True, steps=1),
            _monitor_case("Linear layers without bias", rng, (6,) * 5, "relu", 1.5, 1e-8, 1e8,
                          "nested models, layers without bias, frozen layers", bias=False, steps=1),
            _monitor_case("a frozen middle layer inside nested Sequentials", rng, (7,) * 5, "sigmoid", 1.0, 1e-8, 1e8,
                          "nested models, layers without bias, frozen layers", nested=True, frozen=(2,), steps=1),
            _monitor_case("the gradients after your monitor are the ones backward() left", rng, (6,) * 5, "relu", 3.0,
                          1e-4, 50.0, "the monitor only reads the gradients", reads_only=True, lr=0.01, steps=2),
        ]
    return cases


# ----------------------------------------------------------------------------------------------

_PARTS = {  # exercise -> (cases, run, compare, mutant catalogue in vanishing_mutants)
    "backprop_grad_norms": (_backprop_cases, _run_backprop, _compare_backprop, "BACKPROP"),
    "log_grad_slope": (_slope_cases, _run_slope, _compare_slope, "SLOPE"),
    "jacobian_singular_values": (_jacobian_cases, _run_jacobian, _compare_jacobian, "JACOBIAN"),
    "grad_norm_monitor": (_monitor_cases, _run_monitor, _compare_monitor, "MONITOR"),
}

EXERCISES: dict[str, Exercise] = {
    name: Exercise(name=name, reference=f"stabletrain.vanishing:{name}", make_cases=cases, run=run, compare=compare,
                   mutants=f"{__name__}_mutants:{catalogue}")
    for name, (cases, run, compare, catalogue) in _PARTS.items()
}
