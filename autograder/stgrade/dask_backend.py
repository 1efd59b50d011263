"""Grading on a Dask cluster: ``stgrade grade --scheduler tcp://HOST:8786``.

The grader (this process) keeps every job it has locally — the secret, the intake, the
snapshots, signing and writing results, the reports — and sends each submission to the cluster as
one task carrying what grading it needs: the notebook's bytes, the student's seed (never the
secret), the limits, the result key. A Dask worker grades it exactly as a local worker does, in a
process of its own under the same watchdog (:class:`stgrade.workers.Pool`, one per worker
thread, kept by the worker plugin :class:`GradingPlugin`) with its warm kernels
(:mod:`stgrade.warm`), and sends back the result and the autograded notebook's text; results
are written here as they come (:func:`stgrade.pipeline.grade_folder`), so progress, resume and
grades are those of a local run.

- A submission that crashes or hangs its kernel, or its grading process, is that submission's
  ``failed`` with the reason, as locally (the task itself succeeds: Dask does not retry it).
- A Dask worker that dies takes nothing with it: the scheduler gives its tasks to other workers
  (up to ``distributed.scheduler.allowed-failures`` times, then the submission fails with the
  reason), and results already written stay; a run stopped half-way resumes as a local one.
- Workers must run the same grading code: every task carries the client's
  :func:`stgrade.grading.code_fingerprint`, and a worker with other code refuses it.

Local runs keep the local pool (:class:`stgrade.workers.Pool`): a LocalCluster would add a
scheduler, a nanny per worker and their messaging to every run on one machine and give it nothing
the pool lacks (the pool already streams results, has the watchdog, and is what the Dask workers
run inside).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from distributed.diagnostics.plugin import WorkerPlugin

from .grading import SCRATCH_PREFIX, code_fingerprint
from .workers import Pool, Task

PLUGIN_NAME = "stgrade-grading"


class WrongCode(RuntimeError):
    """A worker's grading code differs from the client's: its grades could differ."""


class GradingPlugin(WorkerPlugin):
    """Worker plugin: a grading pool per worker thread, made when the thread first grades."""

    name = PLUGIN_NAME
    idempotent = False  # each run registers its own (its watchdog, its warm setting): the previous is torn down

    def __init__(self, watchdog_seconds: float, warm: int) -> None:
        self.watchdog_seconds, self.warm = watchdog_seconds, warm

    def setup(self, worker=None) -> None:
        if multiprocessing.current_process().daemon:
            raise RuntimeError("stgrade grades in processes of its own, which a daemonic Dask worker may not start: "
                               "start the workers with DASK_DISTRIBUTED__WORKER__DAEMON=False (or --no-nanny)")
        self._local = threading.local()
        self._pools: list[Pool] = []
        self._lock = threading.Lock()
        from .pipeline import _remove_leftovers

        _remove_leftovers()  # what killed workers on this machine left

    def teardown(self, worker=None) -> None:
        if not hasattr(self, "_lock"):  # its setup refused this worker
            return
        with self._lock:
            pools, self._pools = self._pools, []
        for pool in pools:
            pool.__exit__(None, None, None)

    def _pool(self) -> Pool:
        pool = getattr(self._local, "pool", None)
        if pool is None:
            from .pipeline import _remove_leftovers

            target = "stgrade.warm:grade" if self.warm else "stgrade.grading:grade_submission"
            pool = self._local.pool = Pool(1, self.watchdog_seconds, target=target, on_replace=_remove_leftovers)
            with self._lock:
                self._pools.append(pool)
        return pool

    def grade(self, args: tuple, ahead: int) -> tuple[object, str, str | None]:
        """``(result or None, why it failed, the autograded notebook's text or None)``."""
        student, lesson, _, _, limits, seed, source, key, data, folder = args
        # named after this worker's pid: if the worker is killed, the next grader run here sweeps it
        work = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-dask-"))
        try:
            local = (student, lesson, work / f"{lesson}.ipynb", work / "autograded", limits, seed, source, key, data,
                     folder)
            task = Task(0, (local, min(ahead, self.warm)) if self.warm else local)
            [(_, result, failure)] = list(self._pool().run([task]))
            notebook = work / "autograded" / folder / lesson / f"{lesson}.ipynb"
            text = notebook.read_text(encoding="utf-8") if result is not None and notebook.is_file() else None
            return result, failure, text
        finally:
            shutil.rmtree(work, ignore_errors=True)


def grade_task(args: tuple, ahead: int, fingerprint: str) -> tuple[object, str, str | None]:
    """The task each submission is (run on a worker with :class:`GradingPlugin`)."""
    from distributed import get_worker

    if fingerprint != code_fingerprint():
        raise WrongCode("this Dask worker runs other grading code than the grader that sent the submission: "
                        "install the same version of the course on every worker")
    worker = get_worker()
    plugin = worker.plugins.get(PLUGIN_NAME)
    if plugin is None:
        raise RuntimeError("the stgrade worker plugin is not registered on this worker")
    return plugin.grade(args, ahead)


class DaskRunner:
    """Runs tasks on a cluster; as :class:`stgrade.workers.Pool` for the pipeline:
    ``with DaskRunner(...) as runner: for task, result, failure in runner.run(tasks)``."""

    def __init__(self, scheduler: str, watchdog_seconds: float, warm: int) -> None:
        self.scheduler, self.watchdog_seconds, self.warm = scheduler, watchdog_seconds, warm
        self.client = None

    def __enter__(self) -> DaskRunner:
        from distributed import Client

        self.client = Client(self.scheduler, timeout="30s")
        self.client.register_plugin(GradingPlugin(self.watchdog_seconds, self.warm), name=PLUGIN_NAME)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def threads(self) -> int:
        return max(1, sum(self.client.nthreads().values()))

    def run(self, tasks: list[Task]) -> Iterator[tuple[Task, object, str]]:
        """Yield ``(task, result, "")`` or ``(task, None, why)`` as results arrive; write each
        autograded notebook where a local worker would have (``args[3]/<folder>/<lesson>``)."""
        from distributed import as_completed

        fingerprint, threads = code_fingerprint(), self.threads()
        futures = {}
        for n, task in enumerate(tasks):
            ahead = 1 if n < len(tasks) - threads else 0
            future = self.client.submit(grade_task, task.args, ahead, fingerprint, pure=False,
                                        key=f"stgrade-{task.index}-{task.args[7][:16]}")
            futures[future] = task
        for future in as_completed(futures):
            task = futures.pop(future)
            try:
                result, failure, text = future.result()
            except WrongCode:
                raise
            except Exception as exc:  # noqa: BLE001 — workers died under it too often, or a grader error there
                yield task, None, f"the Dask cluster could not grade this submission ({type(exc).__name__}: " \
                                  f"{str(exc)[:300]})"
                continue
            if result is not None and text is not None:
                _, lesson, _, autograded, *_, folder = task.args
                target = Path(autograded) / folder / lesson / f"{lesson}.ipynb"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
            yield task, result, failure
