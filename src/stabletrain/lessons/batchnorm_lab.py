r"""Experiments, figures and the explorer widget of lesson ``05_batch_norm``.

Every experiment trains many small networks at once — a batch of independent models stacked along
a leading "run" dimension and multiplied with ``torch.bmm`` — so that five seeds of every setting
cost about as much as one loop of a bigger model:

- **Standardizing the inputs**: :func:`standardization_experiment` runs gradient descent on a
  linear regression whose raw features differ in scale by three orders of magnitude, raw against
  standardized (:func:`plot_standardization`).
- **Depth × weight scale × learning rate**: :func:`sweep_experiment` trains a deep ReLU MLP with and
  without batch norm on every (weight scale, learning rate) cell of a grid over five seeds
  (:func:`plot_sweep_heatmaps`: the median final loss).
- **Batch size**: :func:`batch_size_experiment` trains the same BN network at batch sizes 2 to 64
  and measures the loss in training mode and in evaluation mode on the same data
  (:func:`plot_batch_size`), with the network without BN as the control.
- **Gradient norm per layer**: :func:`gradient_norm_experiment` measures ‖∂L/∂W_l‖ of every layer
  of a 20-layer network at initialization, with and without BN, at two weight scales
  (:func:`plot_gradient_norms`).
- **The widget**: :class:`BatchNormExplorer` shows one batch flowing through batch norm.

The batched models use the same formulas as the course's ``BatchNorm1d`` (biased batch variance in
the output; in evaluation, running statistics); a test checks a batched run against a plain
``torch.nn`` model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from torch import Tensor

from stabletrain import style
from stabletrain.data import make_regression, make_spirals
from stabletrain.perturb import jitter_
from stabletrain.style import COLORS, LINESTYLES, course_style, styled
from stabletrain.threads import single_thread

__all__ = [
    "SEEDS",
    "single_thread",
    "time_call",
    "StandardizationResult",
    "standardization_experiment",
    "plot_standardization",
    "BatchedMLP",
    "SweepResult",
    "sweep_experiment",
    "plot_sweep_heatmaps",
    "BatchSizeResult",
    "batch_size_experiment",
    "plot_batch_size",
    "GradNormResult",
    "gradient_norm_experiment",
    "plot_gradient_norms",
    "WeightNormResult",
    "weight_norm_experiment",
    "plot_weight_norms",
    "ResidualStreamResult",
    "residual_stream_experiment",
    "plot_residual_stream",
    "BatchNormExplorer",
    "explorer_figure",
]

#: every experiment runs over these seeds
SEEDS: tuple[int, ...] = (0, 1, 2, 3, 4)
EPS = 1e-5
CHANCE_LOSS = math.log(3.0)  # cross-entropy of a uniform guess over the 3 spiral classes


def time_call(fn, *args, repeat: int = 5, number: int = 10) -> float:
    """The best of ``repeat`` timings of ``number`` calls of ``fn(*args)``, in seconds per call."""
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn(*args)
        best = min(best, (time.perf_counter() - start) / number)
    return best


def _median_range(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.median(values, axis=axis), values.min(axis=axis), values.max(axis=axis)


# ----------------------------------------------------------------------------------------------
# 1. Standardizing the inputs


@dataclass
class StandardizationResult:
    """Gradient descent on least squares, raw vs standardized features, one row per seed."""

    steps: int
    raw: np.ndarray  # (seeds, steps + 1) excess loss L(w_t) - L(w*) over the optimum
    standardized: np.ndarray  # (seeds, steps + 1)
    condition_raw: np.ndarray  # (seeds,) condition number of X^T X / n
    condition_standardized: np.ndarray  # (seeds,)


def _gd_excess_loss(x: Tensor, y: Tensor, steps: int, jitter: float = 0.0) -> tuple[np.ndarray, float]:
    """Excess loss of gradient descent on 0.5·mean((Xw + b - y)²) at the step 1/λ_max (half the largest
    stable step 2/λ_max: the fastest direction is solved in one step, none oscillates)."""
    n = x.shape[0]
    a = torch.cat([x, torch.ones(n, 1, dtype=x.dtype)], dim=1)
    h = a.T @ a / n
    evals = torch.linalg.eigvalsh(h)
    lr = 1.0 / evals[-1].item()
    w_star = torch.linalg.lstsq(a, y).solution
    best = 0.5 * ((a @ w_star - y) ** 2).mean().item()
    w = torch.zeros(a.shape[1], 1, dtype=x.dtype)
    jitter_(w, jitter)
    losses = np.empty(steps + 1)
    for t in range(steps + 1):
        r = a @ w - y
        losses[t] = 0.5 * (r**2).mean().item() - best
        w = w - lr * (a.T @ r / n)
    return np.maximum(losses, 0.0), (evals[-1] / evals[0]).item()


@cache
def standardization_experiment(steps: int = 200, n: int = 256, d: int = 8, seeds: tuple[int, ...] = SEEDS,
                               jitter: float = 0.0) -> StandardizationResult:
    """Features scaled from 1 to 1000 and offset by 50 (``make_regression``), raw vs standardized.

    Gradient descent starts from w = 0, float64; ``jitter`` (the claims tests' perturbation of the
    initial weights) multiplies zeros and so changes nothing: it is accepted for the common interface."""
    raw, std, c_raw, c_std = [], [], [], []
    for seed in seeds:
        x, y = make_regression(n, d, noise=0.1, seed=seed, scale_spread=1e3, offset=50.0)
        x, y = x.double(), y.double()
        z = (x - x.mean(0)) / x.std(0, correction=0)
        losses, cond = _gd_excess_loss(x, y, steps, jitter)
        raw.append(losses)
        c_raw.append(cond)
        losses, cond = _gd_excess_loss(z, y, steps, jitter)
        std.append(losses)
        c_std.append(cond)
    return StandardizationResult(steps, np.array(raw), np.array(std), np.array(c_raw), np.array(c_std))


@styled
def plot_standardization(result: StandardizationResult) -> Figure:
    fig = Figure(figsize=(8.5, 4.2), layout="constrained")
    ax = fig.subplots()
    t = np.arange(result.steps + 1)
    floor = 1e-12
    for i, (label, values) in enumerate((("raw features (scales 1 … 1000, offset 50)", result.raw),
                                         ("standardized with training statistics", result.standardized))):
        med, lo, hi = _median_range(np.maximum(values, floor))
        ax.plot(t, med, color=COLORS[i + 1 if i else 0], ls=LINESTYLES[i], label=label)
        ax.fill_between(t, lo, hi, color=COLORS[i + 1 if i else 0], alpha=0.2)
    ax.set_yscale("log")
    ax.set_ylim(floor / 2, None)
    ax.set_xlabel("gradient-descent step (step size 1/λ_max)")
    ax.set_ylabel("loss − optimum")
    ax.set_title(f"Linear regression, {len(result.raw)} seeds: median and range")
    ax.text(0.99, 0.02, f"values below {floor:g} drawn at {floor:g}", transform=ax.transAxes, ha="right",
            va="bottom", fontsize=12)
    ax.legend(loc="center right")
    fig.set_label("Excess loss of gradient descent against step on a log scale: raw features barely improve, "
                  "standardized features converge to the optimum within a few dozen steps.")
    return fig


# ----------------------------------------------------------------------------------------------
# A batch of independent MLPs


class BatchedMLP:
    r"""``runs`` independent ReLU MLPs ``in -> width (x depth) -> out``, optionally with batch norm
    after every hidden Linear (Linear -> BN -> ReLU), as stacked tensors of shape ``(runs, ...)``.

    Weights are :math:`\mathcal N(0, s^2 \cdot 2/\text{fan\_in})` (Kaiming's ReLU init times a
    weight scale ``s``, one per run); biases, β zero; γ one. ``jitter`` multiplies every initial
    weight by ``1 + jitter·ε`` (:func:`stabletrain.perturb.jitter_`, its own generator, so the
    data and minibatches stay the same). ``forward`` takes ``(runs, batch, in)`` and returns
    ``(runs, batch, out)``; in ``training`` mode BN uses each run's batch statistics and updates its
    running statistics (momentum 0.1, unbiased variance), in evaluation the running ones.
    """

    def __init__(self, runs: int, depth: int, width: int, d_in: int, d_out: int, bn: bool,
                 scales: Tensor, seeds: Sequence[int], dtype: torch.dtype = torch.float32, jitter: float = 0.0
                 ) -> None:
        self.bn, self.depth = bn, depth
        sizes = [d_in] + [width] * depth + [d_out]
        self.weights: list[Tensor] = []
        self.biases: list[Tensor] = []
        per_run = [torch.Generator().manual_seed(int(s)) for s in seeds]
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            w = torch.stack([torch.randn(fan_in, fan_out, generator=g, dtype=dtype) for g in per_run])
            w *= (scales.to(dtype) * math.sqrt(2.0 / fan_in)).view(runs, 1, 1)
            jitter_(w, jitter, seed=len(self.weights))
            self.weights.append(w.requires_grad_())
            self.biases.append(torch.zeros(runs, 1, fan_out, dtype=dtype, requires_grad=True))
        self.gammas = [torch.ones(runs, 1, width, dtype=dtype, requires_grad=True) for _ in range(depth)] if bn else []
        self.betas = [torch.zeros(runs, 1, width, dtype=dtype, requires_grad=True) for _ in range(depth)] if bn else []
        self.running_mean = [torch.zeros(runs, 1, width, dtype=dtype) for _ in range(depth)]
        self.running_var = [torch.ones(runs, 1, width, dtype=dtype) for _ in range(depth)]
        self.training = True
        self.momentum = 0.1  # weight of the new batch in the running statistics

    def parameters(self) -> list[Tensor]:
        return self.weights + self.biases + self.gammas + self.betas

    @torch.no_grad()
    def recalibrate(self, x: Tensor) -> None:
        """Replace the running statistics by those of ``x`` (``(runs, n, in)``, e.g. the whole training
        set): one training-mode pass with momentum 1, as ``torch.optim.swa_utils.update_bn`` does with
        ``momentum=None`` over a single batch. Leaves the model in evaluation mode."""
        self.training, momentum, self.momentum = True, self.momentum, 1.0
        self.forward(x)
        self.training, self.momentum = False, momentum

    def forward(self, x: Tensor, update: bool = True) -> Tensor:
        h = x
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)
            if i == self.depth:
                break
            if self.bn:
                if self.training:
                    var, mean = torch.var_mean(h, dim=1, keepdim=True, correction=0)
                    if update:
                        m = h.shape[1]
                        with torch.no_grad():
                            self.running_mean[i].lerp_(mean, self.momentum)
                            self.running_var[i].lerp_(var * m / (m - 1), self.momentum)
                else:
                    mean, var = self.running_mean[i], self.running_var[i]
                h = (h - mean) * torch.rsqrt(var + EPS) * self.gammas[i] + self.betas[i]
            h = torch.relu(h)
        return h


def _cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Per-run mean cross-entropy: logits ``(runs, batch, classes)``, labels ``(runs, batch)``."""
    logp = torch.log_softmax(logits, dim=-1)
    return -logp.gather(-1, labels.unsqueeze(-1)).squeeze(-1).mean(dim=1)


def _spirals(n_per_class: int = 100, seed: int = 0) -> tuple[Tensor, Tensor]:
    x, y = make_spirals(n_per_class, classes=3, seed=seed)
    return x, y


def _sgd_step(params: list[Tensor], lrs: Tensor) -> None:
    with torch.no_grad():
        for p in params:
            p -= lrs.view(-1, *([1] * (p.dim() - 1))) * torch.nan_to_num(p.grad, nan=0.0, posinf=0.0, neginf=0.0)
            p.grad = None


# ----------------------------------------------------------------------------------------------
# 2. The sweep: weight scale x learning rate, with and without BN


@dataclass
class SweepResult:
    """Final training loss (mean of the last ``tail`` minibatch losses), inf where a run diverged."""

    scales: tuple[float, ...]
    lrs: tuple[float, ...]
    depth: int
    steps: int
    final: dict[str, np.ndarray]  # "plain" / "bn" -> (seeds, scales, lrs)
    seconds: float = 0.0

    def median(self, kind: str) -> np.ndarray:
        return np.median(self.final[kind], axis=0)

    def trains(self, kind: str, threshold: float) -> np.ndarray:
        """(scales, lrs) booleans: every seed reached a final loss below ``threshold``."""
        return np.all(self.final[kind] < threshold, axis=0)


@cache
def sweep_experiment(scales: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0),
                     lrs: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0), depth: int = 8, width: int = 24,
                     steps: int = 100, batch: int = 32, tail: int = 10, seeds: tuple[int, ...] = SEEDS,
                     jitter: float = 0.0) -> SweepResult:
    """Train a ``depth``-hidden-layer ReLU MLP on 3-class spirals for every seed × scale × lr, with
    and without BN: 2 × 125 models trained at once. Each seed has its own initialization and its
    own minibatch order, shared by every setting."""
    start = time.perf_counter()
    x, y = _spirals()
    grid = [(s, sc, lr) for s in seeds for sc in scales for lr in lrs]
    runs = len(grid)
    scale_t = torch.tensor([g[1] for g in grid])
    lr_t = torch.tensor([g[2] for g in grid])
    seed_of_run = [g[0] for g in grid]
    batches = torch.stack([torch.stack([torch.randint(0, len(x), (batch,), generator=torch.Generator().manual_seed(
        1000 + s + 7919 * t)) for t in range(steps)]) for s in seeds])  # (seeds, steps, batch)
    seed_index = torch.tensor([seeds.index(s) for s in seed_of_run])
    final = {}
    with single_thread():
        for kind in ("plain", "bn"):
            model = BatchedMLP(runs, depth, width, 2, 3, kind == "bn", scale_t, seed_of_run, jitter=jitter)
            losses = torch.zeros(steps, runs)
            for t in range(steps):
                idx = batches[seed_index, t]  # (runs, batch)
                loss = _cross_entropy(model.forward(x[idx]), y[idx])
                loss.sum().backward()
                _sgd_step(model.parameters(), lr_t)
                losses[t] = loss.detach()
            tail_loss = losses[-tail:].mean(0)
            tail_loss = torch.where(torch.isfinite(tail_loss), tail_loss, torch.full_like(tail_loss, math.inf))
            final[kind] = tail_loss.numpy().astype(np.float64).reshape(len(seeds), len(scales), len(lrs))
    return SweepResult(tuple(scales), tuple(lrs), depth, steps, final, time.perf_counter() - start)


_LOSS_CAP = 1.5


@styled
def plot_sweep_heatmaps(result: SweepResult) -> Figure:
    fig = Figure(figsize=(11.5, 4.8), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    norm = Normalize(0.0, _LOSS_CAP)
    for ax, kind, title in zip(axes, ("plain", "bn"), ("without batch norm", "with batch norm")):
        med = result.median(kind)
        shown = np.minimum(med, _LOSS_CAP)
        image = ax.imshow(shown, origin="lower", cmap="viridis_r", norm=norm, aspect="auto")
        for i in range(len(result.scales)):
            for j in range(len(result.lrs)):
                value = med[i, j]
                text = "div." if not np.isfinite(value) else (f"≥{_LOSS_CAP:g}" if value >= _LOSS_CAP else f"{value:.2f}")
                ax.text(j, i, text, ha="center", va="center", fontsize=12,
                        color="white" if shown[i, j] < 0.6 * _LOSS_CAP else "black")
        ax.set_xticks(range(len(result.lrs)), [f"{v:g}" for v in result.lrs])
        ax.set_yticks(range(len(result.scales)), [f"{v:g}" for v in result.scales])
        ax.set_xlabel("learning rate")
        ax.set_title(title)
        ax.grid(False)
    axes[0].set_ylabel("weight scale × Kaiming std")
    bar = fig.colorbar(image, ax=axes, shrink=0.9)
    bar.set_label(f"median final loss (capped at {_LOSS_CAP:g})")
    fig.suptitle(f"{result.depth}-layer ReLU MLP, {result.steps} SGD steps, median of "
                 f"{result.final['bn'].shape[0]} seeds; chance = ln 3 ≈ {CHANCE_LOSS:.2f}; div. = diverged")
    fig.set_label("Two heat maps of the median final loss over weight scale (rows) and learning rate (columns). "
                  "Without batch norm only a narrow band trains; with batch norm most cells train. Values "
                  f"above {_LOSS_CAP:g} are shown at the cap and labelled.")
    return fig


# ----------------------------------------------------------------------------------------------
# 3. Batch size and the train/eval gap


@dataclass
class BatchSizeResult:
    batch_sizes: tuple[int, ...]
    steps: int
    train_mode: dict[str, np.ndarray]  # kind -> (seeds, sizes): loss on the training set in training mode
    eval_mode: dict[str, np.ndarray]  # kind -> (seeds, sizes): loss on the training set in eval mode
    test_accuracy: dict[str, np.ndarray]  # kind -> (seeds, sizes), evaluation mode
    disagreement: dict[str, np.ndarray]  # kind -> (seeds, sizes): share of training points whose predicted
    #                                      class differs between training mode and evaluation mode
    recalibrated_accuracy: np.ndarray  # (seeds, sizes): BN test accuracy with the running statistics replaced by
    #                                    the statistics of the whole training set (after training)

    def gap(self, kind: str = "bn") -> np.ndarray:
        """eval-mode loss − training-mode loss, (seeds, sizes)."""
        return self.eval_mode[kind] - self.train_mode[kind]


@cache
def batch_size_experiment(batch_sizes: tuple[int, ...] = (2, 4, 8, 16, 32, 64), steps: int = 400, depth: int = 3,
                          width: int = 32, lr: float = 0.05, seeds: tuple[int, ...] = SEEDS,
                          jitter: float = 0.0) -> BatchSizeResult:
    """Train the BN network and its plain control at each batch size (same steps and learning rate),
    then measure the loss on the training set in training mode (batch statistics, in batches of the
    training batch size) and in evaluation mode (running statistics)."""
    x, y = _spirals()
    x_test, y_test = _spirals(seed=99)
    runs = len(seeds)
    train_mode = {k: np.zeros((runs, len(batch_sizes))) for k in ("plain", "bn")}
    eval_mode = {k: np.zeros((runs, len(batch_sizes))) for k in ("plain", "bn")}
    accuracy = {k: np.zeros((runs, len(batch_sizes))) for k in ("plain", "bn")}
    disagreement = {k: np.zeros((runs, len(batch_sizes))) for k in ("plain", "bn")}
    recalibrated = np.zeros((runs, len(batch_sizes)))
    lrs = torch.full((runs,), lr)
    with single_thread():
        for j, b in enumerate(batch_sizes):
            for kind in ("plain", "bn"):
                gens = [torch.Generator().manual_seed(500 + s) for s in seeds]  # same minibatches for both kinds
                model = BatchedMLP(runs, depth, width, 2, 3, kind == "bn", torch.ones(runs), seeds, jitter=jitter)
                for _ in range(steps):
                    idx = torch.stack([torch.randint(0, len(x), (b,), generator=g) for g in gens])
                    _cross_entropy(model.forward(x[idx]), y[idx]).sum().backward()
                    _sgd_step(model.parameters(), lrs)
                with torch.no_grad():
                    order = torch.stack([torch.randperm(len(x), generator=torch.Generator().manual_seed(7))] * runs)
                    usable = (len(x) // b) * b
                    chunks = order[:, :usable].reshape(runs, -1, b)
                    total = torch.zeros(runs)
                    train_pred = torch.zeros(runs, len(x), dtype=torch.long)
                    for c in range(chunks.shape[1]):
                        idx = chunks[:, c]
                        logits = model.forward(x[idx], update=False)
                        total += _cross_entropy(logits, y[idx]) * b
                        train_pred.scatter_(1, idx, logits.argmax(-1))
                    train_mode[kind][:, j] = (total / usable).numpy()
                    model.training = False
                    full = torch.arange(len(x)).expand(runs, -1)
                    logits = model.forward(x[full])
                    eval_mode[kind][:, j] = _cross_entropy(logits, y[full]).numpy()
                    covered = order[:, :usable]
                    differs = train_pred.gather(1, covered) != logits.argmax(-1).gather(1, covered)
                    disagreement[kind][:, j] = differs.float().mean(1).numpy()
                    test = torch.arange(len(x_test)).expand(runs, -1)
                    pred = model.forward(x_test[test]).argmax(-1)
                    accuracy[kind][:, j] = (pred == y_test[test]).float().mean(1).numpy()
                    if kind == "bn":
                        model.recalibrate(x[full])
                        pred = model.forward(x_test[test]).argmax(-1)
                        recalibrated[:, j] = (pred == y_test[test]).float().mean(1).numpy()
    return BatchSizeResult(tuple(batch_sizes), steps, train_mode, eval_mode, accuracy, disagreement, recalibrated)


@styled
def plot_batch_size(result: BatchSizeResult) -> Figure:
    fig = Figure(figsize=(12, 4.4), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    sizes = np.array(result.batch_sizes)
    series = [("BN, training mode (batch statistics)", result.train_mode["bn"], 2),
              ("BN, evaluation mode (running statistics)", result.eval_mode["bn"], 4),
              ("no BN (control): same in both modes", result.eval_mode["plain"], 0)]
    for label, values, c in series:
        med, lo, hi = _median_range(values)
        ax_loss.plot(sizes, med, color=COLORS[c], ls=LINESTYLES[c], marker="o", label=label)
        ax_loss.fill_between(sizes, lo, hi, color=COLORS[c], alpha=0.15)
    ax_loss.set_xscale("log", base=2)
    ax_loss.set_xticks(sizes, [str(s) for s in sizes])
    ax_loss.set_xlabel("training batch size")
    ax_loss.set_ylabel("loss on the training set")
    ax_loss.set_title("Same weights, two modes")
    ax_loss.legend(fontsize=12)
    for c, values, label in ((4, result.test_accuracy["bn"], "with BN (eval mode)"),
                             (3, result.recalibrated_accuracy, "with BN, statistics recalibrated"),
                             (0, result.test_accuracy["plain"], "without BN")):
        med, lo, hi = _median_range(values)
        ax_acc.plot(sizes, med, color=COLORS[c], ls=LINESTYLES[c], marker="s", label=label)
        ax_acc.fill_between(sizes, lo, hi, color=COLORS[c], alpha=0.15)
    ax_acc.set_xscale("log", base=2)
    ax_acc.set_xticks(sizes, [str(s) for s in sizes])
    ax_acc.set_xlabel("training batch size")
    ax_acc.set_ylabel("test accuracy")
    ax_acc.set_title("Test accuracy")
    ax_acc.legend(fontsize=12)
    ax_loss.axhline(CHANCE_LOSS, color="0.5", lw=1, ls=(0, (1, 3)))
    ax_loss.annotate("chance, ln 3", (sizes[-1], CHANCE_LOSS), xytext=(0, 4), textcoords="offset points",
                     ha="right", va="bottom", fontsize=12, color="0.35")
    fig.suptitle(f"{result.steps} SGD steps at each batch size; median and range of {len(result.eval_mode['bn'])} seeds")
    fig.set_label("Loss on the training set against batch size. With batch norm the training-mode loss (batch "
                  "statistics) lies above the evaluation-mode loss (running statistics); at batch 2 both stay near "
                  "the chance level ln 3, while the network without batch norm, the control, trains at every batch "
                  "size. Right: test accuracy against batch size, with batch norm far below the control at batch 2 "
                  "even after its statistics are recalibrated, and close to it at batch 64.")
    return fig


# ----------------------------------------------------------------------------------------------
# 4. Gradient norm per layer at initialization


@dataclass
class GradNormResult:
    depth: int
    norms: dict[tuple[str, float], np.ndarray] = field(default_factory=dict)  # (kind, scale) -> (seeds, layers)


@cache
def gradient_norm_experiment(depth: int = 20, width: int = 64, batch: int = 128, scales: tuple[float, ...] = (0.5, 1.0, 2.0),
                             seeds: tuple[int, ...] = SEEDS, jitter: float = 0.0) -> GradNormResult:
    """‖∂L/∂W_l‖ for the hidden layers l = 1 … depth+1 (and the output layer) at initialization, one
    batch of spirals, cross-entropy; float64."""
    x, y = _spirals()
    runs = len(seeds)
    g = torch.Generator().manual_seed(3)
    idx = torch.randint(0, len(x), (batch,), generator=g).expand(runs, -1)
    result = GradNormResult(depth)
    with single_thread():
        for kind in ("plain", "bn"):
            for scale in scales:
                model = BatchedMLP(runs, depth, width, 2, 3, kind == "bn", torch.full((runs,), scale), seeds,
                                   dtype=torch.float64, jitter=jitter)
                loss = _cross_entropy(model.forward(x[idx].double()), y[idx]).sum()
                grads = torch.autograd.grad(loss, model.weights)
                result.norms[kind, scale] = torch.stack([gr.flatten(1).norm(dim=1) for gr in grads], 1).numpy()
    return result


@styled
def plot_gradient_norms(result: GradNormResult) -> Figure:
    fig = Figure(figsize=(9.5, 5.6), layout="constrained")
    ax = fig.subplots()
    for i, ((kind, scale), values) in enumerate(sorted(result.norms.items())):
        layers = np.arange(1, values.shape[1] + 1)
        med, lo, hi = _median_range(values)
        label = f"{'with BN' if kind == 'bn' else 'no BN'}, weight scale {scale:g}"
        style = {"color": COLORS[i % len(COLORS)], "ls": LINESTYLES[i % len(LINESTYLES)]}
        ax.plot(layers, med, marker="o", ms=4, label=label, **style)
        ax.fill_between(layers, lo, hi, color=style["color"], alpha=0.15)
    ax.set_yscale("log")
    ax.set_xlabel("layer (1 = first)")
    ax.set_ylabel(r"$\|\partial L / \partial W_l\|$")
    ax.set_title(f"Gradient norm per layer at initialization, {result.depth} hidden layers, "
                 f"{next(iter(result.norms.values())).shape[0]} seeds")
    ax.set_xticks(range(1, next(iter(result.norms.values())).shape[1] + 1, 2))
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=3, fontsize=12)
    fig.set_label("Gradient norm of each layer's weight on a log scale against the layer index: without batch "
                  "norm the curves for the three weight scales lie many orders of magnitude apart; with batch norm "
                  "they overlap, within a factor of 3, and grow towards the input.")
    return fig


# ----------------------------------------------------------------------------------------------
# 5. Scale invariance meets SGD: the weight norm grows, weight decay holds it


@dataclass
class WeightNormResult:
    """‖W‖ of the second hidden layer (followed by batch norm) over SGD steps, with and without weight decay."""

    lr: float
    weight_decay: float
    norms: dict[float, np.ndarray]  # weight decay -> (seeds, steps + 1)
    max_cosine: float  # largest |cos(W, ∂L/∂W)| over every step, run and hidden layer
    max_identity_error: float  # largest relative error of ‖W_t+1‖² = ‖W_t‖² + lr²‖g_t‖² (without decay)

    def effective_lr(self, weight_decay: float) -> np.ndarray:
        """lr / ‖W‖², the step size that the direction W/‖W‖ sees, (seeds, steps + 1)."""
        return self.lr / self.norms[weight_decay] ** 2


@cache
def weight_norm_experiment(steps: int = 300, lr: float = 0.2, weight_decay: float = 0.02, depth: int = 2,
                           width: int = 32, batch: int = 32, seeds: tuple[int, ...] = SEEDS,
                           jitter: float = 0.0) -> WeightNormResult:
    r"""Train a BN MLP on the spirals by SGD, with and without weight decay on the hidden weights
    (``W ← W − lr (g + λ W)``), in float64, and record the norm of the second hidden layer's weight.

    Every hidden Linear is followed by batch norm, so the loss is scale invariant in its weight and
    the gradient is orthogonal to it: without weight decay
    :math:`\|W_{t+1}\|^2 = \|W_t\|^2 + \mathrm{lr}^2 \|g_t\|^2` (up to ε), so the norm only grows."""
    x, y = _spirals()
    x = x.double()
    decays = (0.0, weight_decay)
    grid = [(s, wd) for s in seeds for wd in decays]
    runs = len(grid)
    model = BatchedMLP(runs, depth, width, 2, 3, True, torch.ones(runs), [g[0] for g in grid], dtype=torch.float64,
                       jitter=jitter)
    wd = torch.tensor([g[1] for g in grid], dtype=torch.float64).view(-1, 1, 1)
    hidden = model.weights[:depth]  # each followed by batch norm
    tracked = model.weights[1]
    generators = [torch.Generator().manual_seed(900 + s) for s, _ in grid]  # same minibatches with and without decay
    norms = [tracked.detach().norm(dim=(1, 2)).clone()]
    cosine, identity = 0.0, 0.0
    no_decay = wd.flatten() == 0
    with single_thread():
        for _ in range(steps):
            idx = torch.stack([torch.randint(0, len(x), (batch,), generator=g) for g in generators])
            _cross_entropy(model.forward(x[idx]), y[idx]).sum().backward()
            with torch.no_grad():
                for w in hidden:
                    dot = (w * w.grad).sum((1, 2)) / (w.norm(dim=(1, 2)) * w.grad.norm(dim=(1, 2)))
                    cosine = max(cosine, dot.abs().max().item())
                before, grad_sq = tracked.norm(dim=(1, 2)) ** 2, (tracked.grad**2).sum((1, 2))
                for w in hidden:
                    w.grad += wd * w
                _sgd_step(model.parameters(), torch.full((runs,), lr, dtype=torch.float64))
                after = tracked.norm(dim=(1, 2)) ** 2
                error = (after - before - lr**2 * grad_sq).abs() / (lr**2 * grad_sq)
                identity = max(identity, error[no_decay].max().item())
            norms.append(tracked.detach().norm(dim=(1, 2)).clone())
    stacked = torch.stack(norms, 1).numpy().reshape(len(seeds), len(decays), steps + 1)
    return WeightNormResult(lr, weight_decay, {d: stacked[:, k] for k, d in enumerate(decays)}, cosine, identity)


@styled
def plot_weight_norms(result: WeightNormResult) -> Figure:
    fig = Figure(figsize=(11.5, 4.2), layout="constrained")
    ax_norm, ax_lr = fig.subplots(1, 2)
    steps = np.arange(next(iter(result.norms.values())).shape[1])
    for k, (wd, values) in enumerate(result.norms.items()):
        label = "no weight decay" if wd == 0 else f"weight decay λ = {wd:g}"
        for ax, shown in ((ax_norm, values), (ax_lr, result.effective_lr(wd))):
            med, lo, hi = _median_range(shown)
            ax.plot(steps, med, color=COLORS[2 * k], ls=LINESTYLES[2 * k], label=label)
            ax.fill_between(steps, lo, hi, color=COLORS[2 * k], alpha=0.2)
    ax_norm.set_xlabel("SGD step")
    ax_norm.set_ylabel("‖W‖ of hidden layer 2")
    ax_norm.set_title("The weight norm")
    ax_norm.legend()
    ax_lr.set_yscale("log")
    ax_lr.set_xlabel("SGD step")
    ax_lr.set_ylabel("effective step lr / ‖W‖²")
    ax_lr.set_title("The step its direction sees")
    fig.suptitle(f"BN network, SGD at lr {result.lr:g}: median and range of {len(next(iter(result.norms.values())))} "
                 "seeds")
    fig.set_label("Left: the norm of a weight matrix followed by batch norm over SGD steps; without weight decay it "
                  "only grows, with weight decay it shrinks towards a balance. Right: the effective step size "
                  "lr/‖W‖², which falls without weight decay and stays larger with it.")
    return fig


# ----------------------------------------------------------------------------------------------
# 6. The bridge to lesson 06: batch norm at the end of a residual branch


@dataclass
class ResidualStreamResult:
    """Variance of the residual stream x_l (mean over features) at blocks l = 0 … blocks, per seed."""

    blocks: int
    variance: dict[str, np.ndarray]  # "bn" / "plain" -> (seeds, blocks + 1)

    def branch_share(self) -> np.ndarray:
        """Var(f_l) / Var(x_l+1) for the BN branches (Var(f_l) = 1): (seeds, blocks)."""
        return 1.0 / self.variance["bn"][:, 1:]


@cache
def residual_stream_experiment(blocks: int = 32, width: int = 64, batch: int = 512, seeds: tuple[int, ...] = SEEDS,
                               jitter: float = 0.0) -> ResidualStreamResult:
    r"""Residual blocks :math:`x_{l+1} = x_l + f_l(x_l)` at initialization, float64, one batch of
    standard-normal inputs: with :math:`f_l = \mathrm{BN}(\mathrm{ReLU}(x_l) W_l)` (batch norm ends the
    branch, as in a BN ResNet block) and with the same Kaiming branch without batch norm."""
    variance = {"bn": [], "plain": []}
    with single_thread():
        for seed in seeds:
            _stream(seed, blocks, width, batch, jitter, variance)
    return ResidualStreamResult(blocks, {k: np.array(v) for k, v in variance.items()})


def _stream(seed: int, blocks: int, width: int, batch: int, jitter: float, variance: dict[str, list]) -> None:
    """One seed of :func:`residual_stream_experiment`: the same inputs and branch weights with and without BN."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(batch, width, generator=g, dtype=torch.float64)
    weights = [torch.randn(width, width, generator=g, dtype=torch.float64) * math.sqrt(2.0 / width)
               for _ in range(blocks)]
    jitter_(weights, jitter)
    for kind in ("bn", "plain"):
        h, v = x0, [x0.var(0).mean().item()]
        for w in weights:
            f = torch.relu(h) @ w
            if kind == "bn":
                var, mean = torch.var_mean(f, dim=0, correction=0)
                f = (f - mean) * torch.rsqrt(var + EPS)
            h = h + f
            v.append(h.var(0).mean().item())
        variance[kind].append(v)


@styled
def plot_residual_stream(result: ResidualStreamResult) -> Figure:
    fig = Figure(figsize=(8.5, 4.4), layout="constrained")
    ax = fig.subplots()
    blocks = np.arange(result.blocks + 1)
    for k, (kind, label) in enumerate((("plain", "branch without batch norm"),
                                       ("bn", "branch ending in batch norm"))):
        med, lo, hi = _median_range(result.variance[kind])
        ax.plot(blocks, med, color=COLORS[4 * k], ls=LINESTYLES[4 * k], label=label)
        ax.fill_between(blocks, lo, hi, color=COLORS[4 * k], alpha=0.2)
    ax.plot(blocks, 1.0 + blocks, color=COLORS[2], ls=LINESTYLES[2], lw=1.5, label="1 + l (one unit per block)")
    ax.set_yscale("log")
    ax.set_xlabel("residual block l")
    ax.set_ylabel("Var(x_l) of the residual stream")
    ax.set_title(f"Residual stream at initialization, median and range of {len(result.variance['bn'])} seeds")
    ax.legend()
    fig.set_label("Variance of the residual stream against block index on a log scale: it doubles every block when "
                  "the branches have no normalization and grows by one per block when each branch ends in batch "
                  "norm, following the line 1 + l.")
    return fig


# ----------------------------------------------------------------------------------------------
# 7. The widget: one batch through batch norm


class BatchNormExplorer:
    """An ipywidgets view of one batch flowing through batch norm, feature by feature.

    Left: histograms of three features of a batch of pre-activations (different means and
    spreads). Right: the same features after batch norm, ``γ x̂ + β`` with the sliders' γ and β,
    normalized with the batch statistics (training mode) or with running statistics gathered over
    ``batches seen`` earlier batches with momentum 0.1 (evaluation mode). Everything is
    precomputed; an update moves bar heights and redraws with Agg into an ``ipywidgets.Image``.
    ``last_update_s`` holds the duration of the latest update.
    """

    FEATURES = 3
    BINS = 30

    def __init__(self, batch_size: int = 64, seed: int = 0, dpi: int = 80) -> None:
        import ipywidgets as widgets

        rng = np.random.default_rng(seed)
        locs, scales = np.array([3.0, -1.0, 0.5]), np.array([2.0, 0.5, 4.0])
        self.locs, self.scales = locs, scales
        self.x = rng.normal(locs, scales, size=(batch_size, self.FEATURES))
        history = rng.normal(locs, scales, size=(50, batch_size, self.FEATURES))
        self.running: list[tuple[np.ndarray, np.ndarray]] = [(np.zeros(3), np.ones(3))]
        rm, rv = np.zeros(3), np.ones(3)
        for b in history:
            rm = 0.9 * rm + 0.1 * b.mean(0)
            rv = 0.9 * rv + 0.1 * b.var(0, ddof=1)
            self.running.append((rm.copy(), rv.copy()))
        self.dpi = dpi
        style = {"description_width": "initial"}
        self.gamma = widgets.FloatSlider(value=1.0, min=0.0, max=3.0, step=0.1, description="γ", style=style)
        self.beta = widgets.FloatSlider(value=0.0, min=-3.0, max=3.0, step=0.1, description="β", style=style)
        self.mode = widgets.ToggleButtons(options=["train", "eval"], value="train", description="mode", style=style)
        self.seen = widgets.IntSlider(value=0, min=0, max=50, description="batches seen (eval)", style=style)
        self.image = widgets.Image(format="png")
        self.summary = widgets.HTML()
        self.widget = widgets.VBox([widgets.HBox([self.gamma, self.beta]), widgets.HBox([self.mode, self.seen]),
                                    self.image, self.summary])
        self.last_update_s = math.nan
        self._build()
        for control in (self.gamma, self.beta, self.mode, self.seen):
            control.observe(lambda _change: self.update(), names="value")
        self.update()

    def output(self, gamma: float, beta: float, mode: str, seen: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(y, mean, var) of the batch for these settings."""
        if mode == "train":
            mean, var = self.x.mean(0), self.x.var(0)
        else:
            mean, var = self.running[seen]
        return gamma * (self.x - mean) / np.sqrt(var + EPS) + beta, mean, var

    def _build(self) -> None:
        with course_style():
            fig = Figure(figsize=(12, 4.2), dpi=self.dpi, layout="constrained")
            ax_in, ax_out = fig.subplots(1, 2)
            edges_in = np.linspace(-10, 14, self.BINS + 1)
            self._edges_out = np.linspace(-8, 8, self.BINS + 1)
            self._bars = []
            for f in range(self.FEATURES):  # outlines, each colour with its own line style
                counts, _ = np.histogram(self.x[:, f], edges_in)
                style = {"color": COLORS[f + 1], "ls": LINESTYLES[f], "lw": 2.2}
                ax_in.stairs(counts, edges_in, label=f"feature {f + 1}: mean {self.x[:, f].mean():.1f}, "
                             f"std {self.x[:, f].std():.1f}", **style)
                self._bars.append(ax_out.stairs(np.zeros(self.BINS), self._edges_out, **style))
            ax_in.set_title("before batch norm")
            ax_in.set_xlabel("value")
            ax_in.set_ylabel("count")
            ax_in.legend(fontsize=12, loc="upper left")
            ax_out.set_title("after batch norm")
            ax_out.set_xlabel("value (values beyond ±8 in the end bins)")
            ax_out.set_ylim(0, len(self.x) * 0.6)
            ax_in.set_ylim(0, len(self.x) * 0.6)
            self._text = ax_out.text(0.02, 0.97, "", transform=ax_out.transAxes, va="top", fontsize=12)
            fig.draw_without_rendering()
            fig.set_layout_engine("none")
        fig.set_label("Histograms of three features of one batch before batch norm (different means and spreads) "
                      "and after it, with the chosen gamma, beta and mode.")
        self.figure = fig
        self._canvas = FigureCanvasAgg(fig)

    def _render_png(self) -> bytes:
        return style.canvas_png(self._canvas)

    def update(self) -> float:
        start = time.perf_counter()
        mode, seen = self.mode.value, self.seen.value
        self.seen.disabled = mode == "train"
        y, mean, var = self.output(self.gamma.value, self.beta.value, mode, seen)
        clipped = np.clip(y, self._edges_out[0] + 1e-9, self._edges_out[-1] - 1e-9)
        for f, bars in enumerate(self._bars):
            counts, _ = np.histogram(clipped[:, f], self._edges_out)
            bars.set_data(counts)
        lines = [f"feature {f + 1}: out mean {y[:, f].mean():+.2f}, std {y[:, f].std():.2f}" for f in range(3)]
        self._text.set_text("\n".join(lines))
        self.image.value = self._render_png()
        source = "the batch's own mean and variance" if mode == "train" else (
            f"running statistics after {seen} earlier batches (momentum 0.1)")
        self.summary.value = (f"<b>{mode}</b>: normalized with {source}: mean "
                              f"[{', '.join(f'{m:.2f}' for m in mean)}], variance "
                              f"[{', '.join(f'{v:.2f}' for v in var)}]")
        self.last_update_s = time.perf_counter() - start
        return self.last_update_s


def explorer_figure(gamma: float = 1.5, beta: float = 0.5, mode: str = "eval", seen: int = 10) -> Figure:
    """The explorer's figure after one update with these settings (for the figure-style test)."""
    explorer = BatchNormExplorer()
    explorer.gamma.value, explorer.beta.value, explorer.mode.value, explorer.seen.value = gamma, beta, mode, seen
    explorer.update()
    return explorer.figure
