"""``stgrade grade --scheduler``: a real Dask scheduler and two workers, separate processes on
127.0.0.1, started and stopped here. One worker is killed (SIGKILL) while the cohort is graded:
its submissions are graded by the other, and the grades are those of a local run, byte for byte
in grades.csv. A second run on the same OUT resumes: nothing is graded again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from stgrade.pipeline import RunOptions, grade_folder
from stgrade.sandbox import Limits, sandbox_problem

LESSON = "04_gradient_clipping"
KINDS = ("perfect", "partial", "blank", "noisy", "partial", "perfect")
DASK = str(Path(sys.executable).with_name("dask"))


def _cohort(tmp_path: Path) -> Path:
    import shutil

    from stgrade.samples import build

    samples = build(tmp_path / "samples", only=[LESSON])
    cohort = tmp_path / "submitted"
    for i, kind in enumerate(KINDS):
        target = cohort / f"{kind}{i}" / LESSON
        target.mkdir(parents=True)
        shutil.copy(samples / kind / LESSON / f"{LESSON}.ipynb", target / f"{LESSON}.ipynb")
    return cohort


def _start(argv: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    return subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    """Stop a process started here and everything below it (its grading processes and kernels)."""
    try:
        tree = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        tree = []
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    _, alive = psutil.wait_procs(tree, timeout=15)
    for child in alive:
        child.kill()


@pytest.fixture
def cluster(tmp_path):
    """A scheduler and two single-threaded workers on the loopback address."""
    address_file = tmp_path / "scheduler.json"
    procs: list[subprocess.Popen] = []
    try:
        procs.append(_start([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                             "--scheduler-file", str(address_file)], tmp_path / "scheduler.log"))
        deadline = time.monotonic() + 60
        while not address_file.exists() or not address_file.read_text().strip():
            assert time.monotonic() < deadline, (tmp_path / "scheduler.log").read_text()
            time.sleep(0.2)
        address = json.loads(address_file.read_text())["address"]
        for name in ("w1", "w2"):
            procs.append(_start([DASK, "worker", address, "--name", name, "--nthreads", "1", "--no-nanny",
                                 "--no-dashboard", "--host", "127.0.0.1"], tmp_path / f"{name}.log"))
        from distributed import Client

        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=90)
        yield address, dict(zip(("w1", "w2"), procs[1:]))
    finally:
        for proc in reversed(procs):
            _stop(proc)


def _grades(out: Path) -> str:
    return (out / "grades.csv").read_text()


def test_dask_grades_equal_local_grades_and_a_killed_worker_loses_nothing(tmp_path, cluster):
    address, workers = cluster
    cohort = _cohort(tmp_path)
    sandbox = "required" if sandbox_problem(Limits()) is None else "off"
    limits = Limits(cell_seconds=20, sandbox=sandbox)
    options = RunOptions(jobs=2, limits=limits, secret="dask-test-secret", quiet=True)

    local = grade_folder(cohort, tmp_path / "local", options)
    assert all(r.status == "graded" for r in local)

    out = tmp_path / "dask"
    remote = RunOptions(jobs=2, limits=limits, secret="dask-test-secret", quiet=True, scheduler=address)
    done: list = []
    run = threading.Thread(target=lambda: done.append(grade_folder(cohort, out, remote)))
    run.start()
    deadline = time.monotonic() + 240
    from distributed import Client

    with Client(address, timeout="60s") as client:
        busy = None
        while busy is None:  # a worker that is grading a submission now, after the first result is in
            assert time.monotonic() < deadline and run.is_alive(), "no result came back from the cluster"
            names = {addr: info["name"] for addr, info in client.scheduler_info()["workers"].items()}
            processing = client.processing()
            if list((out / "results").glob("*/*.json")):
                busy = next((names[a] for a, keys in processing.items() if keys and a in names), None)
            time.sleep(0.1)
    victim = workers[busy]
    orphans = psutil.Process(victim.pid).children(recursive=True)  # its grading process and kernels
    os.kill(victim.pid, signal.SIGKILL)
    run.join(300)
    assert not run.is_alive() and done, "the Dask run did not finish"
    assert victim.wait(10) == -signal.SIGKILL
    _, alive = psutil.wait_procs(orphans, timeout=60)  # they finish the submission they had, and exit
    assert not alive, "the killed worker's grading process outlived its submission"
    results = done[0]
    assert all(r.status == "graded" for r in results), [(r.student, r.reason) for r in results]
    assert _grades(out) == _grades(tmp_path / "local"), "Dask and local grades differ"
    for r in local:
        remote_nb = out / "autograded" / r.student / LESSON / f"{LESSON}.ipynb"
        assert remote_nb.is_file(), "the autograded notebook came back from the worker"

    again = grade_folder(cohort, out, remote)  # resume: every result is up to date, nothing is sent
    assert [r.seconds for r in again] == [r.seconds for r in results]
    assert _grades(out) == _grades(tmp_path / "local")
    import tempfile

    left = list(Path(tempfile.gettempdir()).glob(f"stgrade-*-{victim.pid}-*"))
    assert not left, f"the killed worker's folders were not swept: {left}"


def test_each_run_registers_its_own_plugin_and_the_previous_is_torn_down():
    from distributed import Client, LocalCluster

    from stgrade.dask_backend import PLUGIN_NAME, GradingPlugin

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as local, \
            Client(local) as client:
        for watchdog in (100.0, 200.0):
            client.register_plugin(GradingPlugin(watchdog, 1), name=PLUGIN_NAME)
            seen = client.run(lambda dask_worker: dask_worker.plugins[PLUGIN_NAME].watchdog_seconds)
            assert list(seen.values()) == [watchdog]


def _spawn_from_the_plugin(dask_worker):
    """Run one task in the plugin's grading process: grade_submission() without arguments, which
    that process answers with a grader error (so it was started and ran)."""
    from stgrade.dask_backend import PLUGIN_NAME
    from stgrade.workers import Task

    pool = dask_worker.plugins[PLUGIN_NAME]._pool()
    return [failure for _, _, failure in pool.run([Task(0, ())])]


def test_nanny_workers_need_daemon_false_and_are_told_so():
    """The README's recipe: with DASK_DISTRIBUTED__WORKER__DAEMON=False a nanny's worker may start
    the grading processes; a daemonic one refuses the plugin and says what to set."""
    import dask
    from distributed import Client, LocalCluster

    from stgrade.dask_backend import PLUGIN_NAME, GradingPlugin

    with dask.config.set({"distributed.worker.daemon": False}), \
            LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as local, \
            Client(local) as client:
        plugin = GradingPlugin(60.0, 0)
        client.register_plugin(plugin, name=PLUGIN_NAME)
        [spawned] = client.run(_spawn_from_the_plugin).values()
        assert len(spawned) == 1 and spawned[0].startswith("grader error: TypeError"), spawned
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as local, \
            Client(local) as client, pytest.raises(RuntimeError, match="DASK_DISTRIBUTED__WORKER__DAEMON=False"):
        client.register_plugin(GradingPlugin(60.0, 0), name=PLUGIN_NAME)
