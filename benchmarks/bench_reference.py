"""Speed of the reference package against PyTorch's own implementations, side by side.

(a) ``stabletrain.clip_grad_norm_`` vs ``torch.nn.utils.clip_grad_norm_`` on an MLP with ~10 M
    parameters and random gradients (target: within 1.5x);
(b) numpy ``batchnorm_forward`` + ``batchnorm_backward_alt`` on (1024, 1024) float32 vs
    ``torch.nn.BatchNorm1d`` forward + backward on the CPU (target: within 3x).

Each timing is the median of ``--repeat`` runs after one warm-up; the two sides alternate so that
machine load affects both alike, and each keeps its previous results alive until its next call
returns, as a training loop that rebinds ``out, cache = ...`` does. Timings are noisy on a shared
machine: run it when the machine is otherwise idle. Usage::

    .venv/bin/python benchmarks/bench_reference.py [--repeat 30]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from stabletrain import batchnorm_backward_alt, batchnorm_forward, clip_grad_norm_


@dataclass
class Comparison:
    name: str
    ours_s: float
    torch_s: float
    target: float

    @property
    def ratio(self) -> float:
        return self.ours_s / self.torch_s


def _median_times(
    ours: Callable[[], object],
    theirs: Callable[[], object],
    repeat: int,
    setup: Callable[[], None],
) -> tuple[float, float]:
    """Median seconds of ``ours`` and ``theirs``, alternating, each run preceded by ``setup``."""
    fns = (ours, theirs)
    times: tuple[list[float], list[float]] = ([], [])
    last: list[object] = []
    for fn in fns:  # warm-up
        setup()
        last.append(fn())
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            setup()
            start = time.perf_counter()
            result = fn()
            times[i].append(time.perf_counter() - start)
            last[i] = result  # the previous result lived through this call, as in a loop
    return statistics.median(times[0]), statistics.median(times[1])


def bench_clip_grad_norm(repeat: int) -> Comparison:
    """Global-norm clipping of the gradients of Linear(2048, 2048) x 2 + Linear(2048, 768)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 768)
    )
    params = list(model.parameters())
    grads = [torch.randn_like(p) for p in params]

    def reset() -> None:  # fresh, unclipped gradients for every run (not timed)
        for p, g in zip(params, grads):
            p.grad = g.clone()

    ours, theirs = _median_times(
        lambda: clip_grad_norm_(params, max_norm=1.0),
        lambda: torch.nn.utils.clip_grad_norm_(params, max_norm=1.0),
        repeat,
        reset,
    )
    n = sum(p.numel() for p in params)
    return Comparison(f"clip_grad_norm_, {n / 1e6:.1f}M params", ours, theirs, target=1.5)


def bench_batchnorm(repeat: int) -> Comparison:
    """Batch norm forward + backward on a (1024, 1024) float32 batch, numpy vs torch CPU."""
    rng = np.random.default_rng(0)
    shape = (1024, 1024)
    x = rng.standard_normal(shape, dtype=np.float32)
    dout = rng.standard_normal(shape, dtype=np.float32)
    gamma, beta = np.ones(shape[1], np.float32), np.zeros(shape[1], np.float32)
    running_mean, running_var = np.zeros(shape[1], np.float32), np.ones(shape[1], np.float32)

    bn = nn.BatchNorm1d(shape[1])
    xt = torch.from_numpy(x).requires_grad_()
    dout_t = torch.from_numpy(dout)
    inputs = (xt, bn.weight, bn.bias)

    def ours() -> tuple:
        out, cache = batchnorm_forward(x, gamma, beta, running_mean, running_var)
        return out, cache, batchnorm_backward_alt(dout, cache)

    def theirs() -> tuple:
        out = bn(xt)
        return out, torch.autograd.grad(out, inputs, dout_t)

    ours_s, torch_s = _median_times(ours, theirs, repeat, setup=lambda: None)
    return Comparison("batchnorm fwd+bwd, (1024, 1024) f32", ours_s, torch_s, target=3.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=30, help="timed runs per side (default 30)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")

    rows = [bench_clip_grad_norm(args.repeat), bench_batchnorm(args.repeat)]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeat}")
    header = f"{'benchmark':<40} {'stabletrain':>12} {'torch':>10} {'ratio':>7} {'target':>7}  met"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row.name:<40} {row.ours_s * 1e3:>9.3f} ms {row.torch_s * 1e3:>7.3f} ms "
            f"{row.ratio:>6.2f}x {row.target:>6.1f}x  {'yes' if row.ratio <= row.target else 'NO'}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
