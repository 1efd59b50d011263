"""rel_error and numerical_gradient: known values, analytic gradients, and the in-place contract."""

from __future__ import annotations

import numpy as np
import pytest

from stabletrain import numerical_gradient, rel_error


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


# ---------------------------------------------------------------------------------- rel_error


def test_rel_error_known_values() -> None:
    assert rel_error(1.0, 1.0) == 0.0
    assert rel_error(1.0, 1.1) == pytest.approx(0.1 / 2.1, rel=1e-12)
    assert rel_error(2.0, -2.0) == pytest.approx(1.0)
    # the largest elementwise error, not an average or a norm ratio
    x = np.array([1.0, 100.0, 0.5])
    y = np.array([1.0, 100.0, 0.4])
    assert rel_error(x, y) == pytest.approx(0.1 / 0.9, rel=1e-12)


def test_rel_error_floor_for_zeros() -> None:
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
    # below the 1e-8 floor the error is absolute, scaled by 1e8
    assert rel_error(0.0, 1e-12) == pytest.approx(1e-4, rel=1e-9)


def test_rel_error_types_and_shapes() -> None:
    assert isinstance(rel_error(np.float32(1), np.float32(2)), float)
    assert rel_error(np.float32(1.0), 1.0) == 0.0
    assert rel_error([[1.0, 2.0]], np.array([[1.0, 2.0]])) == 0.0
    assert rel_error(np.empty((0, 3)), np.empty((0, 3))) == 0.0
    assert np.isnan(rel_error([1.0, np.nan], [1.0, 2.0]))


def test_rel_error_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(3, 2\)"):
        rel_error(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(ValueError):
        rel_error(np.ones(3), 1.0)  # no broadcasting


# ------------------------------------------------------------------------- numerical_gradient


def test_numerical_gradient_of_known_functions() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4))
    assert rel_error(numerical_gradient(lambda v: np.sum(v**3), x), 3 * x**2) < 1e-7
    assert rel_error(numerical_gradient(lambda v: np.sum(np.sin(v)), x), np.cos(x)) < 1e-7

    a = rng.standard_normal((5, 5))
    v = rng.standard_normal(5)
    assert rel_error(numerical_gradient(lambda u: u @ a @ u, v), (a + a.T) @ v) < 1e-7


def test_numerical_gradient_with_upstream_is_a_vector_jacobian_product() -> None:
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 3))
    x = rng.standard_normal((2, 4))
    df = rng.standard_normal((2, 3))
    grad = numerical_gradient(lambda v: v @ w, x, df=df)  # f(x) = x W  ->  df W^T
    assert grad.shape == x.shape
    assert rel_error(grad, df @ w.T) < 1e-7

    z = rng.standard_normal(6)
    dz = rng.standard_normal(6)
    s = _sigmoid(z)
    assert rel_error(numerical_gradient(_sigmoid, z, df=dz), dz * s * (1 - s)) < 1e-7


def test_numerical_gradient_flags_a_planted_bug() -> None:
    z = np.random.default_rng(2).standard_normal(6)
    dz = np.ones(6)
    s = _sigmoid(z)
    numeric = numerical_gradient(_sigmoid, z, df=dz)
    assert rel_error(numeric, s * (1 - s)) < 1e-7
    assert rel_error(numeric, s * (1 + s)) > 1e-2  # a sign error
    assert rel_error(numeric, 0.999 * s * (1 - s)) > 1e-4  # an error of 0.1%


def test_numerical_gradient_perturbs_float64_arrays_in_place_and_restores_them() -> None:
    w = np.random.default_rng(3).standard_normal((3, 2))
    before = w.copy()
    # CS231n's pattern: f ignores its argument and reads w through the closure
    grad = numerical_gradient(lambda _: np.sum(w**2), w)
    assert rel_error(grad, 2 * w) < 1e-7
    assert np.array_equal(w, before)


def test_numerical_gradient_restores_x_when_f_raises() -> None:
    w = np.arange(4.0)
    before = w.copy()
    calls = []

    def f(v: np.ndarray) -> float:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return float(v.sum())

    with pytest.raises(RuntimeError, match="boom"):
        numerical_gradient(f, w)
    assert np.array_equal(w, before)


def test_numerical_gradient_copies_other_inputs_to_float64() -> None:
    x32 = np.array([0.3, -1.2, 2.0], dtype=np.float32)
    before = x32.copy()
    seen = []

    def f(v: np.ndarray) -> float:
        seen.append(v.dtype)
        return float(np.sum(v**2))

    grad = numerical_gradient(f, x32)
    assert grad.dtype == np.float64
    assert set(seen) == {np.dtype(np.float64)}
    assert np.array_equal(x32, before)
    assert rel_error(grad, 2 * x32.astype(np.float64)) < 1e-7
    # lists and integer arrays too
    from_list = numerical_gradient(lambda v: np.sum(v**2), [1, 2])
    assert rel_error(from_list, np.array([2.0, 4.0])) < 1e-7


def test_numerical_gradient_handles_non_contiguous_and_0d() -> None:
    base = np.random.default_rng(4).standard_normal((4, 6))
    x = base[:, ::2]  # a strided view: perturbed in place through the view
    grad = numerical_gradient(lambda v: np.sum(np.exp(v)), x)
    assert rel_error(grad, np.exp(x)) < 1e-7
    assert rel_error(numerical_gradient(lambda v: v**2, np.array(1.5)), np.array(3.0)) < 1e-7


def test_numerical_gradient_allows_f_to_reuse_its_output_buffer() -> None:
    buffer = np.zeros(2)

    def f(v: np.ndarray) -> np.ndarray:  # returns the same buffer every call
        buffer[:] = 3 * v
        return buffer

    x = np.array([1.0, -2.0])
    assert rel_error(numerical_gradient(f, x, df=np.ones(2)), np.full(2, 3.0)) < 1e-7


def test_numerical_gradient_errors() -> None:
    x = np.ones(3)
    with pytest.raises(ValueError, match="h must be positive, got 0"):
        numerical_gradient(lambda v: v.sum(), x, h=0)
    with pytest.raises(ValueError, match=r"scalar.*\(3,\)"):
        numerical_gradient(lambda v: v * 2, x)
    with pytest.raises(ValueError, match=r"\(3,\) but df has shape \(2,\)"):
        numerical_gradient(lambda v: v * 2, x, df=np.ones(2))
