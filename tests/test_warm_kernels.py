"""Warm kernels (stgrade.warm): launched ahead, used once, isolated per submission as cold ones.

Student A is graded while student B's kernel boots beside it (the warm path's worst moment): A
looks for B, signals everything it can (``kill(-1)`` included), leaves files in its home, /tmp and
/dev/shm and a daemon behind. Then B is graded in that kernel: it finds none of it, has its own
seed (never A's), and all of a cold kernel's protections. From outside: B's kernel was launched
with nobody's seed in its environment, each kernel has its own cgroup and scratch, and nothing of
A is left once A is closed. The grades of warm and cold kernels are the same.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

from _sandbox_support import attack, output, processes_with, require_cgroup, require_sandbox, verdict
from stabletrain.exercises.check import CAPTURE_SEED_ENV
from stgrade.sandbox import Limits
from stgrade.warm import WarmKernels

LIMITS = Limits(cell_seconds=20, interrupt_grace_seconds=3, memory_bytes=3 * 1024**3, scratch_bytes=64 * 1024**2,
                shm_bytes=16 * 1024**2, max_processes=64)

PLANT = """
import os, glob
for folder in (os.environ['HOME'], '/tmp', '/dev/shm'):
    with open(os.path.join(folder, 'left-by-a-{marker}'), 'w') as f:
        f.write('{marker}')
    try:
        os.symlink('/etc/passwd', os.path.join(folder, 'link-by-a-{marker}'))
    except OSError:
        pass
home = os.environ['HOME']
seen = sorted(os.listdir(os.path.dirname(os.path.dirname(home))))  # the scratch folder, as bound in the view
others = [p for p in glob.glob('/tmp/*') if not home.startswith(p + '/') and 'by-a-' not in p]  # B's scratch?
print('SEED', os.environ.get('{seed}'))
print('VIEW', seen, others)
print('PIDS', sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))
"""

LOOK = """
import os, glob
found = [p for f in (os.environ['HOME'], '/tmp', '/dev/shm') for p in glob.glob(os.path.join(f, '*by-a-*'))]
status = open('/proc/self/status').read()
caps = [l.split()[1] for l in status.splitlines() if l.startswith(('CapEff', 'CapBnd', 'CapPrm'))]
print('SEED', os.environ.get('{seed}'))
print('FOUND', found)
print('IDS', os.getuid(), caps)
print('PIDS', sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))
"""


def _environ(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes()


def _kernel_pids(kernel) -> list[int]:
    return kernel.cgroup.pids() if kernel.cgroup else []


def _lines(text: str) -> dict[str, str]:
    return {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in text.splitlines() if " " in line}


def test_a_warm_kernel_is_a_fresh_sandbox_that_the_previous_student_cannot_reach(tmp_path):
    require_sandbox()
    require_cgroup()  # the test checks each kernel's own cgroup
    marker = uuid.uuid4().hex[:12]
    kernels = WarmKernels(ahead=1)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        with kernels.kernel(tmp_path, LIMITS, {CAPTURE_SEED_ENV: "111"}) as a:
            assert len(kernels.spares) == 1, "the next kernel is launched while this submission runs"
            b_early = kernels.spares[0]
            # B boots beside A: its own world, scratch and cgroup, and nobody's seed in its environment
            assert b_early.scratch != a.scratch and b_early.home != a.home
            assert a.cgroup is not None and b_early.cgroup is not None and a.cgroup.path != b_early.cgroup.path
            for pid in _kernel_pids(b_early):
                assert CAPTURE_SEED_ENV.encode() not in _environ(pid) and b"111" not in _environ(pid).split(b"\0")
            facts = _lines(output(a, PLANT.format(marker=marker, seed=CAPTURE_SEED_ENV)))
            assert facts["SEED"] == "111"
            assert facts["VIEW"] == "['1'] []", "A sees only its own world, and no other scratch"
            assert max(eval(facts["PIDS"])) < 100  # noqa: S307 - its own PID namespace
            assert verdict(output(a, attack("daemon", marker=marker))).startswith("CONTAINED")
            b_pids = _kernel_pids(b_early)
            text = output(a, attack("kill_others", pids=[*b_pids, os.getpid()]))
            assert verdict(text) == "CONTAINED", text
            output(a, "import os, signal\nos.kill(-1, signal.SIGKILL)")  # everything A can signal: itself
            assert all(Path(f"/proc/{pid}").exists() for pid in b_pids), "B's kernel survived A"
            a_scratch, a_cgroup = a.scratch, a.cgroup.path
        assert not a_scratch.exists() and not a_cgroup.exists(), "nothing of A's kernel is left"
        assert not processes_with(marker), "A's daemons died with its kernel"

        kernels.ahead = 0  # nothing more to grade: no kernel launched for nobody
        with kernels.kernel(tmp_path, LIMITS, {CAPTURE_SEED_ENV: "222"}) as b:
            assert b is b_early and kernels.used_warm == 1 and not kernels.spares
            facts = _lines(output(b, LOOK.format(seed=CAPTURE_SEED_ENV)))
            assert facts["SEED"] == "222", "B has its own seed, never A's"
            assert facts["FOUND"] == "[]", "nothing A left is in B's home, /tmp or /dev/shm"
            uid, caps = facts["IDS"].split(" ", 1)
            assert uid == "65534" and set(eval(caps)) == {"0000000000000000"}  # noqa: S307
            assert max(eval(facts["PIDS"])) < 100  # noqa: S307
            port = listener.getsockname()[1]
            text = output(b, f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), 2)\n"
                             "    print('ESCAPED connected')\nexcept OSError:\n    print('CONTAINED')")
            assert verdict(text) == "CONTAINED", "no network, the host's loopback included"
            b_scratch = b.scratch
        assert not b_scratch.exists()
    finally:
        kernels.close()
        listener.close()
    assert not list(Path("/sys/fs/cgroup").glob(f"**/stgrade-{os.getpid()}-*")), "no cgroup left behind"


def test_warm_and_cold_kernels_give_the_same_grades(tmp_path):
    """The noisy student (warnings on stderr) and the partial one, each in a warm and a cold kernel."""
    require_sandbox()
    from stgrade.grading import grade_submission
    from stgrade.samples import build

    lesson = "04_gradient_clipping"
    samples = build(tmp_path / "samples", only=[lesson])
    kernels = WarmKernels(ahead=1)
    try:
        kernels.top_up(Limits())
        for student in ("noisy", "partial"):
            path = samples / student / lesson / f"{lesson}.ipynb"
            args = (student, lesson, path, tmp_path / "autograded", Limits(), 12345)
            if student == "partial":
                kernels.ahead = 0
            warm = grade_submission(*args, kernels=kernels.kernel)
            cold = grade_submission(*args)
            assert warm.status == cold.status == "graded"
            assert [(c.grade_id, c.points, c.message) for c in warm.cells] == \
                [(c.grade_id, c.points, c.message) for c in cold.cells]
        assert kernels.used_warm == 2
    finally:
        kernels.close()


def test_the_last_tasks_launch_nothing_ahead_and_the_cli_passes_the_options():
    from stgrade.cli import build_parser
    from stgrade.pipeline import warm_tasks
    from stgrade.workers import Task

    tasks = [Task(i, (f"args{i}",)) for i in range(5)]
    warm, target = warm_tasks(tasks, jobs=2, warm=1)
    assert target == "stgrade.warm:grade"
    assert [t.args for t in warm] == [((f"args{i}",), 1 if i < 3 else 0) for i in range(5)]
    assert warm_tasks(tasks, jobs=2, warm=0) == (tasks, "stgrade.grading:grade_submission")
    args = build_parser().parse_args(["grade", "in", "--warm", "0", "--scheduler", "tcp://127.0.0.1:8786"])
    assert (args.warm, args.scheduler) == (0, "tcp://127.0.0.1:8786")
    assert build_parser().parse_args(["grade", "in"]).warm == 1
