"""The answer key of lesson 01 (stabletrain.vanishing) against torch autograd and independent numerics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stabletrain import activations
from stabletrain.vanishing import (
    ACTIVATION_NAMES,
    activation_and_derivative,
    backprop_grad_norms,
    derivative_square_mean,
    grad_norm_monitor,
    input_output_jacobian,
    jacobian_singular_values,
    log_grad_slope,
)

TORCH_ACT = {"linear": lambda t: t, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}


def _net(seed, widths, std=None, bias_std=0.3, batch=5):
    rng = np.random.default_rng(seed)
    ws = [rng.normal(0, std or 1 / math.sqrt(a), size=(b, a)) for a, b in zip(widths[:-1], widths[1:])]
    bs = [rng.normal(0, bias_std, size=b) for b in widths[1:]]
    x = rng.normal(size=(batch, widths[0]))
    g = rng.normal(size=(batch, widths[-1]))
    return ws, bs, x, g


def _torch_norms(ws, bs, x, g, activation):
    tw = [torch.tensor(w, requires_grad=True) for w in ws]
    tb = [torch.tensor(b) for b in bs]
    hs = [torch.tensor(x, requires_grad=True)]
    for w, b in zip(tw, tb):
        h = TORCH_ACT[activation](hs[-1] @ w.T + b)
        h.retain_grad()
        hs.append(h)
    hs[-1].backward(torch.tensor(g))
    inputs = np.array([h.grad.norm().item() for h in hs[:-1]])
    weights = np.array([w.grad.norm().item() for w in tw])
    return inputs, weights


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
@pytest.mark.parametrize("widths", [(4, 4, 4, 4), (3, 7, 2, 5), (6, 2), (5,) * 12])
def test_backprop_grad_norms_match_autograd(activation, widths):
    ws, bs, x, g = _net(len(widths) + 7 * len(activation), widths, std=0.9, bias_std=0.8)
    got_in, got_w = backprop_grad_norms(ws, bs, x, g, activation)
    want_in, want_w = _torch_norms(ws, bs, x, g, activation)
    np.testing.assert_allclose(got_in, want_in, rtol=1e-10)
    np.testing.assert_allclose(got_w, want_w, rtol=1e-10)
    assert got_in.shape == got_w.shape == (len(widths) - 1,)


def test_backprop_does_not_modify_its_inputs():
    ws, bs, x, g = _net(0, (3, 4, 2))
    copies = [a.copy() for a in ws + bs + [x, g]]
    backprop_grad_norms(ws, bs, x, g, "tanh")
    assert all(np.array_equal(a, b) for a, b in zip(ws + bs + [x, g], copies))


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_activation_derivatives_match_autograd(activation):
    z = torch.linspace(-6, 6, 101, dtype=torch.float64, requires_grad=True)
    TORCH_ACT[activation](z).sum().backward()
    f, fp = activation_and_derivative(activation, z.detach().numpy())
    np.testing.assert_allclose(f, TORCH_ACT[activation](z).detach().numpy(), rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(fp, z.grad.numpy(), rtol=1e-10, atol=1e-300)


def test_unknown_activation_raises():
    with pytest.raises(ValueError, match="unknown activation"):
        activation_and_derivative("swish", np.zeros(2))


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "linear"])
@pytest.mark.parametrize("q", [0.05, 0.5, 1.0, 4.0])
def test_derivative_second_moment_matches_package_quadrature(activation, q):
    want = float(activations.derivative_second_moment(activation, math.sqrt(q)))
    assert derivative_square_mean(activation, q) == pytest.approx(want, rel=1e-7)


def test_log_grad_slope_closed_forms_and_signs():
    assert log_grad_slope(math.sqrt(2 / 100), 100, "relu", 3.0) == pytest.approx(0.0, abs=1e-15)  # Kaiming
    assert log_grad_slope(0.1, 100, "linear", 1.0) == pytest.approx(0.0, abs=1e-15)  # LeCun, linear
    assert log_grad_slope(0.05, 100, "relu") == pytest.approx(0.5 * math.log(100 * 0.0025 * 0.5))
    assert log_grad_slope(0.1, 100, "sigmoid") < -1.3  # E[sigma'^2] < 1/16
    assert log_grad_slope(0.0, 10, "tanh") == -math.inf


def test_log_grad_slope_matches_a_measured_deep_linear_network():
    """ln||g|| per layer through 30 random linear layers of width 256 matches the slope (law of large numbers)."""
    rng = np.random.default_rng(0)
    n, depth, std = 256, 30, 0.7 / 16
    ws = [rng.normal(0, std, size=(n, n)) for _ in range(depth)]
    bs = [np.zeros(n) for _ in range(depth)]
    inputs, _ = backprop_grad_norms(ws, bs, rng.normal(size=(64, n)), rng.normal(size=(64, n)), "linear")
    measured = (math.log(inputs[0]) - math.log(inputs[-1])) / (depth - 1)
    assert measured == pytest.approx(log_grad_slope(std, n, "linear"), abs=0.01)


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
@pytest.mark.parametrize("widths", [(4, 4, 4), (3, 6, 2), (2, 5, 7), (5,) * 9])
def test_jacobian_matches_autograd_and_numpy_svd(activation, widths):
    ws, bs, x, _ = _net(3 + len(widths), widths, std=1.1, bias_std=0.5)
    x = x[0]
    tw, tb = [torch.tensor(w) for w in ws], [torch.tensor(b) for b in bs]

    def net(v):
        for w, b in zip(tw, tb):
            v = TORCH_ACT[activation](w @ v + b)
        return v

    jac = torch.autograd.functional.jacobian(net, torch.tensor(x)).numpy()
    np.testing.assert_allclose(input_output_jacobian(ws, bs, x, activation), jac, rtol=1e-10, atol=1e-14)
    got = jacobian_singular_values(ws, bs, x, activation)
    np.testing.assert_allclose(got, np.linalg.svd(jac, compute_uv=False), rtol=1e-8, atol=1e-12 * got.max())
    assert got.shape == (min(widths[0], widths[-1]),) and np.all(np.diff(got) <= 0)


def test_jacobian_needs_one_input_vector():
    ws, bs, x, _ = _net(0, (3, 3))
    with pytest.raises(ValueError, match="one input vector"):
        jacobian_singular_values(ws, bs, x, "tanh")


def test_grad_norm_monitor_reads_weight_gradients_in_order():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(),
                                torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU()),
                                torch.nn.Linear(4, 2, bias=False))
    model(torch.randn(7, 3)).pow(2).sum().backward()
    linears = [model[0], model[2][0], model[3]]
    norms, flags = grad_norm_monitor(model, low=1e-3, high=1e3)
    np.testing.assert_allclose(norms, [m.weight.grad.norm().item() for m in linears], rtol=1e-6)
    assert norms.dtype == np.float64 and flags == ["ok", "ok", "ok"]
    _, flags = grad_norm_monitor(model, low=norms[1] * 1.01, high=norms[2] * 0.99)
    expected = ["vanishing" if n < norms[1] * 1.01 else "exploding" if n > norms[2] * 0.99 else "ok" for n in norms]
    assert flags == expected
    model[0].weight.grad = None
    norms, flags = grad_norm_monitor(model)
    assert norms[0] == 0.0 and flags[0] == "vanishing"


def test_grad_norm_monitor_flags_non_finite_norms_exploding_and_only_reads():
    """NaN compares False with everything, so a naive `n > high` would call it "ok"; inf is above any high."""
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    model(torch.randn(5, 3)).sum().backward()
    model[0].weight.grad[0, 0] = float("nan")
    model[2].weight.grad[0, 0] = float("inf")
    before = [p.grad.clone() for p in model.parameters()]
    norms, flags = grad_norm_monitor(model, low=1e-8, high=1e8)
    assert np.isnan(norms[0]) and np.isinf(norms[1]) and flags == ["exploding", "exploding"]
    assert all(torch.equal(p.grad.nan_to_num(), b.nan_to_num()) for p, b in zip(model.parameters(), before))
