"""Exercises of lesson 02: ``activation_and_grad``, ``saturation_fraction``, ``count_dead_neurons``,
``second_moment``, ``variance_preserving_gain`` and ``recycle_dead_units_`` (dead units in a real
training loop).

Cases are plain data. A runner builds what the student's function receives (numpy arrays,
tensors, small ``nn.Sequential`` models, a recording ``second_moment``), calls it, and records what
it returned and what it did — hooks left on a model, parameters replaced rather than written into,
the network's outputs before and after, whether a recycled unit trains again — as plain data, so a
mistake shows up as a named behaviour and not only as a wrong number.

Nothing here imports the answer key (``stabletrain.activations``): a grading kernel builds and runs
cases only. Every case belongs to a group (``Case.group``); a graded cell earns its points in
proportion to the groups whose cases all pass, and a function that does nothing fails every group.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from .base import Case, Exercise, describe_value, raised

#: stabletrain modules that are this lesson's answer keys
REFERENCE_MODULES = ("activations",)


def _quiet(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` with warnings and numpy's floating-point messages silenced (not wrong answers)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return fn(*args)


def _as_numpy(value: Any) -> np.ndarray | None:
    """An ndarray for an array or a tensor (detached, on the CPU), else None."""
    if isinstance(value, np.ndarray):
        return value
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return None


def _at(z: np.ndarray, index: tuple[int, ...]) -> str:
    return f"z = {float(z[index]):.6g}"


# ----------------------------------------------------------------------------------------------
# Exercise 1: activation_and_grad(name, z) -> (f(z), f'(z))

_A_SATURATING = "sigmoid and tanh: values and slopes, finite for every z (no overflow of e^(−z))"
_A_KINKS = "ReLU, Leaky ReLU and ELU: PyTorch's slope at the kink z = 0"
_A_SMOOTH = "GELU (exact, with erf), its tanh approximation, and SiLU: the product and chain rules"
_A_DTYPES = "float32 stays float32, any shape, and an unknown name raises ValueError"
_A_TOL = {"float64": (1e-9, 1e-12), "float32": (1e-5, 1e-6)}

_AROUND_ZERO = [-1e-7, -1e-30, 0.0, 1e-30, 1e-7]


def _grid(rng: np.random.Generator, n: int = 9, scale: float = 3.0) -> list[float]:
    return sorted(float(v) for v in np.round(scale * rng.standard_normal(n), 4))


def _act_case(label: str, name: str, z: Any, group: str, dtype: str = "float64") -> Case:
    z = np.asarray(z, dtype=dtype)
    text = f"{label} [{name}, {dtype} z of shape {z.shape}]"
    return Case(text, {"name": name, "z": z, "tol": list(_A_TOL[dtype])}, group)


def _act_cases(level: str, seed: int) -> list[Case]:
    rng = np.random.default_rng([seed, 201])
    case = _act_case
    cases = [
        case("worked example: sigmoid at z = [−1000, 0, 2] is [0, 0.5, 0.8808] with slopes [0, 0.25, 0.105] "
             "(e^1000 overflows: compute with e^(−|z|))", "sigmoid", [-1000.0, 0.0, 2.0], _A_SATURATING),
        case("tanh on a grid and far out", "tanh", [-800.0, *_grid(rng), 800.0], _A_SATURATING),
        case("ReLU around its kink", "relu", [-2.0, *_AROUND_ZERO, 1.5], _A_KINKS),
        case("Leaky ReLU around its kink", "leaky_relu", [-2.0, *_AROUND_ZERO, 1.5], _A_KINKS),
        case("ELU around its kink", "elu", [-30.0, -2.0, *_AROUND_ZERO, 1.5], _A_KINKS),
        case("GELU, exact", "gelu", [-6.0, *_grid(rng), 0.0, 6.0], _A_SMOOTH),
        case("GELU, tanh approximation", "gelu_tanh", [-6.0, *_grid(rng), 0.0, 6.0], _A_SMOOTH),
        case("SiLU", "silu", [-40.0, *_grid(rng), 0.0, 40.0], _A_SMOOTH),
        case("float32 in, float32 out", "relu", [-1.5, -0.5, 0.0, 0.5, 2.0], _A_DTYPES, dtype="float32"),
    ]
    if level != "hidden":
        return cases
    far = [-1000.0, -100.0, -40.0, 40.0, 100.0, 1000.0]
    far32 = [-100.0, -89.0, -88.0, 88.0, 89.0, 100.0]  # e^88.7 overflows float32
    matrix = (2.5 * rng.standard_normal((3, 4, 5))).astype("float32")
    cases += [
        case("sigmoid far out", "sigmoid", [*far, *_grid(rng)], _A_SATURATING),
        case("sigmoid far out in float32", "sigmoid", [*far32, *_grid(rng)], _A_SATURATING, dtype="float32"),
        case("tanh far out in float32", "tanh", [*far32, *_grid(rng)], _A_SATURATING, dtype="float32"),
        case("ELU's neighbours of 0 in float32", "elu", [-1e-30, 0.0, 1e-30, -3.0],
             _A_KINKS, dtype="float32"),
        case("Leaky ReLU far out", "leaky_relu", [*far, 0.0], _A_KINKS),
        case("ELU far out", "elu", [*far, 0.0], _A_KINKS),
        case("ReLU far out in float32", "relu", [*far32, 0.0], _A_KINKS, dtype="float32"),
        case("GELU far out", "gelu", [*far, *_AROUND_ZERO], _A_SMOOTH),
        case("GELU, tanh approximation, far out", "gelu_tanh", [*far, *_AROUND_ZERO], _A_SMOOTH),
        case("SiLU far out", "silu", [*far, *_AROUND_ZERO], _A_SMOOTH),
        case("GELU in float32", "gelu", [-10.0, *_grid(rng), 10.0], _A_SMOOTH, dtype="float32"),
        case("SiLU in float32", "silu", [*far32, *_grid(rng)], _A_SMOOTH, dtype="float32"),
        case("a 3-D float32 array (tanh)", "tanh", matrix, _A_DTYPES, dtype="float32"),
        case("a 3-D float32 array (Leaky ReLU)", "leaky_relu", matrix, _A_DTYPES, dtype="float32"),
        case("a 3-D float32 array (GELU, tanh approximation)", "gelu_tanh", matrix, _A_DTYPES, dtype="float32"),
        case("an unknown name raises ValueError", "swish", [0.0, 1.0], _A_DTYPES),
    ]
    return cases


def _run_act(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    z = case.inputs["z"].copy()
    try:
        returned = _quiet(fn, case.inputs["name"], z)
    except Exception as exc:  # the function's error is part of its behaviour
        return raised(exc)
    if not isinstance(returned, (tuple, list)) or len(returned) != 2:
        return {"raised": None, "bad_return": f"expected a pair (f(z), f'(z)), got {type(returned).__name__}"}
    out: dict[str, Any] = {"raised": None}
    for key, value in zip(("value", "slope"), returned):
        arr = _as_numpy(value)
        if arr is None or arr.dtype.kind not in "biuf":
            return {"raised": None, "bad_return": f"f(z) and f'(z) must be numpy arrays, got {type(value).__name__}"}
        out[key] = np.array(arr, copy=True)
        out[f"{key}_dtype"] = str(arr.dtype)
    return out


def _outcome(got: dict[str, Any], want: dict[str, Any], expected: str = "") -> tuple[bool, str | None]:
    """(decided, problem) from what was raised or returned badly: ``decided`` when either raised or
    came back malformed (equal outcomes agree: a mutant that raises matches a student who raises)."""
    g_raised, w_raised = got.get("raised"), want.get("raised")
    if w_raised or g_raised:
        if g_raised == w_raised:
            return True, None
        if w_raised:
            came = f"raised {g_raised}" if g_raised else "returned normally"
            return True, f"expected {w_raised}{expected}, but your function {came}."
        return True, f"your function raised {g_raised}: {got.get('message', '')}"
    if "bad_return" in got or "bad_return" in want:
        return True, None if got.get("bad_return") == want.get("bad_return") else got.get("bad_return")
    return False, None


def _compare_act(case: Case, got: dict[str, Any], want: dict[str, Any]) -> str | None:
    decided, problem = _outcome(got, want, f" for the unknown name {case.inputs['name']!r}")
    if decided:
        return problem
    z = case.inputs["z"]
    rtol, atol = case.inputs["tol"]
    for key, what in (("value", "f(z)"), ("slope", "f′(z)")):
        g, w = got[key], want[key]
        if g.shape != w.shape:
            return f"{what} has shape {g.shape}, expected {w.shape} (the shape of z)."
        if got[f"{key}_dtype"] != want[f"{key}_dtype"]:
            return (f"{what} came back as {got[f'{key}_dtype']} for a {want[f'{key}_dtype']} z: keep z's dtype "
                    "(a float64 constant array such as np.where(z > 0, 1.0, 0.01) turns float32 into float64; "
                    "add .astype(z.dtype)).")
        gd, wd = g.astype(np.float64), w.astype(np.float64)
        ok = np.isclose(gd, wd, rtol=rtol, atol=atol, equal_nan=True) | (gd == wd)
        if not ok.all():
            index = tuple(int(i) for i in np.argwhere(~ok)[0])
            bad = float(gd[index])
            note = ""
            if not math.isfinite(bad) and math.isfinite(float(wd[index])):
                note = " — a non-finite value where the true one is finite: an overflow (e^1000 = inf, inf/inf = nan)"
            return (f"{what} at {_at(z, index)} ({case.inputs['name']}): expected {float(wd[index]):.10g}, "
                    f"got {bad:.10g}{note}.")
    return None


# ----------------------------------------------------------------------------------------------
# Exercise 2: saturation_fraction(a, activation, tol=0.06)

_S_BOUNDED = "sigmoid and tanh: the slope from the output, relative to the largest slope"
_S_PIECEWISE = "ReLU, Leaky ReLU and ELU: their flat sides"
_S_INPUTS = "tensors and arrays of any shape, and the tol argument"


def _forward_np(name: str, z: np.ndarray) -> np.ndarray:
    """The activation's output, to build the case's ``a`` (float64)."""
    if name == "sigmoid":
        e = np.exp(-np.abs(z))
        return np.where(z >= 0, 1 / (1 + e), e / (1 + e))
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "leaky_relu":
        return np.where(z > 0, z, 0.01 * z)
    if name == "elu":
        return np.where(z > 0, z, np.expm1(np.minimum(z, 0.0)))
    raise ValueError(name)


def _sat_case(label: str, activation: str, a: np.ndarray, group: str, kind: str = "ndarray",
              tol: float | None = None) -> Case:
    text = f"{label} [{activation}, a of shape {a.shape} as a {kind}" + (f", tol={tol:g}" if tol is not None else "")
    return Case(text + "]", {"a": a, "activation": activation, "kind": kind, "tol": tol}, group)


def _sat_cases(level: str, seed: int) -> list[Case]:
    rng = np.random.default_rng([seed, 202])

    def a_of(name: str, sigma: float, shape: tuple[int, ...] = (48, 21)) -> np.ndarray:
        return _forward_np(name, sigma * rng.standard_normal(shape)).astype("float32")

    cases = [
        _sat_case("worked example: tanh outputs [−0.99, −0.5, 0, 0.98] — slopes 1 − a² = [0.02, 0.75, 1, 0.04]: "
                  "half are below 0.06", "tanh", np.array([-0.99, -0.5, 0.0, 0.98], dtype="float32"), _S_BOUNDED),
        _sat_case("sigmoid outputs of z ~ N(0, 3²)", "sigmoid", a_of("sigmoid", 3.0), _S_BOUNDED),
        _sat_case("ReLU outputs", "relu", a_of("relu", 1.0), _S_PIECEWISE),
        _sat_case("ELU outputs of z ~ N(0, 2²)", "elu", a_of("elu", 2.0), _S_PIECEWISE),
        _sat_case("tanh outputs as a tensor", "tanh", a_of("tanh", 2.0), _S_INPUTS, kind="tensor"),
    ]
    if level == "hidden":
        cases += [
            _sat_case("tanh outputs of z ~ N(0, 5²)", "tanh", a_of("tanh", 5.0), _S_BOUNDED),
            _sat_case("sigmoid outputs of z ~ N(0, 8²), as a tensor", "sigmoid", a_of("sigmoid", 8.0), _S_BOUNDED,
                      kind="tensor"),
            _sat_case("sigmoid outputs of z ~ N(0, 0.5²): nothing saturated", "sigmoid", a_of("sigmoid", 0.5),
                      _S_BOUNDED),
            _sat_case("Leaky ReLU outputs", "leaky_relu", a_of("leaky_relu", 1.0), _S_PIECEWISE),
            _sat_case("ELU outputs of z ~ N(0, 5²), as a tensor", "elu", a_of("elu", 5.0), _S_PIECEWISE,
                      kind="tensor"),
            _sat_case("ReLU outputs of a 3-D batch, as a tensor", "relu", a_of("relu", 2.0, (4, 6, 9)), _S_PIECEWISE,
                      kind="tensor"),
            _sat_case("tanh with tol = 0.2", "tanh", a_of("tanh", 2.0), _S_INPUTS, tol=0.2),
            _sat_case("sigmoid with tol = 0.01, a 3-D tensor", "sigmoid", a_of("sigmoid", 4.0, (5, 7, 8)), _S_INPUTS,
                      kind="tensor", tol=0.01),
            _sat_case("ELU with tol = 0.3", "elu", a_of("elu", 2.0), _S_INPUTS, tol=0.3),
        ]
    return cases


def _run_sat(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    a = case.inputs["a"].copy()
    if case.inputs["kind"] == "tensor":
        import torch

        a = torch.from_numpy(a)
    args = (a, case.inputs["activation"]) if case.inputs["tol"] is None else (a, case.inputs["activation"],
                                                                              case.inputs["tol"])
    try:
        returned = _quiet(fn, *args)
    except Exception as exc:
        return raised(exc)
    try:
        return {"raised": None, "fraction": float(returned)}
    except (TypeError, ValueError, RuntimeError):
        return {"raised": None, "bad_return": f"expected a number, got {type(returned).__name__}"}


def _compare_sat(case: Case, got: dict[str, Any], want: dict[str, Any]) -> str | None:
    decided, problem = _outcome(got, want)
    if decided:
        return problem
    size = case.inputs["a"].size
    if abs(got["fraction"] - want["fraction"]) <= 1.5 / size:  # one entry at the boundary may round either way
        return None
    return f"the saturated fraction: expected {want['fraction']:.6g}, got {got['fraction']:.6g}."


# ----------------------------------------------------------------------------------------------
# Models as plain data (Exercises 3 and 6)


def _mlp_spec(rng: np.random.Generator, widths: tuple[int, ...], n: int, *, activation: str = "relu",
              dead: dict[int, list[int]] | None = None, zero: dict[int, list[int]] | None = None,
              almost: dict[int, list[int]] | None = None, negative_outputs: list[int] | None = None,
              structure: str = "sequential") -> dict[str, Any]:
    """An MLP with planted units: ``dead[l]`` (hidden layer l, 0-based) are off for every example,
    ``zero[l]`` have zero weights and bias (pre-activation exactly 0), ``almost[l]`` are on for
    exactly one example; ``negative_outputs`` are outputs ≤ 0 on every example."""
    x = rng.standard_normal((n, widths[0])).astype("float32")
    weights = [(rng.standard_normal((o, i)) * math.sqrt(2.0 / i)).astype("float32") for i, o in
               zip(widths[:-1], widths[1:])]
    biases = [(0.1 * rng.standard_normal(o)).astype("float32") for o in widths[1:]]
    h = x.astype(np.float64)
    slope = 0.01 if activation == "leaky_relu" else 0.0
    for layer, (w, b) in enumerate(zip(weights, biases)):
        last = layer == len(weights) - 1
        z = h @ w.T.astype(np.float64) + b
        for j in (negative_outputs or []) if last else (dead or {}).get(layer, []):
            b[j] -= np.float32(z[:, j].max() + 0.5)  # now ≤ −0.5 on every example
        for j in [] if last else (almost or {}).get(layer, []):
            second, first = np.sort(z[:, j])[-2:]  # the midpoint of the two largest: on for one example only
            b[j] -= np.float32((first + second) / 2)
        for j in [] if last else (zero or {}).get(layer, []):
            w[j] = 0.0
            b[j] = 0.0
        z = h @ w.T.astype(np.float64) + b.astype(np.float64)
        h = np.where(z > 0, z, slope * z)
    return {"weights": weights, "biases": biases, "x": x, "activation": activation, "structure": structure}


def _build(spec: dict[str, Any]):
    """``(model, linears, activations)``: a float32 model with the case's weights.

    ``structure``: "sequential" (Linear, act, …, Linear), "nested" (each hidden pair its own
    ``nn.Sequential``), "shared" (a custom Module calling one activation object after every hidden
    layer) or "inplace" (``nn.ReLU(inplace=True)``)."""
    import torch
    from torch import nn

    from .rng import cpu_rng

    act_cls = nn.LeakyReLU if spec["activation"] == "leaky_relu" else nn.ReLU
    with cpu_rng(0), torch.no_grad():  # nn.Linear's own init draws (overwritten) leave the student's RNG alone
        linears = []
        for w, b in zip(spec["weights"], spec["biases"]):
            layer = nn.Linear(w.shape[1], w.shape[0])
            layer.weight.copy_(torch.from_numpy(w))
            layer.bias.copy_(torch.from_numpy(b))
            linears.append(layer)
    structure = spec["structure"]
    if structure == "shared":
        act = act_cls()
        return _shared_activation_class()(linears, act), linears, [act]
    acts = [act_cls(inplace=True) if structure == "inplace" else act_cls() for _ in linears[:-1]]
    if structure == "nested":
        blocks = [nn.Sequential(layer, act) for layer, act in zip(linears[:-1], acts)]
        return nn.Sequential(*blocks, linears[-1]), linears, acts
    modules = [m for pair in zip(linears[:-1], acts) for m in pair] + [linears[-1]]
    return nn.Sequential(*modules), linears, acts


@functools.cache
def _shared_activation_class() -> type:
    """An MLP that calls one activation module after every hidden layer (defined on first use:
    torch is imported lazily)."""
    from torch import nn

    class SharedActivation(nn.Module):
        def __init__(self, linears, act):
            super().__init__()
            self.layers = nn.ModuleList(linears)
            self.act = act

        def forward(self, x):
            for layer in self.layers[:-1]:
                x = self.act(layer(x))
            return self.layers[-1](x)

    return SharedActivation


def _side_effects(model, linears, acts) -> dict[str, Any]:
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in [model, *linears, *acts])
    return {"hooks_left": int(hooks), "training": bool(model.training)}


# ----------------------------------------------------------------------------------------------
# Exercise 3: count_dead_neurons(model, data)

_D_DEFINITION = "a unit is dead when its pre-activation is ≤ 0 for every example (hidden units only)"
_D_MODELS = "nested blocks, one ReLU object used after every layer, in-place ReLUs, Leaky ReLU"
_D_CLEAN = "hooks removed and the model left as it was"


def _dead_case(label: str, spec: dict[str, Any], group: str, twice: bool = False) -> Case:
    widths = [spec["weights"][0].shape[1]] + [w.shape[0] for w in spec["weights"]]
    text = (f"{label} [{spec['activation']}, widths {tuple(widths)}, {spec['x'].shape[0]} examples, "
            f"{spec['structure']} model]")
    return Case(text, {"spec": spec, "twice": twice}, group)


def _dead_cases(level: str, seed: int) -> list[Case]:
    rng = np.random.default_rng([seed, 203])
    cases = [
        _dead_case("worked example: units 2 and 5 of the first hidden layer are off for all 16 examples; unit 0 "
                   "of the second is on for one example only (alive)",
                   _mlp_spec(rng, (4, 8, 6, 3), 16, dead={0: [2, 5]}, almost={1: [0]}), _D_DEFINITION),
        _dead_case("a unit with zero weights and zero bias (pre-activation exactly 0) and an output that is "
                   "negative for every example", _mlp_spec(rng, (5, 10, 7, 2), 20, dead={1: [3]}, zero={0: [4]},
                                                           negative_outputs=[1]), _D_DEFINITION),
        _dead_case("Leaky ReLU: the same test on the pre-activation", _mlp_spec(
            rng, (3, 9, 9, 2), 24, activation="leaky_relu", dead={0: [1, 7], 1: [0]}), _D_MODELS),
        _dead_case("no hooks left behind", _mlp_spec(rng, (4, 6, 3), 12, dead={0: [0]}), _D_CLEAN),
    ]
    if level == "hidden":
        cases += [
            _dead_case("units on for a single example are alive", _mlp_spec(rng, (6, 12, 10, 4), 30,
                       dead={1: [9]}, almost={0: [1, 11], 1: [2]}), _D_DEFINITION),
            _dead_case("many dead units in a deeper network", _mlp_spec(
                rng, (5, 16, 12, 12, 3), 40, dead={0: [0, 3, 15], 1: [5, 6], 2: [11]}, zero={2: [0]},
                negative_outputs=[0, 2]), _D_DEFINITION),
            _dead_case("layers nested in Sequential blocks", _mlp_spec(
                rng, (4, 10, 8, 3), 20, dead={0: [2], 1: [7]}, structure="nested"), _D_MODELS),
            _dead_case("one nn.ReLU object called after every hidden layer", _mlp_spec(
                rng, (4, 9, 11, 2), 25, dead={0: [8], 1: [1, 10]}, structure="shared"), _D_MODELS),
            _dead_case("in-place ReLUs", _mlp_spec(rng, (3, 8, 8, 2), 18, dead={0: [0, 1], 1: [6]},
                                                  structure="inplace"), _D_MODELS),
            _dead_case("Leaky ReLU, nested", _mlp_spec(rng, (5, 7, 9, 3), 15, activation="leaky_relu",
                                                       dead={1: [4]}, zero={0: [6]}, structure="nested"), _D_MODELS),
            _dead_case("called twice on the same model", _mlp_spec(rng, (4, 10, 6, 2), 20, dead={0: [3], 1: [5]}),
                       _D_CLEAN, twice=True),
        ]
    return cases


def _run_dead(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    from ..threads import single_thread

    with single_thread():  # tiny models: in a grader process with several threads each op would wait for them
        return _run_dead_case(fn, case)


def _run_dead_case(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    import torch

    spec = case.inputs["spec"]
    model, linears, acts = _build(spec)
    data = torch.from_numpy(spec["x"].copy())
    twice = case.inputs["twice"]
    out: dict[str, Any] = {"raised": None}
    try:
        returned = [_quiet(fn, model, data) for _ in range(2 if twice else 1)]
    except Exception as exc:
        return {**raised(exc), **_side_effects(model, linears, acts)}
    counts: list[int | float] = []
    for value in returned:
        try:
            number = float(value)
            counts.append(int(number) if number.is_integer() else number)
        except (TypeError, ValueError, RuntimeError):
            return {"raised": None, "bad_return": f"expected a number of units, got {type(value).__name__}"}
    out["count"] = counts[-1] if not twice else counts
    out.update(_side_effects(model, linears, acts))
    return out


def _compare_dead(case: Case, got: dict[str, Any], want: dict[str, Any]) -> str | None:
    decided, problem = _outcome(got, want)
    if decided:
        return problem
    if got["count"] != want["count"]:
        return f"the number of dead units: expected {describe_value(want['count'])}, got {describe_value(got['count'])}."
    if got["hooks_left"] != want["hooks_left"]:
        return (f"{got['hooks_left']} hook(s) are still registered on the model afterwards: remove every hook you "
                "registered (handle.remove(), in a finally block), or each call adds more.")
    if got["training"] != want["training"]:
        return ("the model was left in eval mode: counting must not change the model (restore model.train() if "
                "you switch modes).")
    return None


# ----------------------------------------------------------------------------------------------
# Exercise 4: second_moment(activation, sigma)

_M_CLOSED = "piecewise-linear activations (linear, ReLU, Leaky ReLU): the closed form"
_M_QUAD = "smooth and saturating activations (sigmoid, tanh, ELU, SELU, GELU, SiLU): an integral to 1e-6"
_M_EDGE = "σ = 0 and arrays of σ"
_M_RTOL = 1e-6


def _moment_case(label: str, activation: str, sigma: Any, group: str) -> Case:
    shown = f"sigma={sigma!r}" if not isinstance(sigma, list) else f"sigma=np.array({sigma})"
    return Case(f"{label} [{activation}, {shown}]", {"activation": activation, "sigma": sigma}, group)


def _moment_cases(level: str, seed: int) -> list[Case]:
    rng = np.random.default_rng([seed, 204])

    def sigmas(n: int) -> list[float]:
        return [float(v) for v in np.round(np.exp(rng.uniform(np.log(0.2), np.log(6.0), n)), 3)]

    cases = [
        _moment_case("worked example: E[relu(z)²] for z ~ N(0, 2²) is 2²/2 = 2", "relu", 2.0, _M_CLOSED),
        _moment_case("Leaky ReLU", "leaky_relu", sigmas(1)[0], _M_CLOSED),
        _moment_case("tanh at σ = 1 (0.394294…)", "tanh", 1.0, _M_QUAD),
        _moment_case("the sigmoid at σ = 0: z is exactly 0, so E[σ(z)²] = σ(0)² = 1/4", "sigmoid", 0.0, _M_EDGE),
    ]
    if level == "hidden":
        cases += [
            _moment_case("linear", "linear", sigmas(1)[0], _M_CLOSED),
            _moment_case("ReLU, an array of σ", "relu", sigmas(4), _M_CLOSED),
            _moment_case("Leaky ReLU, large σ", "leaky_relu", 25.0, _M_CLOSED),
            _moment_case("sigmoid", "sigmoid", sigmas(1)[0], _M_QUAD),
            _moment_case("tanh, large σ", "tanh", 7.5, _M_QUAD),
            _moment_case("ELU", "elu", sigmas(1)[0], _M_QUAD),
            _moment_case("SELU at σ = 1 (its fixed point: 1)", "selu", 1.0, _M_QUAD),
            _moment_case("SELU", "selu", sigmas(1)[0], _M_QUAD),
            _moment_case("GELU", "gelu", sigmas(1)[0], _M_QUAD),
            _moment_case("SiLU", "silu", sigmas(1)[0], _M_QUAD),
            _moment_case("tanh, an array of σ with a 0", "tanh", [0.0, *sigmas(3)], _M_EDGE),
            _moment_case("ReLU at σ = 0", "relu", 0.0, _M_EDGE),
            _moment_case("GELU, an array of σ", "gelu", sigmas(3), _M_EDGE),
        ]
    return cases


def _run_moment(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    sigma = case.inputs["sigma"]
    arg = np.array(sigma, dtype=np.float64) if isinstance(sigma, list) else float(sigma)
    try:
        returned = _quiet(fn, case.inputs["activation"], arg)
    except Exception as exc:
        return raised(exc)
    arr = _as_numpy(returned)
    try:
        values = np.array(arr if arr is not None else returned, dtype=np.float64)
    except (TypeError, ValueError):
        return {"raised": None, "bad_return": f"expected a number or an array, got {type(returned).__name__}"}
    return {"raised": None, "value": values.reshape(-1), "shape": list(values.shape)}


def _compare_moment(case: Case, got: dict[str, Any], want: dict[str, Any]) -> str | None:
    decided, problem = _outcome(got, want)
    if decided:
        return problem
    if got["value"].size != want["value"].size:
        return (f"expected {want['value'].size} value(s), one per σ, got {got['value'].size} "
                f"(shape {tuple(got['shape'])}).")
    g, w = got["value"], want["value"]
    ok = np.isclose(g, w, rtol=_M_RTOL, atol=1e-12, equal_nan=True) | (g == w)
    if ok.all():
        return None
    i = int(np.argmin(ok))
    sigma = case.inputs["sigma"][i] if isinstance(case.inputs["sigma"], list) else case.inputs["sigma"]
    text = f"E[f(z)²] at σ = {sigma:g}: expected {w[i]:.10g}, got {g[i]:.10g}"
    relative = abs(g[i] - w[i]) / max(abs(w[i]), 1e-300)
    if math.isfinite(relative) and relative < 0.03:
        text += (f" — close (relative error {relative:.1e}) but not to {_M_RTOL:g}: a Monte-Carlo estimate, or a "
                 "quadrature that is coarse (too few nodes) or that steps over a kink? Use the closed form where "
                 "there is one and integrate each half-line separately otherwise")
    return text + "."


# ----------------------------------------------------------------------------------------------
# Exercise 5: variance_preserving_gain(activation, second_moment, q=1.0)

_G_FORMULA = "g = √(q / E[f(z)²])"
_G_STD = "z ~ N(0, q): second_moment takes the standard deviation √q"


@functools.cache
def _hermite_e_nodes() -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.hermite_e.hermegauss(120)


def _gauss_hermite_moment(activation: str, sigma: float) -> float:
    """E[f(σx)²], x ~ N(0, 1), for the gain exercise's recording ``second_moment``: closed forms for
    piecewise-linear f, probabilists' Gauss–Hermite (120 nodes) for smooth ones. Both the reference
    and the student's function receive this same function, so only consistency matters here."""
    slopes = {"linear": (1.0, 1.0), "relu": (1.0, 0.0), "leaky_relu": (1.0, 0.01)}.get(activation)
    if slopes is not None:
        return 0.5 * (slopes[0] ** 2 + slopes[1] ** 2) * sigma * sigma
    x, w = _hermite_e_nodes()
    z = sigma * x
    if activation == "tanh":
        f = np.tanh(z)
    elif activation == "sigmoid":
        f = _forward_np("sigmoid", z)
    elif activation == "silu":
        f = z * _forward_np("sigmoid", z)
    elif activation == "gelu":
        from scipy.special import ndtr

        f = z * ndtr(z)
    else:
        raise ValueError(f"unknown activation {activation!r}")
    return float(np.sum(w * f * f) / math.sqrt(2 * math.pi))


def _gain_cases(level: str, seed: int) -> list[Case]:
    del seed  # the cases do not depend on the grader's seed
    case = lambda label, act, q, group: Case(f"{label} [{act}, q={q!r}]", {"activation": act, "q": q}, group)  # noqa: E731
    cases = [
        case("worked example: ReLU at q = 1 — E[relu(z)²] = 1/2, so g = √2 (Kaiming's gain)", "relu", 1.0,
             _G_FORMULA),
        case("tanh at q = 0.25: second_moment('tanh', 0.5)", "tanh", 0.25, _G_STD),
    ]
    if level == "hidden":
        cases += [
            case("sigmoid at q = 1", "sigmoid", 1.0, _G_FORMULA),
            case("linear at q = 3: g = 1 whatever q", "linear", 3.0, _G_FORMULA),
            case("Leaky ReLU at q = 0.5", "leaky_relu", 0.5, _G_FORMULA),
            case("GELU at q = 2", "gelu", 2.0, _G_STD),
            case("SiLU at q = 4", "silu", 4.0, _G_STD),
            case("tanh at q = 9", "tanh", 9.0, _G_STD),
        ]
    return cases


def _run_gain(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    calls: list[list[Any]] = []

    def second_moment(activation, sigma):
        s = float(np.asarray(sigma, dtype=np.float64).reshape(-1)[0])
        calls.append([str(activation), s])
        return _gauss_hermite_moment(str(activation), s)

    try:
        returned = _quiet(fn, case.inputs["activation"], second_moment, case.inputs["q"])
    except Exception as exc:
        return {**raised(exc), "calls": calls}
    try:
        value = float(returned)
    except (TypeError, ValueError, RuntimeError):
        return {"raised": None, "bad_return": f"expected a number, got {type(returned).__name__}", "calls": calls}
    return {"raised": None, "gain": value, "sigmas": [c[1] for c in calls], "names": [c[0] for c in calls]}


def _compare_gain(case: Case, got: dict[str, Any], want: dict[str, Any]) -> str | None:
    decided, problem = _outcome(got, want)
    if decided:
        return problem
    q = case.inputs["q"]
    if math.isclose(got["gain"], want["gain"], rel_tol=1e-9):
        return None
    if got["names"] and any(n != case.inputs["activation"] for n in got["names"]):
        return f"second_moment was called for {got['names']}, expected {case.inputs['activation']!r}."
    if got["sigmas"] and set(got["sigmas"]) != set(want["sigmas"]):
        return (f"the gain: expected {want['gain']:.10g}, got {got['gain']:.10g}; second_moment was called with "
                f"sigma = {got['sigmas'][-1]:.6g}, and the pre-activation z ~ N(0, q) has standard deviation "
                f"√q = {math.sqrt(q):.6g}.")
    return f"the gain: expected {want['gain']:.10g}, got {got['gain']:.10g}."


# ----------------------------------------------------------------------------------------------
# Exercise 6: recycle_dead_units_(model, data), then a few steps of training

_R_FIND = "which units: off for every example, in the hidden layers only (pre-activation ≤ 0)"
_R_FIX = ("recycled: fresh incoming weights in U(±1/√fan_in), bias 0, outgoing column 0 — in place; the outputs "
          "stay the same and the units train again")
_R_STEPS = 3
_R_LR = 0.2
#: the fresh weights' root mean square, in units of nn.Linear's std, is checked on cases with at least
#: _R_SPREAD_N fresh entries and must be at least _R_SPREAD_MIN
_R_SPREAD_N = 50
_R_SPREAD_MIN = 0.3


def _recycle_case(label: str, spec: dict[str, Any], group: str, seed: int) -> Case:
    widths = [spec["weights"][0].shape[1]] + [w.shape[0] for w in spec["weights"]]
    text = f"{label} [ReLU, widths {tuple(widths)}, {spec['x'].shape[0]} examples]"
    return Case(text, {"spec": spec, "seed": seed}, group)


def _recycle_cases(level: str, seed: int) -> list[Case]:
    rng = np.random.default_rng([seed, 206])
    case = lambda label, spec, group: _recycle_case(label, spec, group, int(rng.integers(2**31)))  # noqa: E731
    cases = [
        case("worked example: unit 12 of the first hidden layer and unit 3 of the second are dead; the first "
             "hidden layer (14 units) feeds a layer of 10", _mlp_spec(rng, (6, 14, 10, 3), 32,
                                                                     dead={0: [12], 1: [3]}), _R_FIX),
        case("a unit on for one example only is alive; an output negative on every example is not a hidden unit",
             _mlp_spec(rng, (5, 12, 8, 3), 32, dead={0: [1]}, almost={0: [4]}, negative_outputs=[2]), _R_FIND),
    ]
    if level == "hidden":
        cases += [
            case("a unit with zero weights and bias: pre-activation exactly 0", _mlp_spec(
                rng, (5, 11, 9, 2), 32, zero={0: [10]}, dead={1: [2]}), _R_FIND),
            case("units on for a single example, and a layer without dead units", _mlp_spec(
                rng, (4, 10, 12, 3), 32, almost={0: [0, 9], 1: [11]}, dead={0: [5]}), _R_FIND),
            case("many dead units in the first hidden layer", _mlp_spec(
                rng, (8, 40, 10, 3), 48, dead={0: [0, 3, 7, 12, 18, 25, 33, 39]}), _R_FIX),
            case("a deeper network", _mlp_spec(rng, (5, 16, 13, 11, 4), 36, dead={0: [15], 1: [0, 12], 2: [10]}),
                 _R_FIX),
        ]
    return cases


def _run_recycle(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    from ..threads import single_thread

    with single_thread():  # tiny models and backward passes: one thread is faster, and never waits
        return _run_recycle_case(fn, case)


def _run_recycle_case(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    import torch

    from .rng import cpu_rng

    spec = case.inputs["spec"]
    model, linears, acts = _build(spec)
    x = torch.from_numpy(spec["x"].copy())
    params = [p for layer in linears for p in (layer.weight, layer.bias)]  # what an optimizer holds
    before = [p.detach().clone() for p in params]
    hidden = len(linears) - 1
    with torch.no_grad():
        out_before = model(x)
        pre, h = [], x
        for layer in linears[:-1]:
            pre.append(layer(h))
            h = torch.relu(pre[-1])
        dead = [(z <= 0).all(dim=0) for z in pre]
    try:
        with cpu_rng(case.inputs["seed"]):
            returned = _quiet(fn, model, x)
    except Exception as exc:
        return raised(exc)
    out: dict[str, Any] = {"raised": None}
    try:
        out["returned"] = float(returned)
    except (TypeError, ValueError, RuntimeError):
        out["returned"] = describe_value(returned) if returned is not None else None
    same = all(a is b for a, b in zip([p for layer in linears for p in (layer.weight, layer.bias)], params))
    same = same and all(m is layer for m, layer in zip([m for m in model.modules()
                                                        if isinstance(m, torch.nn.Linear)], linears))
    out["same_parameters"] = bool(same)
    with torch.no_grad():
        out_after = model(x)
        scale = 1.0 + float(out_before.abs().max())
        out["outputs_unchanged"] = bool((out_after - out_before).abs().max() <= 1e-5 * scale)
        checks = {"live_units_untouched": True, "dead_rows_redrawn": True, "dead_rows_in_range": True,
                  "dead_biases_reset": True, "outgoing_zeroed": True, "other_columns_untouched": True,
                  "output_layer_rows_untouched": True}
        revived = []
        for i in range(hidden):
            w0, b0, w1 = before[2 * i], before[2 * i + 1], before[2 * (i + 1)]
            w, b, nxt = linears[i].weight, linears[i].bias, linears[i + 1].weight
            mask = dead[i]
            bound = 1.0 / math.sqrt(w.shape[1]) * (1 + 1e-6)
            checks["live_units_untouched"] &= bool(torch.equal(w[~mask], w0[~mask]) and torch.equal(b[~mask], b0[~mask]))
            # rows of the next layer that belong to its own recycled units are redrawn whole, so the
            # column checks look at the other rows only (whichever layer was recycled first)
            kept = ~dead[i + 1] if i + 1 < hidden else torch.ones(nxt.shape[0], dtype=torch.bool)
            if mask.any():
                rows = w[mask]
                checks["dead_rows_redrawn"] &= bool((rows != w0[mask]).any(dim=1).all() and (rows != 0).any(dim=1).all())
                checks["dead_rows_in_range"] &= bool(rows.abs().max() <= bound)
                checks["dead_biases_reset"] &= bool(b[mask].abs().max() <= bound)
                checks["outgoing_zeroed"] &= bool((nxt[kept][:, mask] == 0).all())
            checks["other_columns_untouched"] &= bool(torch.equal(nxt[kept][:, ~mask], w1[kept][:, ~mask]))
            if i + 1 == hidden:
                checks["output_layer_rows_untouched"] &= bool(torch.equal(linears[-1].bias, before[-1]))
        out.update(checks)
        # spread of the fresh weights: nn.Linear's U(±1/√fan_in) has std 1/√(3·fan_in); in those units a
        # correct draw of n ≥ 50 entries falls below 0.3 with probability < 1e-6 (Bernstein's bound,
        # tests/test_activations_lab.py)
        fresh = [(linears[i].weight[dead[i]] * math.sqrt(3 * linears[i].weight.shape[1])).reshape(-1)
                 for i in range(hidden) if dead[i].any()]
        fresh = torch.cat(fresh) if fresh else torch.zeros(0)
        out["fresh_spread_ok"] = bool(fresh.numel() < _R_SPREAD_N or float(fresh.pow(2).mean().sqrt()) >= _R_SPREAD_MIN)
        h = x
        for i in range(hidden):
            z = linears[i](h)
            revived.append(((z > 0).any(dim=0) & dead[i]))
            h = torch.relu(z)
    out["first_layer_revived"] = bool(revived[0][dead[0]].all()) if dead[0].any() else True
    out["parameters_trainable"] = all(p.requires_grad for p in params)
    if not out["parameters_trainable"]:  # nothing can train (and backward() would raise here, in the grader)
        out["revived_units_train"] = False
        return out
    # training: a few SGD steps (mean squared error to fixed targets); each revived unit that the loss's
    # gradient reaches must learn. Its outgoing column starts at 0, so its incoming row gets no gradient
    # on the first step, and a unit revived on one or two examples can be switched off by that step's
    # change to the layers below before its row ever moves; or the examples it is on for may have no
    # unit of the next layer that passes a gradient back. Both depend on the fresh draw, which every
    # correct answer makes differently from the reference. What holds for every correct answer: the
    # first step is taken where the unit is on, and if the next layer's pre-activation gets a non-zero
    # gradient on one of those examples, the unit's outgoing column (exactly 0 in the rows of live
    # units) moves. So a reachable revived unit trains when its incoming row or outgoing column moves.
    gen = torch.Generator().manual_seed(case.inputs["seed"])
    targets = torch.randn(out_after.shape, generator=gen)
    h, zs = x.clone().requires_grad_(True), []
    for i in range(hidden + 1):
        zs.append(linears[i](h))
        h = torch.relu(zs[-1]) if i < hidden else zs[-1]
    deltas = torch.autograd.grad(((h - targets) ** 2).mean(), zs)
    reachable = [revived[i] & ((zs[i] > 0) & (deltas[i + 1] != 0).any(dim=1, keepdim=True)).any(dim=0)
                 for i in range(hidden)]
    start = [linears[i].weight.detach().clone() for i in range(hidden + 1)]
    for _ in range(_R_STEPS):
        for p in params:
            p.grad = None
        loss = ((model(x) - targets) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            for p in params:
                if p.grad is not None:
                    p -= _R_LR * p.grad
    trains = True
    for i in range(hidden):
        if reachable[i].any():
            moved = ((linears[i].weight.detach() != start[i]).any(dim=1)
                     | (linears[i + 1].weight.detach() != start[i + 1]).any(dim=0))
            trains &= bool(moved[reachable[i]].all())
    out["revived_units_train"] = trains
    return out


_RECYCLE_WHERE = {
    "returned": "the returned number of recycled units",
    "same_parameters": "whether the model still holds the same Parameter objects (work in place)",
    "outputs_unchanged": "whether the network's outputs on data are unchanged right after recycling",
    "live_units_untouched": "whether the units that are alive kept their weights and biases",
    "dead_rows_redrawn": "whether every dead unit got fresh, non-zero incoming weights",
    "dead_rows_in_range": "whether the fresh incoming weights lie in U(−1/√fan_in, 1/√fan_in)",
    "dead_biases_reset": "whether the recycled units' biases were reset (to 0)",
    "outgoing_zeroed": "whether the recycled units' outgoing weights (their columns in the next Linear) are 0",
    "other_columns_untouched": "whether the next layer's other columns (the live units' outgoing weights) kept "
                               "their values",
    "output_layer_rows_untouched": "whether the output layer's bias is untouched",
    "fresh_spread_ok": "whether the fresh weights have nn.Linear's spread (std 1/√(3·fan_in))",
    "first_layer_revived": "whether the recycled units of the first hidden layer are on for some example",
    "parameters_trainable": "whether every weight and bias still requires grad (so that training can go on)",
    "revived_units_train": (f"whether the revived units that the loss's gradient reaches train: their incoming or "
                            f"outgoing weights change during {_R_STEPS} SGD steps"),
}


def _compare_recycle(case: Case, got: dict[str, Any], want: dict[str, Any]) -> str | None:
    decided, problem = _outcome(got, want)
    if decided:
        return problem
    for key, what in _RECYCLE_WHERE.items():
        if got.get(key) != want.get(key):
            return f"{what}: expected {describe_value(want.get(key))}, got {describe_value(got.get(key))}."
    return None


# ----------------------------------------------------------------------------------------------

_PARTS = {  # exercise -> (cases, run, compare, catalogue, deterministic)
    "activation_and_grad": (_act_cases, _run_act, _compare_act, "GRAD", True),
    "saturation_fraction": (_sat_cases, _run_sat, _compare_sat, "SATURATION", True),
    "count_dead_neurons": (_dead_cases, _run_dead, _compare_dead, "DEAD", True),
    "second_moment": (_moment_cases, _run_moment, _compare_moment, "MOMENT", True),
    "variance_preserving_gain": (_gain_cases, _run_gain, _compare_gain, "GAIN", True),
    "recycle_dead_units_": (_recycle_cases, _run_recycle, _compare_recycle, "RECYCLE", True),
}

#: the recording second_moment handed to the student's variance_preserving_gain computes E[f(σz)²]:
#: machinery of that exercise, an answer key of second_moment (and of every other exercise)
ANSWER_HELPERS: dict[str, tuple[str, ...]] = {
    "stabletrain.exercises.activations:_gauss_hermite_moment": ("variance_preserving_gain",),
    "stabletrain.exercises.activations:_run_gain.<locals>.second_moment": ("variance_preserving_gain",),
}

EXERCISES: dict[str, Exercise] = {
    name: Exercise(name=name, reference=f"stabletrain.activations:{name}", make_cases=cases, run=run,
                   compare=compare, mutants=f"{__name__}_mutants:{catalogue}", deterministic=deterministic)
    for name, (cases, run, compare, catalogue, deterministic) in _PARTS.items()
}
