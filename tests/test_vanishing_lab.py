"""Fast tests of stabletrain.lessons.vanishing_lab, the experiments and widget of lesson 01.

The batched sweep must compute what the reference's one-network backprop computes; the batched
training must match a plain nn.Sequential loop; predictions must agree with the package's own
mean-field code; every figure is a detached, styled, renderable Figure with alt text; the explorer
builds and redraws fast.
"""

from __future__ import annotations

import io
import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from stabletrain import variance
from stabletrain.lessons import vanishing_lab as lab
from stabletrain.style import MIN_FONT_PT, font_sizes
from stabletrain.vanishing import backprop_grad_norms


@pytest.fixture(scope="module")
def small_sweep() -> lab.Sweep:
    return lab.gradient_sweep(depths=(5, 12), scales=(0.5, 1.0, 2.0), seeds=(0, 1, 2, 3, 4), keep_weights=True)


def _check_figure(fig: Figure, axes: int) -> None:
    assert isinstance(fig, Figure)
    assert plt.get_fignums() == []  # detached: nothing accumulates in pyplot
    assert len(fig.axes) == axes
    assert len(fig.get_label()) > 40, "every figure carries its alt text as its label"
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=40)
    assert buffer.getvalue()[:4] == b"\x89PNG"
    assert min(font_sizes(fig)) >= MIN_FONT_PT


def test_sweep_matches_the_reference_backprop(small_sweep):
    """Seed by seed, the batched torch sweep equals stabletrain.vanishing.backprop_grad_norms."""
    n = small_sweep.width
    for act in ("sigmoid", "tanh", "relu"):
        for s in (0, 3):
            gen = torch.Generator().manual_seed(1_000_003 * s + 12)  # what gradient_sweep draws for depth 12, seed s
            z = torch.randn(12, n, n, generator=gen, dtype=torch.float64)
            x = torch.randn(small_sweep.batch, n, generator=gen, dtype=torch.float64)
            g = torch.randn(small_sweep.batch, n, generator=gen, dtype=torch.float64)
            assert torch.equal(z, small_sweep.weights[12][s])
            weights = [(z[i] * (2.0 / math.sqrt(n))).numpy() for i in range(12)]
            inputs, _ = backprop_grad_norms(weights, [np.zeros(n)] * 12, x.numpy(), g.numpy(), act)
            got = small_sweep.log_norms[12, act, 2.0][s]
            np.testing.assert_allclose(got[:-1], np.log(inputs), rtol=1e-10)
            assert got[-1] == pytest.approx(math.log(g.norm().item()))
    assert small_sweep.log_norms[5, "tanh", 1.0].shape == (5, 6)
    assert small_sweep.control[5].shape == (5, 6)


def test_preactivation_variances_match_the_package_mean_field():
    for act in ("tanh", "sigmoid", "relu", "linear"):
        for c in (0.5, 1.0, 2.0):
            want = variance.predicted_activation_variance(10, 64, c**2 / 64, act, which="pre")
            np.testing.assert_allclose(lab.preactivation_variances(10, act, c), want, rtol=1e-6)


def test_predicted_log_norms_for_relu_are_a_straight_line():
    pred = lab.predicted_log_norms(10, "relu", 2.0)
    assert pred[-1] == 0 and pred.shape == (11,)
    np.testing.assert_allclose(np.diff(pred), -0.5 * math.log(4 * 0.5), rtol=1e-12)


def test_fit_slopes_recovers_a_line():
    rng = np.random.default_rng(0)
    slopes = rng.normal(size=4)
    depth = 7
    lines = slopes[:, None] * (depth - np.arange(depth + 1))[None, :] + rng.normal(size=(4, 1))
    np.testing.assert_allclose(lab.fit_slopes(lines), slopes, rtol=1e-12)


def test_random_walk_is_seeded_and_starts_at_zero():
    a, b = lab.random_walk(width=8, depth=5, samples=10, seed=3), lab.random_walk(width=8, depth=5, samples=10, seed=3)
    assert np.array_equal(a, b) and np.all(a[:, 0] == 0) and a.shape == (10, 6)
    moved = lab.random_walk(width=8, depth=5, samples=10, seed=3, jitter=1e-6)
    assert not np.array_equal(a, moved) and np.allclose(a, moved, atol=1e-4)
    stats = lab.random_walk_stats(seeds=(3, 4), width=8, depth=5, samples=10)
    assert stats["step_mean"][0] == pytest.approx(np.diff(a, axis=1).mean()) and stats["steps"].tolist() == [50, 50]


def test_a_seed_does_not_depend_on_the_others_and_jitter_moves_it_a_little():
    """Seed 3 alone equals seed 3 of a batch of seeds; the jitter moves a result by about 1e-6, not more."""
    alone = lab.gradient_sweep(depths=(5,), activations=("tanh",), scales=(1.0,), seeds=(3,))
    batch = lab.gradient_sweep(depths=(5,), activations=("tanh",), scales=(1.0,), seeds=(0, 3))
    assert np.array_equal(alone.log_norms[5, "tanh", 1.0][0], batch.log_norms[5, "tanh", 1.0][1])
    moved = lab.gradient_sweep(depths=(5,), activations=("tanh",), scales=(1.0,), seeds=(3,), jitter=1e-6)
    diff = np.abs(moved.log_norms[5, "tanh", 1.0] - alone.log_norms[5, "tanh", 1.0]).max()
    assert 0 < diff < 1e-4
    spectra = lab.jacobian_spectra(depths=(3,), width=6, seeds=(1,))
    spectra_moved = lab.jacobian_spectra(depths=(3,), width=6, seeds=(1,), jitter=1e-6)
    orthogonal = ("linear", 1.0, "orthogonal", 3)
    assert np.allclose(spectra_moved[orthogonal], 1, atol=1e-13)  # the jitter moves the draw before QR
    gaussian = ("tanh", 1.0, "gaussian", 3)
    assert 0 < np.abs(spectra_moved[gaussian] - spectra[gaussian]).max() < 1e-4


def test_sigmoid_chain_respects_its_bound():
    chain = lab.sigmoid_chain(depth=6, width=16, seeds=(0, 1, 2, 3, 4))
    assert np.all(chain["ratio"] <= chain["bound"]) and chain["ratio"].shape == (5,)


def test_train_deep_batch_matches_one_model_trained_alone():
    """Model (scale 1.5, seed 1) of the batch equals the same MLP trained as an nn.Sequential, built as
    the notebook's relu_mlp builds it (a generator seeded with the seed, randn · c/√fan_in per layer)."""
    from stabletrain.data import make_spirals

    batch = lab.train_deep_batch(activation="tanh", depth=4, width=8, scales=(0.5, 1.5), seeds=(0, 1), steps=5, lr=0.1)
    gen = torch.Generator().manual_seed(1)
    widths = [2, 8, 8, 8, 3]
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        linear = torch.nn.Linear(a, b)
        with torch.no_grad():
            linear.weight.copy_(torch.randn(b, a, generator=gen) * (1.5 / math.sqrt(a)))
            linear.bias.zero_()
        layers += [linear, torch.nn.Tanh()] if i < 3 else [linear]
    model = torch.nn.Sequential(*layers)
    for w, layer in zip(lab.deep_mlp_weights(1.5, depth=4, width=8, seed=1), model[::2]):
        assert torch.equal(w, layer.weight)
    x, y = make_spirals(50, classes=3, seed=1)
    for step in range(5):  # plain SGD by hand (torch.optim's first step imports torch._dynamo: slow)
        model.zero_grad()
        h, inputs = x.clone().requires_grad_(), []
        for module in model:
            if isinstance(module, torch.nn.Linear):
                h.retain_grad()
                inputs.append(h)
            h = module(h)
        loss = torch.nn.functional.cross_entropy(h, y)
        loss.backward()
        assert batch.losses[1, 1, step] == pytest.approx(loss.item(), rel=1e-5)
        assert batch.grad_norms[1, 1, step, 0] == pytest.approx(model[0].weight.grad.norm().item(), rel=1e-4)
        np.testing.assert_allclose(batch.input_grad_norms[1, 1, step], [t.grad.norm().item() for t in inputs],
                                   rtol=1e-4)
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.1 * p.grad


def test_figures(small_sweep):
    _check_figure(lab.plot_sigmoid_derivative(), 1)
    _check_figure(lab.plot_random_walk(lab.random_walk(width=8, depth=10, samples=50)), 1)
    _check_figure(lab.plot_sweep(small_sweep, depth=12), 3)
    _check_figure(lab.plot_slopes(small_sweep, depth=12), 1)
    spectra = lab.jacobian_spectra(depths=(2, 4), width=6, seeds=(0, 1))
    _check_figure(lab.plot_jacobian_spectra(spectra), 6)
    batch = lab.train_deep_batch(activation="relu", depth=5, width=8, scales=(1.0, 3.0), seeds=(0, 1), steps=8, lr=0.5)
    _check_figure(lab.plot_training(batch), 2)
    _check_figure(lab.plot_gradient_profiles(batch), 2)


def test_explorer_builds_and_redraws_fast(small_sweep):
    explorer = lab.VanishingExplorer(small_sweep, depth=5, activation="tanh", scale=1.0)
    assert explorer.image.value[:4] == b"\x89PNG"
    times = []
    for depth, act, scale in [(12, "relu", 2.0), (5, "sigmoid", 0.5), (12, "tanh", 1.0)]:
        explorer.depth.value, explorer.activation.value, explorer.scale.value = depth, act, scale
        times.append(explorer.last_update_s)
        assert f"{act}, {depth} layers" in explorer.ax.get_title()
        assert "predicted" in explorer.summary.value
    print(f"explorer updates: {', '.join(f'{t * 1000:.0f} ms' for t in times)}")
    assert max(times) < 1.0  # < 0.5 s on an idle 2-core machine; generous for a loaded one


def test_rescaling_acts_only_above_the_threshold_and_dead_units_are_counted():
    kwargs = {"depth": 5, "width": 8, "scales": (3.0,), "seeds": (0, 1), "steps": 4, "lr": 0.05}
    plain = lab.train_deep_batch(**kwargs)
    never = lab.train_deep_batch(**kwargs, rescale_above=1e12)
    assert np.array_equal(plain.losses, never.losses) and never.rescaled.sum() == 0
    high = float(np.median(plain.grad_norms[0, :, 0]))
    rescaled = lab.train_deep_batch(**kwargs, rescale_above=high)
    assert np.array_equal(rescaled.rescaled[0, :, 0], (plain.grad_norms[0, :, 0] > high).sum(axis=1))
    assert rescaled.losses[0, :, 0] == pytest.approx(plain.losses[0, :, 0])  # the first forward pass is the same
    assert not np.allclose(rescaled.losses[0, :, 1], plain.losses[0, :, 1])
    assert plain.dead.shape == (1, 2, 4) and np.all((plain.dead >= 0) & (plain.dead <= 1))


def test_sigmoid_chain_splits_the_gap_exactly():
    chain = lab.sigmoid_chain(depth=6, width=16, seeds=(0, 1, 2))
    np.testing.assert_allclose(chain["bound"] / chain["ratio"], chain["weight_gap"] * chain["slope_gap"], rtol=1e-10)
    assert np.all(chain["slope_gap"] >= 1) and np.all(chain["weight_gap"] >= 1)  # each factor is a bound
    sweep = lab.gradient_sweep(depths=(6,), activations=("sigmoid",), scales=(1.0,), width=16, seeds=(0, 1, 2))
    v = sweep.log_norms[6, "sigmoid", 1.0]
    np.testing.assert_allclose(chain["ratio"], np.exp(v[:, 0] - v[:, -1]), rtol=1e-10)


def test_depth_scale_matches_the_closed_forms():
    relu = lab.depth_scale("relu", 1.0)
    assert relu["chi"] == 0.5 and relu["xi"] == pytest.approx(1 / math.log(2))
    linear = lab.depth_scale("linear", 0.5, bias_std=1.0)  # q* = 1/(1 - c^2) for a linear network with biases
    assert linear["q_star"] == pytest.approx(1 / (1 - 0.25)) and linear["chi"] == pytest.approx(0.25)
    tanh = lab.depth_scale("tanh", 1.0, bias_std=0.1)
    q = tanh["q_star"]
    assert q > 0 and lab._gauss(lambda z: np.tanh(z) ** 2, q) + 0.01 == pytest.approx(q, rel=1e-9)  # a fixed point
