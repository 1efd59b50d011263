"""The lessons' plots: one function per plot, each returning its ``matplotlib`` Figure.

All plots share one style (light grid, no top/right spines, sizes readable on a slide), layers are
coloured by depth (viridis: dark = first layer, yellow = last) and compared runs by the default
colour cycle. Non-finite values (a diverged run) are left out of lines, and a diverged run's label
says at which step it diverged.

Figures are detached from pyplot (``plt.close`` right after creation): nothing is shown unless the
figure is the last expression of a cell or passed to ``display``, so a figure never appears twice
and a widget that redraws on every slider move never piles up open figures. No function calls
``plt.show()``. Functions that draw on a single axes accept ``ax=`` to draw into an existing one
(its figure is returned).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import ParamSpec

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import Tensor, nn

from stabletrain import style
from stabletrain.diagnostics import ActivationStats, LayerRecord, TrainingRecorder

__all__ = [
    "activation_histograms",
    "gradient_histograms",
    "grad_to_data_plot",
    "update_to_data_plot",
    "activation_heatmap",
    "layer_std_plot",
    "loss_curves",
    "grad_norm_per_step",
]

_STYLE = style.RC  # one style for every lesson: see stabletrain.style
_FIGSIZE = (8.0, 4.5)  # 16:9, fits a notebook column and a slide
_LAYER_FIGSIZE = (10.0, 4.5)  # room for a per-layer legend on the right
_MAX_LEGEND = 10  # layer plots label at most this many layers, evenly spread
# the legend shows the saturated fraction for bounded activations and the dead one for ReLUs
_BOUNDED_KINDS = frozenset({"Tanh", "Sigmoid", "Hardtanh", "Hardsigmoid", "Softsign"})
_RELU_KINDS = frozenset({"ReLU", "ReLU6"})

P = ParamSpec("P")


def _styled(fn: Callable[P, Figure]) -> Callable[P, Figure]:
    """Build the figure inside the shared style, without touching the global rcParams."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Figure:
        with mpl.rc_context(_STYLE):
            return fn(*args, **kwargs)

    return wrapper


def _axes(ax: Axes | None, figsize: tuple[float, float] = _FIGSIZE) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig, new_ax = plt.subplots(figsize=figsize, layout="constrained")
    plt.close(fig)
    return fig, new_ax


def _layer_colors(n: int) -> list[tuple[float, float, float, float]]:
    cmap = mpl.colormaps["viridis"]
    return [cmap(0.9 * i / max(n - 1, 1)) for i in range(n)]


def _labelled(n: int) -> set[int]:
    """Indices of the layers that get a legend entry (all if few, else evenly spread)."""
    if n <= _MAX_LEGEND:
        return set(range(n))
    return {int(round(i)) for i in np.linspace(0, n - 1, _MAX_LEGEND)}


def _legend(ax: Axes) -> None:
    handles, _ = ax.get_legend_handles_labels()
    if not handles:
        return
    if len(handles) <= 4:
        ax.legend(loc="best")
    else:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _finite(values: Sequence[float] | np.ndarray | Tensor) -> np.ndarray:
    """As a float array with every non-finite value replaced by NaN (a gap in the line)."""
    arr = np.array(values.detach().cpu().numpy() if isinstance(values, Tensor) else values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-D sequence of numbers, got shape {arr.shape}")
    arr[~np.isfinite(arr)] = np.nan
    return arr


def _run_label(label: str, values: Sequence[float] | np.ndarray | Tensor) -> tuple[str, np.ndarray]:
    """The run's label, marked with the first non-finite step, and its values ready to plot."""
    arr = _finite(values)
    bad = np.flatnonzero(np.isnan(arr))
    if bad.size and not np.isnan(arr).all():
        return f"{label} (diverged at step {bad[0]})", arr
    return label, arr


def _records(stats: ActivationStats | Sequence[LayerRecord]) -> list[LayerRecord]:
    records = stats.stats if isinstance(stats, ActivationStats) else list(stats)
    if not records:
        raise ValueError("no activation records yet: run a forward pass with the hooks in place")
    return records


@_styled
def activation_histograms(
    stats: ActivationStats | Sequence[LayerRecord], ax: Axes | None = None
) -> Figure:
    """Per-layer activation histograms of the latest forward pass, one line per layer.

    ``stats`` is an :class:`~stabletrain.diagnostics.ActivationStats` (its latest record per layer
    is drawn) or a sequence of records. Each line is the density over the layer's bins; the legend
    gives mean and std, plus the saturated fraction for bounded activations (tanh, sigmoid, ...)
    and the dead fraction for ReLUs.
    """
    records = _records(stats)
    if any(r.counts is None for r in records):
        raise ValueError("these records have no histograms: use ActivationStats(keep_histograms=True)")
    fig, ax = _axes(ax, _LAYER_FIGSIZE)
    shown = _labelled(len(records))
    for i, (r, color) in enumerate(zip(records, _layer_colors(len(records)))):
        centres = (r.edges[:-1] + r.edges[1:]) / 2
        total = r.counts.sum() * np.diff(r.edges)
        density = np.divide(r.counts, total, out=np.zeros_like(total), where=total > 0)
        label = f"{r.name} ({r.kind}): mean {r.mean:+.2f}, std {r.std:.2f}"
        if r.kind in _BOUNDED_KINDS:
            label += f", saturated {r.saturated:.0%}"
        if r.kind in _RELU_KINDS:
            label += f", dead {r.dead:.0%}"
        ax.plot(centres, density, color=color, label=label if i in shown else "_nolegend_")
    ax.set(title="Activations per layer", xlabel="activation value", ylabel="density")
    _legend(ax)
    return fig


def _gradients(source: nn.Module | Mapping[str, Tensor]) -> dict[str, tuple[Tensor, float | None]]:
    """``{name: (gradient, grad:data ratio or None)}``."""
    if isinstance(source, nn.Module):
        grads = {
            name: (p.grad.detach(), (p.grad.std(correction=0) / p.detach().std(correction=0)).item())
            for name, p in source.named_parameters()
            if p.grad is not None and p.ndim >= 2
        }
        if not grads:
            raise ValueError(
                f"{type(source).__name__} has no weight matrix with a gradient: call loss.backward() first"
            )
        return grads
    if not source:
        raise ValueError("no gradients given")
    return {name: (g.detach(), None) for name, g in source.items()}


@_styled
def gradient_histograms(
    source: nn.Module | Mapping[str, Tensor], bins: int = 50, ax: Axes | None = None
) -> Figure:
    """Per-layer gradient histograms, one line per layer (densities, each over its own range).

    ``source`` is a model after ``loss.backward()`` — its weight matrices (``ndim >= 2``) with a
    gradient are drawn and the legend adds std(grad)/std(weight) — or a mapping name → gradient.
    Non-finite entries are left out.
    """
    grads = _gradients(source)
    fig, ax = _axes(ax, _LAYER_FIGSIZE)
    shown = _labelled(len(grads))
    for i, ((name, (g, ratio)), color) in enumerate(zip(grads.items(), _layer_colors(len(grads)))):
        values = g.double().flatten()
        values = values[torch.isfinite(values)]
        if values.numel() == 0:
            continue
        lo, hi = values.min().item(), values.max().item()
        if lo == hi:
            lo, hi = lo - 0.5, hi + 0.5
        density, edges = torch.histogram(values, bins=bins, range=(lo, hi), density=True)
        label = f"{name} {tuple(g.shape)}: std {values.std(correction=0).item():.2e}"
        if ratio is not None:
            label += f", grad:data {ratio:.2e}"
        centres = ((edges[:-1] + edges[1:]) / 2).numpy()
        ax.plot(centres, density.numpy(), color=color, label=label if i in shown else "_nolegend_")
    ax.set(title="Gradients per layer", xlabel="gradient value", ylabel="density")
    _legend(ax)
    return fig


def _per_step(ax: Axes, series: Mapping[str, np.ndarray]) -> None:
    shown = _labelled(len(series))
    for i, ((name, values), color) in enumerate(zip(series.items(), _layer_colors(len(series)))):
        ax.plot(np.arange(len(values)), _finite(values), color=color,
                label=name if i in shown else "_nolegend_")


@_styled
def grad_to_data_plot(recorder: TrainingRecorder, ax: Axes | None = None) -> Figure:
    """std(grad)/std(weight) of every recorded parameter over training steps, log scale."""
    if recorder.steps == 0:
        raise ValueError("the recorder has no steps yet")
    fig, ax = _axes(ax, _LAYER_FIGSIZE)
    _per_step(ax, recorder.grad_to_data)
    ax.set_yscale("log")
    ax.set(title="grad:data ratio", xlabel="step", ylabel="std(grad) / std(weight)")
    _legend(ax)
    return fig


@_styled
def update_to_data_plot(
    recorder: TrainingRecorder, reference: float | None = -3.0, ax: Axes | None = None
) -> Figure:
    """log10 of std(update)/std(weight) of every recorded parameter over steps.

    A dashed line marks ``reference`` (makemore's rule of thumb: updates about 1/1000 of the
    weights, −3); ``None`` leaves it out.
    """
    if recorder.steps == 0:
        raise ValueError("the recorder has no steps yet")
    fig, ax = _axes(ax, _LAYER_FIGSIZE)
    _per_step(ax, recorder.log10_update_to_data)
    if reference is not None:
        ax.axhline(reference, color="0.3", linestyle="--", linewidth=1.2,
                   label=f"reference ({reference:g})")
    ax.set(title="update:data ratio", xlabel="step", ylabel="log10(std(update) / std(weight))")
    _legend(ax)
    return fig


@_styled
def activation_heatmap(
    stats: ActivationStats, layers: Sequence[str] | None = None, log: bool = True, ncols: int = 4
) -> Figure:
    r"""Activation histograms over forward calls (training steps) as one image per layer.

    Column :math:`t` of a layer's image is its histogram at call :math:`t` (fast.ai's "colorful
    dimension"): a healthy layer shows a steady band, a collapsing one a bright line at 0, a
    saturating tanh bright rows at ±1. Colour is :math:`\log(1 + \text{count})` when ``log``.
    One axes per layer in ``layers`` (default all watched layers), ``ncols`` per row.
    """
    names = list(stats.names if layers is None else layers)
    if not names:
        raise ValueError("no layers to draw")
    images = {name: stats.histograms(name) for name in names}
    if any(counts.shape[0] == 0 for counts, _ in images.values()):
        raise ValueError("a layer has no records yet: run forward passes with the hooks in place")
    ncols = min(ncols, len(names))
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3.2 * ncols, 2.4 * nrows + 0.6), squeeze=False, layout="constrained"
    )
    plt.close(fig)
    for ax in axes.flat[len(names):]:
        fig.delaxes(ax)
    for k, (ax, name) in enumerate(zip(axes.flat, names)):
        counts, edges = images[name]
        image = np.log1p(counts.T) if log else counts.T
        ax.imshow(image, origin="lower", aspect="auto", interpolation="nearest",
                  extent=(0, counts.shape[0], edges[0], edges[-1]))
        ax.grid(False)
        ax.set_title(name, fontsize=11)
        if k + ncols >= len(names):  # nothing below it
            ax.set_xlabel("step")
        if k % ncols == 0:
            ax.set_ylabel("activation")
    fig.suptitle("Activation histograms over training" + (" (log count)" if log else ""))
    return fig


@_styled
def layer_std_plot(
    curves: Mapping[str, Sequence[float] | np.ndarray | Tensor],
    log: bool = True,
    ylabel: str = "activation std",
    title: str = "Standard deviation per layer",
    ax: Axes | None = None,
) -> Figure:
    """Per-layer std curves (layer 1, 2, ... on x), one line per label, e.g. one per init scheme."""
    if not curves:
        raise ValueError("no curves given")
    fig, ax = _axes(ax)
    for label, values in curves.items():
        arr = _finite(values)
        ax.plot(np.arange(1, len(arr) + 1), arr, marker="o", markersize=3, label=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if log:
        ax.set_yscale("log")
    ax.set(title=title, xlabel="layer", ylabel=ylabel)
    _legend(ax)
    return fig


@_styled
def loss_curves(
    curves: Mapping[str, Sequence[float] | np.ndarray | Tensor],
    log: bool = True,
    title: str = "Training loss",
    ax: Axes | None = None,
) -> Figure:
    """Loss over steps, one line per label; a run with non-finite losses is labelled diverged."""
    if not curves:
        raise ValueError("no curves given")
    fig, ax = _axes(ax)
    for label, values in curves.items():
        text, arr = _run_label(label, values)
        ax.plot(np.arange(len(arr)), arr, label=text)
    if log:
        ax.set_yscale("log")
    ax.set(title=title, xlabel="step", ylabel="loss")
    _legend(ax)
    return fig


@_styled
def grad_norm_per_step(
    curves: Mapping[str, Sequence[float] | np.ndarray | Tensor],
    threshold: float | None = None,
    log: bool = True,
    ax: Axes | None = None,
) -> Figure:
    """Global gradient norm over steps, one line per label, with a dashed line at ``threshold``
    (e.g. the clipping ``max_norm``) when given."""
    if not curves:
        raise ValueError("no curves given")
    fig, ax = _axes(ax)
    for label, values in curves.items():
        text, arr = _run_label(label, values)
        ax.plot(np.arange(len(arr)), arr, label=text)
    if threshold is not None:
        ax.axhline(threshold, color="0.3", linestyle="--", linewidth=1.2,
                   label=f"max_norm = {threshold:g}")
    if log:
        ax.set_yscale("log")
    ax.set(title="Gradient norm per step", xlabel="step", ylabel="‖g‖₂")
    _legend(ax)
    return fig
