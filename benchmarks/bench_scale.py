"""Grading at scale (issue 23): cold kernels, warm kernels, kernels forked from a fork server
(``--fork``), and a local two-worker Dask cluster, side by side on the same cohort of lesson-04 submissions (as ``bench_grading.py`` builds it).

For each mode: wall seconds, CPU seconds of everything the run started (``getrusage`` of the
reaped children: the grader, its workers, their kernels, the Dask scheduler and workers), the
same from the submissions' own accounting (``cpu_seconds`` in summary.json: each kernel's cgroup
plus its grader process), seconds per submission per core, the peak memory of the grading
processes and kernels (resident set, summed over the process tree every 0.5 s: shared pages
counted in each process, an upper bound), the load average before and after, and whether the
grades equal the first mode's.

    .venv/bin/python benchmarks/bench_scale.py --submissions 40 --modes cold warm fork dask

In ``fork`` mode the kernels' processes are the zygote's forks (their command line is the zygote's):
"kernels" RSS counts the zygotes and their children; the zygotes' own start is in the run's CPU,
not in the submissions' own (it is paid once per worker).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_grading import make_cohort  # noqa: E402

DASK = str(Path(sys.executable).with_name("dask"))


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class TreeMemory:
    """Peak summed RSS of the processes below ``roots`` (and the roots), sampled in a thread."""

    def __init__(self, roots: list[int]) -> None:
        self.roots, self.peak, self.peak_kernels, self._stop = roots, 0, 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            total = kernels = 0
            for root in self.roots:
                try:
                    procs = [psutil.Process(root), *psutil.Process(root).children(recursive=True)]
                except psutil.Error:
                    continue
                for proc in procs:
                    try:
                        rss = proc.memory_info().rss
                        command = " ".join(proc.cmdline()[:4])
                        kernel = "kernel.py" in command or "zygote.py" in command
                    except psutil.Error:
                        continue
                    total += rss
                    kernels += rss if kernel else 0
            self.peak, self.peak_kernels = max(self.peak, total), max(self.peak_kernels, kernels)

    def __enter__(self) -> TreeMemory:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join()


def start_cluster(work: Path, workers: int) -> tuple[str, list[subprocess.Popen]]:
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    address_file = work / "scheduler.json"
    procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(address_file)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)]
    while not address_file.exists() or not address_file.read_text().strip():
        time.sleep(0.2)
    address = json.loads(address_file.read_text())["address"]
    for i in range(workers):
        procs.append(subprocess.Popen([DASK, "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                                       "--host", "127.0.0.1", "--name", f"w{i}"], env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True))
    from distributed import Client

    with Client(address, timeout="60s") as client:
        client.wait_for_workers(workers, timeout=120)
    return address, procs


def stop_cluster(procs: list[subprocess.Popen]) -> None:
    for proc in reversed(procs):
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(mode: str, cohort: Path, out: Path, jobs: int, work: Path, ahead: int = 1) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    load_before = os.getloadavg()
    cpu_before, started = _children_cpu(), time.perf_counter()
    procs: list[subprocess.Popen] = []
    argv = [sys.executable, "-m", "stgrade.cli", "grade", str(cohort), "--out", str(out), "--quiet",
            "--jobs", str(jobs), "--warm", "0" if mode in ("cold", "fork") else str(ahead)]
    if mode == "fork":
        argv.append("--fork")
    if mode == "dask":
        address, procs = start_cluster(work, jobs)
        argv += ["--scheduler", address]
    try:
        grader = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        with TreeMemory([grader.pid, *(p.pid for p in procs[1:])]) as memory:
            grader.wait()
    finally:
        stop_cluster(procs)
    wall, cpu = time.perf_counter() - started, _children_cpu() - cpu_before
    summary = json.loads((out / "summary.json").read_text())
    results = summary.get("submissions") or summary.get("results")
    grades = (out / "grades.csv").read_text()
    return {"mode": mode, "wall": wall, "cpu": cpu, "own_cpu": sum(r["cpu_seconds"] or 0 for r in results),
            "sub_seconds": sum(r["seconds"] for r in results),
            "start_stop": sum(r["kernel_start_stop_seconds"] for r in results),
            "peak_rss": memory.peak, "peak_kernels_rss": memory.peak_kernels, "load": (load_before, os.getloadavg()),
            "grades": grades, "returncode": grader.returncode}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--submissions", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=2, help="local workers, and Dask workers (default: 2)")
    parser.add_argument("--ahead", type=int, default=1, help="--warm N for the warm and dask modes (default: 1)")
    parser.add_argument("--modes", nargs="+", default=["cold", "warm", "dask"], choices=["cold", "warm", "fork", "dask"])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        cohort = make_cohort(args.submissions, work)
        n, rows = args.submissions, []
        for mode in args.modes:
            rows.append(run(mode, cohort, work / f"out-{mode}", args.jobs, work, args.ahead))
            row = rows[-1]
            print(f"{mode:<5} wall {row['wall']:7.1f} s  {row['wall'] / n:5.2f} s/sub  "
                  f"{row['wall'] * args.jobs / n:5.2f} s/sub/core  CPU {row['cpu']:7.1f} s ({row['cpu'] / n:4.2f}/sub; "
                  f"submissions' own {row['own_cpu'] / n:4.2f}/sub)  per-sub wall {row['sub_seconds'] / n:4.2f} s "
                  f"(kernel start/stop {row['start_stop'] / n:4.2f})  peak RSS {row['peak_rss'] / 2**20:6.0f} MiB "
                  f"(kernels {row['peak_kernels_rss'] / 2**20:6.0f})  load {row['load'][0][0]:.2f}->"
                  f"{row['load'][1][0]:.2f}  grades {'=' if row['grades'] == rows[0]['grades'] else 'DIFFER'}"
                  f"  own work {(row['sub_seconds'] - row['start_stop']) / n:4.2f} s/sub  rc {row['returncode']}",
                  flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
