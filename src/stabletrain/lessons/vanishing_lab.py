r"""Experiments, figures and the explorer widget of lesson ``01_vanishing_exploding``.

The notebook stays prose-first and imports the heavier plumbing from here:

- **Sigmoid's derivative** :math:`\sigma'(z) = \sigma(z)(1-\sigma(z)) \le 1/4`:
  :func:`plot_sigmoid_derivative`, and :func:`sigmoid_chain`, which backpropagates through 20
  sigmoid layers and returns the measured shrinkage with its bound :math:`\prod_l \tfrac14\|W_l\|_2`.
- **Products of random matrices**: :func:`random_walk` follows :math:`\ln\|W_l\cdots W_1 v\|` for
  many independent draws; :func:`random_walk_prediction` gives its exact mean and variance per
  layer (digamma and trigamma of :math:`n/2`); :func:`plot_random_walk` draws both.
- **The sweep**: :func:`gradient_sweep` backpropagates a random upstream gradient through
  bias-free MLPs for every depth × activation × weight scale, all seeds at once (batched matrix
  products, float64), and records :math:`\ln\|\partial\mathcal L/\partial h_l\|` at every layer;
  :func:`predicted_log_norms` is the mean-field prediction (:func:`preactivation_variances` and
  the reference's ``log_grad_slope``); :func:`plot_sweep` and :func:`plot_slopes` draw them.
- **Jacobian spectra**: :func:`jacobian_spectra` and :func:`plot_jacobian_spectra`.
- **Training**: :func:`train_deep_batch` trains several deep MLPs on the spirals at once
  (a batch of models, one per weight scale and seed) and records the per-layer gradient norms;
  :func:`plot_training` draws loss and first/last-layer gradient norms.
- **The explorer**: :class:`VanishingExplorer`, a widget over depth, activation and weight scale
  that only redraws precomputed curves.

Weight scales are given as :math:`c` with :math:`\sigma_w = c/\sqrt{n}` (``n`` the fan-in), so
:math:`c = 1` is LeCun's scale, :math:`c=\sqrt2` Kaiming's for ReLU. The reference answers
(``stabletrain.vanishing``) are imported inside the functions that use them, never at import time.

Every figure is a detached :class:`matplotlib.figure.Figure` in the course style
(:mod:`stabletrain.style`), with its alt text as the figure's label (``fig.get_label()``).
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

from stabletrain import style
from stabletrain.perturb import jitter_
from stabletrain.style import COLORS as STYLE_COLORS
from stabletrain.style import course_style, line_style, styled
from stabletrain.threads import single_thread

__all__ = [
    "ACTIVATIONS",
    "DEPTHS",
    "SCALES",
    "WIDTH",
    "BATCH",
    "SEEDS",
    "TRAINING_SEEDS",
    "LR",
    "single_thread",
    "derivative",
    "plot_sigmoid_derivative",
    "sigmoid_chain",
    "random_walk",
    "random_walk_prediction",
    "random_walk_stats",
    "plot_random_walk",
    "Sweep",
    "gradient_sweep",
    "preactivation_variances",
    "depth_scale",
    "predicted_log_norms",
    "fit_slopes",
    "plot_sweep",
    "plot_slopes",
    "JACOBIAN_SETUPS",
    "jacobian_spectra",
    "plot_jacobian_spectra",
    "TrainingBatch",
    "train_deep_batch",
    "deep_mlp_weights",
    "plot_training",
    "plot_gradient_profiles",
    "VanishingExplorer",
]

ACTIVATIONS: tuple[str, ...] = ("sigmoid", "tanh", "relu")
DEPTHS: tuple[int, ...] = (5, 20, 50)
#: weight scales c, sigma_w = c / sqrt(fan_in)
SCALES: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
WIDTH = 64
BATCH = 32
#: the seeds of the sweep and the sigmoid chain (each seed: its own weights, inputs and upstream gradient)
SEEDS: tuple[int, ...] = tuple(range(8))
#: the seeds of the Jacobian spectra and the training experiment (each seed: its own weights and data)
TRAINING_SEEDS: tuple[int, ...] = (0, 1, 2, 3, 4)
#: the training experiment's learning rate (full-batch SGD)
LR = 0.05


def _f(name: str, z: torch.Tensor) -> torch.Tensor:
    if name == "sigmoid":
        return torch.sigmoid(z)
    if name == "tanh":
        return torch.tanh(z)
    if name == "relu":
        return torch.relu(z)
    if name == "linear":
        return z
    raise ValueError(f"unknown activation {name!r}")


def _fprime(name: str, z: torch.Tensor) -> torch.Tensor:
    if name == "sigmoid":
        s = torch.sigmoid(z)
        return s * (1 - s)
    if name == "tanh":
        return 1 - torch.tanh(z) ** 2
    if name == "relu":
        return (z > 0).to(z.dtype)
    if name == "linear":
        return torch.ones_like(z)
    raise ValueError(f"unknown activation {name!r}")


def derivative(name: str, z: torch.Tensor) -> torch.Tensor:
    """f'(z) for ``"sigmoid"``, ``"tanh"``, ``"relu"`` (0 at 0) or ``"linear"``, elementwise on a tensor."""
    return _fprime(name, z)


def _gauss(fn, q: float) -> float:
    """E[fn(z)] for z ~ N(0, q): trapezoid rule on |z| <= 14 sqrt(q) (exponentially accurate here)."""
    s = math.sqrt(q)
    if s == 0:
        return float(fn(np.zeros(1))[0])
    z = np.linspace(-14 * s, 14 * s, min(int(28 * s / (min(s, 1.0) / 25)) | 1, 2_000_001))
    return float(np.trapezoid(fn(z) * np.exp(-0.5 * (z / s) ** 2), z) / (s * math.sqrt(2 * math.pi)))


# ----------------------------------------------------------------------------------------------
# Sigmoid's derivative


@styled
def plot_sigmoid_derivative() -> Figure:
    """σ(z) and σ′(z) = σ(z)(1 − σ(z)), with the ceiling 1/4 that σ′ reaches only at z = 0."""
    z = np.linspace(-8, 8, 401)
    s = 1 / (1 + np.exp(-z))
    fig = Figure(figsize=(8.5, 4.0), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(z, s, **{**line_style(2), "marker": None}, label=r"$\sigma(z)$")
    ax.plot(z, s * (1 - s), **{**line_style(1), "marker": None}, label=r"$\sigma'(z) = \sigma(z)\,(1-\sigma(z))$")
    ax.axhline(0.25, color=STYLE_COLORS[0], ls=":", lw=1.5, label=r"$1/4$, the largest $\sigma'$ can be")
    ax.set_xlabel("pre-activation z")
    ax.set_ylabel("value")
    ax.set_title("The sigmoid's slope is at most 1/4")
    ax.legend(loc="center right")
    fig.set_label("Sigmoid and its derivative against z: the derivative is a bump of height 1/4 at z = 0 that "
                  "decays to 0 on both sides.")
    return fig


def sigmoid_chain(depth: int = 20, width: int = WIDTH, scale: float = 1.0, seeds: Sequence[int] = SEEDS,
                  jitter: float = 0.0) -> dict[str, np.ndarray]:
    r"""Backpropagate through ``depth`` bias-free sigmoid layers, one network per seed, and split the
    gap between the bound and the truth into what the weights and what the slopes contribute.

    The networks, inputs and upstream gradients are :func:`gradient_sweep`'s (batch ``BATCH``).
    One backward step :math:`g_{l-1} = \delta_l W_l`, :math:`\delta_l = g_l\odot\sigma'(y_l)`, factors
    exactly into a *slope factor* :math:`a_l = \|\delta_l\|/\|g_l\|` (at most 1/4) and a *stretch*
    :math:`b_l = \|\delta_l W_l\|/\|\delta_l\|` (at most :math:`\|W_l\|_2`), so

    .. math:: \frac{\text{bound}}{\text{truth}} = \prod_l \frac{\|W_l\|_2}{b_l}\;\prod_l \frac{1/4}{a_l}.

    Returns float64 arrays of shape (len(seeds),): ``ratio`` :math:`\|g_0\|/\|g_L\|`, ``bound``
    :math:`\prod_l \tfrac14\|W_l\|_2`, ``quarter`` :math:`(1/4)^L`, ``weight_gap`` and ``slope_gap``
    (the two products above), ``spectral`` and ``stretch`` (geometric means over the layers of
    :math:`\|W_l\|_2` and :math:`b_l`), ``median_slope`` (the median of every :math:`\sigma'(y_l)`
    entry) and ``below_0_2`` (the fraction of them below 0.2). ``jitter``: relative jitter of the
    initial weights (:func:`stabletrain.perturb.jitter_`).
    """
    with single_thread():
        z, x, grad = _sweep_draws(depth, seeds, width, BATCH, jitter)
        w = z * (scale / math.sqrt(width))
        h, ys = x, []
        for layer in range(depth):
            ys.append(torch.bmm(h, w[:, layer].transpose(1, 2)))
            h = torch.sigmoid(ys[-1])
        g, log_a, log_b, slopes = grad, [], [], []
        for layer in range(depth - 1, -1, -1):
            slope = _fprime("sigmoid", ys[layer])
            delta = g * slope
            g_new = torch.bmm(delta, w[:, layer])
            norm_g, norm_delta = (torch.linalg.vector_norm(t, dim=(1, 2)) for t in (g, delta))
            log_a.append(torch.log(norm_delta / norm_g))
            log_b.append(torch.log(torch.linalg.vector_norm(g_new, dim=(1, 2)) / norm_delta))
            slopes.append(slope.reshape(len(seeds), -1))
            g = g_new
        log_a, log_b = torch.stack(log_a, 1).numpy(), torch.stack(log_b, 1).numpy()
        log_spectral = torch.log(torch.linalg.matrix_norm(w, ord=2)).numpy()  # (seeds, depth)
        slopes = torch.cat(slopes, 1).numpy()
    return {"ratio": np.exp(log_a.sum(1) + log_b.sum(1)), "bound": np.exp(log_spectral.sum(1) - depth * math.log(4)),
            "quarter": np.full(len(seeds), 0.25**depth),
            "weight_gap": np.exp(log_spectral.sum(1) - log_b.sum(1)),
            "slope_gap": np.exp(-depth * math.log(4) - log_a.sum(1)),
            "spectral": np.exp(log_spectral.mean(1)), "stretch": np.exp(log_b.mean(1)),
            "median_slope": np.median(slopes, axis=1), "below_0_2": (slopes < 0.2).mean(axis=1)}


# ----------------------------------------------------------------------------------------------
# Products of random matrices: the log-norm as a random walk


def random_walk(width: int = 16, depth: int = 50, samples: int = 400, scale: float = 1.0, seed: int = 0,
                jitter: float = 0.0) -> np.ndarray:
    r""":math:`\ln\|W_l \cdots W_1 v\|` for l = 0..depth, ``samples`` independent draws, shape (samples, depth + 1).

    :math:`v` is a unit vector, :math:`W_l` iid Gaussian with std ``scale``/√``width``. By the
    rotation invariance of the Gaussian, each step adds an independent increment
    :math:`\tfrac12\ln(\sigma_w^2\chi^2_n)`: the log-norm is a random walk. ``jitter``: relative
    jitter of every matrix (:func:`stabletrain.perturb.jitter_`, its own generator).
    """
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(samples, width, 1, generator=gen, dtype=torch.float64)
    v = v / torch.linalg.vector_norm(v, dim=1, keepdim=True)
    out = np.zeros((samples, depth + 1))
    log_norm = torch.zeros(samples, dtype=torch.float64)
    std = scale / math.sqrt(width)
    for layer in range(1, depth + 1):
        w = std * torch.randn(samples, width, width, generator=gen, dtype=torch.float64)
        jitter_(w, jitter, seed=1_000_003 * seed + layer)
        v = torch.bmm(w, v)
        n = torch.linalg.vector_norm(v, dim=(1, 2))
        log_norm = log_norm + torch.log(n)
        v = v / n[:, None, None]  # renormalise: the increments are what we track, without overflow
        out[:, layer] = log_norm.numpy()
    return out


def random_walk_stats(seeds: Sequence[int] = TRAINING_SEEDS, jitter: float = 0.0, width: int = 16, depth: int = 50,
                      samples: int = 1000, scale: float = 1.0) -> dict[str, np.ndarray]:
    """What the notebook prints about :func:`random_walk`, one entry per seed (arrays of shape (len(seeds),)).

    ``step_mean``, ``step_var``: mean and variance of all ``samples × depth`` increments;
    ``final_mean``, ``final_std``: of the log-norm after ``depth`` layers; ``steps``: how many increments.
    """
    stats: dict[str, list[float]] = {"step_mean": [], "step_var": [], "final_mean": [], "final_std": []}
    for seed in seeds:
        walks = random_walk(width=width, depth=depth, samples=samples, scale=scale, seed=seed, jitter=jitter)
        steps = np.diff(walks, axis=1)
        for key, value in (("step_mean", steps.mean()), ("step_var", steps.var()), ("final_mean", walks[:, -1].mean()),
                           ("final_std", walks[:, -1].std())):
            stats[key].append(float(value))
    out = {key: np.array(values) for key, values in stats.items()}
    out["steps"] = np.full(len(seeds), samples * depth)
    return out


def random_walk_prediction(width: int = 16, scale: float = 1.0) -> tuple[float, float]:
    r"""Exact mean and variance of one increment :math:`\tfrac12\ln(\sigma_w^2\chi^2_n)`.

    With :math:`\ln\chi^2_n` of mean :math:`\psi(n/2) + \ln 2` and variance :math:`\psi'(n/2)`
    (digamma, trigamma): mean :math:`\tfrac12(\ln(2\sigma_w^2) + \psi(n/2))` — a little below
    :math:`\tfrac12\ln(n\sigma_w^2)`, by about :math:`1/(2n)` — and variance :math:`\psi'(n/2)/4 \approx 1/(2n)`.
    """
    from scipy.special import digamma, polygamma

    var_w = scale**2 / width
    mean = 0.5 * (math.log(2 * var_w) + float(digamma(width / 2)))
    var = 0.25 * float(polygamma(1, width / 2))
    return mean, var


@styled
def plot_random_walk(walks: np.ndarray, width: int = 16, scale: float = 1.0, show: int = 12) -> Figure:
    """A few sample paths of the log-norm, the measured median and 5–95 % band, and the predicted
    mean ± 2 standard deviations (which grow like √l)."""
    mean, var = random_walk_prediction(width, scale)
    layers = np.arange(walks.shape[1])
    fig = Figure(figsize=(8.5, 4.4), layout="constrained")
    ax = fig.add_subplot()
    for path in walks[:show]:
        ax.plot(layers, path, color="0.75", lw=0.8, ls="-")
    lo, med, hi = np.percentile(walks, [5, 50, 95], axis=0)
    ax.fill_between(layers, lo, hi, color=STYLE_COLORS[2], alpha=0.2, label="measured 5–95 %")
    ax.plot(layers, med, **{**line_style(2), "marker": None}, label="measured median")
    ax.plot(layers, mean * layers, **{**line_style(0), "marker": None}, label=r"predicted mean $l\,\mu$")
    band = 1.645 * np.sqrt(var * layers)  # the 5 % and 95 % quantiles of a normal walk
    ax.plot(layers, mean * layers + band, color=STYLE_COLORS[4], ls="--", lw=1.5,
            label=r"predicted 5–95 %: $l\mu \pm 1.645\sqrt{l}\,s$")
    ax.plot(layers, mean * layers - band, color=STYLE_COLORS[4], ls="--", lw=1.5)
    ax.set_xlabel("layer l")
    ax.set_ylabel(r"$\ln\|W_l\cdots W_1 v\|$")
    ax.set_title(f"Products of random {width}×{width} matrices (σ_w = {scale:g}/√n): a random walk")
    ax.legend(loc="lower left", fontsize=12)
    fig.set_label(f"Log-norm of a vector multiplied by l random matrices, for l up to {walks.shape[1] - 1}: grey "
                  "sample paths wander, the median drifts down slowly along the predicted straight line, and "
                  "the spread widens like the square root of l, as predicted.")
    return fig


# ----------------------------------------------------------------------------------------------
# The sweep: depth x activation x weight scale


@dataclass
class Sweep:
    """Measured ln‖∂L/∂h_l‖, l = 0..depth, per (depth, activation, scale): arrays of shape (seeds, depth + 1).

    ``control[depth]`` holds the same for a *linear* network at c = 1 (σ_w² = 1/n), the control:
    without an activation its gain is 1 up to the random walk's small drift.
    """

    width: int
    batch: int
    seeds: int
    log_norms: dict[tuple[int, str, float], np.ndarray]
    control: dict[int, np.ndarray]
    seconds: float
    weights: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def depths(self) -> list[int]:
        return sorted({k[0] for k in self.log_norms})

    @property
    def activations(self) -> list[str]:
        return [a for a in ACTIVATIONS if any(k[1] == a for k in self.log_norms)]

    @property
    def scales(self) -> list[float]:
        return sorted({k[2] for k in self.log_norms})


def _backprop_log_norms(z: torch.Tensor, x: torch.Tensor, grad: torch.Tensor, activation: str,
                        scales: Sequence[float]) -> torch.Tensor:
    """ln‖∂L/∂h_l‖ for l = 0..L, shape (len(scales), seeds, L + 1); z: (seeds, L, n, n) standard normal."""
    seeds, depth, n, _ = z.shape
    out = []
    for c in scales:
        w = z * (c / math.sqrt(n))
        h, ys = x, []
        for layer in range(depth):
            y = torch.bmm(h, w[:, layer].transpose(1, 2))
            ys.append(y)
            h = _f(activation, y)
        g = grad
        logs = [torch.log(torch.linalg.vector_norm(g, dim=(1, 2)))]
        for layer in range(depth - 1, -1, -1):
            g = torch.bmm(g * _fprime(activation, ys[layer]), w[:, layer])
            logs.append(torch.log(torch.linalg.vector_norm(g, dim=(1, 2))))
        out.append(torch.stack(logs[::-1], dim=1))
    return torch.stack(out)


def _sweep_draws(depth: int, seeds: Sequence[int], width: int, batch: int,
                 jitter: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Standard-normal Z (seeds, depth, width, width), x and G (seeds, batch, width): one generator per
    (seed, depth), Z jittered with its own generator."""
    draws = []
    for seed in seeds:
        gen = torch.Generator().manual_seed(1_000_003 * seed + depth)
        z = torch.randn(depth, width, width, generator=gen, dtype=torch.float64)
        jitter_(z, jitter, seed=1_000_003 * seed + depth)
        draws.append((z, torch.randn(batch, width, generator=gen, dtype=torch.float64),
                      torch.randn(batch, width, generator=gen, dtype=torch.float64)))
    z, x, grad = (torch.stack(parts) for parts in zip(*draws))
    return z, x, grad


def gradient_sweep(depths: Sequence[int] = DEPTHS, activations: Sequence[str] = ACTIVATIONS,
                   scales: Sequence[float] = SCALES, width: int = WIDTH, batch: int = BATCH,
                   seeds: Sequence[int] = SEEDS, jitter: float = 0.0, keep_weights: bool = False) -> Sweep:
    r"""Backpropagate a random upstream gradient through bias-free MLPs; record ln‖∂L/∂h_l‖ per layer.

    For each depth and seed, one generator (seeded by ``(seed, depth)``) draws standard-normal
    matrices Z, inputs :math:`x \sim \mathcal N(0, I)` of shape (batch, width) and an upstream
    gradient :math:`G \sim \mathcal N(0, I)`; a weight scale c uses :math:`W = cZ/\sqrt n`, so scales
    and activations are compared on the same random draws, and a seed's networks do not depend on
    which other seeds run with it. ``jitter`` multiplies every entry of Z by :math:`1 + \text{jitter}\cdot\varepsilon`
    (:func:`stabletrain.perturb.jitter_`). float64 throughout.
    """
    start = time.perf_counter()
    log_norms, control, kept = {}, {}, {}
    with single_thread():
        for depth in depths:
            z, x, grad = _sweep_draws(depth, seeds, width, batch, jitter)
            for activation in activations:
                result = _backprop_log_norms(z, x, grad, activation, scales).numpy()
                for i, c in enumerate(scales):
                    log_norms[depth, activation, float(c)] = result[i]
            control[depth] = _backprop_log_norms(z, x, grad, "linear", (1.0,)).numpy()[0]
            if keep_weights:
                kept[depth] = z
    return Sweep(width, batch, len(seeds), log_norms, control, time.perf_counter() - start, kept)


def preactivation_variances(depth: int, activation: str, scale: float, input_var: float = 1.0) -> np.ndarray:
    r"""Mean-field :math:`q_l = \operatorname{Var}[y_l]`, l = 1..depth, for a bias-free MLP with σ_w = c/√n.

    :math:`q_1 = c^2\,\text{input\_var}`, :math:`q_l = c^2\,\mathbb E[f(z)^2]` with
    :math:`z\sim\mathcal N(0, q_{l-1})` (Gauss–Hermite).
    """
    fns = {"sigmoid": lambda z: 1 / (1 + np.exp(-z)), "tanh": np.tanh, "relu": lambda z: np.maximum(z, 0),
           "linear": lambda z: z}
    f = fns[activation]
    q = np.empty(depth)
    q[0] = scale**2 * input_var
    for i in range(1, depth):
        if activation in ("relu", "linear"):  # closed forms: E[relu(z)^2] = q/2, E[z^2] = q
            q[i] = scale**2 * q[i - 1] * (0.5 if activation == "relu" else 1.0)
        else:
            q[i] = scale**2 * _gauss(lambda z: f(z) ** 2, q[i - 1])
    return q


def depth_scale(activation: str, scale: float, bias_std: float = 0.0, max_layers: int = 5000) -> dict[str, float]:
    r"""Mean-field depth scale of the gradient (Schoenholz et al. 2017) for weights N(0, c²/n) and biases N(0, σ_b²).

    The forward recursion :math:`q_{l+1} = c^2\,\mathbb E[f(z)^2] + \sigma_b^2`, :math:`z\sim\mathcal N(0, q_l)`,
    is run from :math:`q = 1` until it settles (at most ``max_layers`` layers) at :math:`q^*`. There
    every layer multiplies the squared gradient norm by :math:`\chi = c^2\,\mathbb E[f'(z)^2]`, so it
    changes by a factor e over :math:`\xi = 1/|\ln\chi|` layers. Returns ``q_star``, ``chi``, ``xi``
    (inf where χ = 1) and ``layers`` (how many the recursion ran). At a critical setting with
    :math:`q^* = 0` (tanh at c = 1 without bias) q only decays like 1/(2l), so χ after ``max_layers``
    layers is 1 − O(1/max_layers) and ξ is of the order of ``max_layers``: infinite in the limit.
    """
    from stabletrain.vanishing import derivative_square_mean

    fns = {"sigmoid": lambda z: 1 / (1 + np.exp(-z)), "tanh": np.tanh}
    q, layers = 1.0, 0
    for layers in range(1, max_layers + 1):
        if activation in ("relu", "linear"):  # closed forms: E[relu(z)^2] = q/2, E[z^2] = q
            new = scale**2 * q * (0.5 if activation == "relu" else 1.0) + bias_std**2
        else:
            new = scale**2 * _gauss(lambda z: fns[activation](z) ** 2, q) + bias_std**2
        settled = abs(new - q) <= 1e-12 * max(q, 1e-300)
        q = new
        if q < 1e-30:  # the signal died out: q* = 0
            q = 0.0
            break
        if settled or not math.isfinite(q) or q > 1e300:
            break
    chi = scale**2 * derivative_square_mean(activation, max(q, 1e-300))  # at q -> 0, not at 0 (ReLU's f'(0) = 0)
    critical = math.isclose(chi, 1.0, rel_tol=1e-12)
    return {"q_star": q, "chi": chi, "xi": math.inf if critical else 1 / abs(math.log(chi)), "layers": layers}


@functools.lru_cache(maxsize=None)
def _predicted(depth: int, activation: str, scale: float, width: int) -> tuple[float, ...]:
    from stabletrain.vanishing import log_grad_slope

    q = preactivation_variances(depth, activation, scale)
    steps = np.array([log_grad_slope(scale / math.sqrt(width), width, activation, ql) for ql in q])
    out = np.zeros(depth + 1)
    out[:-1] = np.cumsum(steps[::-1])[::-1]  # entry l: sum of the steps of layers l+1..L
    return tuple(out)


def predicted_log_norms(depth: int, activation: str, scale: float, width: int = WIDTH) -> np.ndarray:
    r"""Predicted :math:`\ln\|g_l\| - \ln\|g_L\|` for l = 0..depth, shape (depth + 1,).

    Going backward through layer l adds the reference's ``log_grad_slope(c/√n, n, activation, q_l)``
    :math:`= \tfrac12\ln(c^2\,\mathbb E[f'(z)^2])`, :math:`z\sim\mathcal N(0, q_l)`.
    """
    return np.array(_predicted(int(depth), activation, float(scale), int(width)))


def fit_slopes(log_norms: np.ndarray) -> np.ndarray:
    """Least-squares slope of ln‖g_l‖ against the number of layers back from the output, per seed."""
    depth = log_norms.shape[1] - 1
    back = depth - np.arange(depth + 1)
    back_c = back - back.mean()
    return ((log_norms - log_norms.mean(axis=1, keepdims=True)) @ back_c) / np.sum(back_c**2)


def _band(ax, layers, values, style, label, alpha=0.18):
    lo, med, hi = np.min(values, axis=0), np.median(values, axis=0), np.max(values, axis=0)
    ax.fill_between(layers, lo, hi, color=style["color"], alpha=alpha, lw=0)
    return ax.plot(layers, med, color=style["color"], ls=style["linestyle"], label=label)[0]


@styled
def plot_sweep(sweep: Sweep, depth: int, scales: Sequence[float] | None = None) -> Figure:
    """One panel per activation: log10‖g_l‖ − log10‖g_L‖ against layer l (median and range over seeds)
    for several weight scales, with the linear control (black)."""
    scales = list(scales or sweep.scales)
    acts = sweep.activations
    fig = Figure(figsize=(4.6 * len(acts), 4.6), layout="constrained")
    axes = fig.subplots(1, len(acts), sharey=True)
    layers = np.arange(depth + 1)
    to10 = 1 / math.log(10)
    for ax, act in zip(np.atleast_1d(axes), acts):
        ctrl = sweep.control[depth]
        _band(ax, layers, (ctrl - ctrl[:, -1:]) * to10, line_style(0), "control: linear, c = 1")
        for i, c in enumerate(scales):
            v = sweep.log_norms[depth, act, c]
            _band(ax, layers, (v - v[:, -1:]) * to10, line_style(i + 1), f"c = {c:g}")
        ax.set_title(act)
        ax.set_xlabel("layer l (0 = input)")
    np.atleast_1d(axes)[0].set_ylabel(r"$\log_{10}\,\|g_l\| / \|g_L\|$")
    np.atleast_1d(axes)[-1].legend(loc="lower right", fontsize=12, title="σ_w = c/√n")
    fig.suptitle(f"Gradient norm through {depth} layers (median and range over {sweep.seeds} seeds)")
    fig.set_label(f"Three panels (sigmoid, tanh, ReLU) of the log gradient norm against layer for a {depth}-layer "
                  "network, one line per weight scale: sigmoid lines fall at every scale, tanh and ReLU lines fall "
                  "for small scales and rise for large ones, with one scale near flat; the linear control is flat.")
    return fig


@styled
def plot_slopes(sweep: Sweep, depth: int = 50) -> Figure:
    """Measured slope of ln‖g‖ per layer (median and range over seeds) against the prediction."""
    fig = Figure(figsize=(6.8, 5.4), layout="constrained")
    ax = fig.add_subplot()
    lim = [0.0, 0.0]
    for i, act in enumerate(sweep.activations):
        style = line_style(i + 1)
        pred, med, lo, hi = [], [], [], []
        for c in sweep.scales:
            predicted = predicted_log_norms(depth, act, c, sweep.width)
            pred.append(predicted[0] / depth)
            measured = (sweep.log_norms[depth, act, c][:, 0] - sweep.log_norms[depth, act, c][:, -1]) / depth
            med.append(np.median(measured))
            lo.append(np.min(measured))
            hi.append(np.max(measured))
        pred, med = np.array(pred), np.array(med)
        ax.errorbar(pred, med, yerr=[med - np.array(lo), np.array(hi) - med], color=style["color"],
                    marker=style["marker"], ls="none", ms=8, capsize=3, label=act)
        lim = [min(lim[0], pred.min(), min(lo)), max(lim[1], pred.max(), max(hi))]
    ax.plot(lim, lim, color=STYLE_COLORS[0], ls=":", lw=1.5, label="measured = predicted")
    ax.set_xlabel(r"predicted: mean over layers of $\frac{1}{2}\ln(c^2\,E[f'(z)^2])$")
    ax.set_ylabel(r"measured: $(\ln\|g_0\| - \ln\|g_L\|)/L$")
    ax.set_title(f"Slope per layer, {depth} layers, every scale c")
    ax.legend(loc="upper left", fontsize=12)
    fig.set_label("Scatter of measured against predicted slope of the log gradient norm per layer, one point per "
                  "activation and weight scale with error bars over seeds; the points lie on the diagonal.")
    return fig


# ----------------------------------------------------------------------------------------------
# Jacobian spectra


def _orthogonal(gaussian: np.ndarray) -> np.ndarray:
    """The orthogonal factor of a square Gaussian matrix, signs fixed so that it is Haar-distributed."""
    q, r = np.linalg.qr(gaussian)
    return q * np.sign(np.diag(r))


#: the Jacobian setups (activation, c, weights): each activation at its flat scale, Gaussian and orthogonal
JACOBIAN_SETUPS: tuple[tuple[str, float, str], ...] = tuple(
    (act, c, kind) for kind in ("gaussian", "orthogonal") for act, c in (("linear", 1.0), ("tanh", 1.0),
                                                                          ("relu", math.sqrt(2))))


def jacobian_spectra(depths: Sequence[int] = DEPTHS, setups: Sequence[tuple[str, float, str]] = JACOBIAN_SETUPS,
        width: int = 32, seeds: Sequence[int] = TRAINING_SEEDS,
        jitter: float = 0.0) -> dict[tuple[str, float, str, int], np.ndarray]:
    r"""Singular values of :math:`\partial h_L/\partial x` (reference ``jacobian_singular_values``).

    For each ``(activation, c, weights)`` setup, depth and seed: a network with Gaussian weights of
    std c/√n, or c times random orthogonal matrices (QR of a Gaussian draw), zero biases, one input
    :math:`x\sim\mathcal N(0, I)`; returns an array (len(seeds), width) of singular values, largest
    first. ``jitter``: relative jitter of every Gaussian draw (:func:`stabletrain.perturb.jitter_`), before
    the QR of an orthogonal setup.
    """
    from stabletrain.vanishing import jacobian_singular_values

    out = {}
    for activation, c, kind in setups:
        for depth in depths:
            values = []
            for s in seeds:
                rng = np.random.default_rng([s, depth])
                draws = [rng.normal(size=(width, width)) for _ in range(depth)]
                jitter_([torch.from_numpy(z) for z in draws], jitter, seed=1_000_003 * s + depth)  # in place
                if kind == "orthogonal":  # the jitter moves the Gaussian draw, and the weights stay orthogonal
                    weights = [c * _orthogonal(z) for z in draws]
                else:
                    weights = [z * (c / math.sqrt(width)) for z in draws]
                biases = [np.zeros(width) for _ in range(depth)]
                values.append(jacobian_singular_values(weights, biases, rng.normal(size=width), activation))
            out[activation, float(c), kind, depth] = np.array(values)
    return out


#: singular values below this are drawn at it (the plot says so): a float64 SVD resolves nothing below
#: about 2e-16 of the largest singular value, and ReLU's Jacobians have exact zeros
JACOBIAN_FLOOR = 1e-16


@styled
def plot_jacobian_spectra(spectra: dict[tuple[str, float, str, int], np.ndarray]) -> Figure:
    """A grid of panels, one row per kind of weights (Gaussian, orthogonal) and one column per activation:
    singular values (largest first, log scale) for each depth, median and range over seeds."""
    setups = list(dict.fromkeys(k[:3] for k in spectra))
    kinds = list(dict.fromkeys(k[2] for k in setups))
    acts = list(dict.fromkeys((k[0], k[1]) for k in setups))
    depths = sorted({k[3] for k in spectra})
    fig = Figure(figsize=(4.6 * len(acts), 3.9 * len(kinds) + 0.6), layout="constrained")
    axes = np.array(fig.subplots(len(kinds), len(acts), sharey=True, squeeze=False))
    for row, kind in enumerate(kinds):
        for col, (act, c) in enumerate(acts):
            ax = axes[row, col]
            if (act, c, kind) not in setups:
                ax.set_visible(False)
                continue
            for i, depth in enumerate(depths):
                values = spectra[act, c, kind, depth]
                index = np.arange(1, values.shape[1] + 1)
                style = line_style(i + 1)
                shown = np.maximum(values, JACOBIAN_FLOOR)
                ax.fill_between(index, shown.min(axis=0), shown.max(axis=0), color=style["color"], alpha=0.18, lw=0)
                ax.plot(index, np.median(shown, axis=0), color=style["color"], ls=style["linestyle"],
                        label=f"{depth} layers")
            ax.set_yscale("log")
            ax.set_ylim(JACOBIAN_FLOOR / 30, 100)
            ax.axhline(JACOBIAN_FLOOR, color="0.5", lw=1, ls=":")
            ax.set_title(f"{act}, {kind}, c = {c:.3g}")
            if row == len(kinds) - 1:
                ax.set_xlabel("index of the singular value")
        axes[row, 0].set_ylabel("singular value of ∂h_L/∂x")
    axes[0, 0].text(1, JACOBIAN_FLOOR * 3, "below 1e-16 and exact zeros: on this line", fontsize=12, color="0.3")
    axes[-1, min(1, len(acts) - 1)].legend(loc="lower left", fontsize=12)
    fig.suptitle("Singular values of the input-output Jacobian (median and range over seeds)")
    fig.set_label("Singular values of the input-output Jacobian, largest first on a log axis, for linear, tanh and "
                  "ReLU networks with Gaussian weights (top) and orthogonal weights (bottom) at three depths. "
                  "Gaussian weights spread them over more orders of magnitude the deeper the network, down to "
                  "the round-off floor; orthogonal weights keep the linear network at exactly 1 and the tanh "
                  "network within a few orders; ReLU has exact zeros with either kind of weights.")
    return fig


# ----------------------------------------------------------------------------------------------
# Training deep MLPs: many models at once


@dataclass
class TrainingBatch:
    """One model per (scale, seed). ``losses`` (scales, seeds, steps); per step and layer l = 1..depth:
    ``grad_norms`` ‖∂L/∂W_l‖ and ``input_grad_norms`` ‖∂L/∂h_(l-1)‖, the gradient arriving at the
    layer's input (h_0 = x), both (scales, seeds, steps, depth); ``dead`` (scales, seeds, depth - 1):
    the fraction of each hidden layer's units whose output is 0 for every example at the last step;
    ``rescaled`` (scales, seeds, steps): how many layers had their gradient rescaled (``rescale_above``)."""

    activation: str
    depth: int
    width: int
    scales: list[float]
    seeds: int
    losses: np.ndarray
    grad_norms: np.ndarray
    input_grad_norms: np.ndarray
    dead: np.ndarray
    rescaled: np.ndarray
    seconds: float

    def final_loss(self, scale: float) -> np.ndarray:
        """Mean loss over the last 10 steps, per seed."""
        return self.losses[self.scales.index(scale), :, -10:].mean(axis=1)


def deep_mlp_weights(c: float, depth: int = 20, width: int = 32, seed: int = 0, jitter: float = 0.0,
                     inputs: int = 2, classes: int = 3) -> list[torch.Tensor]:
    """The weights of the training experiment's MLP: float32 ``(fan_out, fan_in)`` matrices with entries N(0, c²/fan_in).

    Drawn layer by layer from ``torch.Generator().manual_seed(seed)`` as ``randn(fan_out, fan_in) · (c/√fan_in)``
    (the notebook's ``relu_mlp`` draws the same), then jittered (:func:`stabletrain.perturb.jitter_`).
    """
    widths = [inputs] + [width] * (depth - 1) + [classes]
    gen = torch.Generator().manual_seed(seed)
    zs = [torch.randn(n_out, n_in, generator=gen) for n_in, n_out in zip(widths[:-1], widths[1:])]
    jitter_(zs, jitter, seed=seed)
    return [z * (c / math.sqrt(z.shape[1])) for z in zs]


def train_deep_batch(activation: str = "relu", depth: int = 20, width: int = 32,
                     scales: Sequence[float] = (1.0, math.sqrt(2), 2.0), seeds: Sequence[int] = TRAINING_SEEDS,
                     steps: int = 100, lr: float = LR, jitter: float = 0.0, points_per_class: int = 50,
                     rescale_above: float | None = None) -> TrainingBatch:
    r"""Train ``len(scales) × len(seeds)`` MLPs on the 3-class spirals with full-batch SGD, all at once.

    Each model: ``depth`` Linear layers (2 → width → … → width → 3), the activation after all but
    the last, weights from :func:`deep_mlp_weights` (N(0, c²/fan_in), the same draws for every c),
    zero biases, cross-entropy, on ``make_spirals(points_per_class, classes=3, seed=seed)``: a seed
    changes the weights and the data. With ``rescale_above``, each step first does what the graded
    monitor's loop does: every layer whose weight-gradient norm is above it (and finite) has that
    gradient rescaled to norm ``rescale_above``. Records the loss, every layer's weight-gradient
    norm and the norm of the gradient at every layer's input at every step. float32, one thread.
    """
    from stabletrain.data import make_spirals

    start = time.perf_counter()
    seeds = tuple(int(s) for s in seeds)
    data = [make_spirals(points_per_class, classes=3, seed=s) for s in seeds]
    m = len(scales) * len(seeds)
    with single_thread():
        per_model = [deep_mlp_weights(c, depth, width, seed=s, jitter=jitter) for c in scales for s in seeds]
        weights = [torch.stack(layer).requires_grad_() for layer in zip(*per_model)]
        biases = [torch.zeros(m, 1, w.shape[1], requires_grad=True) for w in weights]
        params = weights + biases
        x = torch.stack([x for x, _ in data]).repeat(len(scales), 1, 1)
        yb = torch.stack([y for _, y in data]).repeat(len(scales), 1).reshape(-1)
        losses, rescaled = np.zeros((m, steps)), np.zeros((m, steps), dtype=np.int64)
        norms, input_norms = np.zeros((m, steps, depth)), np.zeros((m, steps, depth))
        for step in range(steps):
            h, inputs = x.clone().requires_grad_(), []
            for i, (w, b) in enumerate(zip(weights, biases)):
                h.retain_grad()
                inputs.append(h)
                h = torch.baddbmm(b, h, w.transpose(1, 2))
                if i < depth - 1:
                    h = _f(activation, h)
            loss = torch.nn.functional.cross_entropy(h.reshape(-1, h.shape[-1]), yb, reduction="none")
            per_model_loss = loss.reshape(m, -1).mean(dim=1)
            for p in params:
                p.grad = None
            per_model_loss.sum().backward()
            losses[:, step] = per_model_loss.detach().numpy()
            with torch.no_grad():
                step_norms = torch.stack([torch.linalg.vector_norm(w.grad, dim=(1, 2)) for w in weights], 1)
                norms[:, step] = step_norms.numpy()
                input_norms[:, step] = torch.stack([torch.linalg.vector_norm(t.grad, dim=(1, 2)) for t in inputs],
                                                   1).numpy()
                if rescale_above is not None:
                    over = torch.isfinite(step_norms) & (step_norms > rescale_above)
                    rescaled[:, step] = over.sum(dim=1).numpy()
                    factor = torch.where(over, rescale_above / step_norms, torch.ones_like(step_norms))
                    for i, w in enumerate(weights):
                        w.grad *= factor[:, i, None, None]
                for p in params:
                    p -= lr * p.grad
        dead = np.stack([(t.detach() == 0).all(dim=1).double().mean(dim=1).numpy() for t in inputs[1:]], 1)
    shape = (len(scales), len(seeds))
    return TrainingBatch(activation, depth, width, [float(s) for s in scales], len(seeds),
                         losses.reshape(*shape, steps), norms.reshape(*shape, steps, depth),
                         input_norms.reshape(*shape, steps, depth), dead.reshape(*shape, depth - 1),
                         rescaled.reshape(*shape, steps), time.perf_counter() - start)


@styled
def plot_gradient_profiles(batch: TrainingBatch, step: int = 0) -> Figure:
    """At one step (default: the initial weights), per layer l and scale, median and range over seeds:
    left log10 ‖∂L/∂h_(l-1)‖, the gradient arriving at layer l's input; right log10 ‖∂L/∂W_l‖."""
    fig = Figure(figsize=(12.5, 4.6), layout="constrained")
    ax_act, ax_weight = fig.subplots(1, 2, sharey=True)
    layers = np.arange(1, batch.depth + 1)
    for i, c in enumerate(batch.scales):
        style = line_style(i + 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            _band(ax_act, layers, np.log10(batch.input_grad_norms[i, :, step]), style, f"c = {c:.3g}")
            _band(ax_weight, layers, np.log10(batch.grad_norms[i, :, step]), style, f"c = {c:.3g}")
    ax_act.set_title("activation gradients ‖∂L/∂h_(l−1)‖: a trend")
    ax_weight.set_title("weight gradients ‖∂L/∂W_l‖: a level, no trend")
    ax_act.set_ylabel(r"$\log_{10}$ gradient norm")
    for ax in (ax_act, ax_weight):
        ax.set_xlabel("layer l (1 = first; its input is x, 2 numbers per example)")
        ax.set_xticks([1, 5, 10, 15, 20] if batch.depth >= 20 else list(layers))
    ax_act.legend(loc="upper right", fontsize=12)
    where = "at initialization" if step == 0 else f"at step {step}"
    fig.suptitle(f"{batch.depth}-layer {batch.activation} MLP {where}: median and range over {batch.seeds} seeds")
    fig.set_label("Two panels of log gradient norm against layer for three weight scales. Left, the gradient "
                  "arriving at each layer's input: it falls toward the input at the smallest scale, rises toward "
                  "the input at the largest and is flat at the middle one. Right, each layer's weight gradient: "
                  "no trend with depth at any scale, only a level that is tiny, moderate or huge.")
    return fig


#: losses above this are drawn at it, and gradient norms above 10**GRAD_CEIL at it (the plot says so)
LOSS_CEIL = 2.5
GRAD_CEIL = 6.0


@styled
def plot_training(batch: TrainingBatch) -> Figure:
    """Left: loss per step (median and range over seeds) per scale, a ✕ where runs diverge.
    Right: log10 ‖∂L/∂W_1‖ (the scale's line and band: median and range) and ‖∂L/∂W_L‖ (thin
    dotted, median), per step."""
    fig = Figure(figsize=(12.5, 4.6), layout="constrained")
    ax_loss, ax_norm = fig.subplots(1, 2)
    steps = np.arange(batch.losses.shape[2])
    for i, c in enumerate(batch.scales):
        style = line_style(i + 1)
        losses = batch.losses[i]
        finite = np.isfinite(losses)
        label = f"c = {c:.3g}"
        if not finite.all():
            first_bad = int(np.argmin(finite.all(axis=0)))
            label += f" (NaN from step {first_bad})"
            ax_loss.plot([first_bad], [LOSS_CEIL], marker="X", ms=12, color=style["color"], ls="none", clip_on=False)
        _band(ax_loss, steps, np.minimum(losses, LOSS_CEIL), style, label)
        with np.errstate(divide="ignore", invalid="ignore"):  # a zero or NaN norm is simply not drawn
            first = np.minimum(np.log10(batch.grad_norms[i, :, :, 0]), GRAD_CEIL)
            last = np.minimum(np.log10(batch.grad_norms[i, :, :, -1]), GRAD_CEIL)
        _band(ax_norm, steps, first, style, f"c = {c:.3g}")
        ax_norm.plot(steps, np.median(last, axis=0), color=style["color"], ls=":", lw=1.8)
    ax_loss.axhline(math.log(3), color=STYLE_COLORS[0], ls=":", lw=1.3, label="ln 3: guessing")
    ax_loss.set_ylim(0, LOSS_CEIL * 1.04)
    ax_loss.text(0.98, 0.97, f"losses above {LOSS_CEIL} drawn at {LOSS_CEIL}; ✕: diverged", transform=ax_loss.transAxes,
                 ha="right", va="top", fontsize=12, color="0.3")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.set_title(f"{batch.depth}-layer {batch.activation} MLP on the spirals")
    ax_loss.legend(loc="lower left", fontsize=12)
    ax_norm.set_ylim(-6.5, GRAD_CEIL + 0.5)
    ax_norm.text(0.98, 0.97, f"norms above 1e{GRAD_CEIL:.0f} drawn at 1e{GRAD_CEIL:.0f}", transform=ax_norm.transAxes,
                 ha="right", va="top", fontsize=12, color="0.3")
    ax_norm.set_xlabel("step")
    ax_norm.set_ylabel(r"$\log_{10}\|\partial L/\partial W\|$")
    ax_norm.set_title("‖∂L/∂W‖: first layer (band), last layer (dotted)")
    ax_norm.legend(loc="lower right", fontsize=12)
    fig.set_label("Left: training loss against step for three weight scales; the smallest scale stays near the "
                  "guessing level, the middle one decreases, the largest diverges within a few steps. Right: log "
                  "gradient norm of the first and last layers per step; tiny for the smallest scale, near 0.1 for "
                  "the middle one, shooting up for the largest.")
    return fig


# ----------------------------------------------------------------------------------------------
# The explorer


class VanishingExplorer:
    """An ipywidgets explorer over a precomputed :class:`Sweep`: depth, activation and weight scale.

    Each update replaces the line data of one axes (the measured median and range over seeds, the
    mean-field prediction, the linear control), draws with Agg and sends a PNG to an
    ``ipywidgets.Image`` (no pyplot). Predictions are precomputed at construction, so an update
    does no numerical work; ``last_update_s`` holds its duration.
    """

    def __init__(self, sweep: Sweep, depth: int = 20, activation: str = "tanh", scale: float = 1.0,
                 dpi: int = 80) -> None:
        import ipywidgets as widgets

        self.sweep = sweep
        self.dpi = dpi
        self.predicted = {key: predicted_log_norms(key[0], key[1], key[2], sweep.width) for key in sweep.log_norms}
        self.depth = widgets.ToggleButtons(options=sweep.depths, value=depth, description="depth")
        self.activation = widgets.ToggleButtons(options=sweep.activations, value=activation, description="activation")
        self.scale = widgets.SelectionSlider(options=[(f"{c:g}", c) for c in sweep.scales], value=float(scale),
                                             description="c = σ_w·√n", style={"description_width": "initial"},
                                             continuous_update=True)
        self.image = widgets.Image(format="png")
        self.summary = widgets.HTML()
        self.widget = widgets.VBox([widgets.HBox([self.depth, self.activation]), self.scale, self.image,
                                    self.summary])
        self.last_update_s = math.nan
        self._build_figure()
        for control in (self.depth, self.activation, self.scale):
            control.observe(lambda _change: self.update(), names="value")
        self.update()

    def _build_figure(self) -> None:
        with course_style():
            fig = Figure(figsize=(9.0, 4.6), dpi=self.dpi)
            ax = fig.add_subplot()
            (self._control,) = ax.plot([], [], color=STYLE_COLORS[0], ls="-", lw=1.5, label="control: linear, c = 1")
            (self._median,) = ax.plot([], [], color=STYLE_COLORS[2], ls="--", lw=2.4, label="measured median")
            (self._predicted,) = ax.plot([], [], color=STYLE_COLORS[4], ls=":", lw=2.4, label="predicted")
            self._band = None
            ax.set_xlabel("layer l (0 = input)")
            ax.set_ylabel(r"$\log_{10}\,\|g_l\| / \|g_L\|$")
            ax.legend(loc="lower right", fontsize=12)
            ax.set_title("placeholder")
            fig.subplots_adjust(left=0.1, right=0.97, bottom=0.15, top=0.9)
        self.figure, self.ax = fig, ax
        self._canvas = FigureCanvasAgg(fig)

    def _render_png(self) -> bytes:
        return style.canvas_png(self._canvas)

    def update(self) -> float:
        """Redraw for the current controls; return (and store in ``last_update_s``) the seconds it took."""
        start = time.perf_counter()
        depth, act, c = self.depth.value, self.activation.value, self.scale.value
        to10 = 1 / math.log(10)
        values = self.sweep.log_norms[depth, act, c]
        rel = (values - values[:, -1:]) * to10
        ctrl = self.sweep.control[depth]
        ctrl = np.median(ctrl - ctrl[:, -1:], axis=0) * to10
        pred = self.predicted[depth, act, c] * to10
        layers = np.arange(depth + 1)
        self._control.set_data(layers, ctrl)
        self._median.set_data(layers, np.median(rel, axis=0))
        self._predicted.set_data(layers, pred)
        if self._band is not None:
            self._band.remove()
        self._band = self.ax.fill_between(layers, rel.min(axis=0), rel.max(axis=0), color=STYLE_COLORS[2],
                                          alpha=0.2, lw=0)
        lo = min(rel.min(), pred.min(), ctrl.min())
        hi = max(rel.max(), pred.max(), ctrl.max())
        pad = 0.05 * max(hi - lo, 1.0)
        self.ax.set_ylim(lo - pad, hi + pad)
        self.ax.set_xlim(0, depth)
        measured = np.median(values[:, 0] - values[:, -1]) / depth
        self.ax.set_title(f"{act}, {depth} layers, σ_w = {c:g}/√{self.sweep.width}", fontsize=13)
        self.image.value = self._render_png()
        verdict = "vanishing" if measured < -0.05 else "exploding" if measured > 0.05 else "about flat"
        self.summary.value = (
            f"slope of ln‖g‖ per layer backward: measured <b>{measured:+.3f}</b> (median over "
            f"{self.sweep.seeds} seeds), predicted <b>{self.predicted[depth, act, c][0] / depth:+.3f}</b> — "
            f"{verdict}; ‖g_0‖/‖g_L‖ = 10^{np.median(rel[:, 0]):.1f}")
        self.last_update_s = time.perf_counter() - start
        return self.last_update_s
