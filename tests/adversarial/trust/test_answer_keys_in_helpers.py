"""Answer keys out of every helper's reach (issue 21).

The lesson's lab module, imported by the setup cell, held the reference formulas
(``clipping_lab._batched_clip`` scored 7.95/14 for three one-line answers), and the exercise module
a grading kernel needs for its cases holds a working clip (``_recording_clip``, handed to the
student's ``train_step``). Now the labs are stubs in the grading view (``stgrade.bwrap``: the
experiments that use them are skipped), and the helpers the kernel must hold are answer keys while
any other exercise is checked (``stabletrain.exercises.guard.ANSWER_HELPERS``).

The walk: a real grading kernel runs every lesson's setup cell; every function of every module of
the project it then holds (nested functions included, with fresh closure cells), called as every
exercise's function on its visible cases through the grader's own path (the answer-key watch, one
result message, the trusted comparison), must pass no group of cases. With ``ANSWER_HELPERS``
emptied, ``_recording_clip``'s clip passes clip_grad_norm_'s first group; with the lab stubs
removed, the kernel holds the labs' formulas (the second test).
"""

from __future__ import annotations

import json
import time

import pytest

from _sandbox_support import output, require_sandbox
from stabletrain.exercises import exercise_names, get_exercise
from stabletrain.exercises.base import group_score
from stgrade.course import lesson_ids, load_lesson
from stgrade.grading import decode_results, verify_one
from stgrade.sandbox import Limits, SandboxKernel

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("grading")]

SEED = 0
LIMITS = Limits(cell_seconds=120, notebook_seconds=3000, submission_results_chars=1 << 30,
                submission_output_chars=1 << 24)

WALK = r'''
import inspect, signal, sys, types
from stabletrain.exercises import guard
from stabletrain.exercises.check import publish_result
from stabletrain.exercises.registry import exercise_names, get_exercise

_SKIP = ("stabletrain.exercises.guard", "_stgrade_kernel", "stgrade", "stgrade.kernel")


def _codes(module):
    """qualname -> (code, the function object when there is one) of everything defined in module."""
    found = {}

    def add(code, fn=None):
        if code.co_qualname not in found or fn is not None:
            found[code.co_qualname] = (code, fn)
        for const in code.co_consts:
            # comprehensions are not functions (called with the wrong arguments they crash CPython)
            if isinstance(const, types.CodeType) and const.co_name not in ("<listcomp>", "<dictcomp>", "<setcomp>",
                                                                                "<genexpr>"):
                add(const)

    for value in list(vars(module).values()):
        objects = [value]
        if isinstance(value, type) and value.__module__ == module.__name__:
            objects += list(vars(value).values())
        for obj in objects:
            obj = getattr(obj, "__func__", obj)
            code = getattr(obj, "__code__", None)
            if code is not None and code.co_filename == getattr(module, "__file__", None):
                add(code, obj)
    return found


def _candidates():
    return [(name, qualname) for name, module in sorted(sys.modules.items())
            if module is not None and name.startswith(("stabletrain", "stgrade", "_stgrade")) and name not in _SKIP
            for qualname in sorted(_codes(module))]


def _function(module_name, qualname):
    code, fn = _codes(sys.modules[module_name])[qualname]
    if fn is not None:
        return fn
    cells = tuple(types.CellType([]) for _ in code.co_freevars) or None  # as a student would: factory([])
    return types.FunctionType(code, vars(sys.modules[module_name]), code.co_name, None, cells)


class _Slow(Exception):
    pass


def _alarm(*_):
    raise _Slow("took too long")


_CASES = {name: get_exercise(name).cases("visible", __SEED__) for name in exercise_names()}


def _shapes():
    """exercise -> the argument shapes (positional count, keyword names) its runner calls with."""
    found = {}
    for name in exercise_names():
        calls = set()

        def record(*args, **kwargs):
            calls.add((len(args), tuple(sorted(kwargs))))
            raise TypeError("recorded")

        for case in _CASES[name]:
            get_exercise(name).run(record, case)
        found[name] = calls
    return found


_SHAPES = _shapes()


def _callable_as(fn, name):
    """Whether fn accepts one of the calls the exercise's runner makes (if not, every case raises
    TypeError at the call: what a function that does nothing gets, which passes no group)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return True
    for n, keys in _SHAPES[name] or {(0, ())}:
        try:
            signature.bind(*range(n), **dict.fromkeys(keys))
            return True
        except TypeError:
            pass
    return False


_BASELINES = {"returns None": lambda *a, **k: None, "returns its first argument": lambda *a, **k: a[0] if a else None,
              "raises": lambda *a, **k: 1 / 0}


def _walk(module_name, qualname=None):
    fn = _BASELINES[module_name] if qualname is None else _function(module_name, qualname)
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        for name in exercise_names():
            if not _callable_as(fn, name):
                continue
            ex = get_exercise(name)

            def run():
                outputs = []
                for case in _CASES[name]:
                    signal.setitimer(signal.ITIMER_REAL, 2.0)
                    try:
                        outputs.append(ex.run(fn, case))
                    finally:
                        signal.setitimer(signal.ITIMER_REAL, 0)
                return outputs

            publish_result(name, "visible", guard.watched(name, run))
    finally:
        signal.signal(signal.SIGALRM, previous)
'''.replace("__SEED__", str(SEED))


def _prepare(kernel: SandboxKernel) -> None:
    """Every lesson's setup cell, then the walk's helpers, in ``kernel``."""
    for lesson in lesson_ids():
        setup = [c.source for c in load_lesson(lesson).cells if c.role == "setup"]
        runs = kernel.run_cells(setup, time.monotonic() + 300, setup=len(setup))
        assert all(r.status == "ok" for r in runs), (lesson, [(r.ename, r.evalue) for r in runs])
    assert output(kernel, WALK).strip() == ""


_CASES = {name: get_exercise(name).cases("visible", SEED) for name in exercise_names()}


def _passed_groups(kernel: SandboxKernel, code: str) -> dict[str, set[str]] | str:
    """exercise -> the groups of its visible cases that the function walked by ``code`` passes
    (for the exercises whose runner's call it accepts), or why the cell did not end."""
    run = kernel.run(code)
    if run.status != "ok":
        return f"{run.status}: {run.ename}"
    results, _ = decode_results(run.results)  # a candidate that publishes its own messages (publish_result) spoils only its own
    passed = {}
    for (name, _), outputs in results.items():
        if name not in _CASES or not isinstance(outputs, list):
            continue
        cases = _CASES[name]
        _, _, failed = group_score(cases, verify_one(get_exercise(name), cases, outputs))
        passed[name] = {c.group_name for c in cases} - set(failed)
    return passed


def _keys_found(kernel: SandboxKernel, candidates: list[list[str]]) -> tuple[dict[str, list[str]], list[str]]:
    """``({module:qualname: [exercise: groups]}, [candidates that ended their cell])``: the
    candidates that pass a group of an exercise that no do-nothing function passes (returns None,
    returns its first argument, raises). A candidate that kills the kernel is noted and the kernel
    restarted and set up again, so that no later candidate goes unchecked."""
    baseline: dict[str, set[str]] = {}
    for name in _BASELINE_NAMES:
        for exercise, groups in _passed_groups(kernel, f"_walk({name!r})").items():
            baseline.setdefault(exercise, set()).update(groups)
    found: dict[str, list[str]] = {}
    lost: list[str] = []
    for module_name, qualname in candidates:
        passed = _passed_groups(kernel, f"_walk({module_name!r}, {qualname!r})")
        if isinstance(passed, str):
            lost.append(f"{module_name}:{qualname} ({passed})")
            if not kernel.alive() or passed.startswith(("died", "hung")):
                kernel.restart()
                _prepare(kernel)
            continue
        for exercise, groups in passed.items():
            extra = groups - baseline.get(exercise, set())
            if extra:
                found.setdefault(f"{module_name}:{qualname}", []).append(f"{exercise}: {sorted(extra)}")
    return found, lost


_BASELINE_NAMES = ("returns None", "returns its first argument", "raises")


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    require_sandbox()
    with SandboxKernel(tmp_path_factory.mktemp("walk"), LIMITS) as k:
        _prepare(k)
        yield k



def test_no_function_a_grading_kernel_holds_computes_an_exercises_answer(kernel):
    candidates = json.loads(output(kernel, "import json; print(json.dumps(_candidates()))"))
    assert len(candidates) > 100 and ["stabletrain.exercises.clipping", "_recording_clip.<locals>.clip"] in candidates
    found, lost = _keys_found(kernel, candidates)
    assert found == {}, f"helpers in the grading kernel that compute an answer: {found}"
    assert len(lost) < len(candidates) // 10, lost  # the few that stop a kernel are not the walk
    print(f"walked {len(candidates)} functions; these ended their cell, the kernel was set up again: {lost}")


def test_the_lesson_labs_are_stubs_in_the_grading_kernel(kernel):
    text = output(kernel, "import sys\nfor name in sorted(sys.modules):\n    if name.endswith('_lab'):\n"
                          "        m = sys.modules[name]\n"
                          "        print(name, sorted(k for k in vars(m) if not k.startswith('__')))")
    lines = text.strip().splitlines()
    assert len(lines) == len(lesson_ids()), text
    assert all(line.endswith("[]") for line in lines), text  # nothing but the stub's __getattr__
    text = output(kernel, "from stabletrain.lessons import clipping_lab\ntry:\n    clipping_lab._batched_clip\n"
                          "except AttributeError as exc:\n    print('unavailable:', exc)")
    assert text.startswith("unavailable:") and "not available while grading" in text, text


def test_a_helper_the_kernel_must_hold_voids_the_exercise_it_answers(kernel):
    """Without the watch, ``_recording_clip([])`` is a working clip_grad_norm_ for the global-norm group."""
    found, lost = _keys_found(kernel, [["stabletrain.exercises.clipping", "_recording_clip.<locals>.clip"]])
    assert found == {} and lost == [], (found, lost)
    text = output(kernel, "from stabletrain.exercises.clipping import _recording_clip\n"
                          "from stabletrain.exercises.guard import watched\nimport torch\n"
                          "p = torch.nn.Parameter(torch.ones(3)); p.grad = torch.ones(3) * 10\n"
                          "print(watched('clip_grad_norm_', lambda: [_recording_clip([])([p], 1.0)]))\n"
                          "print(watched('train_step', lambda: [float(_recording_clip([])([p], 1.0))]))")
    voided, allowed = text.strip().splitlines()
    assert "AnswerKeyUsed" in voided and "_recording_clip" in voided, text
    assert "AnswerKeyUsed" not in allowed, text  # train_step's own machinery: the runner hands it over
