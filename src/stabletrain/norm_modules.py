r"""``BatchNorm1d`` and ``LayerNorm`` as ``torch.nn.Module``\ s built from tensor operations.

The answer key of lessons ``05_batch_norm`` and ``06_layer_norm_residual``. Both match their
``torch.nn`` namesakes (torch 2.13) in outputs, gradients, running buffers, errors, ``state_dict``
keys (so ``load_state_dict`` works in both directions) and ``repr``, without calling
``F.batch_norm``/``F.layer_norm``: autograd differentiates through the batch statistics.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
from torch import Tensor, nn


class BatchNorm1d(nn.Module):
    r"""Batch normalization over ``(N, C)`` or ``(N, C, L)`` inputs, as ``torch.nn.BatchNorm1d``.

    .. math:: y = \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \varepsilon}}\,\gamma + \beta

    per channel ``c``, over the :math:`M = N` (or :math:`N L`) values of that channel.

    * Training: batch mean and *biased* variance; with ``track_running_stats`` the buffers move as
      ``running = (1 - f) * running + f * stat`` with the *unbiased* variance
      :math:`\frac{M}{M-1}\mathrm{Var}[x]`, where ``f = momentum``, or ``1 / num_batches_tracked``
      (a cumulative average) when ``momentum`` is None; ``num_batches_tracked`` counts the steps.
    * Evaluation: the running buffers replace the batch statistics and nothing changes; without
      ``track_running_stats`` (no buffers) the batch statistics are used in both modes.

    Args:
        num_features: C.
        eps: added to the variance.
        momentum: weight of each new batch in the running averages, or None.
        affine: learn ``weight`` (γ, ones) and ``bias`` (β, zeros) of shape ``(C,)``.
        track_running_stats: keep ``running_mean`` (zeros), ``running_var`` (ones) and
            ``num_batches_tracked`` buffers.
        device, dtype: of the parameters and buffers.
        bias: learn β (with ``affine``).
    """

    #: state_dict format version of torch's ``_NormBase`` (the one with ``num_batches_tracked``).
    _version = 2

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        self.weight = nn.Parameter(torch.empty(num_features, **factory)) if affine else None
        self.bias = nn.Parameter(torch.empty(num_features, **factory)) if affine and bias else None
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **factory))
            self.register_buffer("running_var", torch.ones(num_features, **factory))
            self.register_buffer(
                "num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device)
            )
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, no batches tracked."""
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        """Reset the running statistics, and γ = 1, β = 0."""
        self.reset_running_stats()
        if self.weight is not None:
            nn.init.ones_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, input: Tensor) -> Tensor:
        """Normalize ``input`` of shape ``(N, C)`` or ``(N, C, L)``; returns the same shape."""
        if input.dim() not in (2, 3):
            raise ValueError(f"expected 2D or 3D input (got {input.dim()}D input)")
        if input.shape[1] != self.num_features:
            raise RuntimeError(
                f"expected input with {self.num_features} channels in dim 1, "
                f"got input of size {tuple(input.shape)}"
            )
        dims = (0,) if input.dim() == 2 else (0, 2)
        stat_shape = (1, -1) if input.dim() == 2 else (1, -1, 1)
        count = input.shape[0] * (1 if input.dim() == 2 else input.shape[2])

        if self.training or not self.track_running_stats:
            if count == 1:
                raise ValueError(
                    "Expected more than 1 value per channel when training, "
                    f"got input size {input.size()}"
                )
            mean = input.mean(dim=dims, keepdim=True)
            var = (input - mean).square().mean(dim=dims, keepdim=True)  # biased
            if self.training and self.track_running_stats:
                self._update_running_stats(mean, var, count)
        else:
            mean = self.running_mean.view(stat_shape)
            var = self.running_var.view(stat_shape)

        out = (input - mean) * torch.rsqrt(var + self.eps)
        if self.weight is not None:
            out = out * self.weight.view(stat_shape)
        if self.bias is not None:
            out = out + self.bias.view(stat_shape)
        return out

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, var: Tensor, count: int) -> None:
        self.num_batches_tracked.add_(1)
        if count == 0:  # as torch: an empty batch is counted but leaves the averages alone
            return
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = var.flatten() * (count / (count - 1))
        self.running_mean.mul_(1 - factor).add_(mean.flatten(), alpha=factor)
        self.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, bias={self.bias is not None}, "
            f"track_running_stats={self.track_running_stats}"
        )


@torch.no_grad()
def fold_batchnorm(linear: nn.Linear, bn: nn.Module) -> nn.Linear:
    r"""A new ``Linear`` equal to ``bn(linear(x))`` with ``bn`` in evaluation mode.

    With :math:`s = \gamma / \sqrt{r_{var} + \varepsilon}` per output feature,

    .. math:: W' = \operatorname{diag}(s)\, W, \qquad b' = s\,(b - r_{mean}) + \beta,

    where :math:`b = 0` when ``linear`` has no bias (the folded layer always has one), and
    :math:`\gamma = 1, \beta = 0` without affine parameters. The inputs are left unchanged, as
    ``torch.nn.utils.fusion.fuse_linear_bn_eval`` leaves them.

    Args:
        linear: ``nn.Linear(in, out)``.
        bn: a batch norm over ``out`` features with running statistics (``torch.nn.BatchNorm1d`` or
            :class:`BatchNorm1d`).

    Returns:
        a new ``nn.Linear(in, out, bias=True)`` with ``linear``'s dtype and device.
    """
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("folding needs running statistics (track_running_stats=True)")
    if bn.running_mean.shape != (linear.out_features,):
        raise ValueError(f"bn has {bn.running_mean.shape[0]} features, linear has {linear.out_features} outputs")
    weight = linear.weight
    scale = torch.rsqrt(bn.running_var.to(weight.dtype) + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.to(weight.dtype)
    shift = -bn.running_mean.to(weight.dtype)
    if linear.bias is not None:
        shift = shift + linear.bias
    bias = scale * shift
    if bn.bias is not None:
        bias = bias + bn.bias.to(weight.dtype)
    folded = nn.Linear(linear.in_features, linear.out_features, bias=True, device=weight.device, dtype=weight.dtype)
    folded.weight.copy_(weight * scale[:, None])
    folded.bias.copy_(bias)
    return folded


def train_bn_classifier(model: nn.Module, x_train: Tensor, y_train: Tensor, x_test: Tensor, steps: int = 100,
                       lr: float = 0.1, batch_size: int = 32, seed: int = 0) -> Tensor:
    """Train ``model`` (which has batch-norm layers) with plain SGD, then return its test outputs.

    The loop that puts the module's two modes in their places: ``model.train()`` for every step
    (one minibatch of ``batch_size`` samples drawn with ``seed``, cross-entropy, gradients reset,
    ``backward``, an SGD step ``p -= lr * p.grad``), then ``model.eval()`` and a forward pass of ``x_test`` without
    autograd, so batch norm uses its running statistics and changes none of them.

    Returns:
        the logits on ``x_test``, ``(len(x_test), classes)``, computed in evaluation mode.
    """
    generator = torch.Generator().manual_seed(seed)
    params = list(model.parameters())
    model.train()
    for _ in range(steps):
        batch = torch.randint(0, len(x_train), (batch_size,), generator=generator)
        loss = nn.functional.cross_entropy(model(x_train[batch]), y_train[batch])
        for p in params:
            p.grad = None
        loss.backward()
        with torch.no_grad():  # plain SGD, as torch.optim.SGD(params, lr) without its import cost
            for p in params:
                p -= lr * p.grad
    model.eval()
    with torch.no_grad():
        return model(x_test)


class LayerNorm(nn.Module):
    r"""Layer normalization over the trailing ``normalized_shape`` dims, as ``torch.nn.LayerNorm``.

    .. math:: y = \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \varepsilon}}\,\gamma + \beta

    with the mean and *biased* variance over the last ``len(normalized_shape)`` dims of each
    sample, the same in training and evaluation. The mean is taken of the values shifted by the
    first one, so a constant sample centres to exact zeros and gives exactly β.

    Args:
        normalized_shape: an int or a non-empty sequence of ints, the trailing shape of the input.
        eps: added to the variance.
        elementwise_affine: learn ``weight`` (γ, ones) and ``bias`` (β, zeros) of shape
            ``normalized_shape``.
        bias: learn β (with ``elementwise_affine``).
        device, dtype: of the parameters.
    """

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(normalized_shape)
        if not self.normalized_shape:
            raise ValueError(
                f"normalized_shape must have at least one dimension, got {normalized_shape}"
            )
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        shape = self.normalized_shape
        self.weight = nn.Parameter(torch.empty(shape, **factory)) if elementwise_affine else None
        self.bias = (
            nn.Parameter(torch.empty(shape, **factory)) if elementwise_affine and bias else None
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """γ = 1, β = 0."""
        if self.weight is not None:
            nn.init.ones_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, input: Tensor) -> Tensor:
        """Normalize ``input`` of shape ``(*, *normalized_shape)``; returns the same shape."""
        k = len(self.normalized_shape)
        if input.dim() < k or tuple(input.shape[input.dim() - k :]) != self.normalized_shape:
            expected = ", ".join(str(s) for s in self.normalized_shape)
            raise RuntimeError(
                f"Given normalized_shape={list(self.normalized_shape)}, expected input with "
                f"shape [*, {expected}], but got input of size{list(input.shape)}"
            )
        leading = input.shape[: input.dim() - k]
        rows = input.reshape(*leading, math.prod(self.normalized_shape))
        shifted = rows - rows[..., :1]
        centered = shifted - shifted.mean(dim=-1, keepdim=True)
        var = centered.square().mean(dim=-1, keepdim=True)  # biased
        out = (centered * torch.rsqrt(var + self.eps)).reshape(input.shape)
        if self.weight is not None:
            out = out * self.weight
        if self.bias is not None:
            out = out + self.bias
        return out

    def extra_repr(self) -> str:
        return (
            f"{self.normalized_shape}, eps={self.eps}, "
            f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}"
        )
