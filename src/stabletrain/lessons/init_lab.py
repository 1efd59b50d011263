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
- **Symmetry** (:func:`symmetry_sweep`): what zero and constant init do to a hidden layer, and what
  a nudge of one part in a million (rounding's size) does to a constant init over longer training.
- **Seeds and perturbations**: every experiment takes its seeds as a tuple (:data:`SEEDS` by
  default; a seed fixes the weights, the data and the minibatches) and a ``jitter`` that multiplies
  every initial weight by 1 + jitter·ε (:func:`stabletrain.perturb.jitter_`, its own generator);
  :func:`all_experiments` runs everything the notebook runs, for the claims tests.
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
from stabletrain.perturb import jitter_
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
    "SEEDS",
    "NUDGE",
    "Symmetry",
    "Training",
    "Experiments",
    "symmetry_sweep",
    "separation_step",
    "all_experiments",
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


SEEDS: tuple[int, ...] = (0, 1, 2, 3, 4)
"""The notebook's seeds. A seed fixes a network's weights, its inputs (data) and its minibatches."""


def init_weights(init: str, act: str, depth: int, width: int, seeds: Sequence[int] = SEEDS) -> Tensor:
    """Weights of shape (len(seeds), depth, width, width), float64, each seed's drawn from its own
    generator, for every init but LSUV's rescaling (LSUV starts from orthogonal matrices with gain 1;
    :func:`profile` rescales them)."""
    shape = (depth, width, width)
    out = []
    for seed in seeds:
        gen = torch.Generator().manual_seed(int(seed))
        if init in ("orthogonal", "lsuv"):
            gain = GAIN[act] if init == "orthogonal" else 1.0
            out.append(gain * _orthogonal(shape, gen))
        elif init == "pytorch default":
            bound = 1.0 / math.sqrt(width)
            out.append((torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1) * bound)
        else:
            out.append(torch.randn(shape, generator=gen, dtype=torch.float64) * math.sqrt(weight_variance(init, act, width)))
    return torch.stack(out)


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
    samples: dict[int, np.ndarray] = field(default_factory=dict)  # layer -> (seeds, batch·width) activations
    seconds: float = 0.0
    seeds: tuple[int, ...] = SEEDS

    def median_range(self, what: str = "act_std") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        values = getattr(self, what)
        return np.median(values, axis=0), values.min(axis=0), values.max(axis=0)


def profile(init: str, act: str, depth: int = 50, width: int = 64, batch: int = 128, seeds: Sequence[int] = SEEDS,
            jitter: float = 0.0, sample_layers: Sequence[int] = ()) -> Profile:
    """Run the deep MLP forward and backward for every seed at once; see the module doc.

    Seed s draws its weights from ``Generator().manual_seed(s)`` and its inputs and output gradient
    from ``manual_seed(s + 7919)``; ``jitter`` multiplies every initial weight by 1 + jitter·ε
    (:func:`stabletrain.perturb.jitter_`, its own generator).
    """
    started = time.perf_counter()
    seeds = tuple(int(s) for s in seeds)
    with single_thread(), torch.no_grad():
        weights = init_weights(init, act, depth, width, seeds)
        jitter_(weights, jitter)
        inputs, upstreams = [], []
        for seed in seeds:
            gen = torch.Generator().manual_seed(seed + 7919)
            inputs.append(torch.randn(batch, width, generator=gen, dtype=torch.float64))
            upstreams.append(torch.randn(batch, width, generator=gen, dtype=torch.float64))
        h, upstream = torch.stack(inputs), torch.stack(upstreams)
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
                samples[layer + 1] = h.reshape(len(seeds), -1).numpy().copy()
        g = upstream  # ∂L/∂h_L for L = Σ h_L ⊙ upstream
        grad_var = [None] * depth
        grad_std = [None] * depth
        for layer in range(depth - 1, -1, -1):
            grad_var[layer] = g.var(dim=(1, 2))
            grad_std[layer] = g.std(dim=(1, 2))
            g = torch.bmm(g * slopes[layer], weights[:, layer])
    stack = lambda xs: torch.stack(xs, dim=1).numpy()  # noqa: E731
    return Profile(init, act, width, depth, stack(act_std), stack(grad_std), stack(act_var), stack(grad_var),
                   samples, time.perf_counter() - started, seeds)


def depth_sweep(inits: Sequence[str] = INITS, activations: Sequence[str] = ACTIVATIONS, depth: int = 50,
                width: int = 64, batch: int = 64, seeds: Sequence[int] = SEEDS, jitter: float = 0.0,
                sample_layers: Sequence[int] = (1, 10, 25, 50)) -> dict[tuple[str, str], Profile]:
    """:func:`profile` for every (init, activation) pair."""
    return {(i, a): profile(i, a, depth, width, batch, seeds, jitter, sample_layers=sample_layers)
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
    seeds: tuple[int, ...] = SEEDS
    #: with ``record=True``: (inits, seeds, steps, layers) — the std of every Linear layer's output
    #: on the step's batch (what a forward hook on it sees) and its update:data ratio ‖Δw‖/‖w‖
    out_std: np.ndarray | None = None
    update_ratio: np.ndarray | None = None

    def final(self, init: str, last: int = 20) -> np.ndarray:
        """Mean loss over the last ``last`` steps, per seed."""
        return self.losses[self.inits.index(init), :, -last:].mean(axis=1)


def train_sweep(inits: Sequence[str] = ("pytorch default", "kaiming", "xavier", "too small"), depth: int = 12,
                width: int = 32, steps: int = 300, seeds: Sequence[int] = SEEDS, lr: float = 0.05, batch: int = 128,
                momentum: float = 0.9, jitter: float = 0.0, record: bool = False) -> Training:
    """Train ``len(inits) × len(seeds)`` ReLU MLPs (2 → width → … → 3, ``depth`` Linear layers,
    biases 0) on three spirals, all at once, with SGD + momentum; the loss per step.

    Seed s draws its spirals with ``make_spirals(200, seed=s)``, its weights from
    ``Generator().manual_seed(10_000 + s)`` and its minibatches from ``manual_seed(20_000 + s)``;
    the inits of one seed share data and minibatches (a paired comparison). ``jitter``: every
    initial weight × (1 + jitter·ε), :func:`stabletrain.perturb.jitter_`. ``record``: also keep, per
    step and Linear layer, the std of its output and its update:data ratio (``Training.out_std``,
    ``Training.update_ratio``).
    """
    from ..data import make_spirals

    started = time.perf_counter()
    seeds = tuple(int(s) for s in seeds)
    data = [make_spirals(200, classes=3, seed=s) for s in seeds]
    x_all = torch.stack([x for x, _ in data]).to(torch.float32)  # (seeds, N, 2)
    y_all = torch.stack([y for _, y in data])  # (seeds, N)
    n_seeds, n_points = len(seeds), x_all.shape[1]
    runs = len(inits) * n_seeds  # run r = (init r // seeds, seed r % seeds)
    gens = [torch.Generator().manual_seed(10_000 + s) for s in seeds]
    dims = [2] + [width] * (depth - 1) + [3]
    weights, biases = [], []
    for fan_in, fan_out in zip(dims[:-1], dims[1:]):
        layer = []
        for init in inits:
            for gen in gens:
                if init == "pytorch default":
                    b = 1 / math.sqrt(fan_in)
                    w = (torch.rand(fan_out, fan_in, generator=gen) * 2 - 1) * b
                else:
                    var = {"kaiming": 2.0 / fan_in, "xavier": 2.0 / (fan_in + fan_out), "too small": 1e-4}[init]
                    w = torch.randn(fan_out, fan_in, generator=gen) * math.sqrt(var)
                layer.append(w.T)
        weights.append(torch.stack(layer))  # (runs, in, out)
        biases.append(torch.zeros(runs, 1, fan_out))
    jitter_(weights, jitter)
    params = [p.requires_grad_(True) for p in weights + biases]
    velocity = [torch.zeros_like(p) for p in params]
    losses = np.empty((runs, steps))
    out_std = np.empty((runs, steps, depth)) if record else None
    update_ratio = np.empty((runs, steps, depth)) if record else None
    batch_gens = [torch.Generator().manual_seed(20_000 + s) for s in seeds]
    rows = torch.arange(n_seeds).unsqueeze(1)
    with single_thread():
        for step in range(steps):
            idx = torch.stack([torch.randint(0, n_points, (batch,), generator=g) for g in batch_gens])
            h = x_all[rows, idx].repeat(len(inits), 1, 1)  # (runs, batch, 2)
            target = y_all[rows, idx].repeat(len(inits), 1).reshape(-1)
            for i, (w, b) in enumerate(zip(weights, biases)):
                h = torch.baddbmm(b, h, w)
                if record:
                    out_std[:, step, i] = h.detach().std(dim=(1, 2)).numpy()
                if i < len(weights) - 1:
                    h = torch.relu(h)
            loss = torch.nn.functional.cross_entropy(h.reshape(runs * batch, 3), target, reduction="none")
            per_run = loss.reshape(runs, batch).mean(dim=1)
            grads = torch.autograd.grad(per_run.sum(), params)
            with torch.no_grad():
                for p, g, v in zip(params, grads, velocity):
                    v.mul_(momentum).add_(g)
                    p.sub_(lr * v)
                if record:  # the weight matrices come first in params: ‖lr·v‖/‖w‖ per run
                    for i, (w, v) in enumerate(zip(weights, velocity)):
                        update_ratio[:, step, i] = (lr * v.norm(dim=(1, 2)) / w.norm(dim=(1, 2))).numpy()
            losses[:, step] = per_run.detach().numpy()
    shape = (len(inits), n_seeds)
    return Training(tuple(inits), losses.reshape(*shape, steps), depth, width, steps, lr,
                    time.perf_counter() - started, seeds,
                    None if out_std is None else out_std.reshape(*shape, steps, depth),
                    None if update_ratio is None else update_ratio.reshape(*shape, steps, depth))


# ----------------------------------------------------------------------------------------------
# PyTorch's default with and without its biases; uneven widths


@dataclass
class BiasProfile:
    """Per seed and layer of a deep ReLU MLP with nn.Linear's default init (U(±1/√n) weights and
    biases): the std of the activations over all entries, and the input-dependent part — the std
    across the batch's examples, per unit, root-mean-squared over the units — with the biases at
    their default and set to 0."""

    total: np.ndarray  # (seeds, depth), default biases
    across: np.ndarray  # (seeds, depth), default biases
    total_zero_bias: np.ndarray  # (seeds, depth), biases 0
    width: int
    seeds: tuple[int, ...] = SEEDS


def bias_profile(depth: int = 20, width: int = 256, batch: int = 64, seeds: Sequence[int] = SEEDS,
                 jitter: float = 0.0) -> BiasProfile:
    """The default init's ReLU MLP (float64) run forward twice: with its default biases and with
    the biases set to 0. Seed s draws weights, biases (manual_seed(30_000 + s)) and a Gaussian batch."""
    seeds = tuple(int(s) for s in seeds)
    bound = 1.0 / math.sqrt(width)
    weights, biases, inputs = [], [], []
    for seed in seeds:
        gen = torch.Generator().manual_seed(30_000 + seed)
        weights.append((torch.rand(depth, width, width, generator=gen, dtype=torch.float64) * 2 - 1) * bound)
        biases.append((torch.rand(depth, 1, width, generator=gen, dtype=torch.float64) * 2 - 1) * bound)
        inputs.append(torch.randn(batch, width, generator=gen, dtype=torch.float64))
    w, b, x = torch.stack(weights), torch.stack(biases), torch.stack(inputs)
    jitter_([w, b], jitter)
    total, across, zero = (np.empty((len(seeds), depth)) for _ in range(3))
    with single_thread(), torch.no_grad():
        h, h0 = x, x
        for layer in range(depth):
            h = torch.relu(torch.baddbmm(b[:, layer], h, w[:, layer].transpose(1, 2)))
            h0 = torch.relu(torch.bmm(h0, w[:, layer].transpose(1, 2)))
            total[:, layer] = h.std(dim=(1, 2)).numpy()
            across[:, layer] = h.var(dim=1).mean(dim=1).sqrt().numpy()
            zero[:, layer] = h0.std(dim=(1, 2)).numpy()
    return BiasProfile(total, across, zero, width, seeds)


def kaiming_weight_vars(widths: Sequence[int]) -> list[float]:
    """Kaiming's forward condition, Var[w_l] = 2/fan_in, for every layer of a net of these widths."""
    return [2.0 / n for n in widths[:-1]]


@dataclass
class Uneven:
    """Per seed and layer: the std of h_l and of ∂L/∂h_l in a ReLU MLP of uneven widths."""

    widths: tuple[int, ...]
    act_std: np.ndarray  # (seeds, layers)
    grad_std: np.ndarray  # (seeds, layers)
    seeds: tuple[int, ...] = SEEDS


def uneven_profile(widths: Sequence[int] = (32, 256, 64, 512, 128, 16), weight_vars: Sequence[float] | None = None,
                   batch: int = 256, seeds: Sequence[int] = SEEDS, jitter: float = 0.0) -> Uneven:
    """A ReLU MLP of the given widths (Kaiming fan_in by default), forward on a Gaussian batch and
    backward from a Gaussian output gradient, float64, every seed at once (manual_seed(40_000 + s))."""
    widths, seeds = tuple(int(n) for n in widths), tuple(int(s) for s in seeds)
    weight_vars = list(weight_vars) if weight_vars is not None else kaiming_weight_vars(widths)
    gens = [torch.Generator().manual_seed(40_000 + s) for s in seeds]
    ws = [torch.stack([torch.randn(a, b, generator=g, dtype=torch.float64) for g in gens]) * math.sqrt(v)
          for (a, b), v in zip(zip(widths[:-1], widths[1:]), weight_vars)]
    jitter_(ws, jitter)
    h = torch.stack([torch.randn(batch, widths[0], generator=g, dtype=torch.float64) for g in gens])
    upstream = torch.stack([torch.randn(batch, widths[-1], generator=g, dtype=torch.float64) for g in gens])
    with single_thread(), torch.no_grad():
        outs, slopes = [], []
        for w in ws:
            y = torch.bmm(h, w)
            h = torch.relu(y)
            outs.append(h)
            slopes.append((y > 0).to(y.dtype))
        g, grads = upstream, [None] * len(ws)
        for layer in range(len(ws) - 1, -1, -1):
            grads[layer] = g
            g = torch.bmm(g * slopes[layer], ws[layer].transpose(1, 2))
    stack = lambda ts: torch.stack([t.std(dim=(1, 2)) for t in ts], dim=1).numpy()  # noqa: E731
    return Uneven(widths, stack(outs), stack(grads), seeds)


def mystery_model(seed: int = 0) -> tuple[torch.nn.Sequential, Tensor, tuple[int, str]]:
    """A 2 → 64 → … → 64 → 3 ReLU MLP (8 Linear layers, Kaiming weights, biases 0) in which one
    layer was initialised differently; a batch of 512 spiral points to run it on; and the answer
    (Linear layer index, "too small" or "too large") for the instructor. Built without torch.nn.init."""
    from ..data import make_spirals

    gen = torch.Generator().manual_seed(seed)
    bad = int(torch.randint(1, 7, (1,), generator=gen))
    factor = 0.2 if bool(torch.rand(1, generator=gen) < 0.5) else 5.0
    widths = [2] + [64] * 7 + [3]
    layers: list[torch.nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layer = torch.nn.Linear(a, b)
        with torch.no_grad():
            layer.weight.copy_(torch.randn(b, a, generator=gen) * math.sqrt(2.0 / a) * (factor if i == bad else 1.0))
            layer.bias.zero_()
        layers += [layer] + ([torch.nn.ReLU()] if i < len(widths) - 2 else [])
    x, _ = make_spirals(512 // 3 + 1, classes=3, seed=seed)
    return torch.nn.Sequential(*layers), x[:512], (bad, "too small" if factor < 1 else "too large")


# ----------------------------------------------------------------------------------------------
# Symmetry

#: how much the "nudged" constant init moves each weight: w · (1 + NUDGE·ε), about eight float32 roundings
NUDGE = 1e-6


_SYMMETRY_ORDER = ("zero", "constant", "random", "nudged")  # one colour and dash pattern per init in every figure


def separation_step(spread: np.ndarray, level: float = 0.1) -> np.ndarray:
    """Per seed (rows of ``spread``), the first step (1-based) at which two hidden units differ by
    more than ``level``; the number of steps + 1 where they never do."""
    above = spread > level
    return np.where(above.any(axis=1), above.argmax(axis=1) + 1, spread.shape[1] + 1)


@dataclass
class Symmetry:
    """Per init, seed and step: the largest difference between two hidden units' incoming weights
    (``spread``) and between their gradients (``grad_spread``), the loss, and how far W₁ has moved
    from its start (``moved``, largest entry). Arrays of shape (seeds, steps)."""

    spread: dict[str, np.ndarray]
    grad_spread: dict[str, np.ndarray]
    loss: dict[str, np.ndarray]
    moved: dict[str, np.ndarray]
    seeds: tuple[int, ...]
    steps: int


def symmetry_sweep(inits: Sequence[str] = ("zero", "constant", "random"), steps: int = 100,
                   seeds: Sequence[int] = SEEDS, jitter: float = 0.0, width: int = 8, lr: float = 0.5) -> Symmetry:
    """2 → width → 3 tanh MLPs on the spirals, trained by full-batch gradient descent, one per
    (init, seed), all at once. ``init``: "zero", "constant" (every weight 0.5), "random" (Xavier
    normal) or "nudged" (constant, then every weight × (1 + :data:`NUDGE`·ε)). Seed s draws its
    spirals with ``make_spirals(100, seed=s)`` and its random weights from ``manual_seed(s)``;
    ``jitter`` (the claims tests' perturbation) multiplies every initial weight by 1 + jitter·ε
    with a generator of its own. Biases start at 0."""
    from ..data import make_spirals

    seeds = tuple(int(s) for s in seeds)
    data = [make_spirals(100, classes=3, seed=s) for s in seeds]
    x = torch.stack([d[0] for d in data]).repeat(len(inits), 1, 1)  # (runs, N, 2); run = (init, seed)
    y = torch.stack([d[1] for d in data]).repeat(len(inits), 1)
    runs = x.shape[0]
    w1, w2 = torch.empty(runs, width, 2), torch.empty(runs, 3, width)
    for k, init in enumerate(inits):
        for j, seed in enumerate(seeds):
            r = k * len(seeds) + j
            gen = torch.Generator().manual_seed(seed)
            for w in (w1[r], w2[r]):
                if init == "zero":
                    w.zero_()
                elif init in ("constant", "nudged"):
                    w.fill_(0.5)
                elif init == "random":
                    w.normal_(0.0, math.sqrt(2.0 / sum(w.shape)), generator=gen)
                else:
                    raise ValueError(f"unknown init {init!r}; use zero, constant, random or nudged")
            if init == "nudged":
                jitter_([w1[r], w2[r]], NUDGE, seed=100_000 + seed)
    jitter_([w1, w2], jitter)
    b1, b2 = torch.zeros(runs, 1, width), torch.zeros(runs, 1, 3)
    params = [p.requires_grad_(True) for p in (w1, b1, w2, b2)]
    start = w1.detach().clone()
    spread, grad_spread, losses, moved = (np.empty((runs, steps)) for _ in range(4))
    with single_thread():
        for step in range(steps):
            logits = torch.bmm(torch.tanh(torch.baddbmm(b1, x, w1.transpose(1, 2))), w2.transpose(1, 2)) + b2
            per_run = torch.nn.functional.cross_entropy(logits.reshape(-1, 3), y.reshape(-1),
                                                        reduction="none").reshape(runs, -1).mean(dim=1)
            grads = torch.autograd.grad(per_run.sum(), params)
            with torch.no_grad():
                spread[:, step] = (w1 - w1[:, :1]).abs().amax(dim=(1, 2)).numpy()
                grad_spread[:, step] = (grads[0] - grads[0][:, :1]).abs().amax(dim=(1, 2)).numpy()
                losses[:, step] = per_run.numpy()
                moved[:, step] = (w1 - start).abs().amax(dim=(1, 2)).numpy()
                for p, g in zip(params, grads):
                    p.sub_(lr * g)
    split = lambda a: {init: a[k * len(seeds):(k + 1) * len(seeds)] for k, init in enumerate(inits)}  # noqa: E731
    return Symmetry(split(spread), split(grad_spread), split(losses), split(moved), seeds, steps)


# ----------------------------------------------------------------------------------------------
# Every experiment of the notebook, for the claims tests

#: Section 8's four networks: label -> (init, activation)
PREDICTION_SETTINGS = {"ReLU, Kaiming": ("kaiming", "relu"), "ReLU, PyTorch default": ("pytorch default", "relu"),
                       "tanh, Xavier": ("xavier", "tanh"), "tanh, 5/3 (Kaiming)": ("kaiming", "tanh")}
#: Section 10's initializations (the first is the control)
TRAIN_INITS = ("pytorch default", "xavier", "kaiming")
#: Section 8's uneven network
UNEVEN_WIDTHS = (32, 256, 64, 512, 128, 16)
#: the explorer settings whose answers the instructor notes quote: (init, activation, width)
EXPLORER_ANSWERS = tuple([("kaiming", "relu", 8), ("kaiming", "relu", 64), ("too large", "relu", 8),
                          ("too large", "relu", 64)] + [(init, "tanh", 64) for init in INITS])


@dataclass
class Experiments:
    """What the notebook computes, section by section, for one set of seeds and one arithmetic."""

    symmetry: Symmetry
    breaking: Symmetry
    sweep: dict[tuple[str, str], Profile]
    prediction: dict[str, Profile]
    deep: Training
    shallow: Training
    explorer: dict[tuple[str, str, int], Profile]
    biases: BiasProfile
    uneven: Uneven


def all_experiments(seeds: Sequence[int] = SEEDS, jitter: float = 0.0) -> Experiments:
    """Every experiment with the notebook's arguments (``claims_support.runs`` calls this)."""
    seeds = tuple(int(s) for s in seeds)
    return Experiments(
        symmetry=symmetry_sweep(steps=100, seeds=seeds, jitter=jitter),
        breaking=symmetry_sweep(("nudged", "random"), steps=600, seeds=seeds, jitter=jitter),
        sweep=depth_sweep(seeds=seeds, jitter=jitter),
        prediction={name: profile(init, act, depth=50, width=64, seeds=seeds, jitter=jitter)
                    for name, (init, act) in PREDICTION_SETTINGS.items()},
        deep=train_sweep(TRAIN_INITS, depth=10, steps=250, lr=0.01, seeds=seeds, jitter=jitter, record=True),
        shallow=train_sweep(TRAIN_INITS, depth=3, steps=250, lr=0.01, seeds=seeds, jitter=jitter),
        explorer={(init, act, width): profile(init, act, 50, width, batch=InitExplorer.BATCH, seeds=seeds,
                                              jitter=jitter)
                  for init, act, width in EXPLORER_ANSWERS},
        biases=bias_profile(seeds=seeds, jitter=jitter),
        uneven=uneven_profile(UNEVEN_WIDTHS, seeds=seeds, jitter=jitter),
    )


# ----------------------------------------------------------------------------------------------
# Figures


def _band(ax, x, values: np.ndarray, name: str, label: str | None = None) -> None:
    color, style = _STYLE.get(name, ("black", "-"))
    median = np.median(values, axis=0)
    ax.plot(x, median, color=color, linestyle=style, label=label or LABELS.get(name, name))
    ax.fill_between(x, values.min(axis=0), values.max(axis=0), color=color, alpha=0.18, linewidth=0)


#: the lower row of :func:`plot_depth_profiles`: the window it zooms into
ZOOM = (1e-2, 1e3)


@styled
def plot_depth_profiles(sweep: dict[tuple[str, str], Profile], what: str = "act_std",
                        inits: Sequence[str] | None = None, zoom: tuple[float, float] | None = ZOOM) -> Figure:
    """One column per activation: the per-layer std (median and range over seeds) of every init on
    the full range (upper row), and, when ``zoom`` is given, the inits whose whole band stays inside
    the window ``zoom`` on a second row, with the guides 0.1, 1 and 10."""
    acts = list(dict.fromkeys(a for _, a in sweep))
    inits = list(inits or dict.fromkeys(i for i, _ in sweep))
    rows = 2 if zoom else 1
    fig = Figure(figsize=(5.0 * len(acts), 4.4 * rows + 0.4), layout="constrained")
    axes = np.atleast_2d(fig.subplots(rows, len(acts)))
    noun = "activations $h_l$" if what == "act_std" else r"gradients $\partial L/\partial h_l$"
    for col, act in enumerate(acts):
        ax = axes[0, col]
        for init in inits:
            p = sweep[init, act]
            _band(ax, np.arange(1, p.depth + 1), np.maximum(getattr(p, what), 1e-300), init)
        ax.set_yscale("log")
        ax.set_title(act)
        if rows == 1:
            ax.set_xlabel("layer")
            continue
        ax = axes[1, col]
        for init in inits:
            p = sweep[init, act]
            values = getattr(p, what)
            if values.min() >= zoom[0] and values.max() <= zoom[1]:
                _band(ax, np.arange(1, p.depth + 1), values, init)
        for level, style in ((0.1, ":"), (1.0, "-"), (10.0, ":")):
            ax.axhline(level, color="0.5", linestyle=style, linewidth=1.0, zorder=0)
        ax.set_yscale("log")
        ax.set_ylim(*zoom)
        ax.set_xlabel("layer")
        ax.set_title(f"{act}: zoomed in")
    axes[0, 0].set_ylabel(f"std of the {noun}")
    if rows == 2:
        axes[1, 0].set_ylabel("std (only inits that stay\nbetween " + f"{zoom[0]:g} and {zoom[1]:g})")
    handles, labels = [], []
    for ax in axes.flat:  # one legend entry per init, from whichever panel drew it
        for h, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(h)
                labels.append(label)
    fig.legend(handles, labels, loc="outside right center")
    p = next(iter(sweep.values()))
    seeds = p.act_std.shape[0]
    fig.suptitle(f"{noun.split('$')[0].strip().capitalize()} through a {p.depth}-layer MLP of width {p.width}: "
                 f"median and range over {seeds} seeds")
    lower = (f" The lower row zooms into {zoom[0]:g}–{zoom[1]:g} and draws only the inits whose band stays inside "
             "it, with dotted guides at 0.1 and 10.") if zoom else ""
    fig.set_label(f"Per-layer std of the {noun} (log scale) for each initialization, one column per activation, "
                  f"median line and min-max band over {seeds} seeds; float64, nothing clipped in the upper row."
                  + lower)
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
            values = p.samples[layer][0]
            spread = max(float(np.abs(values).max()), 1e-300)
            ax.hist(values / spread, bins=60, range=(-1, 1) if act != "relu" else (0, 1), density=True,
                    histtype="step", color=COLORS[k + 1], linestyle=LINESTYLES[k + 1], linewidth=1.8,
                    label=f"layer {layer}: max |h| = {spread:.1e}")
        ax.set_yscale("log")
        ax.set_title(LABELS[init])
        ax.set_xlabel("h / max |h|")
        ax.legend(fontsize=12, loc="upper center")
    axes[0].set_ylabel("density")
    fig.suptitle(f"{act}: where the activations sit (seed {p.seeds[0]}; each layer scaled by its own largest |h|)")
    fig.set_label(f"Histograms of the {act} activations at layers {', '.join(map(str, layers))} for "
                  f"{', '.join(inits)}; each histogram is scaled by that layer's largest value, given in the legend.")
    return fig


@styled
def plot_prediction(measured: dict[str, Profile], predicted: dict[str, tuple[np.ndarray, np.ndarray]]) -> Figure:
    """Measured (median and range over seeds) against predicted variance per layer, forward and
    backward (upper row), and their ratio measured/predicted per layer (lower row)."""
    fig = Figure(figsize=(11.5, 8.4), layout="constrained")
    (ax_f, ax_b), (ax_rf, ax_rb) = fig.subplots(2, 2, sharex=True)
    for k, (name, p) in enumerate(measured.items()):
        color, style = COLORS[k % len(COLORS)], LINESTYLES[k % len(LINESTYLES)]
        x = np.arange(1, p.depth + 1)
        for ax, ax_r, values, pred in ((ax_f, ax_rf, p.act_var, predicted[name][0]),
                                       (ax_b, ax_rb, p.grad_var, predicted[name][1])):
            ax.plot(x, np.median(values, axis=0), color=color, linestyle=style, label=f"{name}: measured")
            ax.fill_between(x, values.min(axis=0), values.max(axis=0), color=color, alpha=0.18, linewidth=0)
            ax.plot(x, pred, color=color, linestyle="none", marker="o", markersize=4, label="_predicted")
            ratio = values / pred
            ax_r.plot(x, np.median(ratio, axis=0), color=color, linestyle=style)
            ax_r.fill_between(x, ratio.min(axis=0), ratio.max(axis=0), color=color, alpha=0.18, linewidth=0)
    for ax, title in ((ax_f, r"forward: Var[$h_l$]"), (ax_b, r"backward: Var[$\partial L/\partial h_l$]")):
        ax.set_yscale("log")
        ax.set_title(title)
    for ax in (ax_rf, ax_rb):
        ax.set_yscale("log")
        ax.axhline(1.0, color="0.3", linestyle="-", linewidth=1.0, zorder=0)
        for level in (0.5, 2.0):
            ax.axhline(level, color="0.5", linestyle=":", linewidth=1.0, zorder=0)
        ax.set_xlabel("layer")
    ax_f.set_ylabel("variance")
    ax_rf.set_ylabel("measured / predicted")
    from matplotlib.lines import Line2D

    handles, labels = ax_b.get_legend_handles_labels()
    handles.append(Line2D([], [], color="0.3", linestyle="none", marker="o", markersize=5))
    labels.append("mean-field prediction (dots,\nin each line's colour)")
    ax_b.legend(handles, [label.replace(": measured", "") for label in labels], loc="center left",
                bbox_to_anchor=(1.02, 0.5), fontsize=12)
    fig.set_label("Upper row: per-layer variance of activations (left) and gradients (right), measured median and "
                  "range over seeds as lines and bands, the mean-field prediction as dots. Lower row: the ratio "
                  "measured/predicted per layer (median and range over seeds), with guides at 1/2, 1 and 2.")
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
    ax.axhline(math.log(3), color="0.4", linestyle=(0, (1, 4)), linewidth=1.5, label="chance: ln 3")
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
def plot_symmetry(sym: Symmetry, floor: float = 1e-9) -> Figure:
    """Largest difference between two hidden units' weights per step (log scale, exact zeros drawn at
    ``floor``) and the loss, for each init: median and range over seeds."""
    fig = Figure(figsize=(11.0, 4.2), layout="constrained")
    ax_w, ax_loss = fig.subplots(1, 2)
    x = np.arange(1, sym.steps + 1)
    for init in sym.spread:
        k = _SYMMETRY_ORDER.index(init)
        color, style = COLORS[k], LINESTYLES[k]
        spread, loss = np.maximum(sym.spread[init], floor), sym.loss[init]
        for ax, values in ((ax_w, spread), (ax_loss, loss)):
            ax.plot(x, np.median(values, axis=0), color=color, linestyle=style, label=init)
            ax.fill_between(x, values.min(axis=0), values.max(axis=0), color=color, alpha=0.18, linewidth=0)
    ax_w.set_yscale("log")
    if any(np.any(v == 0) for v in sym.spread.values()):
        ax_w.set_ylim(floor / 3, None)
        ax_w.axhline(floor, color="0.4", linestyle=":", linewidth=1.2)
        ax_w.annotate("exactly 0", (x[-1], floor), xytext=(0, 4), textcoords="offset points", ha="right",
                      va="bottom", color="0.3")
    ax_w.set_xlabel("gradient-descent step")
    ax_w.set_ylabel(r"max $|w_i - w_0|$ over hidden units")
    ax_w.set_title("are the hidden units still identical?")
    ax_loss.set_xlabel("gradient-descent step")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title("loss")
    ax_loss.legend()
    seeds = len(sym.seeds)
    fig.set_label(f"Left: the largest difference between the incoming weights of two hidden units per step, on a log "
                  f"scale where exactly 0 is drawn on the dotted line at {floor:g}, for each init (median and range "
                  f"over {seeds} seeds). Right: the training loss.")
    return fig


@styled
def plot_bias_profile(bp: BiasProfile) -> Figure:
    """Per-layer std (median and range over seeds, log scale) of a default-initialised ReLU MLP:
    all activations and their input-dependent part with the default biases, and all activations
    with the biases at 0; the mean-field fixed point as a dotted line."""
    fig = Figure(figsize=(8.5, 4.6), layout="constrained")
    ax = fig.subplots()
    x = np.arange(1, bp.total.shape[1] + 1)
    series = (("default biases: all activations", bp.total), ("default biases: the input-dependent part", bp.across),
              ("biases 0: all activations", bp.total_zero_bias))
    for k, (label, values) in enumerate(series):
        ax.plot(x, np.median(values, axis=0), color=COLORS[k], linestyle=LINESTYLES[k], label=label)
        ax.fill_between(x, values.min(axis=0), values.max(axis=0), color=COLORS[k], alpha=0.18, linewidth=0)
    q_star = 2.0 / (5 * bp.width)
    ax.axhline(math.sqrt(q_star * (0.5 - 0.5 / math.pi)), color="0.4", linestyle=(0, (1, 4)), linewidth=1.5,
               label=r"fixed point $\sqrt{q^*(1/2 - 1/2\pi)}$, $q^* = 2/(5n)$")
    ax.set_yscale("log")
    ax.set_xlabel("layer")
    ax.set_ylabel("std")
    ax.legend(loc="lower left", fontsize=12)
    seeds = bp.total.shape[0]
    ax.set_title(f"ReLU MLP of width {bp.width} with nn.Linear's default init ({seeds} seeds)")
    fig.set_label("Per-layer std, log scale, of a ReLU MLP with PyTorch's default init: with the default biases the "
                  "activations settle at the mean-field fixed point while their input-dependent part shrinks about "
                  "sixfold in variance per layer, as all activations do when the biases are 0; median and range over "
                  f"{seeds} seeds.")
    return fig


@styled
def plot_training_stats(training: Training, inits: Sequence[str] = ("pytorch default", "kaiming"),
                        layers: Sequence[int] = (1, 5, 10)) -> Figure:
    """Per step, the std of a few Linear layers' outputs (left) and their update:data ratio (right),
    median and range over seeds, for two inits; the update:data guide at 10⁻³."""
    if training.out_std is None:
        raise ValueError("train_sweep(..., record=True) records these statistics")
    fig = Figure(figsize=(12.0, 4.6), layout="constrained")
    ax_a, ax_u = fig.subplots(1, 2)
    steps = np.arange(1, training.steps + 1)
    k = 0
    for init in inits:
        i = training.inits.index(init)
        for layer in layers:
            color, style = COLORS[k % len(COLORS)], LINESTYLES[k % len(LINESTYLES)]
            label = f"{LABELS[init].split(' (')[0]}, layer {layer}"
            for ax, values in ((ax_a, training.out_std[i, :, :, layer - 1]),
                               (ax_u, training.update_ratio[i, :, :, layer - 1])):
                ax.plot(steps, np.median(values, axis=0), color=color, linestyle=style, label=label)
                ax.fill_between(steps, values.min(axis=0), values.max(axis=0), color=color, alpha=0.15, linewidth=0)
            k += 1
    ax_u.axhline(1e-3, color="0.4", linestyle=(0, (1, 4)), linewidth=1.5, label="update:data = 10⁻³")
    for ax, title in ((ax_a, "std of each layer's output"), (ax_u, "update:data ratio ‖Δw‖/‖w‖")):
        ax.set_yscale("log")
        ax.set_xlabel("SGD step")
        ax.set_title(title)
    ax_u.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=12)
    seeds = training.losses.shape[1]
    fig.suptitle(f"{training.depth}-layer ReLU MLPs during training: median and range over {seeds} seeds")
    fig.set_label(f"Per SGD step, for layers {', '.join(map(str, layers))} of {training.depth}-layer ReLU MLPs with "
                  f"{' and '.join(inits)} init: the std of the layer's output (left) and its update:data ratio "
                  f"(right, guide at 1e-3), log scales, median and range over {seeds} seeds.")
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
                 seeds: Sequence[int] = SEEDS, dpi: int = 80) -> None:
        import ipywidgets as widgets

        self.seeds, self.dpi = tuple(seeds), dpi
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
        with style.course_style():  # ticks and legends are made at draw time too: the whole figure in the style
            self._build_styled_figure()

    def _build_styled_figure(self) -> None:
        fig = Figure(figsize=(12.0, 4.0), dpi=self.dpi, layout="constrained")
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
        self._axes[0].set_title("forward: activations")  # titled before the layout is fixed, so it makes room
        self._axes[1].set_title("backward: gradients")
        self._axes[0].set_ylabel("std of $h_l$")
        self._axes[1].set_ylabel(r"std of $\partial L/\partial h_l$")
        self._axes[0].legend(loc="lower left")
        fig.suptitle("placeholder")
        fig.draw_without_rendering()
        fig.set_layout_engine("none")
        self.figure = fig
        self._canvas = FigureCanvasAgg(fig)

    def _render_png(self) -> bytes:
        with style.course_style():
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
        with style.course_style():
            self.figure.suptitle(f"{LABELS[p.init]}, {p.act}, width {p.width}, depth {p.depth} — "
                                 f"{len(self.seeds)} seeds")
        self.image.value = self._render_png()
        last_a, last_g = np.median(p.act_std[:, -1]), np.median(p.grad_std[:, 0])
        self.last_update_s = time.perf_counter() - started
        self.summary.value = (f"median std at the last layer: activations {last_a:.3g}; gradient at the first "
                              f"layer: {last_g:.3g} (output gradient std 1). Redrawn in {self.last_update_s:.2f} s.")
