"""One intra-op torch thread for a block of small-tensor work."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def single_thread() -> Iterator[None]:
    """One intra-op torch thread inside, the previous setting restored after.

    The lessons' models and the exercises' cases use tiny tensors: with two or more threads each of
    thousands of small ops pays for synchronisation, which is slower, and much slower on a busy
    machine (a 64 × 64 QR took 100× longer with two threads than with one). One thread also makes
    floating-point reductions, hence chaotic training runs, reproducible.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
