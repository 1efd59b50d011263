"""``check``: the one call a notebook's test cells make.

In a student's session, ``check(fn, "clip_grad_norm_")`` runs ``fn`` and the reference on the
exercise's cases, and raises :class:`ExerciseCheckFailed` with what was expected, what came back
and the likely misconception; on success it prints a one-line summary.

An exercise that is not answered yet (the stub still raises ``NotImplementedError``) is reported
in one line and does not stop the notebook, so Run All on an untouched student notebook still runs
every experiment and explorer below it. Under stock ``nbgrader autograde`` (``NBGRADER_EXECUTION``
is set) an unanswered exercise raises instead, so its test cell scores 0 there too.

Under the grader (the environment variable ``STABLETRAIN_CAPTURE_SEED`` is set: the seed of this
student's cases, derived from the course secret, never the secret itself), ``check`` compares
nothing: it runs ``fn`` on the cases for that seed and publishes the outputs, as plain data, in one
``display_data`` message of type :data:`plain.RESULT_MIME` on the kernel's output channel. The
grader collects that message while the cell runs (no file is involved, so nothing can rewrite it
afterwards), decodes it with size and type limits, and compares it in its own process against the
reference run where student code never ran — so a rigged ``__eq__``, a patched
``numpy.allclose``, a patched ``check`` or a forged message cannot earn points: only right values
can.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from . import guard, plain
from .base import unanswered
from .registry import get_exercise

CAPTURE_SEED_ENV = "STABLETRAIN_CAPTURE_SEED"

#: seeds of the cases a student's own session checks against (the grader uses its own)
SESSION_SEEDS = {"visible": 0, "hidden": 1}


class ExerciseCheckFailed(AssertionError):
    """A self-check found a wrong result; the message explains which and why."""


def run_cases(fn: Callable[..., Any], exercise: str, level: str, seed: int) -> list[dict]:
    ex = get_exercise(exercise)
    return [ex.run(fn, case) for case in ex.cases(level, seed)]


def publish_result(exercise: str, level: str, outputs: list[dict]) -> None:
    """Send one result message to the grader (capture mode)."""
    from IPython.display import publish_display_data

    text = plain.dumps({"exercise": exercise, "level": level, "outputs": outputs})
    publish_display_data({plain.RESULT_MIME: text})


def _unanswered(outputs: list[dict]) -> bool:
    return bool(outputs) and all(unanswered(o) for o in outputs)


def check(fn: Callable[..., Any], exercise: str, level: str = "visible") -> None:
    """Check ``fn`` as an implementation of ``exercise`` on the cases of ``level``.

    Prints one line when every case passes, or when the exercise is not answered yet; raises
    :class:`ExerciseCheckFailed` naming the first failed case, what was expected, what came back
    and the likely misconception. Returns None, so a test cell shows that one line and nothing
    else (a returned ``True`` would be echoed as ``Out[n]: True`` under every check, and in a
    grading kernel each echo is one more message).
    """
    if not callable(fn):
        raise ExerciseCheckFailed(f"{exercise}: expected a function, got {type(fn).__name__}")
    seed = os.environ.get(CAPTURE_SEED_ENV)
    if seed is not None:
        ex = get_exercise(exercise)
        cases = ex.cases(level, int(seed))  # the exercise's own code: built before the watch starts
        outputs = guard.watched(exercise, lambda: [ex.run(fn, case) for case in cases])  # answer keys void it
        publish_result(exercise, level, outputs)
        return
    ex = get_exercise(exercise)
    cases = ex.cases(level, SESSION_SEEDS[level])
    outputs = [ex.run(fn, case) for case in cases]
    if _unanswered(outputs):
        if os.environ.get("NBGRADER_EXECUTION"):  # stock nbgrader: an unanswered exercise scores 0
            raise ExerciseCheckFailed(f"{exercise}: not answered yet (the function raises NotImplementedError)")
        print(f"… {exercise}: not answered yet — write it in the exercise cell above, run that cell, "
              "then run this one again.")
        return
    failures = ex.verify(cases, outputs)
    if failures:
        more = f"\n  ({len(failures) - 1} more {level} checks failed too.)" if len(failures) > 1 else ""
        raise ExerciseCheckFailed(failures[0].message() + more)
    tip = (f" Before handing in, also run check({getattr(fn, '__name__', 'fn')}, {exercise!r}, level=\"hidden\"): "
           "the kinds of cases the grader uses." if level == "visible" else "")
    print(f"✓ {exercise}: all {len(cases)} {level} checks passed.{tip}")
