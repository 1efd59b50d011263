"""Kernel launcher for grading: apply resource limits and switch off answer keys, then start ipykernel.

Run by jupyter_client, inside the bubblewrap sandbox (:mod:`stgrade.bwrap`) and the submission's
cgroup (:mod:`stgrade.cgroup`), as ``python -s -P /abs/path/stgrade/kernel.py -f {connection_file}``
from ``/``: nothing the kernel can write (its home, the working directory) is on the import path
before this launcher has run, so a ``stgrade/kernel.py`` or a ``.pth`` file left in the home by
an earlier kernel of the same submission cannot run instead of it (every kernel gets a fresh home
anyway). The launcher moves into its home (``STGRADE_HOME``) once ipykernel is set up, and tells
ipykernel to bind its sockets there (``STGRADE_SOCKETS``), whence the grader moves them before
any student code runs (:meth:`stgrade.sandbox.SandboxKernel._claim_sockets`). Isolation
(namespaces, capabilities, the read-only view) is bubblewrap's job and the per-submission caps are
the cgroup's; this launcher adds per-process limits from the environment (set by
:mod:`stgrade.sandbox`):

- ``STGRADE_MEMORY_BYTES``: address-space cap (RLIMIT_AS) — a runaway allocation fails with
  MemoryError in that cell instead of waiting for the cgroup's OOM killer;
- ``STGRADE_FILE_BYTES``: largest file the kernel may write (RLIMIT_FSIZE);
- ``STGRADE_CPU_SECONDS``: CPU seconds for the whole kernel (RLIMIT_CPU) — a last resort behind the
  per-cell and per-notebook wall-clock limits;
- no core dumps.

Then :func:`stabletrain.exercises.guard.install` switches off the answer keys that cannot be
removed from the view, before any student code runs.

The cyclic garbage collector is off while the kernel starts (this launcher, torch, ipykernel) and
while the lesson's setup cells run (their imports): those build about a million objects that live
as long as the kernel, and the collector's passes over them, while they are built, cost about
0.4 s of every submission and free nothing worth having (about 10 000 objects, 2 MB). The first
execute request (:func:`collect_from_here`) and the end of the setup cells in :func:`run_cells`
freeze what exists (``gc.freeze``: later passes skip it) and switch the collector on, so student
code always runs with it.

:func:`run_cells` is the other half of :meth:`stgrade.sandbox.SandboxKernel.run_cells`: it runs
a notebook's cells one after another inside one execute request, and marks the end of each.
"""

from __future__ import annotations

import gc
import os
import resource
import sys

_LIMITS = {
    "STGRADE_MEMORY_BYTES": resource.RLIMIT_AS,
    "STGRADE_FILE_BYTES": resource.RLIMIT_FSIZE,
    "STGRADE_CPU_SECONDS": resource.RLIMIT_CPU,
}


def apply_limits() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    for variable, limit in _LIMITS.items():
        value = os.environ.get(variable)
        if value:
            resource.setrlimit(limit, (int(value), int(value)))


#: MIME type of the message that marks the end of a cell in :func:`run_cells`
CELL_END_MIME = "application/x-stgrade-cell-end"


def collect_from_here() -> None:
    """Switch the cyclic garbage collector on, skipping every object that exists now for good
    (``gc.freeze``: the imports' objects live as long as the kernel)."""
    gc.freeze()
    gc.enable()


def _on_first_request(shell) -> None:
    """Call :func:`collect_from_here` when the first execute request starts, once."""

    def first() -> None:
        shell.events.unregister("pre_execute", first)
        collect_from_here()

    shell.events.register("pre_execute", first)


def run_cells(sources: list[str], setup: int = 0) -> None:
    """Run ``sources`` in this kernel, each as a cell of its own (IPython's ``run_cell``: magics,
    tracebacks and figures as in a cell the front end sent), and after each one publish
    ``{CELL_END_MIME: "<index>"}`` (publishing flushes ``sys.stdout`` and ``sys.stderr`` first).
    One execute request for a whole notebook instead of one per cell: each request costs the kernel
    about 2 ms of messaging, a cell in here about 0.5 ms. The first ``setup`` cells (the lesson's
    setup: imports) run with the garbage collector off, and :func:`collect_from_here` after them.

    The grader trusts none of this: a cell that breaks the loop, or fakes an end, only moves its
    own notebook's outputs between cells, and the grader reruns from where the marks stop.
    """
    from IPython import get_ipython

    shell = get_ipython()
    run_cell, publish = shell.run_cell, shell.display_pub.publish  # as they were before any cell ran
    for index, source in enumerate(sources):
        if index < setup:
            gc.disable()
        elif index == setup > 0:
            collect_from_here()  # the setup ran: everything after it runs with the collector on
        run_cell(source, store_history=False)
        publish(data={CELL_END_MIME: str(index)}, metadata={})  # flushes the cell's prints before the mark
    if 0 < len(sources) <= setup:
        collect_from_here()


#: the name under which the grader's requests find this module in the kernel (it runs as a script)
MODULE_NAME = "_stgrade_kernel"


def prepare() -> None:
    """What every grading kernel does before ipykernel, once its rlimits are set: switch the answer
    keys off (:func:`stabletrain.exercises.guard.install`). The fork server
    (:mod:`stgrade.zygote`) does it once for all its children."""
    from stabletrain.exercises import guard

    guard.install()
    sys.modules[MODULE_NAME] = sys.modules[__name__]
    sys.modules.setdefault("debugpy", None)  # no debugger in a grading kernel: importing it took ipykernel ~0.05 s


def serve(forget_connection_file: bool = False) -> None:
    """Start ipykernel with the connection file named in ``sys.argv`` (``-f``); with
    ``forget_connection_file``, remove that file once it has been read (a forked kernel's own copy)."""
    from ipykernel.kernelapp import IPKernelApp

    app = IPKernelApp.instance()
    sockets = os.environ.get("STGRADE_SOCKETS")
    if sockets:  # bind where the grader takes the sockets from, not where it connects
        load = app.load_connection_info
        app.load_connection_info = lambda info: load({**info, "ip": sockets})
        app.write_connection_file = lambda: None  # the grader's file (read-only here) says where it connects
    app.initialize()
    if forget_connection_file:
        os.unlink(app.connection_file)
    home = os.environ.get("STGRADE_HOME")
    if home:
        os.chdir(home)
    _on_first_request(app.shell)
    app.start()


def main() -> None:
    gc.disable()  # until the first request: see the module's docstring
    apply_limits()
    prepare()
    serve()


if __name__ == "__main__":
    main()
