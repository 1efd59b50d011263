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

With layer norm, the plain and the pre-norm networks end in a final norm :math:`N_{L+1}` before the
readout (GPT-2's "additional layer normalization after the final block"); post-norm's stream is
already normalized.

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
        if not (config.residual and config.placement == "post"):  # a final norm before the readout
            params["gamma_final"] = torch.ones(n, 1, width)
            params["beta_final"] = torch.zeros(n, 1, width)
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
    if "gamma_final" in params:
        h = _layer_norm(h, params["gamma_final"], params["beta_final"])
    return torch.baddbmm(params["b_out"], h, params["w_out"])


def input_similarity(config: CapstoneConfig | dict, seeds: Sequence[int] = SEEDS, jitter: float = 0.0,
                     depth: int = DEPTH, width: int = WIDTH) -> dict[str, np.ndarray]:
    """How alike the network makes different inputs, at initialization: the mean cosine similarity,
    over all pairs of the 150 spiral points, of their representations (each row centred) after the
    embedding and at the top of the stream (what the readout sees; after the final norm where there
    is one, which does not change a centred row's direction).

    Returns ``{"embedding": (seeds,), "top": (seeds,)}``; 1 means every input looks the same.
    """
    if isinstance(config, dict):
        config = CapstoneConfig(**config)
    x, _ = make_task()
    with torch.random.fork_rng(devices=[]):
        params = init_params(config, tuple(int(s) for s in seeds), depth, width)
    jitter_(params.values(), jitter)
    keep: list[Tensor] = []
    with torch.no_grad():
        forward(params, config, x, keep)

    def mean_cosine(h: Tensor) -> np.ndarray:
        h = h - h.mean(dim=-1, keepdim=True)
        h = h / h.norm(dim=-1, keepdim=True)
        cos = torch.bmm(h, h.transpose(1, 2))
        n = h.shape[1]
        return ((cos.sum(dim=(1, 2)) - n) / (n * (n - 1))).numpy().astype(np.float64)

    return {"embedding": mean_cosine(keep[0]), "top": mean_cosine(keep[-1])}


def input_similarities(configs: dict[str, CapstoneConfig], seeds: Sequence[int] = SEEDS,
                       jitter: float = 0.0) -> dict[str, dict[str, np.ndarray]]:
    """:func:`input_similarity` for every named configuration (the claims tests' experiment)."""
    return {name: input_similarity(cfg, seeds, jitter) for name, cfg in configs.items()}


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


def train_many(configs: dict[str, CapstoneConfig | tuple[CapstoneConfig, dict]], seeds: Sequence[int] = SEEDS,
               jitter: float = 0.0, **kwargs) -> dict[str, TrainResult]:
    """:func:`train_capstone` for every named configuration on the same seeds (the claims tests'
    experiment: one call per arithmetic variant). A value may be ``(config, options)``, with
    options of :func:`train_capstone` (``lr=...``) for that configuration only."""
    out = {}
    for name, spec in configs.items():
        config, options = spec if isinstance(spec, tuple) else (spec, {})
        out[name] = train_capstone(config, seeds=seeds, jitter=jitter, **{**kwargs, **options})
    return out


def capstone_summary(config: CapstoneConfig | dict, seeds: Sequence[int] = SEEDS, jitter: float = 0.0,
                     steps: int = STEPS) -> dict[str, list]:
    """What the capstone's grade looks at, per seed, as plain data: ``last10`` the mean training loss
    over the last 10 steps (inf for a seed that diverged), ``clipped`` the fraction of steps on
    which clipping acted, ``diverged_at`` the step of the first non-finite loss (or None),
    ``grad_norm`` the median global gradient norm over the steps (before clipping), and
    ``max_step_norm`` / ``max_step_at`` the largest gradient norm a step applied (after clipping:
    at most ``max_norm`` with a safety net, the raw spike without one) and the step it happened at."""
    return summarize(train_capstone(config, seeds=seeds, steps=steps, jitter=jitter))


def summarize(res: TrainResult) -> dict[str, list]:
    """:func:`capstone_summary` of a finished run."""
    seeds = res.seeds
    finite = np.isfinite(res.losses).all(axis=1) & np.isfinite(res.final_losses)
    last10 = np.where(finite, np.nanmean(np.where(finite[:, None], res.losses[:, -10:], 0.0), axis=1), np.inf)
    diverged = [None if ok else int(np.argmax(~np.isfinite(row))) for ok, row in zip(finite, res.losses)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        grad_norm = np.nanmedian(res.grad_norms, axis=1)
    applied = res.grad_norms if res.config.clip is None else np.minimum(res.grad_norms, res.config.clip)
    applied = np.where(np.isnan(applied), -np.inf, applied)
    at = np.argmax(applied, axis=1)
    top = applied[np.arange(len(seeds)), at]
    return {"seeds": [int(v) for v in seeds], "last10": [float(v) for v in last10],
            "clipped": [float(v) for v in res.clipped.mean(axis=1)], "diverged_at": diverged,
            "grad_norm": [float(v) for v in grad_norm],
            "max_step_norm": [float(v) if v > -np.inf else float("inf") for v in top],
            "max_step_at": [int(v) for v in at]}


def capstone_summaries(configs: dict[str, CapstoneConfig], seeds: Sequence[int] = SEEDS,
                       jitter: float = 0.0) -> dict[str, dict[str, list]]:
    """:func:`capstone_summary` for every named configuration (the claims tests' experiment)."""
    return {name: capstone_summary(cfg, seeds, jitter) for name, cfg in configs.items()}


# ----------------------------------------------------------------------------------------------
# The residual stream at initialization


def stream_at_init(depth: int, placement: str, scaling: str = "none", seeds: Sequence[int] = SEEDS,
                   width: int = 128, batch: int = 256, jitter: float = 0.0, final_norm: bool = False,
                   skip_only: bool = False) -> dict[str, np.ndarray]:
    """The stream's variance after every block, and every block's weight-gradient norm, at init.

    Blocks ``h + a·W relu(norm(h))`` (pre), ``norm(h + a·W relu(h))`` (post) or ``h + a·W relu(h)``
    (none), with Kaiming weights (gain 1), no bias, :math:`a` from ``scaling``, unit-variance
    Gaussian input, and the loss ``sum(top · r) / sqrt(N)`` for a fixed random ``r``, where ``top``
    is the last block's output, or its layer norm with ``final_norm`` (as pre-norm models have).
    ``skip_only`` detaches every branch's output, so that the gradient reaches the input only along
    the skip connections (through the norms, for post-norm). ``jitter`` perturbs the weights as in
    :func:`train_capstone`.

    Returns ``{"variance": (seeds, depth + 1), "grad_norms": (seeds, depth), "stream_grads":
    (seeds, depth + 1)}``: ``stream_grads[:, l]`` is ‖∂loss/∂h_l‖ (``h_0`` the input, ``h_l`` the output
    of block l); ``grad_norms`` is NaN with ``skip_only`` (no gradient reaches a detached branch).
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
    x, r = torch.stack(xs).requires_grad_(True), torch.stack(rs)
    alpha = {"none": 1.0, "gpt2": 1.0 / math.sqrt(depth), "zero_gamma": 0.0}[scaling]
    h, stream = x, [x]
    for l in range(depth):
        z = _layer_norm(h) if placement == "pre" else h
        f = alpha * torch.bmm(torch.relu(z), w[:, l])
        if skip_only:
            f = f.detach()
        h = _layer_norm(h + f) if placement == "post" else h + f
        stream.append(h)
    top = _layer_norm(h) if final_norm else h
    loss = (top * r).sum() / math.sqrt(batch)
    grads = torch.autograd.grad(loss, [w, *stream], allow_unused=True)
    per_seed = lambda t: torch.linalg.vector_norm(t, dim=tuple(range(1, t.dim()))).numpy().astype(np.float64)  # noqa: E731
    variance = torch.stack([s.detach().flatten(1).var(dim=1) for s in stream], dim=1)
    if grads[0] is None:
        weight_grads = np.full((n, depth), np.nan)
    else:
        weight_grads = torch.linalg.vector_norm(grads[0], dim=(2, 3)).numpy().astype(np.float64)
    return {"variance": variance.numpy().astype(np.float64), "grad_norms": weight_grads,
            "stream_grads": np.stack([per_seed(g) for g in grads[1:]], axis=1)}


def post_norm_block_gains(width: int = 128, batch: int = 256, seeds: Sequence[int] = SEEDS,
                          jitter: float = 0.0) -> dict[str, np.ndarray]:
    """How much one post-norm block, ``h -> N(h + f(h))`` with ``f(h) = W relu(h)`` and Kaiming
    ``W``, scales a gradient on its way down, at initialization (unit-variance Gaussian ``h``).

    For a random upstream gradient ``g`` (standard normal entries), the gain ``‖Jᵀg‖ / ‖g‖`` of the
    Jacobian ``J`` of: the branch ``f``; the sum ``h + f(h)`` (``I + J_f``); the norm ``N`` at that
    sum; and the whole block. Returns one array of shape ``(seeds,)`` per name: ``"branch"``,
    ``"skip + branch"``, ``"norm"``, ``"block"``; and ``"sum std"``, the standard deviation of
    ``h + f(h)`` that the norm divides by.
    """
    out: dict[str, list[float]] = {k: [] for k in ("branch", "skip + branch", "norm", "block", "sum std")}
    for seed in seeds:
        gen = torch.Generator().manual_seed(int(seed) + 3000)
        w = torch.randn(width, width, generator=gen) * math.sqrt(2.0 / width)
        jitter_(w, jitter)
        h = torch.randn(batch, width, generator=gen).requires_grad_(True)
        g = torch.randn(batch, width, generator=gen)
        f = torch.relu(h) @ w
        total = h + f
        s = total.detach().requires_grad_(True)
        y = _layer_norm(s)
        gain = lambda out_, in_: float(torch.autograd.grad(out_, in_, g, retain_graph=True)[0].norm() / g.norm())  # noqa: E731
        out["branch"].append(gain(f, h))
        out["skip + branch"].append(gain(total, h))
        out["norm"].append(gain(y, s))
        out["block"].append(gain(_layer_norm(total), h))
        out["sum std"].append(float(total.detach().std()))
    return {k: np.array(v) for k, v in out.items()}


def streams_many(specs: Sequence[tuple], seeds: Sequence[int] = SEEDS, jitter: float = 0.0,
                 **kwargs) -> dict[tuple, dict[str, np.ndarray]]:
    """:func:`stream_at_init` for every ``(depth, placement, scaling)`` on the same seeds; a fourth
    element ``"final"`` adds the final norm, ``"skip"`` detaches the branches (``skip_only``)."""
    out = {}
    for spec in specs:
        d, p, s = spec[:3]
        extra = {"final": {"final_norm": True}, "skip": {"skip_only": True}}[spec[3]] if len(spec) > 3 else {}
        out[tuple(spec)] = stream_at_init(d, p, s, seeds, jitter=jitter, **{**kwargs, **extra})
    return out


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
        mu, sigma, g = _population(seed, features)
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


def _population(seed: int, features: int) -> tuple[Tensor, Tensor, torch.Generator]:
    """Section 4's population: features with means and scales of their own (and the generator)."""
    g = torch.Generator().manual_seed(int(seed) + 2000)
    mu = torch.randn(features, generator=g) * 2
    sigma = torch.exp(torch.randn(features, generator=g) * 0.5)
    return mu, sigma, g


def layer_norm_against_standardization(seeds: Sequence[int] = SEEDS, features: int = 16,
                                       samples: int = 4096) -> dict[str, np.ndarray]:
    r"""What layer norm loses: on Section 4's population, the RMS difference between a sample's layer
    norm and its per-feature standardization :math:`(x - \mu)/\sigma` with the population's
    statistics (what batch norm estimates), and the correlation between the two over all entries.

    Returns ``{"rms": (seeds,), "correlation": (seeds,)}``.
    """
    rms, corr = [], []
    for seed in seeds:
        mu, sigma, g = _population(seed, features)
        x = mu + sigma * torch.randn(samples, features, generator=g)
        standardized = (x - mu) / sigma
        ln = _layer_norm(x)
        rms.append(float((ln - standardized).square().mean().sqrt()))
        corr.append(float(torch.corrcoef(torch.stack([ln.flatten(), standardized.flatten()]))[0, 1]))
    return {"rms": np.array(rms), "correlation": np.array(corr)}


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


#: which entries of an (N, C, L) activation share one mean and variance, for the norms of Section 4
NORM_GROUPS = {
    "batch norm": "one channel, all samples and positions",
    "layer norm": "one sample, all channels and positions",
    "instance norm": "one sample and channel, all positions",
    "group norm (2 groups)": "one sample, half the channels",
}


def norm_group_mask(name: str, samples: int = 4, channels: int = 6, positions: int = 3) -> np.ndarray:
    """A ``(samples, channels * positions)`` array: 1 where an entry shares the statistics of the
    entry of sample 1, channel 1 (the group the figure shades), 0 elsewhere."""
    n, c, l = np.meshgrid(np.arange(samples), np.arange(channels), np.arange(positions), indexing="ij")
    same = {"batch norm": c == 0, "layer norm": n == 0, "instance norm": (n == 0) & (c == 0),
            "group norm (2 groups)": (n == 0) & (c < channels // 2)}[name]
    return same.reshape(samples, channels * positions).astype(float)


@styled
def plot_norm_groups(samples: int = 4, channels: int = 6, positions: int = 3) -> Figure:
    """One panel per normalization: an activation of shape (N, C, L) drawn as N rows of C blocks of L
    cells; the shaded cells share one mean and variance."""
    from matplotlib.colors import ListedColormap

    fig = Figure(figsize=(12, 5.2), layout="constrained")
    axes = fig.subplots(2, 2)
    cmap = ListedColormap(["#f2f2f2", COLORS[2]])
    for ax, (name, what) in zip(axes.flat, NORM_GROUPS.items()):
        ax.imshow(norm_group_mask(name, samples, channels, positions), cmap=cmap, vmin=0, vmax=1, aspect="auto")
        for k in range(1, channels * positions):
            ax.axvline(k - 0.5, color="black" if k % positions == 0 else "0.6", lw=1.5 if k % positions == 0 else 0.8)
        for k in range(1, samples):
            ax.axhline(k - 0.5, color="0.6", lw=0.8)
        ax.set_xticks([k * positions + (positions - 1) / 2 for k in range(channels)],
                      [f"c{k + 1}" for k in range(channels)])
        ax.set_yticks(range(samples), [f"n{k + 1}" for k in range(samples)])
        ax.grid(False)
        ax.set_title(f"{name}: {what}", fontsize=13)
    for ax in axes[1]:
        ax.set_xlabel(f"channels (each a block of {positions} positions)")
    for ax in axes[:, 0]:
        ax.set_ylabel("samples")
    fig.set_label(f"Four grids of {samples} samples by {channels} channels of {positions} positions: shaded are "
                  "the entries that share one mean and variance under batch norm (a channel across the batch), "
                  "layer norm (a sample), instance norm (a sample's channel) and group norm (a sample's group "
                  "of channels).")
    return fig


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
        ax_l.axhline(threshold, color="0.3", lw=1.2, ls=(0, (6, 3)), label=f"threshold {threshold}")
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
    A slider move only replaces line data and re-encodes a PNG (``last_update_s`` holds the time,
    ``last_update_cpu_s`` the CPU time). Built and redrawn in the course style (every text at least 12
    pt, ticks made at a redraw included), 11 inches wide so that a deck shows 12 pt as 16 px.
    """

    def __init__(self, streams: dict, predict, depth: int = 16, placement: str = "pre", scaling: str = "none",
                 dpi: int = 72) -> None:
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
        with style.course_style():
            self._build()
        for control in (self.depth, self.placement, self.scaling):
            control.observe(lambda _change: self.update(), names="value")
        self.update()

    def _build(self) -> None:
        fig = Figure(figsize=(11, 4.4), dpi=self.dpi, layout="constrained")  # 11 in: shown at 96 dpi, 12 pt is 16 px
        self.ax_v, self.ax_g = fig.subplots(1, 2)
        (self._med,) = self.ax_v.plot([], [], color=COLORS[2], ls=LINESTYLES[0], label="measured (median)")
        self._band_v = self.ax_v.fill_between([], [], [], color=COLORS[2], alpha=0.2, lw=0, label="min–max over seeds")
        (self._pred,) = self.ax_v.plot([], [], ls="none", marker="o", ms=6, color=COLORS[1], label="predicted")
        (self._grad,) = self.ax_g.plot([], [], color=COLORS[3], ls=LINESTYLES[1], marker=".", label="median")
        self._band_g = self.ax_g.fill_between([], [], [], color=COLORS[3], alpha=0.2, lw=0, label="min–max over seeds")
        for ax in (self.ax_v, self.ax_g):
            ax.set_yscale("log")
        self.ax_v.set_xlabel("blocks l")
        self.ax_v.set_ylabel("Var of the stream")
        self.ax_g.set_xlabel("block l")
        self.ax_g.set_ylabel(r"$\|\partial \mathrm{loss}/\partial W_l\|$ at init")
        self.ax_v.legend(loc="upper left")
        self.ax_g.legend(loc="upper right")
        self.ax_v.set_title("placeholder")
        self.ax_g.set_title("gradient norm per block at init")
        for ax in (self.ax_v, self.ax_g):  # room for tick labels of any size, then freeze the layout
            ax.set_ylim(1e-3, 1e10)
        fig.draw_without_rendering()
        fig.set_layout_engine("none")
        self.figure = fig
        self._canvas = FigureCanvasAgg(fig)

    @staticmethod
    def _log_ticks(ax, lo: float, hi: float) -> None:
        """Log axis with labelled ticks at 1, 2, 5 × 10^k on a narrow range (never a lone tick), decades
        on a wide one."""
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax.set_ylim(lo, hi)
        subs = (1.0, 1.5, 2.0, 3.0, 5.0, 7.0) if hi / lo < 10 else (1.0, 2.0, 5.0) if hi / lo < 1e3 else (1.0,)
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs, numticks=12))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}" if 1e-3 <= v < 1e4 else f"{v:.0e}"))

    def _png(self) -> bytes:
        """Draw with Agg and encode with PIL at low compression (faster than savefig)."""
        with style.course_style():
            return style.canvas_png(self._canvas)

    def update(self) -> float:
        """Redraw for the controls' values, in the course style (ticks and titles made now get its sizes)."""
        with style.course_style():
            return self._update()

    def _update(self) -> float:
        start, cpu = time.perf_counter(), time.process_time()
        d, p, s = self.depth.value, self.placement.value, self.scaling.value
        res = self.streams[(d, p, s)]
        v, g = res["variance"], res["grad_norms"]
        layers = np.arange(d + 1)
        self._med.set_data(layers, np.median(v, axis=0))
        self._band_v.remove()
        self._band_v = self.ax_v.fill_between(layers, v.min(axis=0), v.max(axis=0), color=COLORS[2], alpha=0.2, lw=0)
        pred = self.predict(d, 1.0, 1.0, p, s)
        self._pred.set_data(layers, pred)
        blocks = np.arange(1, d + 1)
        gm = np.maximum(g, 1e-30)
        self._grad.set_data(blocks, np.median(gm, axis=0))
        self._band_g.remove()
        self._band_g = self.ax_g.fill_between(blocks, gm.min(axis=0), gm.max(axis=0), color=COLORS[3], alpha=0.2,
                                              lw=0)
        lo = min(v.min(), pred.min())
        hi = max(v.max(), pred.max())
        self._log_ticks(self.ax_v, lo / 1.5, hi * 1.5)
        self.ax_v.set_xlim(-0.5, d + 0.5)
        self.ax_g.set_xlim(0.5, d + 0.5)
        positive = g[g > 0]
        if positive.size:
            self._log_ticks(self.ax_g, positive.min() / 1.5, positive.max() * 1.5)
            self.ax_g.set_title("gradient norm per block at init")
        else:
            self.ax_g.set_title("zero γ: no gradient reaches W at init")
        self.ax_v.set_title(f"stream variance, norm={p}, scale={s}")
        self.image.value = self._png()
        ratio = f"{np.median(g[:, 0] / g[:, -1]):.3g}" if positive.size else "undefined (all 0)"
        self.summary.value = (f"L = {d}: final variance measured {np.median(v[:, -1]):.3g}, predicted {pred[-1]:.3g}; "
                              f"gradient norm of block 1 / block L = {ratio}")
        self.last_update_s = time.perf_counter() - start
        self.last_update_cpu_s = time.process_time() - cpu  # what a busy machine's wall clock hides
        return self.last_update_s


def explorer_figure(depth: int = 16, placement: str = "pre", scaling: str = "none", **precompute) -> Figure:
    """The explorer's figure after one update (for the figure-style test)."""
    from ..residual import residual_stream_variance

    explorer = ResidualExplorer(precompute_streams(**precompute), residual_stream_variance, depth, placement, scaling)
    return explorer.figure


def config_dict(config: CapstoneConfig) -> dict:
    return asdict(config)
