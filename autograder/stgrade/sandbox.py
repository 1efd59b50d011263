"""A limited kernel that runs one cell at a time and survives what student code does to it.

:class:`SandboxKernel` starts ``python -m stgrade.kernel`` (resource limits, answer keys switched
off) in a scratch folder that is also its HOME, with a clean environment. :meth:`run` executes one
cell with a wall-clock limit and returns a :class:`CellRun`: outputs (capped in size), the error
name and message if any, and a status:

- ``ok`` / ``error``: the cell finished, without or with an exception;
- ``timeout``: the cell ran past its limit and was interrupted (the kernel is usable again);
- ``hung``: the interrupt did not stop it either; the kernel was killed;
- ``died``: the kernel process died (out of memory, ``os._exit``, a crash).

After ``hung`` or ``died`` the caller restarts the kernel (:meth:`restart`) and replays what it
needs; nothing outside this submission is affected.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager
from nbformat.v4 import output_from_msg

from stabletrain.exercises.plain import MAX_MESSAGE_CHARS, RESULT_MIME

from .cgroup import PidsCgroup

KERNEL_NAME = "stgrade-sandbox"
#: characters of check() result messages kept per cell (all messages together)
RESULTS_CHARS = 4 * MAX_MESSAGE_CHARS


@dataclass(frozen=True)
class Limits:
    """Per-submission limits."""

    cell_seconds: float = 30.0
    notebook_seconds: float = 300.0
    memory_bytes: int = 4 * 1024**3
    file_bytes: int = 64 * 1024**2
    output_chars: int = 20_000  # per cell; the rest is dropped with a note
    max_processes: int = 64  # threads count too: torch's pool and ipykernel's need about 20
    startup_seconds: float = 60.0
    interrupt_grace_seconds: float = 5.0


@dataclass
class CellRun:
    status: str
    outputs: list[dict[str, Any]] = field(default_factory=list)
    ename: str | None = None
    evalue: str | None = None
    seconds: float = 0.0
    results: list[Any] = field(default_factory=list)  # check()'s result messages (text), apart from outputs


def _kernel_spec_dir(root: Path) -> Path:
    spec = root / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "stgrade.kernel", "-f", "{connection_file}"],
        "display_name": "Stable Training grading sandbox",
        "language": "python",
        "interrupt_mode": "signal",
    }))
    return root / "kernels"


class SandboxKernel:
    """One grading kernel in ``scratch``; see the module docstring."""

    def __init__(self, scratch: Path, limits: Limits, extra_env: dict[str, str] | None = None) -> None:
        self.scratch = Path(scratch)
        self.limits = limits
        self.extra_env = dict(extra_env or {})
        self._spec_root = Path(tempfile.mkdtemp(prefix="stgrade-spec-"))
        self.km: KernelManager | None = None
        self.kc: Any = None
        self.cgroup: PidsCgroup | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        keep = ("PATH", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "VIRTUAL_ENV", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
        env = {k: os.environ[k] for k in keep if k in os.environ}
        home = str(self.scratch)
        env.update({
            "HOME": home,
            "TMPDIR": home,
            "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": str(self.scratch / ".mpl"),
            "IPYTHONDIR": str(self.scratch / ".ipython"),
            "JUPYTER_RUNTIME_DIR": str(self.scratch / ".runtime"),
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "PYTHONHASHSEED": "0",
            "PYTHONWARNINGS": "ignore",
            "STGRADE_MEMORY_BYTES": str(self.limits.memory_bytes),
            "STGRADE_FILE_BYTES": str(self.limits.file_bytes),
            "STGRADE_CPU_SECONDS": str(int(self.limits.notebook_seconds * 2 + 60)),
            "STGRADE_CONFINE": "1",
        })
        if self.cgroup is not None:
            env["STGRADE_PIDS_CGROUP"] = str(self.cgroup.path)
        env.update(self.extra_env)
        return env

    def start(self) -> None:
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.cgroup = PidsCgroup.create(self.limits.max_processes)
        ksm = KernelSpecManager(kernel_dirs=[str(_kernel_spec_dir(self._spec_root))])
        # ZeroMQ over Unix sockets in the scratch folder: no TCP port, nothing on the network.
        self.km = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=ksm, transport="ipc",
                                ip=str(self.scratch / ".kernel"))
        self.km.start_kernel(cwd=str(self.scratch), env=self._env())
        self.kc = self.km.client()
        self.kc.start_channels()
        try:
            self.kc.wait_for_ready(timeout=self.limits.startup_seconds)
        except RuntimeError:
            self.shutdown()
            raise

    def shutdown(self) -> None:
        if self.kc is not None:
            self.kc.stop_channels()
            self.kc = None
        if self.km is not None:
            try:
                self.km.shutdown_kernel(now=True)
            except Exception:  # already dead: nothing left to stop
                pass
            self.km = None
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None

    def restart(self) -> None:
        self.shutdown()
        self.start()

    def alive(self) -> bool:
        return self.km is not None and self.km.is_alive()

    def __enter__(self) -> SandboxKernel:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- execution -------------------------------------------------------------------------------
    def run(self, code: str, timeout: float | None = None) -> CellRun:
        """Execute ``code``; wall-clock limit ``timeout`` (default: the per-cell limit)."""
        limit = self.limits.cell_seconds if timeout is None else timeout
        started = time.monotonic()
        msg_id = self.kc.execute(code, store_history=False, allow_stdin=False, stop_on_error=False)
        run = CellRun(status="ok")
        counts = {"chars": 0, "results_chars": 0, "truncated": False}

        def take(msg: dict) -> bool:
            """Record one iopub message of this cell into ``run``; True when the cell is done."""
            if msg["parent_header"].get("msg_id") != msg_id:
                return False
            kind = msg["msg_type"]
            if kind == "status" and msg["content"]["execution_state"] == "idle":
                return True
            data = msg["content"].get("data")
            if kind == "display_data" and isinstance(data, dict) and RESULT_MIME in data:
                # check()'s results: kept apart from the outputs, capped, never written to a file
                text = data[RESULT_MIME]
                size = len(text) if isinstance(text, str) else 0
                counts["results_chars"] += size
                run.results.append(text if isinstance(text, str) and counts["results_chars"] <= RESULTS_CHARS else None)
                return False
            if kind == "error":
                run.status = "error"
                run.ename, run.evalue = str(msg["content"]["ename"])[:200], str(msg["content"]["evalue"])[:2000]
            if kind in ("stream", "display_data", "execute_result", "error"):
                size = len(json.dumps(msg["content"]))
                if counts["chars"] + size <= self.limits.output_chars:
                    run.outputs.append(output_from_msg(msg))
                    counts["chars"] += size
                elif not counts["truncated"]:
                    counts["truncated"] = True
                    run.outputs.append(output_from_msg({
                        "header": {"msg_type": "stream"}, "msg_type": "stream",
                        "content": {"name": "stdout", "text": "\n[stgrade: further output of this cell dropped]\n"},
                    }))
            return False

        deadline = started + limit
        interrupted_at: float | None = None
        while True:
            now = time.monotonic()
            if interrupted_at is None and now > deadline:
                self.km.interrupt_kernel()
                interrupted_at = now
            if interrupted_at is not None and now > interrupted_at + self.limits.interrupt_grace_seconds:
                run.status, run.ename = "hung", "TimeoutError"
                run.evalue = f"the cell ran past {limit:.0f} s and did not stop when interrupted"
                break
            try:
                msg = self.kc.get_iopub_msg(timeout=0.2)
            except queue.Empty:
                if not self.alive():
                    run.status, run.ename = "died", "KernelDied"
                    run.evalue = ("the Python process running the notebook died during this cell "
                                  "(out of memory, os._exit, or a crash)")
                    break
                continue
            try:
                if take(msg):
                    break
            except (KeyError, TypeError, AttributeError, ValueError):  # a malformed message is ignored
                continue
        if interrupted_at is not None and run.status in ("ok", "error"):
            run.status, run.ename = "timeout", "TimeoutError"
            run.evalue = f"the cell ran past its time limit of {limit:.0f} s and was interrupted"
        run.seconds = time.monotonic() - started
        return run
