r"""Exercises of lesson 03 that *use* initialization on whole models: ``init_model_``,
``find_init_bug`` and ``init_output_layer_``.

They are a module of their own because their answer keys are different from the initializers'.
Inside them, ``torch.nn.init``'s initializers are building blocks the student may call (the
exercise is walking a model and choosing the variance, not drawing numbers); what stays an answer
key is the lesson's reference, ``stabletrain.init``, whose code voids a check wherever it runs
(``stabletrain.exercises.guard``). ``torch.nn.init`` therefore appears in no ``TORCH_ANSWER_KEYS``
of this module, and the guard watches none of it while these exercises are checked.

Every runner builds its model from the case alone (the global RNG seeded from the case's label and
restored afterwards), so the exercises are deterministic and the grader remembers the reference's
outputs per case.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from ..threads import single_thread
from .base import Case, Exercise, describe_value, raised
from .init import Finding, _check_moments, _compare_raised, _compare_statistically, _fans, _fmt, _gain2, \
    _plain_result, _seed_of, _values, summarize
from .rng import cpu_rng

#: the lesson's reference modules (also declared by .init; a module may name them again)
REFERENCE_MODULES = ("init", "variance")


# ----------------------------------------------------------------------------------------------
# init_model_: a whole model, graded by the statistics of each layer


@contextmanager
def _without_default_init() -> Any:
    """Build layers without running their ``reset_parameters`` (``torch.nn.init``): the runner draws
    every weight itself, from the case's seed, so nothing is drawn twice."""
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
        var = _model_weight_var(spec, shape)
        found = _check_moments(summarize(weight, var), var, "any")
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
# find_init_bug: which layer of a model is initialised unlike the others, from its statistics


def _bug_case(label: str, widths: list[int], bad: int, bug: str, group: str, nested: bool = False) -> Case:
    return Case(f"{label} [{'nested ' if nested else ''}ReLU MLP, widths {widths}; layer {bad}: {bug}]",
                {"widths": widths, "bad": bad, "bug": bug, "nested": nested, "batch": 128}, group)


def _bug_cases(level: str, seed: int) -> list[Case]:
    big, ends = "a layer far too large or too small", "the first and the last layer"
    hidden, nested = "what the weights do not show: a large bias", "nested models"
    cases = [_bug_case("weights drawn with std 1 (torch.randn) in the middle", [32, 64, 64, 64, 64, 32], 2,
                       "std 1", big)]
    if level == "hidden":
        cases += [
            _bug_case("one layer at a tenth of Kaiming's std", [16, 96, 64, 128, 64, 32], 3, "std × 0.1", big),
            _bug_case("an early layer too large: every later layer inherits its scale", [32, 64, 64, 64, 64, 64, 32],
                      1, "std × 4", big),
            _bug_case("the first layer left at PyTorch's default", [48, 64, 64, 64, 64, 32], 0, "pytorch default",
                      ends),
            _bug_case("the output layer at a tenth of Kaiming's std", [32, 64, 64, 64, 64, 32], 4, "std × 0.1", ends),
            _bug_case("fans swapped on a widening layer (Var = 2/fan_out)", [32, 64, 32, 256, 64, 32], 2,
                      "fans swapped", big),
            _bug_case("right weights, but a bias of std 5", [32, 64, 64, 64, 64, 32], 3, "bias std 5", hidden),
            _bug_case("a nested model with one layer too large", [32, 64, 64, 64, 64, 64, 32], 4, "std × 4", nested,
                      nested=True),
        ]
    return cases


def _bug_model(inputs: dict[str, Any]) -> nn.Module:
    """Kaiming-initialised ReLU MLP (biases 0) with one layer drawn wrongly; built without torch.nn.init."""
    widths, bad, bug = inputs["widths"], inputs["bad"], inputs["bug"]
    with _without_default_init():
        linears = [nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:])]
    with torch.no_grad():
        for i, layer in enumerate(linears):
            fan_in, fan_out = layer.in_features, layer.out_features
            std = math.sqrt(2.0 / fan_in)
            layer.bias.zero_()
            if i != bad:
                layer.weight.copy_(torch.randn(fan_out, fan_in) * std)
            elif bug == "std 1":
                layer.weight.copy_(torch.randn(fan_out, fan_in))
            elif bug.startswith("std × "):
                layer.weight.copy_(torch.randn(fan_out, fan_in) * std * float(bug[len("std × "):]))
            elif bug == "pytorch default":
                layer.weight.copy_((torch.rand(fan_out, fan_in) * 2 - 1) / math.sqrt(fan_in))
            elif bug == "fans swapped":
                layer.weight.copy_(torch.randn(fan_out, fan_in) * math.sqrt(2.0 / fan_out))
            elif bug == "bias std 5":
                layer.weight.copy_(torch.randn(fan_out, fan_in) * std)
                layer.bias.copy_(torch.randn(fan_out) * 5.0)
            else:
                raise ValueError(f"unknown bug {bug!r}")
    layers: list[nn.Module] = []
    for i, layer in enumerate(linears):
        layers += [layer] + ([nn.ReLU()] if i < len(linears) - 1 else [])
    if inputs["nested"]:
        half = len(layers) // 2
        return nn.Sequential(nn.Sequential(*layers[:half]), nn.Sequential(nn.Sequential(*layers[half:])))
    return nn.Sequential(*layers)


def _run_bug(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    out: dict[str, Any] = {"raised": None, "returned": None}
    with single_thread(), cpu_rng(_seed_of(case.label)):
        try:
            model = _bug_model(case.inputs)
            x = torch.randn(case.inputs["batch"], case.inputs["widths"][0])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out["returned"] = _plain_result(fn(model, x))
        except Exception as exc:  # the implementation's error is part of its behaviour
            out.update(raised(exc))
    return out


def _answer(value: Any) -> tuple[int, str] | None:
    if not isinstance(value, dict) or value.get("kind") != "sequence" or len(value.get("items", [])) != 2:
        return None
    index, direction = value["items"]
    if not isinstance(index, float) or index != int(index) or direction not in ("too small", "too large"):
        return None
    return int(index), direction


def _compare_bug(case: Case, got: dict[str, Any], want: dict[str, Any]) -> str | None:
    problem = _compare_raised(got, want)
    if problem is not None or want["raised"] is not None:
        return problem
    expected, answer = _answer(want["returned"]), _answer(got.get("returned"))
    if answer is None:
        return (f"expected a tuple (layer index, 'too small' or 'too large') like {expected!r}, got "
                f"{describe_value(got.get('returned'))}.")
    if answer != expected:
        return f"expected layer {expected[0]} ({expected[1]!r}), got layer {answer[0]} ({answer[1]!r})."
    return None


# ----------------------------------------------------------------------------------------------
# init_output_layer_: the loss at init is the labels' entropy (ln C for balanced classes)


def _output_case(label: str, widths: list[int], counts: list[int], group: str, nested: bool = False) -> Case:
    return Case(f"{label} [ReLU MLP, widths {widths}; class counts {counts}]",
                {"widths": widths, "counts": counts, "nested": nested}, group)


def _output_cases(level: str, seed: int) -> list[Case]:
    imbalanced, balanced = "imbalanced classes: b = ln p", "balanced classes: the loss at init is ln C"
    rest = "the output layer only, in place, nested models"
    cases = [_output_case("three classes, 70/20/10", [16, 64, 64, 3], [700, 200, 100], imbalanced)]
    if level == "hidden":
        cases += [
            _output_case("four balanced classes", [16, 64, 64, 4], [250, 250, 250, 250], balanced),
            _output_case("ten classes, from 1 to 10 % ... and more", [32, 128, 10], [10, 20, 30, 40, 60, 80, 100, 150,
                         200, 310], imbalanced),
            _output_case("binary, 9 to 1", [8, 32, 32, 32, 2], [900, 100], imbalanced),
            _output_case("a nested model: its last Linear is the output layer", [16, 64, 64, 64, 5],
                         [300, 250, 200, 150, 100], rest, nested=True),
        ]
    return cases


def _output_model(inputs: dict[str, Any]) -> nn.Module:
    widths = inputs["widths"]
    with _without_default_init():
        linears = [nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:])]
    with torch.no_grad():
        for layer in linears:  # Kaiming weights, PyTorch-like random biases: the logits start far from 0
            layer.weight.copy_(torch.randn(layer.weight.shape) * math.sqrt(2.0 / layer.in_features))
            layer.bias.copy_((torch.rand(layer.bias.shape) * 2 - 1) / math.sqrt(layer.in_features))
    layers: list[nn.Module] = []
    for i, layer in enumerate(linears):
        layers += [layer] + ([nn.ReLU()] if i < len(linears) - 1 else [])
    if inputs["nested"]:
        return nn.Sequential(nn.Sequential(*layers[:2]), nn.Sequential(nn.Sequential(*layers[2:])))
    return nn.Sequential(*layers)


def _labels(counts: list[int]) -> torch.Tensor:
    y = torch.cat([torch.full((c,), k, dtype=torch.int64) for k, c in enumerate(counts)])
    return y[torch.randperm(len(y))]


def _run_output(fn: Callable[..., Any], case: Case) -> dict[str, Any]:
    out: dict[str, Any] = {"raised": None}
    with single_thread(), cpu_rng(_seed_of(case.label)):
        try:
            model = _output_model(case.inputs)
            y = _labels(case.inputs["counts"])
            x = torch.randn(len(y), case.inputs["widths"][0])
            linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
            before = [p.detach().clone() for m in linears[:-1] for p in m.parameters()]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                returned = fn(model, y)
            out["same_object"] = returned is model
            out["others_unchanged"] = all(torch.equal(a, p) for a, p in
                                          zip(before, [p for m in linears[:-1] for p in m.parameters()]))
            last = linears[-1]
            out["bias"] = _values(last.bias)
            with torch.no_grad():
                out["loss"] = float(nn.functional.cross_entropy(model(x).double(), y))
        except Exception as exc:  # the implementation's error is part of its behaviour
            out.update(raised(exc))
    return out


def _softmax(b: np.ndarray) -> np.ndarray:
    e = np.exp(b.astype(np.float64) - np.max(b))
    return e / e.sum()


def _assess_output(case: Case, out: dict[str, Any]) -> Finding | None:
    """The first property that a run of init_output_layer_ violates (statistic: what to match a
    mutant's failure by), or None."""
    if not out.get("same_object"):
        return ("not returned", 0.0, "init_output_layer_ must return the model it was given (so that "
                "`model = init_output_layer_(model, y)` works).")
    if not out.get("others_unchanged"):
        return ("others changed", 0.0, "only the output layer (the model's last nn.Linear) changes; the layers "
                "below keep their weights and biases.")
    counts = np.asarray(case.inputs["counts"], dtype=np.float64)
    p = counts / counts.sum()
    entropy = float(-(p * np.log(p)).sum())
    bias = out.get("bias")
    if not isinstance(bias, np.ndarray) or bias.shape != p.shape or not np.all(np.isfinite(bias)):
        return ("bias malformed", 0.0, "the output layer's bias is missing, has the wrong shape, or is not finite.")
    predicted = _softmax(bias)
    if not np.allclose(predicted, p, atol=1e-3):
        return ("bias", float(predicted[int(np.argmax(p))]),
                f"the bias predicts softmax(b) = [{', '.join(f'{v:.3f}' for v in predicted)}] where the class "
                f"frequencies are [{', '.join(f'{v:.3f}' for v in p)}]: with zero weights the model predicts "
                "softmax(b) for every input, so b should be ln p (up to a constant).")
    loss = out.get("loss")
    if not isinstance(loss, float) or not abs(loss - entropy) < 0.01:
        return ("loss", loss if isinstance(loss, float) else math.nan,
                f"the cross-entropy at init should be the labels' entropy H(p) = {entropy:.4f} (ln C = "
                f"{math.log(len(p)):.4f} for balanced classes), got {describe_value(loss)}: the logits still depend "
                "on the input — set the output layer's weights to 0.")
    return None


def _compare_output(case: Case, got: dict[str, Any], want: dict[str, Any]) -> str | None:
    """Grading: ``got`` must have every property (``want``, the reference's run, has them). The mutant
    catalogue asks instead whether ``got`` fails the way a mutant's run does: the same check, and a
    statistic within the noise."""
    problem = _compare_raised(got, want)
    if problem is not None or want["raised"] is not None:
        return problem
    found, wanted = _assess_output(case, got), _assess_output(case, want)
    if wanted is None:
        return None if found is None else found[2]
    if found is not None and found[0] == wanted[0] and (abs(found[1] - wanted[1]) < 0.02 or found[1] == wanted[1]):
        return None
    return f"unlike the expected output ({wanted[0]})."


# ----------------------------------------------------------------------------------------------

_MUTANTS = "stabletrain.exercises.init_mutants"

EXERCISES: dict[str, Exercise] = {
    "init_model_": Exercise(name="init_model_", reference="stabletrain.init:init_model_", make_cases=_model_cases,
                            run=_run_model, compare=_compare_model, mutants=f"{_MUTANTS}:MODEL", deterministic=True),
    "find_init_bug": Exercise(name="find_init_bug", reference="stabletrain.init:find_init_bug", make_cases=_bug_cases,
                              run=_run_bug, compare=_compare_bug, mutants=f"{_MUTANTS}:BUG", deterministic=True),
    "init_output_layer_": Exercise(name="init_output_layer_", reference="stabletrain.init:init_output_layer_",
                                   make_cases=_output_cases, run=_run_output, compare=_compare_output,
                                   mutants=f"{_MUTANTS}:OUTPUT", deterministic=True),
}
