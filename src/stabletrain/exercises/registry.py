"""Where exercises are found by name.

Every module of this package that defines ``EXERCISES`` (a dict name -> :class:`Exercise`) is a
lesson's set of exercises; they are found on first use, so a new lesson only adds its module.
Modules named ``*_mutants`` hold mutant catalogues; they are never imported here, only by the
exercise that names them, when the grader (not a student's kernel) needs them.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

from .base import Exercise

#: modules of this package that are machinery, not exercises
_INFRASTRUCTURE = {"base", "check", "guard", "plain", "registry", "rng"}


@functools.cache
def _modules() -> dict[str, str]:
    """exercise name -> module (under stabletrain.exercises) that defines it."""
    found: dict[str, str] = {}
    package = importlib.import_module(__package__)
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name in _INFRASTRUCTURE or info.name.startswith("_") or info.name.endswith("_mutants"):
            continue
        module = importlib.import_module(f"{__package__}.{info.name}")
        for name in getattr(module, "EXERCISES", {}):
            if name in found:
                raise RuntimeError(f"exercise {name!r} is defined in both {found[name]} and {info.name}")
            found[name] = info.name
    return found


def exercise_modules() -> list:
    """The lesson modules that define exercises, imported."""
    return [importlib.import_module(f"{__package__}.{name}") for name in sorted(set(_modules().values()))]


def exercise_names() -> list[str]:
    return sorted(_modules())


def get_exercise(name: str) -> Exercise:
    """The :class:`Exercise` called ``name``; ValueError listing the known names otherwise."""
    module = _modules().get(name)
    if module is None:
        raise ValueError(f"unknown exercise {name!r}; known exercises: {', '.join(exercise_names())}")
    return importlib.import_module(f"{__package__}.{module}").EXERCISES[name]
