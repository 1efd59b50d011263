"""Where exercises are found by name: one module per lesson, imported on first use."""

from __future__ import annotations

import importlib

from .base import Exercise

#: exercise name -> module (under stabletrain.exercises) that defines it in ``EXERCISES``
_MODULES: dict[str, str] = {
    "clip_grad_value_": "clipping",
    "clip_grad_norm_": "clipping",
    "adaptive_clip_grad_": "clipping",
}


def exercise_names() -> list[str]:
    return sorted(_MODULES)


def get_exercise(name: str) -> Exercise:
    """The :class:`Exercise` called ``name``; ValueError listing the known names otherwise."""
    module = _MODULES.get(name)
    if module is None:
        raise ValueError(f"unknown exercise {name!r}; known exercises: {', '.join(exercise_names())}")
    return importlib.import_module(f"{__package__}.{module}").EXERCISES[name]
