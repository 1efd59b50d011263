r"""Experiments, figures and the explorer widget of lesson ``04_gradient_clipping``.

The notebook stays prose-first and imports everything heavier from here:

- **Why gradients explode**: :func:`random_tanh_rnn`, :func:`rnn_final_state` and
  :func:`jacobian_norms` follow :math:`\|\partial h_t/\partial h_0\|` through a product of
  Jacobians :math:`J_t = \operatorname{diag}(1-h_t^2)\,sQ`; :func:`plot_jacobian_norms` draws it.
- **Value vs norm clipping**: :func:`plot_clipping_geometry` (a 2-D picture) and :func:`cosine`.
- **AGC**: :func:`unit_norms` and :func:`plot_agc_units` (each unit's gradient norm against its
  weight norm, before and after clipping).
- **The experiment**: a tanh RNN (:class:`~stabletrain.models.ExplodingRNN`) on the adding problem
  with SGD + momentum at a learning rate that blows up without clipping. :func:`train_rnn` is the
  readable one-model loop (forward, backward, *clip*, step); :func:`train_grid` trains every
  setting the explorer offers at once, as one batch of independent models, so that the widget only
  has to redraw. :func:`run_experiment` trains the lesson's settings at every seed as one batch
  (:func:`train_sweep`); :func:`plot_seed_bands`, :func:`plot_clipping_stats`,
  :func:`plot_threshold_sweep` and :func:`plot_update_ratio` draw the results;
  :class:`ClippingExplorer` is the widget.
- **Clipping in a real training loop**: :func:`demo_loop` runs a ``train_step`` (Exercise 4) on
  the experiment's RNN; :func:`functions_in_the_loop` is Section 7's warm-up, threshold and two
  runs.

The experiments take their seeds as a tuple and a ``jitter`` of the initial weights
(:func:`stabletrain.perturb.jitter_`, 0 in the lesson): the claims tests rerun them on more seeds
and under other CPU arithmetics, since the runs are chaotic (see :class:`Config`).

Clipping in the experiments uses the reference implementations (``stabletrain.clip_grad_norm_``
and friends), so every demonstration works before the exercises are solved; :func:`train_rnn`
takes ``clip_fn=`` to run a student's own function instead.

Every figure is a detached :class:`matplotlib.figure.Figure` (not registered with pyplot): the
notebook displays it by leaving it as a cell's last expression (``%matplotlib inline``, run in the
setup cell, registers the PNG formatter for figures), and nothing accumulates in pyplot.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor, nn

import stabletrain as st
from stabletrain import style
from stabletrain.style import styled
from stabletrain.data import make_sequence_task
from stabletrain.models import ExplodingRNN
from stabletrain.perturb import jitter_
from stabletrain.threads import single_thread

__all__ = [
    "KINDS",
    "LABELS",
    "COLORS",
    "MAX_NORMS",
    "CLIP_FACTORS",
    "BASELINE_LOSS",
    "Config",
    "CONFIG",
    "Run",
    "Grid",
    "single_thread",
    "cosine",
    "random_tanh_rnn",
    "rnn_final_state",
    "jacobian_norms",
    "plot_jacobian_norms",
    "plot_clipping_geometry",
    "unit_norms",
    "plot_agc_units",
    "make_task",
    "make_model",
    "agc_parameters",
    "value_clip_for",
    "clip_",
    "train_rnn",
    "train_grid",
    "plot_clipping_stats",
    "plot_threshold_sweep",
    "ClippingExplorer",
    "SEEDS",
    "CONTROL_LR",
    "MAX_NORM",
    "BLOWN_UP",
    "Sweep",
    "train_sweep",
    "experiment_settings",
    "run_experiment",
    "setting_label",
    "plot_seed_bands",
    "plot_update_ratio",
    "cliff_loss",
    "cliff_trajectory",
    "plot_cliff",
    "momentum_and_adam_numbers",
    "train_rnn_seeds",
    "demo_loop",
    "functions_in_the_loop",
    "loop_numbers",
]

#: the clipping methods of the experiment, in display order
KINDS: tuple[str, ...] = ("none", "value", "norm", "agc")
LABELS: dict[str, str] = {
    "none": "no clipping",
    "control": "control: lr / 4, no clipping",
    "value": "by value",
    "norm": "by global norm",
    "agc": "adaptive (AGC)",
}
#: the colour and dash pattern of each kind (the course palette; the control is black)
STYLE_INDEX: dict[str, int] = {"control": 0, "value": 1, "norm": 2, "agc": 3, "none": 4}
COLORS: dict[str, str] = {k: style.COLORS[i] for k, i in STYLE_INDEX.items()}
LINESTYLES: dict[str, object] = {k: style.LINESTYLES[i] for k, i in STYLE_INDEX.items()}
#: the max_norm values the explorer offers (value clipping uses max_norm / sqrt(P), see value_clip_for)
MAX_NORMS: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0)
#: the AGC clip factors lambda the explorer offers
CLIP_FACTORS: tuple[float, ...] = (0.01, 0.05, 0.2)
#: the mean squared error of always predicting E[y] = 1 on the adding problem: Var y = 2/12
BASELINE_LOSS = 2.0 / 12.0

_NORM_EPS = 1e-6  # torch's coef = max_norm / (total + 1e-6)
_AGC_EPS = 1e-3  # the floor on a unit's weight norm (NFNets' default)
_AGC_MIN_GRAD_NORM = 1e-6
_SMOOTH = 0.9  # EMA factor of the loss curves (about 10 steps)
_TAIL = 50  # the final loss is the mean over this many last steps


# ----------------------------------------------------------------------------------------------
# Small helpers


def _flat(tensors: Tensor | Sequence[Tensor]) -> Tensor:
    """Concatenate a tensor or a sequence of tensors into one float64 vector."""
    if isinstance(tensors, Tensor):
        return tensors.detach().reshape(-1).double()
    return torch.cat([t.detach().reshape(-1).double() for t in tensors])


def cosine(a: Tensor | Sequence[Tensor], b: Tensor | Sequence[Tensor]) -> float:
    r"""Cosine of the angle between two vectors, each given as a tensor or a list of tensors.

    .. math:: \cos\theta = \frac{a\cdot b}{\|a\|_2\,\|b\|_2}

    A list of tensors (e.g. the gradients of every parameter) is flattened and concatenated first,
    so ``cosine(raw_grads, clipped_grads)`` compares two full gradients. Computed in float64;
    returns NaN if either vector is zero.
    """
    x, y = _flat(a), _flat(b)
    if x.shape != y.shape:
        raise ValueError(f"vectors of different sizes: {x.numel()} and {y.numel()}")
    denom = (torch.linalg.vector_norm(x) * torch.linalg.vector_norm(y)).item()
    return float((x @ y).item() / denom) if denom > 0 else math.nan


def _ema(values: np.ndarray, factor: float = _SMOOTH) -> np.ndarray:
    """Exponential moving average m_t = f m_{t-1} + (1-f) v_t (m_0 = v_0); NaN stays NaN."""
    out = np.full(len(values), np.nan)
    m = None
    for i, v in enumerate(values):
        if not np.isfinite(v):
            break
        m = v if m is None else factor * m + (1 - factor) * v
        out[i] = m
    return out


# ----------------------------------------------------------------------------------------------
# Why gradients explode: products of Jacobians


def random_tanh_rnn(hidden: int = 32, T: int = 60, seed: int = 0, input_std: float = 0.5) -> tuple[Tensor, Tensor]:
    r"""A random orthogonal recurrent matrix and a random input drive, float64.

    Returns ``(Q, drive)``: ``Q`` of shape ``(hidden, hidden)`` with :math:`Q^\top Q = I`, and
    ``drive`` of shape ``(T, hidden)`` with entries :math:`u_t \sim \mathcal N(0, \text{input\_std}^2)`
    (the input contribution :math:`W_x x_t + b` of every step). Seeded; the global RNG is untouched.
    """
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(hidden, hidden, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    drive = input_std * torch.randn(T, hidden, generator=g, dtype=torch.float64)
    return q, drive


def rnn_final_state(h0: Tensor, Q: Tensor, scale: float, drive: Tensor) -> Tensor:
    r"""Run :math:`h_t = \tanh(u_t + sQh_{t-1})` for every row :math:`u_t` of ``drive``; return :math:`h_T`.

    Shapes: ``h0`` ``(H,)``, ``Q`` ``(H, H)``, ``drive`` ``(T, H)`` → ``(H,)``. Differentiable, so
    ``torch.autograd.functional.jacobian`` can check :func:`jacobian_norms` against it.
    """
    h = h0
    for u in drive:
        h = torch.tanh(u + scale * (Q @ h))
    return h


def jacobian_norms(scale: float, Q: Tensor, drive: Tensor, h0: Tensor | None = None) -> tuple[np.ndarray, Tensor]:
    r"""Spectral norms of :math:`\partial h_t/\partial h_0` for :math:`t = 0, \dots, T`, by the chain rule.

    With :math:`h_t = \tanh(u_t + sQh_{t-1})` the one-step Jacobian is
    :math:`J_t = \partial h_t/\partial h_{t-1} = \operatorname{diag}(1 - h_t^2)\, sQ`, and

    .. math:: \frac{\partial h_t}{\partial h_0} = J_t J_{t-1} \cdots J_1 .

    Since :math:`\|Q\|_2 = 1` and :math:`0 < 1 - h_t^2 \le 1`, every factor has norm at most
    :math:`s`: the product can grow at most like :math:`s^t` and shrinks geometrically for
    :math:`s < 1`.

    Returns ``(norms, product)``: ``norms`` of shape ``(T + 1,)`` (``norms[0] = 1``, the identity)
    and the final product :math:`\partial h_T/\partial h_0` of shape ``(H, H)``.
    """
    H = Q.shape[0]
    h = torch.zeros(H, dtype=Q.dtype) if h0 is None else h0.detach().to(Q.dtype)
    product = torch.eye(H, dtype=Q.dtype)
    norms = [1.0]
    for u in drive:
        h = torch.tanh(u + scale * (Q @ h))
        jac = (1 - h**2)[:, None] * (scale * Q)  # diag(1 - h^2) s Q
        product = jac @ product
        norms.append(torch.linalg.matrix_norm(product, ord=2).item())
    return np.array(norms), product


@styled
def plot_jacobian_norms(norms: dict[float, np.ndarray]) -> Figure:
    """Log-scale curves of ‖∂h_t/∂h_0‖ against t, one per recurrent scale s (``{s: norms}``)."""
    fig = Figure(figsize=(7.5, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for i, s in enumerate(sorted(norms)):
        ax.semilogy(np.arange(len(norms[s])), norms[s], lw=2.2, color=style.COLORS[i + 1],
                    linestyle=style.LINESTYLES[i + 1], label=f"s = {s:g}")
    ax.axhline(1.0, color="0.6", lw=1, ls=":")
    ax.set_xlabel("time steps back, t")
    ax.set_ylabel(r"$\|\partial h_t / \partial h_0\|_2$")
    ax.set_title("Gradients through a tanh RNN: a product of t Jacobians")
    ax.legend(title="recurrent scale")
    return fig


# ----------------------------------------------------------------------------------------------
# Value vs norm clipping, in two dimensions


@styled
def plot_clipping_geometry(g: Sequence[float] = (2.4, 0.6), c: float = 1.0) -> Figure:
    r"""A 2-D gradient ``g`` clipped by value (into the box :math:`[-c, c]^2`) and by norm (onto the disc of radius c).

    Value clipping moves :math:`g` to the nearest point of the box, which changes its direction;
    norm clipping shrinks it along its own direction. The legend gives each result's cosine with
    :math:`g`.
    """
    raw = torch.tensor(g, dtype=torch.float64)
    by_value = raw.clamp(-c, c)
    by_norm = raw * min(1.0, c / (raw.norm().item() + _NORM_EPS))
    fig = Figure(figsize=(8.6, 4.3), layout="constrained")
    ax = fig.add_subplot()
    t = np.linspace(0, 2 * np.pi, 200)
    ax.fill(c * np.cos(t), c * np.sin(t), color=COLORS["norm"], alpha=0.08)
    ax.plot(c * np.cos(t), c * np.sin(t), color=COLORS["norm"], lw=1.2, ls=LINESTYLES["norm"], label=f"‖g‖ ≤ {c:g}")
    ax.plot([-c, c, c, -c, -c], [-c, -c, c, c, -c], color=COLORS["value"], lw=1.2, ls=LINESTYLES["value"],
            label=f"|g_i| ≤ {c:g}")
    arrows = [
        (raw, "control", "raw gradient g"),
        (by_value, "value", f"clipped by value (cos = {cosine(raw, by_value):.3f})"),
        (by_norm, "norm", f"clipped by norm (cos = {cosine(raw, by_norm):.3f})"),
    ]
    for vec, kind, label in arrows:
        ax.annotate("", xy=(vec[0].item(), vec[1].item()), xytext=(0, 0),
                    arrowprops={"arrowstyle": "-|>", "color": COLORS[kind], "lw": 2.2, "mutation_scale": 16,
                                "linestyle": LINESTYLES[kind]})
        ax.plot([], [], color=COLORS[kind], lw=2.2, ls=LINESTYLES[kind], label=label)
    ax.set_xlim(-1.25 * c, max(1.12 * raw[0].item(), 1.25 * c))
    ax.set_ylim(-1.25 * c, max(1.12 * raw[1].item(), 1.25 * c))
    ax.set_aspect("equal")
    ax.axhline(0, color="0.8", lw=0.8)
    ax.axvline(0, color="0.8", lw=0.8)
    ax.grid(False)
    ax.set_xlabel("$g_1$")
    ax.set_ylabel("$g_2$")
    ax.set_title("Clipping by value bends the gradient; by norm only shortens it")
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
    return fig


# ----------------------------------------------------------------------------------------------
# Adaptive gradient clipping, unit by unit


def unit_norms(tensors: Sequence[Tensor]) -> np.ndarray:
    r"""The 2-norm of every unit of every tensor, concatenated: shape ``(total number of units,)``.

    A unit is one output unit: row :math:`i` of a Linear weight ``(out, in)``, filter :math:`i` of
    a conv weight ``(out, in, *kernel)`` — the norm runs over every dim but dim 0. A tensor with at
    most one dim (a bias) is a single unit.
    """
    out = []
    for t in tensors:
        t = t.detach().double()
        if t.ndim <= 1:
            out.append(torch.linalg.vector_norm(t).reshape(1))
        else:
            out.append(torch.linalg.vector_norm(t, dim=tuple(range(1, t.ndim))))
    return torch.cat(out).numpy()


@styled
def plot_agc_units(w_norms: np.ndarray, g_before: np.ndarray, g_after: np.ndarray, clip_factor: float,
                   eps: float = _AGC_EPS) -> Figure:
    r"""Each unit as a point (‖W_i‖, ‖G_i‖), before and after AGC, with the limit line.

    The line is ‖G_i‖ = λ max(‖W_i‖, ε). Points above it are moved down onto it; points below stay where they are. All three
    arrays have one entry per unit (see :func:`unit_norms`).
    """
    fig = Figure(figsize=(6.8, 4.6), layout="constrained")
    ax = fig.add_subplot()
    clipped = g_after < g_before * (1 - 1e-9)
    ax.scatter(w_norms, g_before, s=26, facecolors="none", edgecolors="0.45", label="before clipping")
    ax.scatter(w_norms[clipped], g_after[clipped], s=18, color=COLORS["agc"], marker="s",
               label=f"after AGC ({clipped.sum()} of {len(w_norms)} units clipped)")
    lo = min(w_norms.min(), eps) / 2
    hi = w_norms.max() * 2
    xs = np.geomspace(lo, hi, 200)
    ax.plot(xs, clip_factor * np.maximum(xs, eps), color=COLORS["agc"], ls=LINESTYLES["agc"], lw=1.8,
            label=rf"$\|G_i\| = \lambda\,\max(\|W_i\|, \epsilon)$, $\lambda$ = {clip_factor:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"weight norm of the unit, $\|W_i\|$")
    ax.set_ylabel(r"gradient norm of the unit, $\|G_i\|$")
    ax.set_title("AGC clips each unit relative to its own weights")
    ax.legend(loc="lower right")
    return fig


# ----------------------------------------------------------------------------------------------
# The experiment: an RNN on the adding problem, trained with and without clipping


@dataclass(frozen=True)
class Config:
    """The experiment's settings: the adding problem, the RNN and SGD with momentum.

    The defaults are a learning rate that trains this RNN most of the time, with rare gradient
    spikes: without clipping, on some seeds a spike throws the recurrent weights to a spectral
    norm far above 1 (past :data:`BLOWN_UP`), from which the run does not recover; norm clipping
    at ``max_norm = 2`` fires on a few per cent of the steps on most seeds. :data:`CONTROL_LR` is
    the control: a lower learning rate without clipping.

    At this learning rate the runs are chaotic: *which* seeds blow up depends on the last bit of
    the float32 products, so it changes with the CPU's kernels (and with a 1e-6 jitter of the
    initial weights). ``tests/test_claims_04_gradient_clipping.py`` checks what the lesson says
    about these runs on seeds 0–14 and on seeds 0–4 under three other arithmetics.
    """

    T: int = 20  # sequence length of the adding problem
    hidden: int = 16  # RNN width
    n_train: int = 512  # training sequences
    batch_size: int = 64  # minibatch per step, drawn without replacement
    steps: int = 300
    lr: float = 0.1
    momentum: float = 0.9
    recurrent_scale: float = 1.0
    seed: int = 0


CONFIG = Config()
#: the seeds every experiment of the lesson runs over
SEEDS: tuple[int, ...] = (0, 1, 2, 3, 4)
#: the control: a learning rate four times lower, without clipping
CONTROL_LR = 0.025
#: the experiment's threshold for norm clipping
MAX_NORM = 2.0
#: a run "blows up" when ||W_rec||_2 passes this (it starts at 1): in every run of the claims tests
#: the largest ||W_rec||_2 without clipping either stays below 7 or passes 20
BLOWN_UP = 10.0


def make_task(cfg: Config = CONFIG) -> tuple[Tensor, Tensor]:
    """The adding problem's training set: ``x`` ``(n_train, T, 2)`` and ``y`` ``(n_train, 1)``."""
    return make_sequence_task(cfg.n_train, cfg.T, seed=cfg.seed)


def make_model(cfg: Config = CONFIG) -> ExplodingRNN:
    """The tanh RNN (2 inputs, ``cfg.hidden`` units, 1 output) at its seeded initialisation."""
    return ExplodingRNN(2, cfg.hidden, 1, recurrent_scale=cfg.recurrent_scale, seed=cfg.seed)


def agc_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters AGC clips: all but the final layer's (``readout``), as in NFNets."""
    return [p for name, p in model.named_parameters() if not name.startswith("readout")]


def value_clip_for(max_norm: float, n_params: int) -> float:
    r"""The clip value with the same worst-case guarantee as norm clipping at ``max_norm``.

    If every one of the P entries satisfies :math:`|g_i| \le c`, then :math:`\|g\|_2 \le c\sqrt P`;
    so :math:`c = \text{max\_norm}/\sqrt P` guarantees :math:`\|g\|_2 \le \text{max\_norm}`, like
    norm clipping does. The experiment compares the two methods at equal guarantees this way.
    """
    return max_norm / math.sqrt(n_params)


def clip_(kind: str, threshold: float | None, model: nn.Module) -> None:
    """Clip ``model``'s gradients in place with the reference implementation of ``kind``.

    - ``"none"``: nothing;
    - ``"value"``: ``clip_grad_value_(params, value_clip_for(threshold, P))``;
    - ``"norm"``: ``clip_grad_norm_(params, threshold)``;
    - ``"agc"``: ``adaptive_clip_grad_(agc_parameters(model), clip_factor=threshold)``.
    """
    params = [p for p in model.parameters() if p.grad is not None]
    if kind == "none":
        return
    if kind == "value":
        st.clip_grad_value_(params, value_clip_for(threshold, sum(p.numel() for p in model.parameters())))
    elif kind == "norm":
        st.clip_grad_norm_(params, threshold)
    elif kind == "agc":
        st.adaptive_clip_grad_(agc_parameters(model), clip_factor=threshold, eps=_AGC_EPS)
    else:
        raise ValueError(f"unknown clipping kind {kind!r}; expected one of {KINDS}")


@dataclass
class Run:
    """One training run, one entry per step (NaN from the step where the loss stopped being finite).

    - ``losses``: the minibatch loss before the step.
    - ``raw_norms``, ``clipped_norms``: the global 2-norm of the gradient before and after clipping.
    - ``cosines``: the cosine between the raw and the clipped gradient (1 when nothing changed).
    - ``clipped``: whether clipping changed the gradient at that step.
    - ``diverged_at``: the first step with a non-finite loss, or None.
    """

    kind: str
    threshold: float | None
    losses: np.ndarray
    raw_norms: np.ndarray
    clipped_norms: np.ndarray
    cosines: np.ndarray
    clipped: np.ndarray
    diverged_at: int | None = None
    lr: float | None = None
    w_rec_norms: np.ndarray | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        """A legend label such as ``by global norm, max_norm = 1``."""
        if self.kind == "none":
            return LABELS["none"]
        name = "λ" if self.kind == "agc" else "max_norm"
        return f"{LABELS[self.kind]}, {name} = {self.threshold:g}"

    @property
    def clipped_fraction(self) -> float:
        """The fraction of the steps taken whose gradient was clipped."""
        taken = self.steps_taken
        return float(self.clipped[:taken].mean()) if taken else 0.0

    @property
    def steps_taken(self) -> int:
        """The number of optimizer steps taken (all of them unless training diverged)."""
        return len(self.losses) if self.diverged_at is None else self.diverged_at

    @property
    def final_loss(self) -> float:
        """The mean minibatch loss over the last 50 steps; inf when training diverged."""
        if self.diverged_at is not None:
            return math.inf
        return float(np.mean(self.losses[-_TAIL:]))


def _empty_run(kind: str, threshold: float | None, steps: int) -> Run:
    nan = np.full(steps, np.nan)
    return Run(kind, threshold, nan.copy(), nan.copy(), nan.copy(), nan.copy(), np.zeros(steps, dtype=bool))


def train_rnn(kind: str = "norm", threshold: float | None = 1.0, cfg: Config = CONFIG,
              clip_fn: Callable[[list[nn.Parameter]], object] | None = None, jitter: float = 0.0) -> Run:
    r"""Train the RNN once; the readable version of the experiment.

    Every step: draw a minibatch, forward, backward, **clip**, then ``optimizer.step()``::

        optimizer.zero_grad()
        loss = F.mse_loss(model(xb), yb)
        loss.backward()
        clip_grad_norm_(model.parameters(), max_norm)   # between backward and step
        optimizer.step()

    Args:
        kind: one of :data:`KINDS`; clipping uses the reference functions (see :func:`clip_`).
        threshold: max_norm for ``"norm"`` and ``"value"`` (value clipping at
            ``value_clip_for(max_norm, P)``), λ for ``"agc"``; ignored for ``"none"``.
        cfg: the experiment's settings.
        clip_fn: if given, called as ``clip_fn(params)`` instead (``params`` is the list of all
            parameters), e.g. ``lambda ps: my_clip_grad_norm_(ps, 1.0)``.
        jitter: the relative perturbation of the initial weights that the claims tests use, as in
            :func:`train_sweep` (the same perturbation for the same seed); 0 in the lesson.

    Returns:
        A :class:`Run` of ``cfg.steps`` entries; training stops at the first non-finite loss.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown clipping kind {kind!r}; expected one of {KINDS}")
    with single_thread():
        x, y = make_task(cfg)
        model = make_model(cfg)
        jitter_(list(model.parameters()), jitter, seed=cfg.seed)
        params = list(model.parameters())
        optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)
        generator = torch.Generator().manual_seed(cfg.seed)
        run = _empty_run(kind, None if kind == "none" else threshold, cfg.steps)
        for step in range(cfg.steps):
            idx = torch.randperm(cfg.n_train, generator=generator)[: cfg.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.mse_loss(model(x[idx]), y[idx])
            run.losses[step] = loss.item()
            if not math.isfinite(run.losses[step]):
                run.losses[step] = np.nan
                run.diverged_at = step
                break
            loss.backward()
            raw = [p.grad.detach().clone() for p in params]
            if clip_fn is not None:
                clip_fn(params)
            else:
                clip_(kind, threshold, model)
            clipped = [p.grad for p in params]
            run.raw_norms[step] = torch.linalg.vector_norm(_flat(raw)).item()
            run.clipped_norms[step] = torch.linalg.vector_norm(_flat(clipped)).item()
            run.cosines[step] = cosine(raw, clipped)
            run.clipped[step] = any(not torch.equal(a, b) for a, b in zip(raw, clipped))
            optimizer.step()
    return run


def train_rnn_seeds(kind: str = "norm", threshold: float | None = 2.0, seeds: Sequence[int] = SEEDS,
                    jitter: float = 0.0, cfg: Config = CONFIG) -> dict[int, Run]:
    """:func:`train_rnn` at every seed of ``seeds`` (a tuple of ints): ``{seed: Run}``. The claims
    tests compare it with the batched experiment under every arithmetic they cover."""
    return {int(s): train_rnn(kind, threshold, replace(cfg, seed=int(s)), jitter=jitter) for s in seeds}


# ----------------------------------------------------------------------------------------------
# Every setting at once: a batch of K independent RNNs


@dataclass
class Grid:
    """The runs of :func:`train_grid`, by ``(kind, threshold)``; ``grid["norm", 1.0]`` is one :class:`Run`."""

    runs: dict[tuple[str, float | None], Run]
    max_norms: tuple[float, ...]
    clip_factors: tuple[float, ...]
    cfg: Config
    n_params: int
    seconds: float = 0.0

    def __getitem__(self, key: tuple[str, float | None]) -> Run:
        kind, threshold = key
        if kind == "none":
            return self.runs["none", None]
        options = self.clip_factors if kind == "agc" else self.max_norms
        match = [t for t in options if math.isclose(t, threshold)]
        if not match:
            raise KeyError(f"no {kind} run with threshold {threshold}; available: {options}")
        return self.runs[kind, match[0]]

    @property
    def none(self) -> Run:
        return self.runs["none", None]


_NONE, _VALUE, _NORM, _AGC = range(4)


def _unitwise(t: Tensor) -> Tensor:
    """Per-model, per-unit 2-norms of a stacked parameter ``(K, *shape)``, broadcastable against it.

    For a weight (``len(shape) >= 2``) the norm runs over dims 2.. (shape ``(K, out, 1, ...)``);
    for a bias or scalar over dims 1.. (shape ``(K, 1, ...)``).
    """
    dims = tuple(range(2, t.ndim)) if t.ndim >= 3 else tuple(range(1, t.ndim))
    return torch.linalg.vector_norm(t, dim=dims, keepdim=True)


def _batched_clip(grads: list[Tensor], params: list[Tensor], agc_mask: list[bool], kinds: Tensor,
                  clip_value: Tensor, max_norm: Tensor, clip_factor: Tensor) -> tuple[list[Tensor], Tensor, Tensor]:
    r"""Clip the gradients of K models at once, each by its own kind and threshold.

    ``grads[j]`` and ``params[j]`` are ``(K, *shape_j)``; ``kinds``, ``clip_value``, ``max_norm``,
    ``clip_factor`` are ``(K,)`` (inf where a model does not use that method). The same formulas as
    the reference functions: value → clamp into :math:`[-c, c]`; norm → multiply by
    :math:`\min(1, m/(\|g\|+10^{-6}))`; AGC → rescale units with :math:`\|G_i\| \ge \lambda\max(\|W_i\|, \epsilon)`.

    Returns ``(clipped, total_norm, was_clipped)``, the last two of shape ``(K,)``.
    """
    K = kinds.shape[0]
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.reshape(K, -1), dim=1) for g in grads]),
                                     dim=0)
    coef = torch.clamp(max_norm / (total + _NORM_EPS), max=1.0)
    was_clipped = torch.zeros(K, dtype=torch.bool)
    was_clipped |= (kinds == _NORM) & (coef < 1)
    out = []
    for g, p, use_agc in zip(grads, params, agc_mask):
        view = (K,) + (1,) * (g.ndim - 1)
        c = clip_value.view(view)
        by_value = torch.maximum(torch.minimum(g, c), -c)
        by_norm = g * coef.view(view)
        if use_agc:
            limit = _unitwise(p).clamp(min=_AGC_EPS) * clip_factor.view(view)
            g_norm = _unitwise(g)
            keep = g_norm < limit
            by_agc = torch.where(keep, g, g * (limit / g_norm.clamp(min=_AGC_MIN_GRAD_NORM)))
            was_clipped |= (kinds == _AGC) & ~keep.reshape(K, -1).all(dim=1)
        else:
            by_agc = g
        was_clipped |= (kinds == _VALUE) & (g.abs() > c).reshape(K, -1).any(dim=1)
        k = kinds.view(view)
        out.append(torch.where(k == _VALUE, by_value, torch.where(k == _NORM, by_norm,
                                                                  torch.where(k == _AGC, by_agc, g))))
    return out, total, was_clipped


def train_grid(max_norms: Sequence[float] = MAX_NORMS, clip_factors: Sequence[float] = CLIP_FACTORS,
               cfg: Config = CONFIG) -> Grid:
    r"""Train, at once, one RNN per setting at ``cfg.seed``: no clipping, by value and by norm at every
    max_norm, AGC at every λ — :func:`train_sweep` for one seed, as a :class:`Grid`.

    Per model this computes what :func:`train_rnn` computes, up to floating-point rounding (which
    a diverging or chaotic run amplifies over many steps).
    """
    settings: list[tuple[str, float | None, float]] = [("none", None, cfg.lr)]
    settings += [(kind, float(m), cfg.lr) for kind in ("value", "norm") for m in max_norms]
    settings += [("agc", float(lam), cfg.lr) for lam in clip_factors]
    return train_sweep(settings, (cfg.seed,), cfg).grid(cfg.seed)


# ----------------------------------------------------------------------------------------------
# Many seeds at once: the experiment's settings x seeds as one batch of independent RNNs


@dataclass
class Sweep:
    r"""Every setting of :func:`train_sweep` at every seed; arrays of shape ``(seeds, settings, steps)``.

    ``settings[j]`` is ``(kind, threshold, lr)``. Per step and model: ``losses`` (the minibatch loss
    before the step, NaN after divergence), ``raw_norms`` and ``clipped_norms`` (the global
    gradient 2-norm before and after clipping), ``cosines`` (raw vs clipped gradient), ``clipped``
    (whether clipping changed the gradient), ``w_rec_norms`` (the spectral norm
    :math:`\|W_\text{rec}\|_2` *before* the step — the :math:`s` of Section 1), ``rec_share`` (the
    fraction of the squared gradient norm that sits in :math:`W_\text{rec}`), ``update_ratio``
    (:math:`\|\Delta W_\text{rec}\|/\|W_\text{rec}\|` of the step); ``diverged_at`` ``(seeds, settings)``
    holds the first non-finite step or -1.
    """

    settings: list[tuple[str, float | None, float]]
    seeds: tuple[int, ...]
    cfg: Config
    n_params: int
    losses: np.ndarray
    raw_norms: np.ndarray
    clipped_norms: np.ndarray
    cosines: np.ndarray
    clipped: np.ndarray
    w_rec_norms: np.ndarray
    rec_share: np.ndarray
    update_ratio: np.ndarray
    diverged_at: np.ndarray
    seconds: float = 0.0

    def index(self, kind: str, threshold: float | None = None, lr: float | None = None) -> int:
        """The column of setting ``(kind, threshold, lr)`` (``lr=None``: the experiment's ``cfg.lr``)."""
        lr = self.cfg.lr if lr is None else lr
        for j, (k, t, r) in enumerate(self.settings):
            if k == kind and math.isclose(r, lr) and (t is None if threshold is None else t is not None and math.isclose(t, threshold)):
                return j
        raise KeyError(f"no setting {(kind, threshold, lr)}; available: {self.settings}")

    def run(self, seed: int, kind: str, threshold: float | None = None, lr: float | None = None) -> Run:
        """One model's record as a :class:`Run`."""
        i, j = self.seeds.index(seed), self.index(kind, threshold, lr)
        d = int(self.diverged_at[i, j])
        return Run(kind, threshold, self.losses[i, j], self.raw_norms[i, j], self.clipped_norms[i, j],
                   self.cosines[i, j], self.clipped[i, j], None if d < 0 else d,
                   lr=self.settings[j][2], w_rec_norms=self.w_rec_norms[i, j])

    def final_losses(self, kind: str, threshold: float | None = None, lr: float | None = None) -> np.ndarray:
        """The final loss (mean of the last 50 steps; inf when diverged) at every seed."""
        return np.array([self.run(s, kind, threshold, lr).final_loss for s in self.seeds])

    def clipped_fractions(self, kind: str, threshold: float | None = None, lr: float | None = None) -> np.ndarray:
        """The fraction of steps clipped at every seed."""
        return np.array([self.run(s, kind, threshold, lr).clipped_fraction for s in self.seeds])

    def grid(self, seed: int) -> Grid:
        """The runs of one seed at the experiment's learning rate, as a :class:`Grid` (for the explorer)."""
        runs = {}
        for kind, threshold, lr in self.settings:
            if math.isclose(lr, self.cfg.lr):
                runs[kind, threshold] = self.run(seed, kind, threshold, lr)
        max_norms = tuple(sorted({t for k, t, r in self.settings if k == "norm" and math.isclose(r, self.cfg.lr)}))
        clip_factors = tuple(sorted({t for k, t, r in self.settings if k == "agc" and math.isclose(r, self.cfg.lr)}))
        return Grid(runs, max_norms, clip_factors, replace(self.cfg, seed=seed), self.n_params, self.seconds)


def train_sweep(settings: Sequence[tuple[str, float | None, float]], seeds: Sequence[int] = SEEDS,
                cfg: Config = CONFIG, jitter: float = 0.0) -> Sweep:
    r"""Train one RNN per (seed, setting), all at once; ``settings`` are ``(kind, threshold, lr)``.

    The models of one seed share their initialisation, training set and minibatches (seed
    :math:`s` uses ``replace(cfg, seed=s)``); only clipping and learning rate differ. Parameters
    are stacked along a leading dim of size K = seeds × settings, the forward pass runs all models
    with batched matrix products, and the sum of their losses is differentiated — each model's
    gradient depends on its own loss only. Clipping uses the formulas of the reference functions
    (:func:`_batched_clip`); the step is SGD with momentum, ``v = μ v + g; p -= lr v`` as
    ``torch.optim.SGD``. A model whose loss stops being finite is frozen; its later entries are NaN.

    ``jitter`` multiplies every initial weight of seed :math:`s` by :math:`1 + \text{jitter}\cdot\varepsilon`
    (:func:`stabletrain.perturb.jitter_`, its own generator seeded with :math:`s`): data, initial
    draws and minibatches stay the same, only the arithmetic starts from a slightly different point.
    The claims tests use it to show that a sentence is about the experiment, not about one CPU's
    rounding; the lesson runs with ``jitter = 0``.
    """
    start = time.perf_counter()
    settings = [(k, None if t is None else float(t), float(r)) for k, t, r in settings]
    for k, _, _ in settings:
        if k not in KINDS:
            raise ValueError(f"unknown clipping kind {k!r}; expected one of {KINDS}")
    seeds = tuple(int(s) for s in seeds)
    S, M = len(seeds), len(settings)
    K = S * M
    kind_ids = torch.tensor([KINDS.index(k) for k, _, _ in settings] * S)
    thresholds = torch.tensor([math.inf if t is None else t for _, t, _ in settings] * S)
    lrs = torch.tensor([r for _, _, r in settings] * S)
    inf = torch.full((K,), math.inf)
    steps, H, N = cfg.steps, cfg.hidden, cfg.batch_size

    with single_thread():
        tasks = [make_task(replace(cfg, seed=s)) for s in seeds]
        xs = torch.stack([x for x, _ in tasks])  # (S, n, T, 2)
        ys = torch.stack([y for _, y in tasks])
        models = [make_model(replace(cfg, seed=s)) for s in seeds]
        for s, m in zip(seeds, models):
            jitter_(list(m.parameters()), jitter, seed=s)
        names = [name for name, _ in models[0].named_parameters()]
        n_params = sum(p.numel() for p in models[0].parameters())
        params = [torch.stack([dict(m.named_parameters())[name].detach() for m in models])
                  .repeat_interleave(M, dim=0).clone().requires_grad_(True) for name in names]
        velocity = [torch.zeros_like(p) for p in params]
        agc_mask = [not name.startswith("readout") for name in names]
        clip_value = torch.where(kind_ids == _VALUE, thresholds / math.sqrt(n_params), inf)
        max_norm = torch.where(kind_ids == _NORM, thresholds, inf)
        clip_factor = torch.where(kind_ids == _AGC, thresholds, inf)
        index = {name: j for j, name in enumerate(names)}
        j_rec = index["recurrent.weight"]
        w_in, b_in = params[index["input.weight"]], params[index["input.bias"]]
        w_rec = params[j_rec]
        w_out, b_out = params[index["readout.weight"]], params[index["readout.bias"]]

        shape = (K, steps)
        losses, raw_norms, clipped_norms, cosines, w_rec_norms, rec_share, update_ratio = (
            np.full(shape, np.nan) for _ in range(7))
        clipped = np.zeros(shape, dtype=bool)
        diverged_at = np.full(K, -1)
        alive = torch.ones(K, dtype=torch.bool)
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        for step in range(steps):
            idx = torch.stack([torch.randperm(cfg.n_train, generator=g)[:N] for g in generators])  # (S, N)
            xb = torch.gather(xs, 1, idx[:, :, None, None].expand(S, N, cfg.T, 2)).repeat_interleave(M, dim=0)
            yb = torch.gather(ys, 1, idx[:, :, None]).repeat_interleave(M, dim=0)  # (K, N, 1)
            drive = torch.einsum("kntc,khc->tknh", xb, w_in) + b_in[None, :, None, :]
            h = xb.new_zeros(K, N, H)
            w_rec_t = w_rec.transpose(1, 2)
            for t in range(cfg.T):
                h = torch.tanh(torch.baddbmm(drive[t], h, w_rec_t))
            out = torch.baddbmm(b_out[:, None, :], h, w_out.transpose(1, 2))  # (K, N, 1)
            loss = ((out - yb) ** 2).mean(dim=(1, 2))
            finite = torch.isfinite(loss.detach())
            newly = alive & ~finite
            diverged_at[newly.numpy()] = step
            alive &= finite
            if not alive.any():
                break
            a = alive.numpy()
            losses[a, step] = loss.detach()[alive].numpy()
            grads = torch.autograd.grad(torch.where(alive, loss, 0.0).sum(), params)
            with torch.no_grad():
                w_rec_norms[a, step] = torch.linalg.matrix_norm(w_rec.double(), ord=2).numpy()[a]
                new, total, was = _batched_clip(grads, params, agc_mask, kind_ids, clip_value, max_norm, clip_factor)
                raw_flat = torch.cat([g.reshape(K, -1) for g in grads], dim=1).double()
                new_flat = torch.cat([g.reshape(K, -1) for g in new], dim=1).double()
                new_norm = torch.linalg.vector_norm(new_flat, dim=1)
                cos = (raw_flat * new_flat).sum(dim=1) / (total.double() * new_norm).clamp(min=1e-300)
                rec_sq = grads[j_rec].double().reshape(K, -1).pow(2).sum(dim=1)
                raw_norms[a, step] = total.numpy()[a]
                clipped_norms[a, step] = new_norm.numpy()[a]
                cosines[a, step] = cos.numpy()[a]
                clipped[a, step] = was.numpy()[a]
                rec_share[a, step] = (rec_sq / total.double().pow(2).clamp(min=1e-300)).numpy()[a]
                dead = ~alive
                for j, (p, v, g) in enumerate(zip(params, velocity, new)):
                    view = (K,) + (1,) * (p.ndim - 1)
                    v.mul_(cfg.momentum).add_(g)  # torch.optim.SGD: v = mu v + g; p = p - lr v
                    v.masked_fill_(dead.view(view), 0.0)
                    if j == j_rec:
                        w_before = torch.linalg.matrix_norm(p.double())
                        delta = torch.linalg.matrix_norm((lrs.view(view) * v).double())
                        update_ratio[a, step] = (delta / w_before.clamp(min=1e-300)).numpy()[a]
                    p.sub_(lrs.view(view) * v)
                    p.masked_fill_(dead.view(view), 0.0)  # frozen at 0 so its forward pass stays finite

    def by_seed(arr: np.ndarray) -> np.ndarray:
        return arr.reshape((S, M) + arr.shape[1:])

    return Sweep(settings, seeds, cfg, n_params, by_seed(losses), by_seed(raw_norms), by_seed(clipped_norms),
                 by_seed(cosines), by_seed(clipped), by_seed(w_rec_norms), by_seed(rec_share), by_seed(update_ratio),
                 by_seed(diverged_at), time.perf_counter() - start)



def experiment_settings(cfg: Config = CONFIG) -> list[tuple[str, float | None, float]]:
    """The lesson's settings: no clipping, the control (:data:`CONTROL_LR`, no clipping), value and
    norm clipping at every :data:`MAX_NORMS`, AGC at every :data:`CLIP_FACTORS`."""
    settings: list[tuple[str, float | None, float]] = [("none", None, cfg.lr), ("none", None, CONTROL_LR)]
    settings += [(kind, m, cfg.lr) for kind in ("value", "norm") for m in MAX_NORMS]
    settings += [("agc", lam, cfg.lr) for lam in CLIP_FACTORS]
    return settings


_EXPERIMENTS: dict[tuple, Sweep] = {}


def run_experiment(seeds: Sequence[int] = SEEDS, cfg: Config = CONFIG, jitter: float = 0.0) -> Sweep:
    """:func:`train_sweep` over :func:`experiment_settings` and ``seeds`` (a tuple of ints), computed
    once per process. ``jitter`` is the relative perturbation of the initial weights that the
    claims tests use (see :func:`train_sweep`); the lesson runs with 0."""
    key = (tuple(int(s) for s in seeds), cfg, float(jitter))
    if key not in _EXPERIMENTS:
        _EXPERIMENTS[key] = train_sweep(experiment_settings(cfg), key[0], cfg, jitter=key[2])
    return _EXPERIMENTS[key]

# ----------------------------------------------------------------------------------------------
# Figures of the experiment (median and range over the seeds; nothing is cut at a ceiling)


def _kind_style(kind: str) -> dict:
    return {"color": COLORS[kind], "linestyle": LINESTYLES[kind]}


def _setting_kind(sweep: Sweep, j: int) -> str:
    kind, _, lr = sweep.settings[j]
    return "control" if kind == "none" and not math.isclose(lr, sweep.cfg.lr) else kind


def setting_label(sweep: Sweep, j: int) -> str:
    """A legend label such as ``by global norm, max_norm = 2`` or ``control: lr = 0.025, no clipping``."""
    kind, threshold, lr = sweep.settings[j]
    if _setting_kind(sweep, j) == "control":
        return f"control: lr = {lr:g}, no clipping"
    if kind == "none":
        return f"no clipping, lr = {lr:g}"
    name = "λ" if kind == "agc" else "max_norm"
    return f"{LABELS[kind]}, {name} = {threshold:g}"


def _band(ax, values: np.ndarray, smooth: bool, **style_kw) -> None:
    """Median over the seeds (rows) as a line, min–max as a shaded band; NaN (diverged) ignored."""
    rows = np.array([_ema(v) for v in values]) if smooth else values
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med, lo, hi = np.nanmedian(rows, 0), np.nanmin(rows, 0), np.nanmax(rows, 0)
    steps = np.arange(rows.shape[1])
    ax.plot(steps, med, lw=2.2, **style_kw)
    ax.fill_between(steps, lo, hi, color=style_kw["color"], alpha=0.15, lw=0)


def _baseline(ax) -> None:
    ax.axhline(BASELINE_LOSS, color="0.45", lw=1.2, ls=(0, (1, 2)))
    ax.annotate("predicting the mean", (0.99, BASELINE_LOSS), xycoords=("axes fraction", "data"),
                ha="right", va="bottom", color="0.35")


@styled
def plot_seed_bands(sweep: Sweep, keys: Sequence[tuple[str, float | None, float | None]] | None = None) -> Figure:
    r"""Three panels over training, median (line) and range (band) over the seeds: the smoothed loss,
    the gradient norm before clipping, and :math:`\|W_\text{rec}\|_2` (Section 1's :math:`s`).

    ``keys`` are ``(kind, threshold, lr)`` settings of ``sweep`` (``lr=None``: the experiment's); by
    default no clipping, the control and norm clipping at :data:`MAX_NORM`. Log axes, scaled to
    the data: every value is drawn, however large.
    """
    if keys is None:
        keys = [("none", None, None), ("none", None, CONTROL_LR), ("norm", MAX_NORM, None)]
    fig = Figure(figsize=(15.0, 4.8), layout="constrained")
    axes = fig.subplots(1, 3)
    for kind, threshold, lr in keys:
        j = sweep.index(kind, threshold, lr)
        kw = dict(_kind_style(_setting_kind(sweep, j)), label=setting_label(sweep, j))
        _band(axes[0], sweep.losses[:, j], True, **kw)
        _band(axes[1], sweep.raw_norms[:, j], False, **kw)
        _band(axes[2], sweep.w_rec_norms[:, j], False, **kw)
    _baseline(axes[0])
    axes[0].set_ylabel("training loss (smoothed)")
    axes[0].set_title("Loss")
    axes[1].set_ylabel(r"$\|g\|_2$ before clipping")
    axes[1].set_title("Gradient norm per step")
    axes[1].axhline(MAX_NORM, color="0.3", lw=1.2, ls="--")
    axes[1].annotate(f"max_norm = {MAX_NORM:g}", (0.01, MAX_NORM), xycoords=("axes fraction", "data"),
                     va="bottom", color="0.3")
    axes[2].axhline(1.0, color="0.45", lw=1.2, ls=(0, (1, 2)))
    axes[2].set_ylabel(r"$\|W_\mathrm{rec}\|_2$")
    axes[2].set_title("Recurrent weights' spectral norm")
    for ax in axes:
        ax.set_yscale("log")
        ax.set_xlabel("step")
    axes[0].legend(loc="lower left")
    fig.suptitle(f"Median (line) and range (band) over {len(sweep.seeds)} seeds")
    return fig


@styled
def plot_update_ratio(sweep: Sweep, keys: Sequence[tuple[str, float | None, float | None]] | None = None) -> Figure:
    r"""The relative size of each step on the recurrent weights, :math:`\|\Delta W_\text{rec}\|/\|W_\text{rec}\|`,
    median and range over the seeds — the quantity AGC bounds unit by unit."""
    if keys is None:
        keys = [("none", None, None), ("none", None, CONTROL_LR), ("norm", MAX_NORM, None)]
    fig = Figure(figsize=(9.0, 4.6), layout="constrained")
    ax = fig.add_subplot()
    for kind, threshold, lr in keys:
        j = sweep.index(kind, threshold, lr)
        _band(ax, sweep.update_ratio[:, j], False, **_kind_style(_setting_kind(sweep, j)),
              label=setting_label(sweep, j))
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(r"$\|\Delta W_\mathrm{rec}\| \,/\, \|W_\mathrm{rec}\|$")
    ax.set_title(f"Update : weight ratio of $W_\\mathrm{{rec}}$ ({len(sweep.seeds)} seeds)")
    ax.legend(loc="upper right")
    return fig


def _final_stats(sweep: Sweep, kind: str, threshold: float | None, lr: float | None = None) -> tuple[float, float, float]:
    finals = sweep.final_losses(kind, threshold, lr)
    return float(np.median(finals)), float(np.min(finals)), float(np.max(finals))


@styled
def plot_threshold_sweep(sweep: Sweep) -> Figure:
    """Final loss against the threshold, median (markers) and range (bars) over the seeds:
    max_norm for value and norm clipping (left), λ for AGC (right); no clipping and the control
    as horizontal bands. A diverged run would count as inf and is named in the title."""
    fig = Figure(figsize=(13.5, 5.6), layout="constrained")
    ax_m, ax_l = fig.subplots(1, 2, sharey=True)

    def draw(ax, kind, xs):
        stats = np.array([_final_stats(sweep, kind, x) for x in xs])
        ax.errorbar(xs, stats[:, 0], yerr=[stats[:, 0] - stats[:, 1], stats[:, 2] - stats[:, 0]], capsize=4,
                    marker=style.MARKERS[STYLE_INDEX[kind]], ms=8, lw=2, label=LABELS[kind], **_kind_style(kind))

    max_norms = sorted({t for k, t, r in sweep.settings if k == "norm"})
    factors = sorted({t for k, t, r in sweep.settings if k == "agc"})
    draw(ax_m, "value", max_norms)
    draw(ax_m, "norm", max_norms)
    draw(ax_l, "agc", factors)
    for ax in (ax_m, ax_l):
        for kind, lr in (("none", None), ("control", CONTROL_LR)):
            med, lo, hi = _final_stats(sweep, "none", None, lr)
            ax.axhline(med, lw=1.5, **_kind_style(kind),
                       label=setting_label(sweep, sweep.index("none", None, lr)) + f": median (range {lo:.3g}–{hi:.3g})")
        ax.axhline(BASELINE_LOSS, color="0.45", lw=1.2, ls=(0, (1, 2)), label="predicting the mean")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.minorticks_off()
    ax_m.set_xticks(max_norms, [f"{m:g}" for m in max_norms])
    ax_l.set_xticks(factors, [f"{f:g}" for f in factors])
    ax_m.set_xlabel("max_norm (value clipping at max_norm / √P)")
    ax_m.set_ylabel(f"final loss (mean of the last {_TAIL} steps)")
    ax_m.set_title("Against max_norm")
    ax_l.set_xlabel("AGC clip factor λ")
    ax_l.set_title("Against λ (AGC)")
    # one legend under both panels: inside them it covered the lines and the bars
    handles, labels = ax_m.get_legend_handles_labels()
    extra = [(h, lab) for h, lab in zip(*ax_l.get_legend_handles_labels()) if lab not in labels]
    fig.legend(handles + [h for h, _ in extra], labels + [lab for _, lab in extra], loc="outside lower center",
               ncols=3, fontsize=style.MIN_FONT_PT)
    fig.suptitle(f"Final loss: median and range over {len(sweep.seeds)} seeds")
    return fig


@styled
def plot_clipping_stats(sweep: Sweep, keys: Sequence[tuple[str, float]]) -> Figure:
    """How often each method clips (left) and the mean cosine between the raw and the clipped
    gradient (right), median and range over the seeds, for the ``(kind, threshold)`` in ``keys``."""
    fig = Figure(figsize=(13.5, 4.6), layout="constrained")
    ax_frac, ax_cos = fig.subplots(1, 2)
    names = []
    for i, (kind, threshold) in enumerate(keys):
        j = sweep.index(kind, threshold)
        names.append(setting_label(sweep, j).replace(", ", "\n"))
        frac = sweep.clipped_fractions(kind, threshold)
        with np.errstate(all="ignore"):
            cos = np.nanmean(sweep.cosines[:, j], axis=1)
        for ax, vals in ((ax_frac, frac), (ax_cos, cos)):
            med = np.median(vals)
            ax.bar(i, med, color=COLORS[kind], alpha=0.8, hatch=["", "//", "..", "xx"][i % 4], edgecolor="black")
            ax.errorbar(i, med, yerr=[[med - vals.min()], [vals.max() - med]], color="black", capsize=5, lw=1.5)
    for ax in (ax_frac, ax_cos):
        ax.set_xticks(range(len(keys)), names)
    ax_frac.set_ylim(0, 1.05)
    ax_frac.set_ylabel("fraction of steps clipped")
    ax_frac.set_title("How often does clipping act?")
    ax_cos.set_ylim(0, 1.05)
    ax_cos.set_ylabel("mean cos(raw, clipped gradient)")
    ax_cos.set_title("Does clipping keep the direction?")
    fig.suptitle(f"Median (bar) and range (whiskers) over {len(sweep.seeds)} seeds")
    return fig


# ----------------------------------------------------------------------------------------------
# A 2-D loss surface with a cliff


def cliff_loss(xy: Tensor, height: float = 20.0, sharpness: float = 30.0) -> Tensor:
    r"""A 2-D loss with a cliff: a gentle bowl around :math:`(4, 0)` plus a plateau of ``height``
    that ends in a steep drop along the line :math:`x + 0.5y = 2`.

    .. math:: L(x, y) = 0.05(x-4)^2 + 0.5y^2 + H\,\bigl(1 - \sigma(k(x + 0.5y - 2))\bigr)

    ``xy`` has shape ``(..., 2)``. On the edge the gradient is about :math:`Hk/4 = 150` times
    larger than on the plateau.
    """
    x, y = xy[..., 0], xy[..., 1]
    return 0.05 * (x - 4) ** 2 + 0.5 * y**2 + height * (1 - torch.sigmoid(sharpness * (x + 0.5 * y - 2)))


def cliff_trajectory(max_norm: float | None, start: Sequence[float] = (0.0, 1.5), lr: float = 0.5,
                     steps: int = 60) -> np.ndarray:
    """Plain gradient descent on :func:`cliff_loss` from ``start``, with norm clipping at ``max_norm``
    (None: without). Returns the points visited, shape ``(steps + 1, 2)``."""
    p = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    points = [p.detach().clone()]
    for _ in range(steps):
        p.grad = None
        cliff_loss(p).backward()
        if max_norm is not None:
            st.clip_grad_norm_([p], max_norm)
        with torch.no_grad():
            p -= lr * p.grad
        points.append(p.detach().clone())
    return torch.stack(points).numpy()


@styled
def plot_cliff(trajectories: dict[str, np.ndarray]) -> Figure:
    """Contours of :func:`cliff_loss` and the trajectories (``{label: points}``). Points outside the
    drawn window are marked by an arrow at the edge with their coordinates, not cut silently."""
    fig = Figure(figsize=(10.0, 5.2), layout="constrained")
    ax = fig.add_subplot()
    xs, ys = np.linspace(-1, 6, 300), np.linspace(-2.5, 2.5, 200)
    grid = torch.tensor(np.stack(np.meshgrid(xs, ys), -1))
    z = cliff_loss(grid).numpy()
    cs = ax.contourf(xs, ys, np.log10(z + 1e-3), levels=20, cmap="Greys", alpha=0.6)
    fig.colorbar(cs, ax=ax, label=r"$\log_{10} L$")
    for i, (label, pts) in enumerate(trajectories.items()):
        kind = "none" if i == 0 else "norm"
        inside = (pts[:, 0] >= xs[0]) & (pts[:, 0] <= xs[-1]) & (pts[:, 1] >= ys[0]) & (pts[:, 1] <= ys[-1])
        first_out = np.argmin(inside) if not inside.all() else len(pts)
        shown = pts[:first_out]
        ax.plot(shown[:, 0], shown[:, 1], marker=style.MARKERS[i], ms=5, lw=2, label=label, **_kind_style(kind))
        if first_out < len(pts):
            end = pts[first_out]
            edge = (np.clip(end[0], xs[0], xs[-1]), np.clip(end[1], ys[0], ys[-1]))
            ax.annotate(f"step {first_out}: thrown to ({end[0]:.0f}, {end[1]:.0f}), off the plot",
                        xy=edge, xytext=(-260, -40), textcoords="offset points", color=COLORS[kind],
                        arrowprops={"arrowstyle": "->", "color": COLORS[kind], "lw": 1.5})
    ax.plot([4], [0], marker="*", ms=16, color="black", ls="none", label="minimum")
    ax.set_xlim(xs[0], xs[-1])
    ax.set_ylim(ys[0], ys[-1])
    ax.set_xlabel("$x$")
    ax.set_ylabel("$y$")
    ax.set_title("Gradient descent at a cliff, with and without norm clipping")
    ax.legend(loc="lower left")
    return fig


# ----------------------------------------------------------------------------------------------
# Clipping with momentum and Adam


def momentum_and_adam_numbers(lr: float = 0.1, max_norm: float = 1.0, spike: float = 1000.0) -> dict[str, float]:
    r"""The numbers of the momentum-and-Adam section.

    - ``sgd_step``: the step of plain SGD on a clipped gradient, at most ``lr * max_norm``.
    - ``momentum_step``: SGD with momentum 0.9 after 100 steps whose clipped gradient always points
      the same way: the velocity sums a geometric series, so the step approaches
      ``lr * max_norm / (1 - 0.9)``, ten times the plain bound.
    - ``adam_rescale_rel``: the largest relative difference between Adam's updates on a gradient
      sequence and on the same sequence multiplied by 1e-3 (a uniform rescale, which clipping at a
      fixed ratio would be): Adam divides it out.
    - ``adam_spike_raw`` / ``adam_spike_clipped``: the norm of Adam's update on a step whose
      gradient is ``spike`` times the 50 gradients of norm 1 before it, without and with clipping
      at ``max_norm``, relative to ``lr`` (a 10-entry parameter); ``adam_typical`` the median
      update before; ``adam_after_raw`` / ``adam_after_clipped`` the mean update over the 20
      ordinary steps after the spike: the spike's square sits in Adam's second moment and
      shrinks them, unless it was clipped.
    """
    out: dict[str, float] = {}
    g = torch.ones(4, dtype=torch.float64) * 2.5  # norm 5, clipped to max_norm every step
    clipped = g * min(1.0, max_norm / (g.norm().item() + _NORM_EPS))
    out["sgd_step"] = lr * clipped.norm().item()
    v = torch.zeros_like(g)
    for _ in range(100):
        v = 0.9 * v + clipped
    out["momentum_step"] = lr * v.norm().item()
    out["momentum_bound"] = lr * max_norm / (1 - 0.9)

    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(10, generator=gen, dtype=torch.float64) for _ in range(50)]
    grads = [gr / gr.norm() for gr in grads]

    def adam_updates(seq):
        p = torch.zeros(10, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.Adam([p], lr=lr)
        ups = []
        for gr in seq:
            before = p.detach().clone()
            p.grad = gr.clone()
            opt.step()
            ups.append(p.detach() - before)
        return ups

    a, b = adam_updates(grads), adam_updates([1e-3 * gr for gr in grads])
    out["adam_rescale_rel"] = max(((x - y).norm() / x.norm()).item() for x, y in zip(a, b))
    spike_grad = spike * grads[0]
    clipped_spike = spike_grad * min(1.0, max_norm / (spike_grad.norm().item() + _NORM_EPS))
    after = grads[1:21]  # the next 20 ordinary gradients
    raw_run = adam_updates(grads + [spike_grad] + after)
    clip_run = adam_updates(grads + [clipped_spike] + after)
    typical = np.median([u.norm().item() for u in a[10:]]) / lr
    out.update(adam_spike_raw=raw_run[50].norm().item() / lr, adam_spike_clipped=clip_run[50].norm().item() / lr,
               adam_typical=float(typical),
               adam_after_raw=float(np.mean([u.norm().item() for u in raw_run[51:]]) / lr),
               adam_after_clipped=float(np.mean([u.norm().item() for u in clip_run[51:]]) / lr))
    return out


# ----------------------------------------------------------------------------------------------
# Clipping in a real training loop (Section 7)


def demo_loop(step_fn: Callable, clip_fn: Callable, lr: float, max_norm: float, steps: int = 100, micro: int = 1,
              scaler: object | None = None, cfg: Config = CONFIG, jitter: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Train the experiment's RNN (seed ``cfg.seed``) for ``steps`` steps of ``step_fn``; return
    ``(losses, logged norms)``, one entry per step.

    Every step draws a minibatch of ``cfg.batch_size``, splits it into ``micro`` micro-batches and
    calls ``step_fn(model, optimizer, micro_batches, max_norm, clip_fn, scaler=scaler)`` (the
    signature of Exercise 4's ``train_step``). The loss logged is that of the whole minibatch
    before the step. The norms ``step_fn`` returns are kept as tensors and stacked at the end: no
    ``.item()`` per step, which on a GPU would wait for the device every step. ``jitter`` as in
    :func:`train_rnn`.
    """
    x, y = make_task(cfg)
    model = make_model(cfg)
    jitter_(list(model.parameters()), jitter, seed=cfg.seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=cfg.momentum)
    generator = torch.Generator().manual_seed(cfg.seed)
    losses, norms = [], []
    for _ in range(steps):
        idx = torch.randperm(cfg.n_train, generator=generator)[: cfg.batch_size]
        batches = list(zip(x[idx].chunk(micro), y[idx].chunk(micro)))
        with torch.no_grad():
            losses.append(nn.functional.mse_loss(model(x[idx]), y[idx]).item())
        norms.append(step_fn(model, optimizer, batches, max_norm, clip_fn, scaler=scaler).detach())
    return np.array(losses), torch.stack(norms).numpy()


def functions_in_the_loop(step_fn: Callable, clip_fn: Callable, pick_fn: Callable, cfg: Config = CONFIG,
                          jitter: float = 0.0) -> dict[str, float | np.ndarray]:
    """Section 7's cell: log 100 steps of the control (:data:`CONTROL_LR`, no clipping), take
    ``pick_fn(norms, 0.95)`` as max_norm, then train 100 steps at ``cfg.lr`` with that threshold —
    plainly, and with 4 micro-batches and a ``GradScaler`` (init scale 1024).

    Returns ``threshold``, ``plain_clipped`` / ``amp_clipped`` (the fraction of steps whose norm
    exceeded the threshold), ``plain_final`` / ``amp_final`` (the mean loss of the last 20 steps),
    ``first_diff`` (the largest relative difference of the two runs' norms over the first 20
    steps) and the arrays ``plain_norms``, ``amp_norms``, ``warmup``.
    """
    _, warmup = demo_loop(step_fn, clip_fn, CONTROL_LR, math.inf, cfg=cfg, jitter=jitter)
    threshold = pick_fn(warmup, 0.95)
    plain_losses, plain_norms = demo_loop(step_fn, clip_fn, cfg.lr, threshold, cfg=cfg, jitter=jitter)
    amp_losses, amp_norms = demo_loop(step_fn, clip_fn, cfg.lr, threshold, micro=4, cfg=cfg, jitter=jitter,
                                      scaler=torch.amp.GradScaler("cpu", init_scale=1024.0))
    return {"threshold": float(threshold), "warmup": warmup, "plain_norms": plain_norms, "amp_norms": amp_norms,
            "plain_clipped": float(np.mean(plain_norms > threshold)), "amp_clipped": float(np.mean(amp_norms > threshold)),
            "plain_final": float(plain_losses[-20:].mean()), "amp_final": float(amp_losses[-20:].mean()),
            "first_diff": float(np.max(np.abs(plain_norms[:20] - amp_norms[:20]) / plain_norms[:20]))}


def loop_numbers(seeds: Sequence[int] = (0,), jitter: float = 0.0, cfg: Config = CONFIG) -> dict[int, dict]:
    """:func:`functions_in_the_loop` with the reference ``train_step``, ``pick_max_norm`` and torch's
    ``clip_grad_norm_`` at every seed of ``seeds`` (``{seed: numbers}``): what Section 7's cell
    prints once the exercises are solved, for the claims tests."""
    from stabletrain.clipping import pick_max_norm, train_step

    with single_thread():
        return {int(s): functions_in_the_loop(train_step, nn.utils.clip_grad_norm_, pick_max_norm,
                                              replace(cfg, seed=int(s)), jitter)
                for s in seeds}


# ----------------------------------------------------------------------------------------------
# The explorer


class ClippingExplorer:
    """An ipywidgets explorer over a precomputed :class:`Sweep`: pick a seed, a clipping kind and a threshold.

    Every update only redraws (the runs are already trained): the three panels' line data are
    replaced, and the figure, laid out once at construction, is drawn with Agg and encoded as PNG
    into an ``ipywidgets.Image`` — no pyplot, no inline backend, about 0.1 s. ``last_update_s``
    holds the duration of the latest update. Display it with ``display(explorer.widget)`` or by
    leaving ``explorer.widget`` as a cell's last expression.

    Panels: the smoothed loss (the unclipped run and the control for reference), the gradient norm
    per step before and after clipping (with max_norm for norm clipping), and the cosine between
    the raw and the clipped gradient. The axes' limits cover every run of the sweep: no line is
    ever cut off at the top. The figure is drawn in the course style (fonts of 12 pt and more).
    """

    def __init__(self, sweep: Sweep, kind: str = "norm", max_norm: float = MAX_NORM, clip_factor: float = 0.05,
                 seed: int | None = None, dpi: int = 96) -> None:
        import ipywidgets as widgets

        self.sweep = sweep
        self.grids = {s: sweep.grid(s) for s in sweep.seeds}
        grid = self.grids[sweep.seeds[0]]
        self.grid = grid
        self.dpi = dpi
        wstyle = {"description_width": "initial"}
        self.seed = widgets.Dropdown(options=list(sweep.seeds), value=sweep.seeds[0] if seed is None else seed,
                                     description="seed", style=wstyle, layout={"width": "130px"})
        self.kind = widgets.Dropdown(options=[(LABELS[k], k) for k in KINDS], value=kind, description="clipping",
                                     style=wstyle)
        self.max_norm = widgets.SelectionSlider(options=[(f"{m:g}", m) for m in grid.max_norms],
                                                value=grid["norm", max_norm].threshold, description="max_norm",
                                                continuous_update=True, style=wstyle)
        self.clip_factor = widgets.SelectionSlider(options=[(f"{c:g}", c) for c in grid.clip_factors],
                                                   value=grid["agc", clip_factor].threshold, description="λ (AGC)",
                                                   continuous_update=True, style=wstyle)
        self.image = widgets.Image(format="png")
        self.summary = widgets.HTML()
        controls = widgets.HBox([self.seed, self.kind, self.max_norm, self.clip_factor])
        self.widget = widgets.VBox([controls, self.image, self.summary])
        self.last_update_s = math.nan
        with style.course_style():
            self._build_figure()
        for control in (self.seed, self.kind, self.max_norm, self.clip_factor):
            control.observe(lambda _change: self.update(), names="value")
        self.update()

    def _limits(self, arrays: list[np.ndarray]) -> tuple[float, float]:
        values = np.concatenate([a[np.isfinite(a) & (a > 0)] for a in arrays])
        return float(values.min()) / 1.5, float(values.max()) * 1.5

    def _build_figure(self) -> None:
        sw = self.sweep
        # 12.2 x 4.3 in: on a 1280x720 slide at 96 dpi its 12-pt text is 12 pt (stgrade.slides)
        fig = Figure(figsize=(12.2, 4.3), dpi=self.dpi, layout="constrained")
        ax_loss, ax_norm, ax_cos = fig.subplots(1, 3)
        steps = np.arange(sw.cfg.steps)
        nan = np.full(len(steps), np.nan)
        (self._reference,) = ax_loss.plot(steps, nan, lw=1.5, alpha=0.8, label=LABELS["none"], **_kind_style("none"))
        (self._control,) = ax_loss.plot(steps, nan, lw=1.5, alpha=0.8, label=f"control (lr = {CONTROL_LR:g})",
                                        **_kind_style("control"))
        (self._loss,) = ax_loss.plot(steps, nan, lw=2.4)
        # the baseline in the legend, not as a label on the line, where the curves run over it
        ax_loss.axhline(BASELINE_LOSS, color="0.45", lw=1.2, ls=(0, (1, 2)), label="predicting the mean")
        ax_loss.set_yscale("log")
        ax_loss.set_ylim(*self._limits([np.array([_ema(v) for v in sw.losses.reshape(-1, sw.cfg.steps)])]))
        ax_loss.set_xlabel("step")
        ax_loss.set_ylabel("loss (smoothed)")
        ax_loss.set_title("training loss")
        (self._raw,) = ax_norm.plot(steps, nan, color="0.55", lw=1.2, label="before clipping")
        (self._clipped,) = ax_norm.plot(steps, nan, lw=1.6, label="after clipping")
        self._threshold = ax_norm.axhline(1.0, color="black", ls="--", lw=1.3, label="max_norm")
        ax_norm.set_yscale("log")
        ax_norm.set_ylim(*self._limits([sw.raw_norms, sw.clipped_norms]))
        ax_norm.set_xlabel("step")
        ax_norm.set_ylabel(r"$\|g\|_2$")
        ax_norm.set_title("gradient norm per step")
        (self._cos,) = ax_cos.plot(steps, nan, lw=1.3)
        ax_cos.set_ylim(-0.05, 1.05)
        ax_cos.set_xlabel("step")
        ax_cos.set_ylabel("cos(raw, clipped)")
        ax_cos.set_title("direction kept?")
        for ax in (ax_loss, ax_norm, ax_cos):
            ax.set_xlim(-0.02 * len(steps), 1.02 * len(steps))
        # Lay the figure out once, then freeze it: redraws skip the layout. The setting is named in
        # the summary line under the picture.
        ax_loss.legend(loc="lower left")
        ax_norm.legend(loc="upper right")
        fig.draw_without_rendering()
        fig.set_layout_engine("none")
        self.figure = fig
        self._canvas = FigureCanvasAgg(fig)

    def _render_png(self) -> bytes:
        """Draw the figure with Agg and encode it as PNG (about twice as fast as ``savefig``)."""
        return style.canvas_png(self._canvas)

    def current_run(self) -> Run:
        """The run that the controls select."""
        kind = self.kind.value
        threshold = self.clip_factor.value if kind == "agc" else self.max_norm.value
        return self.grids[self.seed.value][kind, threshold]

    def update(self) -> float:
        """Redraw for the current controls; return (and store in ``last_update_s``) the seconds it took."""
        start = time.perf_counter()
        run = self.current_run()
        kind = run.kind
        self.grid = self.grids[self.seed.value]
        self.max_norm.disabled = kind not in ("value", "norm")
        self.clip_factor.disabled = kind != "agc"
        color, dash = COLORS[kind], LINESTYLES[kind]
        self._reference.set_ydata(_ema(self.grid.none.losses))
        control = self.sweep.run(self.seed.value, "none", None, CONTROL_LR)
        self._control.set_ydata(_ema(control.losses))
        self._loss.set_ydata(_ema(run.losses))
        self._loss.set_color(color)
        self._loss.set_linestyle(dash)
        self._raw.set_ydata(run.raw_norms)
        self._clipped.set_ydata(run.clipped_norms)
        self._clipped.set_color(color)
        self._threshold.set_visible(kind in ("value", "norm"))
        if kind in ("value", "norm"):
            self._threshold.set_ydata([run.threshold, run.threshold])
        self._cos.set_ydata(run.cosines)
        self._cos.set_color(color)
        extra = ""
        if kind == "value":
            extra = f", so clip_value = max_norm/√P = {value_clip_for(run.threshold, self.grid.n_params):.3g}"
        self.image.value = self._render_png()
        final = "diverged at step %d" % run.diverged_at if run.diverged_at is not None else f"{run.final_loss:.4f}"
        self.summary.value = (
            f"<b>seed {self.seed.value}, {run.label}</b>{extra}: final loss {final} &nbsp;|&nbsp; steps clipped "
            f"{run.clipped_fraction:.0%} &nbsp;|&nbsp; mean cos(raw, clipped) {np.nanmean(run.cosines):.3f}"
            f" &nbsp;|&nbsp; largest ‖W_rec‖₂ {np.nanmax(run.w_rec_norms):.3g}"
            f" &nbsp;|&nbsp; <i>control: {control.final_loss:.4f}; predicting the mean: {BASELINE_LOSS:.3f}</i>"
        )
        self.last_update_s = time.perf_counter() - start
        return self.last_update_s
