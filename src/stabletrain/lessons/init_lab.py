r"""Experiments, figures and the explorer widget of lesson ``03_initialization``.

The notebook derives and checks the formulas itself; what is heavier lives here:

- **Depth sweeps** (:func:`depth_sweep`): a deep MLP of width n, no biases, run forward on a batch
  of Gaussian inputs and backward from a Gaussian output gradient, for several seeds *at once*
  (the weights of all seeds are one tensor of shape (seeds, depth, n, n), every layer one
  ``torch.bmm``), in float64 so that exploding and vanishing signals stay representable (no
  figure clips at a ceiling). It records, per seed and layer, the std of the activations
  h_l = f(W_l h_{l-1}) and of their gradients ∂L/∂h_l, and the values at a few layers for
  histograms.
- **Initializations** (:data:`INITS`, :func:`init_weights`): too small (std 0.01), too large
  (std 1), Xavier (Var = 1/n for a square layer), Kaiming (gain²/n with the activation's gain;
  LeCun's 1/n for SELU), PyTorch's default (U(±1/√n), Var = 1/(3n)), orthogonal (times the gain)
  and LSUV (orthogonal, then each layer rescaled on the batch so that its output has variance 1).
- **Training** (:func:`train_sweep`): many small deep ReLU MLPs trained at once on the spirals,
  one per (initialization, seed), with plain SGD; the loss per step.
- **Symmetry** (:func:`symmetry_run`): what zero and constant init do to a hidden layer.
- **Figures** (:func:`plot_depth_profiles`, :func:`plot_histograms`, :func:`plot_prediction`,
  :func:`plot_training`, :func:`plot_symmetry`) in :mod:`stabletrain.style`, each with a label
  that says what it shows (its alt text), and :class:`InitExplorer`, the widget.

Every figure is a detached :class:`matplotlib.figure.Figure`; the notebook displays it by leaving
it as a cell's last expression.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from stabletrain import style
from ..style import COLORS, LINESTYLES, styled
from stabletrain.threads import single_thread

__all__ = [
    "INITS",
    "ACTIVATIONS",
    "LABELS",
    "GAIN",
    "Profile",
    "single_thread",
    "activation",
    "init_weights",
    "depth_sweep",
    "profile",
    "weight_variance",
    "train_sweep",
    "symmetry_run",
    "plot_depth_profiles",
    "plot_histograms",
    "plot_prediction",
    "plot_training",
    "plot_symmetry",
    "InitExplorer",
]

INITS = ("too small", "too large", "xavier", "kaiming", "pytorch default", "orthogonal", "lsuv")
ACTIVATIONS = ("tanh", "relu", "selu")
LABELS = {
    "too small": "too small (std 0.01)",
    "too large": "too large (std 1)",
    "xavier": "Xavier (1/n)",
    "kaiming": "Kaiming (gain²/n)",
    "pytorch default": "PyTorch default (1/3n)",
    "orthogonal": "orthogonal × gain",
    "lsuv": "LSUV",
}
#: the gain each initialization uses for an activation (Kaiming, orthogonal); SELU wants LeCun's 1
GAIN = {"tanh": 5.0 / 3.0, "relu": math.sqrt(2.0), "selu": 1.0, "linear": 1.0}
_STYLE = {name: (COLORS[i % len(COLORS)], LINESTYLES[i % len(LINESTYLES)]) for i, name in enumerate(INITS)}

_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772, 1.0507009873554805


def activation(name: str, y: Tensor) -> tuple[Tensor, Tensor]:
    """(f(y), f'(y)) for ``name`` in tanh, relu, selu, linear."""
    if name == "tanh":
        h = torch.tanh(y)
        return h, 1 - h * h
    if name == "relu":
        positive = y > 0
        return y * positive, positive.to(y.dtype)
    if name == "selu":
        negative = _SELU_SCALE * _SELU_ALPHA * torch.exp(torch.clamp(y, max=0.0))
        return (torch.where(y > 0, _SELU_SCALE * y, negative - _SELU_SCALE * _SELU_ALPHA),
                torch.where(y > 0, torch.full_like(y, _SELU_SCALE), negative))
    if name == "linear":
        return y, torch.ones_like(y)
    raise ValueError(f"unknown activation {name!r}; use one of {ACTIVATIONS + ('linear',)}")


def weight_variance(init: str, act: str, width: int) -> float:
    """Var[w] of a square (width × width) layer under ``init`` (LSUV: that of its orthogonal start)."""
    return {
        "too small": 1e-4,
        "too large": 1.0,
        "xavier": 1.0 / width,
        "kaiming": GAIN[act] ** 2 / width,
        "pytorch default": 1.0 / (3 * width),
        "orthogonal": GAIN[act] ** 2 / width,
        "lsuv": 1.0 / width,
    }[init]


def _orthogonal(shape: tuple[int, ...], gen: torch.Generator) -> Tensor:
    """Haar-distributed orthogonal matrices, batched over the leading dimensions."""
    a = torch.randn(shape, generator=gen, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    return q * torch.diagonal(r, dim1=-2, dim2=-1).sign().unsqueeze(-2)


def init_weights(init: str, act: str, depth: int, width: int, seeds: int, seed: int = 0) -> Tensor:
    """Weights of shape (seeds, depth, width, width), float64, for every init but LSUV's rescaling
    (LSUV starts from orthogonal matrices with gain 1; :func:`depth_sweep` rescales them)."""
    gen = torch.Generator().manual_seed(seed)
    shape = (seeds, depth, width, width)
    if init in ("orthogonal", "lsuv"):
        gain = GAIN[act] if init == "orthogonal" else 1.0
        return gain * _orthogonal(shape, gen)
    if init == "pytorch default":
        bound = 1.0 / math.sqrt(width)
        return (torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1) * bound
    return torch.randn(shape, generator=gen, dtype=torch.float64) * math.sqrt(weight_variance(init, act, width))


@dataclass
class Profile:
    """Per-seed, per-layer statistics of one (init, activation, width, depth) network family."""

    init: str
    act: str
    width: int
    depth: int
    act_std: np.ndarray  # (seeds, depth): std of h_l
    grad_std: np.ndarray  # (seeds, depth): std of ∂L/∂h_l
    act_var: np.ndarray  # (seeds, depth): variance of h_l
    grad_var: np.ndarray  # (seeds, depth): variance of ∂L/∂h_l
    samples: dict[int, np.ndarray] = field(default_factory=dict)  # layer -> activations of seed 0
    seconds: float = 0.0

    def median_range(self, what: str = "act_std") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        values = getattr(self, what)
        return np.median(values, axis=0), values.min(axis=0), values.max(axis=0)


def profile(init: str, act: str, depth: int = 50, width: int = 64, batch: int = 128, seeds: int = 5,
            seed: int = 0, sample_layers: Sequence[int] = ()) -> Profile:
    """Run the deep MLP forward and backward for ``seeds`` networks at once; see the module doc."""
    started = time.perf_counter()
    with single_thread(), torch.no_grad():
        weights = init_weights(init, act, depth, width, seeds, seed)
        gen = torch.Generator().manual_seed(seed + 7919)
        h = torch.randn(seeds, batch, width, generator=gen, dtype=torch.float64)
        upstream = torch.randn(seeds, batch, width, generator=gen, dtype=torch.float64)
        slopes, act_var, act_std, samples = [], [], [], {}
        for layer in range(depth):
            w = weights[:, layer]
            y = torch.bmm(h, w.transpose(1, 2))
            if init == "lsuv":  # Mishkin & Matas (2016): scale each layer so that its output has variance 1
                scale = y.std(dim=(1, 2), keepdim=True)
                weights[:, layer] = w / scale
                y = y / scale
            h, slope = activation(act, y)
            slopes.append(slope)
            act_var.append(h.var(dim=(1, 2)))
            act_std.append(h.std(dim=(1, 2)))
            if layer + 1 in sample_layers:
                samples[layer + 1] = h[0].flatten().numpy().copy()
        g = upstream  # ∂L/∂h_L for L = Σ h_L ⊙ upstream
        grad_var = [None] * depth
        grad_std = [None] * depth
        for layer in range(depth - 1, -1, -1):
            grad_var[layer] = g.var(dim=(1, 2))
            grad_std[layer] = g.std(dim=(1, 2))
            g = torch.bmm(g * slopes[layer], weights[:, layer])
    stack = lambda xs: torch.stack(xs, dim=1).numpy()  # noqa: E731
    return Profile(init, act, width, depth, stack(act_std), stack(grad_std), stack(act_var), stack(grad_var),
                   samples, time.perf_counter() - started)


def depth_sweep(inits: Sequence[str] = INITS, activations: Sequence[str] = ACTIVATIONS, depth: int = 50,
                width: int = 64, batch: int = 64, seeds: int = 5, sample_layers: Sequence[int] = (1, 10, 25, 50),
                ) -> dict[tuple[str, str], Profile]:
    """:func:`profile` for every (init, activation) pair."""
    return {(i, a): profile(i, a, depth, width, batch, seeds, sample_layers=sample_layers)
            for a in activations for i in inits}


# ----------------------------------------------------------------------------------------------
# Training: many deep ReLU MLPs at once


@dataclass
class Training:
    inits: tuple[str, ...]
    losses: np.ndarray  # (inits, seeds, steps)
    depth: int
    width: int
    steps: int
    lr: float
    seconds: float

    def final(self, init: str, last: int = 20) -> np.ndarray:
        """Mean loss over the last ``last`` steps, per seed."""
        return self.losses[self.inits.index(init), :, -last:].mean(axis=1)


def train_sweep(inits: Sequence[str] = ("pytorch default", "kaiming", "xavier", "too small"), depth: int = 12,
                width: int = 32, steps: int = 300, seeds: int = 5, lr: float = 0.05, batch: int = 128,
                momentum: float = 0.9, seed: int = 0) -> Training:
    """Train ``len(inits) × seeds`` ReLU MLPs (2 → width → … → 3, ``depth`` Linear layers, biases 0)
    on three spirals, all at once, with SGD + momentum and the same minibatches; the loss per step."""
    from ..data import make_spirals

    started = time.perf_counter()
    x, y = make_spirals(200, classes=3, seed=seed)
    x, y = x.to(torch.float32), y
    runs = len(inits) * seeds
    gen = torch.Generator().manual_seed(seed + 1)
    dims = [2] + [width] * (depth - 1) + [3]
    weights, biases = [], []
    for fan_in, fan_out in zip(dims[:-1], dims[1:]):
        layer = []
        for init in inits:
            for s in range(seeds):
                if init == "pytorch default":
                    b = 1 / math.sqrt(fan_in)
                    w = (torch.rand(fan_out, fan_in, generator=gen) * 2 - 1) * b
                else:
                    var = {"kaiming": 2.0 / fan_in, "xavier": 2.0 / (fan_in + fan_out), "too small": 1e-4}[init]
                    w = torch.randn(fan_out, fan_in, generator=gen) * math.sqrt(var)
                layer.append(w.T)
        weights.append(torch.stack(layer).requires_grad_(True))  # (runs, in, out)
        biases.append(torch.zeros(runs, 1, fan_out, requires_grad=True))
    params = weights + biases
    velocity = [torch.zeros_like(p) for p in params]
    losses = np.empty((runs, steps))
    batch_gen = torch.Generator().manual_seed(seed + 2)
    with single_thread():
        for step in range(steps):
            idx = torch.randint(0, len(x), (batch,), generator=batch_gen)
            h = x[idx].expand(runs, batch, 2)
            for i, (w, b) in enumerate(zip(weights, biases)):
                h = torch.baddbmm(b, h, w)
                if i < len(weights) - 1:
                    h = torch.relu(h)
            target = y[idx].repeat(runs)
            loss = torch.nn.functional.cross_entropy(h.reshape(runs * batch, 3), target, reduction="none")
            per_run = loss.reshape(runs, batch).mean(dim=1)
            grads = torch.autograd.grad(per_run.sum(), params)
            with torch.no_grad():
                for p, g, v in zip(params, grads, velocity):
                    v.mul_(momentum).add_(g)
                    p.sub_(lr * v)
            losses[:, step] = per_run.detach().numpy()
    return Training(tuple(inits), losses.reshape(len(inits), seeds, steps), depth, width, steps, lr,
                    time.perf_counter() - started)


# ----------------------------------------------------------------------------------------------
# Symmetry


def symmetry_run(init: str, steps: int = 100, seed: int = 0, width: int = 8, lr: float = 0.5) -> dict[str, np.ndarray]:
    """A 2 → width → 3 tanh MLP on the spirals, trained by full-batch gradient descent from
    ``init`` ("zero", "constant" (every weight 0.5) or "random" (Xavier)); per step the largest
    difference between two hidden units' incoming weights and between their gradients, the loss,
    and how far W₁ has moved from its start (largest entry)."""
    from ..data import make_spirals

    x, y = make_spirals(100, classes=3, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    w1, w2 = torch.empty(width, 2), torch.empty(3, width)
    for w in (w1, w2):
        if init == "zero":
            w.zero_()
        elif init == "constant":
            w.fill_(0.5)
        else:
            w.normal_(0.0, math.sqrt(2.0 / sum(w.shape)), generator=gen)
    b1, b2 = torch.zeros(width), torch.zeros(3)
    params = [p.requires_grad_(True) for p in (w1, b1, w2, b2)]
    spread, grad_spread, losses, moved = [], [], [], []
    start = w1.detach().clone()
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(torch.tanh(x @ w1.T + b1) @ w2.T + b2, y)
        grads = torch.autograd.grad(loss, params)
        spread.append((w1 - w1[:1]).abs().max().item())
        grad_spread.append((grads[0] - grads[0][:1]).abs().max().item())
        losses.append(loss.item())
        moved.append((w1 - start).abs().max().item())
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(lr * g)
    return {"spread": np.array(spread), "grad_spread": np.array(grad_spread), "loss": np.array(losses),
            "moved": np.array(moved)}


# ----------------------------------------------------------------------------------------------
# Figures


def _band(ax, x, values: np.ndarray, name: str, label: str | None = None) -> None:
    color, style = _STYLE.get(name, ("black", "-"))
    median = np.median(values, axis=0)
    ax.plot(x, median, color=color, linestyle=style, label=label or LABELS.get(name, name))
    ax.fill_between(x, values.min(axis=0), values.max(axis=0), color=color, alpha=0.18, linewidth=0)


@styled
def plot_depth_profiles(sweep: dict[tuple[str, str], Profile], what: str = "act_std",
                        inits: Sequence[str] | None = None) -> Figure:
    """One panel per activation: the per-layer std (median and range over seeds) of every init."""
    acts = list(dict.fromkeys(a for _, a in sweep))
    inits = list(inits or dict.fromkeys(i for i, _ in sweep))
    fig = Figure(figsize=(5.0 * len(acts), 4.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(acts), sharey=True))
    for ax, act in zip(axes, acts):
        for init in inits:
            p = sweep[init, act]
            _band(ax, np.arange(1, p.depth + 1), np.maximum(getattr(p, what), 1e-300), init)
        ax.set_yscale("log")
        ax.set_title(act)
        ax.set_xlabel("layer")
    noun = "activations $h_l$" if what == "act_std" else r"gradients $\partial L/\partial h_l$"
    axes[0].set_ylabel(f"std of the {noun}")
    axes[-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
    p = next(iter(sweep.values()))
    seeds = p.act_std.shape[0]
    fig.suptitle(f"{noun.split('$')[0].strip().capitalize()} through a {p.depth}-layer MLP of width {p.width}: "
                 f"median and range over {seeds} seeds")
    fig.set_label(f"Per-layer std of the {noun} (log scale) for each initialization, one panel per activation, "
                  f"median line and min-max band over {seeds} seeds; float64, nothing clipped.")
    return fig


@styled
def plot_histograms(sweep: dict[tuple[str, str], Profile], act: str, inits: Sequence[str],
                    layers: Sequence[int] = (1, 10, 25, 50)) -> Figure:
    """Histograms of the activations at a few layers (seed 0), one panel per init."""
    fig = Figure(figsize=(4.2 * len(inits), 3.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(inits)))
    for ax, init in zip(axes, inits):
        p = sweep[init, act]
        for k, layer in enumerate(layers):
            values = p.samples[layer]
            spread = max(float(np.abs(values).max()), 1e-300)
            ax.hist(values / spread, bins=60, range=(-1, 1) if act != "relu" else (0, 1), density=True,
                    histtype="step", color=COLORS[k + 1], linestyle=LINESTYLES[k + 1], linewidth=1.8,
                    label=f"layer {layer}: max |h| = {spread:.1e}")
        ax.set_yscale("log")
        ax.set_title(LABELS[init])
        ax.set_xlabel("h / max |h|")
        ax.legend(fontsize=12, loc="upper center")
    axes[0].set_ylabel("density")
    fig.suptitle(f"{act}: where the activations sit (seed 0; each layer scaled by its own largest |h|)")
    fig.set_label(f"Histograms of the {act} activations at layers {', '.join(map(str, layers))} for "
                  f"{', '.join(inits)}; each histogram is scaled by that layer's largest value, given in the legend.")
    return fig


@styled
def plot_prediction(measured: dict[str, Profile], predicted: dict[str, tuple[np.ndarray, np.ndarray]]) -> Figure:
    """Measured (median and range over seeds) against predicted variance per layer, forward and backward."""
    fig = Figure(figsize=(11.0, 4.4), layout="constrained")
    ax_f, ax_b = fig.subplots(1, 2, sharey=True)
    for k, (name, p) in enumerate(measured.items()):
        color, style = COLORS[k % len(COLORS)], LINESTYLES[k % len(LINESTYLES)]
        x = np.arange(1, p.depth + 1)
        for ax, values, pred in ((ax_f, p.act_var, predicted[name][0]), (ax_b, p.grad_var, predicted[name][1])):
            ax.plot(x, np.median(values, axis=0), color=color, linestyle=style, label=f"{name}: measured")
            ax.fill_between(x, values.min(axis=0), values.max(axis=0), color=color, alpha=0.18, linewidth=0)
            ax.plot(x, pred, color=color, linestyle="none", marker="o", markersize=4, label=f"{name}: predicted")
    for ax, title in ((ax_f, r"forward: Var[$h_l$]"), (ax_b, r"backward: Var[$\partial L/\partial h_l$]")):
        ax.set_yscale("log")
        ax.set_xlabel("layer")
        ax.set_title(title)
    ax_f.set_ylabel("variance")
    ax_b.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=12)
    fig.set_label("Per-layer variance of activations (left) and gradients (right): measured median and range over "
                  "seeds as lines and bands, the mean-field prediction as dots.")
    return fig


@styled
def plot_training(training: Training, control: str = "pytorch default") -> Figure:
    """Loss per step (median and range over seeds) for every init; the control in black."""
    fig = Figure(figsize=(8.5, 4.6), layout="constrained")
    ax = fig.subplots()
    steps = np.arange(1, training.steps + 1)
    for init in training.inits:
        _band(ax, steps, training.losses[training.inits.index(init)], init,
              label=LABELS[init] + (" — control" if init == control else ""))
    ax.axhline(math.log(3), color="0.4", linestyle=":", linewidth=1.5, label="chance: ln 3")
    ax.set_xlabel("SGD step")
    ax.set_ylabel("cross-entropy (training batch)")
    ax.set_ylim(0, 1.6)
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
    seeds = training.losses.shape[1]
    ax.set_title(f"{training.depth}-layer ReLU MLPs on the spirals, median and range over {seeds} seeds")
    fig.set_label(f"Training loss per step for each initialization of a {training.depth}-layer ReLU MLP, "
                  f"median and min-max band over {seeds} seeds; y axis cut at 1.6 (losses start near ln 3 ≈ 1.1).")
    return fig


@styled
def plot_symmetry(runs: dict[str, list[dict[str, np.ndarray]]]) -> Figure:
    """Largest difference between two hidden units' weights per step, for each init (median, range)."""
    fig = Figure(figsize=(11.0, 4.2), layout="constrained")
    ax_w, ax_loss = fig.subplots(1, 2)
    for k, (init, seeds) in enumerate(runs.items()):
        color, style = COLORS[k], LINESTYLES[k]
        spread = np.stack([r["spread"] for r in seeds])
        loss = np.stack([r["loss"] for r in seeds])
        x = np.arange(1, spread.shape[1] + 1)
        ax_w.plot(x, np.median(spread, axis=0), color=color, linestyle=style, label=init)
        ax_w.fill_between(x, spread.min(axis=0), spread.max(axis=0), color=color, alpha=0.18, linewidth=0)
        ax_loss.plot(x, np.median(loss, axis=0), color=color, linestyle=style, label=init)
        ax_loss.fill_between(x, loss.min(axis=0), loss.max(axis=0), color=color, alpha=0.18, linewidth=0)
    ax_w.set_xlabel("gradient-descent step")
    ax_w.set_ylabel("max |w_i − w_0| over hidden units")
    ax_w.set_title("are the hidden units still identical?")
    ax_loss.set_xlabel("gradient-descent step")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title("loss")
    ax_loss.legend()
    fig.set_label("Left: the largest difference between the incoming weights of two hidden units per step, for "
                  "zero, constant and random init (median and range over seeds); zero for zero and constant init "
                  "at every step. Right: the training loss.")
    return fig


# ----------------------------------------------------------------------------------------------
# The explorer


class InitExplorer:
    """An ipywidgets explorer over depth × init × activation × width.

    Each setting is computed on demand (5 seeds at once, width ≤ 64, float64: a few tens of ms)
    and cached; the figure is laid out once and only its line data change, drawn with Agg into an
    ``ipywidgets.Image``. ``last_update_s`` holds the duration of the latest update.
    """

    WIDTHS = (8, 16, 32, 64)
    BATCH = 32  # inputs per seed: 5 seeds × 32 inputs × width values per layer are plenty for a std

    def __init__(self, init: str = "kaiming", act: str = "relu", depth: int = 50, width: int = 32,
                 seeds: int = 5, dpi: int = 80) -> None:
        import ipywidgets as widgets

        self.seeds, self.dpi = seeds, dpi
        style = {"description_width": "initial"}
        self.init = widgets.Dropdown(options=[(LABELS[i], i) for i in INITS], value=init, description="init",
                                     style=style)
        self.act = widgets.Dropdown(options=list(ACTIVATIONS), value=act, description="activation", style=style)
        self.depth = widgets.IntSlider(value=depth, min=2, max=50, description="depth", continuous_update=False,
                                       style=style)
        self.width = widgets.SelectionSlider(options=list(self.WIDTHS), value=width, description="width",
                                             continuous_update=False, style=style)
        self.image = widgets.Image(format="png")
        self.summary = widgets.HTML()
        self.widget = widgets.VBox([widgets.HBox([self.init, self.act]), widgets.HBox([self.depth, self.width]),
                                    self.image, self.summary])
        self.last_update_s = math.nan
        self._build_figure()
        for control in (self.init, self.act, self.depth, self.width):
            control.observe(lambda _change: self.update(), names="value")
        self.update()

    @functools.lru_cache(maxsize=256)  # noqa: B019 — one explorer per notebook; the cache is the point
    def _profile(self, init: str, act: str, depth: int, width: int) -> Profile:
        return profile(init, act, depth, width, batch=self.BATCH, seeds=self.seeds)

    def _build_figure(self) -> None:
        with_style = styled(lambda: Figure(figsize=(12.0, 4.0), dpi=self.dpi, layout="constrained"))
        fig = with_style()
        self._axes = fig.subplots(1, 2)
        self._lines = {}
        for ax, what in zip(self._axes, ("act_std", "grad_std")):
            (median,) = ax.plot([], [], color=COLORS[2], linestyle=LINESTYLES[0], linewidth=2.2, label="median")
            (low,) = ax.plot([], [], color=COLORS[2], linestyle=LINESTYLES[2], linewidth=1.2, label="min / max")
            (high,) = ax.plot([], [], color=COLORS[2], linestyle=LINESTYLES[2], linewidth=1.2)
            ax.axhline(1.0, color="black", linestyle=":", linewidth=1.2)
            ax.set_yscale("log")
            ax.set_xlabel("layer")
            self._lines[what] = (median, low, high)
        self._axes[0].set_ylabel("std of $h_l$")
        self._axes[1].set_ylabel(r"std of $\partial L/\partial h_l$")
        self._axes[0].legend(loc="lower left", fontsize=11)
        fig.suptitle("placeholder")
        fig.draw_without_rendering()
        fig.set_layout_engine("none")
        self.figure = fig
        self._canvas = FigureCanvasAgg(fig)

    def _render_png(self) -> bytes:
        return style.canvas_png(self._canvas)

    def update(self) -> None:
        started = time.perf_counter()
        p = self._profile(self.init.value, self.act.value, self.depth.value, self.width.value)
        x = np.arange(1, p.depth + 1)
        for ax, what in zip(self._axes, ("act_std", "grad_std")):
            median, low, high = p.median_range(what)
            for line, values in zip(self._lines[what], (median, low, high)):
                line.set_data(x, np.maximum(values, 1e-300))
            finite = np.concatenate([low, high])
            finite = finite[np.isfinite(finite) & (finite > 0)]
            lo, hi = (finite.min(), finite.max()) if finite.size else (1e-3, 1e3)
            ax.set_ylim(min(lo, 0.5) / 2, max(hi, 2.0) * 2)
            ax.set_xlim(0.5, p.depth + 0.5)
        self._axes[0].set_title("forward: activations")
        self._axes[1].set_title("backward: gradients")
        self.figure.suptitle(f"{LABELS[p.init]}, {p.act}, width {p.width}, depth {p.depth} — "
                             f"{self.seeds} seeds")
        self.image.value = self._render_png()
        last_a, last_g = np.median(p.act_std[:, -1]), np.median(p.grad_std[:, 0])
        self.last_update_s = time.perf_counter() - started
        self.summary.value = (f"median std at the last layer: activations {last_a:.3g}; gradient at the first "
                              f"layer: {last_g:.3g} (output gradient std 1). Redrawn in {self.last_update_s:.2f} s.")
