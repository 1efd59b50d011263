"""Perturbed arithmetic: a relative jitter of a run's initial weights.

A chaotic training run (SGD at a large learning rate, clipping on most steps) amplifies a
difference in the last bit of one matrix product until it decides the outcome, so another CPU's
kernels can end a run somewhere else. A claim about a lesson's experiment must survive that. The
claims tests rerun each experiment with every initial weight w replaced by

    w · (1 + rel · ε),   ε ~ N(0, 1) drawn from a generator of its own,

with rel = :data:`JITTER` = 1e-6 (about eight float32 ulps). The jitter draws nothing from the
lesson's generators, so data, initial draws and minibatches stay the same and only the starting
point of the arithmetic moves.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

__all__ = ["JITTER", "jitter_"]

JITTER = 1e-6


@torch.no_grad()
def jitter_(tensors: Tensor | Iterable[Tensor], rel: float, seed: int = 0) -> None:
    """Multiply every tensor in place by ``1 + rel · ε`` with ε ~ N(0, 1); ``rel = 0`` leaves them alone.

    Args:
        tensors: one tensor or an iterable of tensors (parameters, weight stacks), any shape and
            floating dtype.
        rel: the relative size of the jitter (:data:`JITTER` in the claims tests); not negative.
        seed: seeds the jitter's own generator, so a jittered run is reproducible.
    """
    if rel < 0:
        raise ValueError(f"rel must be >= 0, got {rel}")
    if rel == 0:
        return
    generator = torch.Generator().manual_seed(int(seed))
    for t in [tensors] if isinstance(tensors, Tensor) else list(tensors):
        noise = torch.randn(t.shape, generator=generator, dtype=torch.float64)
        t.mul_((1.0 + rel * noise).to(t.dtype))
