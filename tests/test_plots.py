"""Tests of stabletrain.plots: every plot returns a Figure with the expected axes and lines."""

from __future__ import annotations

import io

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from stabletrain import plots
from stabletrain.diagnostics import ActivationStats, TrainingRecorder
from stabletrain.models import make_mlp, train_steps



@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, ActivationStats, TrainingRecorder]:
    """A 3-hidden-layer tanh MLP trained 8 steps with hooks and a recorder in place."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 4, generator=g), torch.randn(64, 1, generator=g)
    model = make_mlp(4, 16, 3, 1, activation="tanh", seed=0)
    recorder = TrainingRecorder(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with ActivationStats(model, bins=20) as stats:
        train_steps(model, (x, y), nn.functional.mse_loss, opt, 8, recorder=recorder)
    return model, stats, recorder


def _check(fig: Figure, axes: int, lines: list[int] | None = None) -> None:
    """A detached, renderable figure with ``axes`` axes holding ``lines[i]`` lines each."""
    assert isinstance(fig, Figure)
    assert plt.get_fignums() == []  # nothing left open in pyplot
    assert len(fig.axes) == axes
    if lines is not None:
        assert [len(ax.lines) for ax in fig.axes] == lines
    for ax in fig.axes:
        assert ax.get_title() or fig.get_suptitle()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=40)
    assert buffer.getvalue()[:4] == b"\x89PNG"
    plt.close(fig)


def _legend_texts(fig: Figure) -> list[str]:
    legend = fig.axes[0].get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


def test_activation_histograms(trained) -> None:
    _, stats, _ = trained
    fig = plots.activation_histograms(stats)
    _check(fig, 1, [3])
    ax = fig.axes[0]
    assert ax.get_xlabel() == "activation value" and ax.get_ylabel() == "density"
    texts = _legend_texts(fig)
    assert len(texts) == 3 and texts[0].startswith("act1 (Tanh)") and "saturated" in texts[0]
    # a density integrates to 1 over the bins
    line, record = ax.lines[0], stats.stats[0]
    assert np.sum(line.get_ydata() * np.diff(record.edges)) == pytest.approx(1.0)
    _check(plots.activation_histograms(stats.stats[1:]), 1, [2])


def test_activation_histograms_needs_records_with_histograms() -> None:
    model = make_mlp(2, 4, 2, 1, seed=0)
    with pytest.raises(ValueError, match="no activation records"):
        plots.activation_histograms(ActivationStats(model))
    with ActivationStats(model, keep_histograms=False) as stats:
        model(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="keep_histograms"):
        plots.activation_histograms(stats)


def test_gradient_histograms_from_model_and_mapping(trained) -> None:
    model, _, _ = trained
    fig = plots.gradient_histograms(model)
    _check(fig, 1, [4])  # the weight matrices fc1..fc3 and out
    assert all("grad:data" in t for t in _legend_texts(fig))
    grads = {"a": torch.linspace(-1, 1, 100), "b": torch.full((10,), 0.5)}
    fig = plots.gradient_histograms(grads, bins=10)
    _check(fig, 1, [2])
    assert not any("grad:data" in t for t in _legend_texts(fig))
    with pytest.raises(ValueError, match="backward"):
        plots.gradient_histograms(make_mlp(2, 4, 1, 1))


def test_many_layers_label_at_most_ten() -> None:
    grads = {f"layer{i}": torch.randn(50, generator=torch.Generator().manual_seed(i)) for i in range(25)}
    fig = plots.gradient_histograms(grads)
    _check(fig, 1, [25])
    texts = _legend_texts(fig)
    assert len(texts) == 10 and texts[0].startswith("layer0 ") and texts[-1].startswith("layer24 ")


def test_grad_to_data_plot(trained) -> None:
    _, _, recorder = trained
    fig = plots.grad_to_data_plot(recorder)
    _check(fig, 1, [4])
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "step"
    np.testing.assert_allclose(ax.lines[1].get_ydata(), recorder.grad_to_data["fc2.weight"])


def test_update_to_data_plot_has_the_reference_line(trained) -> None:
    _, _, recorder = trained
    fig = plots.update_to_data_plot(recorder)
    _check(fig, 1, [5])  # four weights and the reference line
    reference = fig.axes[0].lines[-1]
    assert np.all(np.asarray(reference.get_ydata()) == -3.0)
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), recorder.log10_update_to_data["fc1.weight"])
    _check(plots.update_to_data_plot(recorder, reference=None), 1, [4])
    with pytest.raises(ValueError, match="no steps"):
        plots.update_to_data_plot(TrainingRecorder(make_mlp(2, 4, 1, 1)))


def test_activation_heatmap(trained) -> None:
    _, stats, _ = trained
    fig = plots.activation_heatmap(stats)
    _check(fig, 3)
    image = fig.axes[0].images[0].get_array()
    assert image.shape == (20, 8)  # bins x steps
    np.testing.assert_allclose(image, np.log1p(stats.histograms("act1")[0].T))
    fig = plots.activation_heatmap(stats, layers=["act3"], log=False)
    _check(fig, 1)
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), stats.histograms("act3")[0].T)
    _check(plots.activation_heatmap(stats, ncols=2), 3)  # a 2 x 2 grid with the empty cell removed


def test_layer_std_plot() -> None:
    curves = {"default": [1.0, 0.5, 0.25], "kaiming": np.ones(3), "xavier": torch.tensor([1.0, 0.8, 0.7])}
    fig = plots.layer_std_plot(curves)
    _check(fig, 1, [3])
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "layer"
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [1, 2, 3])
    assert plots.layer_std_plot(curves, log=False, ylabel="gradient std").axes[0].get_ylabel() == "gradient std"
    with pytest.raises(ValueError, match="no curves"):
        plots.layer_std_plot({})


def test_loss_curves_mark_a_divergence() -> None:
    curves = {"lr=0.1": [1.0, 0.8, 0.6, 0.5], "lr=10": [1.0, 50.0, np.inf, np.nan]}
    fig = plots.loss_curves(curves)
    _check(fig, 1, [2])
    assert _legend_texts(fig) == ["lr=0.1", "lr=10 (diverged at step 2)"]
    assert np.isnan(fig.axes[0].lines[1].get_ydata()[2])  # inf is not drawn
    assert plots.loss_curves(curves, log=False).axes[0].get_yscale() == "linear"


def test_grad_norm_per_step_with_threshold() -> None:
    curves = {"no clipping": np.array([1.0, 10.0, 100.0]), "clip 1.0": np.array([1.0, 2.0, 1.5])}
    fig = plots.grad_norm_per_step(curves, threshold=1.0)
    _check(fig, 1, [3])
    assert "max_norm = 1" in _legend_texts(fig)
    _check(plots.grad_norm_per_step(curves), 1, [2])


def test_drawing_into_a_given_axes() -> None:
    fig, (left, right) = plt.subplots(1, 2)
    assert plots.loss_curves({"a": [1.0, 0.5]}, ax=left) is fig
    assert plots.grad_norm_per_step({"a": [1.0, 0.5]}, ax=right) is fig
    assert [len(ax.lines) for ax in fig.axes] == [1, 1]
    plt.close(fig)
    assert plt.get_fignums() == []


def test_plots_leave_global_style_alone() -> None:
    before = dict(matplotlib.rcParams)
    plots.loss_curves({"a": [1.0, 0.5]})
    assert dict(matplotlib.rcParams) == before
