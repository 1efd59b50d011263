r"""Batch and layer normalization in numpy: forward/backward pairs with a cache (CS231n style).

The answer key of lessons ``05_batch_norm`` and ``06_layer_norm_residual``. Conventions follow
``torch.nn.BatchNorm1d`` and ``torch.nn.LayerNorm``:

* batch norm, shapes ``(N, C)`` or ``(N, C, L)``: one mean and variance per channel ``c`` over the
  :math:`M = N` (or :math:`N L`) values of that channel,

  .. math::

      \hat x = (x - \mu)\, s, \quad s = \frac{1}{\sqrt{\sigma^2 + \varepsilon}}, \quad
      y = \gamma \hat x + \beta,

  where :math:`\sigma^2` is the *biased* batch variance; the running statistics move as
  :math:`r \leftarrow (1 - m)\, r + m\, \text{stat}` with the *unbiased* batch variance
  :math:`\frac{M}{M-1}\sigma^2`; evaluation uses the running statistics instead.
* layer norm, shape ``(..., D)``: the same with a biased mean and variance over the last axis,
  identical in training and evaluation.

Every function preserves the floating dtype of ``x`` (float32 in, float32 out).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: What a forward pass keeps for its backward pass.
Cache = dict[str, Any]


def _float_array(name: str, value: ArrayLike) -> NDArray[np.floating]:
    array = np.asarray(value)
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"{name} must be a floating-point array, got dtype {array.dtype}")
    return array


def _vector(name: str, value: ArrayLike, size: int, x_shape: tuple[int, ...]) -> NDArray:
    shape = np.shape(value)
    if shape != (size,):
        raise ValueError(
            f"{name} must have shape ({size},) for input of shape {x_shape}, got {shape}"
        )
    return np.asarray(value)


def _channel_sum(a: NDArray, b: NDArray | None = None) -> NDArray:
    """Per-channel sum of ``a`` (or of ``a * b``) over every axis but 1: ``(N, C[, L]) -> (C,)``.

    ``einsum`` makes one pass without temporaries; ``a.sum((0, 2))`` on ``(N, C, L)`` is ~5x slower.
    """
    spec = "nc" if a.ndim == 2 else "ncl"
    if b is None:
        return np.einsum(f"{spec}->c", a)
    return np.einsum(f"{spec},{spec}->c", a, b)


def _check_dout(dout: ArrayLike, shape: tuple[int, ...]) -> NDArray[np.floating]:
    dy = _float_array("dout", dout)
    if dy.shape != shape:
        raise ValueError(f"dout must have the shape of the forward input {shape}, got {dy.shape}")
    return dy


def batchnorm_forward(
    x: ArrayLike,
    gamma: ArrayLike,
    beta: ArrayLike,
    running_mean: NDArray[np.floating],
    running_var: NDArray[np.floating],
    training: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> tuple[NDArray[np.floating], Cache]:
    r"""Batch normalization, as ``torch.nn.BatchNorm1d``.

    Training: :math:`y = \gamma (x - \mu_B)/\sqrt{\sigma_B^2 + \varepsilon} + \beta` with the batch
    mean and biased variance per channel, and, in place,
    ``running_mean = (1 - momentum) * running_mean + momentum * mu_B``,
    ``running_var = (1 - momentum) * running_var + momentum * M / (M - 1) * var_B``.
    Evaluation (``training=False``): the running statistics replace the batch ones and nothing is
    updated.

    Args:
        x: ``(N, C)``, or ``(N, C, L)`` with statistics over axes 0 and 2; floating point.
        gamma, beta: scale and shift, shape ``(C,)``.
        running_mean, running_var: float arrays of shape ``(C,)``, updated in place in training.
        training: use (and record) batch statistics, or use the running ones.
        momentum: weight of the new batch in the running averages.
        eps: added to the variance, > 0.

    Returns:
        ``(out, cache)``: ``out`` shaped and typed like ``x``; ``cache`` for the backward passes.
        The cache keeps a reference to ``x`` (as CS231n's does; ``x - mu`` is recomputed in the
        backward pass rather than stored), so ``x`` must not be modified in place before then.

    Raises:
        ValueError: for inputs that are not 2-D or 3-D, parameters not shaped ``(C,)``,
            ``eps <= 0``, or fewer than two values per channel in training (no unbiased variance;
            torch raises for one and returns an empty output for none).
        TypeError: for non-float ``x`` or running statistics that cannot be updated in place.
    """
    x = _float_array("x", x)
    if x.ndim not in (2, 3):
        raise ValueError(f"expected 2D or 3D input (got {x.ndim}D input)")
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")
    channels = x.shape[1]
    g = _vector("gamma", gamma, channels, x.shape)
    b = _vector("beta", beta, channels, x.shape)
    for name, buffer in (("running_mean", running_mean), ("running_var", running_var)):
        if not (isinstance(buffer, np.ndarray) and np.issubdtype(buffer.dtype, np.floating)):
            got = getattr(buffer, "dtype", type(buffer).__name__)
            raise TypeError(f"{name} must be a float ndarray (it is updated in place), got {got}")
        _vector(name, buffer, channels, x.shape)

    axes = (0,) if x.ndim == 2 else (0, 2)
    stat_shape = (1, channels) if x.ndim == 2 else (1, channels, 1)
    count = x.shape[0] * (1 if x.ndim == 2 else x.shape[2])
    if training:
        if count <= 1:
            raise ValueError(
                f"Expected more than 1 value per channel when training, got input size {x.shape}"
            )
        mean = _channel_sum(x) / count
        out = x - mean.reshape(stat_shape)  # x - mu, turned into the output in place below
        var = _channel_sum(out, out) / count
        running_mean *= 1 - momentum
        running_mean += momentum * mean
        running_var *= 1 - momentum
        running_var += momentum * count / (count - 1) * var
    else:
        mean = running_mean.astype(x.dtype)  # a copy: the cache must not see later updates
        var = running_var.astype(x.dtype, copy=False)
        out = x - mean.reshape(stat_shape)

    std = np.sqrt(var + eps).reshape(stat_shape)
    inv_std = 1 / std
    gamma_b = g.astype(x.dtype, copy=False).reshape(stat_shape)
    out *= gamma_b * inv_std  # gamma * x_hat
    out += b.astype(x.dtype, copy=False).reshape(stat_shape)
    cache = {
        "x": x,
        "mean": mean.reshape(stat_shape),
        "std": std,
        "inv_std": inv_std,
        "gamma": gamma_b,
        "training": training,
        "axes": axes,
        "count": count,
    }
    return out, cache


def batchnorm_backward(
    dout: ArrayLike, cache: Cache
) -> tuple[NDArray[np.floating], NDArray[np.floating], NDArray[np.floating]]:
    r"""Backward pass of :func:`batchnorm_forward`, one node of the computation graph at a time.

    Forward graph (training), per channel over its M values::

        mu = mean(x);  xc = x - mu;  var = mean(xc**2);  std = sqrt(var + eps)
        s = 1 / std;   x_hat = xc * s;  y = gamma * x_hat + beta

    walked backwards with the chain rule. In evaluation ``mu`` and ``var`` are constants (the
    running statistics), so :math:`dx = dy\,\gamma / \sqrt{r_{var} + \varepsilon}`.

    Args:
        dout: upstream gradient, shaped like the forward input.
        cache: from :func:`batchnorm_forward`.

    Returns:
        ``(dx, dgamma, dbeta)`` shaped like ``x``, ``(C,)``, ``(C,)``.
    """
    dy = _check_dout(dout, cache["x"].shape)
    axes, count = cache["axes"], cache["count"]
    std, inv_std, gamma = cache["std"], cache["inv_std"], cache["gamma"]
    xc = cache["x"] - cache["mean"]
    x_hat = xc * inv_std

    dbeta = dy.sum(axis=axes)                         # y = gamma * x_hat + beta
    dgamma = (dy * x_hat).sum(axis=axes)
    dx_hat = dy * gamma
    if not cache["training"]:
        return dx_hat * inv_std, dgamma, dbeta        # x_hat = (x - const) * const
    dxc = dx_hat * inv_std                            # x_hat = xc * s
    ds = (dx_hat * xc).sum(axis=axes, keepdims=True)
    dstd = -ds / std**2                               # s = 1 / std
    dvar = 0.5 * dstd / std                           # std = sqrt(var + eps)
    dxc += 2 * xc * dvar / count                      # var = mean(xc**2)
    dmean = -dxc.sum(axis=axes, keepdims=True)        # xc = x - mu
    dx = dxc + dmean / count                          # mu = mean(x)
    return dx, dgamma, dbeta


def batchnorm_backward_alt(
    dout: ArrayLike, cache: Cache
) -> tuple[NDArray[np.floating], NDArray[np.floating], NDArray[np.floating]]:
    r"""Backward pass of :func:`batchnorm_forward` in closed form.

    With :math:`\hat x = (x - \mu) s`, :math:`s = 1/\sqrt{\sigma^2 + \varepsilon}` and
    :math:`d\hat x = dy\,\gamma`, summing over the M values of each channel:

    .. math::

        dx = \frac{s}{M}\Big(M\, d\hat x - \sum d\hat x - \hat x \sum d\hat x\, \hat x\Big),
        \qquad d\gamma = \sum dy\, \hat x, \qquad d\beta = \sum dy.

    Because :math:`\sum d\hat x = \gamma\, d\beta` and
    :math:`\sum d\hat x\,\hat x = \gamma\, d\gamma`, this is computed as
    :math:`dx = \gamma s \big(dy - d\beta/M - \hat x\, d\gamma/M\big)`, a few vectorised passes
    over the data. In evaluation :math:`dx = dy\,\gamma s` with the running
    variance in :math:`s`.

    Args:
        dout: upstream gradient, shaped like the forward input.
        cache: from :func:`batchnorm_forward`.

    Returns:
        ``(dx, dgamma, dbeta)`` shaped like ``x``, ``(C,)``, ``(C,)``.
    """
    dy = _check_dout(dout, cache["x"].shape)
    count, inv_std, gamma = cache["count"], cache["inv_std"], cache["gamma"]

    dbeta = _channel_sum(dy)
    dx = cache["x"] - cache["mean"]  # x - mu, turned into dx in place below
    dgamma = _channel_sum(dy, dx) * inv_std.reshape(-1)  # sum(dy * x_hat), x_hat = (x - mu) s
    scale = gamma * inv_std
    if not cache["training"]:
        return np.multiply(dy, scale, out=dx), dgamma, dbeta
    # dx = scale * (dy - (x_hat * dgamma + dbeta) / M)
    dx *= inv_std * dgamma.reshape(scale.shape) / count
    dx += (dbeta / count).reshape(scale.shape)
    np.subtract(dy, dx, out=dx)
    dx *= scale
    return dx, dgamma, dbeta


def standardize_fit(x_train: ArrayLike) -> dict[str, NDArray[np.floating]]:
    r"""Per-feature statistics of a training set, for :func:`standardize_apply`.

    :math:`\mu = \frac1n \sum_i x_i` and the *biased* standard deviation
    :math:`\sigma = \sqrt{\frac1n \sum_i (x_i - \mu)^2}` over axis 0, so the standardized training set
    has mean 0 and variance exactly 1 (as scikit-learn's ``StandardScaler``). A feature that is
    constant on the training set (:math:`\sigma = 0`) gets the scale 1: it is only centred.

    Args:
        x_train: ``(n, *features)`` with ``n >= 1``, floating point.

    Returns:
        ``{"mean": ..., "scale": ...}``, each shaped ``features`` and typed like ``x_train``.
    """
    x = _float_array("x_train", x_train)
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"x_train needs at least one sample along axis 0, got shape {x.shape}")
    mean = x.mean(axis=0)
    std = np.sqrt(np.mean(np.square(x - mean), axis=0))
    scale = np.where(std > 0, std, 1).astype(x.dtype)
    return {"mean": mean, "scale": scale}


def standardize_apply(x: ArrayLike, stats: dict[str, NDArray[np.floating]]) -> NDArray[np.floating]:
    """``(x - mean) / scale`` with the *training* statistics from :func:`standardize_fit`.

    Validation and test data are transformed with the training set's statistics: recomputing them
    on the evaluation data leaks it into the model and changes what a feature value means.
    Returns an array shaped and typed like ``x``.
    """
    x = _float_array("x", x)
    return ((x - stats["mean"]) / stats["scale"]).astype(x.dtype, copy=False)


def layernorm_forward(
    x: ArrayLike, gamma: ArrayLike, beta: ArrayLike, eps: float = 1e-5
) -> tuple[NDArray[np.floating], Cache]:
    r"""Layer normalization over the last axis, as ``torch.nn.LayerNorm(D)``.

    For each row :math:`x \in \mathbb{R}^D`:
    :math:`y = \gamma (x - \mu)/\sqrt{\sigma^2 + \varepsilon} + \beta` with
    :math:`\mu = \frac1D \sum_j x_j`, :math:`\sigma^2 = \frac1D \sum_j (x_j - \mu)^2` (biased).
    The mean is taken of the row shifted by its first element, so a constant row centres to
    exact zeros and yields exactly :math:`\beta`.

    Args:
        x: ``(..., D)`` with ``D >= 1``, floating point.
        gamma, beta: shape ``(D,)``.
        eps: added to the variance, > 0.

    Returns:
        ``(out, cache)``: ``out`` shaped and typed like ``x``; ``cache`` for
        :func:`layernorm_backward`.

    Raises:
        ValueError: for a 0-d input, an empty last axis, parameters not shaped ``(D,)``, or
            ``eps <= 0``.
    """
    x = _float_array("x", x)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(
            f"layernorm_forward needs an input with a non-empty last axis, got shape {x.shape}"
        )
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")
    features = x.shape[-1]
    g = _vector("gamma", gamma, features, x.shape).astype(x.dtype, copy=False)
    b = _vector("beta", beta, features, x.shape).astype(x.dtype, copy=False)

    shifted = x - x[..., :1]
    x_centered = shifted - shifted.mean(axis=-1, keepdims=True)
    var = np.mean(np.square(x_centered), axis=-1, keepdims=True)
    inv_std = 1 / np.sqrt(var + eps)
    x_hat = x_centered * inv_std
    out = x_hat * g
    out += b
    cache = {"x_hat": x_hat, "inv_std": inv_std, "gamma": g}
    return out, cache


def layernorm_backward(
    dout: ArrayLike, cache: Cache
) -> tuple[NDArray[np.floating], NDArray[np.floating], NDArray[np.floating]]:
    r"""Backward pass of :func:`layernorm_forward`.

    Batch norm's closed form with the roles of the axes swapped: per row of D features, with
    :math:`d\hat x = dy\,\gamma` and :math:`s = 1/\sqrt{\sigma^2 + \varepsilon}`,

    .. math::

        dx = \frac{s}{D}\Big(D\, d\hat x - \sum_j d\hat x_j
                              - \hat x \sum_j d\hat x_j\, \hat x_j\Big),

    while :math:`d\gamma = \sum dy\, \hat x` and :math:`d\beta = \sum dy` sum over all leading axes.

    Args:
        dout: upstream gradient, shaped like the forward input ``(..., D)``.
        cache: from :func:`layernorm_forward`.

    Returns:
        ``(dx, dgamma, dbeta)`` shaped like ``x``, ``(D,)``, ``(D,)``.
    """
    x_hat, inv_std, gamma = cache["x_hat"], cache["inv_std"], cache["gamma"]
    dy = _check_dout(dout, x_hat.shape)
    features = x_hat.shape[-1]
    leading = tuple(range(dy.ndim - 1))

    dbeta = dy.sum(axis=leading)
    dgamma = (dy * x_hat).sum(axis=leading)
    dx_hat = dy * gamma
    dx = features * dx_hat
    dx -= dx_hat.sum(axis=-1, keepdims=True)
    dx -= x_hat * (dx_hat * x_hat).sum(axis=-1, keepdims=True)
    dx *= inv_std / features
    return dx, dgamma, dbeta
