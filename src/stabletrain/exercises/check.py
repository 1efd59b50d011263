"""``check``: the one call a notebook's test cells make.

In a student's session, ``check(fn, "clip_grad_norm_")`` runs ``fn`` and the reference on the
exercise's cases, and raises :class:`ExerciseCheckFailed` with what was expected, what came back
and the likely misconception; on success it prints a one-line summary.

An exercise that is not answered yet (the stub still raises ``NotImplementedError``) is reported
in one line and does not stop the notebook, so Run All on an untouched student notebook still runs
every experiment and explorer below it. Under stock ``nbgrader autograde`` (``NBGRADER_EXECUTION``
is set) an unanswered exercise raises instead, so its test cell scores 0 there too.

Under the grader (the environment variable ``STABLETRAIN_CAPTURE_DIR`` is set), ``check`` compares
nothing: it runs ``fn`` on the cases for the seed the grader chose and writes the outputs, as plain
data, into that folder. The grader compares them in its own process, against the reference run
where student code never ran — so a rigged ``__eq__``, a patched ``numpy.allclose`` or a patched
``check`` cannot earn points: only right values can.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import guard, plain
from .registry import get_exercise

CAPTURE_DIR_ENV = "STABLETRAIN_CAPTURE_DIR"
CAPTURE_SEED_ENV = "STABLETRAIN_CAPTURE_SEED"

#: seeds of the cases a student's own session checks against (the grader uses its own)
SESSION_SEEDS = {"visible": 0, "hidden": 1}


class ExerciseCheckFailed(AssertionError):
    """A self-check found a wrong result; the message explains which and why."""


def capture_stem(directory: str | Path, exercise: str, level: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_]", "_", exercise)
    return Path(directory) / f"{safe}.{level}"


def run_cases(fn: Callable[..., Any], exercise: str, level: str, seed: int) -> list[dict]:
    ex = get_exercise(exercise)
    return [ex.run(fn, case) for case in ex.cases(level, seed)]


def _unanswered(outputs: list[dict]) -> bool:
    return bool(outputs) and all(isinstance(o, dict) and o.get("raised") == "NotImplementedError" for o in outputs)


def check(fn: Callable[..., Any], exercise: str, level: str = "visible") -> bool:
    """Check ``fn`` as an implementation of ``exercise`` on the cases of ``level``.

    Returns True when every case passes, False (after one line saying so) when the exercise is
    not answered yet; raises :class:`ExerciseCheckFailed` naming the first failed case, what was
    expected, what came back and the likely misconception.
    """
    if not callable(fn):
        raise ExerciseCheckFailed(f"{exercise}: expected a function, got {type(fn).__name__}")
    capture_dir = os.environ.get(CAPTURE_DIR_ENV)
    if capture_dir:
        seed = int(os.environ.get(CAPTURE_SEED_ENV, "0"))
        outputs = guard.watched(exercise, lambda: run_cases(fn, exercise, level, seed))  # answer keys void it
        plain.to_files(outputs, capture_stem(capture_dir, exercise, level))
        return True
    ex = get_exercise(exercise)
    cases = ex.cases(level, SESSION_SEEDS[level])
    outputs = [ex.run(fn, case) for case in cases]
    if _unanswered(outputs):
        if os.environ.get("NBGRADER_EXECUTION"):  # stock nbgrader: an unanswered exercise scores 0
            raise ExerciseCheckFailed(f"{exercise}: not answered yet (the function raises NotImplementedError)")
        print(f"… {exercise}: not answered yet — write it in the exercise cell above, run that cell, "
              "then run this one again.")
        return False
    failures = ex.verify(cases, outputs)
    if failures:
        more = f"\n  ({len(failures) - 1} more {level} checks failed too.)" if len(failures) > 1 else ""
        raise ExerciseCheckFailed(failures[0].message() + more)
    tip = (f" Before handing in, also run check({getattr(fn, '__name__', 'fn')}, {exercise!r}, level=\"hidden\"): "
           "the kinds of cases the grader uses." if level == "visible" else "")
    print(f"✓ {exercise}: all {len(cases)} {level} checks passed.{tip}")
    return True
