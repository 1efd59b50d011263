r"""Experiments, figures and the explorer of lesson ``02_activations``.

The notebook stays prose-first and imports the plumbing from here:

- **The functions**: :func:`plot_activations` draws f and f′ of the eight activations the lesson
  grades; :func:`derivative_maxima` finds each one's largest slope on a fine grid.
- **Saturation**: :class:`HistogramExplorer`, a widget with an activation and a pre-activation std
  σ: histograms of f(z) and f′(z) for z ~ N(0, σ²) from one fixed normal sample, redrawn in well
  under a second (nothing is recomputed but two histograms).
- **Depth** (the bridge to lesson 1): :func:`gradient_through_depth` backpropagates through deep
  MLPs whose weights have the variance-preserving gain of each activation, for several seeds at
  once, and predicts the per-layer gradient factor χ = g²·E[f′(z)²] from the mean field;
  :func:`plot_gradient_through_depth` draws both.
- **Dead units**: :func:`dead_unit_experiment` trains small ReLU and Leaky-ReLU MLPs on the
  spirals, every setting and seed as one batch of ``bmm``\ s, through 30 steps at a learning rate
  too high for them and on at a sane one; it counts the units that are off for every training
  example, records the loss on the whole training set, and recycles dead units (ReDo) in one
  setting. :func:`plot_dead_units` draws it; :func:`sequential_model` hands one trained network
  out as an ``nn.Sequential`` for the student's functions.
- **SELU's fixed point**: :func:`variance_map` iterates q ↦ g²·E[f(z)²] (z ~ N(0, q)) with the
  reference moments; :func:`second_moment_through_depth` measures it in deep networks;
  :func:`plot_fixed_point` draws both.

Experiments take their seeds as a tuple (the lesson's are :data:`SEEDS`) and a ``jitter``: the
relative perturbation of the initial weights with which the claims tests rerun them
(``stabletrain.perturb.jitter_``; data, draws and minibatches stay the same). The answer key
(``stabletrain.activations``) is imported inside the functions that need it, never at import time:
a grading kernel imports this module in its setup cell, and it has no answer keys to import.

Every figure is a detached :class:`matplotlib.figure.Figure`, drawn in the course style.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor, nn

from stabletrain import style
from stabletrain.data import make_spirals
from stabletrain.perturb import jitter_
from stabletrain.style import COLORS, LINESTYLES, styled
from stabletrain.threads import single_thread

__all__ = [
    "SEEDS",
    "NAMES",
    "LABELS",
    "torch_activation",
    "plot_activations",
    "derivative_maxima",
    "HistogramExplorer",
    "DEPTH_ACTIVATIONS",
    "DepthSweep",
    "gradient_through_depth",
    "plot_gradient_through_depth",
    "DeadConfig",
    "DEAD_CONFIG",
    "SETTINGS",
    "DeadUnits",
    "dead_unit_experiment",
    "plot_dead_units",
    "sequential_model",
    "fresh_model",
    "train_plain",
    "spirals",
    "variance_map",
    "FixedPoint",
    "second_moment_through_depth",
    "plot_fixed_point",
]

#: the seeds every experiment of the lesson shows
SEEDS: tuple[int, ...] = (0, 1, 2, 3, 4)
#: the activations the lesson grades, in display order
NAMES: tuple[str, ...] = ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "gelu_tanh", "silu")
LABELS: dict[str, str] = {
    "sigmoid": "sigmoid", "tanh": "tanh", "relu": "ReLU", "leaky_relu": "Leaky ReLU", "elu": "ELU",
    "gelu": "GELU", "gelu_tanh": "GELU (tanh approx.)", "silu": "SiLU", "selu": "SELU", "linear": "linear",
}
_STYLE = {name: {"color": COLORS[i % len(COLORS)], "linestyle": LINESTYLES[i % len(LINESTYLES)]}
          for i, name in enumerate(NAMES)}
_STYLE["selu"] = {"color": COLORS[5], "linestyle": LINESTYLES[5]}


def torch_activation(name: str, z: Tensor, negative_slope: float = 0.01) -> Tensor:
    """PyTorch's own function for an activation name of the lesson (plumbing for the experiments)."""
    if name == "sigmoid":
        return torch.sigmoid(z)
    if name == "tanh":
        return torch.tanh(z)
    if name == "relu":
        return torch.relu(z)
    if name == "leaky_relu":
        return F.leaky_relu(z, negative_slope)
    if name == "elu":
        return F.elu(z)
    if name == "gelu":
        return F.gelu(z)
    if name == "gelu_tanh":
        return F.gelu(z, approximate="tanh")
    if name == "silu":
        return F.silu(z)
    if name == "selu":
        return F.selu(z)
    if name == "linear":
        return z
    raise ValueError(f"unknown activation {name!r}")


def _f_and_slope(name: str, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(f(z), f′(z)) by PyTorch's autograd, float64 (the figures do not need the answer key)."""
    t = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    out = torch_activation(name, t)
    (slope,) = torch.autograd.grad(out.sum(), t)
    return out.detach().numpy(), slope.numpy()


# ----------------------------------------------------------------------------------------------
# The functions and their slopes


@styled
def plot_activations(names: Sequence[str] = NAMES, zmax: float = 4.0) -> Figure:
    """Two panels: f(z) and f′(z) on [−zmax, zmax] for each activation (slopes by autograd)."""
    z = np.linspace(-zmax, zmax, 801)
    fig = Figure(figsize=(10.4, 4.4), layout="constrained")
    ax_f, ax_d = fig.subplots(1, 2)
    for name in names:
        f, d = _f_and_slope(name, z)
        ax_f.plot(z, f, label=LABELS[name], **_STYLE[name])
        ax_d.plot(z, d, **_STYLE[name])
    ax_f.set_ylim(-1.6, 4.1)
    ax_d.set_ylim(-0.2, 1.25)
    ax_d.axhline(0.25, color="0.4", lw=1.0, ls=":")
    ax_d.text(-zmax, 0.27, "¼: the sigmoid's largest slope", fontsize=12, color="0.3")
    for ax, title, ylabel in ((ax_f, "the activation", "f(z)"), (ax_d, "its slope", "f′(z)")):
        ax.set_title(title)
        ax.set_xlabel("pre-activation z")
        ax.set_ylabel(ylabel)
    fig.legend(loc="outside right center")
    return fig


def derivative_maxima(names: Sequence[str] = (*NAMES, "selu"), zmax: float = 10.0,
                      points: int = 400_001) -> dict[str, tuple[float, float]]:
    """name -> (largest f′, where) on a grid of [−zmax, zmax] with spacing 5e−5 (slopes by autograd)."""
    z = np.linspace(-zmax, zmax, points)
    out = {}
    for name in names:
        _, d = _f_and_slope(name, z)
        i = int(np.argmax(d))
        out[name] = (float(d[i]), float(z[i]))
    return out


# ----------------------------------------------------------------------------------------------
# The explorer: histograms of f(z) and f′(z) for z ~ N(0, σ²)

#: the pre-activation stds the explorer offers
EXPLORER_SIGMAS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 7.0, 10.0)
_SATURATION_TOL = 0.06  # saturated: f′ < 0.06 · max f′ (Exercise 2's default)
_MAX_SLOPE = {"sigmoid": 0.25, "tanh": 1.0, "relu": 1.0, "leaky_relu": 1.0, "elu": 1.0, "gelu": 1.1289,
              "gelu_tanh": 1.1290, "silu": 1.0998}


class HistogramExplorer:
    """An ipywidgets explorer: pick an activation and the pre-activation std σ; see f(z) and f′(z).

    One standard normal sample ``x`` (``n`` values, fixed seed) is drawn at construction; a setting
    shows the histograms of f(σx) and f′(σx), with the fraction of saturated entries (f′ below 6 %
    of the activation's largest slope), E[f(z)²] and E[f′(z)²]. An update computes two histograms
    of ``n`` values and redraws one Agg figure (about 0.1 s); ``last_update_s`` keeps its duration.
    Display it with ``explorer.widget`` as a cell's last expression.
    """

    def __init__(self, activation: str = "tanh", sigma: float = 1.0, n: int = 20_000, seed: int = 0,
                 dpi: int = 80) -> None:
        import ipywidgets as widgets

        self.x = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        wstyle = {"description_width": "initial"}
        self.activation = widgets.Dropdown(options=[(LABELS[a], a) for a in NAMES], value=activation,
                                           description="activation", style=wstyle)
        self.sigma = widgets.SelectionSlider(options=[(f"{s:g}", s) for s in EXPLORER_SIGMAS], value=sigma,
                                             description="pre-activation std σ", continuous_update=True,
                                             style=wstyle, layout={"width": "420px"})
        self.image = widgets.Image(format="png")
        self.summary = widgets.HTML()
        self.widget = widgets.VBox([widgets.HBox([self.activation, self.sigma]), self.image, self.summary])
        self.dpi = dpi
        self.last_update_s = math.nan
        with style.course_style():
            self._build_figure()
        for control in (self.activation, self.sigma):
            control.observe(lambda _change: self.update(), names="value")
        self.update()

    def _build_figure(self) -> None:
        fig = Figure(figsize=(12.0, 4.2), dpi=self.dpi, layout="constrained")
        self._ax_f, self._ax_d = fig.subplots(1, 2)
        empty = np.zeros(1)
        self._bars_f = self._ax_f.stairs(empty, [0.0, 1.0], fill=True, color=COLORS[2], alpha=0.8)
        self._bars_d = self._ax_d.stairs(empty, [0.0, 1.0], fill=True, color=COLORS[1], alpha=0.8)
        self._threshold = self._ax_d.axvline(0.0, color="black", ls="--", lw=1.3, label="6 % of the largest slope")
        for ax, xlabel in ((self._ax_f, "f(z)"), (self._ax_d, "f′(z)")):
            ax.set_xlabel(xlabel)
            ax.set_ylabel("share of the entries")
        self._ax_f.set_title("activations f(z)")
        self._ax_d.set_title("slopes f′(z)")
        self._ax_d.legend(loc="upper center")
        fig.suptitle("placeholder")
        fig.draw_without_rendering()
        fig.set_layout_engine("none")
        self.figure = fig
        self._canvas = FigureCanvasAgg(fig)

    def values(self) -> tuple[np.ndarray, np.ndarray]:
        """(f(z), f′(z)) for the current setting, z = σ·x."""
        z = self.sigma.value * self.x
        t = z.clone().requires_grad_(True)
        out = torch_activation(self.activation.value, t)
        (slope,) = torch.autograd.grad(out.sum(), t)
        return out.detach().numpy(), slope.numpy()

    def stats(self) -> dict[str, float]:
        """Saturated share, E[f²], E[f′²] and the mean of f for the current setting (sampled)."""
        f, d = self.values()
        name = self.activation.value
        return {"saturated": float(np.mean(np.abs(d) < _SATURATION_TOL * _MAX_SLOPE[name])),
                "second_moment": float(np.mean(f * f)), "slope_second_moment": float(np.mean(d * d)),
                "mean": float(np.mean(f))}

    @staticmethod
    def _histogram(values: np.ndarray, lo: float, hi: float, bins: int = 60) -> tuple[np.ndarray, np.ndarray]:
        counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
        return counts / values.size, edges

    def update(self) -> float:
        """Redraw for the current controls; return (and store in ``last_update_s``) the seconds it took."""
        start = time.perf_counter()
        name, sigma = self.activation.value, self.sigma.value
        f, d = self.values()
        lo, hi = float(np.quantile(f, 0.0005)), float(np.quantile(f, 0.9995))
        if hi - lo < 1e-3:
            lo, hi = lo - 0.5, hi + 0.5
        pad = 0.05 * (hi - lo)
        counts, edges = self._histogram(f, lo - pad, hi + pad)
        self._bars_f.set_data(counts, edges)
        self._ax_f.set_xlim(edges[0], edges[-1])
        self._ax_f.set_ylim(0, max(0.05, 1.1 * counts.max()))
        top = _MAX_SLOPE[name]
        d_lo = min(-0.15, float(d.min())) if name in ("gelu", "gelu_tanh", "silu") else -0.05 * top
        counts, edges = self._histogram(d, d_lo, 1.08 * top)
        self._bars_d.set_data(counts, edges)
        self._ax_d.set_xlim(edges[0], edges[-1])
        self._ax_d.set_ylim(0, max(0.05, 1.1 * counts.max()))
        self._threshold.set_xdata([_SATURATION_TOL * top] * 2)
        stats = self.stats()
        self.figure.suptitle(f"{LABELS[name]}, z ~ N(0, {sigma:g}²): {stats['saturated']:.0%} of the entries "
                             "saturated", fontsize=style.RC["figure.titlesize"])
        self.image.value = style.canvas_png(self._canvas)
        self.summary.value = (
            f"<b>{LABELS[name]}, σ = {sigma:g}</b>: saturated (f′ &lt; 6 % of its largest slope) "
            f"{stats['saturated']:.1%} &nbsp;|&nbsp; E[f(z)²] ≈ {stats['second_moment']:.4g} &nbsp;|&nbsp; "
            f"E[f′(z)²] ≈ {stats['slope_second_moment']:.4g} &nbsp;|&nbsp; mean of f(z) ≈ {stats['mean']:.3g}"
        )
        self.last_update_s = time.perf_counter() - start
        return self.last_update_s


# ----------------------------------------------------------------------------------------------
# Depth: the gradient through layers at the variance-preserving gain

#: the activations of the depth experiment
DEPTH_ACTIVATIONS: tuple[str, ...] = ("sigmoid", "tanh", "relu", "selu")


@dataclass
class DepthSweep:
    """Per-layer squared gradient norms of deep MLPs at init, measured and predicted.

    ``grad_sq[a][k, l]``: ‖∂L/∂h_l‖² / ‖∂L/∂h_L‖² of activation ``a``, seed k, layer l = 1..depth
    (entry l − 1; the last entry is 1). ``predicted[a]``: the mean-field ∏ χ_k over the layers above
    l; ``chi[a]``: the per-layer factor χ = g²·E[f′(z)²] at the fixed point (z ~ N(0, q*));
    ``gains[a]``: g = √(1/E[f(z)²]) at q = 1, the variance-preserving gain.
    """

    seeds: tuple[int, ...]
    depth: int
    width: int
    gains: dict[str, float]
    grad_sq: dict[str, np.ndarray]
    predicted: dict[str, np.ndarray]
    chi: dict[str, float]
    seconds: float = 0.0

    def per_layer_factor(self, activation: str) -> np.ndarray:
        """The measured per-layer factor of each seed: (‖g_1‖²/‖g_L‖²)^(1/(L−1))."""
        return self.grad_sq[activation][:, 0] ** (1.0 / (self.depth - 1))


def _mean_field(activation: str, gain: float, depth: int) -> tuple[np.ndarray, float]:
    """(predicted ‖g_l‖²/‖g_L‖², χ at the input's q = 1) from the reference moments (imported here)."""
    from stabletrain.activations import derivative_second_moment, second_moment

    chis = []
    h2 = 1.0 / (gain * gain)  # E[x²]: the input is scaled so that y_1 ~ N(0, 1)
    for _ in range(depth):
        q = gain * gain * h2
        chis.append(gain * gain * float(derivative_second_moment(activation, math.sqrt(q))))
        h2 = float(second_moment(activation, math.sqrt(q)))
    chis = np.array(chis)
    # g_{l-1} = W_lᵀ (g_l ⊙ f′(y_l)): going from layer l down to l − 1 multiplies by χ_l
    predicted = np.ones(depth)
    for layer in range(depth - 2, -1, -1):
        predicted[layer] = predicted[layer + 1] * chis[layer + 1]
    return predicted, float(chis[0])


def gradient_through_depth(seeds: Sequence[int] = SEEDS, jitter: float = 0.0,
                           activations: Sequence[str] = DEPTH_ACTIVATIONS, depth: int = 30, width: int = 256,
                           batch: int = 128) -> DepthSweep:
    """Backpropagate a random output gradient through bias-free MLPs at their variance-preserving gain.

    Network: h_0 = x ~ N(0, I/g²), y_l = W_l h_{l−1}, h_l = f(y_l), W_l entries N(0, g²/width) with
    g = √(1/E[f(z)²]) at z ~ N(0, 1): every y_l then has variance 1 (the fixed point). For each seed (weights, inputs and output gradient drawn from
    ``torch.Generator().manual_seed(seed)``; ``jitter`` perturbs the weights) the loss
    L = Σ h_L ⊙ u with u ~ N(0, I) is backpropagated in float64.
    """
    from stabletrain.activations import second_moment

    start = time.perf_counter()
    seeds = tuple(int(s) for s in seeds)
    gains = {a: 1.0 / math.sqrt(float(second_moment(a, 1.0))) for a in activations}
    grad_sq, predicted, chi = {}, {}, {}
    with single_thread():
        draws = []
        for seed in seeds:
            gen = torch.Generator().manual_seed(seed)
            x = torch.randn(batch, width, generator=gen, dtype=torch.float64)
            u = torch.randn(batch, width, generator=gen, dtype=torch.float64)
            w = torch.randn(depth, width, width, generator=gen, dtype=torch.float64) / math.sqrt(width)
            jitter_(w, jitter, seed=seed)
            draws.append((x, u, w))
        x = torch.stack([d[0] for d in draws])
        u = torch.stack([d[1] for d in draws])
        w = torch.stack([d[2] for d in draws])  # (K, depth, width, width), unit gain
        for a in activations:
            g = gains[a]
            h = x / g
            slopes = []
            with torch.no_grad():
                for layer in range(depth):
                    y = torch.bmm(h, (g * w[:, layer]).transpose(1, 2)).requires_grad_(True)
                    with torch.enable_grad():
                        out = torch_activation(a, y)
                        (slope,) = torch.autograd.grad(out.sum(), y)
                    slopes.append(slope)
                    h = out.detach()
                grad = u
                norms = [None] * depth
                for layer in range(depth - 1, -1, -1):
                    norms[layer] = grad.pow(2).sum(dim=(1, 2))
                    grad = torch.bmm(grad * slopes[layer], g * w[:, layer])
            sq = torch.stack(norms, dim=1).numpy()
            grad_sq[a] = sq / sq[:, -1:]
            predicted[a], chi[a] = _mean_field(a, g, depth)
    return DepthSweep(seeds, depth, width, gains, grad_sq, predicted, chi, time.perf_counter() - start)


@styled
def plot_gradient_through_depth(sweep: DepthSweep) -> Figure:
    """‖∂L/∂h_l‖²/‖∂L/∂h_L‖² against the layer, median and min–max band over seeds, log scale, with
    the mean-field prediction ∏χ as a thin grey dotted line: the sigmoid alone on the left (its
    gradient falls by orders of magnitude), the others on the right."""
    fig = Figure(figsize=(10.4, 4.6), layout="constrained")
    axes = fig.subplots(1, 2)
    layers = np.arange(1, sweep.depth + 1)
    groups = [[a for a in sweep.grad_sq if a == "sigmoid"], [a for a in sweep.grad_sq if a != "sigmoid"]]
    for ax, names in zip(axes, groups):
        for name in names:
            values = sweep.grad_sq[name]
            st = _STYLE[name]
            ax.fill_between(layers, values.min(axis=0), values.max(axis=0), color=st["color"], alpha=0.2, lw=0)
            ax.plot(layers, np.median(values, axis=0), lw=2.4, label=f"{LABELS[name]}: χ = {sweep.chi[name]:.3g}",
                    **st)
        for i, name in enumerate(names):
            ax.plot(layers, sweep.predicted[name], color="0.35", lw=1.2, ls=":",
                    label="mean field ∏χ" if i == 0 else "_")
        ax.set_yscale("log")
        ax.set_xlabel("layer l (the gradient flows right to left)")
        ax.legend(loc="lower right" if names == ["sigmoid"] else "upper right")
    axes[0].set_ylabel(r"$\|\partial L/\partial h_l\|^2 \;/\; \|\partial L/\partial h_L\|^2$")
    fig.suptitle(f"{sweep.depth} layers of width {sweep.width} at the variance-preserving gain: median and range "
                 f"over {len(sweep.seeds)} seeds")
    return fig


# ----------------------------------------------------------------------------------------------
# Dead units: a burst of too-high learning rate, then a sane one


@dataclass(frozen=True)
class DeadConfig:
    """The dead-unit experiment: spirals, an MLP 2 → width^depth → 3, plain minibatch SGD."""

    n_per_class: int = 200
    width: int = 64
    depth: int = 3
    batch: int = 64
    steps: int = 400
    burst_steps: int = 30  # the first steps run at burst_lr
    burst_lr: float = 1.75
    lr: float = 0.1
    negative_slope: float = 0.01  # Leaky ReLU's, PyTorch's default
    recycle_every: int = 50  # ReDo: recycle the dead units every this many steps after the burst
    record_every: int = 10


DEAD_CONFIG = DeadConfig()
#: setting -> (Leaky ReLU's slope is used, burst of high learning rate, recycling)
SETTINGS: dict[str, tuple[bool, bool, bool]] = {
    "control": (False, False, False),
    "relu": (False, True, False),
    "leaky_relu": (True, True, False),
    "recycled": (False, True, True),
}
SETTING_LABELS = {
    "control": "control: ReLU, lr 0.1 throughout",
    "relu": "ReLU after the burst",
    "leaky_relu": "Leaky ReLU after the burst",
    "recycled": "ReLU after the burst, dead units recycled",
}
_SETTING_STYLE = {"control": 0, "relu": 4, "leaky_relu": 1, "recycled": 3}


@dataclass
class DeadUnits:
    """What :func:`dead_unit_experiment` recorded, arrays indexed [..., setting, seed, ...].

    ``dead[t, s, k, l]``: units of hidden layer l that are ≤ 0 on every training example at step
    ``steps_recorded[t]`` (after the step's update; recycling happens right after a recording);
    ``loss[t, s, k]``: cross-entropy on the whole training set; ``accuracy`` likewise;
    ``inactive_grad[s, k]``: at the end, the median incoming-weight gradient norm (whole training
    set) of the inactive units divided by that of the active ones (0 when a unit passes nothing;
    NaN without inactive units); ``first_layer_monotone[s, k]``: whether layer 1's dead set only
    grew after the burst; ``recycled[s, k]``: units recycled in all.
    """

    cfg: DeadConfig
    settings: tuple[str, ...]
    seeds: tuple[int, ...]
    steps_recorded: np.ndarray
    dead: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray
    inactive_grad: np.ndarray
    first_layer_monotone: np.ndarray
    recycled: np.ndarray
    weights: list[np.ndarray] = field(repr=False, default_factory=list)  # final W_l, (S, K, out, in)
    biases: list[np.ndarray] = field(repr=False, default_factory=list)
    seconds: float = 0.0

    @property
    def units(self) -> int:
        return self.cfg.width * self.cfg.depth

    def index(self, setting: str) -> int:
        return self.settings.index(setting)

    def dead_total(self, setting: str) -> np.ndarray:
        """(recordings, seeds): dead units of all hidden layers."""
        return self.dead[:, self.index(setting)].sum(axis=-1)

    def at_step(self, step: int) -> int:
        return int(np.searchsorted(self.steps_recorded, step))

    def final_loss(self, setting: str) -> np.ndarray:
        return self.loss[-1, self.index(setting)]


def spirals(seed: int, cfg: DeadConfig = DEAD_CONFIG) -> tuple[Tensor, Tensor]:
    """The training set of one seed: 3 spiral arms, ``cfg.n_per_class`` points each."""
    return make_spirals(cfg.n_per_class, classes=3, seed=seed)


def _forward(x: Tensor, weights: list[Tensor], biases: list[Tensor], slopes: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Batched MLP: x (M, N, in) -> (logits (M, N, 3), pre-activations of the hidden layers)."""
    h, pre = x, []
    last = len(weights) - 1
    for i, (w, b) in enumerate(zip(weights, biases)):
        z = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
        if i == last:
            return z, pre
        pre.append(z)
        h = torch.where(z > 0, z, slopes * z)
    raise AssertionError("unreachable")


def dead_unit_experiment(seeds: Sequence[int] = SEEDS, jitter: float = 0.0, cfg: DeadConfig = DEAD_CONFIG,
                         settings: Sequence[str] = tuple(SETTINGS)) -> DeadUnits:
    """Train every setting × seed as one batch of MLPs; see the module doc and :class:`DeadUnits`.

    Per seed: the data, the initial weights (Kaiming normal, zero biases), the minibatches and the
    recycling draws come from generators seeded with the seed, so every setting of a seed starts
    from the same network and sees the same minibatches (the settings differ only in what they
    are about). ``jitter`` perturbs the initial weights.
    """
    start = time.perf_counter()
    seeds, settings = tuple(int(s) for s in seeds), tuple(settings)
    S, K = len(settings), len(seeds)
    M = S * K  # model m = s·K + k
    widths = [2] + [cfg.width] * cfg.depth + [3]
    with single_thread():
        data = [spirals(seed, cfg) for seed in seeds]
        X = torch.stack([d[0] for d in data]).repeat(S, 1, 1)
        Y = torch.stack([d[1] for d in data]).repeat(S, 1)
        N = X.shape[1]
        init_gens = [torch.Generator().manual_seed(seed) for seed in seeds]
        weights, biases = [], []
        for i in range(len(widths) - 1):
            per_seed = torch.stack([torch.randn(widths[i + 1], widths[i], generator=g) for g in init_gens])
            per_seed *= math.sqrt(2.0 / widths[i])  # Kaiming normal for ReLU
            for k, seed in enumerate(seeds):
                jitter_(per_seed[k], jitter, seed=1_000_003 * seed + i)
            weights.append(per_seed.repeat(S, 1, 1).requires_grad_(True))
            biases.append(torch.zeros(M, widths[i + 1], requires_grad=True))
        leaky = torch.tensor([SETTINGS[s][0] for s in settings for _ in seeds])
        slopes = torch.where(leaky, cfg.negative_slope, 0.0).view(M, 1, 1)
        burst = torch.tensor([SETTINGS[s][1] for s in settings for _ in seeds])
        recycle = torch.tensor([SETTINGS[s][2] for s in settings for _ in seeds]).view(M, 1)
        batch_gens = [torch.Generator().manual_seed(7_919 + seed) for seed in seeds]
        # each recycling network draws its fresh weights from a generator of its own seed, and only for
        # the layers where it has dead units: the draws do not depend on what else is in the batch
        recycle_gens = {m: torch.Generator().manual_seed(104_729 + seeds[m % K]) for m in range(M) if recycle[m]}
        lr_burst = torch.where(burst, cfg.burst_lr, cfg.lr)
        lr_sane = torch.full((M,), cfg.lr)
        recorded = list(range(0, cfg.steps + 1, cfg.record_every))
        T = len(recorded)
        dead = np.zeros((T, M, cfg.depth), dtype=np.int64)
        loss = np.zeros((T, M))
        accuracy = np.zeros((T, M))
        recycled = np.zeros(M, dtype=np.int64)
        monotone = np.ones(M, dtype=bool)
        layer1_dead_after_burst = None
        for step in range(cfg.steps + 1):
            recycling = (step >= cfg.burst_steps and (step - cfg.burst_steps) % cfg.recycle_every == 0
                         and step < cfg.steps)
            if step % cfg.record_every == 0 or recycling:
                with torch.no_grad():
                    logits, pre = _forward(X, weights, biases, slopes)
                    masks = [(z <= 0).all(dim=1) for z in pre]  # (M, width)
                    if step % cfg.record_every == 0:
                        t = step // cfg.record_every
                        dead[t] = torch.stack([m.sum(dim=1) for m in masks], dim=1).numpy()
                        loss[t] = F.cross_entropy(logits.transpose(1, 2), Y, reduction="none").mean(1).numpy()
                        accuracy[t] = (logits.argmax(-1) == Y).double().mean(1).numpy()
                    if step >= cfg.burst_steps:
                        first = masks[0].clone()
                        if layer1_dead_after_burst is not None:
                            monotone &= (first | ~layer1_dead_after_burst).all(dim=1).numpy()
                        layer1_dead_after_burst = first
                    if recycling:
                        for i, mask in enumerate(masks):
                            mask = mask & recycle
                            if not mask.any():
                                continue
                            fan_in = widths[i]
                            fresh = torch.zeros(M, widths[i + 1], fan_in)
                            for m in torch.nonzero(mask.any(dim=1)).flatten().tolist():
                                fresh[m] = torch.rand(widths[i + 1], fan_in, generator=recycle_gens[m]) * 2 - 1
                            fresh /= math.sqrt(fan_in)
                            weights[i].copy_(torch.where(mask.unsqueeze(2), fresh, weights[i]))
                            biases[i].masked_fill_(mask, 0.0)
                            weights[i + 1].masked_fill_(mask.unsqueeze(1), 0.0)
                            recycled += mask.sum(dim=1).numpy()
                        after = [(z <= 0).all(dim=1) for z in _forward(X, weights, biases, slopes)[1]]
                        if step % cfg.record_every == 0:  # the recording shows the state after recycling
                            dead[step // cfg.record_every] = torch.stack([m.sum(dim=1) for m in after], 1).numpy()
                        layer1_dead_after_burst = after[0]
            if step == cfg.steps:
                break
            idx = torch.stack([torch.randint(0, N, (cfg.batch,), generator=g)
                               for g in batch_gens]).repeat(S, 1)
            xb = torch.gather(X, 1, idx.unsqueeze(2).expand(-1, -1, X.shape[2]))
            yb = torch.gather(Y, 1, idx)
            logits, _ = _forward(xb, weights, biases, slopes)
            batch_loss = F.cross_entropy(logits.transpose(1, 2), yb, reduction="none").mean(1)
            grads = torch.autograd.grad(batch_loss.sum(), weights + biases)
            lr = lr_burst if step < cfg.burst_steps else lr_sane
            with torch.no_grad():
                for p, g in zip(weights + biases, grads):
                    p -= lr.view(-1, *([1] * (p.dim() - 1))) * g
        # the mechanism: the incoming-weight gradient of inactive units, on the whole training set
        logits, pre = _forward(X, weights, biases, slopes)
        full = F.cross_entropy(logits.transpose(1, 2), Y, reduction="none").mean(1).sum()
        grads = torch.autograd.grad(full, weights[:-1])
        ratio = np.full(M, np.nan)
        for m in range(M):
            inactive, active = [], []
            for z, g in zip(pre, grads):
                off = (z[m] <= 0).all(dim=0)
                norms = g[m].norm(dim=1)
                inactive.append(norms[off])
                active.append(norms[~off])
            inactive, active = torch.cat(inactive), torch.cat(active)
            if len(inactive) and len(active):
                ratio[m] = float(inactive.median() / active.median())
    shape = (S, K)
    return DeadUnits(
        cfg=cfg, settings=settings, seeds=seeds, steps_recorded=np.array(recorded),
        dead=dead.reshape(T, S, K, cfg.depth), loss=loss.reshape(T, S, K), accuracy=accuracy.reshape(T, S, K),
        inactive_grad=ratio.reshape(shape), first_layer_monotone=monotone.reshape(shape),
        recycled=recycled.reshape(shape),
        weights=[w.detach().numpy().reshape(S, K, *w.shape[1:]).copy() for w in weights],
        biases=[b.detach().numpy().reshape(S, K, -1).copy() for b in biases],
        seconds=time.perf_counter() - start)


def fresh_model(seed: int, cfg: DeadConfig = DEAD_CONFIG, leaky: bool = False) -> nn.Sequential:
    """The experiment's initial network for one seed as an ``nn.Sequential`` (the same draws as
    :func:`dead_unit_experiment`: Kaiming normal weights layer by layer from the seed's generator,
    zero biases)."""
    widths = [2] + [cfg.width] * cfg.depth + [3]
    generator = torch.Generator().manual_seed(seed)
    modules: list[nn.Module] = []
    for i in range(len(widths) - 1):
        layer = nn.Linear(widths[i], widths[i + 1])
        with torch.no_grad():
            layer.weight.copy_(torch.randn(widths[i + 1], widths[i], generator=generator) * math.sqrt(2.0 / widths[i]))
            layer.bias.zero_()
        modules.append(layer)
        if i < len(widths) - 2:
            modules.append(nn.LeakyReLU(cfg.negative_slope) if leaky else nn.ReLU())
    return nn.Sequential(*modules)


def train_plain(seed: int, cfg: DeadConfig = DEAD_CONFIG, recycle=None) -> tuple[nn.Sequential, list[float], list[int]]:
    """One ReLU network of the experiment trained by a plain ``nn.Sequential`` loop (the batched
    experiment's data, initial weights, minibatches and learning rates), calling ``recycle(model,
    x)`` at the experiment's recycling steps when given. Returns the model, the loss on the whole
    training set at every recording step and what ``recycle`` returned each time. For tests."""
    x, y = spirals(seed, cfg)
    model = fresh_model(seed, cfg)
    generator = torch.Generator().manual_seed(7_919 + seed)  # the experiment's minibatches
    losses, recycled = [], []
    for step in range(cfg.steps + 1):
        if step % cfg.record_every == 0:
            with torch.no_grad():
                losses.append(F.cross_entropy(model(x), y).item())
        if step == cfg.steps:
            break
        if recycle is not None and step >= cfg.burst_steps and (step - cfg.burst_steps) % cfg.recycle_every == 0:
            recycled.append(recycle(model, x))
        idx = torch.randint(0, len(x), (cfg.batch,), generator=generator)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        model.zero_grad()
        loss.backward()
        lr = cfg.burst_lr if step < cfg.burst_steps else cfg.lr
        with torch.no_grad():
            for p in model.parameters():
                p -= lr * p.grad
    return model, losses, recycled


def sequential_model(result: DeadUnits, setting: str, seed: int) -> nn.Sequential:
    """One trained network of the experiment as an ``nn.Sequential`` (Linear, ReLU or LeakyReLU, …, Linear)."""
    s, k = result.index(setting), result.seeds.index(seed)
    leaky = SETTINGS[setting][0]
    modules: list[nn.Module] = []
    last = len(result.weights) - 1
    for i, (w, b) in enumerate(zip(result.weights, result.biases)):
        layer = nn.Linear(w.shape[3], w.shape[2])
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(w[s, k]))
            layer.bias.copy_(torch.from_numpy(b[s, k]))
        modules.append(layer)
        if i < last:
            modules.append(nn.LeakyReLU(result.cfg.negative_slope) if leaky else nn.ReLU())
    return nn.Sequential(*modules)


def _band(ax, x: np.ndarray, values: np.ndarray, style_kw: dict, label: str) -> None:
    ax.fill_between(x, values.min(axis=1), values.max(axis=1), color=style_kw["color"], alpha=0.18, lw=0)
    ax.plot(x, np.median(values, axis=1), label=label, lw=2.2, **style_kw)


@styled
def plot_dead_units(result: DeadUnits) -> Figure:
    """Two panels over the steps, median and min–max band over seeds: the share of hidden units that
    are off for every training example, and the loss on the whole training set (log scale)."""
    fig = Figure(figsize=(10.4, 4.9), layout="constrained")
    ax_dead, ax_loss = fig.subplots(1, 2)
    x = result.steps_recorded
    for setting in result.settings:
        i = _SETTING_STYLE[setting]
        kw = {"color": COLORS[i], "linestyle": LINESTYLES[i]}
        s = result.index(setting)
        _band(ax_dead, x, result.dead[:, s].sum(axis=-1) / result.units, kw, SETTING_LABELS[setting])
        _band(ax_loss, x, result.loss[:, s], kw, "_")
    for ax in (ax_dead, ax_loss):
        ax.axvspan(0, result.cfg.burst_steps, color="0.85", lw=0, zorder=0)
        ax.set_xlabel("step")
    ax_dead.text(result.cfg.burst_steps + 5, 0.93, f"← lr {result.cfg.burst_lr:g} for {result.cfg.burst_steps} "
                 f"steps, then {result.cfg.lr:g}", fontsize=12, color="0.25", va="top")
    ax_dead.set_ylim(0, 1)
    ax_dead.set_ylabel("share of hidden units off for every example")
    ax_dead.set_title("dead (ReLU) or inactive (Leaky ReLU) units")
    ax_loss.set_yscale("log")
    ax_loss.axhline(math.log(3), color="0.3", ls=":", lw=1.2)
    ax_loss.text(x[-1], math.log(3) * 1.08, "ln 3: a constant output", ha="right", va="bottom", fontsize=12,
                 color="0.3")
    ax_loss.set_ylabel("cross-entropy, whole training set")
    ax_loss.set_title("loss")
    fig.legend(loc="outside lower center", ncols=2)
    fig.suptitle(f"spirals, MLP 2 → {result.cfg.width}×{result.cfg.depth} → 3, SGD: median and range over "
                 f"{len(result.seeds)} seeds")
    return fig


# ----------------------------------------------------------------------------------------------
# SELU's fixed point


def variance_map(activation: str, gain: float, q0: float, depth: int) -> np.ndarray:
    """q_1..q_depth of the recursion q_{l+1} = g²·E[f(z)²], z ~ N(0, q_l), from q_0 (reference moments)."""
    from stabletrain.activations import second_moment

    out, q = [], float(q0)
    for _ in range(depth):
        q = gain * gain * float(second_moment(activation, math.sqrt(q)))
        out.append(q)
    return np.array(out)


@dataclass
class FixedPoint:
    """Measured E[y_l²] (pre-activation second moment, pooled over a layer) of deep MLPs.

    ``measured[(activation, q0)]``: (seeds, depth), y_l = W_l h_{l−1} with W entries
    N(0, g²/width), inputs x ~ N(0, q0·I); ``predicted[(activation, q0)]``: :func:`variance_map`.
    """

    seeds: tuple[int, ...]
    depth: int
    width: int
    gains: dict[str, float]
    starts: tuple[float, ...]
    measured: dict[tuple[str, float], np.ndarray]
    predicted: dict[tuple[str, float], np.ndarray]
    seconds: float = 0.0


#: the activations of the fixed-point experiment with their gains: SELU at LeCun's 1, ReLU at √2
FIXED_POINT_GAINS: dict[str, float] = {"selu": 1.0, "relu": math.sqrt(2.0)}


def second_moment_through_depth(seeds: Sequence[int] = SEEDS, jitter: float = 0.0, depth: int = 40,
                                width: int = 256, batch: int = 128, starts: Sequence[float] = (0.25, 1.0, 4.0),
                                gains: dict[str, float] | None = None) -> FixedPoint:
    """Measure the pre-activations' second moment layer by layer (float64, no biases)."""
    start = time.perf_counter()
    seeds, starts = tuple(int(s) for s in seeds), tuple(float(q) for q in starts)
    gains = dict(FIXED_POINT_GAINS if gains is None else gains)
    measured, predicted = {}, {}
    with single_thread(), torch.no_grad():
        draws = []
        for seed in seeds:
            gen = torch.Generator().manual_seed(seed)
            x = torch.randn(batch, width, generator=gen, dtype=torch.float64)
            w = torch.randn(depth, width, width, generator=gen, dtype=torch.float64) / math.sqrt(width)
            jitter_(w, jitter, seed=seed)
            draws.append((x, w))
        x = torch.stack([d[0] for d in draws])
        w = torch.stack([d[1] for d in draws])
        for a, g in gains.items():
            for q0 in starts:
                h = math.sqrt(q0) * x
                rows = []
                for layer in range(depth):
                    y = torch.bmm(h, (g * w[:, layer]).transpose(1, 2))
                    rows.append(y.pow(2).mean(dim=(1, 2)))
                    h = torch_activation(a, y)
                measured[(a, q0)] = torch.stack(rows, dim=1).numpy()
                # y_1 = W x has E[y²] = g²·E[x²] = g²·q0; then the map: q_{l+1} = g²·E[f(z)²]
                first = g * g * q0
                predicted[(a, q0)] = np.concatenate([[first], variance_map(a, g, first, depth - 1)])
    return FixedPoint(seeds, depth, width, gains, starts, measured, predicted, time.perf_counter() - start)


@styled
def plot_fixed_point(result: FixedPoint) -> Figure:
    """One panel per activation: E[y_l²] against the layer from each start, median and range over
    seeds (log scale), the mean-field map as a thin black line."""
    names = list(result.gains)
    fig = Figure(figsize=(10.4, 4.4), layout="constrained")
    axes = fig.subplots(1, len(names), sharey=True)
    layers = np.arange(1, result.depth + 1)
    for ax, name in zip(np.atleast_1d(axes), names):
        for i, q0 in enumerate(result.starts):
            values = result.measured[(name, q0)]
            kw = {"color": COLORS[i + 1], "linestyle": LINESTYLES[i + 1]}
            ax.fill_between(layers, values.min(axis=0), values.max(axis=0), color=kw["color"], alpha=0.2, lw=0)
            ax.plot(layers, np.median(values, axis=0), lw=2.2, label=f"input second moment {q0:g}", **kw)
            ax.plot(layers, result.predicted[(name, q0)], color="black", lw=1.0, ls="-",
                    label="mean-field map" if i == 0 else "_")
        ax.set_yscale("log")
        ax.set_xlabel("layer l")
        ax.set_title(f"{LABELS[name]}, gain {result.gains[name]:.3g}")
    np.atleast_1d(axes)[0].set_ylabel(r"$E[y_l^2]$ (pre-activations)")
    handles, labels = np.atleast_1d(axes)[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=4)
    fig.suptitle(f"width {result.width}, median and range over {len(result.seeds)} seeds")
    return fig
