"""Explorer redraw time: every lesson's widget explorer against the course's 0.5 s bar.

LESSON_STANDARD asks that moving a control redraws in under half a second on a laptop CPU. A wall
clock asserted inside a test fails by the load of a shared CI machine, not by the code, so the bar
lives here: each explorer is built once (on small precomputed data where it needs a sweep), every
control is moved through a few settings, and the redraws' wall and CPU seconds are printed with
their ratio to the bar. Run on a quiet machine:

    .venv/bin/python benchmarks/bench_explorers.py
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

BAR_SECONDS = 0.5


def _settings_init():
    from stabletrain.lessons import init_lab as lab

    explorer = lab.InitExplorer(init="kaiming", act="relu", depth=50, width=32)
    moves = [("init", "too large"), ("act", "selu"), ("width", 64), ("init", "lsuv"), ("act", "tanh"),
             ("depth", 20), ("init", "orthogonal"), ("width", 16)]
    return explorer, moves


def _settings_activations():
    from stabletrain.lessons import activations_lab as lab

    explorer = lab.HistogramExplorer("tanh", 2.0)
    moves = [("activation", name) for name in lab.NAMES] + [("sigma", s) for s in (0.1, 1.0, 10.0)]
    return explorer, moves


def _settings_batchnorm():
    from stabletrain.lessons import batchnorm_lab as lab

    explorer = lab.BatchNormExplorer()
    controls = [name for name in ("gamma", "beta", "mode", "seen") if hasattr(explorer, name)]
    moves = []
    for name in controls:
        control = getattr(explorer, name)
        options = getattr(control, "options", None)
        if options:
            values = [o[1] if isinstance(o, tuple) else o for o in options][:3]
        else:
            values = [control.max, control.min, (control.max + control.min) / 2]
        moves += [(name, v) for v in values]
    return explorer, moves


def _settings_residual():
    from stabletrain.lessons import residual_lab as lab
    from stabletrain.residual import residual_stream_variance

    streams = lab.precompute_streams(depths=(2, 4), seeds=(0, 1), width=8, batch=8)
    explorer = lab.ResidualExplorer(streams, residual_stream_variance, depth=4)
    moves = [("depth", 2), ("placement", "post"), ("scaling", "gpt2"), ("depth", 4), ("placement", "none"),
             ("scaling", "zero_gamma"), ("placement", "pre"), ("scaling", "none")]
    return explorer, moves


EXPLORERS: dict[str, Callable] = {
    "03 InitExplorer": _settings_init,
    "02 HistogramExplorer": _settings_activations,
    "05 BatchNormExplorer": _settings_batchnorm,
    "06 ResidualExplorer": _settings_residual,
}


def measure(build: Callable) -> tuple[list[float], list[float]]:
    """(wall seconds, CPU seconds) of each redraw that moving a control triggers."""
    explorer, moves = build()
    walls, cpus = [], []
    for name, value in moves:
        control = getattr(explorer, name)
        if control.value == value:
            continue
        cpu, wall = time.process_time(), time.perf_counter()
        control.value = value  # observed: the explorer redraws
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return walls, cpus


def main() -> int:
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} cores, load average {load:.1f}; bar {BAR_SECONDS} s per redraw")
    print(f"{'explorer':<24}{'redraws':>8}{'median s':>10}{'max s':>8}{'CPU med s':>11}{'CPU max s':>11}"
          f"{'max/bar':>9}")
    worst = 0.0
    for label, build in EXPLORERS.items():
        walls, cpus = measure(build)
        ratio = max(walls) / BAR_SECONDS
        worst = max(worst, ratio)
        print(f"{label:<24}{len(walls):>8}{statistics.median(walls):>10.3f}{max(walls):>8.3f}"
              f"{statistics.median(cpus):>11.3f}{max(cpus):>11.3f}{ratio:>9.2f}")
    print(f"slowest redraw / bar: {worst:.2f}" + ("" if worst <= 1 else "  (over the bar: check the load)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
