"""Seeding torch's global CPU generator for one case, cheaply.

``torch.manual_seed`` seeds every accelerator backend too; on a CPU-only build each backend queues
the seeding for later and records ``traceback.format_stack()`` with it, so one call formats the
whole call stack (about 0.2 ms at depth 30, and 13 000 traced Python calls per lesson-03 hidden
cell under the grader's watch, :mod:`.guard`). The cases only use the CPU, so they seed the CPU
generator alone — the same numbers ``torch.manual_seed`` gives on the CPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def seed_cpu(seed: int) -> None:
    """``torch.manual_seed(seed)`` for the CPU generator only (the draws on the CPU are identical)."""
    torch.default_generator.manual_seed(seed)


@contextmanager
def cpu_rng(seed: int) -> Iterator[None]:
    """Inside: the global CPU generator seeded with ``seed``; after: its state as before, so a
    case neither depends on nor disturbs the student's own random state
    (``torch.random.fork_rng(devices=[])`` plus ``torch.manual_seed``, without their cost)."""
    generator = torch.default_generator
    state = generator.get_state()
    generator.manual_seed(seed)
    try:
        yield
    finally:
        generator.set_state(state)
