"""Correct implementations written differently from the reference, one module per lesson.

Each module defines ``ALTERNATIVES``: exercise name -> list of functions that must pass.
"""

from __future__ import annotations

import importlib
import pkgutil


def all_alternatives() -> dict[str, list]:
    merged: dict[str, list] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for name, fns in getattr(module, "ALTERNATIVES", {}).items():
            merged.setdefault(name, []).extend(fns)
    return merged
