"""``check``: the one call a notebook's test cells make.

In a student's session, ``check(fn, "clip_grad_norm_")`` runs ``fn`` and the reference on the
exercise's cases, and raises :class:`ExerciseCheckFailed` with what was expected, what came back
and the likely misconception; on success it prints a one-line summary.

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

from . import plain
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


def check(fn: Callable[..., Any], exercise: str, level: str = "visible") -> None:
    """Check ``fn`` as an implementation of ``exercise`` on the cases of ``level``."""
    if not callable(fn):
        raise ExerciseCheckFailed(f"{exercise}: expected a function, got {type(fn).__name__}")
    capture_dir = os.environ.get(CAPTURE_DIR_ENV)
    if capture_dir:
        seed = int(os.environ.get(CAPTURE_SEED_ENV, "0"))
        plain.to_files(run_cases(fn, exercise, level, seed), capture_stem(capture_dir, exercise, level))
        return
    ex = get_exercise(exercise)
    cases = ex.cases(level, SESSION_SEEDS[level])
    outputs = [ex.run(fn, case) for case in cases]
    failures = ex.verify(cases, outputs)
    if failures:
        more = f"\n  ({len(failures) - 1} more {level} checks failed too.)" if len(failures) > 1 else ""
        raise ExerciseCheckFailed(failures[0].message() + more)
    print(f"✓ {exercise}: all {len(cases)} {level} checks passed")
