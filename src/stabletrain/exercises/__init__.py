"""Graded exercises: cases, trusted comparison and mutant catalogues.

Notebooks call :func:`check`; the grader calls :func:`get_exercise` and compares in its own process.
"""

from .base import Case, Exercise, Failure, Mutant
from .check import ExerciseCheckFailed, check
from .registry import exercise_names, get_exercise

__all__ = [
    "Case",
    "Exercise",
    "ExerciseCheckFailed",
    "Failure",
    "Mutant",
    "check",
    "exercise_names",
    "get_exercise",
]
