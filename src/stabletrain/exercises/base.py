"""What a graded exercise is made of.

An :class:`Exercise` knows how to build its test *cases* (plain-data inputs chosen by the grader),
how to *run* any implementation on a case (returning plain-data outputs), how to *compare* an
implementation's outputs with the reference's, and a catalogue of *mutants*: plausible wrong
implementations, each with the misconception it stands for. When a student's outputs match a
mutant's, the feedback names that misconception.

The same objects serve three places: the visible self-checks in a student's notebook, the trusted
comparison in the grader (outputs come back as plain data, the reference runs in the grader's own
process), and the project's tests, which prove every mutant is rejected.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
# every lesson's cases draw from numpy.random, which numpy imports lazily: here it happens when a grading
# kernel starts, not in its first check under the answer-key watch (~10 ms there)
import numpy.random  # noqa: F401

Plain = Any  # see stabletrain.exercises.plain

LEVELS = ("visible", "hidden")


@dataclass(frozen=True)
class Case:
    """One test input. ``label`` is what a student reads when the case fails.

    ``group`` names the behaviour the case belongs to ("edge cases: None gradients, single tensors,
    generators", say). A graded cell earns its points in proportion to the groups whose cases all
    pass (see :func:`group_score`). Cases without a group form one group, "all cases": an exercise
    whose cases name no groups is graded all or nothing. Design groups so that a function that
    does nothing fails every group (each group holds a case where something must change).
    """

    label: str
    inputs: dict[str, Plain]
    group: str = ""

    @property
    def group_name(self) -> str:
        return self.group or "all cases"


@dataclass(frozen=True)
class Mutant:
    """A plausible wrong implementation and the misconception behind it."""

    fn: Callable[..., Any]
    misconception: str


@dataclass(frozen=True)
class Failure:
    """A failed case: what was expected, what came back, and the likely misconception."""

    exercise: str
    case: str
    problem: str
    misconception: str | None = None

    def message(self) -> str:
        text = f"{self.exercise}: check '{self.case}' failed.\n  {self.problem}"
        if self.misconception:
            text += f"\n  Likely misconception: {self.misconception}"
        return text


def resolve(path: str) -> Any:
    """``"package.module:NAME"`` -> that object, imported now."""
    import importlib

    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


class Exercise:
    """A graded function: cases, a runner, a comparison and a mutant catalogue.

    Attributes:
        name: the function's name in the notebook (``clip_grad_norm_``).
        reference: the answer key, given as ``"stabletrain.clipping:clip_grad_norm_"`` and imported
            only when first needed — so a grading kernel, which only builds and runs cases, never
            imports it (and the sandbox can leave the answer-key files out of the kernel's view).
            A function is accepted too.
        make_cases: ``(level, seed) -> list[Case]``; ``level`` is ``"visible"`` or ``"hidden"``.
        run: ``(fn, case) -> plain dict``; calls ``fn`` on the case and records what it returned,
            what it did to its arguments and what it raised (as an exception type name).
        compare: ``(case, got, want) -> problem or None``.
        mutants: name -> :class:`Mutant`, given as ``"stabletrain.exercises.clipping_mutants:VALUE"``
            (a module of its own, ending in ``_mutants``, imported only when first needed) or a dict.
        deterministic: ``run(fn, case)`` depends on nothing but ``fn`` and the case (its runner seeds
            every random number from the case), so the reference's and the mutants' outputs on a
            case are computed once per process and remembered (cases whose inputs are JSON). A
            grader verifies the same cases for every student whose cases do not depend on the seed.
    """

    #: outputs remembered per exercise, at most (then forgotten all at once)
    REMEMBERED = 2048

    def __init__(self, name: str, reference: Callable[..., Any] | str, make_cases: Callable[[str, int], list[Case]],
                 run: Callable[[Callable[..., Any], Case], dict[str, Plain]],
                 compare: Callable[[Case, dict[str, Plain], dict[str, Plain]], str | None],
                 mutants: dict[str, Mutant] | str | None = None, deterministic: bool = False) -> None:
        self.name, self.make_cases, self.run, self.compare = name, make_cases, run, compare
        self._reference, self._mutants = reference, mutants if mutants is not None else {}
        self.deterministic = deterministic
        self._remembered: dict[tuple[str, str, str], dict[str, Plain]] = {}

    def __repr__(self) -> str:
        return f"Exercise({self.name!r})"

    @property
    def reference(self) -> Callable[..., Any]:
        if isinstance(self._reference, str):
            self._reference = resolve(self._reference)
        return self._reference

    @property
    def mutants(self) -> dict[str, Mutant]:
        if isinstance(self._mutants, str):
            self._mutants = resolve(self._mutants)
        return self._mutants

    def cases(self, level: str, seed: int) -> list[Case]:
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
        return self.make_cases(level, seed)

    def known_outputs(self, who: str, case: Case) -> dict[str, Plain]:
        """What the reference (``who="reference"``) or a mutant (its name) gives on ``case``,
        remembered when the exercise is :attr:`deterministic`. Shared: compare, never change."""
        fn = self.reference if who == "reference" else self.mutants[who].fn
        if not self.deterministic:
            return self.run(fn, case)
        try:
            key = (who, case.label, json.dumps(case.inputs, sort_keys=True, allow_nan=True))
        except (TypeError, ValueError):  # inputs that are not JSON: run every time
            return self.run(fn, case)
        if key not in self._remembered:
            if len(self._remembered) >= self.REMEMBERED:
                self._remembered.clear()
            self._remembered[key] = self.run(fn, case)
        return self._remembered[key]

    def diagnose(self, case: Case, got: dict[str, Plain]) -> str | None:
        """The misconception of the first mutant whose outputs equal ``got`` on ``case``."""
        for name, mutant in self.mutants.items():
            if self.compare(case, got, self.known_outputs(name, case)) is None:
                return mutant.misconception
        return None

    def verify(self, cases: list[Case], outputs: list[dict[str, Plain]], diagnose: bool = True) -> list[Failure]:
        """Compare outputs (one per case) with the reference's, computed here, in the caller's
        process; return the failures, the first one that matches a mutant naming its
        misconception (``diagnose``; see :meth:`name_misconception`)."""
        if len(outputs) != len(cases):
            return [
                Failure(self.name, "all cases", f"expected results for {len(cases)} cases, got {len(outputs)}")
            ]
        failures, failed = [], []
        for case, got in zip(cases, outputs):
            if unanswered(got):  # fails whatever the reference gives: it is not run (a blank notebook is cheap)
                problem = f"your function raised NotImplementedError: {str(got.get('message', ''))[:200]}"
            else:
                problem = self.compare(case, got, self.known_outputs("reference", case))
            if problem is not None:
                failures.append(Failure(self.name, case.label, problem))
                failed.append((case, got))
        return self.name_misconception(failures, failed) if diagnose else failures

    def name_misconception(self, failures: list[Failure], failed: list[tuple[Case, dict[str, Plain]]],
                           on_error: Callable[[Exception], None] | None = None) -> list[Failure]:
        """``failures`` with the misconception of the first failed case (in order) whose outputs
        match a mutant's. One is enough: feedback shows the first failure, and running the whole
        catalogue on every failed case was most of the cost of verifying a wrong answer. An
        unanswered case (``NotImplementedError``) is not diagnosed. ``on_error``: called instead of
        raising when the catalogue cannot judge a case (the grader: a diagnosis is never worth a
        crash)."""
        for i, (case, got) in enumerate(failed):
            if unanswered(got):
                continue
            try:
                misconception = self.diagnose(case, got)
            except Exception as exc:
                if on_error is None:
                    raise
                on_error(exc)
                continue
            if misconception:
                return [*failures[:i], replace(failures[i], misconception=misconception), *failures[i + 1:]]
        return failures


def unanswered(outputs: Plain) -> bool:
    """Whether one case's outputs say the function still raises ``NotImplementedError`` (the stub)."""
    return isinstance(outputs, dict) and outputs.get("raised") == "NotImplementedError"


def group_score(cases: list[Case], failures: list[Failure]) -> tuple[int, int, list[str]]:
    """``(groups passed, groups in all, names of the failed groups)``: the partial-credit rule.

    A group passes when every one of its cases passes; a cell scores
    ``points · passed / total``, so one forgotten edge case costs its group, not the whole cell.
    """
    order: list[str] = []
    for case in cases:
        if case.group_name not in order:
            order.append(case.group_name)
    by_label = {case.label: case.group_name for case in cases}
    failed = []
    for f in failures:
        name = by_label.get(f.case, f.case)
        if name not in failed:
            failed.append(name)
    if any(name not in order for name in failed):  # a failure outside any case: nothing passes
        return 0, len(order), order
    return len(order) - len(failed), len(order), [name for name in order if name in failed]


# ----------------------------------------------------------------------------------------------
# Running: turn whatever an implementation returns or raises into plain data.


def to_plain(value: Any) -> Plain:
    """Plain-data picture of a returned value (tensors become arrays with their dtype)."""
    import torch

    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        return {"kind": "tensor", "dtype": str(t.dtype).replace("torch.", ""), "value": t.numpy().copy()}
    if isinstance(value, np.ndarray) and value.dtype.kind in "biufc":
        return {"kind": "ndarray", "dtype": str(value.dtype), "value": value.copy()}
    if isinstance(value, np.generic):
        return to_plain(value.item())
    if isinstance(value, (list, tuple)):
        return {"kind": type(value).__name__, "items": [to_plain(v) for v in value]}
    return {"kind": "other", "type": type(value).__name__}


def raised(exc: BaseException) -> dict[str, Plain]:
    return {"raised": type(exc).__name__, "message": str(exc)[:300]}


def call_quietly(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, dict[str, Plain] | None]:
    """``(returned, None)``, or ``(None, raised(exc))`` when ``fn`` raises: what an implementation
    raises is part of its behaviour. Warnings, numpy's floating-point ones included, are silenced:
    they are not wrong answers."""
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return fn(*args, **kwargs), None
    except Exception as exc:
        return None, raised(exc)


# ----------------------------------------------------------------------------------------------
# Comparing: walk two plain values and say, in words, where they first differ.


def describe_value(value: Plain) -> str:
    if isinstance(value, np.ndarray):
        if value.size <= 6:
            return np.array2string(value, precision=6, separator=", ")
        return f"array of shape {value.shape}, e.g. {np.array2string(value.ravel()[:4], precision=6)}…"
    if isinstance(value, dict) and value.get("kind") in ("tensor", "ndarray"):
        return f"{value['kind']}({describe_value(value['value'])}, dtype={value['dtype']})"
    if isinstance(value, dict) and value.get("kind") == "other":
        return f"an object of type {value['type']}"
    return _SHORT.repr(value)


def _short_repr() -> Any:
    """``repr`` with bounds (reprlib): a returned 190,000-element list is quoted by its start, not whole."""
    import reprlib

    short = reprlib.Repr()
    short.maxlist = short.maxtuple = short.maxset = short.maxdict = 12
    short.maxstring, short.maxother, short.maxlong, short.maxlevel = 400, 200, 60, 4
    return short


_SHORT = _short_repr()


def first_difference(got: Plain, want: Plain, rtol: float, atol: float, path: str = "") -> tuple[str, Plain, Plain] | None:
    """``(path, got_part, want_part)`` of the first mismatch, or None when they agree.

    Arrays agree when shapes are equal and values are close (NaN equals NaN, ±inf must match).
    """
    if isinstance(want, np.ndarray):
        if not isinstance(got, np.ndarray) or got.dtype.kind not in "biufc":
            return path, got, want
        if got.shape != want.shape:
            return path + " (shape)", got.shape, want.shape
        if want.dtype.kind == "b":
            return None if np.array_equal(got, want) else (path, got, want)
        g, w = got.astype(np.float64), want.astype(np.float64)
        ok = np.isclose(g, w, rtol=rtol, atol=atol, equal_nan=True) | (g == w)
        if not ok.all():
            return path, got, want
        return None
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return path, got, want
        for key in want:
            if key == "message":  # exception messages are free text
                continue
            if key not in got:
                return f"{path}.{key}", None, want[key]
            diff = first_difference(got[key], want[key], rtol, atol, f"{path}.{key}")
            if diff:
                return diff
        extra = set(got) - set(want) - {"message"}
        if extra:
            key = sorted(extra)[0]
            return f"{path}.{key}", got[key], None
        return None
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return path, got, want
        for i, (g, w) in enumerate(zip(got, want)):
            diff = first_difference(g, w, rtol, atol, f"{path}[{i}]")
            if diff:
                return diff
        return None
    if isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        if np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True) or got == want:
            return None
        return path, got, want
    if type(got) is not type(want) or got != want:
        return path, got, want
    return None

