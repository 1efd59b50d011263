"""Fast tests of stabletrain.lessons.diagnostics_lab, the experiments and widget of lesson 00, and of
the determinism its exercises declare.

The batched experiment must compute what one nn.Sequential trained in a plain loop computes; its
histograms must count what np.histogram counts; the jitter must move the initial weights and
nothing else; every figure is a detached, renderable Figure; the explorer builds and redraws (its
update time is printed, not asserted: run with ``-s`` to see it). What the lesson claims about the
full experiment is tested in tests/test_claims_00_diagnostics.py.
"""

from __future__ import annotations

import io
import json

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from stabletrain import style
from stabletrain.lessons import diagnostics_lab as lab

SHORT = lab.Config(steps=40)


@pytest.fixture(scope="module")
def short() -> lab.Diagnostics:
    return lab.train_batch((0, 1), SHORT)


def test_the_batch_computes_what_a_plain_loop_computes(short):
    """Network k of the batch is the nn.Sequential of make_model trained on make_batches: the same
    losses up to float32 rounding (the batch sums in another order)."""
    for net in lab.NETS:
        model = lab.make_model(net, seed=1, cfg=SHORT)
        optimizer = torch.optim.SGD(model.parameters(), lr=SHORT.lr)
        losses = []
        for x, y in lab.make_batches(1, cfg=SHORT):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        batched = short.loss[short.net(net), 1]
        assert np.max(np.abs(np.array(losses) - batched) / batched) < 1e-4


def test_both_networks_start_from_the_same_draws_scaled_two_ways():
    weights = lab.initial_weights((0, 3))
    for layer, w in enumerate(weights):
        healthy, broken = w[:2], w[2:]
        scale = (broken / healthy).flatten()
        n_in = w.shape[2]
        expected = lab.CONFIG.broken_std / (lab.CONFIG.gain / np.sqrt(n_in))
        if layer == len(weights) - 1:
            expected /= lab.CONFIG.out_scale
        assert torch.allclose(scale, torch.full_like(scale, expected), rtol=1e-5)
    assert weights[1][0].std().item() == pytest.approx(lab.CONFIG.gain / 8, rel=0.05)
    assert weights[1][2].std().item() == pytest.approx(lab.CONFIG.broken_std, rel=0.05)


def test_jitter_moves_the_initial_weights_and_nothing_else():
    plain, moved = lab.initial_weights((0, 1)), lab.initial_weights((0, 1), jitter=1e-6)
    for a, b in zip(plain, moved):
        rel = ((b - a) / a).abs()
        assert 0.2e-6 < rel.median().item() < 2e-6
    x, y, idx = lab._data((0, 1), SHORT)
    x2, y2, idx2 = lab._data((0, 1), SHORT)
    assert torch.equal(x, x2) and torch.equal(idx, idx2)


def test_histograms_count_what_numpy_counts():
    rng = np.random.default_rng(0)
    values = rng.uniform(-1.2, 1.2, size=(3, 500)).astype(np.float32)
    values[0, :3] = [1.0, -1.0, np.float32(-np.inf)]
    counts = lab._hist(torch.from_numpy(values), -1.0, 1.0, 40).numpy()
    for row, c in zip(values, counts):
        inside = row[np.isfinite(row)]
        want, _ = np.histogram(inside[(inside >= -1) & (inside <= 1)], bins=40, range=(-1, 1))
        assert np.array_equal(c, want)
    assert lab._std(torch.from_numpy(values[:, 3:])).numpy() == pytest.approx(values[:, 3:].std(axis=1), rel=1e-5)


def test_the_recorded_histograms_hold_every_value(short):
    """Every activation lies in [-1, 1] and is counted; the activation gradients' log10 range (-10, 0)
    leaves out at most a thousandth of them (zeros and underflows)."""
    cfg = SHORT
    per_layer = cfg.batch * cfg.width
    assert np.all(short.act_hist.sum(axis=-1) == per_layer)
    assert short.act_grad_hist.sum(axis=-1).min() >= 0.999 * per_layer
    assert short.record_steps.tolist() == list(range(0, cfg.steps, cfg.record_every))
    assert short.act0.shape == (2, 2, cfg.depth, per_layer) and len(short.weight_grad0) == cfg.depth + 1


def test_the_update_ratio_is_measured_from_the_weights(short):
    """Plain SGD: std(ΔW)/std(W_after) of the hidden layers equals lr·std(g)/std(W_before) to 2 %
    (one step barely moves std(W); the output layer, scaled by 0.1, is left out)."""
    for k in range(2):
        ratio = 10.0 ** short.log10_update[k, :, 0, :-1]
        assert np.allclose(ratio, SHORT.lr * short.grad_to_data[k, :, 0, :-1], rtol=0.02)


def test_step_size_errors_are_deterministic():
    a, b = lab.step_size_errors(), lab.step_size_errors()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert a["centred64"].min() < 1e-10 < a["centred32"].min()


def _renders(fig: Figure) -> None:
    assert isinstance(fig, Figure)
    assert plt.get_fignums() == []  # detached: nothing accumulates in pyplot
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=40)
    assert buffer.getvalue()[:4] == b"\x89PNG"
    width, height = fig.get_size_inches()
    assert width <= 10.7 and height <= 5.7, "a figure must fit a 1280x720 slide at 120 dpi"


@pytest.mark.parametrize("name", ["plot_loss", "plot_activation_histograms", "plot_gradient_histograms",
                                  "plot_weight_gradients", "plot_update_ratio", "plot_heatmap", "plot_layer_profile"])
def test_every_figure_renders(name, short):
    _renders(getattr(lab, name)(short))


def test_step_size_figure_renders():
    _renders(lab.plot_step_size(lab.step_size_errors(np.logspace(-12, -1, 12))))


def test_an_unrecorded_step_is_refused(short):
    with pytest.raises(ValueError, match="not recorded"):
        lab.plot_activation_histograms(short, step=3)


def test_the_explorer_redraws_quickly_in_the_course_style(short):
    explorer = lab.DiagnosticsExplorer(short, layer=2, step=20, every=10)
    first = explorer.image.value
    explorer.step.value = 30
    explorer.layer.value = 5
    assert explorer.image.value != first and "layer 5" in explorer.figure.get_suptitle()
    assert "broken" in explorer.summary.value
    sizes = style.font_sizes(explorer.figure)
    assert sizes and min(sizes) >= style.MIN_FONT_PT
    print(f"explorer update: {explorer.last_update_s:.3f} s")


def test_loop_numbers_runs_on_a_short_loop():
    numbers = lab.loop_numbers((0,), steps=60)
    assert numbers["adam_measured"].shape == (1,) and numbers["broken SGD ratios"].shape == (1, 6)
    assert numbers["broken SGD std5"][0] < 0.01 < numbers["healthy SGD std5"][0]


@pytest.mark.parametrize("name", ["rel_error", "numerical_gradient", "grad_norms_per_layer", "ActivationStats",
                                  "train_and_log"])
def test_deterministic_exercises_give_the_same_outputs_twice(name):
    """The exercises declare ``deterministic=True``: running the reference twice on every case gives
    bit-identical outputs, so the grader may remember them."""
    from stabletrain.exercises import get_exercise
    from stabletrain.exercises.plain import dumps

    exercise = get_exercise(name)
    assert exercise.deterministic
    for level in ("visible", "hidden"):
        for case in exercise.cases(level, 7):
            first, second = exercise.run(exercise.reference, case), exercise.run(exercise.reference, case)
            assert json.loads(dumps(first)) == json.loads(dumps(second)), case.label


@pytest.mark.parametrize(("kind", "options"), [("SGD", {"lr": 0.1}), ("SGD", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}),
                                               ("Adam", {"lr": 1e-2}), ("Adam", {"lr": 1e-2, "weight_decay": 0.1}),
                                               ("AdamW", {"lr": 1e-2, "weight_decay": 0.1})])
def test_the_graders_optimizers_compute_what_torchs_do(kind, options):
    """train_and_log's cases use stand-ins for torch.optim (no one-time setup under the grader's watch):
    five steps give the same weights as torch's optimizer, bit for bit."""
    from stabletrain.exercises.diagnostics import _Optimizer

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(4, 3, dtype=torch.float64, generator=gen).requires_grad_()
    b = a.detach().clone().requires_grad_()
    theirs, ours = getattr(torch.optim, kind)([a], **options), _Optimizer([b], kind, **options)
    for _ in range(5):
        g = torch.randn(4, 3, dtype=torch.float64, generator=gen)
        a.grad, b.grad = g.clone(), g.clone()
        theirs.step()
        ours.step()
    assert torch.equal(a, b) and type(ours).__name__ == kind and ours.param_groups[0]["lr"] == options["lr"]
