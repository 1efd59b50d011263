"""Synthetic data sets for the lessons: in memory, seeded, no downloads.

Every generator draws from its own ``torch.Generator`` seeded with ``seed``, so the same arguments
give the same tensors whatever else the notebook has drawn, and the global RNG is left untouched.
Inputs are ``float32``; class labels are ``int64`` (what ``F.cross_entropy`` expects).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["make_regression", "make_spirals", "make_sequence_task", "standardize"]


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _check_positive(name: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def make_regression(
    n: int,
    d: int,
    noise: float = 0.1,
    seed: int = 0,
    *,
    scale_spread: float = 1.0,
    offset: float = 0.0,
) -> tuple[Tensor, Tensor]:
    r"""A linear regression problem whose raw features may sit on very different scales.

    Latent features :math:`z \sim \mathcal N(0, I_d)` and weights :math:`w \sim \mathcal N(0, I_d/d)`
    give the target :math:`y = z^\top w + \text{noise}\cdot\varepsilon`, so
    :math:`\operatorname{Var} y \approx 1 + \text{noise}^2`. The features handed out are
    :math:`x_j = s_j z_j + \text{offset}` with scales :math:`s_j` spaced geometrically from 1 to
    ``scale_spread``: with ``scale_spread=1e3, offset=50`` the problem is exactly as easy as with the
    defaults once the inputs are standardized (lesson 05), but badly conditioned before.

    Returns ``(x, y)`` with shapes ``(n, d)`` and ``(n, 1)``, both float32.
    """
    _check_positive("n", n)
    _check_positive("d", d)
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise!r}")
    if scale_spread <= 0:
        raise ValueError(f"scale_spread must be > 0, got {scale_spread!r}")
    g = _generator(seed)
    z = torch.randn(n, d, generator=g)
    w = torch.randn(d, 1, generator=g) / math.sqrt(d)
    y = z @ w + noise * torch.randn(n, 1, generator=g)
    scales = torch.logspace(0.0, math.log10(scale_spread), d)
    return z * scales + offset, y


def make_spirals(
    n_per_class: int, classes: int = 3, noise: float = 0.2, seed: int = 0
) -> tuple[Tensor, Tensor]:
    r"""The CS231n spiral: ``classes`` interleaved arms in the plane, not linearly separable.

    For class :math:`k` and :math:`i = 0, \dots, n-1`: radius :math:`r_i = i/(n-1)`, angle
    :math:`t_i = 4k + 4 r_i + \text{noise}\cdot\varepsilon_i`, point :math:`(r_i \sin t_i, r_i \cos t_i)`.

    Returns ``(x, y)``: ``x`` float32 of shape ``(n_per_class * classes, 2)`` and ``y`` int64 labels
    of shape ``(n_per_class * classes,)``, grouped by class.
    """
    _check_positive("n_per_class", n_per_class)
    if classes < 2:
        raise ValueError(f"classes must be >= 2, got {classes!r}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise!r}")
    g = _generator(seed)
    r = torch.linspace(0.0, 1.0, n_per_class)
    xs, ys = [], []
    for k in range(classes):
        t = 4.0 * k + 4.0 * r + noise * torch.randn(n_per_class, generator=g)
        xs.append(torch.stack([r * torch.sin(t), r * torch.cos(t)], dim=1))
        ys.append(torch.full((n_per_class,), k, dtype=torch.int64))
    return torch.cat(xs), torch.cat(ys)


def make_sequence_task(n: int, T: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    r"""The adding problem (Hochreiter & Schmidhuber 1997), the classic long-range test for RNNs.

    Each sequence has ``T`` steps with two channels: a value :math:`v_t \sim U(0, 1)` and a marker
    :math:`m_t \in \{0, 1\}` that is 1 at exactly two positions, one in the first half
    (:math:`t < \lfloor T/2 \rfloor`) and one in the second. The target is the sum of the two marked
    values, :math:`y = \sum_t m_t v_t`. Always predicting the mean, 1, gives a mean squared error of
    :math:`\operatorname{Var} y = 2/12 \approx 0.167`; beating it needs information carried across up
    to ``T`` steps, which is what makes gradients vanish or explode.

    Returns ``(x, y)`` with shapes ``(n, T, 2)`` and ``(n, 1)``, float32.
    """
    _check_positive("n", n)
    if T < 2:
        raise ValueError(f"T must be >= 2 (one marker in each half), got {T!r}")
    g = _generator(seed)
    values = torch.rand(n, T, generator=g)
    half = T // 2
    first = torch.randint(0, half, (n,), generator=g)
    second = torch.randint(half, T, (n,), generator=g)
    markers = torch.zeros(n, T)
    rows = torch.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    y = (values * markers).sum(dim=1, keepdim=True)
    return torch.stack([values, markers], dim=2), y


def standardize(train: Tensor, *others: Tensor) -> tuple[Tensor, ...]:
    r"""Standardize every feature with statistics of the training set only.

    With :math:`\mu = \text{mean}(x_\text{train})` and :math:`\sigma = \text{std}(x_\text{train})`
    over dim 0 (the biased estimate, so the standardized training set has variance exactly 1), every
    tensor becomes :math:`(x - \mu)/\sigma`. Validation and test sets are transformed with the
    *training* :math:`\mu, \sigma`: computing them on the evaluation data leaks it into the model.
    A feature that is constant on the training set (:math:`\sigma = 0`) is only centred, as
    scikit-learn's ``StandardScaler`` does.

    Shapes: ``train`` is ``(n, *features)`` with ``n >= 1``; each of ``others`` is
    ``(m, *features)``. Returns ``(train_std, *others_std)`` as a tuple, same shapes and dtypes.
    """
    if train.ndim < 1 or train.shape[0] < 1:
        raise ValueError(f"train needs at least one sample along dim 0, got shape {tuple(train.shape)}")
    for i, other in enumerate(others):
        if other.shape[1:] != train.shape[1:]:
            raise ValueError(
                f"others[{i}] has feature shape {tuple(other.shape[1:])}, "
                f"train has {tuple(train.shape[1:])}"
            )
    mean = train.mean(dim=0)
    std = train.std(dim=0, correction=0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return tuple((x - mean) / std for x in (train, *others))
