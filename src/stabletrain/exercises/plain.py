"""Plain data: the only thing that crosses from a student's kernel to the grader.

A *plain value* is ``None``, ``bool``, ``int``, ``float``, ``str``, a numpy array of a numeric,
boolean or string dtype, or a list / dict (string keys) of plain values. Nothing else is
accepted: no pickles, no objects with methods a student could have rigged (``__eq__`` that is
always True, say). :func:`dumps` writes a plain value as one JSON text (arrays as dtype, shape
and base64 of their raw bytes) — what ``check()`` publishes to the grader; :func:`loads` reads it
back with limits on size, depth, count and dtypes, and re-validates. :func:`to_files` /
:func:`from_files` (JSON skeleton plus ``.npz``, ``allow_pickle=False``) are kept for tools; the
grader no longer reads files a kernel could reach.
"""

from __future__ import annotations

import base64
import json
import math
import re
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


# ----------------------------------------------------------------------------------------------
# One message: how check() hands its results to the grader (no files involved).

#: the MIME type of a result message on the kernel's iopub channel
RESULT_MIME = "application/x-stabletrain-result"
#: default cap on one encoded message (characters) and on the arrays it decodes to (bytes)
MAX_MESSAGE_CHARS = 8 * 1024**2
MAX_ARRAY_BYTES = 6 * 1024**2
MAX_NODES = 200_000  # lists, dicts, scalars and arrays in one message
MAX_DEPTH = 32
_DTYPE_NAMES = re.compile(r"[<>|=]?(b1|bool|[iuf][1248]|c8|c16|[US][0-9]{1,4})")


def dumps(value: Any) -> str:
    """Plain ``value`` as one JSON text: arrays become ``{"__ndarray__": [dtype, shape, base64 bytes]}``."""
    check_plain(value)

    def enc(v: Any) -> Any:
        if isinstance(v, np.ndarray):
            a = v if v.flags.c_contiguous else np.array(v, order="C")  # (ascontiguousarray makes 0-d 1-d)
            return {"__ndarray__": [a.dtype.str, list(a.shape), base64.b64encode(a.tobytes()).decode("ascii")]}
        if isinstance(v, float) and not math.isfinite(v):
            return {"__float__": repr(v)}
        if isinstance(v, list):
            return [enc(item) for item in v]
        if isinstance(v, dict):
            return {"__dict__": {key: enc(item) for key, item in v.items()}}
        return v

    return json.dumps(enc(value), allow_nan=False, separators=(",", ":"))


def loads(text: Any, max_chars: int = MAX_MESSAGE_CHARS, max_array_bytes: int = MAX_ARRAY_BYTES) -> Any:
    """Decode what :func:`dumps` wrote — and nothing else: bounded size, depth and count, only
    numeric / bool / string arrays rebuilt from raw bytes (no pickle, no archive, no compression).
    Raises :class:`NotPlainData` for anything else."""
    if not isinstance(text, str):
        raise NotPlainData(f"a result must be text, got {type(text).__name__}")
    if len(text) > max_chars:
        raise NotPlainData(f"result of {len(text)} characters is over the limit of {max_chars}")
    try:
        skeleton = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise NotPlainData(f"result is not valid JSON ({type(exc).__name__})") from None
    budget = {"nodes": MAX_NODES, "bytes": max_array_bytes}

    def dec(v: Any, depth: int) -> Any:
        budget["nodes"] -= 1
        if budget["nodes"] < 0 or depth > MAX_DEPTH:
            raise NotPlainData("result is nested too deeply or has too many parts")
        if isinstance(v, list):
            return [dec(item, depth + 1) for item in v]
        if isinstance(v, dict):
            if set(v) == {"__ndarray__"}:
                return _array(v["__ndarray__"], budget)
            if set(v) == {"__float__"} and v["__float__"] in ("inf", "-inf", "nan"):
                return float(v["__float__"])
            if set(v) == {"__dict__"} and isinstance(v["__dict__"], dict):
                return {key: dec(item, depth + 1) for key, item in v["__dict__"].items()}
            raise NotPlainData(f"unexpected mapping in a result: {sorted(v)[:5]}")
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, int):
            if abs(v) > 2**64:
                raise NotPlainData("integer out of range in a result")
            return v
        if isinstance(v, float):
            return v
        raise NotPlainData(f"unexpected {type(v).__name__} in a result")

    value = dec(skeleton, 0)
    check_plain(value)
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _array(spec: Any, budget: dict[str, int]) -> np.ndarray:
    if not (isinstance(spec, list) and len(spec) == 3 and isinstance(spec[0], str) and isinstance(spec[1], list)
            and isinstance(spec[2], str)):
        raise NotPlainData("malformed array in a result")
    dtype_name, shape, data = spec
    if not _DTYPE_NAMES.fullmatch(dtype_name):
        raise NotPlainData(f"array dtype {dtype_name[:20]!r} is not allowed in a result")
    dtype = np.dtype(dtype_name)
    if dtype.kind not in _ARRAY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise NotPlainData(f"array dtype {dtype} is not allowed in a result")
    if len(shape) > MAX_DEPTH or not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= 2**31
                                         for n in shape):
        raise NotPlainData("malformed array shape in a result")
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    if nbytes > budget["bytes"] or len(data) > 4 * (budget["bytes"] // 3 + 4):
        raise NotPlainData("arrays in a result are over the size limit")
    budget["bytes"] -= nbytes
    try:
        raw = base64.b64decode(data.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise NotPlainData("array data in a result is not base64") from None
    if len(raw) != nbytes:
        raise NotPlainData("array data in a result does not match its shape")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
