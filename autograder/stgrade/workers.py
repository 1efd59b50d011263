"""Worker processes that grade one submission at a time, under a watchdog.

:class:`Pool` keeps ``jobs`` worker processes (started with ``spawn``, so each is a fresh
interpreter). The parent hands each idle worker one :class:`Task` and waits for its result. A
worker that dies (killed by a submission, out of memory, a crash) or that runs past the
watchdog's limit for its submission (stopped with SIGSTOP, stuck in a loop) is killed together
with every process it started (its kernel and whatever that forked), and replaced; its
submission alone gets a failure with the reason, and the batch goes on. Nothing a worker sends
is written anywhere by the worker: results travel to the parent over a pipe the kernels do not
inherit.
"""

from __future__ import annotations

import multiprocessing
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import wait

import psutil


@dataclass
class Task:
    index: int
    args: tuple  # grade_submission's arguments
    note: str = ""  # why it is graded again, for the result's notes


def _work(conn, target: str) -> None:
    import importlib

    from . import userns

    userns.enter()  # before any thread: lets a grader that is not root cap its kernels' scratch (stgrade.userns)
    module, _, name = target.partition(":")
    function = getattr(importlib.import_module(module), name)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    while True:
        try:
            args = conn.recv()
        except (EOFError, OSError):
            return
        if args is None:
            return
        try:
            result = function(*args)
            conn.send(("ok", result))
        except Exception as exc:  # noqa: BLE001 — a grader bug costs this submission only, and says so
            conn.send(("error", f"grader error: {type(exc).__name__}: {str(exc)[:300]}"))


class _Worker:
    def __init__(self, context, target: str) -> None:
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_work, args=(child, target), daemon=True)
        self.process.start()
        child.close()
        self.task: Task | None = None
        self.deadline = 0.0
        self.tree: list[psutil.Process] = []  # its descendants when last looked at

    def look(self) -> None:
        """Remember the processes below this worker, to kill them even after it died (an orphaned
        kernel is no longer its child then)."""
        try:
            self.tree = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.Error:
            pass

    def kill(self) -> None:
        """Kill this worker and every process below it (its kernel, and what that started)."""
        if self.process.is_alive():
            self.look()
        for proc in self.tree:  # psutil checks the start time: a reused pid is left alone
            try:
                proc.kill()
            except psutil.Error:
                pass
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=10)
        self.conn.close()


class Pool:
    def __init__(self, jobs: int, watchdog_seconds: float, target: str = "stgrade.grading:grade_submission",
                 on_replace=None) -> None:
        self.context = multiprocessing.get_context("spawn")
        self.jobs, self.watchdog_seconds, self.target = jobs, watchdog_seconds, target
        self.on_replace = on_replace  # called after a worker was killed (to clean up what it left)
        self.workers: list[_Worker] = []

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        for w in self.workers:
            try:
                w.conn.send(None)
            except OSError:
                pass
        for w in self.workers:
            w.process.join(timeout=5)
            if w.process.is_alive():
                w.kill()
        self.workers = []

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        self.workers[self.workers.index(worker)] = _Worker(self.context, self.target)
        if self.on_replace is not None:
            self.on_replace()

    def run(self, tasks: list[Task]) -> Iterator[tuple[Task, object, str]]:
        """Yield ``(task, result, "")`` for each task, or ``(task, None, why it failed)``."""
        pending = list(reversed(tasks))
        looked = 0.0
        while len(self.workers) < min(self.jobs, len(tasks)):
            self.workers.append(_Worker(self.context, self.target))
        while pending or any(w.task for w in self.workers):
            for w in self.workers:
                if w.task is None and pending:
                    w.task = pending.pop()
                    w.deadline = time.monotonic() + self.watchdog_seconds
                    try:
                        w.conn.send(w.task.args)
                    except OSError:
                        pass  # a dead worker is noticed below
            busy = [w for w in self.workers if w.task is not None]
            ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=1.0)
            if time.monotonic() - looked > 2.0:
                for w in busy:
                    w.look()
                looked = time.monotonic()
            for w in busy:
                task = w.task
                if w.conn in ready:
                    try:
                        status, value = w.conn.recv()
                    except (EOFError, OSError):
                        status, value = "died", None
                    if status == "ok":
                        w.task = None
                        yield task, value, ""
                        continue
                    if status == "error":
                        w.task = None
                        yield task, None, value
                        continue
                if w.process.sentinel in ready or not w.process.is_alive() or (w.conn in ready):
                    code = w.process.exitcode
                    self._replace(w)
                    yield task, None, (f"the grading process for this submission died (exit code {code}); "
                                       "nothing else was affected")
                elif time.monotonic() > w.deadline:
                    self._replace(w)
                    yield task, None, (f"grading this submission took longer than {self.watchdog_seconds:.0f} s "
                                       "(the whole submission's limit); it was stopped")
