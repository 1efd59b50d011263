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
  has to redraw. :func:`plot_loss_and_norms`, :func:`plot_clipping_stats` and
  :func:`plot_threshold_sweep` draw the results; :class:`ClippingExplorer` is the widget.

Clipping in the experiments uses the reference implementations (``stabletrain.clip_grad_norm_``
and friends), so every demonstration works before the exercises are solved; :func:`train_rnn`
takes ``clip_fn=`` to run a student's own function instead.

Every figure is a detached :class:`matplotlib.figure.Figure` (not registered with pyplot): the
notebook displays it by leaving it as a cell's last expression (``%matplotlib inline``, run in the
setup cell, registers the PNG formatter for figures), and nothing accumulates in pyplot.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor, nn

import stabletrain as st
from stabletrain.data import make_sequence_task
from stabletrain.models import ExplodingRNN

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
    "plot_loss_and_norms",
    "plot_clipping_stats",
    "plot_threshold_sweep",
    "ClippingExplorer",
]

#: the clipping methods of the experiment, in display order
KINDS: tuple[str, ...] = ("none", "value", "norm", "agc")
LABELS: dict[str, str] = {
    "none": "no clipping",
    "value": "by value",
    "norm": "by global norm",
    "agc": "adaptive (AGC)",
}
COLORS: dict[str, str] = {"none": "0.35", "value": "tab:orange", "norm": "tab:blue", "agc": "tab:green"}
#: the max_norm values the explorer offers (value clipping uses max_norm / sqrt(P), see value_clip_for)
MAX_NORMS: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
#: the AGC clip factors lambda the explorer offers
CLIP_FACTORS: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
#: the mean squared error of always predicting E[y] = 1 on the adding problem: Var y = 2/12
BASELINE_LOSS = 2.0 / 12.0

_NORM_EPS = 1e-6  # torch's coef = max_norm / (total + 1e-6)
_AGC_EPS = 1e-3  # the floor on a unit's weight norm (NFNets' default)
_AGC_MIN_GRAD_NORM = 1e-6
_SMOOTH = 0.9  # EMA factor of the loss curves (about 10 steps)
_TAIL = 50  # the final loss is the mean over this many last steps


# ----------------------------------------------------------------------------------------------
# Small helpers


@contextmanager
def single_thread() -> Iterator[None]:
    """Run the body with one intra-op torch thread, then restore the previous setting.

    The models here are tiny: with two or more threads, each of thousands of small ops pays for
    synchronisation, which is slower, and much slower on a busy machine. One thread also makes
    the floating-point reductions, hence the chaotic training runs, reproducible.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


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


def plot_jacobian_norms(norms: dict[float, np.ndarray]) -> Figure:
    """Log-scale curves of ‖∂h_t/∂h_0‖ against t, one per recurrent scale s (``{s: norms}``)."""
    fig = Figure(figsize=(7.5, 4.2), layout="constrained")
    ax = fig.add_subplot()
    cmap = {s: c for s, c in zip(sorted(norms), ["tab:purple", "tab:blue", "tab:orange", "tab:red", "tab:brown"])}
    for s in sorted(norms):
        ax.semilogy(np.arange(len(norms[s])), norms[s], lw=2.2, color=cmap.get(s), label=f"s = {s:g}")
    ax.axhline(1.0, color="0.6", lw=1, ls=":")
    ax.set_xlabel("time steps back, t")
    ax.set_ylabel(r"$\|\partial h_t / \partial h_0\|_2$")
    ax.set_title("Gradients through a tanh RNN: a product of t Jacobians")
    ax.legend(title="recurrent scale", frameon=False)
    ax.grid(True, which="major", alpha=0.3)
    return fig


# ----------------------------------------------------------------------------------------------
# Value vs norm clipping, in two dimensions


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
    ax.fill(c * np.cos(t), c * np.sin(t), color="tab:blue", alpha=0.08)
    ax.plot(c * np.cos(t), c * np.sin(t), color="tab:blue", lw=1, label=f"‖g‖ ≤ {c:g}")
    ax.plot([-c, c, c, -c, -c], [-c, -c, c, c, -c], color="tab:orange", lw=1, ls="--", label=f"|g_i| ≤ {c:g}")
    arrows = [
        (raw, "0.2", "raw gradient g"),
        (by_value, "tab:orange", f"clipped by value (cos = {cosine(raw, by_value):.3f})"),
        (by_norm, "tab:blue", f"clipped by norm (cos = {cosine(raw, by_norm):.3f})"),
    ]
    for vec, color, label in arrows:
        ax.annotate("", xy=(vec[0].item(), vec[1].item()), xytext=(0, 0),
                    arrowprops={"arrowstyle": "-|>", "color": color, "lw": 2.2, "mutation_scale": 16})
        ax.plot([], [], color=color, lw=2.2, label=label)
    ax.set_xlim(-1.25 * c, max(1.12 * raw[0].item(), 1.25 * c))
    ax.set_ylim(-1.25 * c, max(1.12 * raw[1].item(), 1.25 * c))
    ax.set_aspect("equal")
    ax.axhline(0, color="0.8", lw=0.8)
    ax.axvline(0, color="0.8", lw=0.8)
    ax.set_xlabel("$g_1$")
    ax.set_ylabel("$g_2$")
    ax.set_title("Clipping by value bends the gradient; by norm only shortens it")
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=9.5, frameon=False)
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
    ax.scatter(w_norms[clipped], g_after[clipped], s=14, color="tab:green",
               label=f"after AGC ({clipped.sum()} of {len(w_norms)} units clipped)")
    lo = min(w_norms.min(), eps) / 2
    hi = w_norms.max() * 2
    xs = np.geomspace(lo, hi, 200)
    ax.plot(xs, clip_factor * np.maximum(xs, eps), color="tab:green", lw=1.8,
            label=rf"$\|G_i\| = \lambda\,\max(\|W_i\|, \epsilon)$, $\lambda$ = {clip_factor:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"weight norm of the unit, $\|W_i\|$")
    ax.set_ylabel(r"gradient norm of the unit, $\|G_i\|$")
    ax.set_title("AGC clips each unit relative to its own weights")
    ax.legend(fontsize=9, frameon=False, loc="lower right")
    ax.grid(True, which="major", alpha=0.3)
    return fig


# ----------------------------------------------------------------------------------------------
# The experiment: an RNN on the adding problem, trained with and without clipping


@dataclass(frozen=True)
class Config:
    """The experiment's settings: the adding problem, the RNN and SGD with momentum.

    The defaults are chosen so that, at ``seed=0``, training without clipping diverges within
    a few dozen steps while clipping by global norm at max_norm = 1 trains well below
    :data:`BASELINE_LOSS`.
    """

    T: int = 10  # sequence length of the adding problem
    hidden: int = 16  # RNN width
    n_train: int = 512  # training sequences
    batch_size: int = 64  # minibatch per step, drawn without replacement
    steps: int = 300
    lr: float = 0.2
    momentum: float = 0.9
    recurrent_scale: float = 1.0
    seed: int = 0


CONFIG = Config()


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
              clip_fn: Callable[[list[nn.Parameter]], object] | None = None) -> Run:
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

    Returns:
        A :class:`Run` of ``cfg.steps`` entries; training stops at the first non-finite loss.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown clipping kind {kind!r}; expected one of {KINDS}")
    with single_thread():
        x, y = make_task(cfg)
        model = make_model(cfg)
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
    r"""Train, at once, one RNN per setting: no clipping, by value and by norm at every max_norm, AGC at every λ.

    The :math:`K = 1 + 2\,|\text{max\_norms}| + |\text{clip\_factors}|` models start from the same
    initialisation and see the same minibatches; only the clipping differs. Their parameters are
    stacked along a new leading dim of size K (``(K, *shape)``), the forward pass runs them together
    with batched matrix products, and the sum of their losses is differentiated — each model's
    gradient depends on its own loss only. Each model then gets clipped by its own rule
    (:func:`_batched_clip`, the formulas of the reference functions) and takes an SGD-with-momentum
    step. A model whose loss stops being finite is frozen and its remaining entries are NaN.

    Per model this computes what :func:`train_rnn` computes, up to floating-point rounding (which
    a diverging or chaotic run amplifies over many steps).
    """
    start = time.perf_counter()
    settings: list[tuple[str, float | None]] = [("none", None)]
    settings += [("value", float(m)) for m in max_norms] + [("norm", float(m)) for m in max_norms]
    settings += [("agc", float(lam)) for lam in clip_factors]
    K = len(settings)
    kind_ids = torch.tensor([KINDS.index(kind) for kind, _ in settings])
    inf = torch.full((K,), math.inf)
    thresholds = torch.tensor([math.inf if t is None else t for _, t in settings])

    with single_thread():
        x, y = make_task(cfg)
        model = make_model(cfg)
        names = [name for name, _ in model.named_parameters()]
        n_params = sum(p.numel() for p in model.parameters())
        params = [p.detach().unsqueeze(0).repeat(K, *([1] * p.ndim)).requires_grad_(True) for p in model.parameters()]
        velocity = [torch.zeros_like(p) for p in params]
        agc_mask = [not name.startswith("readout") for name in names]
        clip_value = torch.where(kind_ids == _VALUE, thresholds / math.sqrt(n_params), inf)
        max_norm = torch.where(kind_ids == _NORM, thresholds, inf)
        clip_factor = torch.where(kind_ids == _AGC, thresholds, inf)
        index = {name: j for j, name in enumerate(names)}
        w_in, b_in = params[index["input.weight"]], params[index["input.bias"]]
        w_rec = params[index["recurrent.weight"]]
        w_out, b_out = params[index["readout.weight"]], params[index["readout.bias"]]

        steps = cfg.steps
        losses, raw_norms, clipped_norms, cosines = (np.full((K, steps), np.nan) for _ in range(4))
        clipped = np.zeros((K, steps), dtype=bool)
        diverged_at: list[int | None] = [None] * K
        alive = torch.ones(K, dtype=torch.bool)
        generator = torch.Generator().manual_seed(cfg.seed)
        for step in range(steps):
            idx = torch.randperm(cfg.n_train, generator=generator)[: cfg.batch_size]
            xb, yb = x[idx], y[idx]
            # forward, all models at once: (T, K, N, H) input drive, then T recurrent steps
            drive = torch.einsum("ntc,khc->tknh", xb, w_in) + b_in[None, :, None, :]
            h = xb.new_zeros(K, xb.shape[0], cfg.hidden)
            w_rec_t = w_rec.transpose(1, 2)
            for t in range(cfg.T):
                h = torch.tanh(torch.baddbmm(drive[t], h, w_rec_t))
            out = torch.baddbmm(b_out[:, None, :], h, w_out.transpose(1, 2))  # (K, N, 1)
            loss = ((out - yb) ** 2).mean(dim=(1, 2))  # (K,)
            finite = torch.isfinite(loss.detach())
            for k in torch.nonzero(alive & ~finite).flatten().tolist():
                diverged_at[k] = step
            alive &= finite
            if not alive.any():
                break
            losses[alive.numpy(), step] = loss.detach()[alive].numpy()
            grads = torch.autograd.grad(torch.where(alive, loss, 0.0).sum(), params)
            with torch.no_grad():
                new, total, was = _batched_clip(grads, params, agc_mask, kind_ids, clip_value, max_norm, clip_factor)
                raw_flat = torch.cat([g.reshape(K, -1) for g in grads], dim=1).double()
                new_flat = torch.cat([g.reshape(K, -1) for g in new], dim=1).double()
                new_norm = torch.linalg.vector_norm(new_flat, dim=1)
                cos = (raw_flat * new_flat).sum(dim=1) / (total.double() * new_norm).clamp(min=1e-300)
                a = alive.numpy()
                raw_norms[a, step] = total.numpy()[a]
                clipped_norms[a, step] = new_norm.numpy()[a]
                cosines[a, step] = cos.numpy()[a]
                clipped[a, step] = was.numpy()[a]
                for p, v, g in zip(params, velocity, new):
                    dead_view = (~alive).view((K,) + (1,) * (p.ndim - 1))
                    v.mul_(cfg.momentum).add_(g)  # torch.optim.SGD: v = mu v + g; p = p - lr v
                    v.masked_fill_(dead_view, 0.0)
                    p.sub_(cfg.lr * v)
                    p.masked_fill_(dead_view, 0.0)  # frozen at 0 so its forward pass stays finite

    runs = {}
    for k, (kind, threshold) in enumerate(settings):
        runs[kind, threshold] = Run(kind, threshold, losses[k], raw_norms[k], clipped_norms[k], cosines[k],
                                    clipped[k], diverged_at[k])
    return Grid(runs, tuple(float(m) for m in max_norms), tuple(float(c) for c in clip_factors), cfg, n_params,
                time.perf_counter() - start)


# ----------------------------------------------------------------------------------------------
# Figures of the experiment

_LOSS_YLIM = (5e-3, 1e3)
_NORM_YLIM = (1e-2, 1e4)
_LOSS_CEIL = _LOSS_YLIM[1] * 0.6  # curves that leave the axes run along here, just under the top
_NORM_CEIL = _NORM_YLIM[1] * 0.6


def _draw_loss(ax, run: Run, **style) -> None:
    """The smoothed loss of ``run``, held just under the top edge once it leaves the axes, and a
    cross where it overflowed (became inf or NaN)."""
    steps = np.arange(len(run.losses))
    ceiling = _LOSS_CEIL
    (line,) = ax.plot(steps, np.clip(_ema(run.losses), None, ceiling), **style)
    if run.diverged_at is not None:
        last = run.diverged_at
        ax.plot([last], [ceiling], marker="X", ms=10, color=line.get_color(), ls="none")
        ax.annotate(f"inf/NaN at step {last}", (last, ceiling), xytext=(9, -3), textcoords="offset points",
                    fontsize=9, color=line.get_color(), va="top")


def _style_loss_axes(ax) -> None:
    ax.axhline(BASELINE_LOSS, color="0.5", lw=1, ls=":")
    ax.annotate("predicting the mean", (0.99, BASELINE_LOSS * 0.95), xycoords=("axes fraction", "data"),
                ha="right", va="top", fontsize=8, color="0.4")
    ax.set_yscale("log")
    ax.set_ylim(*_LOSS_YLIM)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (MSE, smoothed)")
    ax.grid(True, which="major", alpha=0.3)


def plot_loss_and_norms(runs: Sequence[Run], max_norm: float | None = None,
                        norm_kinds: Sequence[str] = ("none", "norm")) -> Figure:
    """Two panels: the smoothed loss of each run, and the gradient norm before clipping per step.

    The right panel shows the runs whose kind is in ``norm_kinds`` (by default no clipping and
    norm clipping, so the picture stays readable); ``max_norm`` draws the threshold there.
    """
    fig = Figure(figsize=(12.5, 4.4), layout="constrained")
    ax_loss, ax_norm = fig.subplots(1, 2)
    for run in runs:
        _draw_loss(ax_loss, run, color=COLORS[run.kind], lw=2.0, label=run.label)
        if run.kind in norm_kinds:
            ax_norm.plot(np.arange(len(run.raw_norms)), np.clip(run.raw_norms, None, _NORM_CEIL), lw=1.3,
                         color=COLORS[run.kind], alpha=0.9, label=run.label)
    _style_loss_axes(ax_loss)
    ax_loss.set_title("Loss: without clipping, training blows up")
    ax_loss.legend(fontsize=9, frameon=False, loc="upper right", bbox_to_anchor=(1.0, 0.9))
    if max_norm is not None:
        ax_norm.axhline(max_norm, color="black", ls="--", lw=1.3, label=f"max_norm = {max_norm:g}")
    ax_norm.set_yscale("log")
    ax_norm.set_ylim(*_NORM_YLIM)
    ax_norm.set_xlabel("step")
    ax_norm.set_ylabel(r"gradient norm before clipping, $\|g\|_2$")
    ax_norm.set_title("Gradient norm per step (what clip_grad_norm_ returns)")
    ax_norm.legend(fontsize=9, frameon=False, loc="upper right")
    ax_norm.grid(True, which="major", alpha=0.3)
    return fig


def plot_clipping_stats(runs: Sequence[Run]) -> Figure:
    """Two panels: the fraction of steps each run clipped, and the cosine between raw and clipped gradients."""
    fig = Figure(figsize=(12.5, 4.2), layout="constrained")
    ax_frac, ax_cos = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.6]})
    names = [run.label.replace(", ", "\n") for run in runs]
    fractions = [run.clipped_fraction for run in runs]
    bars = ax_frac.bar(range(len(runs)), fractions, color=[COLORS[r.kind] for r in runs])
    for bar, frac in zip(bars, fractions):
        ax_frac.annotate(f"{frac:.0%}", (bar.get_x() + bar.get_width() / 2, frac), xytext=(0, 3),
                         textcoords="offset points", ha="center", fontsize=10)
    ax_frac.set_xticks(range(len(runs)), names, fontsize=8.5)
    ax_frac.set_ylim(0, 1.12)
    ax_frac.set_ylabel("fraction of steps clipped")
    ax_frac.set_title("How often does clipping act?")
    for run in runs:
        ax_cos.plot(np.arange(len(run.cosines)), run.cosines, color=COLORS[run.kind], lw=1.3, alpha=0.9,
                    label=f"{run.label}: mean {np.nanmean(run.cosines):.3f}")
    ax_cos.set_ylim(-0.05, 1.05)
    ax_cos.set_xlabel("step")
    ax_cos.set_ylabel("cos(raw gradient, clipped gradient)")
    ax_cos.set_title("Does clipping keep the gradient's direction?")
    ax_cos.legend(fontsize=9, frameon=False, loc="lower left")
    ax_cos.grid(True, alpha=0.3)
    return fig


def plot_threshold_sweep(grid: Grid) -> Figure:
    """Final loss against the threshold: max_norm for value and norm clipping (left), λ for AGC (right).

    A run that overflowed is drawn as a cross at the top edge; so is the unclipped run's level
    when it overflowed (a dashed line otherwise).
    """
    fig = Figure(figsize=(12.5, 4.2), layout="constrained")
    ax_m, ax_l = fig.subplots(1, 2, sharey=True)
    top = _LOSS_CEIL

    def draw(ax, xs, kind):
        finals = np.array([grid[kind, x].final_loss for x in xs])
        shown = np.minimum(finals, top)
        ax.plot(xs, shown, "-o", color=COLORS[kind], lw=2, ms=6, label=LABELS[kind])
        overflowed = ~np.isfinite(finals)
        if overflowed.any():
            ax.plot(np.array(xs)[overflowed], shown[overflowed], "X", color=COLORS[kind], ms=11, ls="none")

    for kind in ("value", "norm"):
        draw(ax_m, grid.max_norms, kind)
    draw(ax_l, grid.clip_factors, "agc")
    none = grid.none
    for ax in (ax_m, ax_l):
        ax.set_xscale("log")
        ax.axhline(BASELINE_LOSS, color="0.5", lw=1, ls=":")
        ax.annotate("predicting the mean", (0.99, BASELINE_LOSS * 0.95), xycoords=("axes fraction", "data"),
                    ha="right", va="top", fontsize=8, color="0.4")
        if none.diverged_at is None:
            ax.axhline(none.final_loss, color=COLORS["none"], lw=1.2, ls="--", label=LABELS["none"])
        else:
            ax.annotate(f"no clipping: inf/NaN at step {none.diverged_at}", (0.02, 0.95), xycoords="axes fraction",
                        va="top", fontsize=9, color=COLORS["none"])
        ax.set_yscale("log")
        ax.set_ylim(*_LOSS_YLIM)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=9, frameon=False, loc="upper left", bbox_to_anchor=(0.0, 0.88))
    ax_m.set_xlabel("max_norm (value clipping at max_norm / √P)")
    ax_m.set_ylabel(f"final loss (mean of the last {_TAIL} steps)")
    ax_m.set_title("Final loss against max_norm")
    ax_l.set_xlabel("AGC clip factor λ")
    ax_l.set_title("Final loss against λ (AGC)")
    return fig


# ----------------------------------------------------------------------------------------------
# The explorer


class ClippingExplorer:
    """An ipywidgets explorer over a precomputed :class:`Grid`: pick a clipping kind and a threshold.

    Every update only redraws (the runs are already trained): the three panels' line data are
    replaced, and the figure, laid out once at construction, is drawn with Agg and encoded as PNG
    into an ``ipywidgets.Image`` — no pyplot, no inline backend, about 0.1 s. ``last_update_s``
    holds the duration of the latest update. Display it with ``display(explorer.widget)`` or by
    leaving ``explorer.widget`` as a cell's last expression.

    Panels: the smoothed loss (the unclipped run in grey for reference), the gradient norm per
    step before and after clipping (with max_norm for norm clipping), and the cosine between the
    raw and the clipped gradient.
    """

    def __init__(self, grid: Grid, kind: str = "norm", max_norm: float = 1.0, clip_factor: float = 0.1,
                 dpi: int = 80) -> None:
        import ipywidgets as widgets

        self.grid = grid
        self.dpi = dpi
        style = {"description_width": "initial"}
        self.kind = widgets.Dropdown(options=[(LABELS[k], k) for k in KINDS], value=kind, description="clipping",
                                     style=style)
        self.max_norm = widgets.SelectionSlider(options=[(f"{m:g}", m) for m in grid.max_norms],
                                                value=grid["norm", max_norm].threshold, description="max_norm",
                                                continuous_update=True, style=style)
        self.clip_factor = widgets.SelectionSlider(options=[(f"{c:g}", c) for c in grid.clip_factors],
                                                   value=grid["agc", clip_factor].threshold, description="λ (AGC)",
                                                   continuous_update=True, style=style)
        self.image = widgets.Image(format="png")
        self.summary = widgets.HTML()
        controls = widgets.HBox([self.kind, self.max_norm, self.clip_factor])
        self.widget = widgets.VBox([controls, self.image, self.summary])
        self.last_update_s = math.nan
        self._build_figure()
        for control in (self.kind, self.max_norm, self.clip_factor):
            control.observe(lambda _change: self.update(), names="value")
        self.update()

    def _build_figure(self) -> None:
        fig = Figure(figsize=(13.0, 3.8), dpi=self.dpi, layout="constrained")
        ax_loss, ax_norm, ax_cos = fig.subplots(1, 3)
        steps = np.arange(self.grid.cfg.steps)
        none = self.grid.none
        _draw_loss(ax_loss, none, color=COLORS["none"], lw=1.5, alpha=0.6, label=LABELS["none"])
        self._reference = ax_loss.lines[0]
        (self._loss,) = ax_loss.plot(steps, np.full(len(steps), np.nan), lw=2.2)
        self._diverged = ax_loss.plot([], [], marker="X", ms=11, ls="none", clip_on=False)[0]
        _style_loss_axes(ax_loss)
        ax_loss.set_title("training loss")
        (self._raw,) = ax_norm.plot(steps, np.full(len(steps), np.nan), color="0.55", lw=1, label="before clipping")
        (self._clipped,) = ax_norm.plot(steps, np.full(len(steps), np.nan), lw=1.4, label="after clipping")
        self._threshold = ax_norm.axhline(1.0, color="black", ls="--", lw=1.3, label="max_norm")
        ax_norm.set_yscale("log")
        ax_norm.set_ylim(*_NORM_YLIM)
        ax_norm.set_xlabel("step")
        ax_norm.set_ylabel(r"$\|g\|_2$")
        ax_norm.set_title("gradient norm per step")
        ax_norm.grid(True, which="major", alpha=0.3)
        (self._cos,) = ax_cos.plot(steps, np.full(len(steps), np.nan), lw=1.3)
        ax_cos.set_ylim(-0.05, 1.05)
        ax_cos.set_xlabel("step")
        ax_cos.set_ylabel("cos(raw, clipped)")
        ax_cos.set_title("direction kept?")
        ax_cos.grid(True, alpha=0.3)
        for ax in (ax_loss, ax_norm, ax_cos):
            ax.set_xlim(-0.02 * len(steps), 1.02 * len(steps))
        # Lay the figure out once (with room for a title), then freeze it: redraws skip the layout.
        fig.suptitle("placeholder", fontsize=12)
        fig.draw_without_rendering()
        fig.set_layout_engine("none")
        self.figure = fig
        self._canvas = FigureCanvasAgg(fig)

    def _render_png(self) -> bytes:
        """Draw the figure with Agg and encode it as PNG (about twice as fast as ``savefig``)."""
        from PIL import Image

        self._canvas.draw()
        width, height = self._canvas.get_width_height()
        image = Image.frombuffer("RGBA", (width, height), self._canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
        buffer = io.BytesIO()
        image.save(buffer, format="png", compress_level=1)
        return buffer.getvalue()

    def current_run(self) -> Run:
        """The run that the controls select."""
        kind = self.kind.value
        threshold = self.clip_factor.value if kind == "agc" else self.max_norm.value
        return self.grid[kind, threshold]

    def update(self) -> float:
        """Redraw for the current controls; return (and store in ``last_update_s``) the seconds it took."""
        start = time.perf_counter()
        run = self.current_run()
        kind = run.kind
        self.max_norm.disabled = kind not in ("value", "norm")
        self.clip_factor.disabled = kind != "agc"
        color = COLORS[kind]
        self._loss.set_ydata(np.clip(_ema(run.losses), None, _LOSS_CEIL))
        self._loss.set_color(color)
        self._loss.set_label(run.label)
        if run.diverged_at is not None:
            self._diverged.set_data([run.diverged_at], [_LOSS_CEIL])
            self._diverged.set_color(color)
        else:
            self._diverged.set_data([], [])
        self._raw.set_ydata(np.clip(run.raw_norms, None, _NORM_CEIL))
        self._clipped.set_ydata(np.clip(run.clipped_norms, None, _NORM_CEIL))
        self._clipped.set_color(color)
        self._threshold.set_visible(kind in ("value", "norm"))
        if kind in ("value", "norm"):
            self._threshold.set_ydata([run.threshold, run.threshold])
        self._cos.set_ydata(run.cosines)
        self._cos.set_color(color)
        ax_loss, ax_norm = self.figure.axes[:2]
        ax_loss.legend(handles=[self._reference, self._loss], fontsize=8.5, frameon=False, loc="lower left")
        handles = [self._raw, self._clipped] + ([self._threshold] if kind in ("value", "norm") else [])
        ax_norm.legend(handles=handles, fontsize=8.5, frameon=False, loc="upper right")
        extra = ""
        if kind == "value":
            extra = f", so clip_value = max_norm/√P = {value_clip_for(run.threshold, self.grid.n_params):.3g}"
        self.figure.suptitle(run.label + extra, fontsize=12)
        self.image.value = self._render_png()
        final = "diverged at step %d" % run.diverged_at if run.diverged_at is not None else f"{run.final_loss:.4f}"
        self.summary.value = (
            f"<b>{run.label}</b>: final loss {final} &nbsp;|&nbsp; steps clipped "
            f"{run.clipped_fraction:.0%} &nbsp;|&nbsp; mean cos(raw, clipped) {np.nanmean(run.cosines):.3f}"
            f" &nbsp;|&nbsp; <i>predicting the mean: {BASELINE_LOSS:.3f}</i>"
        )
        self.last_update_s = time.perf_counter() - start
        return self.last_update_s
