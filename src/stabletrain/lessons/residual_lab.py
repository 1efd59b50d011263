r"""Lesson 06's laboratory: deep networks batched over seeds, the residual stream, BN against LN,
the capstone trainer, figures and an explorer.

Every experiment runs several seeds *at once*: the parameters of all seeds are stacked along a
leading axis and every layer is one batched matrix product (``torch.baddbmm``), so five 50-layer
networks cost about as much as one. Nothing here calls ``torch.nn.LayerNorm`` or
``torch.nn.functional.layer_norm`` (the lesson's answer keys): the norm is written out with tensor
operations.

The network (``depth`` blocks of width ``width``, a Linear ``embed`` from the input, a Linear
``out`` to the classes), block ``l`` with weight :math:`W_l`, bias :math:`b_l`, norm :math:`N_l`
(layer norm with learnable γ, β, or the identity) and branch gain :math:`a_l`:

- plain: :math:`h_{l+1} = W_l\,\mathrm{relu}(N_l(h_l)) + b_l`;
- residual, pre-norm: :math:`h_{l+1} = h_l + a_l \odot (W_l\,\mathrm{relu}(N_l(h_l)) + b_l)`;
- residual, post-norm: :math:`h_{l+1} = N_l\big(h_l + a_l \odot (W_l\,\mathrm{relu}(h_l) + b_l)\big)`.

The branch :math:`f(z) = W\,\mathrm{relu}(z)` with Kaiming's :math:`W \sim \mathcal N(0, 2/D)` has gain 1:
:math:`\operatorname{Var} f(z) = D \cdot \tfrac2D \cdot \mathrm E[\mathrm{relu}(z)^2] = \operatorname{Var} z`.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from ..data import make_spirals
from ..perturb import jitter_
from stabletrain import style
from ..style import COLORS, LINESTYLES, styled

SEEDS = (0, 1, 2, 3, 4)
_EPS = 1e-5


def _layer_norm(h: Tensor, gamma: Tensor | None = None, beta: Tensor | None = None) -> Tensor:
    """Layer norm over the last axis with tensor operations (biased variance, eps inside the root)."""
    var, mean = torch.var_mean(h, dim=-1, keepdim=True, correction=0)
    out = (h - mean) * torch.rsqrt(var + _EPS)
    if gamma is not None and beta is not None:
        return torch.addcmul(beta, out, gamma)
    if gamma is not None:
        out = out * gamma
    if beta is not None:
        out = out + beta
    return out


# ----------------------------------------------------------------------------------------------
# A deep network, batched over seeds


@dataclass(frozen=True)
class CapstoneConfig:
    """How the deep network is built and trained (the capstone's answer is one of these, as a dict).

    - ``init``: ``"default"`` (PyTorch's Linear: :math:`U(\\pm 1/\\sqrt{D})`, Var :math:`1/(3D)`),
      ``"kaiming"`` (:math:`\\mathcal N(0, 2/D)`, gain 1 through ReLU), ``"xavier"``
      (:math:`\\mathcal N(0, 1/D)`, half of Kaiming's variance) or ``"small"`` (a tenth of Kaiming's std);
    - ``residual``: add a skip connection around every block;
    - ``norm``: ``"layer"`` or ``"none"``; ``placement``: ``"pre"`` or ``"post"`` (residual only);
    - ``scaling``: ``"none"``, ``"gpt2"`` (every block's W and b times :math:`1/\\sqrt{L}` at
      initialization) or ``"zero_gamma"`` (a learnable gain vector :math:`a_l` per branch, starting
      at 0);
    - ``clip``: ``None`` or ``max_norm`` for the global gradient norm (of each seed's network).
    """

    init: str = "default"
    residual: bool = False
    norm: str = "none"
    placement: str = "pre"
    scaling: str = "none"
    clip: float | None = None


#: the deep network's size and training (the capstone's task)
DEPTH, WIDTH, CLASSES, N_PER_CLASS = 50, 16, 3, 50
LR, MOMENTUM, STEPS = 0.05, 0.9, 100
DEFAULTS = CapstoneConfig()


def make_task() -> tuple[Tensor, Tensor]:
    """Three interleaved spirals, 150 points (the same for every seed); full-batch training.

    The points are shifted by (0.3, 0.2) so that none sits at the origin: with zero biases an input
    of 0 would give a row of zeros, which a layer norm divides by sqrt(eps).
    """
    x, y = make_spirals(N_PER_CLASS, classes=CLASSES, noise=0.2, seed=0)
    return x + torch.tensor([0.3, 0.2]), y


def _init_std(init: str, fan_in: int, gain2: float = 2.0) -> float | None:
    if init == "kaiming":
        return math.sqrt(gain2 / fan_in)
    if init == "xavier":
        return math.sqrt(1.0 / fan_in)
    if init == "small":
        return 0.1 * math.sqrt(gain2 / fan_in)
    if init == "default":
        return None
    raise ValueError(f"unknown init {init!r}")


def _linear(generator: torch.Generator, seeds: int, layers: int | None, fan_in: int, fan_out: int,
            init: str, gain2: float = 2.0) -> tuple[Tensor, Tensor]:
    shape = (seeds,) + ((layers,) if layers is not None else ()) + (fan_in, fan_out)
    bshape = shape[:-2] + (1, fan_out)
    bound = 1.0 / math.sqrt(fan_in)
    std = _init_std(init, fan_in, gain2)
    if std is None:  # PyTorch's default Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias
        w = (torch.rand(shape, generator=generator) * 2 - 1) * bound
        b = (torch.rand(bshape, generator=generator) * 2 - 1) * bound
    else:
        w = torch.randn(shape, generator=generator) * std
        b = torch.zeros(bshape)
    return w, b


def init_params(config: CapstoneConfig, seeds: Sequence[int], depth: int = DEPTH, width: int = WIDTH,
                in_features: int = 2, classes: int = CLASSES) -> dict[str, Tensor]:
    """Parameters of ``len(seeds)`` networks, stacked on axis 0, each drawn from its own seed."""
    per_seed = []
    for seed in seeds:
        g = torch.Generator().manual_seed(int(seed))
        p = {}
        p["w_in"], p["b_in"] = _linear(g, 1, None, in_features, width, config.init, gain2=1.0)
        p["w"], p["b"] = _linear(g, 1, depth, width, width, config.init)
        p["w_out"], p["b_out"] = _linear(g, 1, None, width, classes, config.init, gain2=1.0)
        per_seed.append(p)
    params = {k: torch.cat([p[k] for p in per_seed]) for k in per_seed[0]}
    n = len(seeds)
    if config.residual and config.scaling == "gpt2":
        params["w"] = params["w"] / math.sqrt(depth)
        params["b"] = params["b"] / math.sqrt(depth)
    if config.residual and config.scaling == "zero_gamma":
        params["gain"] = torch.zeros(n, depth, 1, width)
    if config.norm == "layer":
        params["gamma"] = torch.ones(n, depth, 1, width)
        params["beta"] = torch.zeros(n, depth, 1, width)
    return params


def forward(params: dict[str, Tensor], config: CapstoneConfig, x: Tensor,
            keep: list[Tensor] | None = None) -> Tensor:
    """Logits of every seed's network, shape ``(seeds, N, classes)``; ``keep`` collects the stream
    after every block (``depth + 1`` tensors, the embedding first)."""
    seeds, depth = params["w"].shape[:2]
    h = torch.baddbmm(params["b_in"], x.expand(seeds, *x.shape), params["w_in"])
    layer_norm = config.norm == "layer"
    post = config.residual and config.placement == "post"
    if keep is not None:
        keep.append(h)
    for l in range(depth):
        w, b = params["w"][:, l], params["b"][:, l]
        if layer_norm and not post:
            z = _layer_norm(h, params["gamma"][:, l], params["beta"][:, l])
        else:
            z = h
        f = torch.baddbmm(b, torch.relu(z), w)
        if "gain" in params:
            f = f * params["gain"][:, l]
        if not config.residual:
            h = f
        elif post:
            h = h + f
            if layer_norm:
                h = _layer_norm(h, params["gamma"][:, l], params["beta"][:, l])
        else:
            h = h + f
        if keep is not None:
            keep.append(h)
    return torch.baddbmm(params["b_out"], h, params["w_out"])


def _per_seed_loss(logits: Tensor, y: Tensor) -> Tensor:
    logp = torch.log_softmax(logits, dim=-1)
    return -logp.gather(-1, y.expand(logits.shape[0], -1).unsqueeze(-1)).squeeze(-1).mean(dim=-1)


@dataclass
class TrainResult:
    """What :func:`train_capstone` measured; arrays have the seeds on axis 0.

    - ``losses``: ``(seeds, steps)`` training loss at every step (NaN from a divergence on);
    - ``final_losses``: ``(seeds,)`` the loss of the full training set after the last step;
    - ``layer_grad_norms``: ``(seeds, depth)`` ‖∂loss/∂W_l‖ of every block at the first step;
    - ``grad_norms``: ``(seeds, steps)`` global gradient norm before clipping;
    - ``clipped``: ``(seeds, steps)`` whether clipping acted.
    """

    config: CapstoneConfig
    seeds: tuple[int, ...]
    losses: np.ndarray
    final_losses: np.ndarray
    layer_grad_norms: np.ndarray
    grad_norms: np.ndarray
    clipped: np.ndarray
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def passed(self, threshold: float) -> int:
        return int(np.sum(np.isfinite(self.final_losses) & (self.final_losses < threshold)))


def train_capstone(config: CapstoneConfig | dict, seeds: Sequence[int] = SEEDS, steps: int = STEPS,
                   depth: int = DEPTH, width: int = WIDTH, lr: float = LR, momentum: float = MOMENTUM,
                   jitter: float = 0.0) -> TrainResult:
    """Train one network per seed, all at once, with SGD (momentum) on the full spiral data set.

    Each step: forward, per-seed cross-entropy, backward, per-seed global gradient norm, clipping
    with ``config.clip`` (each seed's gradients scaled by ``min(1, clip / (norm + 1e-6))``), step.
    A seed whose loss is not finite stops there (its later losses are NaN, its final loss inf).
    ``jitter`` multiplies every initial parameter by ``1 + jitter·ε`` (:func:`stabletrain.perturb.jitter_`,
    its own generator): the claims tests' perturbed arithmetic.
    """
    if isinstance(config, dict):
        config = CapstoneConfig(**config)
    started = time.perf_counter()
    seeds = tuple(int(s) for s in seeds)
    x, y = make_task()
    with torch.random.fork_rng(devices=[]):
        params = init_params(config, seeds, depth, width)
    jitter_(params.values(), jitter)
    for p in params.values():
        p.requires_grad_(True)
    velocity = {k: torch.zeros_like(p) for k, p in params.items()}
    n = len(seeds)
    losses = np.full((n, steps), np.nan)
    grad_norms = np.full((n, steps), np.nan)
    clipped = np.zeros((n, steps), dtype=bool)
    alive = torch.ones(n, dtype=torch.bool)
    layer_norms = np.full((n, depth), np.nan)
    for step in range(steps):
        per_seed = _per_seed_loss(forward(params, config, x), y)
        finite = torch.isfinite(per_seed).detach() & alive
        alive = finite
        values = per_seed.detach().numpy()
        losses[finite.numpy(), step] = values[finite.numpy()]
        if not bool(alive.any()):
            break
        grads = torch.autograd.grad(per_seed[alive].sum(), list(params.values()), allow_unused=True)
        grads = {k: (torch.zeros_like(p) if g is None else torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0))
                 for (k, p), g in zip(params.items(), grads)}
        mask = alive.float()
        total = torch.sqrt(sum(g.flatten(1).square().sum(dim=1) for g in grads.values()))
        grad_norms[alive.numpy(), step] = total[alive].numpy()
        if step == 0:
            layer_norms[:] = torch.linalg.vector_norm(grads["w"], dim=(2, 3)).numpy()
        coef = torch.ones(n)
        if config.clip is not None:
            coef = torch.clamp(config.clip / (total + 1e-6), max=1.0)
            clipped[:, step] = (coef < 1).numpy() & alive.numpy()
        with torch.no_grad():
            for k, p in params.items():
                shape = (n,) + (1,) * (p.dim() - 1)
                g = grads[k] * (coef * mask).view(shape)
                velocity[k].mul_(momentum).add_(g)
                p.sub_(lr * velocity[k])
    with torch.no_grad():
        final = _per_seed_loss(forward(params, config, x), y).numpy().astype(np.float64)
    final = np.where(np.isfinite(final) & alive.numpy(), final, np.inf)
    return TrainResult(config, seeds, losses, final, layer_norms, grad_norms, clipped,
                       time.perf_counter() - started)


def train_many(configs: dict[str, CapstoneConfig], seeds: Sequence[int] = SEEDS, jitter: float = 0.0,
               **kwargs) -> dict[str, TrainResult]:
    """:func:`train_capstone` for every named configuration on the same seeds (the claims tests'
    experiment: one call per arithmetic variant)."""
    return {name: train_capstone(cfg, seeds=seeds, jitter=jitter, **kwargs) for name, cfg in configs.items()}


# ----------------------------------------------------------------------------------------------
# The residual stream at initialization


def stream_at_init(depth: int, placement: str, scaling: str = "none", seeds: Sequence[int] = SEEDS,
                   width: int = 128, batch: int = 256, jitter: float = 0.0) -> dict[str, np.ndarray]:
    """The stream's variance after every block, and every block's weight-gradient norm, at init.

    Blocks ``h + a·W relu(norm(h))`` (pre), ``norm(h + a·W relu(h))`` (post) or ``h + a·W relu(h)``
    (none), with Kaiming weights (gain 1), no bias, :math:`a` from ``scaling``, unit-variance
    Gaussian input, and the loss ``sum(h_L · r) / sqrt(N)`` for a fixed random ``r``. ``jitter``
    perturbs the weights as in :func:`train_capstone`.

    Returns ``{"variance": (seeds, depth + 1), "grad_norms": (seeds, depth)}``.
    """
    n = len(seeds)
    ws, xs, rs = [], [], []
    for seed in seeds:
        g = torch.Generator().manual_seed(int(seed) + 1000)
        ws.append(torch.randn(depth, width, width, generator=g) * math.sqrt(2.0 / width))
        xs.append(torch.randn(batch, width, generator=g))
        rs.append(torch.randn(batch, width, generator=g))
    w = torch.stack(ws)
    jitter_(w, jitter)
    w.requires_grad_(True)
    x, r = torch.stack(xs), torch.stack(rs)
    alpha = {"none": 1.0, "gpt2": 1.0 / math.sqrt(depth), "zero_gamma": 0.0}[scaling]
    h, stream = x, [x]
    for l in range(depth):
        if placement == "pre":
            h = h + alpha * torch.bmm(torch.relu(_layer_norm(h)), w[:, l])
        elif placement == "post":
            h = _layer_norm(h + alpha * torch.bmm(torch.relu(h), w[:, l]))
        else:
            h = h + alpha * torch.bmm(torch.relu(h), w[:, l])
        stream.append(h)
    loss = (h * r).sum() / math.sqrt(batch)
    (grad,) = torch.autograd.grad(loss, w)
    variance = torch.stack([s.detach().flatten(1).var(dim=1) for s in stream], dim=1)
    return {"variance": variance.numpy().astype(np.float64),
            "grad_norms": torch.linalg.vector_norm(grad, dim=(2, 3)).numpy().astype(np.float64)}


def streams_many(specs: Sequence[tuple[int, str, str]], seeds: Sequence[int] = SEEDS, jitter: float = 0.0,
                 **kwargs) -> dict[tuple[int, str, str], dict[str, np.ndarray]]:
    """:func:`stream_at_init` for every ``(depth, placement, scaling)`` on the same seeds."""
    return {(d, p, s): stream_at_init(d, p, s, seeds, jitter=jitter, **kwargs) for d, p, s in specs}


# ----------------------------------------------------------------------------------------------
# Batch norm against layer norm: a sample's output and its batchmates


def batchmate_dependence(batch_sizes: Sequence[int] = (1, 2, 4, 8, 16, 32, 64, 128, 256),
                         seeds: Sequence[int] = SEEDS, features: int = 16, draws: int = 64) -> dict[str, np.ndarray]:
    """How much one sample's normalized output changes when only its batchmates change.

    For each seed a population of features (means and scales of their own) and one probe sample;
    for each batch size B, ``draws`` batches made of the probe and B − 1 fresh batchmates. Batch
    norm (training mode, batch statistics) and layer norm normalize the batch; the spread is the
    standard deviation of the probe's output over the draws, averaged over features. At B = 1 batch
    norm has nothing to average over: its output is 0 (torch raises ValueError instead); reported
    as NaN. Also the RMS difference between batch norm with batch statistics and with the
    population's (the train/eval gap).

    Returns ``{"batch_sizes", "bn_spread", "ln_spread", "bn_gap"}``, spreads of shape
    ``(seeds, len(batch_sizes))``.
    """
    sizes = np.asarray(batch_sizes)
    bn_spread = np.full((len(seeds), len(sizes)), np.nan)
    ln_spread = np.zeros((len(seeds), len(sizes)))
    bn_gap = np.full((len(seeds), len(sizes)), np.nan)
    for i, seed in enumerate(seeds):
        g = torch.Generator().manual_seed(int(seed) + 2000)
        mu = torch.randn(features, generator=g) * 2
        sigma = torch.exp(torch.randn(features, generator=g) * 0.5)
        probe = mu + sigma * torch.randn(features, generator=g)
        pop_out = (probe - mu) / torch.sqrt(sigma**2 + _EPS)
        for j, b in enumerate(sizes):
            mates = mu + sigma * torch.randn(draws, int(b) - 1, features, generator=g)
            batch = torch.cat([probe.expand(draws, 1, features), mates], dim=1)  # (draws, B, F)
            ln_out = _layer_norm(batch)[:, 0]
            ln_spread[i, j] = ln_out.std(dim=0, correction=0).mean().item()
            if b < 2:
                continue
            mean = batch.mean(dim=1, keepdim=True)
            var = (batch - mean).square().mean(dim=1, keepdim=True)
            bn_out = ((batch - mean) / torch.sqrt(var + _EPS))[:, 0]
            bn_spread[i, j] = bn_out.std(dim=0, correction=0).mean().item()
            bn_gap[i, j] = (bn_out - pop_out).square().mean().sqrt().item()
    return {"batch_sizes": sizes, "bn_spread": bn_spread, "ln_spread": ln_spread, "bn_gap": bn_gap}


# ----------------------------------------------------------------------------------------------
# Figures


def _band(ax, x, values: np.ndarray, i: int, label: str, log: bool = True) -> None:
    """Median line and min-max band over the seeds (axis 0)."""
    v = np.where(np.isfinite(values), values, np.nan)
    with warnings.catch_warnings():  # a step after every seed diverged is all NaN: not drawn
        warnings.simplefilter("ignore", RuntimeWarning)
        med, lo, hi = np.nanmedian(v, axis=0), np.nanmin(v, axis=0), np.nanmax(v, axis=0)
    ax.plot(x, med, color=COLORS[i], linestyle=LINESTYLES[i], label=label)
    ax.fill_between(x, lo, hi, color=COLORS[i], alpha=0.18, lw=0)
    if log:
        ax.set_yscale("log")


@styled
def plot_training(results: dict[str, TrainResult], threshold: float | None = None, title: str = "") -> Figure:
    """Left: gradient norm of every block's weight at the first step; right: the loss per step.
    Median over seeds with the min–max band."""
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    ax_g, ax_l = fig.subplots(1, 2)
    floored = False
    for i, (label, res) in enumerate(results.items()):
        depth = res.layer_grad_norms.shape[1]
        floored |= bool(np.any(res.layer_grad_norms < 1e-30))
        _band(ax_g, np.arange(1, depth + 1), np.maximum(res.layer_grad_norms, 1e-30), i, label)
        diverged = int(np.sum(~np.isfinite(res.final_losses)))
        if diverged:
            steps = [int(np.argmax(~np.isfinite(row))) for row in res.losses if not np.isfinite(row).all()]
            label += f" (diverged on {diverged} of {len(res.final_losses)} seeds, by step {max(steps)})"
        _band(ax_l, np.arange(res.losses.shape[1]), res.losses, i, label, log=False)
    if floored:
        ax_g.text(0.02, 0.02, "gradients that underflow to 0 drawn at 1e-30", transform=ax_g.transAxes,
                  fontsize=12, va="bottom")
    ax_g.set_xlabel("block l (1 = nearest the input)")
    ax_g.set_ylabel(r"$\|\partial \mathrm{loss}/\partial W_l\|$ at step 0")
    ax_g.set_title("gradient norm per layer")
    ax_l.set_xlabel("step")
    ax_l.set_ylabel("training loss")
    ax_l.set_title("loss (median, min–max over seeds)")
    ax_l.axhline(math.log(CLASSES), color="0.5", lw=1, ls=":", label=f"chance, ln {CLASSES}")
    if threshold is not None:
        ax_l.axhline(threshold, color="black", lw=1, ls="--", label=f"threshold {threshold}")
    ax_l.set_ylim(0, 2.0)
    ax_l.text(0.99, 0.99, "losses above 2 not shown", transform=ax_l.transAxes, ha="right", va="top", fontsize=12)
    ax_l.legend(loc="lower left")
    if title:
        fig.suptitle(title)
    fig.set_label("Two panels: gradient norm of every layer's weight at initialization on a log scale, and the "
                  "training loss over steps, median and range over seeds, for each network compared.")
    return fig


@styled
def plot_stream(results: dict[str, dict[str, np.ndarray]], predictions: dict[str, np.ndarray]) -> Figure:
    """Measured stream variance per block (median and range) with the prediction as dots."""
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    ax_v, ax_g = fig.subplots(1, 2)
    for i, (label, res) in enumerate(results.items()):
        depth = res["grad_norms"].shape[1]
        _band(ax_v, np.arange(depth + 1), res["variance"], i, label)
        ax_v.plot(np.arange(depth + 1), predictions[label], ls="none", marker="o", ms=4, color=COLORS[i])
        _band(ax_g, np.arange(1, depth + 1), res["grad_norms"], i, label)
    ax_v.set_xlabel("blocks l")
    ax_v.set_ylabel("Var of the stream")
    ax_v.set_title("stream variance (lines: measured; dots: predicted)")
    ax_g.set_xlabel("block l")
    ax_g.set_ylabel(r"$\|\partial \mathrm{loss}/\partial W_l\|$")
    ax_g.set_title("gradient norm per block at init")
    ax_v.legend(loc="upper left")
    fig.set_label("Two panels on log scales: the variance of the residual stream after each block, measured (lines, "
                  "median and range over seeds) and predicted (dots), and the weight-gradient norm of each block.")
    return fig


@styled
def plot_batchmates(dep: dict[str, np.ndarray]) -> Figure:
    """Spread of one sample's output over its batchmates, BN against LN, by batch size."""
    fig = Figure(figsize=(8, 4.4), layout="constrained")
    ax = fig.subplots()
    sizes = dep["batch_sizes"]
    _band(ax, sizes, dep["bn_spread"], 0, "batch norm: spread over batchmates")
    _band(ax, sizes, dep["bn_gap"], 1, "batch norm: batch vs population statistics (RMS)")
    ax.plot(sizes[1:], 1 / np.sqrt(sizes[1:]), color=COLORS[2], ls=LINESTYLES[2], lw=1.2, label=r"$1/\sqrt{B}$")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size B")
    ax.set_ylabel("difference in the output")
    ax.set_title("layer norm: exactly 0 at every B (not drawable on a log scale)\nbatch norm at B = 1: undefined")
    ax.legend(loc="lower left")
    fig.set_label("Log-log plot against batch size: how much batch norm's output for one sample changes with its "
                  "batchmates, and its distance from the population-statistics output, both falling like one over "
                  "root B; layer norm's is zero at every batch size.")
    return fig


# ----------------------------------------------------------------------------------------------
# The explorer: depth x placement x scaling


EXPLORER_DEPTHS = (2, 4, 8, 16, 32, 64)
PLACEMENTS = ("pre", "post", "none")
SCALINGS = ("none", "gpt2", "zero_gamma")


def precompute_streams(depths: Sequence[int] = EXPLORER_DEPTHS, seeds: Sequence[int] = SEEDS,
                       width: int = 48, batch: int = 32,
                       jitter: float = 0.0) -> dict[tuple[int, str, str], dict[str, np.ndarray]]:
    """:func:`stream_at_init` for every (depth, placement, scaling) the explorer offers."""
    return {(d, p, s): stream_at_init(d, p, s, seeds, width, batch, jitter)
            for d in depths for p in PLACEMENTS for s in SCALINGS}


class ResidualExplorer:
    """An ipywidgets explorer over precomputed streams: depth, norm placement and branch scaling.

    Two panels: the stream's variance per block (median and range over seeds, with the prediction
    of :func:`stabletrain.residual.residual_stream_variance`), and each block's gradient norm.
    A slider move only replaces line data and re-encodes a PNG (``last_update_s`` holds the time).
    """

    def __init__(self, streams: dict, predict, depth: int = 16, placement: str = "pre", scaling: str = "none",
                 dpi: int = 80) -> None:
        import ipywidgets as widgets

        self.streams, self.predict, self.dpi = streams, predict, dpi
        depths = sorted({d for d, _, _ in streams})
        self.depth = widgets.SelectionSlider(options=depths, value=depth, description="depth L")
        self.placement = widgets.Dropdown(options=list(PLACEMENTS), value=placement, description="norm")
        self.scaling = widgets.Dropdown(options=list(SCALINGS), value=scaling, description="branch scale")
        self.image = widgets.Image(format="png")
        self.summary = widgets.HTML()
        self.widget = widgets.VBox([widgets.HBox([self.depth, self.placement, self.scaling]), self.image,
                                    self.summary])
        self.last_update_s = math.nan
        self._build()
        for control in (self.depth, self.placement, self.scaling):
            control.observe(lambda _change: self.update(), names="value")
        self.update()

    def _build(self) -> None:
        fig = Figure(figsize=(11, 3.8), dpi=self.dpi, layout="constrained")
        self.ax_v, self.ax_g = fig.subplots(1, 2)
        (self._med,) = self.ax_v.plot([], [], color=COLORS[2], label="measured (median)")
        (self._lo,) = self.ax_v.plot([], [], color=COLORS[2], lw=0.8, ls=":", label="min / max over seeds")
        (self._hi,) = self.ax_v.plot([], [], color=COLORS[2], lw=0.8, ls=":")
        (self._pred,) = self.ax_v.plot([], [], ls="none", marker="o", ms=4, color=COLORS[1], label="predicted")
        (self._grad,) = self.ax_g.plot([], [], color=COLORS[3], marker=".", label="median")
        (self._glo,) = self.ax_g.plot([], [], color=COLORS[3], lw=0.8, ls=":")
        (self._ghi,) = self.ax_g.plot([], [], color=COLORS[3], lw=0.8, ls=":")
        from matplotlib.ticker import LogLocator, NullFormatter

        for ax in (self.ax_v, self.ax_g):
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(base=10, numticks=6))
            ax.yaxis.set_minor_formatter(NullFormatter())
        self.ax_v.set_xlabel("blocks l")
        self.ax_v.set_ylabel("Var of the stream")
        self.ax_g.set_xlabel("block l")
        self.ax_g.set_ylabel("gradient norm of W_l")
        self.ax_v.legend(loc="upper left", fontsize=9)
        self.ax_v.set_title("placeholder")
        self.ax_g.set_title("gradient norm per block at init")
        for ax in (self.ax_v, self.ax_g):  # room for tick labels of any size, then freeze the layout
            ax.set_ylim(1e-3, 1e10)
        fig.draw_without_rendering()
        fig.set_layout_engine("none")
        self.figure = fig
        self._canvas = FigureCanvasAgg(fig)

    def _png(self) -> bytes:
        """Draw with Agg and encode with PIL at low compression (faster than savefig)."""
        return style.canvas_png(self._canvas)

    def update(self) -> float:
        start = time.perf_counter()
        d, p, s = self.depth.value, self.placement.value, self.scaling.value
        res = self.streams[(d, p, s)]
        v, g = res["variance"], res["grad_norms"]
        layers = np.arange(d + 1)
        self._med.set_data(layers, np.median(v, axis=0))
        self._lo.set_data(layers, v.min(axis=0))
        self._hi.set_data(layers, v.max(axis=0))
        pred = self.predict(d, 1.0, 1.0, p, s)
        self._pred.set_data(layers, pred)
        blocks = np.arange(1, d + 1)
        gm = np.maximum(g, 1e-30)
        self._grad.set_data(blocks, np.median(gm, axis=0))
        self._glo.set_data(blocks, gm.min(axis=0))
        self._ghi.set_data(blocks, gm.max(axis=0))
        lo = min(v.min(), pred.min())
        hi = max(v.max(), pred.max())
        self.ax_v.set_ylim(lo / 2, hi * 2)
        self.ax_v.set_xlim(-0.5, d + 0.5)
        self.ax_g.set_xlim(0.5, d + 0.5)
        positive = g[g > 0]
        if positive.size:
            self.ax_g.set_ylim(positive.min() / 2, positive.max() * 2)
            self.ax_g.set_title("gradient norm per block at init")
        else:
            self.ax_g.set_title("zero γ: no gradient reaches W at init")
        self.ax_v.set_title(f"stream variance, norm={p}, scale={s}")
        self.image.value = self._png()
        ratio = f"{np.median(g[:, 0] / g[:, -1]):.3g}" if positive.size else "undefined (all 0)"
        self.summary.value = (f"L = {d}: final variance measured {np.median(v[:, -1]):.3g}, predicted {pred[-1]:.3g}; "
                              f"gradient norm of block 1 / block L = {ratio}")
        self.last_update_s = time.perf_counter() - start
        return self.last_update_s


def config_dict(config: CapstoneConfig) -> dict:
    return asdict(config)
