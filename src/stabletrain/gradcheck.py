"""Gradient checking: a relative error and centred finite differences (CS231n's checker).

The answer key of lesson ``00_diagnostics``. A backward pass is trusted when the analytic gradient
and :func:`numerical_gradient` agree to ``rel_error < 1e-7`` in float64.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: Floor of the denominator of :func:`rel_error`, so that two zeros compare as equal.
_REL_ERROR_FLOOR = 1e-8


def rel_error(x: ArrayLike, y: ArrayLike) -> float:
    r"""Largest elementwise relative error between ``x`` and ``y``.

    .. math::

        \mathrm{rel\_error}(x, y) = \max_i \frac{|x_i - y_i|}{\max(10^{-8},\ |x_i| + |y_i|)}

    Args:
        x, y: scalars or arrays of the same shape (computed in float64).

    Returns:
        A Python float; 0.0 for empty arrays, NaN when any element is NaN.

    Raises:
        ValueError: if the shapes differ (no broadcasting, so a transposed or flattened gradient
            is never compared silently).
    """
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error needs arrays of the same shape, got {a.shape} and {b.shape}")
    if a.size == 0:
        return 0.0
    err = np.abs(a - b) / np.maximum(_REL_ERROR_FLOOR, np.abs(a) + np.abs(b))
    return float(np.max(err))


def numerical_gradient(
    f: Callable[[NDArray[np.float64]], ArrayLike],
    x: ArrayLike,
    h: float = 1e-5,
    df: ArrayLike | None = None,
) -> NDArray[np.float64]:
    r"""Gradient of ``f`` at ``x`` by centred differences, one coordinate at a time.

    Without ``df``, ``f`` maps an array to a scalar and the result is

    .. math:: g_i = \frac{f(x + h e_i) - f(x - h e_i)}{2h}, \qquad \text{error } O(h^2).

    With ``df``, ``f`` maps an array to an array shaped like ``df`` and the result is the
    vector-Jacobian product :math:`g_i = \sum_j df_j\, \partial f_j / \partial x_i`, i.e. the
    gradient that a backward pass receiving upstream gradient ``df`` must return (CS231n's
    ``eval_numerical_gradient_array``).

    ``x`` is perturbed **in place** and restored afterwards (also when ``f`` raises), so ``f`` may
    ignore its argument and read ``x`` through a closure, e.g. ``lambda _: loss(W)`` with
    ``x = W``. This holds when ``x`` is a float64 ``ndarray``; any other input (float32, lists,
    integers) is first copied to float64, and only that copy -- the argument passed to ``f`` -- is
    perturbed, because differences in lower precision are useless for checking.

    Args:
        f: the function to differentiate.
        x: the point, any shape.
        h: the step, > 0.
        df: optional upstream gradient, the shape of ``f(x)``.

    Returns:
        A float64 array shaped like ``x``.

    Raises:
        ValueError: for ``h <= 0``, a non-scalar ``f(x)`` without ``df``, or ``f(x)`` shaped
            unlike ``df``.
    """
    if not h > 0:
        raise ValueError(f"step h must be positive, got {h}")
    if isinstance(x, np.ndarray) and x.dtype == np.float64:
        point = x
    else:
        point = np.array(x, dtype=np.float64)
    upstream = None if df is None else np.asarray(df, dtype=np.float64)

    def evaluate() -> float:
        value = np.asarray(f(point), dtype=np.float64)  # reduced to a float before f runs again
        if upstream is None:
            if value.ndim != 0:
                raise ValueError(
                    f"f must return a scalar when df is None, got an array of shape {value.shape}"
                )
            return float(value)
        if value.shape != upstream.shape:
            raise ValueError(f"f(x) has shape {value.shape} but df has shape {upstream.shape}")
        return float(np.sum(value * upstream))

    grad = np.zeros(point.shape, dtype=np.float64)
    for idx in np.ndindex(point.shape):
        old = point[idx]
        try:
            point[idx] = old + h
            plus = evaluate()
            point[idx] = old - h
            minus = evaluate()
        finally:
            point[idx] = old
        grad[idx] = (plus - minus) / (2 * h)
    return grad
