"""Keep the answer keys out of a grading kernel, and catch what cannot be kept out.

Three layers, from the strongest:

1. **Not there.** The grading sandbox (``stgrade.bwrap``) leaves the answer-key files out of the
   kernel's view: stabletrain's reference modules, every ``*_mutants.py``, the lessons' lab
   modules (their experiments use the lessons' formulas), their compiled copies, and torch's
   ``torch/nn/utils/clip_grad.py`` (replaced by a stub whose functions raise).
2. **Blocked.** :func:`install`, called in the kernel before any student code runs, replaces every
   answer-key function that torch itself does not need (``torch.nn.utils.clip_grad_norm_``, …,
   ``stabletrain.clip_grad_norm_``, …) by one that raises :class:`AnswerKeyUnavailable`. The
   replacement keeps **no** reference to the original (no closure, no ``__wrapped__``).
3. **Caught by what it is.** What torch's own layers need cannot be removed (``nn.Linear`` calls
   ``torch.nn.init.kaiming_uniform_``; ``nn.BatchNorm1d`` calls ``F.batch_norm``). Those stay, and
   :func:`watched` — which ``check()`` wraps around a student's function under the grader —
   traces every Python function that starts while it runs. Code *of* an answer key (identified by
   its file and function name, so an alias, a closure, a fresh copy from a re-import or ``runpy``
   all count), or any code of a reference / mutant / lab / clip_grad file, voids the exercise: every
   case is recorded as ``AnswerKeyUsed`` with the evidence, which the grader shows in the feedback
   and the instructor's overview. The same holds for the helpers a kernel must hold that compute
   an answer (:data:`ANSWER_HELPERS`: the recording clip handed to ``train_step``), except in the
   exercises whose own machinery they are; and an exercise about *using* torch's functions may
   allow them (:data:`ANSWER_KEYS_ALLOWED_IN`: ``init_model_`` and ``torch.nn.init``). A static
   finding never voids: only this run-time evidence does.

An audit hook (``sys.addaudithook``; it cannot be removed from Python) protects the tracing: while
a check runs, switching the tracer off, starting a process, using ctypes or reading an answer
key's source fails and is recorded as evidence; ``gc`` introspection is refused for the kernel's
whole life. What remains is in the README's threat model: a student who rewrites the grading
machinery inside the kernel *before* the check (``stabletrain.exercises.check`` itself) can
bypass layer 3; layers 1 and 2 do not depend on the kernel's cooperation.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from typing import Any

#: (module, attribute names) that are answer keys while grading
TORCH_ANSWER_KEYS: dict[str, tuple[str, ...]] = {
    "torch.nn.utils": ("clip_grad_norm_", "clip_grad_norm", "clip_grad_value_", "get_total_norm",
                       "clip_grads_with_norm_"),
    "torch.nn.utils.clip_grad": ("clip_grad_norm_", "clip_grad_norm", "clip_grad_value_", "get_total_norm",
                                 "clip_grads_with_norm_", "_get_total_norm", "_clip_grads_with_norm_"),
    "torch.nn.init": ("calculate_gain", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_",
                      "kaiming_normal_", "orthogonal_", "_calculate_fan_in_and_fan_out",
                      "_calculate_correct_fan", "trunc_normal_"),
}

#: exercise module (under stabletrain.exercises) whose exercises the keys above belong to; keys an
#: exercise module declares itself (its own TORCH_ANSWER_KEYS) belong to its exercises
KEY_OWNERS: dict[str, str] = {"torch.nn.utils": "clipping", "torch.nn.utils.clip_grad": "clipping",
                              "torch.nn.init": "init"}

#: torch modules whose answer keys torch's own layers call: watched while checking, never blocked
NEEDED_BY_TORCH = ("torch.nn.init", "torch.nn.functional")

#: files that are answer keys as a whole (any of their code running during a check voids it)
TORCH_ANSWER_KEY_FILES = ("torch/nn/utils/clip_grad.py",)

#: stabletrain submodules whose public functions are answer keys
STABLETRAIN_ANSWER_KEY_MODULES = ("clipping", "init", "normalization", "norm_modules", "gradcheck")

#: Helpers a grading kernel must hold that compute an exercise's answer: the cases' own machinery
#: in the exercise modules (a recording clip handed to the student's ``train_step``, say).
#: ``"module:qualname" -> exercises in which it is the case's own machinery``; while any *other*
#: exercise is checked, its code running voids that exercise, like an answer key of torch's. An
#: exercise module may declare more in its own ``ANSWER_HELPERS`` (same form).
#: ``tests/adversarial/trust/test_answer_keys_in_helpers.py`` walks every function of every module a
#: grading kernel imports and fails on any that computes an exercise's answer and is not listed.
ANSWER_HELPERS: dict[str, tuple[str, ...]] = {
    "stabletrain.exercises.clipping:_recording_clip.<locals>.clip": ("train_step",),
    "stabletrain.exercises.init:_gain2": (),  # the squared gain: builds kaiming cases, before any check runs
}


def torch_answer_keys() -> dict[str, tuple[str, ...]]:
    """TORCH_ANSWER_KEYS plus what each lesson's exercise module declares in its own
    ``TORCH_ANSWER_KEYS`` (module -> names), e.g. ``{"torch.nn.functional": ("batch_norm",)}``."""
    from .registry import exercise_modules

    merged = {module: tuple(names) for module, names in TORCH_ANSWER_KEYS.items()}
    for module in exercise_modules():
        for name, extra in getattr(module, "TORCH_ANSWER_KEYS", {}).items():
            merged[name] = tuple(dict.fromkeys(merged.get(name, ()) + tuple(extra)))
    return merged


def reference_modules() -> tuple[str, ...]:
    """STABLETRAIN_ANSWER_KEY_MODULES plus each exercise module's ``REFERENCE_MODULES``."""
    from .registry import exercise_modules

    names = list(STABLETRAIN_ANSWER_KEY_MODULES)
    for module in exercise_modules():
        names += [m for m in getattr(module, "REFERENCE_MODULES", ()) if m not in names]
    return tuple(names)


def keys_of_exercise_module(short_name: str) -> dict[str, tuple[str, ...]]:
    """The torch answer keys (module -> names) that belong to one exercise module's exercises."""
    own = {m: tuple(n) for m, n in TORCH_ANSWER_KEYS.items() if KEY_OWNERS.get(m) == short_name}
    module = importlib.import_module(f"{__package__}.{short_name}")
    for name, extra in getattr(module, "TORCH_ANSWER_KEYS", {}).items():
        own[name] = tuple(dict.fromkeys(own.get(name, ()) + tuple(extra)))
    return own


class AnswerKeyUnavailable(RuntimeError):
    """Raised by any answer-key function while grading."""


def _blocked(qualname: str) -> Callable[..., Any]:
    message = (f"{qualname} is an answer key and is switched off while grading: "
               "implement the exercise with basic tensor operations instead of calling it.")

    def blocked(*args: Any, **kwargs: Any) -> Any:
        raise AnswerKeyUnavailable(message)

    blocked.__name__ = blocked.__qualname__ = qualname.rsplit(".", 1)[-1]
    return blocked


def _code_of(obj: Any) -> Any:
    seen = 0
    while hasattr(obj, "__wrapped__") and seen < 10:
        obj, seen = obj.__wrapped__, seen + 1
    return getattr(obj, "__code__", None)


def _real(path: str) -> str:
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):
        return path


#: torch functions that are answer keys for a lesson's other exercises but the building blocks this
#: exercise is about using: ``exercise -> (module or "module.name", ...)``. ``init_model_`` is about
#: which initialiser each layer gets, and its text welcomes the initialisers (torch's included):
#: ``nn.init.kaiming_normal_`` inside it is honest work. An exercise module may declare more in its
#: own ``ANSWER_KEYS_ALLOWED_IN`` (same form).
ANSWER_KEYS_ALLOWED_IN: dict[str, tuple[str, ...]] = {"init_model_": ("torch.nn.init",)}


def answer_keys_allowed_in() -> dict[str, tuple[str, ...]]:
    """:data:`ANSWER_KEYS_ALLOWED_IN` and every exercise module's own."""
    from .registry import exercise_modules

    merged = dict(ANSWER_KEYS_ALLOWED_IN)
    for module in exercise_modules():
        for exercise, allowed in getattr(module, "ANSWER_KEYS_ALLOWED_IN", {}).items():
            merged[exercise] = tuple(dict.fromkeys(merged.get(exercise, ()) + tuple(allowed)))
    return merged


def answer_helpers() -> dict[str, tuple[str, ...]]:
    """:data:`ANSWER_HELPERS` and every exercise module's own ``ANSWER_HELPERS``."""
    from .registry import exercise_modules

    merged = dict(ANSWER_HELPERS)
    for module in exercise_modules():
        for key, allowed in getattr(module, "ANSWER_HELPERS", {}).items():
            merged[key] = tuple(allowed)
    return merged


class _Watch:
    """State of the tracer and the audit hook; reachable only through their closures."""

    def __init__(self) -> None:
        self.active = False
        self.switching = False
        self.files: set[str] = set()  # real paths: any code from these files counts
        self.named: dict[str, set[str]] = {}  # exercise module -> {"realpath:qualname"}
        self.names: dict[str, str] = {}  # "realpath:qualname" -> readable name
        self.helpers: dict[str, tuple[str, ...]] = {}  # "realpath:qualname" -> exercises where it is machinery
        self.current: set[str] = set()  # keys of the exercise checked now
        self.current_helpers: set[str] = set()
        self.evidence: list[str] = []
        self.real: dict[str, str] = {}  # co_filename -> real path, cached

    def real_path(self, filename: str) -> str:
        path = self.real.get(filename)
        if path is None:
            path = self.real[filename] = _real(filename)
        return path


_STATE: list[Any] = []  # [watched function] once install() ran; nothing else is kept here


def _answer_key_files() -> set[str]:
    import stabletrain

    package = os.path.dirname(stabletrain.__file__)
    files = {_real(os.path.join(package, f"{name}.py")) for name in reference_modules()}
    exercises = os.path.dirname(__file__)
    files |= {_real(os.path.join(exercises, f)) for f in os.listdir(exercises) if f.endswith("_mutants.py")}
    lessons = os.path.join(package, "lessons")  # the labs: the lessons' experiments, with the lessons' formulas
    files |= {_real(os.path.join(lessons, f)) for f in os.listdir(lessons) if f.endswith(".py") and f != "__init__.py"}
    import torch

    root = os.path.dirname(torch.__file__)
    files |= {_real(os.path.join(root, *f.split("/")[1:])) for f in TORCH_ANSWER_KEY_FILES}
    return files


def install() -> list[str]:
    """Switch the answer keys off in this process and start watching; return the names replaced."""
    import stabletrain

    from .registry import _modules

    watch = _Watch()
    watch.files = _answer_key_files()
    for short in sorted(set(_modules().values())):
        keys = keys_of_exercise_module(short)
        named = watch.named.setdefault(short, set())
        for module_name, names in keys.items():
            if not module_name.startswith(NEEDED_BY_TORCH):
                continue
            module = importlib.import_module(module_name)
            for name in names:
                code = _code_of(getattr(module, name, None))
                if code is not None:
                    key = f"{watch.real_path(code.co_filename)}:{code.co_qualname}"
                    named.add(key)
                    watch.names[key] = f"{module_name}.{name}"
    for where, allowed in answer_helpers().items():
        module_name, _, qualname = where.partition(":")
        spec = importlib.util.find_spec(module_name)
        if spec is not None and spec.origin:
            key = f"{watch.real_path(spec.origin)}:{qualname}"
            watch.helpers[key] = tuple(allowed)
            watch.names[key] = f"{module_name}.{qualname}"
    replaced: list[str] = []
    for module_name, names in torch_answer_keys().items():
        if module_name.startswith(NEEDED_BY_TORCH):
            continue  # torch's own layers call these: watched instead (see _Watch)
        module = importlib.import_module(module_name)
        for name in names:
            if hasattr(module, name):
                setattr(module, name, _blocked(f"{module_name}.{name}"))
                replaced.append(f"{module_name}.{name}")
    for name, module_name in stabletrain._EXPORTS.items():
        if module_name not in reference_modules():
            continue
        blocked = _blocked(f"stabletrain.{name}")
        setattr(stabletrain, name, blocked)
        module = sys.modules.get(f"stabletrain.{module_name}")
        if module is not None:
            setattr(module, name, blocked)
        replaced.append(f"stabletrain.{name}")
    if not _STATE:
        _STATE.append(_start_watching(watch))
    return replaced


def _start_watching(watch: _Watch) -> Callable[..., Any]:
    # The tracer sees every Python call while a check runs, so its common case must be cheap: one
    # dict lookup on the code's file name (a string whose hash is cached) says whether the file
    # holds nothing watched (0, almost every call), is an answer key as a whole (1) or holds named
    # answer keys (2). Only 1 and 2 resolve the real path and the function's name.
    holding_keys = {key.rpartition(":")[0] for named in watch.named.values() for key in named}
    holding_keys |= {key.rpartition(":")[0] for key in watch.helpers}
    kinds: dict[str, int] = {}
    keys_of_code: dict[Any, str] = {}  # code object -> "realpath:qualname", for files holding named keys

    def kind_of(filename: str) -> int:
        path = watch.real_path(filename)
        kind = kinds[filename] = 1 if path in watch.files else 2 if path in holding_keys else 0
        return kind

    def tracer(frame: Any, event: str, arg: Any) -> None:
        code = frame.f_code
        kind = kinds.get(code.co_filename)
        if kind is None:
            kind = kind_of(code.co_filename)
        if kind == 0:
            return None
        path = watch.real_path(code.co_filename)
        if kind == 1:
            watch.evidence.append(f"code from the answer-key file {os.path.basename(path)} ({code.co_name}) ran")
        else:
            key = keys_of_code.get(code)
            if key is None:
                key = keys_of_code[code] = f"{path}:{code.co_qualname}"
            if key in watch.current or key in watch.current_helpers:
                watch.evidence.append(f"the answer key {watch.names[key]} ran")
        return None

    def hook(event: str, args: tuple) -> None:
        if event == "object.__getattr__":  # the tracer's own frame.f_code raises it at every call: first and cheap
            return
        if event.startswith("gc.get_"):  # the way to this hook's state, and to objects nothing names
            if watch.active:
                watch.evidence.append("the function searched the garbage collector while it was checked")
            raise RuntimeError("gc introspection is switched off while grading")
        if not watch.active:
            return
        if event in ("sys.settrace", "sys.setprofile"):
            if watch.switching:
                return
            watch.evidence.append(f"the tracer was switched off ({event})")
            raise RuntimeError(f"{event} is switched off while an exercise is checked")
        refused = None
        if event.startswith(("os.fork", "os.posix_spawn", "os.spawn", "os.exec", "os.system", "subprocess.")):
            refused = "started a process"
        elif event.startswith("ctypes."):
            refused = "used ctypes"
        elif event == "open" and isinstance(args[0], (str, bytes)):
            path = watch.real_path(os.fsdecode(args[0]))
            if path in watch.files or any(k.startswith(path + ":") for k in watch.current):
                refused = f"read the answer key's source {os.path.basename(path)}"
        elif event == "exec" and hasattr(args[0], "co_filename"):
            if watch.real_path(args[0].co_filename) in watch.files:
                refused = "ran the code of an answer-key file"
        if refused:
            watch.evidence.append(f"the function {refused} while it was checked")
            raise RuntimeError(f"not allowed while an exercise is checked: {refused}")

    sys.addaudithook(hook)

    allowed_in = answer_keys_allowed_in()

    def keys_for(exercise_module: str, exercise: str) -> set[str]:
        allowed = allowed_in.get(exercise, ())
        return {key for key in watch.named.get(exercise_module, set())
                if not any(watch.names[key] == a or watch.names[key].startswith(a + ".") for a in allowed)}

    def watched(exercise_module: str, run: Callable[[], list], exercise: str = "") -> list:
        watch.current = keys_for(exercise_module, exercise)
        watch.current_helpers = {key for key, allowed in watch.helpers.items() if exercise not in allowed}
        watch.evidence = []
        import threading

        watch.switching = True
        previous = sys.gettrace()
        sys.settrace(tracer)
        threading.settrace(tracer)
        watch.switching = False
        watch.active = True
        try:
            outputs = run()
        finally:
            watch.active = False
            watch.switching = True
            sys.settrace(previous)
            threading.settrace(None)
            watch.switching = False
        return outputs, list(dict.fromkeys(watch.evidence))

    return watched


def watched(exercise: str, run: Callable[[], list]) -> list:
    """``run()`` (the cases of ``exercise``), watched for answer keys when :func:`install` ran in
    this process. With evidence, every output becomes ``{"raised": "AnswerKeyUsed", ...}``."""
    if not _STATE:
        return run()
    from .registry import _modules

    outputs, evidence = _STATE[0](_modules().get(exercise, ""), run, exercise)
    if not evidence:
        return outputs
    message = f"answer key used while {exercise} was checked: " + "; ".join(evidence[:3])
    return [{"raised": "AnswerKeyUsed", "message": message[:300]} for _ in outputs]
