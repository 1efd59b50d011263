"""Kernels forked from a sandboxed fork server (stgrade.forked, stgrade.zygote): isolated per submission.

The containment attacks of tests/test_sandbox_containment.py and the answer-key routes of
tests/test_sandbox_answer_keys.py run again here against a *forked* kernel (their tests that take
the ``kernel`` fixture are imported and collected with this module's fixture). Then the fork server's own worst moments: student A runs while student B is forked
from the same zygote beside it; A looks for B and for the zygote, signals everything it can,
leaves files in its home, /tmp and /dev/shm, daemons and a loopback listener behind; B finds none
of it, has its own seed and a cold kernel's protections. From outside: neither seed nor
connection key is anywhere in the zygote's memory after both ran, nor A's seed in B's; each child
is in its own cgroup, and the caps (memory of all its children together, processes) hold.
Forked and cold kernels give the same grades.

Every protection here was checked once by switching it off in stgrade/zygote.py (notes/scale.md,
"Fork server", lists which test failed for which).
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
import sys
import time
import uuid
from pathlib import Path

import pytest

from _sandbox_support import ROOT, attack, output, processes_with, require_cgroup, require_sandbox, verdict
from stabletrain.exercises.check import CAPTURE_SEED_ENV
from stgrade.forked import ForkServer
from stgrade.sandbox import Limits
from test_sandbox_answer_keys import (test_removed_answer_keys_cannot_be_reached,  # noqa: F401 - collected here too
                                      test_torch_layers_still_work_in_the_sandbox)
from test_sandbox_containment import (LIMITS, MEMORY_ATTACK, bystanders,  # noqa: F401 - collected here too
                                      test_cpu_is_capped_per_submission,
                                      test_interrupt_reaches_the_kernel_inside_its_pid_namespace,
                                      test_killing_a_classmates_kernel_a_worker_or_stopping_the_grader,
                                      test_no_capabilities_no_new_privileges_and_nobody,
                                      test_own_pid_namespace_sees_only_itself, test_private_tmp_and_shm_are_capped_and_left_nowhere,
                                      test_raising_pids_max_or_leaving_the_cgroup, test_remounting_read_write,
                                      test_setns_into_the_graders_namespaces, test_tcp_to_localhost,
                                      test_writing_outside_scratch_via_proc_root, test_writing_the_checkouts_sources)

# On the grading tests' worker (make test: --dist loadgroup): this module's fork server is open throughout,
# and its scratch folder would look like a leftover to the runs there that check what a run leaves in /tmp
# (and theirs to the whole-run test here)
pytestmark = pytest.mark.xdist_group("grading")


@pytest.fixture(scope="module")
def server():
    require_sandbox()
    require_cgroup()  # a forked kernel is moved into its own cgroup, or not started
    s = ForkServer()
    yield s
    s.close()


@pytest.fixture(scope="module")
def kernel(server, tmp_path_factory):
    """A forked kernel: what the imported containment tests attack here."""
    with server.kernel(tmp_path_factory.mktemp("unused"), LIMITS, {}) as k:
        assert type(k).__name__ == "ForkedKernel", server.problem
        yield k


def test_the_view_holds_no_checkout_and_no_answer_keys(kernel, tmp_path):
    """As test_view_holds_no_checkout_submissions_or_answer_keys, with the fork server's launcher in
    the view (its code: nothing secret), and no other world, nor the zygote's folder."""
    paths = [ROOT, ROOT / "solutions", ROOT / "tests", ROOT / "src", Path(sys.prefix).resolve(), Path("/etc/shadow"),
             Path("/sys/fs/cgroup"), tmp_path]
    code = f"import os\nprint([p for p in {[str(p) for p in paths]!r} if os.path.exists(p)])"
    assert output(kernel, code).strip() == "[]"
    shown = output(kernel, "import os\nprint(sorted(os.listdir('/opt/stgrade/lib/stgrade')),\n"
                           "      [k for k, v in os.environ.items() if " + repr(str(ROOT)) + " in v])")
    assert shown.strip() == "['__init__.py', 'kernel.py', 'zygote.py'] []", shown
    text = output(kernel, "import importlib, torch\ntry:\n    importlib.import_module('stabletrain.clipping').clip_grad_norm_\n"
                          "    print('LOADED')\nexcept (ImportError, AttributeError):\n    print('hidden')\n"
                          "print(open(torch.nn.utils.clip_grad.__file__).read().count('def _removed'))")
    assert text.split() == ["hidden", "1"], text
    root = kernel.zygote.root
    seen = output(kernel, f"import os\nprint(sorted(os.listdir({str(root)!r})) if os.path.isdir({str(root)!r}) else None)")
    assert seen.strip() in ("None", f"['{kernel.scratch.name}']"), seen  # neither 'z' (the zygote's) nor another world


PLANT = """
import os, glob, socket
for folder in (os.environ['HOME'], '/tmp', '/dev/shm'):
    with open(os.path.join(folder, 'left-by-a-{marker}'), 'w') as f:
        f.write('{marker}')
listener = socket.socket()
listener.bind(('127.0.0.1', {port}))
listener.listen()
print('SEED', os.environ.get('{seed}'))
print('PIDS', sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))
print('PARENTS', os.getppid(), open('/proc/1/cmdline', 'rb').read()[:40])
"""

LOOK = """
import os, glob, socket
found = [p for f in (os.environ['HOME'], '/tmp', '/dev/shm') for p in glob.glob(os.path.join(f, '*by-a-*'))]
status = open('/proc/self/status').read()
caps = [l.split()[1] for l in status.splitlines() if l.startswith(('CapEff', 'CapBnd', 'CapPrm', 'CapInh', 'CapAmb'))]
print('SEED', os.environ.get('{seed}'))
print('FOUND', found)
print('IDS', os.getuid(), os.getgid(), caps, [l.split()[1] for l in status.splitlines() if l.startswith('NoNewPrivs')])
print('PIDS', sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))
for port in ({port}, {host_port}):
    try:
        socket.create_connection(('127.0.0.1', port), 2).close()
        print('ESCAPED connected to', port)
    except OSError:
        print('CONTAINED', port)
"""


def _lines(text: str) -> dict[str, str]:
    return {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in text.splitlines() if " " in line}


def _memory_holds(pid: int, needles: list[bytes]) -> list[bytes]:
    """Which of ``needles`` are anywhere in the writable memory of process ``pid`` (read as root)."""
    found = set()
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            if not perms.startswith("rw"):
                continue
            start, end = (int(x, 16) for x in span.split("-"))
            try:
                mem.seek(start)
                chunk = mem.read(end - start)
            except (OSError, ValueError, OverflowError):
                continue
            found.update(n for n in needles if n in chunk)
    return sorted(found)


def test_a_forked_kernel_is_a_fresh_sandbox_that_its_sibling_cannot_reach(server, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("reads the zygote's memory from outside: root")
    marker = uuid.uuid4().hex[:12]
    seeds = {"a": f"111{marker}", "b": f"222{uuid.uuid4().hex[:12]}"}
    port = 40000 + int(marker[:4], 16) % 20000
    host = socket.socket()
    host.bind(("127.0.0.1", 0))
    host.listen()
    with server.kernel(tmp_path, LIMITS, {CAPTURE_SEED_ENV: seeds["a"]}) as a:
        zygote = server.zygote.host_pid
        facts = _lines(output(a, PLANT.format(marker=marker, seed=CAPTURE_SEED_ENV, port=port)))
        assert facts["SEED"] == seeds["a"]
        assert facts["PIDS"] == "[1, 2]", "A sees its own init and itself, nothing of the zygote or the host"
        assert facts["PARENTS"].startswith("1 "), facts
        assert verdict(output(a, attack("daemon", marker=marker))).startswith("CONTAINED")
        with server.kernel(tmp_path, LIMITS, {CAPTURE_SEED_ENV: seeds["b"]}) as b:
            assert a.cgroup.path != b.cgroup.path and a.home != b.home and a.scratch != b.scratch
            a_pids, b_pids = a.cgroup.pids(), b.cgroup.pids()
            assert a_pids and b_pids and not set(a_pids) & set(b_pids)
            text = output(a, attack("kill_others", pids=[*b_pids, zygote, os.getpid()]))
            assert verdict(text) == "CONTAINED", text
            output(a, "import os, signal\nos.kill(-1, signal.SIGKILL)")  # all that A can signal: its own
            assert all(Path(f"/proc/{pid}").exists() for pid in [*b_pids, zygote]), "B and the zygote survived A"
            text = output(b, LOOK.format(seed=CAPTURE_SEED_ENV, port=port, host_port=host.getsockname()[1]))
            facts = _lines(text)
            assert facts["SEED"] == seeds["b"], "B has its own seed, never A's"
            assert facts["FOUND"] == "[]", "nothing A left is in B's home, /tmp or /dev/shm"
            uid, gid, caps = facts["IDS"].split(" ", 2)
            assert (uid, gid) == ("65534", "65534")
            assert set(re.findall(r"'([0-9a-f]+)'", caps)) == {"0000000000000000", "1"}, caps  # caps, NoNewPrivs
            assert facts["PIDS"] == "[1, 2]"
            reached = [line for line in text.splitlines() if line.startswith(("CONTAINED", "ESCAPED"))]
            assert reached == [f"CONTAINED {port}", f"CONTAINED {host.getsockname()[1]}"], \
                "neither A's loopback listener nor the host's"
            keys = [k.km.info["key"].encode() for k in (a, b)]
            in_b = [n for pid in b_pids for n in _memory_holds(pid, [seeds["a"].encode(), marker.encode()])]
            in_zygote = _memory_holds(zygote, [*(s.encode() for s in seeds.values()), *keys, marker.encode()])
            assert in_b == [], "nothing of A in B's memory"
            assert in_zygote == [], "no seed, no key, nothing of a submission in the zygote's memory"
            a_scratch, a_cgroup = a.scratch, a.cgroup.path
            b_scratch = b.scratch
        assert not b_scratch.exists()
    assert not a_scratch.exists() and not a_cgroup.exists(), "nothing of A's kernel is left"
    deadline = time.monotonic() + 5
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not processes_with(marker), "A's daemons died with its kernel"
    host.close()
    assert server.zygote.alive() and server.cold == 0


def test_no_user_namespace_can_be_made_in_a_forked_kernel(kernel):
    """As ``bwrap --disable-userns`` for a cold kernel: the kernel's threads alone would stop
    unshare(CLONE_NEWUSER) in the kernel itself, so a single-threaded child of it tries."""
    text = output(kernel, "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nr, w = os.pipe()\n"
                          "if os.fork() == 0:\n    ok = libc.unshare(0x10000000) == 0\n"
                          "    os.write(w, b'ESCAPED new user namespace' if ok else b'CONTAINED'); os._exit(0)\n"
                          "os.wait()\nprint(os.read(r, 100).decode())")
    assert verdict(text) == "CONTAINED", text


def test_the_caps_hold_for_a_forked_kernel(server, tmp_path):
    """Memory (children together above the cap) and processes (a fork bomb) in a forked kernel's cgroup."""
    limits = Limits(cell_seconds=30, memory_bytes=1536 * 1024**2, max_processes=48, scratch_bytes=64 * 1024**2)
    with server.kernel(tmp_path, limits, {}) as k:
        assert type(k).__name__ == "ForkedKernel" and {"memory", "pids"} <= set(k.cgroup.controllers)
        inside = k.cgroup.pids()  # the child outside its namespace, its init and the kernel: moved before they ran
        assert len(inside) >= 3 and not set(inside) & set(server.zygote.cgroup.pids()), inside
        assert k.protections["scratch_size_cap"] == (os.geteuid() == 0)
        if k.protections["scratch_size_cap"]:
            text = output(k, attack("fill_scratch", cap=limits.scratch_bytes), timeout=60)
            assert verdict(text).startswith("CONTAINED"), text
        text = output(k, attack("memory_children", **MEMORY_ATTACK))
        assert verdict(text).startswith("CONTAINED"), text
        assert k.cgroup.memory_peak() is None or k.cgroup.memory_peak() <= limits.memory_bytes
        text = output(k, "import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n"
                         "            time.sleep(600)\n            os._exit(0)\n        n += 1\n"
                         "except OSError:\n    print('stopped at', n)")
        assert "stopped at" in text, text
        assert int(text.split("stopped at")[1].split()[0]) < limits.max_processes
        cgroups = list(k.cgroup.paths.values())
    assert not any(p.exists() for p in cgroups)
    assert server.zygote.alive(), "the zygote is outside the child's cgroup: the caps stop the child only"


def test_a_kernel_that_dies_is_forked_again_and_forked_and_cold_grades_agree(server, tmp_path):
    from stgrade.grading import grade_submission
    from stgrade.samples import build

    with server.kernel(tmp_path, LIMITS, {CAPTURE_SEED_ENV: "7"}) as k:
        run = k.run("import os\nos._exit(3)")
        assert run.status == "died"
        k.restart()
        assert output(k, f"import os\nprint(os.environ[{CAPTURE_SEED_ENV!r}], os.getpid())").split() == ["7", "2"]
    lesson = "04_gradient_clipping"
    samples = build(tmp_path / "samples", only=[lesson])
    for student in ("noisy", "partial"):
        path = samples / student / lesson / f"{lesson}.ipynb"
        args = (student, lesson, path, tmp_path / "autograded", Limits(), 12345)
        forked = grade_submission(*args, kernels=server.kernel)
        cold = grade_submission(*args)
        assert forked.status == cold.status == "graded"
        assert [(c.grade_id, c.points, c.message) for c in forked.cells] == \
            [(c.grade_id, c.points, c.message) for c in cold.cells]


def test_the_cli_and_the_pool_pass_the_option():
    from stgrade.cli import build_parser
    from stgrade.pipeline import warm_tasks
    from stgrade.workers import Task

    tasks = [Task(i, (f"args{i}",)) for i in range(3)]
    assert warm_tasks(tasks, jobs=2, warm=1, fork=True) == (tasks, "stgrade.forked:grade")
    assert build_parser().parse_args(["grade", "in", "--fork"]).fork is True
    assert build_parser().parse_args(["grade", "in"]).fork is False


def _listing(folder: Path) -> str:
    """What is in a folder, with owners and modes (what a failed clean-up left, and why it could not go)."""
    found = []
    for path in [folder, *sorted(folder.rglob("*"))][:40]:
        try:
            st = path.lstat()
            found.append(f"{path.relative_to(folder.parent)} uid {st.st_uid} mode {st.st_mode:o}")
        except OSError as exc:
            found.append(f"{path}: {exc}")
    return ", ".join(found)


def test_a_run_with_fork_grades_as_a_run_with_warm_kernels(tmp_path):
    """``grade_folder`` with ``fork=True`` (two workers, each with its zygote): the same grades.csv as
    the default run, every kernel forked (the workers' zygotes leave nothing behind)."""
    require_sandbox()
    require_cgroup()
    import json

    from stgrade.pipeline import RunOptions, grade_folder
    from test_dask_backend import _cohort

    cohort = _cohort(tmp_path)
    grades = {}
    for fork in (True, False):
        out = tmp_path / f"out-{fork}"
        results = grade_folder(cohort, out, RunOptions(jobs=2, secret="fork-test-secret", quiet=True, fork=fork))
        assert all(r.status == "graded" for r in results), [(r.student, r.status, r.reason) for r in results]
        grades[fork] = (out / "grades.csv").read_text()
        assert json.loads((out / "summary.json").read_text())["fork_server"] is fork
        left = [p for p in Path(tempfile.gettempdir()).glob("stgrade-scratch-*-zygote-*")
                if not p.name.startswith(f"stgrade-scratch-{os.getpid()}-")]  # this module's own server is open
        assert not left, ("the workers closed their zygotes (before the next run's sweep); left: "
                          + "; ".join(_listing(p) for p in left))
    assert grades[True] == grades[False]
