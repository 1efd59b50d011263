"""Tiny targets for tests/test_claims_support.py (importable by a subprocess through PYTHONPATH)."""

from __future__ import annotations

import torch

_calls = {"n": 0}


def products() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(64, 96, generator=g)
    b = torch.randn(96, 48, generator=g)
    return torch.cat([(a @ b).flatten(), torch.tanh(a).flatten(), torch.sigmoid(b).flatten()])


def counter() -> int:
    _calls["n"] += 1
    return _calls["n"]


def seeded(seeds: tuple[int, ...], jitter: float = 0.0) -> tuple[tuple[int, ...], float]:
    return seeds, jitter
