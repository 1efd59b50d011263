"""Plain data: the only thing that crosses from a student's kernel to the grader.

A *plain value* is ``None``, ``bool``, ``int``, ``float``, ``str``, a numpy array of a numeric,
boolean or string dtype, or a list / dict (string keys) of plain values. Nothing else is
accepted: no pickles, no objects with methods a student could have rigged (``__eq__`` that is
always True, say). :func:`to_files` writes a plain value as a JSON skeleton plus an ``.npz`` of
its arrays; :func:`from_files` reads it back with ``allow_pickle=False`` and re-validates.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

_SCALARS = (type(None), bool, int, float, str)
_ARRAY_KINDS = set("biufcUS")  # bool, int, uint, float, complex, unicode, bytes — never object


class NotPlainData(TypeError):
    """Raised when a value that should be plain data is not."""


def check_plain(value: Any, where: str = "value") -> None:
    """Raise :class:`NotPlainData` unless ``value`` is plain data (recursively)."""
    if isinstance(value, _SCALARS):
        return
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in _ARRAY_KINDS:
            raise NotPlainData(f"{where}: array of dtype {value.dtype} is not plain data")
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotPlainData(f"{where}: dict key {key!r} is not a string")
            check_plain(item, f"{where}[{key!r}]")
        return
    raise NotPlainData(f"{where}: {type(value).__name__} is not plain data")


def _encode(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(value, np.ndarray):
        key = f"a{len(arrays)}"
        arrays[key] = value
        return {"__array__": key}
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": repr(value)}
    if isinstance(value, list):
        return [_encode(item, arrays) for item in value]
    if isinstance(value, dict):
        return {"__dict__": {key: _encode(item, arrays) for key, item in value.items()}}
    return value


def _decode(value: Any, arrays: Any) -> Any:
    if isinstance(value, list):
        return [_decode(item, arrays) for item in value]
    if isinstance(value, dict):
        if set(value) == {"__array__"}:
            return np.asarray(arrays[value["__array__"]])
        if set(value) == {"__float__"}:
            return float(value["__float__"])
        if set(value) == {"__dict__"}:
            return {key: _decode(item, arrays) for key, item in value["__dict__"].items()}
        raise NotPlainData(f"unexpected mapping in plain-data file: {sorted(value)}")
    if isinstance(value, _SCALARS):
        return value
    raise NotPlainData(f"unexpected {type(value).__name__} in plain-data file")


def to_files(value: Any, stem: Path) -> None:
    """Write plain ``value`` to ``stem.json`` and ``stem.npz``."""
    check_plain(value)
    arrays: dict[str, np.ndarray] = {}
    skeleton = _encode(value, arrays)
    stem = Path(stem)
    np.savez(stem.with_suffix(".npz"), **arrays)
    stem.with_suffix(".json").write_text(json.dumps(skeleton, allow_nan=False))


def from_files(stem: Path) -> Any:
    """Read a plain value written by :func:`to_files`; never unpickles anything."""
    stem = Path(stem)
    skeleton = json.loads(stem.with_suffix(".json").read_text())
    with np.load(stem.with_suffix(".npz"), allow_pickle=False) as arrays:
        value = _decode(skeleton, {key: arrays[key] for key in arrays.files})
    check_plain(value)
    return value
