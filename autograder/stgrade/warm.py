"""Warm grading kernels: each worker launches the next submission's sandboxed kernel ahead.

A grading kernel's start is the same work for every lesson (Python, torch, ipykernel, the guard:
about 2 CPU-seconds, 1.6–1.9 s of wall clock on a quiet machine) and used to be paid inside every
submission's time. Here a worker launches ``ahead`` kernels before their submissions are known
(:meth:`SandboxKernel.launch`: its own world, cgroup and bubblewrap sandbox, as any kernel), and
when a submission comes it takes the oldest, connects (:meth:`SandboxKernel.connect`), hands it
the submission's seed, grades, and closes it; a replacement is launched at once and boots while
the submission's cells run.

**Isolation is that of a cold kernel, per submission.** A warm kernel is a kernel started
earlier, not a process shared: each is used for exactly one submission and then killed with its
cgroup and world, so it has its own PID namespace and /proc, uid 65534, no capabilities, no
network, private /dev, /tmp and /dev/shm, its own cgroup caps (created at launch: they count its
start too) and its own scratch. It is started by ``exec`` (bubblewrap, then the launcher), so it
inherits nothing of the worker's memory; it is launched with no seed in its environment (the
submission's seed arrives with the first request, as plain text: the same seed a cold kernel has
in its environment) and the secret never reaches a worker at all. A kernel launched while another
student's kernel runs is invisible to it: another PID namespace, another world, bound nowhere in
the other's view (``tests/test_warm_kernels.py`` attacks exactly that).

What it does not do: cut the CPU a start costs. The start still runs, once per submission, only
earlier; on a machine whose cores are all busy grading it competes with the cells for CPU, and
the run's total time falls only by the idle moments it fills (see benchmarks/README.md). The fork
server of :mod:`stgrade.forked` (``stgrade grade --fork``) cuts the CPU too: one sandboxed zygote
per worker, one confined child forked per submission.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .grading import SCRATCH_PREFIX, grade_submission
from .sandbox import Limits, SandboxKernel


class WarmKernels:
    """One worker's kernels launched ahead; :meth:`kernel` is ``grade_submission``'s ``kernels``."""

    def __init__(self, ahead: int = 1) -> None:
        self.ahead = ahead
        self.limits: Limits | None = None
        self.spares: list[SandboxKernel] = []
        self.launched = self.used_warm = 0  # for tests and benchmarks

    def _launch(self, limits: Limits, env: dict[str, str] | None = None) -> SandboxKernel:
        """A kernel launched, not waited for; ahead of its submission (no ``env``) it has no seed and
        nobody's data: its submission is not known yet."""
        scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-warm-"))  # swept like any scratch
        kernel = SandboxKernel(scratch, limits, env)
        try:
            kernel.launch()
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        self.launched += 1
        return kernel

    def top_up(self, limits: Limits) -> None:
        """Launch kernels until ``ahead`` wait (for these limits; others' are closed)."""
        if limits != self.limits:
            self.close()
            self.limits = limits
        while len(self.spares) < self.ahead:
            self.spares.append(self._launch(limits))

    @staticmethod
    def _discard(kernel: SandboxKernel) -> None:
        kernel.close()
        shutil.rmtree(kernel.scratch, ignore_errors=True)

    def _ready(self, limits: Limits, env: dict[str, str]) -> SandboxKernel:
        """A connected kernel for one submission: the oldest launched ahead, else a new one."""
        warm = bool(self.spares) and limits == self.limits
        kernel = self.spares.pop(0) if warm else self._launch(limits, env)
        kernel.extra_env = dict(env)  # a restart (after a crash) starts cold, with the seed in its environment
        try:
            kernel.connect()
        except Exception:  # it died while it waited (killed from outside, say): this submission gets a new one
            self._discard(kernel)
            kernel, warm = self._launch(limits, env), False
            kernel.connect()
        if warm:
            self.used_warm += 1
            # the first request: the submission's seed, as a cold kernel has it in its environment
            run = kernel.run(f"__import__('os').environ.update({dict(env)!r})", timeout=limits.startup_seconds)
            if run.status != "ok":
                kernel.restart()
        return kernel

    @contextlib.contextmanager
    def kernel(self, scratch: Path, limits: Limits, env: dict[str, str]) -> Iterator[SandboxKernel]:
        """The kernel of one submission (``scratch`` is unused: a warm kernel has its own)."""
        kernel = self._ready(limits, env)
        try:
            if self.ahead:
                self.top_up(limits)  # the next submission's kernel boots while this one's cells run
            yield kernel
        finally:
            self._discard(kernel)

    def close(self) -> None:
        spares, self.spares = self.spares, []
        for kernel in spares:
            self._discard(kernel)


_KERNELS: list[WarmKernels] = []


def worker_kernels() -> WarmKernels:
    """This worker process's :class:`WarmKernels` (closed when the process exits)."""
    if not _KERNELS:
        _KERNELS.append(WarmKernels())
        atexit.register(_KERNELS[0].close)
    return _KERNELS[0]


def grade(args: tuple, ahead: int = 1):
    """The worker pool's target (``stgrade.warm:grade``): grade one submission
    (:func:`stgrade.grading.grade_submission`'s ``args``) in a warm kernel, and keep ``ahead``
    kernels launched for the submissions after it (0 near the end of a run: none wasted)."""
    kernels = worker_kernels()
    kernels.ahead = ahead  # a kernel launched earlier for this submission is used all the same
    return grade_submission(*args, kernels=kernels.kernel)
