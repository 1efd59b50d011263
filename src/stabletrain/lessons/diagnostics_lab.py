r"""Experiments, figures and the explorer widget of lesson ``00_diagnostics``.

The notebook stays prose-first and imports everything heavier from here:

- **Finite differences**: :func:`step_size_errors` measures the error of forward and centred
  differences against the exact derivative for a range of steps :math:`h`, in float64 and float32;
  :func:`plot_step_size` draws it with the two error terms of the derivation.
- **The experiment**: a healthy and a broken tanh MLP (five hidden layers of 64 units, the same
  standard-normal draws scaled two ways) trained on the spiral data set with plain SGD over the
  seeds. :func:`run_experiment` trains all of them at once, as one batch of independent networks
  (:func:`train_batch`), and records what the lesson's diagnostics show: per-layer activation
  statistics and histograms, activation gradients, weight gradients, the grad:data and the
  update:data ratios. The statistics are the ones ``ActivationStats`` records; they are computed
  here for ten networks at once instead of with hooks, one network at a time.
- **Figures**: :func:`plot_activation_histograms`, :func:`plot_gradient_histograms`,
  :func:`plot_weight_gradients`, :func:`plot_update_ratio` (the four diagnostic plots of
  Karpathy's makemore part 3), :func:`plot_heatmap` (fast.ai's "colorful dimension"),
  :func:`plot_loss` and :func:`plot_layer_profile` (the mechanism, layer by layer);
  :class:`DiagnosticsExplorer` is the widget that picks the layer and the step.

Every figure is a detached :class:`matplotlib.figure.Figure`: the notebook shows it by leaving it
as a cell's last expression, and nothing accumulates in pyplot. No answer key is imported here at
module level (a grading kernel imports this module in the notebook's setup cell).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from stabletrain import style
from stabletrain.data import make_spirals
from stabletrain.perturb import jitter_
from stabletrain.style import styled
from stabletrain.threads import single_thread

__all__ = [
    "SEEDS",
    "NETS",
    "LABELS",
    "Config",
    "CONFIG",
    "Diagnostics",
    "single_thread",
    "step_size_errors",
    "plot_step_size",
    "initial_weights",
    "make_model",
    "make_batches",
    "train_batch",
    "run_experiment",
    "loop_numbers",
    "plot_loss",
    "plot_activation_histograms",
    "plot_gradient_histograms",
    "plot_weight_gradients",
    "plot_update_ratio",
    "plot_heatmap",
    "plot_layer_profile",
    "DiagnosticsExplorer",
]

#: the seeds every experiment of the lesson runs over
SEEDS: tuple[int, ...] = (0, 1, 2, 3, 4)
#: the two networks of the experiment, in display order
NETS: tuple[str, ...] = ("healthy", "broken")
LABELS: dict[str, str] = {
    "healthy": "healthy: std = (5/3)/√fan_in",
    "broken": "broken: std = 0.05",
}
#: ln 3: the loss of a 3-class classifier that predicts 1/3 for every class
CHANCE_LOSS = math.log(3.0)
#: the update:data reference line (makemore part 3): updates about 1/1000 of the weights
REFERENCE_LOG10 = -3.0


@dataclass(frozen=True)
class Config:
    """The experiment's settings.

    Both networks are ``2 → 64 → … → 64 → 3`` tanh MLPs with ``depth`` hidden layers and zero
    biases, initialised from the *same* standard-normal draws: the healthy one scales them by
    ``gain/√fan_in`` (Kaiming's gain 5/3 for tanh), the broken one by the fixed ``broken_std``
    (0.05 is Keras' ``RandomNormal`` default), which at width 64 is a gain of 0.4 per layer. Both
    are trained with plain SGD on the spiral data set (3 classes), ``batch`` examples per step.
    Statistics are recorded at every step; histograms every ``record_every`` steps.
    """

    depth: int = 5
    width: int = 64
    n_per_class: int = 200
    batch: int = 64
    steps: int = 400
    lr: float = 0.1
    gain: float = 5.0 / 3.0
    #: the healthy network's output layer is scaled down further (makemore: "less confident"),
    #: so that its loss at init is close to ln 3
    out_scale: float = 0.1
    broken_std: float = 0.05
    record_every: int = 5
    bins: int = 40
    #: log10|gradient| range of the gradient histograms
    log_range: tuple[float, float] = (-10.0, 0.0)


CONFIG = Config()


# ----------------------------------------------------------------------------------------------
# Section 2: the error of finite differences against the step


def _test_function(x: np.ndarray) -> np.ndarray:
    """f(x) = tanh(x)·exp(x/2), a smooth function with no special point (values of order 1)."""
    return np.tanh(x) * np.exp(0.5 * x)


def _test_derivative(x: float) -> float:
    t = math.tanh(x)
    return (1.0 - t * t) * math.exp(0.5 * x) + 0.5 * t * math.exp(0.5 * x)


def step_size_errors(hs: Sequence[float] | None = None, points: int = 16) -> dict[str, np.ndarray]:
    r"""Relative error of forward and centred differences of :math:`f(x) = \tanh(x)\,e^{x/2}` against
    the exact derivative, for every step in ``hs``, in float64 and float32: the median over
    ``points`` points x in [0.2, 1.2] (one point's error curve is jagged where round-off errors
    happen to cancel).

    The differences are taken as a checker would: ``(f(x + h) - f(x - h)) / (2h)`` with ``x + h``
    computed in the dtype. Returns ``{"h": hs, "forward64", "centred64", "forward32",
    "centred32": errors}``. Deterministic: elementwise float arithmetic on fixed inputs.
    """
    hs = np.logspace(-13, -1, 49) if hs is None else np.asarray(hs, dtype=np.float64)
    xs = np.linspace(0.2, 1.2, points)
    exact = np.array([_test_derivative(float(x)) for x in xs])
    out: dict[str, np.ndarray] = {"h": hs}
    for dtype, tag in ((np.float64, "64"), (np.float32, "32")):
        x = xs.astype(dtype)
        fwd, cen = [], []
        for h in hs:
            step = dtype(h)
            plus, minus, here = (_test_function(v).astype(np.float64) for v in (x + step, x - step, x))
            fwd.append(np.median(np.abs((plus - here) / h - exact) / np.abs(exact)))
            cen.append(np.median(np.abs((plus - minus) / (2.0 * h) - exact) / np.abs(exact)))
        out["forward" + tag], out["centred" + tag] = np.array(fwd), np.array(cen)
    return out


@styled
def plot_step_size(errors: dict[str, np.ndarray]) -> Figure:
    """Log-log: relative error of forward and centred differences against the step h, float64
    (solid colours) and float32, with the ideal slopes (h for forward, h² for centred)."""
    fig = Figure(figsize=(9.0, 4.8), layout="constrained")
    ax = fig.subplots()
    h = errors["h"]
    floor = 1e-17
    for i, (key, label) in enumerate((("forward64", "forward, float64"), ("centred64", "centred, float64"),
                                      ("forward32", "forward, float32"), ("centred32", "centred, float32"))):
        ax.loglog(h, np.maximum(errors[key], floor), label=label, **_line(i, marker=False))
    ax.axvline(1e-5, color="0.4", lw=1.2, ls=":")
    ax.text(1.2e-5, 3e-16, "h = 1e-5", color="0.3")
    ax.set_ylim(1e-17, 10.0)
    ax.set_xlabel("step h")
    ax.set_ylabel("relative error of f′")
    ax.set_title("Finite differences: truncation falls with h, round-off grows as 1/h")
    ax.legend(loc="lower left", ncols=2)
    return fig


def _line(i: int, marker: bool = False) -> dict:
    s = style.line_style(i)
    if not marker:
        s.pop("marker")
    return s


# ----------------------------------------------------------------------------------------------
# The experiment: a healthy and a broken tanh MLP, every seed at once


def _dims(cfg: Config) -> list[int]:
    return [2] + [cfg.width] * cfg.depth + [3]


def initial_weights(seeds: Sequence[int], cfg: Config = CONFIG, jitter: float = 0.0) -> list[Tensor]:
    """Weights ``W_l`` of shape ``(2·S, out, in)``: the healthy networks of every seed, then the
    broken ones. Seed ``s`` draws the same standard normals for both (``torch.Generator`` seeded
    with ``s``), scaled by ``gain/√fan_in`` and by ``broken_std``; ``jitter`` (relative, see
    :func:`stabletrain.perturb.jitter_`) moves every initial weight, from a generator of its own."""
    per_seed = []
    for s in seeds:
        g = torch.Generator().manual_seed(int(s))
        per_seed.append([torch.randn(n_out, n_in, generator=g) for n_in, n_out in zip(_dims(cfg)[:-1], _dims(cfg)[1:])])
    weights = []
    last = len(_dims(cfg)) - 2
    for layer, n_in in enumerate(_dims(cfg)[:-1]):
        draws = torch.stack([w[layer] for w in per_seed])
        healthy = cfg.gain / math.sqrt(n_in) * (cfg.out_scale if layer == last else 1.0)
        weights.append(torch.cat([draws * healthy, draws * cfg.broken_std]))
    jitter_(weights, jitter, seed=1000 + int(seeds[0]) if seeds else 0)
    return weights


def _data(seeds: Sequence[int], cfg: Config) -> tuple[Tensor, Tensor, Tensor]:
    """Spirals of every seed ``(S, n, 2)``, labels ``(S, n)``, minibatch indices ``(S, steps, batch)``."""
    xs, ys, idx = [], [], []
    n = 3 * cfg.n_per_class
    for s in seeds:
        x, y = make_spirals(cfg.n_per_class, classes=3, seed=int(s))
        xs.append(x)
        ys.append(y)
        g = torch.Generator().manual_seed(10_000 + int(s))
        idx.append(torch.randint(0, n, (cfg.steps, cfg.batch), generator=g))
    return torch.stack(xs), torch.stack(ys), torch.stack(idx)


@dataclass
class Diagnostics:
    r"""What :func:`train_batch` recorded; the first axis is the network (``"healthy"``,
    ``"broken"``), the second the seed.

    Per step (``steps`` entries):

    - ``loss``: the minibatch loss before the step, ``(2, S, steps)``;
    - ``weight_grad_std``, ``grad_to_data`` (std(∂L/∂W_l)/std(W_l)) and ``log10_update`` (log10 of
      std(ΔW_l)/std(W_l after the step)) of the ``depth + 1`` weight matrices,
      ``(2, S, steps, depth + 1)``.

    Every ``record_every`` steps (``record_steps``, step 0 included), ``(2, S, records, depth)``:
    ``act_mean``, ``act_std``, ``act_saturated`` (|h| > 0.97) of the hidden activations and
    ``act_grad_std``, the std of :math:`\partial L/\partial h_l` (activation gradients); ``act_hist`` (counts over
    ``act_edges`` in [-1, 1]) and ``act_grad_hist`` (counts of log10|∂L/∂h| over ``log_edges``),
    ``(2, S, records, depth, bins)``. At step 0: the values themselves, ``act0``, ``act_grad0``
    ``(2, S, depth, batch·width)`` and ``weight_grad0`` (a list per weight matrix, ``(2, S, numel)``).
    """

    seeds: tuple[int, ...]
    cfg: Config
    loss: np.ndarray
    act_mean: np.ndarray
    act_std: np.ndarray
    act_saturated: np.ndarray
    act_grad_std: np.ndarray
    weight_grad_std: np.ndarray
    grad_to_data: np.ndarray
    log10_update: np.ndarray
    record_steps: np.ndarray
    act_edges: np.ndarray
    log_edges: np.ndarray
    act_hist: np.ndarray
    act_grad_hist: np.ndarray
    act0: np.ndarray
    act_grad0: np.ndarray
    weight_grad0: list
    seconds: float = 0.0

    def net(self, name: str) -> int:
        return NETS.index(name)

    def final_loss(self, name: str, tail: int = 50) -> np.ndarray:
        """Mean minibatch loss over the last ``tail`` steps, one per seed."""
        return self.loss[self.net(name), :, -tail:].mean(axis=1)


def _std(x: Tensor) -> Tensor:
    """Population std over the last dimension (``x.std(dim=-1, correction=0)``, ten times faster on
    a CPU for these shapes)."""
    return (x - x.mean(dim=-1, keepdim=True)).square().mean(dim=-1).sqrt()


def _hist(values: Tensor, low: float, high: float, bins: int) -> Tensor:
    """Counts of every row of ``values`` ``(R, n)`` over ``bins`` equal bins of [low, high]; values
    below or above (``-inf`` included) are left out, ``high`` itself counts in the last bin."""
    rows = values.shape[0]
    scale = bins / (high - low) * (1.0 - 2.0**-20)  # so that `high` lands in the last bin
    # two extra bins collect what is outside, so no mask is needed
    index = ((values - low) * scale).floor_().clamp_(-1, bins).long() + 1
    index += torch.arange(rows).unsqueeze(1) * (bins + 2)
    counts = torch.bincount(index.view(-1), minlength=rows * (bins + 2)).view(rows, bins + 2)
    return counts[:, 1:bins + 1]


def train_batch(seeds: Sequence[int] = SEEDS, cfg: Config = CONFIG, jitter: float = 0.0) -> Diagnostics:
    """Train the healthy and the broken network of every seed at once (``2·S`` independent MLPs
    as one batch of ``bmm``s) with plain SGD, recording the diagnostics (see :class:`Diagnostics`).

    Each network's loss is the mean cross-entropy of its own minibatch; the batch's backward pass
    sums the networks' losses, which leaves each network's gradient its own.
    """
    start = time.perf_counter()
    seeds = tuple(int(s) for s in seeds)
    S, L, B = len(seeds), cfg.depth, cfg.batch
    K = 2 * S
    with single_thread(), torch.no_grad():
        weights = [w.clone() for w in initial_weights(seeds, cfg, jitter)]
        biases = [torch.zeros(K, 1, w.shape[1]) for w in weights]
        x_all, y_all, batches = _data(seeds, cfg)
    params = weights + biases
    for p in params:
        p.requires_grad_(True)
    steps = cfg.steps
    rec = np.arange(0, steps, cfg.record_every)
    bins = cfg.bins
    act_edges = np.linspace(-1.0, 1.0, bins + 1)
    log_edges = np.linspace(*cfg.log_range, bins + 1)
    out = {name: np.zeros((K, len(rec), L)) for name in ("act_mean", "act_std", "act_saturated", "act_grad_std")}
    out.update({name: np.zeros((K, steps, L + 1)) for name in ("weight_grad_std", "grad_to_data", "log10_update")})
    loss_log = np.zeros((K, steps))
    act_hist = np.zeros((K, len(rec), L, bins), dtype=np.int64)
    act_grad_hist = np.zeros((K, len(rec), L, bins), dtype=np.int64)
    act0 = act_grad0 = None
    weight_grad0 = None
    rows = torch.arange(S).repeat(2)  # network k uses seed k mod S's data
    with single_thread():
        for step in range(steps):
            idx = batches[rows, step]  # (K, B)
            xb = x_all[rows.unsqueeze(1), idx]
            yb = y_all[rows.unsqueeze(1), idx]
            h, acts = xb, []
            for layer, (w, b) in enumerate(zip(weights, biases)):
                z = torch.baddbmm(b, h, w.transpose(1, 2))
                if layer < L:
                    h = torch.tanh(z)
                    h.retain_grad()
                    acts.append(h)
            losses = torch.nn.functional.cross_entropy(z.reshape(K * B, -1), yb.reshape(-1),
                                                       reduction="none").view(K, B).mean(dim=1)
            for p in params:
                p.grad = None
            losses.sum().backward()
            with torch.no_grad():
                loss_log[:, step] = losses.numpy()
                if step % cfg.record_every == 0:
                    r = step // cfg.record_every
                    a = torch.stack([t.reshape(K, -1) for t in acts], dim=1)  # (K, L, B*width)
                    ga = torch.stack([t.grad.reshape(K, -1) for t in acts], dim=1)
                    out["act_mean"][:, r] = a.mean(dim=2).numpy()
                    out["act_std"][:, r] = _std(a).numpy()
                    out["act_saturated"][:, r] = (a.abs() > 0.97).float().mean(dim=2).numpy()
                    out["act_grad_std"][:, r] = _std(ga).numpy()
                    act_hist[:, r] = _hist(a.reshape(K * L, -1), -1.0, 1.0, bins).view(K, L, bins).numpy()
                    logs = torch.log10(ga.abs().reshape(K * L, -1))
                    act_grad_hist[:, r] = _hist(logs, *cfg.log_range, bins).view(K, L, bins).numpy()
                before = [w.detach().clone() for w in weights]
                w_std = torch.stack([_std(w.reshape(K, -1)) for w in weights], dim=1)  # (K, L + 1)
                g_std = torch.stack([_std(w.grad.reshape(K, -1)) for w in weights], dim=1)
                out["weight_grad_std"][:, step] = g_std.numpy()
                out["grad_to_data"][:, step] = (g_std / w_std).numpy()
                if step == 0:
                    act0, act_grad0 = a.numpy().copy(), ga.numpy().copy()
                    weight_grad0 = [w.grad.reshape(K, -1).numpy().copy() for w in weights]
                for p in params:  # plain SGD
                    p -= cfg.lr * p.grad
                update = torch.stack([_std((w - w0).reshape(K, -1)) for w, w0 in zip(weights, before)], dim=1)
                after = torch.stack([_std(w.reshape(K, -1)) for w in weights], dim=1)
                out["log10_update"][:, step] = torch.log10(update / after).numpy()

    def split(arr: np.ndarray) -> np.ndarray:  # (K, ...) -> (2, S, ...)
        return arr.reshape(2, S, *arr.shape[1:])

    return Diagnostics(
        seeds=seeds, cfg=cfg, loss=split(loss_log),
        **{name: split(values) for name, values in out.items()},
        record_steps=rec, act_edges=act_edges, log_edges=log_edges,
        act_hist=split(act_hist), act_grad_hist=split(act_grad_hist), act0=split(act0), act_grad0=split(act_grad0),
        weight_grad0=[split(g) for g in weight_grad0], seconds=time.perf_counter() - start,
    )


def make_model(net: str, seed: int = 0, cfg: Config = CONFIG) -> torch.nn.Sequential:
    """The experiment's network ``net`` (``"healthy"`` or ``"broken"``) of ``seed`` as an
    ``nn.Sequential`` of ``Linear`` and ``Tanh`` modules (names ``"0"``, ``"1"``, …), with the very
    weights :func:`train_batch` starts from and zero biases."""
    weights = initial_weights((seed,), cfg)
    k = NETS.index(net)
    layers: list[torch.nn.Module] = []
    with torch.no_grad():
        for i, w in enumerate(weights):
            linear = torch.nn.Linear(w.shape[2], w.shape[1])
            linear.weight.copy_(w[k])
            linear.bias.zero_()
            layers.append(linear)
            if i < len(weights) - 1:
                layers.append(torch.nn.Tanh())
    return torch.nn.Sequential(*layers)


def make_batches(seed: int = 0, steps: int | None = None, cfg: Config = CONFIG) -> list[tuple[Tensor, Tensor]]:
    """The minibatches ``(x, y)`` :func:`train_batch` uses for ``seed``, one per step."""
    x, y, idx = _data((seed,), cfg)
    steps = cfg.steps if steps is None else steps
    return [(x[0, idx[0, t]], y[0, idx[0, t]]) for t in range(steps)]


def loop_numbers(seeds: Sequence[int] = SEEDS, jitter: float = 0.0, steps: int = 150,
                 cfg: Config = CONFIG) -> dict[str, np.ndarray]:
    """What Section 6's cells print, with the reference ``train_and_log`` and ``ActivationStats``,
    for every seed: one Adam step on the broken network (``adam_measured`` and ``adam_shortcut``:
    log10 update:data of hidden weight W3 measured and from lr·grad), and ``steps`` steps of the
    healthy network with SGD, the broken one with SGD and with Adam — for each (key ``"<net>
    <optimizer>"``) the mean loss of the first and the last 10 steps (``first``, ``last``), the
    activation std of hidden layers 1 and 5 at the last step (``std1``, ``std5``) and the median
    log10 update:data of each weight matrix from step 50 on (``ratios``, ``(seeds, 6)``)."""
    from stabletrain.diagnostics import ActivationStats, train_and_log  # the answer key: imported when run

    out: dict[str, list] = {"adam_measured": [], "adam_shortcut": []}
    runs = (("healthy", torch.optim.SGD, cfg.lr), ("broken", torch.optim.SGD, cfg.lr), ("broken", torch.optim.Adam, 1e-3))
    with single_thread():
        for seed in seeds:
            model = make_model("broken", seed, cfg)
            jitter_(list(model.parameters()), jitter, seed=2000 + int(seed))
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
            x, y = make_batches(seed, 1, cfg)[0]
            torch.nn.functional.cross_entropy(model(x), y).backward()
            w = model[4].weight
            before, grad = w.detach().clone(), w.grad.detach().clone()
            optimizer.step()
            out["adam_measured"].append(math.log10(((w.detach() - before).std() / w.detach().std()).item()))
            out["adam_shortcut"].append(math.log10((1e-3 * grad.std() / w.detach().std()).item()))
            batches = make_batches(seed, steps, cfg)
            for net, opt, lr in runs:
                model = make_model(net, seed, cfg)
                jitter_(list(model.parameters()), jitter, seed=2000 + int(seed))
                stats = ActivationStats(model, layer_types=torch.nn.Tanh, keep_histograms=False)
                losses, ratios = train_and_log(model, opt(model.parameters(), lr=lr), torch.nn.functional.cross_entropy,
                                               batches)
                stats.remove()
                key = f"{net} {opt.__name__}"
                for name, value in (("first", np.mean(losses[:10])), ("last", np.mean(losses[-10:])),
                                    ("std1", stats.history["1"][-1].std), ("std5", stats.history["9"][-1].std),
                                    ("ratios", [np.median(v[50:]) for v in ratios.values()])):
                    out.setdefault(f"{key} {name}", []).append(value)
    return {k: np.array(v) for k, v in out.items()}


@functools.lru_cache(maxsize=8)
def run_experiment(seeds: tuple[int, ...] = SEEDS, jitter: float = 0.0, cfg: Config = CONFIG) -> Diagnostics:
    """The lesson's experiment over ``seeds`` (default :data:`SEEDS`), computed once per process."""
    return train_batch(tuple(seeds), cfg, jitter)


# ----------------------------------------------------------------------------------------------
# Figures. Every figure fits a 1280×720 slide at 120 dpi (at most 10.5 × 5.6 inches).

_PANEL = (10.5, 4.6)  # two panels side by side


def _band(ax, x: np.ndarray, rows: np.ndarray, label: str | None, i: int, alpha: float = 0.15) -> None:
    """Median over the seeds (rows) as a line in style ``i``, min–max as a band."""
    med, lo, hi = np.median(rows, axis=0), rows.min(axis=0), rows.max(axis=0)
    s = _line(i)
    ax.plot(x, med, label=label, **s)
    ax.fill_between(x, lo, hi, color=s["color"], alpha=alpha, lw=0)


def _density(counts: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts ``(..., bins)`` as a density over the bins (area 1 per histogram)."""
    total = counts.sum(axis=-1, keepdims=True) * np.diff(edges)
    return np.divide(counts, total, out=np.zeros(counts.shape), where=total > 0)


def _record(d: Diagnostics, step: int) -> int:
    """Index of the recorded step ``step`` (a multiple of ``record_every``)."""
    matches = np.flatnonzero(d.record_steps == step)
    if not matches.size:
        raise ValueError(f"step {step} was not recorded; recorded steps are 0, {d.cfg.record_every}, "
                         f"2·{d.cfg.record_every}, … up to {d.record_steps[-1]}")
    return int(matches[0])


def _two_panels(sharex: bool = True, sharey: bool = False, figsize: tuple[float, float] = _PANEL):
    fig = Figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(1, 2, sharex=sharex, sharey=sharey)
    for ax, net in zip(axes, NETS):
        ax.set_title(LABELS[net])
    return fig, axes


@styled
def plot_loss(d: Diagnostics) -> Figure:
    """Minibatch loss over the steps, median (line) and range (band) over the seeds, for both
    networks, with ln 3 (a classifier that has learned nothing) as a dotted line."""
    fig = Figure(figsize=(8.5, 4.4), layout="constrained")
    ax = fig.subplots()
    steps = np.arange(d.cfg.steps)
    for i, net in enumerate(NETS):
        _band(ax, steps, d.loss[d.net(net)], LABELS[net], i)
    ax.axhline(CHANCE_LOSS, color="0.4", lw=1.2, ls=(0, (1, 2)))
    ax.annotate("ln 3: nothing learned", (0.99, CHANCE_LOSS), xycoords=("axes fraction", "data"), ha="right",
                va="bottom", color="0.3")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("minibatch loss")
    ax.set_title(f"Training loss: median and range over {len(d.seeds)} seeds")
    ax.legend(loc="lower left")
    return fig


@styled
def plot_activation_histograms(d: Diagnostics, step: int = 0) -> Figure:
    """Histograms of each hidden layer's tanh outputs at ``step``, both networks: the median density
    over the seeds per layer; the legend gives the layer's std and % saturated (|h| > 0.97)."""
    r = _record(d, step)
    fig, axes = _two_panels(sharex=True)
    centres = (d.act_edges[:-1] + d.act_edges[1:]) / 2
    for ax, net in zip(axes, NETS):
        k = d.net(net)
        dens = _density(d.act_hist[k, :, r], d.act_edges)  # (S, layers, bins)
        for layer in range(d.cfg.depth):
            ax.plot(centres, np.median(dens[:, layer], axis=0), label=f"layer {layer + 1}", **_line(layer))
        ax.set_xlabel("activation h = tanh(z)")
        ax.set_ylim(0, None)
    axes[0].set_ylabel("density (median over seeds)")
    axes[1].legend(loc="upper right")
    fig.suptitle(f"Activations per layer at step {step}")
    return fig


@styled
def plot_gradient_histograms(d: Diagnostics, step: int = 0) -> Figure:
    r"""Histograms of :math:`\log_{10}|\partial L/\partial h_l|`, the activation gradients of each hidden
    layer at ``step``, both networks on one axis (median over the seeds); legend: their std."""
    r = _record(d, step)
    fig, axes = _two_panels(sharex=True, sharey=True)
    centres = (d.log_edges[:-1] + d.log_edges[1:]) / 2
    for ax, net in zip(axes, NETS):
        k = d.net(net)
        dens = _density(d.act_grad_hist[k, :, r], d.log_edges)
        for layer in range(d.cfg.depth):
            ax.plot(centres, np.median(dens[:, layer], axis=0), label=f"layer {layer + 1}", **_line(layer))
        ax.set_xlabel(r"$\log_{10}\,|\partial L/\partial h|$")
    axes[0].set_ylabel("density (median over seeds)")
    axes[0].legend(loc="upper left")
    axes[0].set_xlim(-8, -1)
    fig.suptitle(f"Activation gradients per layer at step {step}")
    return fig


@styled
def plot_weight_gradients(d: Diagnostics) -> Figure:
    r"""Histograms of :math:`\log_{10}|\partial L/\partial W_l|` of every weight matrix at step 0, both
    networks on one axis (all seeds pooled); legend: the grad:data ratio std(∂L/∂W)/std(W), median
    over the seeds."""
    fig, axes = _two_panels(sharex=True, sharey=True)
    logs_all = [np.log10(np.abs(g[g != 0])) for g in d.weight_grad0]
    low = math.floor(min(np.quantile(v, 0.001) for v in logs_all))
    high = math.ceil(max(v.max() for v in logs_all))  # every value is drawn: no ceiling
    edges = np.linspace(low, high, 4 * (high - low) + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    n = len(d.weight_grad0)
    for ax, net in zip(axes, NETS):
        k = d.net(net)
        for layer, g in enumerate(d.weight_grad0):
            logs = np.log10(np.abs(g[k]).ravel(), where=g[k].ravel() != 0, out=np.full(g[k].size, -np.inf))
            counts, _ = np.histogram(logs, bins=edges)
            ratio = np.median(d.grad_to_data[k, :, 0, layer])
            name = f"W{layer + 1}" + (" (output)" if layer == n - 1 else "")
            ax.plot(centres, _density(counts, edges), label=f"{name}: {ratio:.1e}", **_line(layer))
        ax.set_xlabel(r"$\log_{10}\,|\partial L/\partial W|$")
        ax.legend(loc="upper left", title="grad:data ratio", handlelength=2.6)
    axes[0].set_ylabel("density")
    fig.suptitle("Weight gradients at step 0")
    return fig


@styled
def plot_update_ratio(d: Diagnostics, smooth: int = 10) -> Figure:
    r"""log10 of std(ΔW_l)/std(W_l) per weight matrix over the steps, both networks: median (line) and
    range (band) over the seeds of a ``smooth``-step running mean; the dashed line is makemore's
    reference, −3."""
    fig, axes = _two_panels(sharex=True, sharey=True)
    n = d.log10_update.shape[-1]
    kernel = np.ones(smooth) / smooth
    for ax, net in zip(axes, NETS):
        k = d.net(net)
        for layer in range(n):
            rows = np.array([np.convolve(v, kernel, mode="valid") for v in d.log10_update[k, :, :, layer]])
            steps = np.arange(rows.shape[1]) + (smooth - 1) / 2
            name = f"W{layer + 1}" + (" (output)" if layer == n - 1 else "")
            _band(ax, steps, rows, name, layer, alpha=0.12)
        ax.axhline(REFERENCE_LOG10, color="0.2", lw=1.5, ls=(0, (6, 3)))
        ax.set_xlabel("step")
    axes[0].set_ylabel("log10 update:data")
    axes[0].annotate("−3", (0.01, REFERENCE_LOG10), xycoords=("axes fraction", "data"), va="bottom", color="0.2")
    axes[1].legend(loc="upper right", ncols=2)
    fig.suptitle(f"Update:data ratio over training ({smooth}-step running mean; median and range over "
                 f"{len(d.seeds)} seeds)")
    return fig


def _heat(counts: np.ndarray) -> np.ndarray:
    """Image of histograms over time: rows are bins, columns are recorded steps; log(1 + count)."""
    return np.log1p(counts.T)


@styled
def plot_heatmap(d: Diagnostics, seed_index: int = 0) -> Figure:
    """fast.ai's "colorful dimension": for one seed, each hidden layer's activation histogram
    (vertical axis: h from −1 to 1; colour: log(1 + count)) at every recorded step (horizontal
    axis), healthy network on top, broken network below."""
    L = d.cfg.depth
    fig = Figure(figsize=(10.5, 5.2), layout="constrained")
    axes = fig.subplots(2, L, sharex=True, sharey=True)
    extent = (0, d.cfg.steps, d.act_edges[0], d.act_edges[-1])
    for row, net in enumerate(NETS):
        k = d.net(net)
        for layer in range(L):
            ax = axes[row, layer]
            ax.imshow(_heat(d.act_hist[k, seed_index, :, layer]), origin="lower", aspect="auto",
                      interpolation="nearest", extent=extent, cmap="viridis")
            ax.grid(False)
            if row == 0:
                ax.set_title(f"layer {layer + 1}")
            if row == 1:
                ax.set_xlabel("step")
                ax.set_xticks([0, d.cfg.steps // 2])
        axes[row, 0].set_ylabel(f"{net}\nh")
    fig.suptitle(f"Activation histograms over training (seed {d.seeds[seed_index]}; brighter = more units)")
    return fig


@styled
def plot_layer_profile(d: Diagnostics, step: int = 0) -> Figure:
    r"""The mechanism, layer by layer at ``step``: the std of the activations :math:`h_l`, of the
    activation gradients :math:`\partial L/\partial h_l` and of the weight gradients
    :math:`\partial L/\partial W_l` (hidden layers), median (markers) and range (bars) over the seeds."""
    r = _record(d, step)
    fig, axes = _two_panels(sharex=True, sharey=True)
    layers = np.arange(1, d.cfg.depth + 1)
    series = (("activations h", d.act_std[:, :, r]), ("activation gradients ∂L/∂h", d.act_grad_std[:, :, r]),
              ("weight gradients ∂L/∂W", d.weight_grad_std[:, :, step, : d.cfg.depth]))
    for ax, net in zip(axes, NETS):
        k = d.net(net)
        for i, (label, values) in enumerate(series):
            rows = values[k]
            med = np.median(rows, axis=0)
            s = style.line_style(i)
            ax.errorbar(layers, med, yerr=[med - rows.min(axis=0), rows.max(axis=0) - med], capsize=4, ms=7,
                        label=label, **s)
        ax.set_yscale("log")
        ax.set_xticks(layers)
        ax.set_xlabel("hidden layer")
    axes[0].set_ylabel("std (median, range over seeds)")
    axes[0].legend(loc="lower left")
    fig.suptitle(f"Forward signal, backward signal and weight gradients per layer at step {step}")
    return fig


# ----------------------------------------------------------------------------------------------
# The explorer


class DiagnosticsExplorer:
    """An ipywidgets explorer over a trained :class:`Diagnostics`: pick a hidden layer and a step
(one every ``every`` steps).

    Top row: the layer's activation histograms over training (the heat map of
    :func:`plot_heatmap`, median counts over the seeds), healthy and broken, with a line at the
    chosen step. Bottom row, at that step: the activation histogram and the histogram of
    log10|∂L/∂h| (the activation gradients) of both networks. Below the picture, the numbers of
    that layer and step. Every update only redraws (the figure is laid out once, drawn with Agg and
    encoded as PNG into an ``ipywidgets.Image``): about 0.1 s, stored in ``last_update_s``.
    """

    #: two rows of panels make the figure tall; a slide shows it ~430 px high, so a 5.6 in figure is
    #: drawn at 77 px per inch there and its text needs 16 pt to be 12 pt (16 px) on the screen
    FONT_SCALE = 4 / 3

    def __init__(self, d: Diagnostics, layer: int = 1, step: int = 0, every: int = 20, dpi: int = 72) -> None:
        import ipywidgets as widgets

        if every % d.cfg.record_every:
            raise ValueError(f"every must be a multiple of record_every = {d.cfg.record_every}, got {every}")
        self.d = d
        self.dpi = dpi
        wstyle = {"description_width": "initial"}
        self.layer = widgets.Dropdown(options=[(f"layer {i}", i) for i in range(1, d.cfg.depth + 1)], value=layer,
                                      description="hidden layer", style=wstyle, layout={"width": "220px"})
        # every `every` steps: 5 layers x 20 steps = 100 settings, which a slide deck draws in advance
        steps = d.record_steps[:: every // d.cfg.record_every]
        self.step = widgets.SelectionSlider(options=[(str(int(s)), int(s)) for s in steps], value=step,
                                            description="step", continuous_update=True, style=wstyle,
                                            layout={"width": "480px"})
        self.image = widgets.Image(format="png")
        self.summary = widgets.HTML()
        self.widget = widgets.VBox([widgets.HBox([self.layer, self.step]), self.image, self.summary])
        self.last_update_s = math.nan
        # medians over the seeds, computed once
        self._heat = np.median(d.act_hist, axis=1)  # (2, records, layers, bins)
        self._act = np.median(_density(d.act_hist, d.act_edges), axis=1)
        self._grad = np.median(_density(d.act_grad_hist, d.log_edges), axis=1)
        with style.course_style(self.FONT_SCALE):
            self._build_figure()
        for control in (self.layer, self.step):
            control.observe(lambda _change: self.update(), names="value")
        self.update()

    def _build_figure(self) -> None:
        d = self.d
        fig = Figure(figsize=(9.6, 5.6), dpi=self.dpi, layout="constrained")
        fig.get_layout_engine().set(w_pad=0.12, h_pad=0.06)  # room for the last tick label at the edge
        axes = fig.subplots(2, 2)
        extent = (0, d.cfg.steps, d.act_edges[0], d.act_edges[-1])
        self._images, self._markers = [], []
        for ax, net in zip(axes[0], NETS):
            image = ax.imshow(_heat(self._heat[d.net(net), :, 0]), origin="lower", aspect="auto",
                              interpolation="nearest", extent=extent, cmap="viridis")
            self._images.append(image)
            self._markers.append(ax.axvline(0, color="white", lw=2.0, ls="--"))
            ax.grid(False)
            ax.set_title(LABELS[net])
            ax.set_xlabel("step")
            ax.set_ylabel("h")
        centres = (d.act_edges[:-1] + d.act_edges[1:]) / 2
        log_centres = (d.log_edges[:-1] + d.log_edges[1:]) / 2
        self._act_lines, self._grad_lines = [], []
        ax_act, ax_grad = axes[1]
        for i, net in enumerate(NETS):
            (line,) = ax_act.plot(centres, np.full_like(centres, 1e-4), label=net, **_line(i))
            self._act_lines.append(line)
            (line,) = ax_grad.plot(log_centres, np.zeros_like(log_centres), label=net, **_line(i))
            self._grad_lines.append(line)
        ax_act.set_yscale("log")
        ax_act.set_ylim(1e-3, 60 * float(self._act.max()))  # headroom on the log axis for the legend
        ax_act.set_xlabel("activation h")
        ax_act.set_ylabel("density")
        ax_act.set_title("activations h")
        ax_act.legend(loc="upper left")
        ax_grad.set_ylim(0, 1.4 * float(self._grad.max()))
        ax_grad.set_xlim(-8, -1)
        ax_grad.set_xlabel(r"$\log_{10}\,|\partial L/\partial h|$")
        ax_grad.set_ylabel("density")
        ax_grad.set_title("activation gradients")
        ax_grad.legend(loc="upper right")
        fig.suptitle("placeholder")
        fig.draw_without_rendering()  # lay out once; redraws skip the layout
        fig.set_layout_engine("none")
        self.figure = fig
        self._canvas = FigureCanvasAgg(fig)

    def update(self) -> float:
        """Redraw for the current controls; return (and store in ``last_update_s``) the seconds it took."""
        start = time.perf_counter()
        d = self.d
        layer, step = self.layer.value - 1, self.step.value
        r = _record(d, step)
        for k, net in enumerate(NETS):
            self._images[k].set_data(_heat(self._heat[d.net(net), :, layer]))
            self._images[k].autoscale()
            self._markers[k].set_xdata([step, step])
            self._act_lines[k].set_ydata(np.maximum(self._act[d.net(net), r, layer], 1e-4))
            self._grad_lines[k].set_ydata(self._grad[d.net(net), r, layer])
        with style.course_style(self.FONT_SCALE):  # the title and the ticks made at draw time take the style too
            self.figure.suptitle(f"Hidden layer {layer + 1} at step {step} (median over {len(d.seeds)} seeds)")
            self.image.value = style.canvas_png(self._canvas)
        rows = []
        for net in NETS:
            k = d.net(net)
            rows.append(
                f"<b>{net}</b>: activation std {np.median(d.act_std[k, :, r, layer]):.3g}, saturated "
                f"{np.median(d.act_saturated[k, :, r, layer]):.0%}; activation-gradient std "
                f"{np.median(d.act_grad_std[k, :, r, layer]):.2e}; log10 update:data of W{layer + 1} "
                f"{np.median(d.log10_update[k, :, step, layer]):.2f}")
        self.summary.value = " &nbsp;|&nbsp; ".join(rows)
        self.last_update_s = time.perf_counter() - start
        return self.last_update_s
