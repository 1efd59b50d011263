"""numpy batch/layer norm against torch, numerical gradient checks, and known-wrong conventions.

The comparisons are shown to be able to fail: small wrong implementations defined here (each one
convention away from torch's) are run through the very protocol the reference passes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stabletrain import (
    batchnorm_backward,
    batchnorm_backward_alt,
    batchnorm_forward,
    layernorm_backward,
    layernorm_forward,
    numerical_gradient,
    rel_error,
)

BN_SHAPES = [(16, 6), (8, 6, 5)]
DTYPES = [np.float32, np.float64]
BACKWARDS = [batchnorm_backward, batchnorm_backward_alt]
#: (rtol, atol) for comparisons with torch
TOL = {np.float32: (1e-4, 1e-5), np.float64: (1e-10, 1e-12)}
#: axes of the per-channel statistics, by input ndim
BN_AXES = {2: (0,), 3: (0, 2)}


def _params(rng: np.random.Generator, channels: int, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    gamma = (1 + 0.5 * rng.standard_normal(channels)).astype(dtype)
    beta = rng.standard_normal(channels).astype(dtype)
    return gamma, beta


def _batch(
    rng: np.random.Generator, shape: tuple[int, ...], dtype: type, step: int = 0
) -> np.ndarray:
    """Inputs whose mean and spread change with ``step``, so running statistics move."""
    return (rng.standard_normal(shape) * (1.5 + step) + (step - 1.0)).astype(dtype)


def _close(actual: np.ndarray, expected: np.ndarray, dtype: type) -> bool:
    rtol, atol = TOL[dtype]
    return actual.shape == expected.shape and np.allclose(actual, expected, rtol=rtol, atol=atol)


def _torch_disagreements(
    forward: Callable, shape: tuple[int, ...], dtype: type, momentum: float = 0.1
) -> list[str]:
    """Run ``forward`` and ``torch.nn.BatchNorm1d`` side by side; list every disagreement.

    Three training steps (outputs and running buffers after each), then one evaluation step
    (output, and buffers left untouched).
    """
    rng = np.random.default_rng(0)
    channels = shape[1]
    gamma, beta = _params(rng, channels, dtype)
    bn = torch.nn.BatchNorm1d(channels, momentum=momentum, dtype=torch.from_numpy(gamma).dtype)
    with torch.no_grad():
        bn.weight.copy_(torch.from_numpy(gamma))
        bn.bias.copy_(torch.from_numpy(beta))
    running_mean = np.zeros(channels, dtype=dtype)
    running_var = np.ones(channels, dtype=dtype)
    problems = []
    for step in range(3):
        x = _batch(rng, shape, dtype, step)
        out, _ = forward(x, gamma, beta, running_mean, running_var, True, momentum, 1e-5)
        with torch.no_grad():
            expected = bn(torch.from_numpy(x)).numpy()
        if not _close(out, expected, dtype):
            problems.append(f"training output, step {step}")
        if not _close(running_mean, bn.running_mean.numpy(), dtype):
            problems.append(f"running_mean, step {step}")
        if not _close(running_var, bn.running_var.numpy(), dtype):
            problems.append(f"running_var, step {step}")

    bn.eval()
    x = _batch(rng, shape, dtype, 3)
    mean_before, var_before = running_mean.copy(), running_var.copy()
    out, _ = forward(x, gamma, beta, running_mean, running_var, False, momentum, 1e-5)
    with torch.no_grad():
        expected = bn(torch.from_numpy(x)).numpy()
    if not _close(out, expected, dtype):
        problems.append("eval output")
    if not (np.array_equal(running_mean, mean_before) and np.array_equal(running_var, var_before)):
        problems.append("eval changed the running statistics")
    return problems


def _bn_variant(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    training: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
    *,
    axes_by_ndim: dict[int, tuple[int, ...]] = BN_AXES,
    running_ddof: int = 1,
    reversed_momentum: bool = False,
    eval_uses_batch_stats: bool = False,
) -> tuple[np.ndarray, None]:
    """A plain batch norm forward whose conventions can each be switched to a common mistake."""
    channel = (1, -1) if x.ndim == 2 else (1, -1, 1)
    axes = axes_by_ndim[x.ndim]
    if training or eval_uses_batch_stats:
        mean = x.mean(axis=axes, keepdims=True)
        var = x.var(axis=axes, keepdims=True)
    else:
        mean, var = running_mean.reshape(channel), running_var.reshape(channel)
    out = (x - mean) / np.sqrt(var + eps) * gamma.reshape(channel) + beta.reshape(channel)
    if training:
        true_axes = BN_AXES[x.ndim]
        batch_mean = np.broadcast_to(mean, x.shape).mean(axis=true_axes)
        batch_var = x.var(axis=axes, keepdims=True, ddof=running_ddof)
        batch_var = np.broadcast_to(batch_var, x.shape).mean(axis=true_axes)
        keep = momentum if reversed_momentum else 1 - momentum
        running_mean[:] = keep * running_mean + (1 - keep) * batch_mean
        running_var[:] = keep * running_var + (1 - keep) * batch_var
    return out, None


#: mistake -> (implementation, the first disagreement the protocol must report)
WRONG_FORWARDS = {
    "biased running variance": (
        functools.partial(_bn_variant, running_ddof=0),
        "running_var, step 0",
    ),
    "CS231n momentum (m*old + (1-m)*batch)": (
        functools.partial(_bn_variant, reversed_momentum=True),
        "running_mean, step 0",
    ),
    "statistics over the wrong axis": (
        functools.partial(_bn_variant, axes_by_ndim={2: (1,), 3: (0,)}),
        "training output, step 0",
    ),
    "eval uses batch statistics": (
        functools.partial(_bn_variant, eval_uses_batch_stats=True),
        "eval output",
    ),
}


def _torch_batchnorm_grads(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    training: bool,
    dout: np.ndarray,
) -> tuple[np.ndarray, ...]:
    xt, gt, bt = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    rm, rv = torch.tensor(running_mean), torch.tensor(running_var)
    out = F.batch_norm(xt, rm, rv, gt, bt, training=training, momentum=0.1, eps=1e-5)
    out.backward(torch.from_numpy(dout))
    return out.detach().numpy(), xt.grad.numpy(), gt.grad.numpy(), bt.grad.numpy()


# ------------------------------------------------------------------ batch norm forward vs torch


@pytest.mark.parametrize("shape", BN_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum", [0.1, 0.3])
def test_batchnorm_forward_matches_torch(
    shape: tuple[int, ...], dtype: type, momentum: float
) -> None:
    assert _torch_disagreements(batchnorm_forward, shape, dtype, momentum) == []


@pytest.mark.parametrize("shape", BN_SHAPES)
def test_the_wrong_implementations_differ_only_in_their_mistake(shape: tuple[int, ...]) -> None:
    # the harness with every convention right passes, so each failure below is its one mistake
    assert _torch_disagreements(_bn_variant, shape, np.float64) == []


@pytest.mark.parametrize("shape", BN_SHAPES)
@pytest.mark.parametrize("mistake", list(WRONG_FORWARDS))
def test_wrong_batchnorm_conventions_are_rejected(shape: tuple[int, ...], mistake: str) -> None:
    forward, first_problem = WRONG_FORWARDS[mistake]
    problems = _torch_disagreements(forward, shape, np.float64)
    assert problems, f"the comparison with torch did not catch: {mistake}"
    assert problems[0] == first_problem


def test_batchnorm_forward_statistics() -> None:
    rng = np.random.default_rng(1)
    x = _batch(rng, (64, 5), np.float64, 2)
    out, _ = batchnorm_forward(x, np.ones(5), np.zeros(5), np.zeros(5), np.ones(5))
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=0), x.var(axis=0) / (x.var(axis=0) + 1e-5), rtol=1e-12)


def test_batchnorm_eval_uses_running_statistics_only() -> None:
    x = np.array([[1.0, 2.0], [3.0, 6.0]])
    running_mean, running_var = np.array([1.0, -1.0]), np.array([4.0, 0.25])
    out, _ = batchnorm_forward(
        x, np.array([2.0, 1.0]), np.array([0.5, 0.0]), running_mean, running_var,
        training=False, eps=0.5,
    )
    expected = (x - [1.0, -1.0]) / np.sqrt([4.5, 0.75]) * [2.0, 1.0] + [0.5, 0.0]
    np.testing.assert_allclose(out, expected, rtol=1e-14)
    assert running_mean.tolist() == [1.0, -1.0] and running_var.tolist() == [4.0, 0.25]
    # one value per channel is fine in evaluation
    out, _ = batchnorm_forward(x[:1], np.ones(2), np.zeros(2), running_mean, running_var, False)
    assert out.shape == (1, 2)


def test_batchnorm_eval_cache_ignores_later_updates_of_the_running_statistics() -> None:
    rng = np.random.default_rng(10)
    x = _batch(rng, (6, 3), np.float64)
    gamma, beta = _params(rng, 3, np.float64)
    running_mean, running_var = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    dout = rng.standard_normal(x.shape)
    _, cache = batchnorm_forward(x, gamma, beta, running_mean, running_var, training=False)
    before = [batchnorm_backward(dout, cache), batchnorm_backward_alt(dout, cache)]
    batchnorm_forward(x * 3, gamma, beta, running_mean, running_var)  # a training step
    after = [batchnorm_backward(dout, cache), batchnorm_backward_alt(dout, cache)]
    for grads_before, grads_after in zip(before, after):
        for a, b in zip(grads_before, grads_after):
            assert np.array_equal(a, b)


@pytest.mark.parametrize("shape", BN_SHAPES)
def test_batchnorm_preserves_float32(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(2)
    x = _batch(rng, shape, np.float32)
    gamma, beta = _params(rng, shape[1], np.float64)  # float64 parameters do not upcast
    running_mean, running_var = np.zeros(shape[1], np.float32), np.ones(shape[1], np.float32)
    for training in (True, False):
        out, cache = batchnorm_forward(x, gamma, beta, running_mean, running_var, training)
        assert out.dtype == np.float32
        for backward in BACKWARDS:
            grads = backward(np.ones_like(x), cache)
            assert [g.dtype for g in grads] == [np.float32] * 3
            assert [g.shape for g in grads] == [shape, (shape[1],), (shape[1],)]
    assert running_mean.dtype == running_var.dtype == np.float32


# ---------------------------------------------------------------- batch norm backward vs torch


@pytest.mark.parametrize("backward", BACKWARDS)
@pytest.mark.parametrize("shape", BN_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_backward_matches_torch_autograd(
    backward: Callable, shape: tuple[int, ...], dtype: type, training: bool
) -> None:
    rng = np.random.default_rng(3)
    x = _batch(rng, shape, dtype, 1)
    gamma, beta = _params(rng, shape[1], dtype)
    running_mean = rng.standard_normal(shape[1]).astype(dtype)
    running_var = rng.uniform(0.5, 2.0, shape[1]).astype(dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    expected = _torch_batchnorm_grads(x, gamma, beta, running_mean, running_var, training, dout)

    out, cache = batchnorm_forward(
        x, gamma, beta, running_mean.copy(), running_var.copy(), training
    )
    actual = (out, *backward(dout, cache))
    for name, a, e in zip(("out", "dx", "dgamma", "dbeta"), actual, expected):
        assert _close(a, e, dtype), f"{name}: max abs difference {np.max(np.abs(a - e))}"


def test_the_two_backward_passes_agree_on_a_large_batch() -> None:
    rng = np.random.default_rng(4)
    x = _batch(rng, (256, 32), np.float64, 2)
    gamma, beta = _params(rng, 32, np.float64)
    _, cache = batchnorm_forward(x, gamma, beta, np.zeros(32), np.ones(32))
    dout = rng.standard_normal(x.shape)
    for a, b in zip(batchnorm_backward(dout, cache), batchnorm_backward_alt(dout, cache)):
        assert rel_error(a, b) < 1e-9


# ------------------------------------------------------------------- numerical gradient checks


def _bn_numerical_grads(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, training: bool, dout: np.ndarray
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Numerical (dx, dgamma, dbeta), and the running statistics used in evaluation."""
    running_mean = np.linspace(-1, 1, x.shape[1])
    running_var = np.linspace(0.5, 2, x.shape[1])

    def out(x_: np.ndarray, g_: np.ndarray, b_: np.ndarray) -> np.ndarray:
        return batchnorm_forward(x_, g_, b_, running_mean.copy(), running_var.copy(), training)[0]

    return (
        numerical_gradient(lambda v: out(v, gamma, beta), x, df=dout),
        numerical_gradient(lambda v: out(x, v, beta), gamma, df=dout),
        numerical_gradient(lambda v: out(x, gamma, v), beta, df=dout),
    ), (running_mean, running_var)


@pytest.mark.parametrize("backward", BACKWARDS)
@pytest.mark.parametrize("shape", [(5, 4), (3, 4, 2)])
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_backward_numerical_gradient(
    backward: Callable, shape: tuple[int, ...], training: bool
) -> None:
    rng = np.random.default_rng(5)
    x = _batch(rng, shape, np.float64, 1)
    gamma, beta = _params(rng, shape[1], np.float64)
    dout = rng.standard_normal(shape)
    numeric, (running_mean, running_var) = _bn_numerical_grads(x, gamma, beta, training, dout)
    _, cache = batchnorm_forward(x, gamma, beta, running_mean, running_var, training)
    for name, a, n in zip(("dx", "dgamma", "dbeta"), backward(dout, cache), numeric):
        assert rel_error(a, n) < 1e-7, name


def test_numerical_check_rejects_a_backward_that_ignores_the_batch_statistics() -> None:
    # the classic bug: treating mu and var as constants in training, dx = dy * gamma / std
    rng = np.random.default_rng(6)
    x = _batch(rng, (5, 4), np.float64, 1)
    gamma, beta = _params(rng, 4, np.float64)
    dout = rng.standard_normal(x.shape)
    (dx_numeric, _, _), _ = _bn_numerical_grads(x, gamma, beta, True, dout)
    _, cache = batchnorm_forward(x, gamma, beta, np.zeros(4), np.ones(4))
    dx_wrong = dout * cache["gamma"] * cache["inv_std"]
    assert rel_error(batchnorm_backward_alt(dout, cache)[0], dx_numeric) < 1e-7
    assert rel_error(dx_wrong, dx_numeric) > 1e-3


# ---------------------------------------------------------------------------------- layer norm


@pytest.mark.parametrize("shape", [(6,), (7, 6), (3, 4, 6), (2, 1, 3, 5)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_layernorm_matches_torch(shape: tuple[int, ...], dtype: type) -> None:
    rng = np.random.default_rng(7)
    x = _batch(rng, shape, dtype, 2)
    gamma, beta = _params(rng, shape[-1], dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    xt, gt, bt = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    expected_out = F.layer_norm(xt, (shape[-1],), gt, bt, eps=1e-5)
    expected_out.backward(torch.from_numpy(dout))

    out, cache = layernorm_forward(x, gamma, beta)
    dx, dgamma, dbeta = layernorm_backward(dout, cache)
    expected = (expected_out.detach().numpy(), xt.grad.numpy(), gt.grad.numpy(), bt.grad.numpy())
    for name, a, e in zip(("out", "dx", "dgamma", "dbeta"), (out, dx, dgamma, dbeta), expected):
        assert a.dtype == dtype, name
        assert _close(a, e, dtype), f"{name}: max abs difference {np.max(np.abs(a - e))}"


def test_layernorm_normalizes_rows_with_the_biased_variance() -> None:
    x = np.array([[1.0, 2.0, 3.0, 6.0]])
    out, _ = layernorm_forward(x, np.ones(4), np.zeros(4), eps=1e-5)
    np.testing.assert_allclose(out, (x - 3.0) / np.sqrt(3.5 + 1e-5), rtol=1e-14)
    # an unbiased variance (ddof=1) would give a different answer: the test above can tell
    assert not np.allclose(out, (x - 3.0) / np.sqrt(x.var(ddof=1) + 1e-5))


@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 5)])
def test_layernorm_backward_numerical_gradient(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(8)
    x = _batch(rng, shape, np.float64, 1)
    gamma, beta = _params(rng, shape[-1], np.float64)
    dout = rng.standard_normal(shape)
    _, cache = layernorm_forward(x, gamma, beta)
    dx, dgamma, dbeta = layernorm_backward(dout, cache)

    def out(x_: np.ndarray, g_: np.ndarray, b_: np.ndarray) -> np.ndarray:
        return layernorm_forward(x_, g_, b_)[0]

    assert rel_error(dx, numerical_gradient(lambda v: out(v, gamma, beta), x, df=dout)) < 1e-7
    assert rel_error(dgamma, numerical_gradient(lambda v: out(x, v, beta), gamma, df=dout)) < 1e-7
    assert rel_error(dbeta, numerical_gradient(lambda v: out(x, gamma, v), beta, df=dout)) < 1e-7


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("value", [0.1, -3.7, 1e4])
def test_layernorm_constant_row_gives_exactly_beta(dtype: type, value: float) -> None:
    rng = np.random.default_rng(9)
    gamma, beta = _params(rng, 7, dtype)
    x = np.full((3, 7), value, dtype=dtype)
    out, _ = layernorm_forward(x, gamma, beta)
    assert np.array_equal(out, np.broadcast_to(beta, x.shape))


# -------------------------------------------------------------------------------------- errors


def test_batchnorm_errors() -> None:
    ones, zeros = np.ones(3), np.zeros(3)
    with pytest.raises(ValueError, match=r"expected 2D or 3D input \(got 1D input\)"):
        batchnorm_forward(np.ones(3), ones, zeros, zeros.copy(), ones.copy())
    with pytest.raises(ValueError, match=r"got 4D input"):
        batchnorm_forward(np.ones((2, 3, 4, 5)), ones, zeros, zeros.copy(), ones.copy())
    for shape in [(1, 3), (1, 3, 1)]:
        with pytest.raises(ValueError, match=r"more than 1 value per channel.*\(1, 3"):
            batchnorm_forward(np.ones(shape), ones, zeros, zeros.copy(), ones.copy())
    with pytest.raises(ValueError, match=r"gamma must have shape \(3,\).*got \(4,\)"):
        batchnorm_forward(np.ones((4, 3)), np.ones(4), zeros, zeros.copy(), ones.copy())
    with pytest.raises(ValueError, match=r"running_var must have shape \(3,\).*got \(1, 3\)"):
        batchnorm_forward(np.ones((4, 3)), ones, zeros, zeros.copy(), np.ones((1, 3)))
    with pytest.raises(TypeError, match="running_mean must be a float ndarray.*list"):
        batchnorm_forward(np.ones((4, 3)), ones, zeros, [0.0, 0.0, 0.0], ones.copy())
    with pytest.raises(TypeError, match="x must be a floating-point array, got dtype int64"):
        batchnorm_forward(np.ones((4, 3), dtype=np.int64), ones, zeros, zeros.copy(), ones.copy())
    with pytest.raises(ValueError, match="eps must be positive, got 0"):
        batchnorm_forward(np.ones((4, 3)), ones, zeros, zeros.copy(), ones.copy(), eps=0)
    _, cache = batchnorm_forward(np.ones((4, 3)), ones, zeros, zeros.copy(), ones.copy())
    for backward in BACKWARDS:
        with pytest.raises(ValueError, match=r"\(4, 3\), got \(3, 4\)"):
            backward(np.ones((3, 4)), cache)


def test_layernorm_errors() -> None:
    with pytest.raises(ValueError, match=r"gamma must have shape \(5,\).*got \(4,\)"):
        layernorm_forward(np.ones((2, 5)), np.ones(4), np.zeros(5))
    with pytest.raises(ValueError, match=r"non-empty last axis, got shape \(2, 0\)"):
        layernorm_forward(np.ones((2, 0)), np.ones(0), np.zeros(0))
    with pytest.raises(ValueError, match=r"non-empty last axis, got shape \(\)"):
        layernorm_forward(np.array(1.0), np.ones(1), np.zeros(1))
    _, cache = layernorm_forward(np.ones((2, 5)), np.ones(5), np.zeros(5))
    with pytest.raises(ValueError, match=r"\(2, 5\), got \(5, 2\)"):
        layernorm_backward(np.ones((5, 2)), cache)


# ----------------------------------------------------------------------------------------------
# Input standardization (lesson 05)


def test_standardize_fit_and_apply_match_the_biased_std_and_use_training_statistics() -> None:
    from stabletrain import standardize_apply, standardize_fit

    rng = np.random.default_rng(0)
    train, test = rng.normal(5, 3, size=(50, 4)), rng.normal(-2, 1, size=(7, 4))
    stats = standardize_fit(train)
    z = standardize_apply(train, stats)
    assert np.allclose(z.mean(0), 0) and np.allclose(z.std(0), 1)
    assert np.allclose(standardize_apply(test, stats), (test - train.mean(0)) / train.std(0))
    torch_z = torch.nn.functional.batch_norm(torch.tensor(train), None, None, training=True, eps=1e-12)
    assert np.allclose(z, torch_z.numpy())  # batch norm without gamma, beta and eps is standardization


def test_standardize_centres_constant_features_and_keeps_dtype() -> None:
    from stabletrain import standardize_apply, standardize_fit

    train = np.array([[1.0, 2.5], [3.0, 2.5], [5.0, 2.5]], dtype=np.float32)
    stats = standardize_fit(train)
    assert stats["scale"][1] == 1.0
    out = standardize_apply(np.array([[3.0, 4.5]], dtype=np.float32), stats)
    assert out.dtype == np.float32 and np.allclose(out, [[0.0, 2.0]])
    before = train.copy()
    standardize_apply(train, stats)
    assert np.array_equal(train, before)
    with pytest.raises(ValueError):
        standardize_fit(np.zeros((0, 3)))
    with pytest.raises(TypeError):
        standardize_fit(np.ones((3, 2), dtype=np.int64))
